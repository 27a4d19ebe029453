"""Shared fixtures. Add yours below; keep each one general.

- `pg_cluster` (session): a throw-away PostgreSQL server (tests/pg.py); tests
  using it are skipped when PostgreSQL is not installed.
- `db_url`: a fresh empty database, once on SQLite and once on PostgreSQL
  (parametrized: ids `sqlite` and `postgres`).
- `fake_clock`: a FakeClock (call it for "now"; `advance(...)`, `set(...)`).
"""
from __future__ import annotations

import datetime as dt
import uuid

import pytest

from tests.pg import PgCluster, PgUnavailable


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
        pytest.skip(f"PostgreSQL not available: {exc}")
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
