"""The controller's Prometheus metrics, in a registry made per app (no global registry).

docs/metrics.md holds the table of every metric (a test keeps it equal to what /metrics shows).
Three kinds of source:

- `CoreMetrics`: read from the database at scrape time, so every controller sharing a database
  reports the same figures: hearings by verdict, checks by kind and status, overdue checks,
  due scheduler jobs, active suspensions, terminals up and their health.
- `LiveMetrics`: events counted as they happen in this controller: HTTP requests (by route
  pattern, never the path), reports stored (by kind) and their delay, sessions commanded and
  ended, database probe, and the counters issue 5 increments (`count_break`,
  `count_escalation`; label values checked against the bounded sets below).
- `HistoryMetrics` (controller.metrics_history): the last check or test of each terminal pair,
  from the history, at scrape time (bounded: `history.metrics_max_pairs`).
- `_HubCollector`: the agent hub's connections and counters, and the live quality of each
  terminal pair (loss, jitter, RTT, MOS per direction, and the verdict of the last second)
  from the interval reports the hub stores; judged with the shared quality model at scrape
  time, and gone once a pair has sent nothing for `PAIR_STALE_S`.

`setup(app)` wires it all (called by create_app); `render(app)` is the /metrics body;
`attach_systemd(app, notifier)` adds READY/WATCHDOG/STOPPING for `vks-controller serve`.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import platform
import time
from typing import Any

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from pydantic import ValidationError
from sqlalchemy import func, select, text

from contract import quality, sdnotify
from contract.reports import Health, Interval, IntervalBody, SessionBody
from contract.vocab import (
    ACTIVE_HEARING_STATUSES,
    AgentDrop,
    BreakCause,
    Direction,
    HealthStatus,
    ReportKind,
    SessionKind,
    SessionRole,
    Verdict,
    words,
)
from controller.findings import FINDING_CODES
from controller.keys import CLOCK_KEY, DB_KEY, METRICS_KEY
from controller.metrics_history import HistoryMetrics
from controller.store.schema import (
    CHECK_KINDS,
    CHECK_STATUSES,
    VERDICTS,
    checks,
    hearings,
    jobs,
    suspensions,
    terminals,
)

log = logging.getLogger(__name__)

ACTIVE = tuple(s.value for s in ACTIVE_HEARING_STATUSES)
SESSION_KINDS = words(SessionKind)
REPORT_KINDS = words(ReportKind)
COMMAND_OUTCOMES = ("started", "unavailable")
SESSION_ENDS = ("finished", "failed", "stopped")
# A terminal's health as its heartbeats tell it; "unknown" when none tells (or no agent is up).
HEALTH_STATUSES = (*words(HealthStatus), "unknown")
LINK_VERDICTS = words(Verdict)
# Issue 5 (rule 22: breaks; rules 16, 17: escalations). Bounded label values.
BREAK_REASONS = words(BreakCause)
ESCALATION_LEVELS = ("technicians", "organiser")
ESCALATION_TRIGGERS = ("test_failed", "preconnect_failed", "reconnect_failed", "test_retries_failed", "agent_offline",
                       "terminal_unhealthy", "self_check_failed", "not_fixed", "cannot_fix")
# Issue 11: why something a terminal sent was not written (controller.agent_writes).
AGENT_DROP_REASONS = words(AgentDrop)
# What a diagnosis found (issue 12, which side: controller.findings).
DIAGNOSIS_FINDINGS = tuple(str(c) for c in FINDING_CODES)
HTTP_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")
# A pair that sent no interval for this long has no live quality.
PAIR_STALE_S = 15.0
PROBE_PERIOD_S = 5.0
PROBE_TIMEOUT_S = 10.0
DELAY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 3600.0)
HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def _version() -> str:
    try:
        from importlib.metadata import version
        return version("vks-connectivity")
    except Exception:
        return "unknown"


class CoreMetrics:
    """Figures of the rules, read from the database when scraped."""

    def __init__(self, registry: CollectorRegistry):
        self.registry = registry
        self.hearings = Gauge("vks_hearings", "Active hearings not yet ended, by operability verdict (rule 3)",
                              ["verdict"], registry=registry)
        self.overdue = Gauge("vks_checks_overdue", "Checks past their deadline without a result (rules 13, 15)",
                             ["kind"], registry=registry)
        self.jobs_due = Gauge("vks_scheduler_jobs_due", "Scheduler jobs due and not yet run", registry=registry)
        self.checks = Gauge("vks_checks", "Checks of active hearings not yet ended, by kind and status",
                            ["kind", "status"], registry=registry)
        self.suspensions = Gauge("vks_suspensions_active", "Suspensions in force now (rule 24)",
                                 registry=registry)
        self.terminals_up = Gauge("vks_terminal_up",
                                  "1 while the terminal's agent is connected to a controller (live lease)",
                                  ["terminal"], registry=registry)
        self.terminal_health = Gauge("vks_terminal_health_level",
                                     "Terminal health (rule 14) from its heartbeats: 0 ok, 1 warn, 2 fail; "
                                     "absent when unknown", ["terminal"], registry=registry)
        self.terminals_by_health = Gauge("vks_terminals_health", "Registered terminals by health status",
                                         ["status"], registry=registry)
        for v in VERDICTS:
            self.hearings.labels(verdict=v)
        for k in CHECK_KINDS:
            self.overdue.labels(kind=k)
            for s in CHECK_STATUSES:
                self.checks.labels(kind=k, status=s)
        for s in HEALTH_STATUSES:
            self.terminals_by_health.labels(status=s)

    async def refresh(self, app: web.Application) -> None:
        from controller.store.agents import agent_presence
        now = app[CLOCK_KEY]()
        active = (hearings.c.status.in_(ACTIVE)) & (hearings.c.end_utc > now)
        async with app[DB_KEY].read() as conn:
            by_verdict: dict[str, int] = dict((await conn.execute(
                select(hearings.c.verdict, func.count()).where(active).group_by(hearings.c.verdict))).all())
            overdue: dict[str, int] = dict((await conn.execute(
                select(checks.c.kind, func.count()).where(checks.c.overdue_at.is_not(None),
                                                          checks.c.status.not_in(("passed", "failed", "cancelled")))
                .group_by(checks.c.kind))).all())
            due = (await conn.execute(select(func.count()).select_from(jobs).where(
                jobs.c.state == "pending", jobs.c.due_at <= now))).scalar_one()
            by_status = {(k, s): n for k, s, n in (await conn.execute(
                select(checks.c.kind, checks.c.status, func.count())
                .select_from(checks.join(hearings, checks.c.hearing_id == hearings.c.id))
                .where(active).group_by(checks.c.kind, checks.c.status))).all()}
            s = suspensions.c
            in_force = (await conn.execute(select(func.count()).select_from(suspensions).where(
                s.lifted_at.is_(None), s.from_utc <= now,
                (s.until_utc.is_(None)) | (s.until_utc > now)))).scalar_one()
            p = agent_presence.c
            presence = (await conn.execute(
                select(terminals.c.id, p.controller_id, p.lease_until, p.health)
                .select_from(terminals.outerjoin(agent_presence, agent_presence.c.terminal_id == terminals.c.id))
            )).all()
        for v in VERDICTS:
            self.hearings.labels(verdict=v).set(by_verdict.get(v, 0))
        for k in CHECK_KINDS:
            self.overdue.labels(kind=k).set(overdue.get(k, 0))
            for st in CHECK_STATUSES:
                self.checks.labels(kind=k, status=st).set(by_status.get((k, st), 0))
        self.jobs_due.set(due)
        self.suspensions.set(in_force)
        self._terminals(presence, now)

    def _terminals(self, presence, now) -> None:
        counts = dict.fromkeys(HEALTH_STATUSES, 0)
        self.terminals_up.clear()
        self.terminal_health.clear()
        for terminal_id, holder, lease_until, health in presence:
            up = holder is not None and lease_until is not None and lease_until > now
            self.terminals_up.labels(terminal=terminal_id).set(1 if up else 0)
            status = _health_status(health) if up else "unknown"
            counts[status] += 1
            if status != "unknown":
                self.terminal_health.labels(terminal=terminal_id).set(HEALTH_STATUSES.index(status))
        for st, n in counts.items():
            self.terminals_by_health.labels(status=st).set(n)


def _health_status(raw: str | None) -> str:
    """The status of a stored health payload (JSON text); "unknown" when there is none."""
    if not raw:
        return "unknown"
    try:
        status = Health.model_validate_json(raw).status
    except ValidationError:
        return "unknown"
    return "unknown" if status is None else status


class LiveMetrics:
    """Events of this controller, counted as they happen."""

    def __init__(self, registry: CollectorRegistry):
        r = registry
        self.build = Info("vks_controller_build", "Controller build and runtime versions", registry=r)
        self.build.info({"version": _version(), "python": platform.python_version()})
        self.http_requests = Counter("vks_controller_http_requests_total",
                                     "HTTP requests by method, route pattern and status",
                                     ["method", "route", "status"], registry=r)
        self.http_seconds = Histogram("vks_controller_http_request_duration_seconds",
                                      "Time to answer an HTTP request (WebSockets excluded)",
                                      buckets=HTTP_BUCKETS, registry=r)
        self.reports = Counter("vks_controller_reports_stored_total", "Agent reports stored, by kind",
                               ["kind"], registry=r)
        self.duplicates = Counter("vks_controller_reports_duplicate_total",
                                  "Agent reports received again after they were stored (stored once, acked again)",
                                  registry=r)
        self.report_delay = Histogram("vks_controller_report_delay_seconds",
                                      "From the agent creating a report to it being stored here (includes time in "
                                      "the agent's outbox; agent clocks are checked by the health check)",
                                      ["kind"], buckets=DELAY_BUCKETS, registry=r)
        self.commanded = Counter("vks_controller_sessions_commanded_total",
                                 "Sessions the controller asked two agents to run, by kind and outcome",
                                 ["kind", "outcome"], registry=r)
        self.ended = Counter("vks_controller_sessions_ended_total", "Sessions ended, by kind and outcome",
                             ["kind", "outcome"], registry=r)
        self.db_up = Gauge("vks_controller_database_up", "1 when the last database probe succeeded",
                           registry=r)
        self.db_errors = Counter("vks_controller_database_errors_total",
                                 "Database probes and scrapes that failed", registry=r)
        self.breaks = Counter("vks_breaks_total", "Breaks for technical reasons declared (rule 22)", ["reason"],
                              registry=r)
        self.resumes = Counter("vks_resumes_total", "Hearings resumed after a break (rule 22)", registry=r)
        self.escalations = Counter("vks_escalations_total", "Escalations raised (rules 16, 17)",
                                   ["level", "trigger"], registry=r)
        self.agent_drops = Counter("vks_controller_agent_writes_dropped_total",
                                   "What terminals sent and may not write (another's session or hearing) or "
                                   "over their budget of records, by reason; not stored", ["reason"], registry=r)
        self.diagnoses = Counter("vks_controller_diagnoses_total", "Degraded or failed checks and tests whose "
                                 "sides were tested against the reference terminal, by finding", ["finding"],
                                 registry=r)
        for finding in DIAGNOSIS_FINDINGS:
            self.diagnoses.labels(finding=finding)
        for kind in REPORT_KINDS:
            self.reports.labels(kind=kind)
            self.report_delay.labels(kind=kind)
        for kind in SESSION_KINDS:
            for o in COMMAND_OUTCOMES:
                self.commanded.labels(kind=kind, outcome=o)
            for o in SESSION_ENDS:
                self.ended.labels(kind=kind, outcome=o)
        for reason in BREAK_REASONS:
            self.breaks.labels(reason=reason)
        for level in ESCALATION_LEVELS:
            for trigger in ESCALATION_TRIGGERS:
                self.escalations.labels(level=level, trigger=trigger)
        for reason in AGENT_DROP_REASONS:
            self.agent_drops.labels(reason=reason)
        self.db_up.set(1)
        self.db_ok = True

    # ---- for issue 5 ----

    def count_break(self, reason: str) -> None:
        if reason not in BREAK_REASONS:
            raise ValueError(f"break reason {reason!r} is not one of {BREAK_REASONS}")
        self.breaks.labels(reason=reason).inc()

    def count_resume(self) -> None:
        self.resumes.inc()

    def count_agent_drop(self, reason: str) -> None:
        """Something a terminal sent was not written (issue 11; controller.agent_writes.Drops)."""
        if reason not in AGENT_DROP_REASONS:
            raise ValueError(f"agent drop reason {reason!r} is not one of {AGENT_DROP_REASONS}")
        self.agent_drops.labels(reason=reason).inc()

    def count_diagnosis(self, finding: str) -> None:
        """A diagnosis is done (issue 12; controller.diagnosis)."""
        if finding not in DIAGNOSIS_FINDINGS:
            raise ValueError(f"finding {finding!r} is not one of {DIAGNOSIS_FINDINGS}")
        self.diagnoses.labels(finding=finding).inc()

    def count_escalation(self, level: str, trigger: str) -> None:
        if level not in ESCALATION_LEVELS or trigger not in ESCALATION_TRIGGERS:
            raise ValueError(f"escalation ({level!r}, {trigger!r}) is not one of {ESCALATION_LEVELS} x "
                             f"{ESCALATION_TRIGGERS}")
        self.escalations.labels(level=level, trigger=trigger).inc()


def _never_raises(method):
    """A metrics hook must never break the hub's loops (its report writer above all)."""
    import functools

    @functools.wraps(method)
    def wrapper(*args, **kwargs):
        try:
            method(*args, **kwargs)
        except Exception:
            log.exception("metrics: %s failed", method.__name__)
    return wrapper


class HubObserver:
    """What the agent hub (controller.hub) tells the metrics; the app gives it to the hub it builds.
    Its methods never raise."""

    def __init__(self, live: LiveMetrics):
        self.live = live
        # (terminal, peer) -> (monotonic time, session kind, interval)
        self.pairs: dict[tuple[str, str], tuple[float, SessionKind, Interval]] = {}

    @_never_raises
    def reports_stored(self, reports: list, duplicates: int | None = None) -> None:
        """`reports`: the wire.Report messages of a committed batch, with their terminal:
        [(terminal_id, report)]."""
        now_wall, now = time.time(), time.monotonic()
        of_kind: dict[str, tuple[Any, Any]] = {}       # the labelled children, looked up once a batch
        for terminal_id, m in reports:
            children = of_kind.get(m.kind)
            if children is None:
                children = of_kind[m.kind] = (self.live.reports.labels(kind=m.kind),
                                              self.live.report_delay.labels(kind=m.kind))
            children[0].inc()
            if m.created_at is not None:
                children[1].observe(max(0.0, now_wall - m.created_at))
            body = m.body
            if not isinstance(body, IntervalBody | SessionBody) or body.role != SessionRole.CALLER or body.peer is None:
                continue
            pair = (terminal_id, body.peer)
            if isinstance(body, IntervalBody):
                if body.interval is not None:
                    self.pairs[pair] = (now, body.session_kind or SessionKind.TEST, body.interval)
            else:
                self.pairs.pop(pair, None)       # the session is over: no live quality
        if duplicates:
            self.live.duplicates.inc(duplicates)

    @_never_raises
    def session_commanded(self, kind: str, outcome: str) -> None:
        if kind in SESSION_KINDS and outcome in COMMAND_OUTCOMES:
            self.live.commanded.labels(kind=kind, outcome=outcome).inc()

    @_never_raises
    def session_ended(self, kind: str | None, outcome: str) -> None:
        kind = kind if kind in SESSION_KINDS else "test"
        if outcome in SESSION_ENDS:
            self.live.ended.labels(kind=kind, outcome=outcome).inc()


class _HubCollector(Collector):
    """The hub's state and the live pair quality, read when scraped."""

    def __init__(self, app: web.Application, observer: HubObserver):
        self.app = app
        self.observer = observer

    def describe(self):
        return []

    def _judge_with(self, session_kind: SessionKind):
        # The quality model the app loaded at start (the configured file, read once); none yet: no MOS.
        profiles = self.app.get(THRESHOLDS_KEY) or {}
        name = "monitor" if session_kind == SessionKind.MONITOR else "hearing"
        return profiles.get(name) or next(iter(profiles.values()), None)

    def collect(self):
        hub = _hub(self.app)
        stats = getattr(hub, "stats", None)
        connected = GaugeMetricFamily("vks_controller_agents_connected",
                                      "Agents holding a WebSocket to this controller")
        connected.add_metric([], len(hub.local()) if hub is not None else 0)
        yield connected
        for name, attr, help_ in (
                ("vks_controller_agent_connections", "connections_total", "Agent WebSocket connections accepted"),
                ("vks_controller_agent_auth_failures", "auth_failures_total", "Agent connections refused: bad token"),
                ("vks_controller_agent_busy_refusals", "busy_refusals_total",
                 "Agent connections refused busy (too many handshakes at once)"),
                ("vks_controller_agent_backpressure_waits", "backpressure_waits_total",
                 "Agent messages not read at once: the hub's queue_max reports were waiting to be stored"),
                ("vks_controller_agent_messages_rejected", "rejected_messages_total",
                 "Agent messages refused (malformed, forbidden)"),
                ("vks_controller_report_store_errors", "store_errors_total",
                 "Report batches the database refused (retried; agents keep their outboxes)")):
            c = CounterMetricFamily(name, help_)
            c.add_metric([], getattr(stats, attr, 0) if stats is not None else 0)
            yield c
        yield from self._pairs()

    def _pairs(self):
        from contract import quality
        pd = ["terminal", "peer", "direction"]
        loss = GaugeMetricFamily("vks_link_loss_ratio", "Live loss of a terminal pair's last second (0..1)",
                                 labels=pd)
        jitter = GaugeMetricFamily("vks_link_jitter_seconds", "Live RFC 3550 jitter of the last second",
                                   labels=pd)
        mos = GaugeMetricFamily("vks_link_mos", "Live E-model MOS of the last second", labels=pd)
        rtt = GaugeMetricFamily("vks_link_rtt_seconds", "Live round-trip time of the last second",
                                labels=["terminal", "peer"])
        verdict = GaugeMetricFamily("vks_link_verdict", "Live verdict of the last second: 1 for the current one",
                                    labels=["terminal", "peer", "verdict"])
        now = time.monotonic()
        for pair, (at, kind, iv) in list(self.observer.pairs.items()):
            if now - at > PAIR_STALE_S:
                self.observer.pairs.pop(pair, None)
                continue
            terminal, peer = pair
            th = self._judge_with(kind)
            if iv.rtt_ms is not None:
                rtt.add_metric([terminal, peer], iv.rtt_ms / 1000.0)
            for d in (Direction.INBOUND, Direction.OUTBOUND):
                side = iv.side(d)
                if side is None:
                    continue
                lr = 1.0 if side.stalled else side.loss_ratio
                if lr is not None:
                    loss.add_metric([terminal, peer, d], lr)
                if side.jitter_ms is not None:
                    jitter.add_metric([terminal, peer, d], side.jitter_ms / 1000.0)
                if th is not None and lr is not None:
                    j = quality.judge(quality.Figures(rtt_ms=iv.rtt_ms, jitter_ms=side.jitter_ms, loss_ratio=lr), th)
                    if j.mos is not None:
                        mos.add_metric([terminal, peer, d], j.mos)
            if th is not None:
                v = quality.judge_interval(iv, th).verdict
                for name in LINK_VERDICTS:
                    verdict.add_metric([terminal, peer, name], 1.0 if name == v else 0.0)
        yield from (loss, jitter, rtt, mos, verdict)


def _hub(app: web.Application):
    from controller.agent_api import HUB_KEY  # here: agent_api imports the hub, which imports us
    return app.get(HUB_KEY)


CORE_METRICS_KEY = web.AppKey("core_metrics", CoreMetrics)
LIVE_METRICS_KEY = web.AppKey("live_metrics", LiveMetrics)
HISTORY_METRICS_KEY = web.AppKey("history_metrics", HistoryMetrics)
HUB_OBSERVER_KEY = web.AppKey("hub_observer", HubObserver)
WATCHDOG_KEY = web.AppKey("watchdog", sdnotify.Watchdog)
# The quality model's profiles, loaded once by the app at start (controller.app.load_quality_model).
THRESHOLDS_KEY: web.AppKey[dict[str, quality.Thresholds]] = web.AppKey("thresholds")


def _route_of(request: web.Request) -> str:
    route = request.match_info.route
    resource = route.resource if route is not None else None
    return resource.canonical if resource is not None else "unmatched"


@web.middleware
async def http_metrics_middleware(request: web.Request, handler):
    """Counts each HTTP request by method, route pattern and status, and times it."""
    live = request.app[LIVE_METRICS_KEY]
    method = request.method if request.method in HTTP_METHODS else "other"
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        route = _route_of(request)
        live.http_requests.labels(method=method, route=route, status=str(status)).inc()
        if not request.headers.get("Upgrade", "").lower() == "websocket":
            live.http_seconds.observe(time.perf_counter() - started)


def setup(app: web.Application) -> None:
    """The app's metrics: a fresh registry, the three sources, the middleware, the probe loop."""
    disable_created_metrics()     # no `_created` series (a library switch; Prometheus 2 ignores them)
    registry = CollectorRegistry()
    app[METRICS_KEY] = registry
    app[CORE_METRICS_KEY] = CoreMetrics(registry)
    app[HISTORY_METRICS_KEY] = HistoryMetrics(registry)      # the last check per pair (issue 12)
    live = app[LIVE_METRICS_KEY] = LiveMetrics(registry)
    observer = app[HUB_OBSERVER_KEY] = HubObserver(live)
    registry.register(_HubCollector(app, observer))
    app.middlewares.append(http_metrics_middleware)
    app.cleanup_ctx.append(_monitor_ctx)


async def _probe(app: web.Application) -> None:
    live = app[LIVE_METRICS_KEY]
    try:
        async with app[DB_KEY].read() as conn:
            await asyncio.wait_for(conn.execute(text("SELECT 1")), PROBE_TIMEOUT_S)
        live.db_ok = True
        live.db_up.set(1)
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        if live.db_ok:
            log.error("database probe failed: %s", exc)
        live.db_ok = False
        live.db_up.set(0)
        live.db_errors.inc()


async def _monitor_ctx(app: web.Application):
    """The database probe every PROBE_PERIOD_S; each probe that completes (well or not: a
    hang is what the watchdog is for) is the progress heartbeat of systemd's watchdog."""
    watchdog = app.get(WATCHDOG_KEY)
    beat = watchdog.heartbeat("database-probe", PROBE_PERIOD_S + PROBE_TIMEOUT_S + 15.0) if watchdog else None

    async def loop() -> None:
        while True:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(_probe(app), PROBE_TIMEOUT_S + 5.0)
            if beat is not None:
                beat.beat()
            await asyncio.sleep(PROBE_PERIOD_S)

    tasks = [asyncio.create_task(loop(), name="metrics-probe")]
    if watchdog is not None:
        tasks.append(asyncio.create_task(watchdog.run(), name="watchdog"))
    try:
        yield
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def attach_systemd(app: web.Application, notifier: sdnotify.Notifier) -> None:
    """For `vks-controller serve`: the watchdog (pings while the database probe loop and the
    event loop make progress) and STOPPING=1 at shutdown. READY=1 is the caller's, once
    listening (`notifier.ready()`)."""
    app[WATCHDOG_KEY] = sdnotify.Watchdog(notifier)

    async def stopping(app: web.Application) -> None:
        notifier.stopping()

    app.on_shutdown.insert(0, stopping)


async def render(app: web.Application) -> tuple[bytes, str]:
    """The /metrics body and its content type (the database figures refreshed first)."""
    try:
        await app[CORE_METRICS_KEY].refresh(app)
        await app[HISTORY_METRICS_KEY].refresh(app)
    except Exception as exc:        # the database is away: show what this controller knows
        log.warning("metrics: database figures not refreshed: %s", exc)
        app[LIVE_METRICS_KEY].db_errors.inc()
        app[LIVE_METRICS_KEY].db_up.set(0)
    return generate_latest(app[METRICS_KEY]), CONTENT_TYPE_LATEST
