"""The live detector with crafted interval streams: spikes, flapping, blackout, slow degradation,
silence; and properties (hypothesis) over arbitrary streams."""
from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from contract import quality
from contract.reasons import text
from contract.reports import Interval
from controller.detector import Detector, DetectorParams, Second, classify

P = DetectorParams(freeze_break_s=10)   # stall 2, 4 of 6 unusable, resume after 8 good, silent 3 s
TH = quality.select(quality.load_thresholds(), "monitor")

GOOD = Second("good", False)
DEGRADED = Second("degraded", False)
UNUSABLE = Second("unusable", False)
STALL = Second("unusable", True)
FROZEN = Second("unusable", False, video_only=True)      # no usable video, packets flowing
CODES = {"g": GOOD, "d": DEGRADED, "u": UNUSABLE, "s": STALL, "f": FROZEN}


def feed(pattern: str, *, det: Detector | None = None, role: str = "caller", start: int = 0):
    """Feed one second per character (g/d/u/s/f) arriving at t + 1; returns (detector, the
    first second index at which it was lost or None, the first at which it was ready or None)."""
    det = det or Detector(P, expect_from=0.0)
    lost_at = ready_at = None
    for i, c in enumerate(pattern, start):
        det.observe(role, i, CODES[c], now=i + 1.0)
        if lost_at is None and det.lost(i + 1.0) is not None:
            lost_at = i
        if ready_at is None and det.ready(i + 1.0):
            ready_at = i
    return det, lost_at, ready_at


def interval(t, *, packets=75, lost=0, jitter=3.0, rtt=20.0, fps=10, stalled=False, outbound=True):
    d = {"t": float(t), "packets": 0 if stalled else packets, "lost": lost,
         "loss_ratio": lost / max(1, packets + lost), "jitter_ms": jitter, "fps": 0 if stalled else fps,
         "stalled": stalled}
    return Interval.model_validate({"t": float(t), "rtt_ms": rtt, "inbound": d,
                                    "outbound": dict(d) if outbound else None})


# --- classification with the shared model ---------------------------------------------------

def test_classify_uses_the_monitor_thresholds():
    assert classify(interval(0), TH).verdict == "good"
    assert classify(interval(0, lost=3, packets=72), TH).verdict == "degraded"      # 4 % loss
    bad = classify(interval(0, lost=10, packets=65), TH)                             # 13 % loss
    assert bad.verdict == "unusable" and not bad.stalled and any("loss" in r for r in bad.reasons)
    s = classify(interval(0, stalled=True), TH)
    assert s.stalled and s.verdict == "unusable"
    # The callee's interval has no outbound: that is noted, not judged.
    assert classify(interval(0, outbound=False), TH).verdict == "good"
    # Video frozen while packets flow with little loss: unusable, but for its video only.
    frozen = classify(interval(0, fps=0, lost=1, packets=74), TH)
    assert frozen.verdict == "unusable" and frozen.video_only and not frozen.bad and not frozen.usable
    both = classify(interval(0, fps=0, lost=10, packets=65), TH)
    assert both.verdict == "unusable" and not both.video_only and both.bad


# --- crafted streams --------------------------------------------------------------------------

def test_blackout_breaks_after_two_stalled_seconds():
    det, lost_at, _ = feed("gggggggg" + "ss" + "ssss")
    assert lost_at == 9
    lost = det.lost(20.0)
    assert lost.cause == "connection_lost" and lost.kind == "stall"
    assert lost.evidence["stalled_s"] >= 2 and "stalled" in lost.evidence["seconds"]


def test_a_stall_is_two_stalled_seconds_of_one_direction():
    """The caller's second i carries the callee's second i or i - 1: one dropout of 1.5 s both ways
    can stall the inbound in second 8 and the relayed outbound in second 9. Two stalled seconds of
    the side, yet no direction went 2 s without packets: no stall. The outbound's own two: a stall,
    naming its direction."""
    def second(t: int, stalled: str | None) -> Second:
        iv = interval(t).model_dump()
        if stalled:
            iv[stalled].update(packets=0, fps=0, stalled=True)
        return classify(Interval.model_validate(iv), TH)

    offset = [None] * 8 + ["inbound", "outbound"] + [None] * 3
    det = Detector(P, expect_from=0.0)
    for t, which in enumerate(offset):
        det.observe("caller", t, second(t, which), now=t + 1.0)
        assert det.lost(t + 1.0) is None, t
    assert det.sides["caller"].seconds[8].stalled and det.sides["caller"].seconds[9].stalled

    det = Detector(P, expect_from=0.0)
    for t, which in enumerate([None] * 8 + ["outbound", "outbound"]):
        det.observe("caller", t, second(t, which), now=t + 1.0)
    lost = det.lost(10.0)
    assert lost.kind == "stall" and lost.evidence["direction"] == "outbound" and lost.evidence["stalled_s"] == 2
    # ... and a restart keeps which direction stalled.
    assert Detector.restore(P, det.snapshot()).lost(10.0).evidence["direction"] == "outbound"


def test_one_stalled_second_or_a_short_spike_does_not_break():
    assert feed("ggggg" + "s" + "gggggg")[1] is None
    assert feed("ggggg" + "uu" + "ggggg")[1] is None          # 2 s of heavy loss
    assert feed("ggggg" + "su" + "gggg" + "us" + "gggg")[1] is None
    assert feed("gggg" + "uuu" + "ggg" + "uuu" + "ggg")[1] is None   # 3 of 6, twice


def test_sustained_unusable_seconds_break_on_quality():
    det, lost_at, _ = feed("gggggg" + "ugugug" + "uu")
    assert lost_at is not None
    assert det.lost(15.0).cause == "quality" and det.lost(15.0).evidence["unusable"] >= 4


def test_slow_degradation_breaks_only_once_seconds_turn_unusable():
    # good -> degraded for a long time: no break; then unusable creeps in.
    det, lost_at, _ = feed("gggg" + "d" * 30)
    assert lost_at is None and det.verdict(35.0) == "degraded"
    _, lost_at, _ = feed("gggg" + "d" * 10 + "dudu" + "duuu")
    assert lost_at == 4 + 10 + 4 + 2        # the 4th unusable second within 6


def test_a_few_seconds_of_frozen_video_do_not_break_a_longer_freeze_does():
    # Seen under 0.5 % loss: a lost packet, the decoder waits for a key frame, 4 s at 0 fps
    # (freeze_break_s 10 here; the default is 30).
    assert feed("gggggg" + "ffff" + "gggggg")[1] is None
    assert feed("gggggg" + "ffffff" + "g" + "fff" + "gggg")[1] is None
    det, lost_at, _ = feed("gggggg" + "f" * 10)
    assert lost_at == 6 + 9
    assert det.lost(16.0).kind == "freeze" and det.lost(16.0).cause == "quality"
    # Frozen seconds do not count as usable for resuming.
    assert feed("ss" + "ggff" + "gggggggg")[2] == 2 + 4 + 7


def test_ready_only_after_eight_consecutive_usable_seconds():
    _, _, ready_at = feed("ssss" + "gggggggg")
    assert ready_at == 4 + 7
    # Degraded but usable seconds count as good for resuming.
    assert feed("ss" + "gdgdgdgd")[2] == 2 + 7


def test_flapping_link_never_becomes_ready():
    _, _, ready_at = feed(("g" * 7 + "s") * 6)
    assert ready_at is None
    _, _, ready_at = feed(("ggggg" + "u") * 8)
    assert ready_at is None


def test_silence_of_the_stream_is_lost():
    det = Detector(P, expect_from=0.0)
    assert det.lost(2.9) is None
    lost = det.lost(3.0)
    assert lost is not None and lost.kind == "silent" and lost.role == "caller"
    det, _, _ = feed("gggg")
    assert det.lost(4.5) is None and det.lost(7.5).kind == "silent"
    # A callee that reported and then went quiet is lost too; one that never reported is not.
    det.observe("callee", 0, GOOD, now=8.0)
    det.observe("caller", 4, GOOD, now=8.0)
    assert det.lost(9.0) is None
    det.observe("caller", 5, GOOD, now=11.5)
    lost = det.lost(11.5)
    assert lost.kind == "silent" and lost.role == "callee"


def test_either_side_can_break_and_both_must_be_good_to_resume():
    det, _, _ = feed("gggggggggg")
    for t in range(3):
        det.observe("callee", t, STALL, now=10.0 + t * 0.1)
    assert det.lost(10.5).role == "callee"
    det = Detector(P, expect_from=0.0)
    for t in range(10):
        det.observe("caller", t, GOOD, now=t + 1.0)
        det.observe("callee", t, GOOD if t < 5 else DEGRADED if t < 9 else UNUSABLE, now=t + 1.0)
    assert not det.ready(10.0)


def test_late_and_duplicate_seconds_keep_the_worst():
    det = Detector(P, expect_from=0.0)
    det.observe("caller", 1, STALL, now=2.0)
    det.observe("caller", 0, GOOD, now=2.1)
    det.observe("caller", 1, GOOD, now=2.2)          # a resend of a better copy does not hide the stall
    det.observe("caller", 2, STALL, now=3.0)
    assert det.lost(3.0).kind == "stall"


def test_a_quality_breaks_evidence_carries_its_reasons_as_codes_through_a_restart():
    """The seconds' reasons travel as codes (contract.reasons) into a break's evidence - the act and
    the page render them in kk and ru - and survive the detector's snapshot; a snapshot written
    before the codes existed restores without them, and the evidence then keeps its words only."""
    det = Detector(P, expect_from=0.0)
    for t in range(8):
        det.observe("caller", t, classify(interval(t, lost=10, packets=65), TH), now=t + 1.0)
    ev = det.lost(9.0).evidence
    assert ev["reason_codes"] and [text(rc) for rc in ev["reason_codes"]] == ev["reasons"]
    assert ev["reason_codes"][0]["code"] == "loss_high"
    again = Detector.restore(P, det.snapshot())
    assert again.lost(9.0).evidence["reason_codes"] == ev["reason_codes"]
    old = det.snapshot()
    for side in old["sides"].values():
        side["seconds"] = {t: x[:4] for t, x in side["seconds"].items()}      # the earlier form
    older = Detector.restore(P, old).lost(9.0).evidence
    assert older["reasons"] == ev["reasons"] and "reason_codes" not in older


def test_snapshot_round_trip():
    det, _, _ = feed("gggdduus")
    again = Detector.restore(P, det.snapshot())
    assert again.snapshot() == det.snapshot()
    assert again.verdict(9.0) == det.verdict(9.0)


# --- properties -------------------------------------------------------------------------------

streams = st.text(alphabet="gdusf", min_size=1, max_size=80)


def _max_run(pattern: str, chars: str) -> int:
    best = run = 0
    for c in pattern:
        run = run + 1 if c in chars else 0
        best = max(best, run)
    return best


def _max_bad_in_window(pattern: str, w: int) -> int:
    return max((sum(1 for c in pattern[max(0, i - w + 1):i + 1] if c in "us") for i in range(len(pattern))),
               default=0)


def _max_runs_in_window(pattern: str, chars: str, w: int) -> int:
    """The most runs of `chars` (dropouts: stalled seconds in a row) in any `w` seconds."""
    def runs(part: str) -> int:
        return sum(1 for i, c in enumerate(part) if c in chars and (i == 0 or part[i - 1] not in chars))
    return max((runs(pattern[max(0, i - w + 1):i + 1]) for i in range(len(pattern))), default=0)


@settings(max_examples=300, deadline=None)
@given(streams)
def test_breaks_exactly_when_a_rule_is_met(pattern):
    _, lost_at, _ = feed(pattern)
    due = (_max_run(pattern, "s") >= P.stall_s or _max_bad_in_window(pattern, P.window_s) >= P.unusable_n
           or _max_run(pattern, "usf") >= P.freeze_break_s
           or _max_runs_in_window(pattern, "s", P.dropouts_window_s) >= P.dropouts_n)
    assert (lost_at is not None) == due


@settings(max_examples=300, deadline=None)
@given(streams)
def test_never_ready_without_a_long_enough_usable_run(pattern):
    det, _, ready_at = feed(pattern)
    if ready_at is not None:
        assert set(pattern[ready_at - P.resume_good_s + 1:ready_at + 1]) <= {"g", "d"}
    assert (ready_at is not None) == (_max_run(pattern, "gd") >= P.resume_good_s)


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=1, max_value=P.resume_good_s - 1), st.integers(min_value=1, max_value=6),
       st.integers(min_value=2, max_value=10))
def test_flapping_with_short_good_spells_never_resumes(good, bad, cycles):
    _, _, ready_at = feed(("g" * good + "s" * bad) * cycles)
    assert ready_at is None


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=60), max_size=20), st.integers(min_value=1, max_value=3))
def test_isolated_spikes_never_break(positions, width):
    # Spikes of at most one stalled second, spaced so that no window holds 4 bad seconds, nor
    # the dropouts' window 3 dropouts.
    pattern = ["g"] * 70
    last = -100
    for p in sorted(positions):
        if p - last >= max(P.window_s, P.dropouts_window_s // (P.dropouts_n - 1)):
            pattern[p] = "s"
            last = p
    _, lost_at, _ = feed("".join(pattern))
    assert lost_at is None
