"""Programmatic alembic: `await migrate(db)` brings the schema to head.

Used by `vks-controller migrate --db URL` and at `serve` start. On PostgreSQL a
transaction-scoped advisory lock makes concurrent starts of several
controllers safe (one migrates, the others wait and find nothing to do).
"""
from __future__ import annotations

from importlib import resources
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text

from controller.store.db import Database

# env.py, script.py.mako and versions/ travel with the package (package data); alembic needs no
# alembic.ini: the script location is set here.
MIGRATIONS_DIR = Path(str(resources.files("controller.store") / "migrations"))
_ADVISORY_LOCK_KEY = 0x564B53  # "VKS"


def alembic_config() -> Config:
    """Alembic's configuration: the packaged migrations, no alembic.ini."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    return cfg


def head_revision() -> str:
    """The newest revision the packaged migrations know."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:
        raise RuntimeError(f"no migrations found in {MIGRATIONS_DIR}")
    return head


async def migrate(db: Database, revision: str = "head") -> str | None:
    """Upgrade to `revision`; returns the revision the database is at afterwards."""
    cfg = alembic_config()

    def _upgrade(sync_conn) -> str | None:
        cfg.attributes["connection"] = sync_conn
        command.upgrade(cfg, revision)
        return MigrationContext.configure(sync_conn).get_current_revision()

    if db.is_postgres:
        async with db.transaction() as conn:
            await conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _ADVISORY_LOCK_KEY})
            return await conn.run_sync(_upgrade)
    # SQLite alters a table by rebuilding it (batch mode: copy, DROP, rename). With foreign keys
    # enforced, dropping a table that rows of others refer to fails (institutions, with terminals
    # and hearings behind them) or cascades (users, with their tokens): so the keys are off while
    # the migration runs - a pragma SQLite ignores inside a transaction, hence on the raw connection
    # before BEGIN - and checked whole before it commits.
    async with db.engine.connect() as conn:
        raw = (await conn.get_raw_connection()).driver_connection
        assert raw is not None                  # aiosqlite's connection, open while `conn` is
        await raw.execute("PRAGMA foreign_keys=OFF")
        try:
            async with conn.begin():
                at = await conn.run_sync(_upgrade)
                broken = (await conn.exec_driver_sql("PRAGMA foreign_key_check")).all()
                if broken:
                    raise RuntimeError(f"the migration to {at} would leave rows without the rows they refer to: "
                                       f"{broken[:5]}")
            return at
        finally:
            await raw.execute("PRAGMA foreign_keys=ON")


async def current_revision(db: Database) -> str | None:
    """The revision the database is at (None: not migrated yet)."""
    async with db.read() as conn:
        return await conn.run_sync(lambda c: MigrationContext.configure(c).get_current_revision())
