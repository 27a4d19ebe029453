"""The judge in the loop (rule 22, issue 13 part 3) in the pure machine: a break is recommended at
detection and the reconnect flow starts at once; the secretary records the judge's decision -
"declared" changes nothing in the flow (the resumption stays her act), "continued" (a false
alarm) ends the break by itself once the link holds (at once when it already does)."""
from __future__ import annotations

import pytest

from contract.vocab import LiveState
from controller.live.machine import Commit, Decide, Event, NoDecisionPending, Save, Tell, UpdateBreak
from tests.test_live_machine import GOOD, S, broken, events, feed, machine, writes


def test_a_decision_needs_a_break_waiting_for_one():
    m = machine()
    f, at = broken(m)
    f.break_id = 5
    f.callee_name = "СИЗО ДС-70/1"
    with pytest.raises(ValueError):
        m.decide(f, 1, "maybe", at + 1, "sec")
    effects = m.decide(f, 1, "declared", at + 2.5, "sec")
    decide, event = writes(effects)[1:]
    assert decide == Decide(5, "declared", "sec")
    assert event.kind == "break_declared" and event.detail["terminal_id"] == "sizo-1"
    assert event.detail["terminal_name"] == "СИЗО ДС-70/1" and event.detail["after_s"] == 2.5
    assert event.detail["detected_at"] < event.detail["decided_at"] and event.detail["by"] == "sec"
    assert not [e for e in effects if isinstance(e, Tell)]           # the rooms keep the banner
    assert f.state == LiveState.RECONNECTING                         # declared: the flow goes on
    with pytest.raises(NoDecisionPending):
        m.decide(f, 1, "continued", at + 3, "sec")                   # one decision per break
    with pytest.raises(NoDecisionPending):
        m.decide(None, 1, "declared", at, "sec")


def test_no_decision_while_monitoring():
    m = machine()
    f, _ = broken(m)
    f.break_id = None
    with pytest.raises(NoDecisionPending):
        m.decide(f, 1, "declared", 0.0, "sec")


def _reconnect(m, f, at):
    """The attempt's session reports good seconds until the flow is ready (or restored)."""
    out = []
    for t in range(S.resume_good_s + 1):
        feed(m, f, t, at + 1 + t)
        out += m.step(f, at + 1 + t)
    return out


def test_declared_then_resumed_by_the_secretary():
    m = machine()
    f, at = broken(m)
    f.break_id = 5
    m.decide(f, 1, "declared", at + 1, "sec")
    _reconnect(m, f, at)
    assert f.state == LiveState.READY_TO_RESUME                      # waits for the secretary
    effects, out = m.resume(f, 1, at + 20, "sec")
    assert out["break_id"] == 5 and f.state == LiveState.MONITORING and f.decision is None


def test_continued_while_reconnecting_ends_by_itself_once_the_link_holds():
    m = machine()
    f, at = broken(m)
    f.break_id = 5
    effects = m.decide(f, 1, "continued", at + 1, "sec")
    assert Tell("resume", {"cause": "connection_lost"}) in effects   # the rooms: the hearing goes on
    assert events(effects) == ["break_continued"] and f.state == LiveState.RECONNECTING
    effects = _reconnect(m, f, at)
    assert events(effects) == ["ready_to_resume", "link_restored"]
    # One transaction: the flow's row is saved as monitoring, so a reader who sees it monitoring
    # sees link_restored too (in two, the first saved it monitoring beside ready_to_resume alone).
    commits = [e for e in effects if isinstance(e, Commit) and any(isinstance(w, Save) for w in e.writes)]
    assert len(commits) == 1 and [w.kind for w in commits[0].writes if isinstance(w, Event)] == [
        "ready_to_resume", "link_restored"]
    close = next(w for w in writes(effects) if isinstance(w, UpdateBreak) and "outcome" in w.values)
    assert close.break_id == 5 and close.values["outcome"] == "continued"
    assert f.state == LiveState.MONITORING and f.break_id is None and f.stats["unresumed"] == 0


def test_continued_when_ready_returns_to_monitoring_at_once():
    m = machine()
    f, at = broken(m)
    f.break_id = 5
    _reconnect(m, f, at)
    assert f.state == LiveState.READY_TO_RESUME
    effects = m.decide(f, 1, "continued", at + 30, "sec")
    assert events(effects) == ["break_continued", "link_restored"]
    assert f.state == LiveState.MONITORING and f.break_id is None
    assert all(isinstance(e, Commit | Tell) for e in effects)
    restored = next(w for w in writes(effects) if isinstance(w, Event) and w.kind == "link_restored")
    assert restored.detail["decision"] == "continued" and restored.detail["break_id"] == 5
    assert GOOD.usable
