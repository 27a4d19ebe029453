"""The controller's core Prometheus metrics, in a registry made per app (no
global registry). Values are read from the database at scrape time, so every
controller sharing a database reports the same figures.

| metric                      | type  | labels  | meaning                                               |
|-----------------------------|-------|---------|-------------------------------------------------------|
| vks_hearings                | gauge | verdict | active hearings not yet ended, by operability verdict |
| vks_checks_overdue          | gauge | kind    | checks flagged overdue and still without a result     |
| vks_scheduler_jobs_due      | gauge |         | jobs due now and not yet run                          |
"""
from __future__ import annotations

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Gauge, generate_latest
from sqlalchemy import func, select

from controller.keys import CLOCK_KEY, DB_KEY, METRICS_KEY
from controller.store.schema import CHECK_KINDS, VERDICTS, checks, hearings, jobs

ACTIVE = ("scheduled", "in_progress", "postponed")


class CoreMetrics:
    def __init__(self, registry: CollectorRegistry):
        self.registry = registry
        self.hearings = Gauge("vks_hearings", "Active hearings not yet ended, by operability verdict (rule 3)",
                              ["verdict"], registry=registry)
        self.overdue = Gauge("vks_checks_overdue", "Checks past their deadline without a result (rules 13, 15)",
                             ["kind"], registry=registry)
        self.jobs_due = Gauge("vks_scheduler_jobs_due", "Scheduler jobs due and not yet run", registry=registry)
        for v in VERDICTS:
            self.hearings.labels(verdict=v)
        for k in CHECK_KINDS:
            self.overdue.labels(kind=k)

    async def refresh(self, app: web.Application) -> None:
        now = app[CLOCK_KEY]()
        async with app[DB_KEY].read() as conn:
            by_verdict = dict((await conn.execute(
                select(hearings.c.verdict, func.count()).where(hearings.c.status.in_(ACTIVE), hearings.c.end_utc > now)
                .group_by(hearings.c.verdict))).all())
            overdue = dict((await conn.execute(
                select(checks.c.kind, func.count()).where(checks.c.overdue_at.is_not(None),
                                                          checks.c.status.not_in(("passed", "failed", "cancelled")))
                .group_by(checks.c.kind))).all())
            due = (await conn.execute(select(func.count()).select_from(jobs).where(
                jobs.c.state == "pending", jobs.c.due_at <= now))).scalar_one()
        for v in VERDICTS:
            self.hearings.labels(verdict=v).set(by_verdict.get(v, 0))
        for k in CHECK_KINDS:
            self.overdue.labels(kind=k).set(overdue.get(k, 0))
        self.jobs_due.set(due)


CORE_METRICS_KEY = web.AppKey("core_metrics", CoreMetrics)


def setup(app: web.Application) -> None:
    registry = CollectorRegistry()
    app[METRICS_KEY] = registry
    app[CORE_METRICS_KEY] = CoreMetrics(registry)


async def render(app: web.Application) -> tuple[bytes, str]:
    await app[CORE_METRICS_KEY].refresh(app)
    return generate_latest(app[METRICS_KEY]), CONTENT_TYPE_LATEST
