"""The scheduler: durable jobs in the database, claimed with a lease, each run
exactly once across restarts and across several controllers.

Model
- A job row (controller.store.jobs) is due at `due_at`. `run_due()` claims a
  batch (PostgreSQL: `FOR UPDATE SKIP LOCKED`; SQLite: one `BEGIN IMMEDIATE`
  writer) and marks each running under this controller's lease.
- A handler does its work and completes the job inside `ctx.complete()`:
  the job's state change is written in the same transaction as the handler's
  effects and is fenced on the lease, so if another controller took the job
  over (this one stalled past its lease), the effects roll back with it.
- A handler that raises is retried with exponential backoff (jitter), up to
  `max_attempts`; then the job is `failed` with the error kept.
- On start nothing special is needed: whatever came due while the controller
  was down is simply due, and jobs a crashed controller had claimed are
  claimed again once their lease has expired. Handlers decide what "late"
  means (e.g. a test that missed its deadline is flagged overdue and still run).

Housekeeping: `every_day(kind, work)` declares a daily job (key: the kind with `:` for `.`) that
runs `work(conn, now)` in its completing transaction, first an hour after the loop starts, then a
day after each run. Built in: `jobs.prune` deletes jobs that finished more than `keep_days` ago
(failed ones are kept); the history's `history.prune` is another (controller.app).

Time comes from `clock()` (a fake clock in tests); the loop sleeps in real
time between polls (`poll_s`).
"""
from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from contract.backoff import backoff_s
from controller.store import jobs as jobs_repo
from controller.store.db import Database
from controller.store.schema import jobs

log = logging.getLogger(__name__)

Clock = Callable[[], dt.datetime]

# A failed job's retry delay (contract.backoff): 2 s, 4 s, 8 s ... up to an hour, jittered in its
# upper half.
RETRY_INITIAL_S, RETRY_MAX_S, RETRY_SPREAD = 2.0, 3600.0, (0.5, 1.0)


class LeaseLost(Exception):
    """The job is no longer ours (its lease expired and another claimer took it)."""


@dataclass
class JobContext:
    """What a job handler gets: the job, the lease owner, the time, and the fenced completion."""
    db: Database
    job: dict
    owner: str
    now: dt.datetime
    completed: bool = field(default=False)

    @property
    def payload(self) -> dict:
        return self.job["payload"]

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncConnection]:
        """A transaction that first makes sure the job is still ours."""
        async with self.db.transaction() as conn:
            if not await _still_mine(conn, self.job["id"], self.owner):
                raise LeaseLost(f"job {self.job['key']} was taken over")
            yield conn

    @asynccontextmanager
    async def complete(self, *, retry_at: dt.datetime | None = None, error: str | None = None,
                       failed: bool = False) -> AsyncIterator[AsyncConnection]:
        """Run the handler's final effects and finish the job in one transaction:
        done (default), pending again at `retry_at`, or failed."""
        async with self.db.transaction() as conn:
            yield conn
            if failed:
                ok = await jobs_repo.fail(conn, self.job["id"], self.owner, self.now, error or "failed")
            elif retry_at is not None:
                ok = await jobs_repo.retry_later(conn, self.job["id"], self.owner, retry_at, error)
            else:
                ok = await jobs_repo.finish(conn, self.job["id"], self.owner, self.now)
            if not ok:
                raise LeaseLost(f"job {self.job['key']} was taken over")
        self.completed = True


async def _still_mine(conn: AsyncConnection, job_id: int, owner: str) -> bool:
    """A cheap early check (no row lock, so no lock-order trouble with the rows
    the handler locks); the fenced completion is what guarantees exactly once."""
    q = select(jobs.c.id).where(jobs.c.id == job_id, jobs.c.state == "running", jobs.c.locked_by == owner)
    return (await conn.execute(q)).first() is not None


Handler = Callable[[JobContext], Awaitable[None]]
PRUNE_KIND = "jobs.prune"


class Scheduler:
    """Runs due jobs under a lease, retries failures with backoff, prunes finished ones."""
    def __init__(self, db: Database, *, owner: str, clock: Clock, handlers: dict[str, Handler],
                 lease_s: float = 60.0, poll_s: float = 1.0, batch: int = 20, max_attempts: int = 20,
                 keep_days: float = 30.0):
        self.db = db
        self.owner = owner
        self.clock = clock
        self.handlers = dict(handlers)
        self.lease = dt.timedelta(seconds=lease_s)
        self.poll_s = poll_s
        self.batch = batch
        self.max_attempts = max_attempts
        self.keep = dt.timedelta(days=keep_days)
        self.daily: list[str] = []
        self.every_day(PRUNE_KIND, self._prune)
        self._wake = asyncio.Event()
        self.runs = 0            # jobs handled by this scheduler (for tests and metrics)
        self.last_round: float | None = None     # time.monotonic() of the last completed round

    def register(self, kind: str, handler: Handler) -> None:
        self.handlers[kind] = handler

    def wake(self) -> None:
        """Look for due jobs now (after enqueueing something due at once)."""
        self._wake.set()

    async def run_due(self) -> int:
        """Claim and run one batch of due jobs; returns how many were handled."""
        now = self.clock()
        async with self.db.transaction() as conn:
            claimed = await jobs_repo.claim(conn, self.owner, now, self.lease, self.batch)
        for job in claimed:
            await self._run_one(job)
        return len(claimed)

    async def run_until_idle(self, max_rounds: int = 100) -> int:
        """Run batches until nothing is due (tests with a fake clock)."""
        total = 0
        for _ in range(max_rounds):
            n = await self.run_due()
            total += n
            if n == 0:
                break
        return total

    async def _run_one(self, job: dict) -> None:
        handler = self.handlers.get(job["kind"])
        ctx = JobContext(self.db, job, self.owner, self.clock())
        try:
            if handler is None:
                raise RuntimeError(f"no handler for job kind {job['kind']!r}")
            await handler(ctx)
            if not ctx.completed:
                async with ctx.complete():
                    pass
        except LeaseLost as exc:
            log.warning("%s", exc)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the job failed; retry with backoff or give up
            log.exception("job %s failed (attempt %d)", job["key"], job["attempts"])
            if ctx.completed:
                return      # it failed after its work was committed: nothing to redo
            error = f"{type(exc).__name__}: {exc}"[:2000]
            try:
                if job["attempts"] >= self.max_attempts:
                    async with ctx.complete(failed=True, error=error):
                        pass
                else:
                    delay = backoff_s(job["attempts"], RETRY_INITIAL_S, RETRY_MAX_S, spread=RETRY_SPREAD)
                    async with ctx.complete(retry_at=ctx.now + dt.timedelta(seconds=delay), error=error):
                        pass
            except LeaseLost as lost:
                log.warning("%s", lost)
        finally:
            self.runs += 1

    def every_day(self, kind: str, work: Callable[[AsyncConnection, dt.datetime], Awaitable[object]]) -> None:
        """A daily job: `work(conn, now)` in the job's completing transaction, then the next run a
        day later (the first: an hour after the loop starts, `run_forever`)."""
        async def handler(ctx: JobContext) -> None:
            async with ctx.complete() as conn:
                await work(conn, ctx.now)
            await self.schedule_daily(kind, ctx.now + dt.timedelta(days=1))
        self.handlers[kind] = handler
        if kind not in self.daily:
            self.daily.append(kind)

    async def schedule_daily(self, kind: str, at: dt.datetime) -> None:
        """(Re)schedule the daily job `kind` at `at`."""
        async with self.db.transaction() as conn:
            await jobs_repo.enqueue(conn, kind, kind.replace(".", ":"), at, self.clock(), reschedule=True)

    async def _prune(self, conn: AsyncConnection, now: dt.datetime) -> None:
        n = await jobs_repo.prune(conn, now - self.keep)
        if n:
            log.info("pruned %d finished job(s)", n)

    async def schedule_prune(self, at: dt.datetime) -> None:
        await self.schedule_daily(PRUNE_KIND, at)

    def state(self) -> str:
        """"off" (loop not started), "ok", or "stalled" (no completed round for
        longer than a lease: the database is failing or a job hangs)."""
        if self.last_round is None:
            return "off"
        stalled = time.monotonic() - self.last_round > max(self.lease.total_seconds(), 10 * self.poll_s)
        return "stalled" if stalled else "ok"

    async def release_own(self) -> int:
        """Give back the jobs this owner had claimed (a restart under a stable
        `instance_id`), so they run now rather than after their lease."""
        async with self.db.transaction() as conn:
            return await jobs_repo.release(conn, self.owner)

    async def run_forever(self) -> None:
        """The loop: run what is due, then sleep until the next poll or a wake-up.
        A database error is logged and retried at the next poll."""
        try:
            released = await self.release_own()
            if released:
                log.info("released %d job(s) claimed before a restart", released)
        except Exception:
            log.exception("could not release earlier claims; they are retried after their lease")
        for kind in self.daily:
            try:
                await self.schedule_daily(kind, self.clock() + dt.timedelta(hours=1))
            except Exception:
                log.exception("could not schedule the daily job %s", kind)
        while True:
            try:
                while await self.run_due():
                    pass
                self.last_round = time.monotonic()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("scheduler round failed; retrying")
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), self.poll_s)
            except TimeoutError:
                pass
