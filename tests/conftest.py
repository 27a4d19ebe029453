"""Shared fixtures. Add yours below; keep each one general.

The harness (tests/harness.py: ports, waits, controller and agent processes) and the impaired
link (tests/netlab/fixtures.py: `lab`, `make_lab`) are plugins loaded here, so a test module
names their fixtures as arguments and imports nothing for them.

- `pg_cluster` (session): a throw-away PostgreSQL server (tests/pg.py); tests using it are
  skipped when PostgreSQL is not installed - and fail under CI (`CI=true`).
- `db_url`: a fresh empty database, once on SQLite and once on PostgreSQL
  (parametrized: ids `sqlite` and `postgres`).
- `fake_clock`: a FakeClock (call it for "now"; `advance(...)`, `set(...)`).

Hypothesis runs with the profile `ci` under CI (derandomized: the same examples on every run,
no example database, no deadline on a busy machine) and `dev` elsewhere (random, with the local
example database that replays a failure); HYPOTHESIS_PROFILE=ci|dev chooses one explicitly.
"""
from __future__ import annotations

import datetime as dt
import os
import uuid

import pytest
from hypothesis import HealthCheck, settings

from tests.pg import PgCluster, PgUnavailable

# Plugins, not imports: imported here first, pytest could not rewrite their asserts.
pytest_plugins = ["tests.harness", "tests.netlab.fixtures"]

# Both from Hypothesis' own defaults (not from whatever profile it loaded itself on seeing $CI).
settings.register_profile("ci", settings.get_profile("default"), derandomize=True, deadline=None, database=None,
                          print_blob=True, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", settings.get_profile("default"), derandomize=False, deadline=None)


def pytest_configure(config: pytest.Config) -> None:
    from tests.harness import in_ci
    settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if in_ci() else "dev"))


class FakeClock:
    """A clock that moves only when told. Call it to get the aware UTC now."""

    def __init__(self, start: dt.datetime | None = None):
        self.now = start or dt.datetime(2026, 12, 1, 4, 0, tzinfo=dt.UTC)

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, delta: dt.timedelta | None = None, **kw) -> dt.datetime:
        self.now += delta if delta is not None else dt.timedelta(**kw)
        return self.now

    def set(self, t: dt.datetime) -> dt.datetime:
        self.now = t
        return t


@pytest.fixture(scope="session")
def pg_cluster():
    try:
        cluster = PgCluster().start()
    except PgUnavailable as exc:
        from tests.harness import require_or_skip
        require_or_skip(f"PostgreSQL not available: {exc}")
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'controller.sqlite'}"
    cluster = request.getfixturevalue("pg_cluster")
    return cluster.create_database(f"t_{uuid.uuid4().hex[:12]}")


@pytest.fixture
def fake_clock():
    return FakeClock()
