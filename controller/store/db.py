"""Engine, URL mapping and transactions: one code path for SQLite and PostgreSQL.

- URLs: `sqlite:///path` -> `sqlite+aiosqlite:///path`,
  `postgresql://...` (or `postgres://`) -> `postgresql+asyncpg://...`.
- SQLite: WAL, foreign keys on, a busy timeout; write transactions start with
  `BEGIN IMMEDIATE` so that there is one writer at a time and no lock upgrade
  can deadlock; reads use a deferred `BEGIN` (WAL readers do not block).
- A URL in a message or a log line is `safe_url(url)`: its password masked.
- PostgreSQL: READ COMMITTED; the code takes row locks where it must
  (`SELECT ... FOR UPDATE`, and `SKIP LOCKED` for job claims).
"""
from __future__ import annotations

import datetime as dt
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

SQLITE_BUSY_TIMEOUT_MS = 10_000


class DatabaseUrlError(ValueError):
    """The --db URL is not one this controller understands."""


# user:password@ in a URL SQLAlchemy cannot parse (the masking must not depend on the parse).
_USERINFO = re.compile(r"(^|://|\s)([^/@:\s]*):[^/@\s]*@")


def safe_url(url: str) -> str:
    """The URL as it may appear in a message or a log line: any password replaced by ***."""
    try:
        return make_url(url.strip()).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        return _USERINFO.sub(r"\1\2:***@", url)


def to_async_url(url: str) -> str:
    """Map the user-facing URL forms to the async drivers."""
    raw = url.strip()
    if raw.startswith("postgres://"):
        raw = "postgresql://" + raw[len("postgres://"):]
    try:
        parsed = make_url(raw)
    except ArgumentError:
        raise DatabaseUrlError(
            f"not a database URL: {safe_url(url)!r} (expected sqlite:///path or postgresql://user@host/db)") from None
    backend, _, driver = parsed.drivername.partition("+")
    if backend == "sqlite":
        if driver not in ("", "aiosqlite"):
            raise DatabaseUrlError(f"unsupported SQLite driver {driver!r} in {safe_url(url)!r}")
        if not parsed.database or parsed.database == ":memory:":
            raise DatabaseUrlError(
                f"SQLite needs a file path: {safe_url(url)!r} (e.g. sqlite:///var/vks-controller.sqlite)")
        return parsed.set(drivername="sqlite+aiosqlite").render_as_string(hide_password=False)
    if backend == "postgresql":
        if driver not in ("", "asyncpg"):
            raise DatabaseUrlError(f"unsupported PostgreSQL driver {driver!r} in {safe_url(url)!r}")
        if not parsed.database:
            raise DatabaseUrlError(f"PostgreSQL URL names no database: {safe_url(url)!r}")
        return parsed.set(drivername="postgresql+asyncpg").render_as_string(hide_password=False)
    raise DatabaseUrlError(
        f"unsupported database {backend!r} in {safe_url(url)!r} (expected sqlite:///path or postgresql://...)")


def utcnow() -> dt.datetime:
    """Now, aware UTC."""
    return dt.datetime.now(dt.UTC)


class Database:
    """An async engine with the two transaction shapes the controller uses.

    `async with db.transaction() as conn:` - a write transaction, committed on
    success, rolled back on any exception (one per API request, one per job
    step). `async with db.read() as conn:` - a read-only snapshot.
    """

    def __init__(self, url: str, *, echo: bool = False, pool_size: int = 5):
        self.url = url
        self.async_url = to_async_url(url)
        self.dialect = "sqlite" if self.async_url.startswith("sqlite") else "postgresql"
        kwargs: dict = {"echo": echo}
        if self.dialect == "postgresql":
            kwargs.update(pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True)
        self.engine: AsyncEngine = create_async_engine(self.async_url, **kwargs)
        if self.dialect == "sqlite":
            _sqlite_setup(self.engine)

    @property
    def is_postgres(self) -> bool:
        return self.dialect == "postgresql"

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncConnection]:
        async with self.engine.connect() as conn:
            async with conn.begin():
                yield conn

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        async with self.engine.connect() as conn:
            if self.dialect == "sqlite":
                await conn.execution_options(sqlite_begin="DEFERRED")
            async with conn.begin():
                yield conn

    async def close(self) -> None:
        await self.engine.dispose()


def _sqlite_setup(engine: AsyncEngine) -> None:
    sync_engine = engine.sync_engine

    @event.listens_for(sync_engine, "connect")
    def _on_connect(dbapi_conn, _record):  # pragma: no cover - exercised by every test
        # Let SQLAlchemy (below) emit BEGIN itself instead of the driver.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    @event.listens_for(sync_engine, "begin")
    def _on_begin(conn):  # pragma: no cover
        mode = conn.get_execution_options().get("sqlite_begin", "IMMEDIATE")
        conn.exec_driver_sql(f"BEGIN {mode}")
