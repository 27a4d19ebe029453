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
from collections.abc import Callable
from typing import Any

from contract import quality, wire
from contract.reports import HealthBody, HookOutcome, IntervalBody
from contract.vocab import AgentDrop, SessionRole
from controller.agent_writes import Drops, EventBudget
from controller.detector import classify
from controller.live.machine import Flow, Machine, to_dt

log = logging.getLogger(__name__)


class LiveIntake:
    """The flows being monitored, by hearing, and what the hub handed over for them. A failed
    endpoint hook becomes a `hook_failed` event within its terminal's `budget` (issue 11); what is
    not written is counted by `drops`."""

    def __init__(self, machine: Machine, clock: Callable[[], dt.datetime], *, budget: EventBudget | None = None,
                 drops: Drops | None = None):
        self.machine = machine
        self.clock = clock
        self.budget = budget
        self.drops = drops or Drops()
        self.thresholds: quality.Thresholds | None = None
        self.flows: dict[int, Flow] = {}            # by hearing: its first remote participant's flow
        self.extra: dict[int, list[Flow]] = {}      # by hearing: the other participants' flows
        self.sessions: dict[str, Flow] = {}         # monitoring session -> its flow
        self.rows: list[dict[str, Any]] = []        # live_intervals rows not yet written
        self.hook_reports: list[tuple[str, HookOutcome]] = []   # failed hooks naming a hearing
        self.ended: list[str] = []
        self.kick = asyncio.Event()

    def now(self) -> float:
        """The controller's clock in epoch seconds."""
        return self.clock().timestamp()

    def use(self, thresholds: quality.Thresholds) -> None:
        """The thresholds each second is judged by (the app's quality model, read once at start)."""
        self.thresholds = thresholds

    def add(self, f: Flow) -> None:
        """Monitor `f` (its current session's intervals reach it)."""
        if f.primary:
            self.flows[f.hearing_id] = f
        else:
            self.extra.setdefault(f.hearing_id, []).append(f)
        if f.session_id:
            self.sessions[f.session_id] = f

    def of(self, hearing_id: int) -> list[Flow]:
        """The hearing's flows, the first participant's first."""
        first = self.flows.get(hearing_id)
        return ([first] if first is not None else []) + self.extra.get(hearing_id, [])

    def all(self) -> list[Flow]:
        """Every flow, each hearing's first participant's first."""
        return [f for hid in list(self.flows) for f in self.of(hid)]

    def remove(self, hearing_id: int) -> list[Flow]:
        """Stop taking the hearing's flows; returns them."""
        out = self.of(hearing_id)
        self.flows.pop(hearing_id, None)
        self.extra.pop(hearing_id, None)
        return out

    # ---- from the hub ------------------------------------------------------------------------
    def on_reports(self, items: list[tuple[str, wire.Report]]) -> None:
        """Reports of a committed batch [(terminal_id, wire.Report)]: intervals of the monitoring
        sessions feed the detector; failed hooks reach the record."""
        kick = False
        for terminal_id, m in items:
            try:
                if isinstance(m.body, IntervalBody) and m.session_id in self.sessions:
                    kick |= self._interval(terminal_id, m.session_id, m.body)
                elif isinstance(m.body, HealthBody) and m.body.hook is not None:
                    kick |= self._hook(terminal_id, m.body.hook)
            except Exception:        # a malformed body must not stop the batch
                log.exception("live: interval from %s not taken", terminal_id)
        if kick:
            self.kick.set()

    def on_session_ended(self, session_id: str, outcome: str, error: str | None = None) -> None:
        """The hub saw a session finish or fail: a current monitoring session is then lost."""
        if session_id in self.sessions:
            self.ended.append(session_id)
            self.kick.set()

    def _hook(self, terminal_id: str, hook: HookOutcome) -> bool:
        """A failed hook naming a hearing waits for the service (which checks the terminal takes part
        in that hearing), if the terminal's budget allows; a hook that worked records nothing."""
        if hook.ok or hook.hearing_id is None:
            return False
        if self.budget is not None and not self.budget.take(terminal_id):
            self.drops.drop(terminal_id, AgentDrop.RATE_LIMITED, f"hook_failed event for hearing {hook.hearing_id}")
            return False
        self.hook_reports.append((terminal_id, hook))
        return True

    def _interval(self, terminal_id: str, session_id: str, body: IntervalBody) -> bool:
        f = self.sessions[session_id]
        iv = body.interval
        if f is None or iv is None or body.role is None or not self.machine.accepts(
                f, session_id, terminal_id, body.role):
            return False
        t = int(iv.t) if iv.t is not None else -1
        if t < 0 or self.thresholds is None:
            return False
        second = classify(iv, self.thresholds)
        now = self.now()
        self.machine.observe(f, SessionRole(body.role), t, second, now)
        self.rows.append({"hearing_id": f.hearing_id, "session_id": session_id, "terminal_id": terminal_id,
                          "callee": f.callee,
                          "t": t, "at": to_dt(now), "inbound": iv.inbound.dump() if iv.inbound else None,
                          "outbound": iv.outbound.dump() if iv.outbound else None, "rtt_ms": iv.rtt_ms,
                          "stalled": second.stalled, "verdict": second.verdict})
        return True
