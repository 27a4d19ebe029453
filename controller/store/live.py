"""Live monitoring during a hearing (rule 22; migration 0003): the flow's state per hearing,
the breaks, and the per-second intervals of the monitoring sessions.

Like the rest of `controller.store`, every function takes an open `AsyncConnection` first; the
caller owns the transaction. Lock order: the hearing row, then `live_state` (see
`controller.store`).
"""
from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
    delete,
    insert,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from controller.store.schema import JSONType, UTCDateTime, _in, metadata

LIVE_STATES = ("monitoring", "break", "reconnecting", "ready_to_resume", "escalated", "stopped", "ended")

live_state = Table(
    "live_state", metadata,
    Column("hearing_id", Integer, ForeignKey("hearings.id", ondelete="CASCADE"), primary_key=True),
    Column("state", String(24), nullable=False),
    Column("verdict", String(16), nullable=False),          # the hearing's live verdict (rule 3)
    Column("since", UTCDateTime, nullable=False),           # in this state since
    Column("caller", String(64), nullable=True),
    Column("callee", String(64), nullable=True),
    Column("session_id", String(128), nullable=True),       # the current monitoring session
    Column("session_started_at", UTCDateTime, nullable=True),
    Column("break_id", Integer, nullable=True),             # the open break, if any
    Column("attempt", Integer, nullable=False, default=0),  # reconnect attempts in this break
    Column("next_at", UTCDateTime, nullable=True),          # next reconnect attempt / session renewal
    Column("detector", JSONType, nullable=True),            # controller.detector.Detector snapshot
    Column("stats", JSONType, nullable=False),              # seconds per verdict, breaks
    Column("owner", String(128), nullable=True),            # controller instance driving the flow
    Column("lease_until", UTCDateTime, nullable=True),
    Column("started_at", UTCDateTime, nullable=False),
    Column("ended_at", UTCDateTime, nullable=True),
    Column("updated_at", UTCDateTime, nullable=False),
    CheckConstraint(_in("state", LIVE_STATES), name="state"),
    Index("ix_live_state_session_id", "session_id"),
)

live_breaks = Table(
    "live_breaks", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("hearing_id", Integer, ForeignKey("hearings.id", ondelete="CASCADE"), nullable=False),
    Column("cause", String(32), nullable=False),            # stall | silent | unusable
    Column("evidence", JSONType, nullable=False),
    Column("started_at", UTCDateTime, nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("ready_at", UTCDateTime, nullable=True),
    Column("resumed_at", UTCDateTime, nullable=True),
    Column("resumed_by", Text, nullable=True),
    Column("escalated_at", UTCDateTime, nullable=True),
    Column("ended_at", UTCDateTime, nullable=True),
    Column("outcome", String(24), nullable=True),           # resumed | hearing_ended | suspended | escalated
    Column("duration_s", Float, nullable=True),
    Index("ix_live_breaks_hearing_id", "hearing_id", "id"),
)

live_intervals = Table(
    "live_intervals", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("hearing_id", Integer, ForeignKey("hearings.id", ondelete="CASCADE"), nullable=False),
    Column("session_id", String(128), nullable=False),
    Column("terminal_id", String(64), nullable=False),
    Column("t", Integer, nullable=False),
    Column("at", UTCDateTime, nullable=False),
    Column("inbound", JSONType, nullable=True),
    Column("outbound", JSONType, nullable=True),
    Column("rtt_ms", Float, nullable=True),
    Column("stalled", Boolean, nullable=False),
    Column("verdict", String(16), nullable=False),
    UniqueConstraint("session_id", "terminal_id", "t", name="uq_live_intervals_session_terminal_t"),
    Index("ix_live_intervals_hearing_at", "hearing_id", "at"),
)


def _d(row) -> dict[str, Any]:
    return dict(row._mapping)


def _insert(conn: AsyncConnection, table: Table):
    from sqlalchemy.dialects import postgresql, sqlite
    return (postgresql.insert(table) if conn.dialect.name == "postgresql" else sqlite.insert(table))


# --- state --------------------------------------------------------------------------------------

async def get_state(conn: AsyncConnection, hearing_id: int, *, for_update: bool = False) -> dict | None:
    q = select(live_state).where(live_state.c.hearing_id == hearing_id)
    if for_update:
        q = q.with_for_update()
    row = (await conn.execute(q)).first()
    return _d(row) if row else None


async def insert_state(conn: AsyncConnection, values: dict) -> None:
    await conn.execute(insert(live_state).values(**values))


async def update_state(conn: AsyncConnection, hearing_id: int, **values) -> None:
    await conn.execute(update(live_state).where(live_state.c.hearing_id == hearing_id).values(**values))


async def active_states(conn: AsyncConnection) -> list[dict]:
    """Flows not finished (monitoring, reconnecting, ready to resume)."""
    q = select(live_state).where(live_state.c.state.notin_(("stopped", "ended"))).order_by(live_state.c.hearing_id)
    return [_d(r) for r in await conn.execute(q)]


async def verdicts(conn: AsyncConnection, hearing_ids: list[int]) -> dict[int, str]:
    """{hearing_id: live verdict} for the hearings that have been monitored."""
    if not hearing_ids:
        return {}
    q = select(live_state.c.hearing_id, live_state.c.verdict).where(live_state.c.hearing_id.in_(hearing_ids))
    return {h: v for h, v in await conn.execute(q) if v and v != "unknown"}


# --- breaks -------------------------------------------------------------------------------------

async def insert_break(conn: AsyncConnection, values: dict) -> int:
    return (await conn.execute(insert(live_breaks).values(attempts=0, **values)
                               .returning(live_breaks.c.id))).scalar_one()


async def update_break(conn: AsyncConnection, break_id: int, **values) -> None:
    await conn.execute(update(live_breaks).where(live_breaks.c.id == break_id).values(**values))


async def get_break(conn: AsyncConnection, break_id: int) -> dict | None:
    row = (await conn.execute(select(live_breaks).where(live_breaks.c.id == break_id))).first()
    return _d(row) if row else None


async def breaks_for(conn: AsyncConnection, hearing_id: int) -> list[dict]:
    q = select(live_breaks).where(live_breaks.c.hearing_id == hearing_id).order_by(live_breaks.c.id)
    return [_d(r) for r in await conn.execute(q)]


# --- intervals ----------------------------------------------------------------------------------

async def insert_intervals(conn: AsyncConnection, rows: list[dict]) -> None:
    """Store per-second intervals; a second already stored (resend) is left as it is."""
    if not rows:
        return
    stmt = _insert(conn, live_intervals).on_conflict_do_nothing(index_elements=["session_id", "terminal_id", "t"])
    await conn.execute(stmt, rows)


async def recent_intervals(conn: AsyncConnection, hearing_id: int, since: dt.datetime) -> list[dict]:
    q = (select(live_intervals).where(live_intervals.c.hearing_id == hearing_id, live_intervals.c.at >= since)
         .order_by(live_intervals.c.at, live_intervals.c.id))
    return [_d(r) for r in await conn.execute(q)]


async def prune_intervals(conn: AsyncConnection, before: dt.datetime) -> None:
    await conn.execute(delete(live_intervals).where(live_intervals.c.at < before))
