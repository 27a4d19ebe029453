"""The application factory: `create_app(settings)` used by the CLI and the tests.

State lives under AppKeys (controller.keys): settings, database, clock,
gateway (default: OfflineGateway; the agent side replaces it), results
(CheckService), scheduler, metrics registry. `cleanup_ctx` migrates the
database (when `migrate_on_start`), starts the scheduler loop, and on shutdown
cancels and awaits it and disposes of the engine.

The agent-facing side plugs in through `controller.agent_api.setup(app)` when
that module exists (called here before the app is frozen; it may replace
`app[GATEWAY_KEY]`, add routes and its own cleanup_ctx, and read
`app[RESULTS_KEY]` / `app[DB_KEY]`).
"""
from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import importlib
import importlib.util
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from aiohttp import web

from controller import api, escalation, escalation_api, live, metrics
from controller import web as web_ui
from controller.checks import CheckService, Judge, quality_judge, report_verdict
from controller.gateway import AgentGateway, AgentUnavailable, OfflineGateway
from controller.keys import CLOCK_KEY, DB_KEY, GATEWAY_KEY, METRICS_KEY, RESULTS_KEY, SCHEDULER_KEY, SETTINGS_KEY
from controller.scheduler import Scheduler
from controller.settings import ControllerSettings
from controller.store.db import Database, utcnow
from controller.store.migrate import migrate

log = logging.getLogger(__name__)

# The keys are re-exported here: `from controller.app import create_app, GATEWAY_KEY, RESULTS_KEY`.
__all__ = ["create_app", "CLOCK_KEY", "DB_KEY", "GATEWAY_KEY", "METRICS_KEY", "RESULTS_KEY", "SCHEDULER_KEY",
           "SETTINGS_KEY"]


def default_judge() -> Judge:
    """The shared quality model with configs/thresholds.yaml; the report's own
    verdict when the model or its thresholds cannot be loaded."""
    try:
        return quality_judge()
    except Exception as exc:
        log.warning("quality model unavailable (%s); using the reports' own verdicts", exc)
        return report_verdict


def create_app(settings: ControllerSettings, *, clock: Callable[[], dt.datetime] = utcnow,
               gateway: AgentGateway | None = None, judge: Judge | None = None,
               run_scheduler: bool = True, agents: bool = True) -> web.Application:
    app = web.Application(client_max_size=settings.max_body_bytes)
    db = Database(settings.db)
    if db.dialect == "sqlite":
        Path(db.engine.url.database).parent.mkdir(parents=True, exist_ok=True)
    app[SETTINGS_KEY] = settings
    app[DB_KEY] = db
    app[CLOCK_KEY] = clock
    hub_wiring = _agent_side() if agents and gateway is None else None
    app[GATEWAY_KEY] = gateway or (hub_wiring[0](app) if hub_wiring else OfflineGateway())
    scheduler = Scheduler(db, owner=settings.owner_id(), clock=clock, handlers={},
                          lease_s=settings.scheduler.lease_s, poll_s=settings.scheduler.poll_s,
                          batch=settings.scheduler.batch, max_attempts=settings.scheduler.max_attempts)
    checks = CheckService(db, settings, clock, lambda: app[GATEWAY_KEY], judge or report_verdict)
    checks.register(scheduler)
    app[RESULTS_KEY] = checks
    app[SCHEDULER_KEY] = scheduler
    metrics.setup(app)
    escalation.setup(app)          # rules 16-18: escalation, notifications, acts
    api.setup_routes(app, extra=[*web_ui.routes(), *escalation_api.ROUTES, *live.routes()])
    web_ui.setup(app)
    app.cleanup_ctx.append(_lifecycle(run_scheduler, judge is None))
    if hub_wiring:
        hub_wiring[1](app, settings)
    live.setup(app)                # rule 22: monitoring during hearings (after the hub)
    return app


class _HubGateway:
    """The gateway while the agent hub runs inside this app: the hub is made at
    startup (it needs the open database), so calls look it up then."""

    def __init__(self, app: web.Application, hub_key):
        self._app, self._key = app, hub_key

    def _hub(self):
        hub = self._app.get(self._key)
        if hub is None:
            raise AgentUnavailable("the agent hub is not running")
        return hub

    async def start_session(self, **kw) -> None:
        await self._hub().start_session(**kw)

    async def stop_session(self, session_id: str) -> None:
        hub = self._app.get(self._key)
        if hub is not None:
            await hub.stop_session(session_id)

    def online(self) -> set[str]:
        hub = self._app.get(self._key)
        return hub.online() if hub is not None else set()


def _agent_side():
    """(make_gateway(app), setup(app, settings)) when the agent side
    (controller.agent_api, controller.hub) is present, else None."""
    if importlib.util.find_spec("controller.agent_api") is None:
        return None
    agent_api = importlib.import_module("controller.agent_api")
    hub_mod = importlib.import_module("controller.hub")
    if not hasattr(agent_api, "setup_agent_api"):
        return None

    def make_gateway(app):
        return _HubGateway(app, agent_api.HUB_KEY)

    def setup(app, settings):
        agent_api.setup_agent_api(app, lambda a: hub_mod.Hub(a[DB_KEY], instance_id=settings.owner_id(),
                                                             results=a[RESULTS_KEY]))
    return make_gateway, setup


def _lifecycle(run_scheduler: bool, load_judge: bool):
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        settings, db = app[SETTINGS_KEY], app[DB_KEY]
        if settings.migrate_on_start:
            rev = await migrate(db)
            log.info("database at revision %s", rev)
        if load_judge:
            app[RESULTS_KEY].judge = await asyncio.to_thread(default_judge)
        task = asyncio.create_task(app[SCHEDULER_KEY].run_forever(), name="scheduler") if run_scheduler else None
        try:
            yield
        finally:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await db.close()
    return ctx
