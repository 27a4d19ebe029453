"""pytest helpers for tests that need the impaired link.

    from tests.netlab.fixtures import lab, make_lab, netlab_mark, requires_netlab  # noqa: F401

    pytestmark = netlab_mark          # netns marker + skip with a clear reason (whole module)
    @requires_netlab                  # ... or per test / class

    def test_x(lab): ...              # a clean Lab, closed after the test
    def test_y(make_lab):
        lab = make_lab(impair={"a>b": {"delay_ms": 40}}, mgmt=True)

Both fixtures work in sync and async tests (start/close are quick blocking calls).
"""
from __future__ import annotations

import functools

import pytest

from .lab import Lab, unavailable_reason


@functools.lru_cache(maxsize=1)
def skip_reason() -> str | None:
    return unavailable_reason()


netlab_mark = [pytest.mark.netns,
               pytest.mark.skipif(skip_reason() is not None, reason=str(skip_reason()))]


@pytest.fixture
def make_lab():
    """Factory of started labs; every lab it made is closed at teardown, even on failure."""
    labs: list[Lab] = []

    def factory(*args, **kw) -> Lab:
        reason = skip_reason()
        if reason:
            pytest.skip(reason)
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
