"""The scheduler's durable jobs on SQLite and PostgreSQL: claims, leases,
fencing, and several controllers sharing one database."""
from __future__ import annotations

import asyncio
import datetime as dt
from collections import Counter

import pytest
from sqlalchemy import select

from controller.scheduler import JobContext, Scheduler
from controller.store import jobs, users
from controller.store.db import Database, utcnow
from controller.store.migrate import migrate
from controller.store.schema import audit

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
async def db(db_url):
    d = Database(db_url)
    await migrate(d)
    yield d
    await d.close()


def recorder(label: str, ran: list):
    async def handler(ctx: JobContext) -> None:
        ran.append((label, ctx.job["key"]))
        async with ctx.complete() as conn:      # the effect and the job's end in one transaction
            await users.record(conn, label, "probe", ctx.job["key"], ctx.now)
    return handler


async def effects(db: Database) -> Counter:
    async with db.read() as conn:
        return Counter(r.target for r in await conn.execute(select(audit.c.target)))


async def test_due_jobs_run_once_and_future_ones_wait(db, fake_clock):
    ran: list = []
    s = Scheduler(db, owner="a", clock=fake_clock, handlers={"probe": recorder("a", ran)})
    now = fake_clock()
    async with db.transaction() as conn:
        await jobs.enqueue(conn, "probe", "k1", now, now)
        await jobs.enqueue(conn, "probe", "k1", now, now)                # same key: one job
        await jobs.enqueue(conn, "probe", "k2", now + dt.timedelta(hours=1), now)
    assert await s.run_until_idle() == 1
    assert await s.run_until_idle() == 0
    fake_clock.advance(hours=1)
    assert await s.run_until_idle() == 1
    assert await effects(db) == Counter({"k1": 1, "k2": 1})
    async with db.read() as conn:
        assert {j["key"]: j["state"] for j in await jobs.list_jobs(conn)} == {"k1": "done", "k2": "done"}


async def test_a_crashed_claim_is_taken_over_after_the_lease_and_the_old_owner_is_fenced(db, fake_clock):
    now = fake_clock()
    async with db.transaction() as conn:
        await jobs.enqueue(conn, "probe", "k", now, now)
    lease = dt.timedelta(seconds=60)
    async with db.transaction() as conn:                                  # controller A claims, then dies
        (job,) = await jobs.claim(conn, "A", now, lease)
    ran: list = []
    b = Scheduler(db, owner="B", clock=fake_clock, handlers={"probe": recorder("B", ran)}, lease_s=60)
    assert await b.run_until_idle() == 0                                  # A's lease still holds
    fake_clock.advance(seconds=61)
    assert await b.run_until_idle() == 1
    async with db.transaction() as conn:                                  # A wakes up: too late
        assert await jobs.finish(conn, job["id"], "A", fake_clock()) is False
    assert await effects(db) == Counter({"k": 1})
    async with db.read() as conn:
        (j,) = await jobs.list_jobs(conn)
    assert (j["state"], j["attempts"]) == ("done", 2)


async def test_a_failing_handler_is_retried_with_backoff_then_marked_failed(db, fake_clock):
    calls = []

    async def boom(ctx):
        calls.append(ctx.now)
        raise RuntimeError("broken")
    s = Scheduler(db, owner="a", clock=fake_clock, handlers={"boom": boom}, max_attempts=3)
    now = fake_clock()
    async with db.transaction() as conn:
        await jobs.enqueue(conn, "boom", "b", now, now)
    due = []
    for _ in range(5):
        await s.run_until_idle()
        async with db.read() as conn:
            (j,) = await jobs.list_jobs(conn)
        due.append((j["due_at"] - fake_clock()).total_seconds())
        fake_clock.advance(hours=2)
    assert len(calls) == 3 and j["state"] == "failed" and "broken" in j["last_error"]
    # the retry delays: 2 s then 4 s after the first and second failure, jittered in their upper half
    assert 1.0 <= due[0] <= 2.0 and 2.0 <= due[1] <= 4.0


async def test_effects_roll_back_when_the_lease_was_lost(db, fake_clock):
    """A handler that stalls past its lease: another controller runs the job;
    the stalled one's effects are rolled back with its failed completion."""
    now = fake_clock()
    async with db.transaction() as conn:
        await jobs.enqueue(conn, "probe", "k", now, now)
    other_ran: list = []
    other = Scheduler(db, owner="B", clock=fake_clock, handlers={"probe": recorder("B", other_ran)}, lease_s=10)

    async def slow(ctx: JobContext) -> None:
        fake_clock.advance(seconds=11)
        await other.run_until_idle()                                     # B takes the job over meanwhile
        async with ctx.complete() as conn:
            await users.record(conn, "A", "probe", ctx.job["key"], ctx.now)
    a = Scheduler(db, owner="A", clock=fake_clock, handlers={"probe": slow}, lease_s=10)
    await a.run_until_idle()
    assert other_ran == [("B", "k")]
    assert await effects(db) == Counter({"k": 1})


@pytest.mark.parametrize("n_jobs", [120])
async def test_two_controllers_share_the_work_and_run_each_job_exactly_once(db_url, n_jobs):
    """Two schedulers with their own engines (connection pools) on one database
    race for the same due jobs, in real time."""
    setup = Database(db_url)
    await migrate(setup)
    now = utcnow()
    async with setup.transaction() as conn:
        for i in range(n_jobs):
            await jobs.enqueue(conn, "probe", f"job-{i}", now, now)
    ran: list = []
    dbs = [Database(db_url), Database(db_url)]

    async def slowish(label):
        rec = recorder(label, ran)

        async def handler(ctx):
            await asyncio.sleep(0.001)
            await rec(ctx)
        return handler
    scheds = [Scheduler(d, owner=f"ctl-{i}", clock=utcnow, handlers={"probe": await slowish(f"ctl-{i}")},
                        batch=5) for i, d in enumerate(dbs)]
    try:
        await asyncio.gather(*(s.run_until_idle(max_rounds=1000) for s in scheds))
        counts = await effects(setup)
    finally:
        for d in dbs + [setup]:
            await d.close()
    assert len(counts) == n_jobs and set(counts.values()) == {1}
    assert len(ran) == n_jobs
    by_owner = Counter(label for label, _ in ran)
    if db_url.startswith("postgresql"):
        assert set(by_owner) == {"ctl-0", "ctl-1"}, by_owner       # both did work


async def test_a_restart_under_a_stable_instance_id_takes_its_claims_back_at_once(db, fake_clock):
    now = fake_clock()
    async with db.transaction() as conn:
        await jobs.enqueue(conn, "probe", "k", now, now)
        await jobs.claim(conn, "ctl-1", now, dt.timedelta(minutes=10))   # then the process died
    ran: list = []
    again = Scheduler(db, owner="ctl-1", clock=fake_clock, handlers={"probe": recorder("ctl-1", ran)})
    assert await again.release_own() == 1
    assert await again.run_until_idle() == 1                             # no waiting for the lease
    assert await effects(db) == Counter({"k": 1})


async def test_finished_jobs_are_pruned_after_the_keep_time(db, fake_clock):
    ran: list = []
    s = Scheduler(db, owner="a", clock=fake_clock, handlers={"probe": recorder("a", ran)}, keep_days=30)
    now = fake_clock()
    async with db.transaction() as conn:
        await jobs.enqueue(conn, "probe", "old", now, now)
    await s.run_until_idle()
    await s.schedule_prune(now + dt.timedelta(days=31))
    fake_clock.advance(days=31)
    async with db.transaction() as conn:
        await jobs.enqueue(conn, "probe", "new", fake_clock(), fake_clock())
    await s.run_until_idle()
    async with db.read() as conn:
        left = {j["key"]: j["state"] for j in await jobs.list_jobs(conn)}
    assert "old" not in left and left["new"] == "done"
    assert left["jobs:prune"] == "pending"                               # due again tomorrow
