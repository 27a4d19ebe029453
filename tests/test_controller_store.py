"""The store on SQLite and PostgreSQL: migrations, UTC timestamps, the sites
import, SQLite's pragmas, and the URL forms the CLI accepts."""
from __future__ import annotations

import datetime as dt
from typing import get_args

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import insert, inspect, select, text
from sqlalchemy.exc import StatementError

from contract import configfile
from contract.vocab import HearingStatus, words
from controller.models import HearingOut, PatchStatus, SitesFile
from controller.store import (
    history,  # noqa: F401  (its table is in the metadata compared)
    registry,
    schema,
)
from controller.store.db import Database, DatabaseUrlError, to_async_url
from controller.store.migrate import current_revision, head_revision, migrate
from controller.store.schema import audit, metadata
from tests.controller_kit import SITES


@pytest.fixture
async def db(db_url):
    d = Database(db_url)
    yield d
    await d.close()


def sites():
    return configfile.validate(SitesFile, configfile.read_yaml(SITES), SITES).model_dump()["institutions"]


async def test_migrate_is_idempotent_and_reaches_head(db):
    assert await current_revision(db) is None
    assert await migrate(db) == head_revision()
    assert await migrate(db) == head_revision()


async def test_a_populated_database_upgrades_with_its_rows_kept(db):
    """Migrations that rebuild a table on SQLite (0007: users, 0008: institutions) run on a database
    in use: users with tokens, institutions with rooms and terminals. With foreign keys enforced the
    rebuild's DROP TABLE failed (terminals refer to institutions) or cascaded (tokens to users)."""
    now = dt.datetime.now(dt.UTC)
    assert await migrate(db, "0006") == "0006"
    async with db.transaction() as conn:
        await conn.execute(text("INSERT INTO users (id, name, role, created_at) VALUES (1, 'tech', 'technician', :t)"),
                           {"t": now})
        await conn.execute(text("INSERT INTO api_tokens (user_id, token_sha256, created_at) VALUES (1, :h, :t)"),
                           {"h": "ab" * 32, "t": now})
    assert await migrate(db, "0007") == "0007"
    before = [i for i in sites() if i["kind"] != "datacentre"]      # a kind 0008 brings
    async with db.transaction() as conn:
        made = await registry.import_sites(conn, before, now)
    assert made["terminals_created"] > 0
    assert await migrate(db) == head_revision()
    async with db.read() as conn:
        counts = {t: (await conn.execute(text(f"SELECT count(*) FROM {t}"))).scalar_one()
                  for t in ("users", "api_tokens", "institutions", "terminals")}
        if db.dialect == "sqlite":
            assert (await conn.exec_driver_sql("PRAGMA foreign_keys")).scalar_one() == 1    # on again
    assert counts == {"users": 1, "api_tokens": 1, "institutions": len(before),
                      "terminals": made["terminals_created"]}


async def test_a_database_in_use_at_0009_upgrades_to_this_session_s_revisions(db):
    """0010 rebuilds `contacts` on SQLite (its kind's CHECK) and 0011 adds `live_intervals.callee`:
    on a database with hearings, contacts, a break and seconds of a monitored hearing, the rows stay
    (the old seconds' callee empty) and the new tables take rows that refer to them."""
    now = dt.datetime.now(dt.UTC)
    assert await migrate(db, "0009") == "0009"
    async with db.transaction() as conn:
        await registry.import_sites(conn, sites(), now)
        room = (await conn.execute(text("SELECT id, institution_id FROM rooms ORDER BY id"))).first()
        terms = (await conn.execute(text("SELECT id, institution_id FROM terminals ORDER BY id"))).all()
        court_t = next(t for t in terms if t.institution_id == room.institution_id)
        remote = next(t for t in terms if t.institution_id != room.institution_id)
        hid = (await conn.execute(insert(schema.hearings).values(
            case_number="2-1/2026", court_id=room.institution_id, room_id=room.id, court_terminal_id=court_t.id,
            start_utc=now, end_utc=now + dt.timedelta(hours=1), duration_min=60, initiative="court",
            status="in_progress", verdict="unknown", agreement_coordinator="regional", agreement_state="given",
            created_at=now, updated_at=now).returning(schema.hearings.c.id))).scalar_one()
        await conn.execute(insert(schema.hearing_participants).values(
            hearing_id=hid, institution_id=remote.institution_id, terminal_id=remote.id))
        await conn.execute(insert(schema.contacts).values(institution_id=room.institution_id, kind="technician",
                                                          name="Tech", email="t@example.kz", created_at=now))
        bid = (await conn.execute(insert(schema.live_breaks).values(
            hearing_id=hid, cause="stall", evidence={}, started_at=now,
        ).returning(schema.live_breaks.c.id))).scalar_one()
        await conn.execute(text("INSERT INTO live_intervals (hearing_id, session_id, terminal_id, t, at, stalled, "
                                "verdict) VALUES (:h, 's1', :term, 1, :at, :st, 'good')"),
                           {"h": hid, "term": court_t.id, "at": now, "st": False})
    assert await migrate(db) == head_revision()
    async with db.transaction() as conn:
        counts = {t: (await conn.execute(text(f"SELECT count(*) FROM {t}"))).scalar_one()
                  for t in ("hearings", "hearing_participants", "contacts", "live_breaks", "live_intervals")}
        assert counts == dict.fromkeys(counts, 1)
        assert (await conn.execute(text("SELECT callee FROM live_intervals"))).scalar_one() is None
        await conn.execute(insert(schema.contacts).values(institution_id=room.institution_id, kind="coordinator",
                                                          name="Coord", email="c@example.kz", created_at=now))
        await conn.execute(text("INSERT INTO participation_modes (hearing_id, terminal_id, mode, recorded_at, "
                                "recorded_by) VALUES (:h, :term, 'vks', :at, 'x')"),
                           {"h": hid, "term": remote.id, "at": now})
        await conn.execute(text("INSERT INTO live_decisions (break_id, hearing_id, decision, decided_at) "
                                "VALUES (:b, :h, 'declared', :at)"), {"b": bid, "h": hid, "at": now})
        await conn.execute(text("INSERT INTO self_checks (hearing_id, name, mode, secret_hash, status, expires_at, "
                                "created_at) VALUES (:h, 'A', 'mobile', :s, 'pending', :at, :at)"),
                           {"h": hid, "s": "cd" * 32, "at": now})


def _check_constraints(sync_conn) -> dict[str, list[tuple[str, str]]]:
    """Every table's CHECK constraints as the database reports them: (name, text)."""
    insp = inspect(sync_conn)
    return {t: sorted((c["name"], c["sqltext"]) for c in insp.get_check_constraints(t))
            for t in insp.get_table_names() if t != "alembic_version"}


async def test_migrations_build_exactly_the_tables_the_schema_declares(db):
    await migrate(db)

    def diff(sync_conn):
        ctx = MigrationContext.configure(sync_conn, opts={"compare_type": True,
                                                          "compare_server_default": True})
        return compare_metadata(ctx, metadata)
    async with db.read() as conn:
        assert await conn.run_sync(diff) == []
        migrated = await conn.run_sync(_check_constraints)
    # autogenerate does not compare CHECK constraints: the migrated ones must read exactly as the
    # schema module's, built on an empty database.
    async with db.transaction() as conn:
        await conn.run_sync(metadata.drop_all)
        await conn.run_sync(metadata.create_all)
    async with db.read() as conn:
        declared = await conn.run_sync(_check_constraints)
    assert set(migrated) == set(metadata.tables)
    assert migrated == declared
    assert sum(len(v) for v in declared.values()) >= 20


def test_the_api_models_words_are_the_vocabularies():
    # The one word list the models still spell out (what a PATCH may set) stays within the
    # vocabulary; the others are the enums themselves, listed once in the OpenAPI document.
    assert set(get_args(PatchStatus)) == set(words(HearingStatus)) - {HearingStatus.CANCELLED}
    defs = HearingOut.model_json_schema()["$defs"]
    assert defs["HearingStatus"]["enum"] == list(words(HearingStatus))
    assert defs["HearingVerdict"]["enum"] == ["unknown", "good", "degraded", "unusable", "suspended"]
    assert defs["Verdict"]["enum"] == ["good", "degraded", "unusable"]


async def test_timestamps_are_stored_and_returned_in_utc(db):
    await migrate(db)
    almaty = dt.timezone(dt.timedelta(hours=5))
    t = dt.datetime(2026, 12, 1, 10, 0, 0, 123000, tzinfo=almaty)
    async with db.transaction() as conn:
        await conn.execute(insert(audit).values(at=t, who="x", action="a", target="t", detail={"k": "в"}))
    async with db.read() as conn:
        row = (await conn.execute(select(audit))).one()
        earlier = (await conn.execute(select(audit.c.id).where(audit.c.at < dt.datetime(
            2026, 12, 1, 5, 0, 1, tzinfo=dt.UTC)))).all()
    assert row.at == t and row.at.utcoffset() == dt.timedelta(0) and row.at.hour == 5
    assert row.detail == {"k": "в"}
    assert len(earlier) == 1                                              # compared as instants
    with pytest.raises(StatementError, match="naive datetime"):
        async with db.transaction() as conn:
            await conn.execute(insert(audit).values(at=dt.datetime(2026, 1, 1), who="x", action="a",
                                                    target="t", detail={}))


async def test_sites_import_is_an_idempotent_upsert(db):
    await migrate(db)
    now = dt.datetime.now(dt.UTC)
    async with db.transaction() as conn:
        first = await registry.import_sites(conn, sites(), now)
    assert first["institutions_created"] == 8 and first["terminals_created"] == 10
    changed = sites()
    changed[0]["name"] = "renamed"
    async with db.transaction() as conn:
        again = await registry.import_sites(conn, changed, now)
        t = await registry.get_terminal(conn, "court-almaty-1")
        room = await registry.get_room(conn, t["room_id"])
    assert again == {"institutions_created": 0, "institutions_updated": 1, "rooms_created": 0,
                     "terminals_created": 0, "terminals_updated": 0}
    assert (t["role"], room["name"]) == ("courtroom", "Зал 1")


async def test_a_failed_transaction_writes_nothing(db):
    await migrate(db)
    now = dt.datetime.now(dt.UTC)
    with pytest.raises(RuntimeError):
        async with db.transaction() as conn:
            await registry.import_sites(conn, sites(), now)
            raise RuntimeError("boom")
    async with db.read() as conn:
        assert await registry.list_institutions(conn) == []



def test_sqlite_pragmas(tmp_path):
    import asyncio

    async def go():
        d = Database(f"sqlite:///{tmp_path / 'p.sqlite'}")
        try:
            async with d.read() as conn:
                return [(await conn.execute(text(f"PRAGMA {p}"))).scalar() for p in
                        ("journal_mode", "foreign_keys", "busy_timeout")]
        finally:
            await d.close()
    assert asyncio.run(go()) == ["wal", 1, 10000]


@pytest.mark.parametrize("url,expected", [
    ("sqlite:///var/c.sqlite", "sqlite+aiosqlite:///var/c.sqlite"),
    ("sqlite:////abs/c.sqlite", "sqlite+aiosqlite:////abs/c.sqlite"),
    ("postgresql://vks:pw@db:5432/vks", "postgresql+asyncpg://vks:pw@db:5432/vks"),
    ("postgres://vks@db/vks", "postgresql+asyncpg://vks@db/vks"),
    ("postgresql+asyncpg://vks@db/vks", "postgresql+asyncpg://vks@db/vks"),
])
def test_url_forms(url, expected):
    assert to_async_url(url) == expected


@pytest.mark.parametrize("url", ["mysql://x/y", "sqlite://", "sqlite:///:memory:", "postgresql://db",
                                 "not a url", "postgresql+psycopg2://x/y"])
def test_bad_urls_are_refused_with_a_reason(url):
    with pytest.raises(DatabaseUrlError):
        to_async_url(url)
