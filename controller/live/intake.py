"""What the agents tell live monitoring, taken as the hub stores it: the flows in memory and their
intake. The hub hands each committed batch of reports over at once (`on_reports`) and says when a
session ended (`on_session_ended`); both are synchronous and quick: an interval of a monitoring
session is classified and fed to its flow's detector (`Machine.observe`), and what must be written
or acted on (the interval rows, the failed endpoint hooks, the ended sessions) waits here for
`controller.live.service`, which `kick` wakes.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Callable, Mapping
from typing import Any

from contract import quality
from contract.vocab import ReportKind, SessionRole
from controller.detector import classify
from controller.live.machine import Flow, Machine, to_dt

log = logging.getLogger(__name__)


def body_field(obj: Any, key: str) -> Any:
    """A key of a report body or payload, typed (contract.reports) or a plain mapping."""
    if isinstance(obj, Mapping):
        return obj.get(key)
    return getattr(obj, key, None)


def _plain(obj: Any) -> Any:
    """A payload as the JSON object stored (a typed payload dumped, a mapping as it is)."""
    dump = getattr(obj, "dump", None)
    return dump() if callable(dump) else obj


class LiveIntake:
    """The flows being monitored, by hearing, and what the hub handed over for them."""

    def __init__(self, machine: Machine, clock: Callable[[], dt.datetime]):
        self.machine = machine
        self.clock = clock
        self.thresholds: quality.Thresholds | None = None
        self.flows: dict[int, Flow] = {}
        self.sessions: dict[str, int] = {}          # monitoring session -> hearing
        self.rows: list[dict[str, Any]] = []        # live_intervals rows not yet written
        self.hook_reports: list[tuple[str, Any]] = []
        self.ended: list[str] = []
        self.kick = asyncio.Event()

    def now(self) -> float:
        """The controller's clock in epoch seconds."""
        return self.clock().timestamp()

    def use(self, thresholds: quality.Thresholds) -> None:
        """The thresholds each second is judged by (loaded when the service starts)."""
        self.thresholds = thresholds

    def add(self, f: Flow) -> None:
        """Monitor `f` (its current session's intervals reach it)."""
        self.flows[f.hearing_id] = f
        if f.session_id:
            self.sessions[f.session_id] = f.hearing_id

    # ---- from the hub ------------------------------------------------------------------------
    def on_reports(self, items: list[tuple[str, Any]]) -> None:
        """Reports of a committed batch [(terminal_id, wire.Report)]: intervals of the monitoring
        sessions feed the detector; hook outcomes reach the record."""
        kick = False
        for terminal_id, m in items:
            try:
                if m.kind == ReportKind.INTERVAL and m.session_id in self.sessions:
                    kick |= self._interval(terminal_id, m.session_id, m.body)
                elif m.kind == ReportKind.HEALTH and body_field(m.body, "hook") is not None:
                    self.hook_reports.append((terminal_id, body_field(m.body, "hook")))
                    kick = True
            except Exception:        # a malformed body must not stop the batch
                log.exception("live: interval from %s not taken", terminal_id)
        if kick:
            self.kick.set()

    def on_session_ended(self, session_id: str, outcome: str, error: str | None = None) -> None:
        """The hub saw a session finish or fail: a current monitoring session is then lost."""
        if session_id in self.sessions:
            self.ended.append(session_id)
            self.kick.set()

    def _interval(self, terminal_id: str, session_id: str, body: Any) -> bool:
        f = self.flows.get(self.sessions[session_id])
        iv = body_field(body, "interval")
        role = body_field(body, "role")
        if f is None or iv is None or isinstance(iv, (str, bytes)) or not self.machine.accepts(
                f, session_id, terminal_id, role):
            return False
        t_raw = body_field(iv, "t")
        t = int(t_raw) if isinstance(t_raw, (int, float)) and not isinstance(t_raw, bool) else -1
        if t < 0 or self.thresholds is None:
            return False
        second = classify(iv, self.thresholds)
        now = self.now()
        self.machine.observe(f, SessionRole(role), t, second, now)
        rtt = body_field(iv, "rtt_ms")
        self.rows.append({"hearing_id": f.hearing_id, "session_id": session_id, "terminal_id": terminal_id,
                          "t": t, "at": to_dt(now), "inbound": _plain(body_field(iv, "inbound")),
                          "outbound": _plain(body_field(iv, "outbound")),
                          "rtt_ms": rtt if isinstance(rtt, (int, float)) else None,
                          "stalled": second.stalled, "verdict": second.verdict})
        return True
