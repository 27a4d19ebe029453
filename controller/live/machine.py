"""The rule-22 flow of one hearing as a pure state machine: no I/O, no asyncio, no database, no
clock of its own (every call takes `now`, seconds since the epoch), like `controller.detector`.

    monitoring --lost--> reconnecting --quality holds resume_good_s--> ready_to_resume
        ^                 |    ^   (attempt n: stop the old session, start a new one,          |
        |                 |    |    backoff + jitter between attempts; still not ready after    |
        |                 |    |    reconnect_timeout_s: escalation, attempts go on)           |
        |                 |    +---------------- lost again ("ready_withdrawn") ---------------+
        +---- the secretary confirms (`resume`) ------------------------------------------------+
        +---- the judge continued (`decide(..., "continued")`): at once when ready ------------+
    any state --hearing held / cancelled / postponed, planned end + end_margin_s--> ended
    any state --suspension (rule 24)--> stopped

A break is the software's recommendation (rule 22: the presiding judge declares a break): it is
detected, recorded (`break`) and announced ("Connection to <terminal> lost - break recommended",
controller.live.words) at once and the reconnect flow starts at once; the secretary records the
judge's decision (`decide`): "declared" (event `break_declared`) changes nothing in the flow - the
link is reconnected and the resumption stays the secretary's act; "continued" (event
`break_continued`, a false alarm kept for tuning) tells the rooms the hearing goes on, and the
reconnect flow keeps running, since the link still has to be restored, but ends by itself: back
to monitoring (event `link_restored`) as soon as the link holds `resume_good_s` seconds - at once
if it already does - with no resumption asked, because no break was declared.

One flow per remote participant (the courtroom terminal calls each): a break names the terminal
whose link failed (`Flow.callee`, `callee_name`); the others' flows go on.

`Machine` changes a `Flow` in memory and returns what must happen outside, in order, as effects:
start or stop a monitoring session, write a transaction (`Commit`: the break, the events of the
hearing's record, the state row - one transaction per transition), tell both agents (`Tell`),
escalate, count. `controller.live.service` carries them out.
"""
from __future__ import annotations

import datetime as dt
import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, overload

from contract import backoff
from contract.vocab import BreakCause, HearingStatus, HearingVerdict, LiveState, SessionRole, Verdict
from controller.detector import ROLES, Detector, DetectorParams, Lost, Second
from controller.live import words
from controller.settings import LiveSettings

# The states of a flow that goes on (the others are finished).
ACTIVE = (LiveState.MONITORING, LiveState.RECONNECTING, LiveState.READY_TO_RESUME)
# The states in which the room's screen shows the break banner.
BREAK_SHOWN = (LiveState.RECONNECTING, LiveState.READY_TO_RESUME)
# The hearing statuses under which a flow goes on.
MONITORED = (HearingStatus.SCHEDULED, HearingStatus.IN_PROGRESS)


@overload
def to_dt(t: float) -> dt.datetime: ...
@overload
def to_dt(t: None) -> None: ...
def to_dt(t: float | None) -> dt.datetime | None:
    """Epoch seconds -> aware UTC datetime (None stays None)."""
    return dt.datetime.fromtimestamp(t, dt.UTC) if t is not None else None


def to_ts(d: dt.datetime | None) -> float | None:
    """Aware datetime -> epoch seconds (None stays None)."""
    return d.timestamp() if d is not None else None


def _iso(t: float | None) -> str | None:
    d = to_dt(t)
    return d.isoformat().replace("+00:00", "Z") if d is not None else None


def backoff_s(attempt: int, s: LiveSettings, rng: random.Random | None = None) -> float:
    """Delay before attempt `attempt + 1`: initial * 2^(attempt-1), capped, +- jitter."""
    spread = (1 - s.backoff_jitter, 1 + s.backoff_jitter)
    return backoff.backoff_s(attempt, s.backoff_initial_s, s.backoff_max_s, spread=spread, rng=rng)


def detector_params(s: LiveSettings) -> DetectorParams:
    """The detector's parameters from the `live:` settings."""
    return DetectorParams(stall_s=s.stall_s, window_s=s.window_s, unusable_n=s.unusable_n,
                          resume_good_s=s.resume_good_s, silent_s=s.silent_s, freeze_break_s=s.freeze_break_s,
                          dropout_ms=s.dropout_ms, dropouts_n=s.dropouts_n, dropouts_window_s=s.dropouts_window_s,
                          keep_s=max(30, s.window_s, s.resume_good_s, s.freeze_break_s, s.dropouts_window_s) + 2)


def final_verdict(stats: dict, breaks_open: bool) -> str:
    """The hearing's live verdict once monitoring ended (rule 3)."""
    if breaks_open or stats.get("unresumed", 0):
        return HearingVerdict.UNUSABLE
    seconds = sum(stats.get(k, 0) for k in Verdict)
    if stats.get("breaks", 0) or (seconds and stats.get("degraded", 0) + stats.get("unusable", 0) > 0.2 * seconds):
        return HearingVerdict.DEGRADED
    return HearingVerdict.GOOD if seconds else HearingVerdict.UNKNOWN


@dataclass
class Flow:
    """One hearing's flow in memory (mirrors its live_state row and its open break)."""
    hearing_id: int
    state: LiveState
    since: float
    caller: str
    callee: str
    detector: Detector
    session_id: str | None = None
    session_end: float | None = None
    break_id: int | None = None
    break_started: float | None = None
    break_cause: str | None = None
    ready_at: float | None = None
    escalated: bool = False
    attempt: int = 0
    next_at: float | None = None
    end_at: float = 0.0
    verdict: str = HearingVerdict.UNKNOWN
    stats: dict[str, Any] = field(default_factory=dict)
    counted_t: int = -1
    started_at: float = 0.0
    dirty: bool = False           # stats, verdict or detector changed since the state row was written
    callee_name: str | None = None    # the participant's terminal's name (the break's words)
    primary: bool = True          # the hearing's first remote participant (its row: live_state)
    decision: str | None = None   # the judge's decision on the open break: declared | continued


# ---- effects: what the I/O service does, in order ------------------------------------------------

@dataclass(frozen=True)
class StartSession:
    """Command the monitoring session `session_id` (caller -> callee); when it cannot be started,
    tell the machine (`Machine.not_started`)."""
    at: float
    session_id: str
    duration_s: float


@dataclass(frozen=True)
class StopSession:
    """Stop a monitoring session that is no longer the flow's."""
    session_id: str


@dataclass(frozen=True)
class LockHearing:
    """Lock the hearing's row first (lock order: the hearing, then live_state)."""


@dataclass(frozen=True)
class OpenBreak:
    """Insert the break, make its id the flow's `break_id`, and record the `break` event
    ({"break_id", "cause", **evidence})."""
    cause: str
    evidence: dict[str, Any]


@dataclass(frozen=True)
class UpdateBreak:
    """Update columns of a break row."""
    break_id: int | None
    values: dict[str, Any]


@dataclass(frozen=True)
class Event:
    """Append an event to the hearing's record (rule 21)."""
    kind: str
    detail: dict[str, Any]


@dataclass(frozen=True)
class Decide:
    """Record the judge's decision on the flow's open break (live_decisions)."""
    break_id: int
    decision: str
    by: str | None


@dataclass(frozen=True)
class Save:
    """Write the flow's state row; `refresh`: then the hearing's verdict (which reads it)."""
    refresh: bool = False


@dataclass(frozen=True)
class MarkEnded:
    """Stamp the state row's `ended_at`."""


Write = LockHearing | OpenBreak | UpdateBreak | Event | Decide | Save | MarkEnded


@dataclass(frozen=True)
class Commit:
    """Writes committed together in one transaction, at time `at`."""
    at: float
    writes: tuple[Write, ...]


@dataclass(frozen=True)
class Tell:
    """Send both agents the live event `name` (contract.wire.LiveEvent; `break` carries the banner:
    {kk, ru, en}, the recommendation and its evidence in words)."""
    name: Literal["break", "reconnect", "resume"]
    fields: dict[str, Any]
    banner: dict[str, str] | None = None


@dataclass(frozen=True)
class Escalate:
    """Open the hearing's escalation (rules 16, 17): cause reconnect_failed."""
    detail: dict[str, Any]


@dataclass(frozen=True)
class Count:
    """Count a break (with its cause) or a resumption in the metrics."""
    what: Literal["break", "resume"]
    cause: str | None = None


@dataclass(frozen=True)
class Again:
    """Step this flow again at once, with a fresh `now` (after a break: the first attempt)."""


Effect = StartSession | StopSession | Commit | Tell | Escalate | Count | Again


class NoDecisionPending(Exception):
    """A decision was given while no break of the hearing waits for one."""

    def __init__(self, hearing_id: int):
        self.hearing_id = hearing_id
        super().__init__(f"hearing {hearing_id} has no break waiting for the judge's decision")


DECISIONS = {"declared": "break_declared", "continued": "break_continued"}


class NotReady(Exception):
    """A resumption was asked while the flow is not ready to resume."""

    def __init__(self, hearing_id: int, state: str):
        self.hearing_id, self.state = hearing_id, state
        super().__init__(f"hearing {hearing_id} is not ready to resume ({state})")


@dataclass(frozen=True)
class Ending:
    """Why a flow ends: the reason recorded, the state it ends in, details."""
    reason: str
    state: LiveState
    detail: dict[str, Any]


class Machine:
    """The transitions and timers of the flow (settings from `live:`)."""

    def __init__(self, settings: LiveSettings, *, rng: random.Random | None = None,
                 new_id: Callable[[], str] | None = None):
        self.s = settings
        self.params = detector_params(settings)
        self.rng = rng or random.Random()
        self.new_id = new_id or (lambda: uuid.uuid4().hex)

    # ---- making and carrying on ------------------------------------------------------------
    def end_at(self, end_utc: float) -> float:
        """When monitoring stops by itself: the planned end plus the margin."""
        return end_utc + self.s.end_margin_s

    def begin(self, hearing_id: int, caller: str, callee: str, end_utc: float, now: float,
              stats: dict[str, Any] | None = None) -> Flow:
        """A new flow, monitoring from `now` (start it with `started`)."""
        return Flow(hearing_id, LiveState.MONITORING, now, caller, callee, Detector(self.params),
                    end_at=self.end_at(end_utc), started_at=now, stats=dict(stats or {}))

    def started(self, f: Flow, now: float, trigger: str) -> list[Effect]:
        """The first monitoring session of a new flow, and its `monitoring_started` event."""
        start = self._new_session(f, now, self.s.start_grace_s)
        return [start, Commit(now, (Save(), Event("monitoring_started", {
            "trigger": trigger, "caller": f.caller, "callee": f.callee, "session_id": start.session_id,
            "profile": self.s.profile})))]

    def carry_on(self, f: Flow, now: float) -> None:
        """A flow reloaded after a restart: times in its detector were the old process's clock, so
        the sessions get the start grace to be heard again."""
        for side in f.detector.sides.values():
            side.last_at = None
        f.detector.expect(now + self.s.start_grace_s)
        f.session_end = None if f.session_id is None else f.end_at + 60

    # ---- what the agents say -----------------------------------------------------------------
    def accepts(self, f: Flow, session_id: str, terminal_id: str, role: object) -> bool:
        """An interval of the flow's current session, from the terminal playing `role` in it."""
        if f.session_id != session_id or role not in ROLES:
            return False
        return terminal_id == (f.caller if role == SessionRole.CALLER else f.callee)

    def observe(self, f: Flow, role: str, t: int, second: Second, now: float) -> None:
        """Second `t` as seen by `role`; the caller's seconds count in the hearing's stats."""
        f.detector.observe(role, t, second, now)
        if role == SessionRole.CALLER and t > f.counted_t:
            f.counted_t = t
            key = "stalled" if second.stalled else second.verdict
            f.stats[key] = f.stats.get(key, 0) + 1
            if key == "stalled":
                f.stats["unusable"] = f.stats.get("unusable", 0) + 1

    def session_lost(self, f: Flow, now: float) -> None:
        """The flow's session finished or failed: it is silent (lost) from now on."""
        f.detector.expect(min(f.detector.expect_from or now, now - self.s.silent_s))
        for side in f.detector.sides.values():
            side.last_at = min(side.last_at or now, now - self.s.silent_s)

    def not_started(self, f: Flow, now: float) -> None:
        """The session could not be started (an agent away): silent at once, judged next step."""
        f.detector.expect(now - self.s.silent_s)

    # ---- the clock ---------------------------------------------------------------------------
    def step(self, f: Flow, now: float) -> list[Effect]:
        """What the flow does at `now`."""
        if f.state == LiveState.MONITORING:
            if f.session_id is None:
                return [self._new_session(f, now, self.s.start_grace_s)]
            lost = f.detector.lost(now)
            if lost is not None:
                return self._declare_break(f, lost, now)
            effects: list[Effect] = []
            if f.session_end is not None and f.session_end - self.s.renew_before_s <= now < f.end_at:
                effects = self._renew(f, now)
            self._set_verdict(f, f.detector.verdict(now))
            return effects
        if f.state == LiveState.RECONNECTING:
            effects = []
            if f.session_id is not None:
                if f.detector.ready(now):
                    effects = self._ready(f, now)
                else:
                    lost = f.detector.lost(now)
                    if lost is not None:
                        effects = self._attempt_failed(f, lost, now, "reconnect_attempt_failed")
            elif f.next_at is None or now >= f.next_at:
                effects = self._attempt(f, now)
            if (not f.escalated and f.break_started is not None
                    and now - f.break_started >= self.s.reconnect_timeout_s):
                effects += self._escalate(f, now)
            return effects
        if f.state == LiveState.READY_TO_RESUME:
            lost = f.detector.lost(now)
            if lost is not None:
                f.ready_at = None
                withdraw = Commit(now, (UpdateBreak(f.break_id, {"ready_at": None}),))
                return [withdraw, *self._attempt_failed(f, lost, now, "ready_withdrawn")]
        return []

    def ending(self, f: Flow, status: str, suspension_ids: list[int], now: float) -> Ending | None:
        """Whether the flow ends now: the hearing no longer scheduled or in progress, a suspension
        blocking it (rule 24), or the planned end (+ margin) passed."""
        if status not in MONITORED:
            return Ending(f"hearing_{status}", LiveState.ENDED, {})
        if suspension_ids:
            return Ending("suspended", LiveState.STOPPED, {"suspension_ids": suspension_ids})
        if now >= f.end_at:
            return Ending("planned_end_passed", LiveState.ENDED, {})
        return None

    # ---- the people ----------------------------------------------------------------------------
    def resume(self, f: Flow | None, hearing_id: int, now: float, who: str) -> tuple[list[Effect], dict[str, Any]]:
        """The secretary confirms the resumption: (effects, {"break_id", "duration_s", "cause"}).
        Raises NotReady unless the flow is ready to resume."""
        if f is None or f.state != LiveState.READY_TO_RESUME:
            raise NotReady(hearing_id, f.state if f else "not monitored")
        duration = round(now - (f.break_started or now), 1)
        break_id, cause = f.break_id, f.break_cause
        event = Event("resume", {
            "break_id": break_id, "cause": cause, "duration_s": duration, "by": who,
            "break_started_at": _iso(f.break_started), "ready_at": _iso(f.ready_at),
            "attempts": f.attempt, "session_id": f.session_id})
        f.state, f.since = LiveState.MONITORING, now
        f.stats["unresumed"] = max(0, f.stats.get("unresumed", 0) - 1)
        f.break_id, f.break_started, f.break_cause, f.ready_at, f.attempt = None, None, None, None, 0
        f.decision = None
        f.verdict = f.detector.verdict(now)
        close = UpdateBreak(break_id, {"resumed_at": to_dt(now), "resumed_by": who, "ended_at": to_dt(now),
                                       "outcome": "resumed", "duration_s": duration})
        effects: list[Effect] = [Commit(now, (LockHearing(), close, event, Save(refresh=True))),
                                 Count("resume"), Tell("resume", {"cause": cause})]
        return effects, {"break_id": break_id, "duration_s": duration, "cause": cause}

    def pending(self, f: Flow | None) -> bool:
        """Whether the flow's open break waits for the judge's decision."""
        return f is not None and f.break_id is not None and f.decision is None and f.state in BREAK_SHOWN

    def decide(self, f: Flow | None, hearing_id: int, decision: str, now: float, who: str | None) -> list[Effect]:
        """The secretary records the judge's decision on the flow's open break: "declared" or
        "continued" (see the module's docstring). Raises NoDecisionPending unless one waits."""
        if decision not in DECISIONS:
            raise ValueError(f"decision must be declared or continued, not {decision!r}")
        if f is None or not self.pending(f):
            raise NoDecisionPending(hearing_id)
        assert f.break_id is not None
        f.decision = decision
        detected = f.break_started or now
        event = Event(DECISIONS[decision], {
            "break_id": f.break_id, "terminal_id": f.callee, "terminal_name": f.callee_name, "cause": f.break_cause,
            "detected_at": _iso(detected), "decided_at": _iso(now), "after_s": round(now - detected, 1), "by": who})
        effects: list[Effect] = [Commit(now, (LockHearing(), Decide(f.break_id, decision, who), event))]
        if decision == "continued":
            effects.append(Tell("resume", {"cause": f.break_cause}))
            if f.state == LiveState.READY_TO_RESUME:
                effects += self._restored(f, now)
        return effects

    def _restored(self, f: Flow, now: float, ready: tuple[Write, ...] = ()) -> list[Effect]:
        """A break the judge continued ends by itself once the link holds: back to monitoring.
        `ready`: the ready_to_resume writes of the same moment, in the same transaction; in one of
        their own, the flow's row (saved as it is by then: monitoring) was seen before link_restored."""
        duration = round(now - (f.break_started or now), 1)
        break_id, cause = f.break_id, f.break_cause
        event = Event("link_restored", {
            "break_id": break_id, "terminal_id": f.callee, "terminal_name": f.callee_name, "cause": cause,
            "duration_s": duration, "decision": "continued", "attempts": f.attempt, "session_id": f.session_id})
        f.state, f.since = LiveState.MONITORING, now
        f.stats["unresumed"] = max(0, f.stats.get("unresumed", 0) - 1)
        f.break_id, f.break_started, f.break_cause, f.ready_at, f.attempt = None, None, None, None, 0
        f.decision = None
        f.verdict = f.detector.verdict(now)
        close = UpdateBreak(break_id, {"ended_at": to_dt(now), "outcome": "continued", "duration_s": duration})
        return [Commit(now, (LockHearing(), *ready, close, event, Save(refresh=True)))]

    def stop(self, f: Flow, reason: str, now: float, *, state: LiveState = LiveState.ENDED,
             detail: dict[str, Any] | None = None) -> list[Effect]:
        """Monitoring stops (hearing over, suspension); an open break is closed with `reason`."""
        old, open_break, started = f.session_id, f.break_id, f.break_started
        f.session_id = None
        f.state, f.since = state, now
        f.verdict = final_verdict(f.stats, False) if state == LiveState.ENDED else f.verdict
        f.break_id, f.decision = None, None
        writes: list[Write] = []
        if open_break is not None:
            writes.append(UpdateBreak(open_break, {"ended_at": to_dt(now), "outcome": reason,
                                                   "duration_s": round(now - (started or now), 1)}))
        writes += [Event("monitoring_stopped", {"reason": reason, "open_break_id": open_break, "terminal_id": f.callee,
                                                "verdict": f.verdict, **(detail or {})}),
                   Save(refresh=True), MarkEnded()]
        effects: list[Effect] = [Commit(now, tuple(writes))]
        if old is not None:
            effects.append(StopSession(old))
        return effects

    # ---- transitions ---------------------------------------------------------------------------
    def _set_verdict(self, f: Flow, verdict: str) -> None:
        if verdict != f.verdict and verdict != HearingVerdict.UNKNOWN:
            f.verdict = verdict
            f.dirty = True
        elif f.counted_t >= 0 and f.counted_t % 5 == 0:
            f.dirty = True        # stats and detector saved every few seconds

    def _new_session(self, f: Flow, now: float, grace: float) -> StartSession:
        sid = self.new_id()
        duration = max(60.0, min(24 * 3600.0, f.end_at - now + 60.0))
        f.session_id, f.session_end, f.counted_t = sid, now + duration, -1
        # Silent (lost) when the first second has not arrived `grace` seconds from now.
        f.detector = Detector(self.params, expect_from=now + grace - self.s.silent_s)
        return StartSession(now, sid, duration)

    def _declare_break(self, f: Flow, lost: Lost, now: float) -> list[Effect]:
        old = f.session_id
        evidence = {"kind": lost.kind, "role": lost.role, "session_id": old, "terminal_id": f.callee,
                    "terminal_name": f.callee_name or f.callee, "recommendation": "break", **lost.evidence}
        f.state, f.since, f.attempt, f.next_at = LiveState.RECONNECTING, now, 0, now
        f.break_started, f.break_cause, f.escalated, f.ready_at = now, BreakCause(lost.cause), False, None
        f.decision = None
        f.session_id = None
        f.verdict = HearingVerdict.UNUSABLE
        f.stats["breaks"] = f.stats.get("breaks", 0) + 1
        f.stats["unresumed"] = f.stats.get("unresumed", 0) + 1
        effects: list[Effect] = [Commit(now, (LockHearing(), OpenBreak(lost.cause, evidence), Save(refresh=True))),
                                 Count("break", lost.cause),
                                 Tell("break", {"cause": lost.cause}, banner=words.banner(f.callee_name or f.callee,
                                                                                          evidence))]
        if old is not None:
            effects.append(StopSession(old))
        return [*effects, Again()]

    def _attempt(self, f: Flow, now: float) -> list[Effect]:
        f.attempt += 1
        f.next_at = None
        start = self._new_session(f, now, self.s.attempt_grace_s)
        return [start,
                Commit(now, (UpdateBreak(f.break_id, {"attempts": f.attempt}),
                             Event("reconnect", {"break_id": f.break_id, "attempt": f.attempt,
                                                 "session_id": start.session_id}),
                             Save())),
                Tell("reconnect", {"attempt": f.attempt, "cause": f.break_cause})]

    def _attempt_failed(self, f: Flow, lost: Lost, now: float, kind: str) -> list[Effect]:
        old = f.session_id
        delay = backoff_s(f.attempt, self.s, self.rng)
        f.state, f.session_id, f.next_at = LiveState.RECONNECTING, None, now + delay
        if kind == "ready_withdrawn":
            f.since = now
        f.verdict = HearingVerdict.UNUSABLE
        effects: list[Effect] = [Commit(now, (Event(kind, {"break_id": f.break_id, "attempt": f.attempt,
                                                           "kind": lost.kind, "session_id": old,
                                                           "retry_in_s": round(delay, 2), **lost.evidence}),
                                              Save(refresh=kind == "ready_withdrawn")))]
        if old is not None:
            effects.append(StopSession(old))
        return effects

    def _ready(self, f: Flow, now: float) -> list[Effect]:
        f.state, f.since, f.ready_at = LiveState.READY_TO_RESUME, now, now
        f.verdict = f.detector.verdict(now)
        ready: tuple[Write, ...] = (
            UpdateBreak(f.break_id, {"ready_at": to_dt(now)}),
            Event("ready_to_resume", {"break_id": f.break_id, "attempt": f.attempt, "session_id": f.session_id,
                                      "terminal_id": f.callee, "good_s": f.detector.good_run(),
                                      "since_break_s": round(now - (f.break_started or now), 1)}))
        if f.decision == "continued":
            return self._restored(f, now, ready)
        return [Commit(now, (*ready, Save(refresh=True)))]

    def _escalate(self, f: Flow, now: float) -> list[Effect]:
        f.escalated = True
        detail = {"break_id": f.break_id, "cause": f.break_cause, "attempts": f.attempt,
                  "since_break_s": round(now - (f.break_started or now), 1),
                  "caller": f.caller, "callee": f.callee}
        return [Commit(now, (UpdateBreak(f.break_id, {"escalated_at": to_dt(now)}),
                             Event("reconnect_timeout", detail))),
                Escalate(detail)]

    def _renew(self, f: Flow, now: float) -> list[Effect]:
        old = f.session_id
        start = self._new_session(f, now, self.s.start_grace_s)
        effects: list[Effect] = [start, Commit(now, (Event("monitoring_renewed", {"old_session_id": old,
                                                                                  "session_id": start.session_id}),
                                                     Save()))]
        if old is not None:
            effects.append(StopSession(old))
        return effects
