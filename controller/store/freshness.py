"""The reads behind fresh results (controller.freshness): the pairs and terminals of the hearings
ahead, when a pair was last tested, and where each terminal's agent is. No table of its own: the
state lives in the scheduler's jobs (controller.store.jobs), the checks, the events and the
escalations.
"""
from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable
from dataclasses import dataclass, field

from sqlalchemy import delete, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from contract.vocab import CheckStatus, EscalationState
from controller.store.hearings import ACTIVE_STATUSES
from controller.store.schema import (
    agent_presence,
    checks,
    escalations,
    events,
    hearing_participants,
    hearings,
    institutions,
    jobs,
)


@dataclass
class Pair:
    """A courtroom terminal (the caller of its hearings' checks) and a remote one, with the court's time
    zone and their active hearings starting in the period asked about (nearest first)."""
    caller: str
    callee: str
    timezone: str
    hearings: list[tuple[int, dt.datetime]] = field(default_factory=list)


async def pairs_ahead(conn: AsyncConnection, since: dt.datetime, until: dt.datetime,
                      caller: str | None = None, callee: str | None = None) -> list[Pair]:
    """Every (courtroom terminal, participant terminal) pair of an active hearing starting in
    [since, until] (only the one pair when `caller` and `callee` are given)."""
    h, p = hearings.c, hearing_participants.c
    q = (select(h.court_terminal_id, p.terminal_id, institutions.c.timezone, h.id, h.start_utc)
         .join(hearing_participants, p.hearing_id == h.id).join(institutions, institutions.c.id == h.court_id)
         .where(h.status.in_(ACTIVE_STATUSES), h.start_utc >= since, h.start_utc <= until)
         .order_by(h.court_terminal_id, p.terminal_id, h.start_utc, h.id))
    if caller is not None:
        q = q.where(h.court_terminal_id == caller, p.terminal_id == callee)
    out: dict[tuple[str, str], Pair] = {}
    for a, b, tz, hid, start in await conn.execute(q):
        out.setdefault((a, b), Pair(a, b, tz)).hearings.append((hid, start))
    return list(out.values())


async def terminals_ahead(conn: AsyncConnection, since: dt.datetime, until: dt.datetime) -> dict[str, list[int]]:
    """{terminal id: its active hearings starting in [since, until]} - the courtroom terminal and
    every participant."""
    h, p = hearings.c, hearing_participants.c
    active = (h.status.in_(ACTIVE_STATUSES), h.start_utc >= since, h.start_utc <= until)
    q = (select(h.court_terminal_id, h.id).where(*active)
         .union_all(select(p.terminal_id, h.id).join(hearing_participants, p.hearing_id == h.id).where(*active)))
    out: dict[str, list[int]] = {}
    for tid, hid in sorted(await conn.execute(q)):
        if hid not in out.setdefault(tid, []):
            out[tid].append(hid)
    return out


async def last_tested(conn: AsyncConnection, a: str, b: str, hearing_ids: Iterable[int]) -> dt.datetime | None:
    """When the pair (either way round) last finished a test: a check of a hearing, or a nightly pair
    test recorded on one of `hearing_ids` (event pair_test_result)."""
    c = checks.c
    pair = or_((c.caller == a) & (c.callee == b), (c.caller == b) & (c.callee == a))
    q = select(c.finished_at).where(pair, c.status.in_((CheckStatus.PASSED, CheckStatus.FAILED)),
                                    c.finished_at.is_not(None))
    times = [t for (t,) in await conn.execute(q)]
    ids = list(hearing_ids)
    if ids:
        q2 = select(events.c.at, events.c.detail).where(events.c.hearing_id.in_(ids),
                                                         events.c.kind == "pair_test_result")
        times += [at for at, d in await conn.execute(q2) if {d.get("caller"), d.get("callee")} == {a, b}]
    return max(times, default=None)


async def checking(conn: AsyncConnection, terminal_ids: Iterable[str]) -> bool:
    """Whether a check of a hearing is running on any of these terminals now."""
    ids = list(terminal_ids)
    c = checks.c
    q = select(c.id).where(c.status == CheckStatus.RUNNING, or_(c.caller.in_(ids), c.callee.in_(ids))).limit(1)
    return (await conn.execute(q)).first() is not None


@dataclass(frozen=True)
class Presence:
    """Where a terminal's agent is, as the watch sees it."""
    online: bool
    last_seen: dt.datetime | None
    health: dict | None


async def presence_at(conn: AsyncConnection, terminal_ids: Iterable[str], now: dt.datetime) -> dict[str, Presence]:
    """{terminal id: Presence} at `now` (a live lease on any controller is online); a terminal that
    never connected has no entry."""
    pc = agent_presence.c
    q = select(pc.terminal_id, pc.controller_id, pc.lease_until, pc.last_seen, pc.health).where(
        pc.terminal_id.in_(sorted(set(terminal_ids))))
    out = {}
    for tid, holder, lease_until, last_seen, health in await conn.execute(q):
        online = bool(holder and lease_until and lease_until > now)
        out[tid] = Presence(online, last_seen, json.loads(health) if health else None)
    return out


async def open_escalations(conn: AsyncConnection, causes: Iterable[str]) -> list[dict]:
    """Unresolved escalations of these causes."""
    q = select(escalations).where(escalations.c.cause.in_(list(causes)),
                                  escalations.c.state != EscalationState.RESOLVED)
    return [dict(r._mapping) for r in await conn.execute(q)]


async def resolved_by_person(conn: AsyncConnection, hearing_id: int, cause: str, terminal_id: str,
                             since: dt.datetime | None) -> bool:
    """Whether a person resolved an escalation of this hearing, cause and terminal (after `since`)."""
    e = escalations.c
    q = select(e.detail, e.resolved_at).where(e.hearing_id == hearing_id, e.cause == cause,
                                              e.state == EscalationState.RESOLVED, e.resolved_by != "system")
    return any(d.get("terminal_id") == terminal_id and (since is None or at >= since)
               for d, at in await conn.execute(q))


async def forget_jobs(conn: AsyncConnection, keys: Iterable[str]) -> None:
    """Delete the jobs with these keys unless one is running (a counter kept in a job's payload
    starts again)."""
    await conn.execute(delete(jobs).where(jobs.c.key.in_(list(keys)), jobs.c.state != "running"))
