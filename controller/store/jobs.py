"""The scheduler's durable jobs.

A job is a row: `kind`, a unique `key` (so enqueueing the same thing twice is
one job), `payload`, `due_at`, `state` pending -> running -> done | failed |
cancelled, `attempts`, and a lease (`locked_by`, `locked_until`).

- `claim` takes due pending jobs, and running jobs whose lease expired (their
  claimer crashed), marking them running under this owner's lease. On
  PostgreSQL the candidates are selected `FOR UPDATE SKIP LOCKED`, so several
  controllers never claim the same job; on SQLite the claim runs in a
  `BEGIN IMMEDIATE` transaction (one writer at a time), which is the same
  guarantee.
- `finish`, `retry_later` and `fail` are fenced: they change the job only if it
  is still running under this owner's lease, and report whether they did. Call
  them in the same transaction as the job's effects, and roll back when they
  return False (someone else owns the job now): effects happen exactly once.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any

from sqlalchemy import and_, delete, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from contract.vocab import JobState
from controller.store.schema import jobs


def _insert(conn: AsyncConnection):
    return pg_insert(jobs) if conn.dialect.name == "postgresql" else sqlite_insert(jobs)


async def enqueue(conn: AsyncConnection, kind: str, key: str, due_at: dt.datetime, now: dt.datetime,
                  payload: dict[str, Any] | None = None, *, reschedule: bool = False) -> None:
    """Add a job; if `key` exists, leave it (or, with `reschedule`, set it
    pending again at `due_at` unless it is running right now)."""
    stmt = _insert(conn).values(kind=kind, key=key, due_at=due_at, payload=payload or {}, state=JobState.PENDING,
                                attempts=0, created_at=now)
    if reschedule:
        stmt = stmt.on_conflict_do_update(
            index_elements=[jobs.c.key],
            set_={"due_at": stmt.excluded.due_at, "payload": stmt.excluded.payload, "state": JobState.PENDING,
                  "attempts": 0, "last_error": None, "finished_at": None, "locked_by": None,
                  "locked_until": None},
            where=jobs.c.state != JobState.RUNNING)
    else:
        stmt = stmt.on_conflict_do_nothing(index_elements=[jobs.c.key])
    await conn.execute(stmt)


async def claim(conn: AsyncConnection, owner: str, now: dt.datetime, lease: dt.timedelta,
                limit: int = 20) -> list[dict]:
    """Take up to `limit` due jobs (and running ones whose lease expired) under this owner's lease."""
    due = or_(and_(jobs.c.state == JobState.PENDING, jobs.c.due_at <= now),
              and_(jobs.c.state == JobState.RUNNING, jobs.c.locked_until < now))
    q = (select(jobs.c.id).where(due).order_by(jobs.c.due_at, jobs.c.id).limit(limit)
         .with_for_update(skip_locked=True))
    ids = [r.id for r in await conn.execute(q)]
    if not ids:
        return []
    res = await conn.execute(
        update(jobs).where(jobs.c.id.in_(ids), due)
        .values(state=JobState.RUNNING, locked_by=owner, locked_until=now + lease, attempts=jobs.c.attempts + 1)
        .returning(*jobs.c))
    return sorted((dict(r._mapping) for r in res), key=lambda j: (j["due_at"], j["id"]))


def _mine(job_id: int, owner: str):
    return and_(jobs.c.id == job_id, jobs.c.state == JobState.RUNNING, jobs.c.locked_by == owner)


async def finish(conn: AsyncConnection, job_id: int, owner: str, now: dt.datetime) -> bool:
    """The job is done (only while it is still ours); whether it was."""
    res = await conn.execute(update(jobs).where(_mine(job_id, owner)).values(
        state=JobState.DONE, finished_at=now, locked_by=None, locked_until=None))
    return res.rowcount == 1


async def retry_later(conn: AsyncConnection, job_id: int, owner: str, due_at: dt.datetime,
                      error: str | None = None) -> bool:
    """The job runs again at `due_at` (only while it is still ours); whether it was."""
    res = await conn.execute(update(jobs).where(_mine(job_id, owner)).values(
        state=JobState.PENDING, due_at=due_at, last_error=error, locked_by=None, locked_until=None))
    return res.rowcount == 1


async def fail(conn: AsyncConnection, job_id: int, owner: str, now: dt.datetime, error: str) -> bool:
    """The job failed for good, with the error kept (only while it is still ours); whether it was."""
    res = await conn.execute(update(jobs).where(_mine(job_id, owner)).values(
        state=JobState.FAILED, finished_at=now, last_error=error, locked_by=None, locked_until=None))
    return res.rowcount == 1


async def release(conn: AsyncConnection, owner: str) -> int:
    """Running jobs claimed by `owner` become pending again (at their due time)."""
    res = await conn.execute(update(jobs).where(jobs.c.state == JobState.RUNNING, jobs.c.locked_by == owner)
                             .values(state=JobState.PENDING, locked_by=None, locked_until=None))
    return res.rowcount


async def cancel(conn: AsyncConnection, keys: Iterable[str], now: dt.datetime) -> int:
    """Cancel the pending jobs with these keys; how many."""
    keys = list(keys)
    if not keys:
        return 0
    res = await conn.execute(update(jobs).where(jobs.c.key.in_(keys), jobs.c.state == JobState.PENDING)
                             .values(state=JobState.CANCELLED, finished_at=now))
    return res.rowcount


async def prune(conn: AsyncConnection, before: dt.datetime) -> int:
    """Delete jobs that finished (done or cancelled) before `before`; failed ones stay."""
    res = await conn.execute(delete(jobs).where(jobs.c.state.in_((JobState.DONE, JobState.CANCELLED)),
                                                jobs.c.finished_at < before))
    return res.rowcount


async def get(conn: AsyncConnection, key: str) -> dict | None:
    """The job with this key, or None."""
    row = (await conn.execute(select(jobs).where(jobs.c.key == key))).first()
    return dict(row._mapping) if row else None


async def list_jobs(conn: AsyncConnection, *, state: str | None = None, prefix: str | None = None) -> list[dict]:
    """Jobs by id (in a state, with a key prefix, when given)."""
    q = select(jobs).order_by(jobs.c.id)
    if state:
        q = q.where(jobs.c.state == state)
    if prefix:
        q = q.where(jobs.c.key.startswith(prefix, autoescape=True))
    return [dict(r._mapping) for r in await conn.execute(q)]


async def next_due(conn: AsyncConnection) -> dt.datetime | None:
    """When the next pending job is due, or None."""
    return (await conn.execute(select(func.min(jobs.c.due_at)).where(jobs.c.state == JobState.PENDING))).scalar()
