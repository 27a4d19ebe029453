"""The application factory: `create_app(settings)` used by the CLI and the tests.

State lives under AppKeys (controller.keys): settings, database, clock, gateway, results
(CheckService), scheduler, metrics registry, the agent hub, live monitoring. Everything is built
here, each part with what it needs:

- the agent hub (controller.hub) when the app serves agents: it is the gateway the checks and live
  monitoring command sessions through, and it tells the check service, live monitoring and the
  metrics what the agents report;
- live monitoring (controller.live): its intake is the hub's listener, its service runs the flows;
- without agents (`agents=False`, or a `gateway` given by a test) the gateway is that one, or
  OfflineGateway.

`cleanup_ctx`, in order: load the quality model first - the thresholds file read once, its default
profile judging the checks and its live profile live monitoring (missing or invalid: a ConfigError
naming the file, and the controller does not start), then the database (closed last), the metrics'
probe and the notifier, migrate the database (when `migrate_on_start`) and run the job scheduler; start
the hub; start live monitoring. At shutdown the reverse: live monitoring,
the hub (its sockets are closed first, at on_shutdown), the scheduler (cancelled and awaited), the
metrics' probe, the database.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from aiohttp import web
from sqlalchemy.exc import DBAPIError

from contract import quality
from contract.jobs import scheduler as background
from controller import agent_api, api, freshness, metrics, metrics_site, notify
from controller import web as web_ui
from controller.acts import ActService
from controller.agent_writes import Drops, EventBudget
from controller.agreements import AgreementNotices
from controller.api import live as live_api
from controller.checks import CheckService, Judge, quality_judge
from controller.diagnosis import DiagnosisService
from controller.escalation import ACTS_KEY, ESCALATIONS_KEY, NOTIFIER_KEY, EscalationService
from controller.gateway import AgentGateway, OfflineGateway
from controller.hub import Hub
from controller.keys import (
    CLOCK_KEY,
    DB_KEY,
    DIAGNOSIS_KEY,
    GATEWAY_KEY,
    HUB_KEY,
    LIVE_KEY,
    METRICS_KEY,
    RESULTS_KEY,
    SCHEDULER_KEY,
    SETTINGS_KEY,
)
from controller.live.intake import LiveIntake
from controller.live.machine import Machine
from controller.live.service import LiveService
from controller.scheduler import Scheduler
from controller.selfcheck import api as selfcheck_api
from controller.selfcheck import page as selfcheck_page
from controller.selfcheck import service as selfcheck_service
from controller.settings import ControllerSettings
from controller.store import history as history_repo
from controller.store.db import Database, utcnow
from controller.store.migrate import migrate

log = logging.getLogger(__name__)

# The keys are re-exported here: `from controller.app import create_app, GATEWAY_KEY, RESULTS_KEY`.
__all__ = ["create_app", "load_quality_model", "CLOCK_KEY", "DB_KEY", "GATEWAY_KEY", "HUB_KEY", "LIVE_KEY",
           "METRICS_KEY", "RESULTS_KEY", "SCHEDULER_KEY", "SETTINGS_KEY"]


def load_quality_model(settings: ControllerSettings) -> tuple[dict[str, quality.Thresholds], quality.Thresholds,
                                                                quality.Thresholds]:
    """The settings' thresholds file (default: the packaged one), read once: (every profile, for the
    metrics' live MOS; the profile the checks judge by; the live monitoring profile). A missing or
    invalid file, or a profile it lacks, is a configfile.ConfigError naming it - never a fallback to
    the agents' own verdicts."""
    path = settings.thresholds_file or quality.DEFAULT_PATH
    profiles = quality.load_thresholds(path)
    return (profiles, quality.select(profiles, None, path),
            quality.select(profiles, settings.live.thresholds_profile, path))


def create_app(settings: ControllerSettings, *, clock: Callable[[], dt.datetime] = utcnow,
               gateway: AgentGateway | None = None, judge: Judge | None = None,
               run_scheduler: bool = True, agents: bool = True) -> web.Application:
    """The controller's app. Tests may pass a clock, a gateway (then no hub), a judge (else the
    quality model is loaded at start), and leave the scheduler loop or the agent hub out."""
    app = web.Application(client_max_size=settings.max_body_bytes)
    db = Database(settings.db)
    if db.dialect == "sqlite" and db.engine.url.database:
        Path(db.engine.url.database).parent.mkdir(parents=True, exist_ok=True)
    app[SETTINGS_KEY] = settings
    app[DB_KEY] = db
    app[CLOCK_KEY] = clock
    jobs = Scheduler(db, owner=settings.owner_id(), clock=clock, handlers={},
                     lease_s=settings.scheduler.lease_s, poll_s=settings.scheduler.poll_s,
                     batch=settings.scheduler.batch, max_attempts=settings.scheduler.max_attempts)
    app[SCHEDULER_KEY] = jobs
    jobs.every_day(history_repo.PRUNE_KIND, history_repo.pruner(settings.history.keep_days))  # issue 12
    metrics.setup(app)
    # Rules 16-18: escalation, its notifications and the act (drafted at step 2).
    notifier = app[NOTIFIER_KEY] = notify.Notifier(settings)
    acts = app[ACTS_KEY] = ActService()
    escalations = app[ESCALATIONS_KEY] = EscalationService(
        db, settings, clock, notifier, acts=acts, count=app[metrics.LIVE_METRICS_KEY].count_escalation)
    escalations.register(jobs)
    AgreementNotices(settings, notifier).register(jobs)        # rules 11, 12: coordinators told
    checks = CheckService(db, settings, clock, lambda: app[GATEWAY_KEY], judge, escalations=escalations)
    checks.register(jobs)
    app[RESULTS_KEY] = checks
    # Issue 12 part 5: re-tests before the hearing, nightly pair tests, retries, the terminal watch.
    fresh = app[freshness.FRESH_KEY] = freshness.FreshnessService(db, settings, clock, checks, escalations)
    fresh.register(jobs)
    checks.diagnosis = app[DIAGNOSIS_KEY] = DiagnosisService(
        db, settings, clock, lambda: app[GATEWAY_KEY], lambda: checks.judge,
        count=app[metrics.LIVE_METRICS_KEY].count_diagnosis)

    # Issue 11: what a terminal sent and may not write is counted (and logged once a minute);
    # the records its reports create are within its budget.
    drops = Drops(app[metrics.LIVE_METRICS_KEY].count_agent_drop)
    budget = EventBudget(settings.agent_link.events_per_minute, settings.agent_link.events_burst)
    intake = LiveIntake(Machine(settings.live), clock, budget=budget, drops=drops)
    hub = None
    if agents and gateway is None:
        hub = Hub(db, instance_id=settings.owner_id(), results=checks, live=intake,
                  metrics=app[metrics.HUB_OBSERVER_KEY], drops=drops)
    app[GATEWAY_KEY] = gateway or hub or OfflineGateway()
    app[LIVE_KEY] = LiveService(db, settings.live, intake, gateway=app[GATEWAY_KEY], messenger=hub,
                                results=checks, escalate=escalations.open,
                                metrics=app[metrics.LIVE_METRICS_KEY])

    # Issue 14: self-check links of mobile participants (a failed one escalates like a failed check).
    app[selfcheck_service.SELFCHECKS_KEY] = selfcheck_service.SelfCheckService(
        db, settings.selfcheck, clock, escalations, lambda: app[metrics.THRESHOLDS_KEY])
    api.setup_routes(app, extra=[*web_ui.routes(), *live_api.ROUTES, *selfcheck_api.ROUTES])
    web_ui.setup(app)
    selfcheck_page.setup(app)
    # First: a controller without its quality model does not start (before anything else does).
    app.cleanup_ctx.insert(0, _quality_model(judge is None))
    # The engine is disposed only once everything that reads through it has stopped: the metrics'
    # probe (registered by metrics.setup above) reading after dispose() would open a connection in
    # a fresh pool nobody closes, left to the garbage collector (Connection.__del__ in a later test).
    app.cleanup_ctx.insert(1, _database)
    app.cleanup_ctx.append(_lifecycle(run_scheduler))
    app.cleanup_ctx.append(freshness.ctx)
    app.cleanup_ctx.append(_notifier)
    if hub is not None:
        agent_api.setup_agent_api(app, hub)
    app.cleanup_ctx.append(_diagnosis)
    app.cleanup_ctx.append(_live)  # rule 22: monitoring during hearings (after the hub)
    app.cleanup_ctx.append(selfcheck_service.ctx)  # the self-checks' peers closed at shutdown
    app.cleanup_ctx.append(metrics_site.ctx)  # the /metrics token and metrics.listen's own site
    return app


def _quality_model(use: bool):
    """Read the quality model once, in a thread: the checks judge by the profile they ran with (its
    default for a media profile it lacks; unless a test gave its own judge), live monitoring by its
    own profile, the metrics by the same file."""
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        profiles, checks_th, live_th = await asyncio.to_thread(load_quality_model, app[SETTINGS_KEY])
        app[metrics.THRESHOLDS_KEY] = profiles
        if use:
            app[RESULTS_KEY].use_judge(quality_judge(profiles, checks_th))
        app[LIVE_KEY].intake.use(live_th)
        yield
    return ctx


def _lifecycle(run_scheduler: bool):
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        settings, db = app[SETTINGS_KEY], app[DB_KEY]
        jobs = background("app")
        try:
            if settings.migrate_on_start:
                rev = await migrate(db)
                log.info("database at revision %s", rev)
            if run_scheduler:
                await jobs.spawn(app[SCHEDULER_KEY].run_forever(), name="scheduler")
            yield
        finally:
            await jobs.close()
    return ctx


async def _database(app: web.Application) -> AsyncIterator[None]:
    """Close the database last, after every part that uses it (see create_app)."""
    yield
    await app[DB_KEY].close()


async def _notifier(app: web.Application) -> AsyncIterator[None]:
    notifier = app[NOTIFIER_KEY]
    await notifier.start()
    try:
        yield
    finally:
        await notifier.close()


async def _diagnosis(app: web.Application) -> AsyncIterator[None]:
    try:
        await app[DIAGNOSIS_KEY].sweep()
    except DBAPIError:  # a database not migrated (a test app without migrations): nothing to sweep
        log.debug("diagnosis sweep skipped", exc_info=True)
    yield
    await app[DIAGNOSIS_KEY].close()


async def _live(app: web.Application) -> AsyncIterator[None]:
    svc = app[LIVE_KEY]
    await svc.start()
    try:
        yield
    finally:
        await svc.close()
