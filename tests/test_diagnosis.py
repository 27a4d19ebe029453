"""Which side (issue 12, part 2): the finding from a pair and each side's session with the reference
(controller.findings, pure)."""
from __future__ import annotations

import pytest

from agent.report import stalled_first
from contract import reasons
from contract.reasons import ReasonCode
from controller.findings import FINDING_CODES, Leg, Names, finding, leg_of

GOOD = Leg("good", True, 0.0, 2.0, 20.0)
LOSSY = Leg("degraded", True, 0.07, 9.0, 30.0)
PAIR_BAD = Leg("unusable", True, 0.071, 12.0, 45.0)
NO_PATH = Leg("unusable", False, error="ICE failed")
NAMES = Names("Medeu district court", "SIZO DS-70/1")


def find(pair=PAIR_BAD, a=GOOD, b=GOOD, reference="dc-ref-1"):
    return finding(caller="court-almaty-1", callee="sizo-almaty-1", pair=pair, side_a=a, side_b=b,
                   reference=reference, names=NAMES)


def test_a_clean_pair_has_no_finding():
    assert find(pair=GOOD, a=None, b=None, reference=None) is None


def test_the_callees_access_link_is_named_with_its_loss_and_the_clean_side():
    f = find(b=LOSSY)
    assert (f["code"], f["side"], f["segment"]) == ("access_link_b", "sizo-almaty-1", "b")
    assert f["text"] == ("SIZO DS-70/1's access link loses 7.0% toward the data centre (degraded); "
                         "Medeu district court's side is clean")
    assert f["figures"]["b"]["loss_ratio"] == 0.07 and f["figures"]["a"]["verdict"] == "good"
    assert f["figures"]["pair"]["loss_ratio"] == 0.071 and f["figures"]["reference"] == "dc-ref-1"
    ru = reasons.text({"code": f["code"], "params": f["params"]}, "ru")
    kk = reasons.text({"code": f["code"], "params": f["params"]}, "kk")
    assert "«SIZO DS-70/1»" in ru and "7,0 %" in ru and "в порядке" in ru
    assert "«SIZO DS-70/1»" in kk and "7,0 %" in kk and "дұрыс" in kk


def test_the_callers_access_link():
    f = find(a=LOSSY)
    assert (f["code"], f["side"], f["segment"]) == ("access_link_a", "court-almaty-1", "a")
    assert f["text"].startswith("Medeu district court's access link loses 7.0%")


def test_a_side_that_cannot_reach_the_reference_is_its_access_link():
    f = find(pair=NO_PATH, b=Leg("unusable", False, error="ICE failed"))
    assert (f["code"], f["side"], f["params"]["loss"]) == ("access_link_b", "sizo-almaty-1", 1.0)
    assert "(ICE failed)" in f["text"]


def test_both_access_links():
    f = find(a=LOSSY, b=Leg("unusable", True, 0.12))
    assert (f["code"], f["side"], f["segment"]) == ("both", None, "none")
    assert "loses 7.0%" in f["text"] and "loses 12.0%" in f["text"]


def test_both_sides_clean_to_the_reference_puts_the_fault_between_them():
    f = find()
    assert (f["code"], f["side"], f["segment"]) == ("between", None, "between")
    assert "7.1%" in f["text"]


def test_a_pair_that_never_connected_while_each_side_reaches_the_reference():
    f = find(pair=NO_PATH)
    assert (f["code"], f["side"], f["segment"]) == ("between_no_path", None, "between")


def test_a_side_whose_session_could_not_run_is_untested():
    f = find(b=None)
    assert (f["code"], f["side"], f["segment"]) == ("side_untested", "sizo-almaty-1", "none")
    f = find(a=None, b=None)
    assert (f["code"], f["side"]) == ("side_untested", None)


@pytest.mark.parametrize("a,b,reference", [(None, None, None),
                                           (Leg("unusable", False), Leg("unusable", False), "dc-ref-1")])
def test_no_reference_or_neither_side_reaching_it(a, b, reference):
    f = find(a=a, b=b, reference=reference)
    assert (f["code"], f["side"], f["segment"]) == ("reference_unavailable", None, "none")


def test_a_thin_access_link_is_named_by_what_it_carries_not_as_a_lossy_one():
    """The headline of issue 12: a SIZO uplink capped at 500 kb/s. Its session with the reference
    ramps each direction (capacity), the quality model says capacity_low and no loss_high: the
    finding names that side's access link and what it carries against what a hearing needs."""
    thin_report = {"connected": True, "rtt_ms": {"mean": 30.0},
                   "inbound": {"loss_ratio": 0.0, "jitter_ms": 2.0},
                   "outbound": {"loss_ratio": 0.001, "jitter_ms": 3.0},
                   "capacity": {"outbound": {"kbps": 512.0}, "inbound": {"kbps": 2400.0}}}
    codes = [{"code": "capacity_low", "params": {"direction": "outbound", "value": 512.0, "limit": 700.0,
                                                 "level": "unusable"}}]
    thin = leg_of(thin_report, "unusable", reason_codes=codes)
    assert thin.capacity_kbps == 512.0 and thin.capacity_low is not None
    f = find(pair=Leg("unusable", True, 0.0, 2.0, 40.0), b=thin)
    assert (f["code"], f["side"], f["segment"]) == ("access_capacity_b", "sizo-almaty-1", "b")
    assert f["text"] == ("SIZO DS-70/1's access link carries only 512 kb/s toward the data centre, below the "
                         "700 kb/s a hearing needs (unusable); Medeu district court's side is clean")
    assert f["figures"]["b"]["capacity_kbps"] == 512.0
    for lang, word in (("ru", "кбит/с"), ("kk", "кбит/с")):
        assert word in reasons.text({"code": f["code"], "params": f["params"]}, lang)
    # Thin and lossy: the loss is what to fix first - the access link's loss is named.
    both = leg_of({**thin_report, "outbound": {"loss_ratio": 0.07}}, "unusable",
                  reason_codes=codes + [{"code": "loss_high", "params": {}}])
    assert find(b=both)["code"] == "access_link_b"


def test_every_finding_code_is_in_the_catalog_in_three_languages():
    cat = reasons.catalog()
    for code in FINDING_CODES:
        assert set(cat.codes[str(code)]) == {"kk", "ru", "en"}
        assert reasons.code_of(str(code)) is code
    assert ReasonCode.ACCESS_LINK_B.params["loss"] is reasons.ParamKind.PERCENT


def test_a_leg_from_a_judged_report_takes_the_worse_direction():
    report = {"connected": True, "rtt_ms": {"mean": 40.0, "max": 60.0},
              "inbound": {"loss_ratio": 0.01, "jitter_ms": {"mean": 3.0}},
              "outbound": {"loss_ratio": 0.07, "jitter_ms": 5.0}}
    leg = leg_of(report, "degraded")
    assert (leg.loss_ratio, leg.jitter_ms, leg.rtt_ms, leg.connected) == (0.07, 5.0, 40.0, True)
    assert not leg_of({"connected": False, "error": "ICE failed"}, "unusable").connected
    assert leg_of(None, None, error="offline") == Leg(None, False, error="offline")


def _iv(inbound: bool, outbound: bool) -> dict:
    return {"inbound": {"stalled": inbound}, "outbound": {"stalled": outbound}}


@pytest.mark.parametrize("seconds,first", [
    ([_iv(False, False)] * 3, None),
    ([_iv(False, False), _iv(True, False), _iv(True, True)], "inbound"),
    ([_iv(False, True), _iv(False, True), _iv(True, True)], "outbound"),
    ([_iv(False, False), _iv(True, True)], None),                # both in the same second: not known
    ([_iv(False, False), {"inbound": None, "outbound": {"stalled": True}}], "outbound"),
])
def test_for_a_stall_the_direction_that_stopped_first(seconds, first):
    assert stalled_first(seconds) == first


def test_the_act_tells_a_finding_in_kazakh_and_russian():
    """The act's timeline: a check_finding event has its own title and its finding's sentence in kk and
    ru (not the event's raw kind, not the English text)."""
    from controller.acts import _event_reasons
    from controller.event_words import sentence
    f = find(b=LOSSY)
    said = _event_reasons({"code": f["code"], "params": f["params"], "text": f["text"]}, {})
    assert said is not None and "«SIZO DS-70/1»" in said["ru"][0] and "дұрыс" in said["kk"][0]
    h = {"court": {"name": "Court", "timezone": "Asia/Almaty"}, "room": {"name": "3"}, "court_terminal": "c",
         "participants": []}
    for lg in ("kk", "ru"):
        detail = {"code": f["code"], "params": f["params"], "kind": "test", "callee": "t"}
        told = sentence("check_finding", detail, h, lg)
        assert "«SIZO DS-70/1»" in told and told != "check_finding"
