"""The rule-22 flow as a pure state machine (controller.live.machine), alone: a fake clock (plain
seconds), seconds fed by hand, every transition and timer, and the effects it asks for in order.
No database, no agents, no event loop."""
from __future__ import annotations

import itertools
import random

import pytest

from contract.vocab import BreakCause, LiveState
from controller.detector import Second
from controller.live.machine import (
    Again,
    Commit,
    Count,
    Escalate,
    Event,
    Flow,
    LockHearing,
    Machine,
    MarkEnded,
    NotReady,
    OpenBreak,
    Save,
    StartSession,
    StopSession,
    Tell,
    UpdateBreak,
    backoff_s,
    final_verdict,
    to_dt,
)
from controller.settings import LiveSettings

T0 = 1_800_000_000.0          # the fake clock's start (epoch seconds)
END = T0 + 3600               # the hearing's planned end
GOOD = Second("good", False)
BAD = Second("unusable", False, ("loss",))
STALL = Second("unusable", True)
S = LiveSettings()            # the shipped timings: start grace 8 s, silent 3 s, attempt grace 4 s, ...


def machine(**settings) -> Machine:
    ids = (f"s{n}" for n in itertools.count(1))
    return Machine(LiveSettings(**settings), rng=random.Random(7), new_id=lambda: next(ids))


def started(m: Machine, now: float = T0, end: float = END) -> tuple[Flow, list]:
    f = m.begin(1, "court-1", "sizo-1", end, now)
    return f, m.started(f, now, "hearing_started")


def feed(m: Machine, f: Flow, t: int, now: float, caller: Second = GOOD, callee: Second | None = GOOD) -> None:
    """Second `t` from both sides, arriving at `now`."""
    m.observe(f, "caller", t, caller, now)
    if callee is not None:
        m.observe(f, "callee", t, callee, now)


def writes(effects: list) -> list:
    return [w for e in effects if isinstance(e, Commit) for w in e.writes]


def events(effects: list) -> list[str]:
    return [w.kind for w in writes(effects) if isinstance(w, Event)] + \
        ["break" for w in writes(effects) if isinstance(w, OpenBreak)]


def broken(m: Machine) -> tuple[Flow, float]:
    """A flow whose session never reported: its break at start grace, and the first attempt."""
    f, _ = started(m)
    at = T0 + S.start_grace_s
    m.step(f, at)
    m.step(f, at)                   # Again: the first attempt at once
    return f, at


def test_a_new_flow_starts_its_session_and_records_it():
    m = machine()
    f, effects = started(m)
    assert f.state == LiveState.MONITORING and f.end_at == END + S.end_margin_s
    start, commit = effects
    assert start == StartSession(T0, "s1", max(60.0, min(86400.0, f.end_at - T0 + 60)))
    assert f.session_id == "s1" and f.session_end == T0 + start.duration_s
    assert commit.at == T0 and commit.writes[0] == Save()
    ev = commit.writes[1]
    assert ev.kind == "monitoring_started"
    assert ev.detail == {"trigger": "hearing_started", "caller": "court-1", "callee": "sizo-1", "session_id": "s1",
                         "profile": S.profile}


def test_a_session_that_never_reports_is_a_break_at_the_end_of_its_start_grace():
    m = machine()
    f, _ = started(m)
    assert m.step(f, T0 + S.start_grace_s - 0.01) == []
    assert f.state == LiveState.MONITORING
    effects = m.step(f, T0 + S.start_grace_s)
    assert f.state == LiveState.RECONNECTING and f.session_id is None and f.verdict == "unusable"
    assert f.break_cause == BreakCause.CONNECTION_LOST and f.break_started == T0 + S.start_grace_s
    assert f.stats == {"breaks": 1, "unresumed": 1}
    commit, count, tell, stop, again = effects
    assert commit.writes[0] == LockHearing() and commit.writes[2] == Save(refresh=True)
    opened = commit.writes[1]
    assert isinstance(opened, OpenBreak) and opened.cause == "connection_lost"
    assert opened.evidence["kind"] == "silent" and opened.evidence["role"] == "caller"
    assert opened.evidence["session_id"] == "s1"
    assert count == Count("break", "connection_lost")
    assert tell.name == "break" and tell.fields == {"cause": "connection_lost"}
    assert tell.banner["en"].startswith("Connection to sizo-1 lost - break recommended. The terminals stopped")
    assert tell.banner["ru"].startswith("Связь с sizo-1 потеряна — рекомендуется объявить перерыв")
    assert stop == StopSession("s1") and again == Again()


def test_after_a_break_the_first_attempt_follows_at_once():
    m = machine()
    f, _ = started(m)
    at = T0 + S.start_grace_s
    m.step(f, at)
    f.break_id = 41                 # what the service's OpenBreak gives it
    start, commit, tell = m.step(f, at + 0.01)
    assert start.session_id == "s2" and f.session_id == "s2" and f.attempt == 1 and f.next_at is None
    assert commit.writes == (UpdateBreak(41, {"attempts": 1}),
                             Event("reconnect", {"break_id": 41, "attempt": 1, "session_id": "s2"}), Save())
    assert tell == Tell("reconnect", {"attempt": 1, "cause": "connection_lost"})


def test_stalled_seconds_break_for_the_connection_and_unusable_ones_for_quality():
    m = machine()
    f, _ = started(m)
    feed(m, f, 0, T0 + 1)
    feed(m, f, 1, T0 + 2, caller=STALL)
    assert m.step(f, T0 + 2) == []
    feed(m, f, 2, T0 + 3, caller=STALL)
    m.step(f, T0 + 3)
    assert f.state == LiveState.RECONNECTING and f.break_cause == "connection_lost"

    f, _ = started(m)
    for t in range(S.unusable_n - 1):
        feed(m, f, t, T0 + 1 + t, callee=BAD)
    assert m.step(f, T0 + S.unusable_n) == []
    feed(m, f, S.unusable_n - 1, T0 + S.unusable_n, callee=BAD)
    effects = m.step(f, T0 + S.unusable_n)
    assert f.break_cause == BreakCause.QUALITY
    opened = writes(effects)[1]
    assert opened.evidence["kind"] == "unusable" and opened.evidence["role"] == "callee"


def test_a_failed_attempt_waits_its_backoff_then_tries_again():
    m = machine()
    f, at = broken(m)
    f.break_id = 5
    rng = random.Random()
    rng.setstate(m.rng.getstate())
    delay = backoff_s(1, S, rng)
    attempt_at = at
    assert m.step(f, attempt_at + S.attempt_grace_s - 0.01) == []
    effects = m.step(f, attempt_at + S.attempt_grace_s)
    assert f.state == LiveState.RECONNECTING and f.session_id is None
    assert f.next_at == pytest.approx(attempt_at + S.attempt_grace_s + delay)
    (commit, stop) = effects
    ev = commit.writes[0]
    assert ev.kind == "reconnect_attempt_failed" and ev.detail["retry_in_s"] == round(delay, 2)
    assert ev.detail["attempt"] == 1 and ev.detail["session_id"] == "s2" and commit.writes[1] == Save(refresh=False)
    assert stop == StopSession("s2")
    assert m.step(f, f.next_at - 0.01) == []
    effects = m.step(f, f.next_at)
    assert f.attempt == 2 and f.session_id == "s3" and "reconnect" in events(effects)


def test_quality_holding_resume_good_s_is_ready_to_resume_and_losing_it_withdraws():
    m = machine()
    f, at = broken(m)
    f.break_id = 5
    for t in range(S.resume_good_s - 1):
        feed(m, f, t, at + 1 + t)
    assert m.step(f, at + S.resume_good_s - 1) == []
    feed(m, f, S.resume_good_s - 1, at + S.resume_good_s)
    now = at + S.resume_good_s
    (commit,) = m.step(f, now)
    assert f.state == LiveState.READY_TO_RESUME and f.since == now and f.ready_at == now
    assert commit.writes[0] == UpdateBreak(5, {"ready_at": to_dt(now)})
    assert commit.writes[1].kind == "ready_to_resume" and commit.writes[1].detail["good_s"] == S.resume_good_s
    assert commit.writes[2] == Save(refresh=True)

    for t in range(S.resume_good_s, S.resume_good_s + S.stall_s):
        feed(m, f, t, now + 1, caller=STALL)
    withdraw, failed, stop = m.step(f, now + 1)
    assert withdraw == Commit(now + 1, (UpdateBreak(5, {"ready_at": None}),))
    assert failed.writes[0].kind == "ready_withdrawn" and failed.writes[1] == Save(refresh=True)
    assert stop == StopSession("s2")
    assert f.state == LiveState.RECONNECTING and f.since == now + 1 and f.ready_at is None


def test_not_ready_after_reconnect_timeout_escalates_once_and_attempts_go_on():
    m = machine()
    f, at = broken(m)
    f.break_id = 5
    assert not any(isinstance(e, Escalate) for e in m.step(f, at + S.reconnect_timeout_s - 0.01))
    effects = m.step(f, at + S.reconnect_timeout_s)
    esc = [e for e in effects if isinstance(e, Escalate)]
    assert len(esc) == 1 and esc[0].detail["break_id"] == 5 and esc[0].detail["since_break_s"] == S.reconnect_timeout_s
    assert UpdateBreak(5, {"escalated_at": to_dt(at + S.reconnect_timeout_s)}) in writes(effects)
    assert "reconnect_timeout" in events(effects)
    assert f.escalated and f.state == LiveState.RECONNECTING
    later = [m.step(f, at + S.reconnect_timeout_s + k) for k in range(1, 30)]
    assert not any(isinstance(e, Escalate) for effects in later for e in effects)
    assert any(isinstance(e, StartSession) for effects in later for e in effects)


def test_resume_needs_ready_and_closes_the_break():
    m = machine()
    with pytest.raises(NotReady, match="not monitored"):
        m.resume(None, 1, T0, "sec")
    f, at = broken(m)
    f.break_id = 5
    with pytest.raises(NotReady, match="reconnecting"):
        m.resume(f, 1, at, "sec")
    for t in range(S.resume_good_s):
        feed(m, f, t, at + 1 + t)
    ready_at = at + S.resume_good_s
    m.step(f, ready_at)
    now = ready_at + 5
    effects, out = m.resume(f, 1, now, "sec")
    duration = round(now - at, 1)
    assert out == {"break_id": 5, "duration_s": duration, "cause": "connection_lost"}
    commit, count, tell = effects
    lock, close, ev, save = commit.writes
    assert lock == LockHearing() and save == Save(refresh=True)
    assert close == UpdateBreak(5, {"resumed_at": to_dt(now), "resumed_by": "sec", "ended_at": to_dt(now),
                                    "outcome": "resumed", "duration_s": duration})
    assert ev.kind == "resume" and ev.detail["attempts"] == 1 and ev.detail["by"] == "sec"
    assert ev.detail["ready_at"] == to_dt(ready_at).isoformat().replace("+00:00", "Z")
    assert count == Count("resume") and tell == Tell("resume", {"cause": "connection_lost"})
    assert f.state == LiveState.MONITORING and f.break_id is None and f.attempt == 0
    assert f.stats["unresumed"] == 0 and f.stats["breaks"] == 1


def test_stop_closes_an_open_break_and_ends_with_the_final_verdict():
    m = machine()
    f, at = broken(m)
    f.break_id = 5
    now = at + 10
    commit, stop = m.stop(f, "hearing_held", now)
    close, ev, save, ended = commit.writes
    assert close == UpdateBreak(5, {"ended_at": to_dt(now), "outcome": "hearing_held", "duration_s": 10.0})
    assert ev == Event("monitoring_stopped", {"reason": "hearing_held", "open_break_id": 5, "terminal_id": "sizo-1",
                                                 "verdict": "unusable"})
    assert save == Save(refresh=True) and ended == MarkEnded()
    assert stop == StopSession("s2")
    assert f.state == LiveState.ENDED and f.session_id is None and f.break_id is None

    f, _ = started(m)
    for t in range(10):
        feed(m, f, t, T0 + 1 + t)
    (commit, _) = m.stop(f, "suspended", T0 + 11, state=LiveState.STOPPED, detail={"suspension_ids": [3]})
    assert commit.writes[0].detail == {"reason": "suspended", "open_break_id": None, "verdict": f.verdict,
                                       "terminal_id": "sizo-1",
                                       "suspension_ids": [3]}
    assert f.state == LiveState.STOPPED


def test_a_session_is_renewed_before_its_planned_end():
    m = machine()
    f, (start, _) = started(m, end=T0 + 2 * 86400)       # sessions last at most a day
    assert start.duration_s == 86400
    renew_at = f.session_end - S.renew_before_s
    for t in range(3):
        feed(m, f, t, renew_at - 0.5)
    assert m.step(f, renew_at - 0.01) == []
    new, commit, stop = m.step(f, renew_at)
    assert new.session_id == "s2" and f.session_id == "s2" and f.counted_t == -1
    assert commit.writes == (Event("monitoring_renewed", {"old_session_id": "s1", "session_id": "s2"}), Save())
    assert stop == StopSession("s1") and f.state == LiveState.MONITORING


def test_the_flow_ends_with_the_hearing_a_suspension_or_the_planned_end():
    m = machine()
    f, _ = started(m)
    assert m.ending(f, "in_progress", [], T0) is None
    assert m.ending(f, "scheduled", [], T0) is None
    for status in ("held", "cancelled", "postponed"):
        e = m.ending(f, status, [], T0)
        assert (e.reason, e.state) == (f"hearing_{status}", LiveState.ENDED)
    e = m.ending(f, "in_progress", [7], T0)
    assert (e.reason, e.state, e.detail) == ("suspended", LiveState.STOPPED, {"suspension_ids": [7]})
    e = m.ending(f, "in_progress", [], END + S.end_margin_s)
    assert (e.reason, e.state) == ("planned_end_passed", LiveState.ENDED)


def test_only_the_current_session_s_own_terminals_are_heard_and_the_caller_s_seconds_counted():
    m = machine()
    f, _ = started(m)
    assert m.accepts(f, "s1", "court-1", "caller") and m.accepts(f, "s1", "sizo-1", "callee")
    assert not m.accepts(f, "s1", "sizo-1", "caller") and not m.accepts(f, "s0", "court-1", "caller")
    assert not m.accepts(f, "s1", "court-1", "observer")
    m.observe(f, "caller", 0, GOOD, T0 + 1)
    m.observe(f, "caller", 0, BAD, T0 + 1)          # a resend of the same second: counted once
    m.observe(f, "caller", 1, STALL, T0 + 2)
    m.observe(f, "callee", 2, BAD, T0 + 2)          # the callee's seconds are not counted
    assert f.stats == {"good": 1, "stalled": 1, "unusable": 1} and f.counted_t == 1


def test_a_session_that_ended_or_could_not_start_is_lost_at_the_next_step():
    m = machine()
    f, _ = started(m)
    feed(m, f, 0, T0 + 1)
    m.session_lost(f, T0 + 1.5)
    m.step(f, T0 + 1.5)
    assert f.state == LiveState.RECONNECTING

    f, _ = started(m)
    m.not_started(f, T0)
    m.step(f, T0)
    assert f.state == LiveState.RECONNECTING


def test_a_flow_carried_over_a_restart_gets_the_start_grace_again():
    m = machine()
    f, _ = started(m)
    feed(m, f, 0, T0 + 1)
    m.carry_on(f, T0 + 100)
    assert all(side.last_at is None for side in f.detector.sides.values())
    assert f.session_end == f.end_at + 60
    assert m.step(f, T0 + 100 + S.start_grace_s + S.silent_s - 0.01) == []
    m.step(f, T0 + 100 + S.start_grace_s + S.silent_s)
    assert f.state == LiveState.RECONNECTING


def test_the_verdict_follows_the_window_and_is_saved_when_it_changes():
    m = machine()
    f, _ = started(m)
    for t in range(3):
        feed(m, f, t, T0 + 1 + t)
    m.step(f, T0 + 3)
    assert f.verdict == "good" and f.dirty
    f.dirty = False
    for t in range(3, 6):
        feed(m, f, t, T0 + 1 + t, caller=Second("degraded", False), callee=Second("degraded", False))
    m.step(f, T0 + 6)
    assert f.verdict == "degraded" and f.dirty


def test_backoff_keeps_the_live_flow_s_arithmetic():
    s = LiveSettings(backoff_initial_s=0.5, backoff_max_s=4, backoff_jitter=0.2)
    a, b = random.Random(3), random.Random(3)
    for n in range(0, 10):
        before = min(s.backoff_max_s, s.backoff_initial_s * 2 ** max(0, n - 1)) \
            * (1 + b.uniform(-s.backoff_jitter, s.backoff_jitter))
        assert backoff_s(n, s, a) == pytest.approx(before, rel=1e-12)


def test_the_final_verdict():
    assert final_verdict({}, False) == "unknown"
    assert final_verdict({"good": 100}, False) == "good"
    assert final_verdict({"good": 100, "breaks": 1}, False) == "degraded"
    assert final_verdict({"good": 70, "degraded": 30}, False) == "degraded"
    assert final_verdict({"good": 100, "unresumed": 1}, False) == "unusable"
    assert final_verdict({"good": 100}, True) == "unusable"
