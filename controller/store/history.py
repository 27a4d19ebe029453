"""The history of every check and test (issue 12, migration 0009): one row per result, kept for
`history.keep_days`, direction-agnostic - the worse of the two directions - so that a terminal's or a
pair's figures can be followed day by day.

- `measurements`: the table (declared here, not in schema.py; the same metadata, so the migration
  test compares it too).
- `figures(report)`: (loss_ratio, jitter_ms, rtt_ms, capacity_kbps) of a `vks.test-report/1`.
- `record(conn, ...)`: a row, written in the transaction that stores the check's or the test's
  result; `record_check`, `record_session` (a test on demand, by its session).
- `rows_of_terminal`, `rows_of_pair`: the rows since a time; `daily(rows, tz)`: the items of
  GET .../history - per local day, the count and nearest-rank percentiles.
- `prune(conn, before)`: delete what is older than the retention; `pruner(keep_days)`: the daily
  job's work (`PRUNE_KIND`).
- `last_per_pair(conn, since, limit)`: the latest row of each pair checked since (the metrics).
"""
from __future__ import annotations

import datetime as dt
import logging
import math
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import (
    Column,
    Float,
    Index,
    Integer,
    String,
    Table,
    and_,
    case,
    delete,
    func,
    insert,
    or_,
    select,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from contract import quality
from contract.reports import SessionReport, figure
from contract.vocab import Direction, MeasurementKind, SessionKind
from controller.store.schema import CheckConstraint, UTCDateTime, _in, agent_sessions, metadata

measurements = Table(
    "measurements", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", UTCDateTime, nullable=False),                 # when the result was stored
    Column("caller", String(64), nullable=False),              # terminal ids (no foreign key: the
    Column("callee", String(64), nullable=False),              # history outlives a removed terminal)
    Column("kind", String(16), nullable=False),
    Column("check_id", Integer, nullable=True),                # a hearing's check (each re-run a row)
    Column("test_id", String(128), nullable=True, unique=True),  # a test on demand: its session id
    Column("verdict", String(16), nullable=True),
    Column("loss_ratio", Float, nullable=True),                # the worse direction
    Column("jitter_ms", Float, nullable=True),                 # the worse direction
    Column("rtt_ms", Float, nullable=True),
    Column("capacity_kbps", Float, nullable=True),             # the lower direction, when measured
    CheckConstraint(_in("kind", MeasurementKind), name="kind"),
    Index("ix_measurements_caller_at", "caller", "at"),
    Index("ix_measurements_callee_at", "callee", "at"),
    Index("ix_measurements_at", "at"),
)

m = measurements.c
log = logging.getLogger(__name__)
ADHOC_PREFIX = "adhoc-"      # controller.api.tests.PREFIX: the session id of a test on demand


def _max(values: Iterable[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return max(known) if known else None


def capacity_kbps(capacity: Any) -> float | None:
    """The lower of `capacity.outbound.kbps` and `capacity.inbound.kbps` (those given); None
    without a capacity measurement."""
    if not isinstance(capacity, Mapping):
        return None
    kbps = [d.get("kbps") for d in (capacity.get("outbound"), capacity.get("inbound")) if isinstance(d, Mapping)]
    known = [float(k) for k in kbps if isinstance(k, int | float) and not isinstance(k, bool)]
    return min(known) if known else None


def figures(report: SessionReport) -> dict[str, float | None]:
    """{loss_ratio, jitter_ms, rtt_ms, capacity_kbps} of a report, as the quality model reads them
    (contract.quality.judge_report): the worse direction's loss and p95 jitter, the RTT's p95."""
    loss, jitter = [], []
    for direction in Direction:
        d = report.direction(direction)
        if d is None:
            continue
        loss.append(quality._loss_ratio(d))
        jitter.append(quality._report_jitter(d, report.intervals, direction))
    return {"loss_ratio": _max(loss), "jitter_ms": _max(jitter),
            "rtt_ms": figure(report.rtt_ms, "p95", "mean", "p50", "max"),
            "capacity_kbps": capacity_kbps(report.dump().get("capacity"))}


async def record(conn: AsyncConnection, *, at: dt.datetime, caller: str, callee: str, kind: str,
                 report: SessionReport, verdict: str | None, check_id: int | None = None,
                 test_id: str | None = None) -> int:
    """Keep one result; its id."""
    values = {"at": at, "caller": caller, "callee": callee, "kind": MeasurementKind(kind), "check_id": check_id,
              "test_id": test_id, "verdict": verdict, **figures(report)}
    return (await conn.execute(insert(measurements).values(**values).returning(m.id))).scalar_one()


async def record_check(conn: AsyncConnection, check: dict, report: SessionReport, verdict: str | None,
                       at: dt.datetime) -> int:
    """Keep a check's result (controller.checks, in the transaction that stores it on the check)."""
    return await record(conn, at=at, caller=check["caller"], callee=check["callee"], kind=check["kind"],
                        report=report, verdict=verdict, check_id=check["id"])


async def record_session(conn: AsyncConnection, session_id: str, report: SessionReport,
                         judge: Callable[[SessionReport, str | None], Any], at: dt.datetime) -> bool:
    """Keep the result of a test on demand (POST /api/v1/tests) by its session, judged (`judge`:
    controller.checks.Judge) by the profile it ran with: whether the session is one (a result of
    another, unknown session is not kept). Kept once per session."""
    if not session_id.startswith(ADHOC_PREFIX):
        return False
    s = (await conn.execute(select(agent_sessions).where(agent_sessions.c.session_id == session_id))).first()
    if s is None or s.kind != SessionKind.TEST:
        return False
    if (await conn.execute(select(m.id).where(m.test_id == session_id))).first() is None:
        await record(conn, at=at, caller=s.caller, callee=s.callee, kind=MeasurementKind.ADHOC, report=report,
                     verdict=judge(report, s.profile).verdict, test_id=session_id)
    return True


async def rows_of_terminal(conn: AsyncConnection, terminal_id: str, since: dt.datetime) -> list[dict]:
    """The rows of a terminal (as caller or callee) since `since`, oldest first."""
    q = (select(measurements).where(or_(m.caller == terminal_id, m.callee == terminal_id), m.at >= since)
         .order_by(m.at, m.id))
    return [dict(r._mapping) for r in await conn.execute(q)]


async def rows_of_pair(conn: AsyncConnection, a: str, b: str, since: dt.datetime) -> list[dict]:
    """The rows of a pair, either terminal calling, since `since`, oldest first."""
    pair = or_(and_(m.caller == a, m.callee == b), and_(m.caller == b, m.callee == a))
    q = select(measurements).where(pair, m.at >= since).order_by(m.at, m.id)
    return [dict(r._mapping) for r in await conn.execute(q)]


def percentile(values: Iterable[float], q: float) -> float | None:
    """Nearest-rank percentile (q in (0, 1]); None for no values (as contract.quality.p95)."""
    xs = sorted(values)
    if not xs:
        return None
    return xs[max(0, math.ceil(q * len(xs)) - 1)]


def since_local(now: dt.datetime, days: int, tz: ZoneInfo) -> dt.datetime:
    """The start (UTC) of the local day `days - 1` days before today in `tz`: `days` local days
    up to now, today included."""
    first = now.astimezone(tz).date() - dt.timedelta(days=days - 1)
    return dt.datetime.combine(first, dt.time(), tzinfo=tz).astimezone(dt.UTC)


def daily(rows: Iterable[dict], tz: ZoneInfo) -> list[dict[str, Any]]:
    """Per local day in `tz` with a result: {day, checks, loss_ratio_p50, loss_ratio_p95,
    jitter_ms_p50, jitter_ms_p95, rtt_ms_p50, rtt_ms_p95, capacity_kbps_p50}, by day. A percentile
    of a figure no result of the day has is None."""
    days: dict[dt.date, list[dict]] = {}
    for r in rows:
        days.setdefault(r["at"].astimezone(tz).date(), []).append(r)
    out = []
    for day in sorted(days):
        rs = days[day]
        item: dict[str, Any] = {"day": day.isoformat(), "checks": len(rs)}
        for key in ("loss_ratio", "jitter_ms", "rtt_ms", "capacity_kbps"):
            vals = [float(r[key]) for r in rs if r[key] is not None]
            item[f"{key}_p50"] = percentile(vals, 0.5)
            if key != "capacity_kbps":
                item[f"{key}_p95"] = percentile(vals, 0.95)
        out.append(item)
    return out


async def prune(conn: AsyncConnection, before: dt.datetime) -> int:
    """Delete the rows older than `before`; how many."""
    return (await conn.execute(delete(measurements).where(m.at < before))).rowcount or 0


PRUNE_KIND = "history.prune"   # the daily job (controller.scheduler.Scheduler.every_day)


def pruner(keep_days: int) -> Callable[[AsyncConnection, dt.datetime], Awaitable[int]]:
    """The daily job's work: delete what is older than `keep_days` days."""
    async def work(conn: AsyncConnection, now: dt.datetime) -> int:
        n = await prune(conn, now - dt.timedelta(days=keep_days))
        if n:
            log.info("pruned %d result(s) older than %d days from the history", n, keep_days)
        return n
    return work


async def last_per_pair(conn: AsyncConnection, since: dt.datetime, limit: int) -> tuple[list[dict], int]:
    """(the latest row of each pair - unordered, given as `a` < `b` - with a result since `since`,
    the `limit` most recently checked; how many pairs more there were)."""
    lo = case((m.caller < m.callee, m.caller), else_=m.callee)
    hi = case((m.caller < m.callee, m.callee), else_=m.caller)
    last = select(func.max(m.id).label("id")).where(m.at >= since).group_by(lo, hi).subquery()
    total = (await conn.execute(select(func.count()).select_from(last))).scalar_one()
    q = (select(measurements).where(m.id.in_(select(last.c.id))).order_by(m.at.desc(), m.id.desc()).limit(limit))
    out = []
    for r in await conn.execute(q):
        d = dict(r._mapping)
        out.append({**d, "a": min(d["caller"], d["callee"]), "b": max(d["caller"], d["callee"])})
    return out, max(0, total - len(out))
