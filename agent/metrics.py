"""The agent's Prometheus metrics (docs/metrics.md has the table; a test keeps them equal).

One `AgentMetrics` per daemon or responder app, each with its own `CollectorRegistry` (no
global registry). It measures nothing itself: it is fed what the session engine and the
health check already produce.

- `metrics.session(kind, role, peer)` -> `SessionObserver`: `interval(iv)` with each per-second
  interval (`on_interval`), `end(outcome, report)` with the final report (caller: the
  `vks.test-report/1` dict; callee: its receive-side summary). Gauges show the last second of a
  running session (NaN once it ended); counters add each second once.
- `metrics.observe_health(result)` with each `vks.health/1` result.
- `metrics.bind_outbox(outbox)`, `metrics.bind_link(link)`: read at scrape time.
- `render()` -> (body, content type); `metrics_app(metrics)` / `serve(metrics, listen)` for the
  daemon's own endpoint, `install_responder(app, metrics)` for the responder's app.
- `Monitor`: the daemon's metrics endpoint, periodic health check (shared with the link's
  heartbeats), and the systemd notifications (contract.sdnotify).

Labels are bounded: direction (inbound/outbound), kind (test/preconnect/monitor), role
(caller/callee), verdict, outcome, status, peer (a terminal id, "direct" for the responder's
sessions whose caller is not known by id). Never a session id.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import platform
import time
import weakref
from collections.abc import Callable, Iterable, Mapping
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

from contract import sdnotify

log = logging.getLogger(__name__)

DIRECTIONS = ("inbound", "outbound")
KINDS = ("test", "preconnect", "monitor")
ROLES = ("caller", "callee")
VERDICTS = ("good", "degraded", "unusable")
OUTCOMES = ("finished", "not_connected", "failed", "cancelled")
HEALTH_STATUSES = ("ok", "warn", "fail", "unknown")
REPORT_KINDS = ("session", "interval", "health")
RESPONDER_PEER = "direct"
CONNECT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 15.0)
NAN = float("nan")


def _num(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return None if math.isnan(v) else float(v)


def _version() -> str:
    try:
        from importlib.metadata import version
        return version("vks-connectivity")
    except Exception:
        return "unknown"


def _aiortc_version() -> str:
    try:
        from importlib.metadata import version
        return version("aiortc")
    except Exception:
        return "unknown"


class AgentMetrics:
    def __init__(self, *, terminal_id: str = "", thresholds_path=None,
                 profile_thresholds: Mapping[str, str] | None = None, peers: Iterable[str] = (),
                 health: bool = True):
        """`profile_thresholds`: media profile -> threshold profile (for the live MOS and
        verdict of each second); `peers`: terminals whose label sets exist from the start;
        `health`: expose the health gauges (the daemon checks health; the responder does not)."""
        # No `_created` series: they double the series count and Prometheus 2 ignores them.
        # (A library switch, read when a metric is made; the same for every registry.)
        disable_created_metrics()
        self.registry = r = CollectorRegistry()
        self._thresholds_path = thresholds_path
        self._profile_thresholds = dict(profile_thresholds or {})
        self._thresholds: dict | None = None

        self.build = Info("vks_agent_build", "Agent build and runtime versions", registry=r)
        self.build.info({"version": _version(), "aiortc": _aiortc_version(),
                         "python": platform.python_version(), "terminal": terminal_id})

        # Sessions
        self.started = Counter("vks_agent_sessions_started_total", "Test/monitoring sessions started",
                               ["kind", "role"], registry=r)
        self.ended = Counter("vks_agent_sessions_ended_total", "Sessions ended, by outcome",
                             ["kind", "role", "outcome"], registry=r)
        self.active = Gauge("vks_agent_sessions_active", "Sessions running now", ["role"], registry=r)
        self.verdicts = Counter("vks_agent_session_verdicts_total",
                                "Final verdicts of the sessions this agent called", ["kind", "verdict"],
                                registry=r)
        self.connect = Histogram("vks_agent_session_connect_seconds",
                                 "Connect time of called sessions (offer to media flowing)", ["kind"],
                                 buckets=CONNECT_BUCKETS, registry=r)
        for kind in KINDS:
            self.connect.labels(kind=kind)
            for role in ROLES:
                self.started.labels(kind=kind, role=role)
                for outcome in OUTCOMES:
                    self.ended.labels(kind=kind, role=role, outcome=outcome)
            for verdict in VERDICTS:
                self.verdicts.labels(kind=kind, verdict=verdict)
        for role in ROLES:
            self.active.labels(role=role)

        # Live link quality, per peer (and direction)
        pd = ["peer", "direction"]
        self.loss = Gauge("vks_agent_link_loss_ratio", "Packet loss in the last second (0..1)", pd, registry=r)
        self.jitter = Gauge("vks_agent_link_jitter_seconds", "RFC 3550 jitter in the last second", pd,
                            registry=r)
        self.mos = Gauge("vks_agent_link_mos", "E-model MOS (1..4.5) of the last second", pd, registry=r)
        self.rtt = Gauge("vks_agent_link_rtt_seconds", "Round-trip time in the last second (probes)",
                         ["peer"], registry=r)
        self.packets = Counter("vks_agent_link_packets_received_total", "RTP packets received", pd,
                               registry=r)
        self.lost = Counter("vks_agent_link_packets_lost_total", "RTP packets lost", pd, registry=r)
        self.bytes = Counter("vks_agent_link_received_bytes_total",
                             "RTP bytes received (rate x 8 = bitrate)", pd, registry=r)
        self.stalls = Counter("vks_agent_link_stalled_seconds_total",
                              "Seconds in which no packet arrived while media was flowing", pd, registry=r)
        self.seconds = Counter("vks_agent_link_seconds_total",
                               "Seconds of session by live verdict (the shared quality model)",
                               ["peer", "verdict"], registry=r)
        self._peers: set[str] = set()
        for peer in peers:
            self._peer_labels(peer)

        # Terminal health (rule 14): registered only where health is checked.
        hr = r if health else CollectorRegistry()
        self.health_status = Gauge("vks_agent_health_status",
                                   "Terminal health: 1 for the current status, 0 for the others", ["status"],
                                   registry=hr)
        for s in HEALTH_STATUSES:
            self.health_status.labels(status=s).set(1 if s == "unknown" else 0)
        self.cpu = Gauge("vks_agent_health_cpu_ratio", "CPU busy (0..1)", registry=hr)
        self.memory = Gauge("vks_agent_health_memory_used_ratio", "Memory used (0..1)", registry=hr)
        self.disk = Gauge("vks_agent_health_disk_used_ratio", "Disk used (0..1) per checked mount",
                          ["mount"], registry=hr)
        self.problems = Gauge("vks_agent_health_problems", "Problems found by the last health check",
                              registry=hr)
        self.camera = Gauge("vks_agent_health_camera_present", "1 when a camera is present", registry=hr)
        self.microphone = Gauge("vks_agent_health_microphone_present", "1 when a microphone is present",
                                registry=hr)
        self.clock_offset = Gauge("vks_agent_health_clock_offset_seconds",
                                  "Clock offset from the time source (NaN unknown)", registry=hr)
        self.health_checks = Counter("vks_agent_health_checks_total", "Health checks run", registry=hr)
        self.health_time = Gauge("vks_agent_health_last_check_timestamp_seconds",
                                 "Unix time of the last health check", registry=hr)
        for g in (self.cpu, self.memory, self.problems, self.camera, self.microphone, self.clock_offset):
            g.set(NAN)

        self._bound = _BoundCollector()
        self._bound_registered = False

    # ---- sessions ----

    def _peer_labels(self, peer: str) -> None:
        self._peers.add(peer)
        self.rtt.labels(peer=peer).set(NAN)
        for d in DIRECTIONS:
            for g in (self.loss, self.jitter, self.mos):
                g.labels(peer=peer, direction=d).set(NAN)
            for c in (self.packets, self.lost, self.bytes, self.stalls):
                c.labels(peer=peer, direction=d)
        for v in VERDICTS:
            self.seconds.labels(peer=peer, verdict=v)

    def thresholds_for(self, profile: str | None):
        """The threshold profile that judges a session of media profile `profile` (None: unknown)."""
        if self._thresholds is None:
            try:
                from contract import quality
                self._thresholds = quality.load_thresholds(self._thresholds_path)
            except Exception as exc:       # metrics must not break a session
                log.warning("metrics: thresholds not loaded (%s): no live MOS or verdicts", exc)
                self._thresholds = {}
        name = self._profile_thresholds.get(profile or "", None) or self._profile_thresholds.get("", "hearing")
        return self._thresholds.get(name)

    def session(self, kind: str, role: str, peer: str, profile: str | None = None) -> SessionObserver:
        kind = kind if kind in KINDS else "test"
        self.started.labels(kind=kind, role=role).inc()
        self.active.labels(role=role).inc()
        if peer not in self._peers:
            self._peer_labels(peer)
        return SessionObserver(self, kind, role, peer, self.thresholds_for(profile))

    # ---- health ----

    def observe_health(self, result: Mapping[str, Any]) -> None:
        status = result.get("status")
        status = status if status in HEALTH_STATUSES else "unknown"
        for s in HEALTH_STATUSES:
            self.health_status.labels(status=s).set(1 if s == status else 0)
        cpu = _num((result.get("cpu") or {}).get("percent"))
        self.cpu.set(NAN if cpu is None else cpu / 100.0)
        mem = _num((result.get("memory") or {}).get("used_ratio"))
        self.memory.set(NAN if mem is None else mem)
        for d in result.get("disk") or []:
            ratio = _num(d.get("used_ratio"))
            if d.get("mount") and ratio is not None:
                self.disk.labels(mount=str(d["mount"])).set(ratio)
        problems = result.get("problems")
        self.problems.set(len(problems) if isinstance(problems, list) else NAN)
        for gauge, key in ((self.camera, "camera"), (self.microphone, "microphone")):
            present = (result.get(key) or {}).get("present")
            gauge.set(NAN if present is None else float(bool(present)))
        offset = _num((result.get("clock") or {}).get("offset_s"))
        self.clock_offset.set(NAN if offset is None else offset)
        self.health_checks.inc()
        self.health_time.set(time.time())

    # ---- daemon state read at scrape time ----

    def bind_outbox(self, outbox) -> None:
        self._bound.outbox = outbox
        self._register_bound()

    def bind_link(self, link) -> None:
        self._bound.link = link
        self._register_bound()

    def _register_bound(self) -> None:
        if not self._bound_registered:
            self.registry.register(self._bound)
            self._bound_registered = True

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class SessionObserver:
    """Feeds one session's figures into the metrics; `end()` once (later calls are ignored)."""

    def __init__(self, metrics: AgentMetrics, kind: str, role: str, peer: str, thresholds):
        self.m = metrics
        self.kind, self.role, self.peer = kind, role, peer
        self.thresholds = thresholds
        self._counted: set[tuple[str, float]] = set()
        self._judged: set[float] = set()
        self._ended = False

    def interval(self, iv: Mapping[str, Any], *, live: bool = True) -> None:
        """One per-second interval {t, rtt_ms, inbound, outbound} (a direction may be None)."""
        try:
            self._interval(iv, live)
        except Exception:      # a malformed interval must not break the session
            log.exception("metrics: interval not observed")

    def _interval(self, iv: Mapping[str, Any], live: bool) -> None:
        m, peer = self.m, self.peer
        t = _num(iv.get("t"))
        rtt = _num(iv.get("rtt_ms"))
        if live and "rtt_ms" in iv:
            m.rtt.labels(peer=peer).set(NAN if rtt is None else rtt / 1000.0)
        for d in DIRECTIONS:
            side = iv.get(d)
            if not isinstance(side, Mapping):
                continue
            key = (d, _num(side.get("t")) if _num(side.get("t")) is not None else t)
            if key[1] is not None and key not in self._counted:
                self._counted.add(key)
                m.packets.labels(peer=peer, direction=d).inc(max(0, _num(side.get("packets")) or 0))
                m.lost.labels(peer=peer, direction=d).inc(max(0, _num(side.get("lost")) or 0))
                m.bytes.labels(peer=peer, direction=d).inc(max(0.0, (_num(side.get("bitrate_kbps")) or 0) * 125))
                if side.get("stalled"):
                    m.stalls.labels(peer=peer, direction=d).inc()
            if live:
                loss, jit = _num(side.get("loss_ratio")), _num(side.get("jitter_ms"))
                if side.get("stalled"):
                    loss = 1.0
                m.loss.labels(peer=peer, direction=d).set(NAN if loss is None else loss)
                m.jitter.labels(peer=peer, direction=d).set(NAN if jit is None else jit / 1000.0)
                m.mos.labels(peer=peer, direction=d).set(self._mos(rtt, jit, loss))
        if self.thresholds is not None and t is not None and t not in self._judged:
            self._judged.add(t)
            from contract import quality
            verdict = quality.judge_interval(iv, self.thresholds).verdict
            m.seconds.labels(peer=peer, verdict=verdict).inc()

    def _mos(self, rtt_ms: float | None, jitter_ms: float | None, loss: float | None) -> float:
        if self.thresholds is None or loss is None:
            return NAN
        from contract import quality
        fig = quality.Figures(rtt_ms=rtt_ms, jitter_ms=jitter_ms, loss_ratio=min(max(loss, 0.0), 1.0))
        value = quality.judge(fig, self.thresholds).mos
        return NAN if value is None else value

    def end(self, outcome: str, report: Mapping[str, Any] | None = None) -> None:
        if self._ended:
            return
        self._ended = True
        m = self.m
        try:
            if isinstance(report, Mapping):
                self._final(report)
        except Exception:
            log.exception("metrics: final report not observed")
        outcome = outcome if outcome in OUTCOMES else "failed"
        m.ended.labels(kind=self.kind, role=self.role, outcome=outcome).inc()
        m.active.labels(role=self.role).dec()
        m.rtt.labels(peer=self.peer).set(NAN)
        for d in DIRECTIONS:
            for g in (m.loss, m.jitter, m.mos):
                g.labels(peer=self.peer, direction=d).set(NAN)

    def _final(self, report: Mapping[str, Any]) -> None:
        m = self.m
        if report.get("schema") == "vks.test-report/1":
            # The caller's report: both directions, per-second intervals, verdict.
            for iv in report.get("intervals") or []:
                self._interval(iv, live=False)
            if report.get("connected"):
                verdict = report.get("verdict")
                if verdict in VERDICTS:
                    m.verdicts.labels(kind=self.kind, verdict=verdict).inc()
                connect_ms = _num(report.get("connect_ms"))
                if connect_ms is not None:
                    m.connect.labels(kind=self.kind).observe(connect_ms / 1000.0)
        elif isinstance(report.get("intervals"), list):
            # A callee's receive side: what it received, per second, up to the caller's finish
            # (the last, partial second and the silence after the caller stopped are no link
            # figures).
            intervals = [iv for iv in report["intervals"] if isinstance(iv, Mapping)][:-1]
            while intervals and intervals[-1].get("stalled"):
                intervals.pop()
            for iv in intervals:
                self._interval({"t": iv.get("t"), "inbound": iv}, live=False)


class _BoundCollector(Collector):
    """The daemon's outbox and controller link, read when scraped."""

    def __init__(self) -> None:
        self.outbox = None
        self.link = None

    def describe(self):
        return []

    def collect(self):
        if self.outbox is not None:
            s = self.outbox.stats()
            depth = GaugeMetricFamily("vks_agent_outbox_reports",
                                      "Reports waiting for the controller's acknowledgement (disk + memory)")
            depth.add_metric([], s.rows + s.memory_rows)
            yield depth
            mem = GaugeMetricFamily("vks_agent_outbox_memory_reports",
                                    "Reports held in memory only (the disk refused them)")
            mem.add_metric([], s.memory_rows)
            yield mem
            size = GaugeMetricFamily("vks_agent_outbox_bytes", "Size of the reports waiting on disk")
            size.add_metric([], s.bytes)
            yield size
            dropped = CounterMetricFamily("vks_agent_outbox_dropped_reports",
                                          "Reports dropped because the outbox was full (kept across restarts)",
                                          labels=["kind"])
            for kind in REPORT_KINDS:
                dropped.add_metric([kind], s.dropped.get(kind, 0))
            yield dropped
            errors = CounterMetricFamily("vks_agent_outbox_storage_errors",
                                         "Writes the disk refused since start")
            errors.add_metric([], s.storage_errors)
            yield errors
        if self.link is not None:
            up = GaugeMetricFamily("vks_agent_controller_connected",
                                   "1 while the link to the controller is up")
            up.add_metric([], 1.0 if self.link.connected.is_set() else 0.0)
            yield up
            conns = CounterMetricFamily("vks_agent_controller_connections",
                                        "Successful connections to the controller since start "
                                        "(more than one: reconnects)")
            conns.add_metric([], self.link.connects)
            yield conns


# ---- HTTP ----

METRICS_KEY = web.AppKey("vks_agent_metrics", AgentMetrics)


async def handle_metrics(request: web.Request) -> web.Response:
    body, ctype = request.app[METRICS_KEY].render()
    return web.Response(body=body, headers={"Content-Type": ctype})


def metrics_app(metrics: AgentMetrics) -> web.Application:
    """The daemon's own small endpoint: GET /metrics."""
    app = web.Application()
    app[METRICS_KEY] = metrics
    app.router.add_get("/metrics", handle_metrics)
    return app


def for_settings(settings, *, peers: Iterable[str] = (), health: bool = True) -> AgentMetrics:
    return AgentMetrics(terminal_id=settings.terminal_id, health=health,
                        thresholds_path=settings.session.thresholds_path,
                        profile_thresholds={"": settings.profile(None).thresholds,
                                            **{n: p.thresholds for n, p in settings.session.profiles.items()}},
                        peers=peers)


def install_responder(app: web.Application, metrics: AgentMetrics, sessions_key) -> None:
    """Add GET /metrics to the responder's app and observe the sessions it answers.

    The responder keeps its running session tasks in `app[sessions_key]` (a set); a session
    task added while handling POST /offer is observed: its result is the callee's receive
    side, its cancellation or exception the outcome."""
    app[METRICS_KEY] = metrics
    app.router.add_get("/metrics", handle_metrics)
    seen: weakref.WeakSet = weakref.WeakSet()

    @web.middleware
    async def observe_offers(request: web.Request, handler):
        if request.method != "POST" or request.path != "/offer":
            return await handler(request)
        sessions = request.app.get(sessions_key)
        before = set(sessions) if sessions is not None else set()
        response = await handler(request)
        if sessions is not None:
            profile = None
            for task in set(sessions) - before:
                if task in seen:
                    continue
                seen.add(task)
                obs = metrics.session("test", "callee", RESPONDER_PEER, profile)
                task.add_done_callback(lambda t, obs=obs: _task_outcome(obs, t))
        return response

    app.middlewares.append(observe_offers)


def _task_outcome(obs: SessionObserver, task: asyncio.Task) -> None:
    if task.cancelled():
        obs.end("cancelled")
        return
    exc = task.exception()
    if exc is not None:
        obs.end("failed")
        return
    side = task.result()
    if isinstance(side, Mapping) and side.get("error"):
        obs.end("not_connected")
    else:
        obs.end("finished", side if isinstance(side, Mapping) else None)


def parse_listen(text: str) -> tuple[str, int] | None:
    """'HOST:PORT' -> (host, port); '' or 'off' -> None (no endpoint)."""
    text = (text or "").strip()
    if not text or text.lower() in ("off", "none", "disabled"):
        return None
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"metrics.listen: expected HOST:PORT, got {text!r}")
    return host.strip("[]") or "0.0.0.0", int(port)


# ---- the daemon's monitor ----

class Monitor:
    """What `vks-agent run` adds around its loops: the /metrics endpoint, the periodic health
    check (whose latest result the link's heartbeats carry), and systemd's READY/WATCHDOG/
    STOPPING. `start()` once the daemon's outbox and link exist, `stop()` first thing on
    shutdown; `main_alive` says whether the daemon's own loops are still running."""

    def __init__(self, settings, metrics: AgentMetrics, *, notifier: sdnotify.Notifier | None = None,
                 main_alive: Callable[[], bool] = lambda: True):
        self.settings = settings
        self.metrics = metrics
        self.notifier = notifier or sdnotify.Notifier.from_env()
        self.watchdog = sdnotify.Watchdog(self.notifier)
        self.main_alive = main_alive
        interval = settings.health.interval_s
        self._health_hb = self.watchdog.heartbeat("health", interval + 60.0)
        self._main_hb = self.watchdog.heartbeat("main", 30.0)
        self._checker = None
        self._last_health: dict | None = None
        self._last_health_at = 0.0
        self._health_lock = asyncio.Lock()
        self._runner: web.AppRunner | None = None
        self._tasks: list[asyncio.Task] = []
        self.address: tuple[str, int] | None = None

    async def health(self) -> dict[str, Any]:
        """The latest health result, checked again when older than `health.interval_s`
        (the link's heartbeat calls this)."""
        async with self._health_lock:
            age = time.monotonic() - self._last_health_at
            if self._last_health is None or age >= self.settings.health.interval_s:
                if self._checker is None:
                    from agent.health import HealthChecker
                    self._checker = HealthChecker(self.settings)
                try:
                    result = await self._checker.check()
                except Exception as exc:       # a broken check must not break the link
                    log.warning("health check failed: %s", exc)
                    result = {"status": "unknown", "problems": [f"health check failed: {exc}"]}
                self._last_health, self._last_health_at = result, time.monotonic()
                self.metrics.observe_health(result)
                self._health_hb.beat()
            return self._last_health

    async def _health_loop(self) -> None:
        while True:
            await self.health()
            await asyncio.sleep(max(1.0, self.settings.health.interval_s - (time.monotonic() - self._last_health_at)))

    async def _main_loop(self) -> None:
        while True:
            if self.main_alive():
                self._main_hb.beat()
            await asyncio.sleep(1.0)

    async def start(self) -> None:
        try:
            listen = parse_listen(self.settings.metrics.listen)
        except ValueError as exc:
            log.error("%s: no metrics endpoint", exc)
            listen = None
        if listen is not None:
            runner = web.AppRunner(metrics_app(self.metrics), access_log=None)
            await runner.setup()
            try:
                site = web.TCPSite(runner, listen[0], listen[1])
                await site.start()
            except OSError as exc:
                # The terminal's work matters more than its metrics: go on without them.
                log.error("metrics endpoint not started: cannot listen on %s:%d: %s", *listen, exc.strerror)
                await runner.cleanup()
            else:
                self._runner = runner
                self.address = tuple(runner.addresses[0][:2]) if runner.addresses else listen
                log.info("metrics on http://%s:%d/metrics", *self.address)
        self._tasks = [asyncio.create_task(self._health_loop(), name="health"),
                       asyncio.create_task(self._main_loop(), name="main-heartbeat"),
                       asyncio.create_task(self.watchdog.run(), name="watchdog")]
        self.notifier.ready(f"running; metrics {'%s:%d' % self.address if self.address else 'off'}")

    async def stop(self) -> None:
        self.notifier.stopping()
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        if self._runner is not None:
            with contextlib.suppress(Exception):
                await self._runner.cleanup()
            self._runner = None
        self.notifier.close()
