"""Live monitoring of every remote participant and the judge's decisions (issue 13, migration
0011_live_participants; rule 22).

- `live_participants`: the flow of each remote participant after the first, one row per (hearing,
  terminal), the same columns as `live_state` (which keeps the first participant's flow, so that
  everything reading it - the hearing's live verdict, "is this terminal live?" - goes on as before).
- `live_decisions`: the presiding judge's decision on a recommended break, as the secretary
  recorded it: `declared` (a break for technical reasons) or `continued` (a false alarm, kept for
  tuning the detector); one per break.

Declared here, not in schema.py (the same metadata: the migration test compares them too). Every
function takes an open `AsyncConnection` first; the caller owns the transaction.
"""
from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import Column, ForeignKey, Index, Integer, String, Table, Text, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from contract.vocab import LiveState
from controller.store.schema import JSONType, UTCDateTime, metadata, terminals

live_participants = Table(
    "live_participants", metadata,
    Column("hearing_id", Integer, ForeignKey("hearings.id", ondelete="CASCADE"), primary_key=True),
    Column("terminal_id", String(64), primary_key=True),      # the participant (the flow's callee)
    Column("state", String(24), nullable=False),
    Column("verdict", String(16), nullable=False),
    Column("since", UTCDateTime, nullable=False),
    Column("caller", String(64), nullable=True),
    Column("callee", String(64), nullable=True),
    Column("session_id", String(128), nullable=True),
    Column("session_started_at", UTCDateTime, nullable=True),
    Column("break_id", Integer, nullable=True),
    Column("attempt", Integer, nullable=False, default=0),
    Column("next_at", UTCDateTime, nullable=True),
    Column("detector", JSONType, nullable=True),
    Column("stats", JSONType, nullable=False),
    Column("started_at", UTCDateTime, nullable=False),
    Column("ended_at", UTCDateTime, nullable=True),
    Column("updated_at", UTCDateTime, nullable=False),
    Index("ix_live_participants_session_id", "session_id"),
)

live_decisions = Table(
    "live_decisions", metadata,
    Column("break_id", Integer, ForeignKey("live_breaks.id", ondelete="CASCADE"), primary_key=True),
    Column("hearing_id", Integer, ForeignKey("hearings.id", ondelete="CASCADE"), nullable=False),
    Column("decision", String(16), nullable=False),            # declared | continued
    Column("decided_at", UTCDateTime, nullable=False),
    Column("decided_by", Text, nullable=True),
    Index("ix_live_decisions_hearing_id", "hearing_id"),
)

FINISHED = (LiveState.STOPPED, LiveState.ENDED)
p = live_participants.c


def _d(row) -> dict[str, Any]:
    return dict(row._mapping)


# --- the participants' flows -------------------------------------------------------------------

async def get(conn: AsyncConnection, hearing_id: int, terminal_id: str) -> dict | None:
    """A participant's state row, or None."""
    row = (await conn.execute(select(live_participants).where(p.hearing_id == hearing_id,
                                                              p.terminal_id == terminal_id))).first()
    return _d(row) if row else None


async def upsert(conn: AsyncConnection, hearing_id: int, terminal_id: str, values: dict) -> None:
    """Insert or replace a participant's state row."""
    if await get(conn, hearing_id, terminal_id) is None:
        await conn.execute(insert(live_participants).values(hearing_id=hearing_id, terminal_id=terminal_id, **values))
    else:
        await update_state(conn, hearing_id, terminal_id, **values)


async def update_state(conn: AsyncConnection, hearing_id: int, terminal_id: str, **values) -> None:
    """Update columns of a participant's state row."""
    await conn.execute(update(live_participants).where(p.hearing_id == hearing_id, p.terminal_id == terminal_id)
                       .values(**values))


async def of_hearing(conn: AsyncConnection, hearing_id: int) -> list[dict]:
    """The hearing's participant rows (after the first), by terminal."""
    q = select(live_participants).where(p.hearing_id == hearing_id).order_by(p.terminal_id)
    return [_d(r) for r in await conn.execute(q)]


async def active(conn: AsyncConnection) -> list[dict]:
    """The participants' flows not finished."""
    q = select(live_participants).where(p.state.notin_(FINISHED)).order_by(p.hearing_id, p.terminal_id)
    return [_d(r) for r in await conn.execute(q)]


# --- the judge's decisions ------------------------------------------------------------------------

async def decide(conn: AsyncConnection, break_id: int, hearing_id: int, decision: str, at: dt.datetime,
                 by: str | None) -> None:
    """Record the decision on a break."""
    await conn.execute(insert(live_decisions).values(break_id=break_id, hearing_id=hearing_id, decision=decision,
                                                     decided_at=at, decided_by=by))


async def decisions(conn: AsyncConnection, break_ids: list[int]) -> dict[int, dict]:
    """{break_id: decision row} of the given breaks."""
    if not break_ids:
        return {}
    q = select(live_decisions).where(live_decisions.c.break_id.in_(break_ids))
    return {r.break_id: _d(r) for r in await conn.execute(q)}


async def terminal_names(conn: AsyncConnection, ids: list[str]) -> dict[str, str]:
    """{terminal id: its name} of those that exist."""
    wanted = sorted({i for i in ids if i})
    if not wanted:
        return {}
    q = select(terminals.c.id, terminals.c.name).where(terminals.c.id.in_(wanted))
    return {i: n for i, n in await conn.execute(q)}
