"""The clock of the rules as pure functions (fake times, no I/O)."""
from __future__ import annotations

import datetime as dt

import pytest

from controller import rules

UTC = dt.UTC
T = dt.datetime(2026, 12, 10, 5, 0, tzinfo=UTC)     # 10:00 in Almaty


def test_rule13_test_request_created_now_with_deadline_24h_before():
    now = T - dt.timedelta(days=3)
    p = rules.plan_test(T, now)
    assert p.created_at == now and p.run_at == now          # requested and run at once
    assert p.deadline == T - dt.timedelta(hours=24)
    assert not p.late and p.status == "pending"


def test_rule13_hearing_sooner_than_24h_runs_at_once_and_is_late():
    now = T - dt.timedelta(hours=5)
    p = rules.plan_test(T, now)
    assert p.run_at == now and p.deadline == now and p.late


def test_rule13_exactly_24h_before_is_late_but_not_earlier():
    assert rules.plan_test(T, T - dt.timedelta(hours=24)).late
    assert not rules.plan_test(T, T - dt.timedelta(hours=24, seconds=1)).late


def test_rule15_preconnect_window_is_30_to_20_minutes_before():
    opens, closes = rules.preconnect_window(T)
    assert (T - opens, T - closes) == (dt.timedelta(minutes=30), dt.timedelta(minutes=20))
    p = rules.plan_preconnect(T, T - dt.timedelta(days=1))
    assert (p.run_at, p.deadline, p.status, p.late) == (opens, closes, "scheduled", False)


def test_rule15_inside_window_runs_at_once_after_window_is_late():
    inside = T - dt.timedelta(minutes=25)
    p = rules.plan_preconnect(T, inside)
    assert p.run_at == inside and p.deadline == T - dt.timedelta(minutes=20) and not p.late
    after = T - dt.timedelta(minutes=5)
    p = rules.plan_preconnect(T, after)
    assert p.run_at == after and p.late


def test_overdue_only_without_result_at_or_after_deadline():
    d = T - dt.timedelta(hours=24)
    assert not rules.is_overdue("pending", d, d - dt.timedelta(seconds=1))
    assert rules.is_overdue("pending", d, d)
    assert rules.is_overdue("running", d, d + dt.timedelta(hours=1))
    assert not rules.is_overdue("passed", d, d + dt.timedelta(hours=1))


@pytest.mark.parametrize("level,who", [("district", "regional"), ("regional", "regional"),
                                       ("supreme", "department")])
def test_rules11_12_who_agrees(level, who):
    assert rules.coordinator_for(level) == who


def test_unknown_level_is_refused():
    with pytest.raises(rules.RuleError):
        rules.coordinator_for("military")


def test_rule24_institution_and_area_suspensions():
    sites = {"almaty-court": "Almaty", "sizo-almaty": "Almaty"}
    by_inst = rules.Suspension(1, "sizo-almaty", None, T - dt.timedelta(hours=1))
    by_area = rules.Suspension(2, None, "Karaganda", T - dt.timedelta(hours=1))
    assert rules.blocking_suspensions([by_inst, by_area], sites, T) == [by_inst]
    assert rules.blocking_suspensions([by_area], {"ak-159": "Karaganda"}, T) == [by_area]


def test_rule24_suspension_in_force_only_between_from_and_until_or_lift():
    s = rules.Suspension(1, "x", None, T, until_utc=T + dt.timedelta(hours=2))
    assert not s.in_force(T - dt.timedelta(seconds=1))
    assert s.in_force(T) and s.in_force(T + dt.timedelta(hours=1))
    assert not s.in_force(T + dt.timedelta(hours=2))
    lifted = rules.Suspension(1, "x", None, T, lifted_at=T + dt.timedelta(minutes=10))
    assert not lifted.in_force(T + dt.timedelta(minutes=10))


def test_rule3_verdict_precedence():
    C = rules.CheckState
    assert rules.hearing_verdict([], suspended=False) == "unknown"
    assert rules.hearing_verdict([C("test", "passed", "good")], suspended=False) == "good"
    # the pre-connect result is more recent than the test's
    assert rules.hearing_verdict([C("test", "passed", "good"), C("preconnect", "passed", "degraded")],
                                 suspended=False) == "degraded"
    # worst over participants; a failure without a report is unusable
    assert rules.hearing_verdict([C("test", "passed", "good"), C("test", "failed", None)],
                                 suspended=False) == "unusable"
    assert rules.hearing_verdict([C("test", "passed", "good")], suspended=True) == "suspended"
    assert rules.hearing_verdict([C("test", "passed", "good")], suspended=False, live="unusable") == "unusable"


def test_worst_session_verdict_ignores_other_words_and_is_none_without_a_verdict():
    # Callers rely on None when there is no session verdict (the hearing's check view, the live
    # intervals' merge): contract.vocab.worst with the quality model's order, not a default of good.
    assert rules.worst([]) is None
    assert rules.worst([None, "unknown", "suspended", "nonsense"]) is None
    assert rules.worst(["good"]) == "good"
    assert rules.worst(["good", "degraded", None]) == "degraded"
    assert rules.worst(iter(["degraded", "unusable", "good", "suspended"])) == "unusable"
    assert rules.worst(["unknown", "degraded"]) == "degraded"        # a hearing word is no verdict
    assert rules.VERDICT_ORDER == ("good", "degraded", "unusable")


def test_check_status_from_session_verdict():
    assert rules.check_status_for("good", True) == "passed"
    assert rules.check_status_for("degraded", True) == "passed"
    assert rules.check_status_for("unusable", True) == "failed"
    assert rules.check_status_for("good", False) == "failed"


def test_naive_times_are_refused():
    with pytest.raises(rules.RuleError):
        rules.plan_test(T.replace(tzinfo=None), T)


def test_back_to_back_bookings_do_not_overlap():
    h = dt.timedelta(hours=1)
    assert not rules.overlaps(T, T + h, T + h, T + 2 * h)
    assert rules.overlaps(T, T + h, T + h / 2, T + 2 * h)
