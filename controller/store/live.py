"""Live monitoring during a hearing (rule 22; migration 0003): the flow's state per hearing,
the breaks, and the per-second intervals of the monitoring sessions.

Like the rest of `controller.store`, every function takes an open `AsyncConnection` first; the
caller owns the transaction. Lock order: the hearing row, then `live_state` (see
`controller.store`).
"""
from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import Table, delete, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from contract.vocab import ACTIVE_HEARING_STATUSES, HearingStatus, HearingVerdict, LiveState
from controller.store.schema import events, hearing_participants, hearings, live_breaks, live_intervals, live_state

# The states of a flow that is over (the others go on).
FINISHED = (LiveState.STOPPED, LiveState.ENDED)


def _d(row) -> dict[str, Any]:
    return dict(row._mapping)


def _insert(conn: AsyncConnection, table: Table):
    from sqlalchemy.dialects import postgresql, sqlite
    return (postgresql.insert(table) if conn.dialect.name == "postgresql" else sqlite.insert(table))


# --- state --------------------------------------------------------------------------------------

async def get_state(conn: AsyncConnection, hearing_id: int, *, for_update: bool = False) -> dict | None:
    """The hearing's state row, or None (`for_update`: locked)."""
    q = select(live_state).where(live_state.c.hearing_id == hearing_id)
    if for_update:
        q = q.with_for_update()
    row = (await conn.execute(q)).first()
    return _d(row) if row else None


async def insert_state(conn: AsyncConnection, values: dict) -> None:
    """Insert the hearing's state row."""
    await conn.execute(insert(live_state).values(**values))


async def update_state(conn: AsyncConnection, hearing_id: int, **values) -> None:
    """Update columns of the hearing's state row."""
    await conn.execute(update(live_state).where(live_state.c.hearing_id == hearing_id).values(**values))


async def active_states(conn: AsyncConnection) -> list[dict]:
    """Flows not finished (monitoring, reconnecting, ready to resume)."""
    q = select(live_state).where(live_state.c.state.notin_(FINISHED)).order_by(live_state.c.hearing_id)
    return [_d(r) for r in await conn.execute(q)]


async def verdicts(conn: AsyncConnection, hearing_ids: list[int]) -> dict[int, str]:
    """{hearing_id: live verdict} for the hearings that have been monitored."""
    if not hearing_ids:
        return {}
    q = select(live_state.c.hearing_id, live_state.c.verdict).where(live_state.c.hearing_id.in_(hearing_ids))
    return {h: v for h, v in await conn.execute(q) if v and v != HearingVerdict.UNKNOWN}


async def hearing_heads(conn: AsyncConnection, hearing_ids: list[int]) -> dict[int, dict]:
    """{hearing_id: {"id", "status", "end_utc", "monitor_end"}} of the hearings that exist, in one
    query. `monitor_end`: the planned end - or, for a hearing a person started later than planned
    (its last `hearing_started`), that start plus its duration: monitoring runs as long."""
    if not hearing_ids:
        return {}
    started = select(func.max(events.c.at)).where(events.c.hearing_id == hearings.c.id,
                                                   events.c.kind == "hearing_started").scalar_subquery()
    q = select(hearings.c.id, hearings.c.status, hearings.c.end_utc, hearings.c.duration_min,
               started.label("started_at")).where(hearings.c.id.in_(hearing_ids))
    out = {}
    for r in await conn.execute(q):
        d = _d(r)
        late = d["started_at"] + dt.timedelta(minutes=d["duration_min"]) if d["started_at"] is not None else None
        d["monitor_end"] = max(d["end_utc"], late) if late is not None else d["end_utc"]
        out[r.id] = d
    return out


async def hearing_terminals(conn: AsyncConnection, hearing_ids: list[int]) -> dict[int, set[str]]:
    """{hearing_id: the terminals taking part - its courtroom terminal and its participants'} of the
    hearings that exist, in two queries (what a terminal may write into, issue 11)."""
    if not hearing_ids:
        return {}
    h, p = hearings.c, hearing_participants.c
    out: dict[int, set[str]] = {}
    for hid, court in await conn.execute(select(h.id, h.court_terminal_id).where(h.id.in_(hearing_ids))):
        out[hid] = {court} if court else set()
    q = select(p.hearing_id, p.terminal_id).where(p.hearing_id.in_(list(out)), p.terminal_id.is_not(None))
    for hid, terminal in await conn.execute(q):
        out[hid].add(terminal)
    return out


async def live_hearings_of(conn: AsyncConnection, terminal_ids: list[str], at: dt.datetime, *,
                           other_than: int | None = None) -> dict[str, int]:
    """{terminal id: the live hearing it takes part in now} for those of `terminal_ids` in one: the
    courtroom terminal or a participant of a hearing in progress (not past its end), or of one whose
    live monitoring (rule 22, `live_state`) goes on - as controller.live knows it. `other_than`: a
    hearing left out (its own checks do not clash with it). The one answer to "may a session take
    this terminal now?" for tests on demand, a hearing's checks and the scheduler's check jobs."""
    h = hearings.c
    monitored = select(live_state.c.hearing_id).where(live_state.c.state.notin_(FINISHED))
    live = or_(h.id.in_(monitored), (h.status == HearingStatus.IN_PROGRESS) & (h.end_utc > at))
    live = live & h.status.in_(ACTIVE_HEARING_STATUSES)
    if other_than is not None:
        live = live & (h.id != other_than)
    out: dict[str, int] = {}
    ids = sorted({t for t in terminal_ids if t})
    q = (select(h.court_terminal_id, h.id).where(live, h.court_terminal_id.in_(ids))
         .union_all(select(hearing_participants.c.terminal_id, h.id)
                    .join(hearing_participants, hearing_participants.c.hearing_id == h.id)
                    .where(live, hearing_participants.c.terminal_id.in_(ids))))
    for terminal_id, hid in sorted(await conn.execute(q)):
        out.setdefault(terminal_id, hid)
    return out


# --- breaks -------------------------------------------------------------------------------------

async def insert_break(conn: AsyncConnection, values: dict) -> int:
    """Insert a break; returns its id."""
    return (await conn.execute(insert(live_breaks).values(attempts=0, **values)
                               .returning(live_breaks.c.id))).scalar_one()


async def update_break(conn: AsyncConnection, break_id: int, **values) -> None:
    """Update columns of a break."""
    await conn.execute(update(live_breaks).where(live_breaks.c.id == break_id).values(**values))


async def get_break(conn: AsyncConnection, break_id: int) -> dict | None:
    """A break row, or None."""
    row = (await conn.execute(select(live_breaks).where(live_breaks.c.id == break_id))).first()
    return _d(row) if row else None


async def breaks_by_id(conn: AsyncConnection, break_ids: list[int]) -> dict[int, dict]:
    """{break_id: row} of the given breaks, in one query."""
    if not break_ids:
        return {}
    return {r.id: _d(r) for r in await conn.execute(select(live_breaks).where(live_breaks.c.id.in_(break_ids)))}


async def breaks_for(conn: AsyncConnection, hearing_id: int) -> list[dict]:
    """The hearing's breaks, oldest first."""
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
    """The hearing's intervals stored since `since`, oldest first."""
    q = (select(live_intervals).where(live_intervals.c.hearing_id == hearing_id, live_intervals.c.at >= since)
         .order_by(live_intervals.c.at, live_intervals.c.id))
    return [_d(r) for r in await conn.execute(q)]


async def prune_intervals(conn: AsyncConnection, before: dt.datetime) -> None:
    """Delete intervals stored before `before`."""
    await conn.execute(delete(live_intervals).where(live_intervals.c.at < before))
