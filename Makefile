# The two commands of the README: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[test]'
	touch $@

.PHONY: venv system lint test run bench
venv: $(STAMP)

system:
	bash scripts/system-packages.sh

# Lint and types first: a test run on code that does not pass them is not worth its 10 minutes.
lint: venv
	$(VENV)/bin/ruff check agent controller contract tests benchmarks scripts
	$(VENV)/bin/mypy

test: system venv lint
	$(VENV)/bin/python -m pytest -q -ra $(PYTEST_ARGS)

run: venv
	$(VENV)/bin/python -m controller.demo
