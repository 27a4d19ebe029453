"""Self-checks of mobile participants (issue 14, migration 0012): one row per link handed to a person
who joins a hearing from a phone or a laptop, with what their check found.

- `self_checks`: the table (declared here, not in schema.py; the same metadata, so the migration test
  compares it too). The link's secret is stored as its SHA-256 only (`secret_hash`): 32 random bytes
  cannot be guessed, so no slow hash is needed, and a copy of the database opens no link.
- `create`, `by_secret`, `get`, `list_for`, `start`, `finish`, `fail`: the row's life;
  `effective_status(row, now)`: `expired` for a link not finished before it expired.
- `view(row, now)`: the item of GET /api/v1/hearings/{id}/self-checks, exactly the issue's keys.
"""
from __future__ import annotations

import datetime as dt
import hashlib
from typing import Any

from sqlalchemy import (
    CheckConstraint,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    insert,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from contract.vocab import DeviceStatus, ParticipationMode, SelfCheckStatus
from controller.store.hearings import iso
from controller.store.schema import JSONType, UTCDateTime, _in, metadata

self_checks = Table(
    "self_checks", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("hearing_id", Integer, ForeignKey("hearings.id", ondelete="CASCADE"), nullable=False),
    Column("name", Text, nullable=False),
    Column("mode", String(16), nullable=False),
    Column("secret_hash", String(64), nullable=False, unique=True),
    Column("status", String(16), nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("created_by", Text, nullable=True),
    Column("started_at", UTCDateTime, nullable=True),
    Column("finished_at", UTCDateTime, nullable=True),
    Column("verdict", String(16), nullable=True),
    Column("camera", String(16), nullable=True),
    Column("microphone", String(16), nullable=True),
    Column("rtt_ms", Float, nullable=True),
    Column("inbound", JSONType, nullable=True),     # what the browser received (its getStats)
    Column("outbound", JSONType, nullable=True),    # what it sent, as the controller's peer received it
    Column("browser", Text, nullable=True),         # the browser's user agent
    Column("path_type", String(8), nullable=True),
    Column("reason_codes", JSONType, nullable=True),  # [{code, params}] (contract.reasons)
    CheckConstraint(_in("mode", ParticipationMode), name="mode"),
    CheckConstraint(_in("status", SelfCheckStatus), name="status"),
    CheckConstraint(_in("camera", DeviceStatus), name="camera"),
    CheckConstraint(_in("microphone", DeviceStatus), name="microphone"),
    Index("ix_self_checks_hearing_id", "hearing_id"),
)

c = self_checks.c
FINAL = (SelfCheckStatus.DONE, SelfCheckStatus.FAILED)
_EMPTY_DIRECTION = {"loss_ratio": None, "jitter_ms": None, "bitrate_kbps": None}


def secret_hash(secret: str) -> str:
    """What is stored of a link's secret."""
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


async def create(conn: AsyncConnection, *, hearing_id: int, name: str, mode: str, secret: str,
                 expires_at: dt.datetime, now: dt.datetime, by: str | None) -> int:
    """A pending self-check of the hearing; its id."""
    q = insert(self_checks).values(hearing_id=hearing_id, name=name, mode=mode, secret_hash=secret_hash(secret),
                                   status=SelfCheckStatus.PENDING, expires_at=expires_at, created_at=now,
                                   created_by=by).returning(c.id)
    return (await conn.execute(q)).scalar_one()


async def by_secret(conn: AsyncConnection, secret: str, *, for_update: bool = False) -> dict[str, Any] | None:
    """The self-check the secret opens, or None."""
    q = select(self_checks).where(c.secret_hash == secret_hash(secret))
    if for_update:
        q = q.with_for_update()
    r = (await conn.execute(q)).first()
    return dict(r._mapping) if r else None


async def get(conn: AsyncConnection, sid: int) -> dict[str, Any] | None:
    """The self-check `sid`, or None."""
    r = (await conn.execute(select(self_checks).where(c.id == sid))).first()
    return dict(r._mapping) if r else None


async def list_for(conn: AsyncConnection, hearing_ids: list[int]) -> list[dict[str, Any]]:
    """The self-checks of these hearings, oldest first."""
    if not hearing_ids:
        return []
    q = select(self_checks).where(c.hearing_id.in_(hearing_ids)).order_by(c.id)
    return [dict(r._mapping) for r in await conn.execute(q)]


async def start(conn: AsyncConnection, sid: int, now: dt.datetime, browser: str | None) -> None:
    """The link's session begins (again: a person may run the check more than once)."""
    await conn.execute(update(self_checks).where(c.id == sid).values(
        status=SelfCheckStatus.RUNNING, started_at=now, browser=browser))


async def finish(conn: AsyncConnection, sid: int, *, status: str, now: dt.datetime, **values: Any) -> None:
    """The result: done (judged) or failed (no media path), with its figures."""
    await conn.execute(update(self_checks).where(c.id == sid).values(status=status, finished_at=now, **values))


async def follow_end(conn: AsyncConnection, hearing_id: int, old_end: dt.datetime, new_end: dt.datetime) -> None:
    """The hearing's end moved (a postponement, a longer hearing): links that expire with it (the
    default) expire with the new end; a link given an earlier expiry keeps it, unless the hearing
    now ends before it."""
    await conn.execute(update(self_checks).where(c.hearing_id == hearing_id, c.expires_at == old_end)
                       .values(expires_at=new_end))
    await conn.execute(update(self_checks).where(c.hearing_id == hearing_id, c.expires_at > new_end)
                       .values(expires_at=new_end))


def effective_status(row: dict[str, Any], now: dt.datetime) -> str:
    """The row's status, `expired` for a link whose time ran out before a result was stored."""
    if row["status"] not in FINAL and row["expires_at"] <= now:
        return SelfCheckStatus.EXPIRED
    return str(row["status"])


def view(row: dict[str, Any], now: dt.datetime) -> dict[str, Any]:
    """The list's item: {id, name, mode, status, verdict, camera, microphone, rtt_ms, inbound,
    outbound, browser, path_type, finished_at} (figures null where not measured)."""
    return {"id": row["id"], "name": row["name"], "mode": row["mode"], "status": effective_status(row, now),
            "verdict": row["verdict"], "camera": row["camera"], "microphone": row["microphone"],
            "rtt_ms": row["rtt_ms"], "inbound": {**_EMPTY_DIRECTION, **(row["inbound"] or {})},
            "outbound": {**_EMPTY_DIRECTION, **(row["outbound"] or {})}, "browser": row["browser"],
            "path_type": row["path_type"], "finished_at": iso(row["finished_at"])}
