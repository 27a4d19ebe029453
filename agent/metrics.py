"""The agent's Prometheus metrics (docs/metrics.md has the table; a test keeps them equal).

One `AgentMetrics` per daemon or responder app, each with its own `CollectorRegistry` (no
global registry). It measures nothing itself: it is fed what the session engine and the
health check already produce. Serving them is agent/monitor.py's (the daemon's endpoint) and
agent/responder.py's (the responder's app).

- `metrics.session(kind, role, peer)` -> `SessionObserver`: `interval(iv)` with each per-second
  interval (`on_interval`), `end(outcome, report)` with the final report (caller: the
  `vks.test-report/1` `SessionReport`; callee: its `ReceiveSide`). Gauges show the last second of a
  running session (NaN once it ended); counters add each second once.
- `metrics.observe_health(health)` with each `vks.health/1` result.

Everything it is fed is a typed model of contract.reports, validated once where it was made (the
daemon's reports, the monitor's health check, the responder's receive side): it reads attributes
and checks no shapes.
- `metrics.bind_outbox(outbox)`, `metrics.bind_link(link)`: read at scrape time.
- `await metrics.load_thresholds()` reads the quality model in a thread (the live MOS and
  verdict of each second need it); `render()` -> (body, content type).

Labels are bounded: direction (inbound/outbound), kind (test/preconnect/monitor), role
(caller/callee), verdict, outcome, status, peer (a terminal id, "direct" for the responder's
sessions whose caller is not known by id). Never a session id.
"""
from __future__ import annotations

import asyncio
import logging
import os
import platform
import time
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Protocol

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
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from contract import quality
from contract.reports import Health, Interval, ReceiveSide, SessionReport
from contract.vocab import DeviceStatus, Direction, HealthStatus, ReportKind, SessionKind, SessionRole, Verdict, words

if TYPE_CHECKING:
    from agent.settings import AgentSettings

log = logging.getLogger(__name__)

DIRECTIONS = words(Direction)
KINDS = words(SessionKind)
ROLES = words(SessionRole)
VERDICTS = words(Verdict)
# How a session ended (the agent's own word list: only these metrics use it).
OUTCOMES = ("finished", "not_connected", "failed", "cancelled")
UNKNOWN_HEALTH = "unknown"          # no health result yet, or the check itself failed
HEALTH_STATUSES = (*words(HealthStatus), UNKNOWN_HEALTH)
REPORT_KINDS = words(ReportKind)
CONNECT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 15.0)
NAN = float("nan")


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


class _OutboxStats(Protocol):
    rows: int
    bytes: int
    memory_rows: int
    dropped: dict[str, int]
    storage_errors: int


class _Outbox(Protocol):
    def stats(self) -> _OutboxStats: ...


class _Link(Protocol):
    connected: asyncio.Event
    connects: int


class AgentMetrics:
    """Every metric family of one daemon or responder, in its own registry."""

    def __init__(self, *, terminal_id: str = "", thresholds_path: str | os.PathLike[str] | None = None,
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
        self._thresholds: dict[str, quality.Thresholds] | None = None

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
            self.health_status.labels(status=s).set(1 if s == UNKNOWN_HEALTH else 0)
        self.cpu = Gauge("vks_agent_health_cpu_ratio", "CPU busy (0..1)", registry=hr)
        self.memory = Gauge("vks_agent_health_memory_used_ratio", "Memory used (0..1)", registry=hr)
        self.disk = Gauge("vks_agent_health_disk_used_ratio", "Disk used (0..1) per checked mount",
                          ["mount"], registry=hr)
        self.problems = Gauge("vks_agent_health_problems", "Problems found by the last health check",
                              registry=hr)
        self.camera = Gauge("vks_agent_health_camera_present", "1 when a camera is present", registry=hr)
        self.microphone = Gauge("vks_agent_health_microphone_present", "1 when a microphone is present",
                                registry=hr)
        # What the camera and the microphone were found to give (agent/devices.py): 1 for the status
        # of each, 0 for the others; all 0 when unknown.
        self.device_status = Gauge("vks_agent_health_device_status",
                                   "Camera and microphone: 1 for the current status, 0 for the others",
                                   ["device", "status"], registry=hr)
        for device in ("camera", "microphone"):
            for s in words(DeviceStatus):
                self.device_status.labels(device=device, status=s).set(0)
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

    def _read_thresholds(self) -> dict[str, quality.Thresholds]:
        try:
            return quality.load_thresholds(self._thresholds_path)
        except Exception as exc:       # metrics must not break a session
            log.warning("metrics: thresholds not loaded (%s): no live MOS or verdicts", exc)
            return {}

    async def load_thresholds(self) -> None:
        """Read the quality model in a worker thread (a YAML file: not on the event loop)."""
        if self._thresholds is None:
            self._thresholds = await asyncio.to_thread(self._read_thresholds)

    def thresholds_for(self, profile: str | None) -> quality.Thresholds | None:
        """The threshold profile that judges a session of media profile `profile` (None: unknown).

        Read from the file here only if `load_thresholds()` has not run (tests, tools)."""
        if self._thresholds is None:
            self._thresholds = self._read_thresholds()
        name = self._profile_thresholds.get(profile or "", None) or self._profile_thresholds.get("", "hearing")
        return self._thresholds.get(name)

    def session(self, kind: SessionKind, role: SessionRole, peer: str, profile: str | None = None) -> SessionObserver:
        """Count a session that starts; its figures go to the returned observer."""
        self.started.labels(kind=kind, role=role).inc()
        self.active.labels(role=role).inc()
        if peer not in self._peers:
            self._peer_labels(peer)
        return SessionObserver(self, kind, role, peer, self.thresholds_for(profile))

    # ---- health ----

    def observe_health(self, health: Health) -> None:
        """Set the health gauges from one `vks.health/1` result (no status: "unknown")."""
        status = health.status or UNKNOWN_HEALTH
        for s in HEALTH_STATUSES:
            self.health_status.labels(status=s).set(1 if s == status else 0)
        cpu = health.cpu.percent if health.cpu is not None else None
        self.cpu.set(NAN if cpu is None else cpu / 100.0)
        mem = health.memory.used_ratio if health.memory is not None else None
        self.memory.set(NAN if mem is None else mem)
        for disk in health.disk:
            if disk.mount and disk.used_ratio is not None:
                self.disk.labels(mount=disk.mount).set(disk.used_ratio)
        self.problems.set(len(health.problems))
        for gauge, name, device in ((self.camera, "camera", health.camera),
                                    (self.microphone, "microphone", health.microphone)):
            present = device.present if device is not None else None
            gauge.set(NAN if present is None else float(present))
            found = device.status if device is not None else None
            for word in words(DeviceStatus):
                self.device_status.labels(device=name, status=word).set(1 if word == found else 0)
        offset = health.clock.offset_s if health.clock is not None else None
        self.clock_offset.set(NAN if offset is None else offset)
        self.health_checks.inc()
        self.health_time.set(time.time())

    # ---- daemon state read at scrape time ----

    def bind_outbox(self, outbox: _Outbox) -> None:
        """Expose the outbox's depth, size and drops, read when scraped."""
        self._bound.outbox = outbox
        self._register_bound()

    def bind_link(self, link: _Link) -> None:
        """Expose the controller link's state and connection count, read when scraped."""
        self._bound.link = link
        self._register_bound()

    def _register_bound(self) -> None:
        if not self._bound_registered:
            self.registry.register(self._bound)
            self._bound_registered = True

    def render(self) -> tuple[bytes, str]:
        """The exposition text and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class SessionObserver:
    """Feeds one session's figures into the metrics; `end()` once (later calls are ignored)."""

    def __init__(self, metrics: AgentMetrics, kind: SessionKind, role: SessionRole, peer: str,
                 thresholds: quality.Thresholds | None):
        self.m = metrics
        self.kind, self.role, self.peer = kind, role, peer
        self.thresholds = thresholds
        self._counted: set[tuple[Direction, float]] = set()
        self._judged: set[float] = set()
        self._ended = False

    def interval(self, iv: Interval, *, live: bool = True) -> None:
        """One per-second interval: the round trip and each direction (a direction may be None)."""
        try:
            self._interval(iv, live)
        except Exception:      # metrics must not break a session
            log.exception("metrics: interval not observed")

    def _interval(self, iv: Interval, live: bool) -> None:
        m, peer = self.m, self.peer
        if live:
            m.rtt.labels(peer=peer).set(NAN if iv.rtt_ms is None else iv.rtt_ms / 1000.0)
        for d in Direction:
            side = iv.side(d)
            if side is None:
                continue
            second = iv.t if side.t is None else side.t
            if second is not None and (d, second) not in self._counted:
                self._counted.add((d, second))
                # A second's `lost` is expected minus received: negative when late or resent
                # packets of earlier seconds arrive in it. A counter only goes up (and raises on a
                # negative step, which cost the session's verdict its count).
                m.packets.labels(peer=peer, direction=d).inc(max(0, side.packets or 0))
                m.lost.labels(peer=peer, direction=d).inc(max(0, side.lost or 0))
                m.bytes.labels(peer=peer, direction=d).inc(max(0.0, (side.bitrate_kbps or 0) * 125))
                if side.stalled:
                    m.stalls.labels(peer=peer, direction=d).inc()
            if live:
                loss = 1.0 if side.stalled else side.loss_ratio
                m.loss.labels(peer=peer, direction=d).set(NAN if loss is None else loss)
                m.jitter.labels(peer=peer, direction=d).set(NAN if side.jitter_ms is None else side.jitter_ms / 1000.0)
                m.mos.labels(peer=peer, direction=d).set(self._mos(iv.rtt_ms, side.jitter_ms, loss))
        if self.thresholds is not None and iv.t is not None and iv.t not in self._judged:
            self._judged.add(iv.t)
            verdict = quality.judge_interval(iv, self.thresholds).verdict
            m.seconds.labels(peer=peer, verdict=verdict).inc()

    def _mos(self, rtt_ms: float | None, jitter_ms: float | None, loss: float | None) -> float:
        if self.thresholds is None or loss is None:
            return NAN
        fig = quality.Figures(rtt_ms=rtt_ms, jitter_ms=jitter_ms, loss_ratio=loss)
        value = quality.judge(fig, self.thresholds).mos
        return NAN if value is None else value

    def end(self, outcome: str, report: SessionReport | ReceiveSide | None = None) -> None:
        """The session ended with `outcome` (and its final report); later calls are ignored."""
        if self._ended:
            return
        self._ended = True
        m = self.m
        try:
            if report is not None:
                self._final(report)
        except Exception:      # metrics must not break a session
            log.exception("metrics: final report not observed")
        outcome = outcome if outcome in OUTCOMES else "failed"
        m.ended.labels(kind=self.kind, role=self.role, outcome=outcome).inc()
        m.active.labels(role=self.role).dec()
        m.rtt.labels(peer=self.peer).set(NAN)
        for d in DIRECTIONS:
            for g in (m.loss, m.jitter, m.mos):
                g.labels(peer=self.peer, direction=d).set(NAN)

    def _final(self, report: SessionReport | ReceiveSide) -> None:
        m = self.m
        if isinstance(report, SessionReport):
            # The caller's report: verdict, then both directions' per-second intervals (a second
            # the metrics cannot take must not cost the session its verdict).
            if report.connected:
                if report.verdict is not None:
                    m.verdicts.labels(kind=self.kind, verdict=report.verdict).inc()
                if report.connect_ms is not None:
                    m.connect.labels(kind=self.kind).observe(report.connect_ms / 1000.0)
            for iv in report.intervals:
                self._interval(iv, live=False)
            return
        # A callee's receive side: what it received, per second, up to the caller's finish (the
        # last, partial second and the silence after the caller stopped are no link figures).
        seconds = report.intervals[:-1]
        while seconds and seconds[-1].stalled:
            seconds.pop()
        for side in seconds:
            self._interval(Interval(t=side.t, inbound=side), live=False)


class _BoundCollector(Collector):
    """The daemon's outbox and controller link, read when scraped."""

    def __init__(self) -> None:
        self.outbox: _Outbox | None = None
        self.link: _Link | None = None

    def describe(self) -> Iterator[Metric]:
        return iter(())

    def collect(self) -> Iterator[Metric]:
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


def for_settings(settings: AgentSettings, *, peers: Iterable[str] = (), health: bool = True) -> AgentMetrics:
    """The metrics of an agent with these settings (its terminal id and threshold profiles)."""
    return AgentMetrics(terminal_id=settings.terminal_id, health=health,
                        thresholds_path=settings.session.thresholds_path,
                        profile_thresholds={"": settings.profile(None).thresholds,
                                            **{n: p.thresholds for n, p in settings.session.profiles.items()}},
                        peers=peers)
