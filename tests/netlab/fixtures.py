"""pytest helpers for tests that need the impaired link; a plugin (tests/conftest.py loads it), so
the fixtures `lab` and `make_lab` need no import.

    from tests.netlab.fixtures import netlab_mark, requires_netlab

    pytestmark = netlab_mark          # netns marker + skip with a clear reason (whole module)
    @requires_netlab                  # ... or per test / class
                                      # (under CI a missing lab is a failure, not a skip)

    def test_x(lab): ...              # a clean Lab, closed after the test
    def test_y(make_lab):
        lab = make_lab(impair={"a>b": {"delay_ms": 40}}, mgmt=True)

Both fixtures work in sync and async tests (start/close are quick blocking calls).
"""
from __future__ import annotations

import functools

import pytest

from tests.harness import needs_system, require_or_skip

from .lab import Lab, unavailable_reason


@functools.lru_cache(maxsize=1)
def skip_reason() -> str | None:
    """Why the lab cannot run here (None when it can), found once per process."""
    return unavailable_reason()


netlab_mark = [pytest.mark.netns, needs_system(skip_reason())]


@pytest.fixture
def make_lab():
    """Factory of started labs; every lab it made is closed at teardown, even on failure."""
    labs: list[Lab] = []

    def factory(*args, **kw) -> Lab:
        require_or_skip(skip_reason())
        lab = Lab(*args, **kw)
        labs.append(lab)
        lab.start()
        return lab

    yield factory
    errors = []
    for lab in reversed(labs):
        try:
            lab.close()
        except Exception as exc:  # noqa: BLE001 - report all cleanup failures
            errors.append(exc)
    if errors:
        raise errors[0]


@pytest.fixture
def lab(make_lab) -> Lab:
    """A started Lab with a clean link (impair it with lab.impair(...))."""
    return make_lab()


def requires_netlab(obj):
    """Decorator: the ``netns`` marker plus the skip, for one test or class."""
    for mark in netlab_mark:
        obj = mark(obj)
    return obj
