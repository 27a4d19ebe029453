# The two commands of the README: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[test]'
	touch $@

.PHONY: venv system test run bench
venv: $(STAMP)

system:
	bash scripts/system-packages.sh

test: system venv
	$(VENV)/bin/python -m pytest -q -ra $(PYTEST_ARGS)

run: venv
	$(VENV)/bin/python -m controller.demo
