"""The quality model: E-model figures, limits at their boundaries, config errors, verdicts of reports."""
from __future__ import annotations

import copy
import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from contract import quality as q
from contract.configfile import ConfigError
from contract.reports import Interval, SessionReport


@pytest.fixture(scope="module")
def profiles() -> dict[str, q.Thresholds]:
    return q.load_thresholds()


@pytest.fixture(scope="module")
def hearing(profiles) -> q.Thresholds:
    return profiles["hearing"]


# --- E-model -----------------------------------------------------------------

def test_g107_defaults_give_r_93_2_and_mos_4_41():
    r = q.emodel_r(0, 0, 0, codec="g711")
    assert r == pytest.approx(93.2, abs=0.05)
    assert q.r_to_mos(r) == pytest.approx(4.41, abs=0.005)
    assert q.r_rating(r) == "very satisfied"


@pytest.mark.parametrize("r, expected", [
    (-5, 1.0), (0, 1.0), (50, 2.58), (60, 3.10), (70, 3.60), (80, 4.03), (90, 4.34), (93.2, 4.41),
    (100, 4.5), (120, 4.5),
])
def test_r_to_mos_matches_g107_annex_b(r, expected):
    # G.107's table rounds R 80 to MOS 4.03; the formula gives 4.024.
    assert q.r_to_mos(r) == pytest.approx(expected, abs=0.0061)


def test_r_to_mos_formula_in_range():
    r = 75.0
    assert q.r_to_mos(r) == pytest.approx(1 + 0.035 * r + r * (r - 60) * (100 - r) * 7e-6)


def test_delay_150_ms_lowers_r_slightly_400_ms_a_lot():
    r0 = q.emodel_r(0, 0, 0, codec="g711")
    r150 = q.emodel_r(150, 0, 0, codec="g711")
    r400 = q.emodel_r(400, 0, 0, codec="g711")
    assert 0 < r0 - r150 < 5            # G.114: 150 ms acceptable for most
    assert 25 < r0 - r400 < 40          # 400 ms: many users dissatisfied
    assert q.r_to_mos(r400) < 3.4
    # Below 100 ms the delay impairment Idd is nil; what remains (echo, Idte) is small.
    assert r0 - q.emodel_r(100, 0, 0, codec="g711") < 3


def test_jitter_counts_as_delay_through_the_dejitter_buffer():
    # Ta = one-way + 2 * jitter: 100 ms + 2 * 50 ms judged as 200 ms.
    assert q.emodel_r(100, 50, 0) == pytest.approx(q.emodel_r(200, 0, 0))
    assert q.emodel_r(100, 50, 0, jitter_buffer_factor=1.0) == pytest.approx(q.emodel_r(150, 0, 0))


def test_ie_eff_formula_for_loss():
    # G.711 without PLC (Bpl 4.3), 2 % random loss: Ie,eff = 95 * 2 / (2 + 4.3).
    drop = q.emodel_r(0, 0, 0, codec="g711") - q.emodel_r(0, 0, 0.02, codec="g711")
    assert drop == pytest.approx(95 * 2 / (2 + 4.3))
    # Bursty loss (BurstR 2) hurts more than random loss.
    assert q.emodel_r(0, 0, 0.02, burst_r=2.0) < q.emodel_r(0, 0, 0.02)
    # Codec impairment Ie adds at zero loss.
    assert q.emodel_r(0, 0, 0, codec="g729a") == pytest.approx(q.emodel_r(0, 0, 0, codec="g711") - 11)


@given(st.floats(0, 0.5), st.floats(0, 0.5))
def test_loss_lowers_mos_monotonically(a, b):
    lo, hi = sorted((a, b))
    assert q.mos(50, 5, hi) <= q.mos(50, 5, lo)


@given(st.floats(2, 1000), st.floats(2, 1000))
def test_delay_lowers_mos_monotonically(a, b):
    # G.107's talker-echo terms (6 exp(-0.3 T^2) in TERV) bump R by < 0.06 between
    # 0 and 2 ms: a property of the Recommendation, not of this code.
    lo, hi = sorted((a, b))
    assert q.mos(hi, 0, 0.01) <= q.mos(lo, 0, 0.01) + 1e-9


def test_bad_inputs_rejected():
    with pytest.raises(ValueError, match="unknown codec"):
        q.emodel_r(0, 0, 0, codec="speex")
    with pytest.raises(ValueError, match="loss_ratio"):
        q.emodel_r(0, 0, 1.5)


def test_module_imports_nothing_heavy():
    code = ("import sys, contract.quality; bad = [m for m in ('aiortc', 'aiohttp', 'av', 'psutil') "
            "if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


# --- thresholds file ---------------------------------------------------------

def test_shipped_profiles(profiles):
    assert {"hearing", "monitor", "cassation"} <= set(profiles)
    h = profiles["hearing"]
    assert h.name == "hearing"
    assert (h.degraded.one_way_delay_ms, h.unusable.one_way_delay_ms) == (150, 400)     # G.114
    assert h.unusable.jitter_ms == 50                                                   # Y.1541 IPDV
    assert profiles["cassation"].degraded.loss_ratio == 0.001                           # Y.1541 IPLR
    assert (h.degraded.mos_min, h.unusable.mos_min) == (3.6, 3.1)                       # G.107 R 70 / 60
    for th in profiles.values():
        assert q.check_order(th) is None


def test_select_unknown_profile_lists_known(profiles):
    assert q.select(profiles).name == "hearing"
    with pytest.raises(ConfigError, match="no profile named 'nope'.*cassation, hearing, mobile, monitor"):
        q.select(profiles, "nope")


def _write(tmp_path, text):
    p = tmp_path / "thresholds.yaml"
    p.write_text(text)
    return p


def test_degraded_looser_than_unusable_is_rejected_naming_file_and_key(tmp_path):
    p = _write(tmp_path, """
profiles:
  hearing:
    degraded: {loss_ratio: 0.05, mos_min: 3.6}
    unusable: {loss_ratio: 0.03, mos_min: 3.1}
""")
    with pytest.raises(ConfigError) as err:
        q.load_thresholds(p)
    assert str(p) in str(err.value)
    assert err.value.key == "profiles.hearing.degraded.loss_ratio"
    assert "looser" in str(err.value)


def test_minimum_looser_than_unusable_is_rejected(tmp_path):
    p = _write(tmp_path, """
profiles:
  strict:
    degraded: {mos_min: 3.0}
    unusable: {mos_min: 3.6}
""")
    with pytest.raises(ConfigError) as err:
        q.load_thresholds(p)
    assert err.value.key == "profiles.strict.degraded.mos_min"


@pytest.mark.parametrize("text, key", [
    ("profiles:\n  hearing:\n    degraded: {jitter_ms: fast}\n", "profiles.hearing.degraded.jitter_ms"),
    ("profiles:\n  hearing:\n    unusable: {loss_ratio: 3}\n", "profiles.hearing.unusable.loss_ratio"),
    ("profiles:\n  hearing:\n    degraded: {latency_ms: 3}\n", "profiles.hearing.degraded.latency_ms"),
    ("profiles:\n  hearing:\n    codec: speex\n", "profiles.hearing.codec"),
    ("profiles: {}\n", "profiles"),
])
def test_config_errors_name_file_and_key(tmp_path, text, key):
    p = _write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        q.load_thresholds(p)
    assert err.value.key == key
    assert str(err.value).startswith(f"{p}: key '{key}'")


def test_missing_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="file not found"):
        q.load_thresholds(tmp_path / "absent.yaml")


# --- judge: one direction ----------------------------------------------------

def test_clean_figures_are_good(hearing):
    j = q.judge(q.Figures(rtt_ms=40, jitter_ms=2, loss_ratio=0.0), hearing)
    assert j.verdict == "good"
    assert j.reasons == []
    assert j.mos == pytest.approx(4.40, abs=0.02)


@pytest.mark.parametrize("loss, verdict", [
    (0.01, "good"), (0.0101, "degraded"), (0.03, "degraded"), (0.0301, "unusable"),
])
def test_loss_boundaries(hearing, loss, verdict):
    # A figure exactly at a limit is within it.
    j = q.judge(q.Figures(rtt_ms=20, jitter_ms=1, loss_ratio=loss), hearing)
    assert j.verdict == verdict


@pytest.mark.parametrize("rtt, verdict", [(300, "good"), (302, "degraded"), (800, "degraded"), (802, "unusable")])
def test_delay_boundaries_from_rtt(hearing, rtt, verdict):
    j = q.judge(q.Figures(rtt_ms=rtt, jitter_ms=0, loss_ratio=0.0), hearing)
    # MOS at 401 ms one-way is ~3.2: the delay limit decides, not the MOS.
    assert j.verdict == verdict
    if verdict != "good":
        assert f"one-way delay (RTT/2) {rtt / 2:.0f} ms > " in j.reasons[0]


def test_one_way_delay_preferred_over_rtt(hearing):
    j = q.judge(q.Figures(rtt_ms=900, jitter_ms=0, loss_ratio=0.0, one_way_delay_ms=100), hearing)
    assert j.verdict == "good"


@pytest.mark.parametrize("jitter, verdict", [(30, "good"), (30.5, "degraded"), (50, "degraded"), (51, "unusable")])
def test_jitter_boundaries(hearing, jitter, verdict):
    # One-way 10 ms so the jitter limit, not the MOS, decides.
    j = q.judge(q.Figures(rtt_ms=20, jitter_ms=jitter, loss_ratio=0.0), hearing)
    assert j.verdict == verdict


def test_mos_limit_catches_combined_impairment(hearing):
    # Each figure within its unusable limit, together unusable by MOS.
    fig = q.Figures(rtt_ms=700, jitter_ms=45, loss_ratio=0.025)
    j = q.judge(fig, hearing, direction="inbound")
    assert j.verdict == "unusable"
    assert j.mos is not None and j.mos < 3.1
    assert any(r.startswith("inbound MOS ") and r.endswith("< 3.10 (unusable)") for r in j.reasons)


def test_video_limits(hearing):
    j = q.judge(q.Figures(rtt_ms=20, jitter_ms=1, loss_ratio=0, frame_rate=7.5, freeze_s=4.0), hearing,
                direction="outbound")
    assert j.verdict == "unusable"
    assert "outbound longest freeze 4.0 s > 3.0 s (unusable)" in j.reasons
    assert "outbound video frame rate 7.5 fps < 10.0 fps (degraded)" in j.reasons
    assert j.reasons.index("outbound longest freeze 4.0 s > 3.0 s (unusable)") == 0   # worst first


def test_unknown_figures_are_noted_not_failed(hearing):
    j = q.judge(q.Figures(rtt_ms=None, jitter_ms=None, loss_ratio=None), hearing, direction="inbound")
    assert j.verdict == "good"
    assert j.mos is None
    assert any("delay unknown" in r for r in j.reasons)
    assert any("jitter unknown" in r for r in j.reasons)
    assert any("loss unknown" in r for r in j.reasons)


def test_strict_profile_is_stricter(profiles):
    fig = q.Figures(rtt_ms=240, jitter_ms=10, loss_ratio=0.004)
    assert q.judge(fig, profiles["hearing"]).verdict == "good"
    assert q.judge(fig, profiles["cassation"]).verdict == "degraded"


# --- judge_report ------------------------------------------------------------

def judge_report(report: dict, th: q.Thresholds) -> q.Judgement:
    """The quality model on a report as an agent sends it (validated at the edge, as the wire does)."""
    return q.judge_report(SessionReport.model_validate(report), th)


def judge_interval(interval: dict, th: q.Thresholds) -> q.Judgement:
    """The quality model on one second as an agent sends it."""
    return q.judge_interval(Interval.model_validate(interval), th)


def _direction(packets=1500, lost=0, jitter=2.0, kbps=650.0):
    return {"packets": packets, "lost": lost, "loss_ratio": lost / (packets + lost) if packets + lost else 0.0,
            "jitter_ms": jitter, "bitrate_kbps": kbps}


def _report(**over):
    rep = {
        "schema": "vks.test-report/1", "started_at": "2026-11-25T10:00:00Z", "duration_s": 10.0,
        "connected": True, "connect_ms": 180.0, "error": None,
        "rtt_ms": {"mean": 40.0, "p50": 39.0, "p95": 48.0, "max": 60.0},
        "outbound": _direction(), "inbound": _direction(),
        "streams": [
            {"kind": "audio", "direction": "outbound", "ssrc": 1, "packets": 500, "lost": 0,
             "loss_ratio": 0.0, "jitter_ms": 1.0},
            {"kind": "video", "direction": "outbound", "ssrc": 2, "packets": 1000, "lost": 0,
             "loss_ratio": 0.0, "jitter_ms": 2.0},
            {"kind": "audio", "direction": "inbound", "ssrc": 3, "packets": 500, "lost": 0,
             "loss_ratio": 0.0, "jitter_ms": 1.0},
            {"kind": "video", "direction": "inbound", "ssrc": 4, "packets": 1000, "lost": 0,
             "loss_ratio": 0.0, "jitter_ms": 2.0},
        ],
        "mos": None, "verdict": "good", "reasons": [],
        "intervals": [{"t": float(t), "rtt_ms": 40.0, "inbound": _direction(150, 0), "outbound": _direction(150, 0)}
                      for t in range(10)],
    }
    rep.update(over)
    return rep


def test_clean_report_is_good(hearing):
    j = judge_report(_report(), hearing)
    assert j.verdict == "good", j.reasons
    assert j.reasons == []
    assert 4.3 < j.mos <= 4.41


def test_not_connected_is_unusable(hearing):
    j = judge_report(_report(connected=False, error="no answer from http://10.0.0.2:8443 within 15 s",
                               outbound=None, inbound=None), hearing)
    assert j.verdict == "unusable"
    assert j.reasons == ["not connected: no answer from http://10.0.0.2:8443 within 15 s"]
    assert j.mos is None


def test_inbound_loss_is_named_with_value_and_limit(hearing):
    rep = _report(inbound=_direction(packets=1439, lost=61))     # 4.07 %
    for s in rep["streams"]:
        if s["direction"] == "inbound":
            s["loss_ratio"] = 0.041
    j = judge_report(rep, hearing)
    assert j.verdict == "unusable"
    assert j.reasons[0] == "inbound loss 4.1% > 3.0% (unusable)"
    assert not any(r.startswith("outbound") for r in j.reasons)


def test_worst_direction_wins(hearing):
    rep = _report(outbound=_direction(packets=1480, lost=20))     # 1.33 %: degraded
    j = judge_report(rep, hearing)
    assert j.verdict == "degraded"
    assert j.reasons == ["outbound loss 1.3% > 1.0% (degraded)"]


def test_report_delay_uses_rtt_p95_once_for_both_directions(hearing):
    rep = _report(rtt_ms={"mean": 250.0, "p50": 240.0, "p95": 340.0, "max": 500.0})
    j = judge_report(rep, hearing)
    assert j.verdict == "degraded"
    assert j.reasons == ["both directions one-way delay (RTT/2) 170 ms > 150 ms (degraded)"]


def test_report_jitter_uses_p95_of_intervals(hearing):
    rep = _report()
    # Summary jitter is low, but a tenth of the seconds jitter at 60 ms: p95 catches it.
    for iv in rep["intervals"][:1]:
        iv["inbound"]["jitter_ms"] = 60.0
    rep["intervals"] = rep["intervals"] * 2     # 20 seconds, 2 of them bad -> p95 is bad
    j = judge_report(rep, hearing)
    assert j.verdict == "unusable"
    assert "inbound jitter 60 ms > 50 ms (unusable)" in j.reasons


def test_report_jitter_summary_dict_p95(hearing):
    rep = _report(intervals=[])
    rep["outbound"]["jitter_ms"] = {"mean": 12.0, "p95": 35.0, "max": 80.0}
    j = judge_report(rep, hearing)
    assert j.reasons == ["outbound jitter 35 ms > 30 ms (degraded)"]


def test_blackout_is_not_averaged_away(hearing):
    # 60 s session, a 4 s blackout inbound: loss alone would be ~6 % (unusable anyway);
    # the stall run is reported as a freeze too.
    intervals = []
    for t in range(60):
        inbound = _direction(0, 0) if 20 <= t < 24 else _direction(150, 0)
        intervals.append({"t": float(t), "rtt_ms": 40.0 if not 20 <= t < 24 else None,
                          "inbound": inbound, "outbound": _direction(150, 0)})
    rep = _report(duration_s=60.0, intervals=intervals, inbound=_direction(packets=8400, lost=0))
    j = judge_report(rep, hearing)
    assert j.verdict == "unusable"
    assert "inbound longest stall (no packets) 4.0 s > 3.0 s (unusable)" in j.reasons


def test_report_shape_of_agent_report(hearing):
    """The keys agent/report.py writes: summary p95 jitter, stall and freeze figures."""
    rep = _report(intervals=[])
    rep["inbound"].update({
        "jitter_ms": 8.0, "stall_s": 0, "longest_stall_s": 0,
        "summary": {"loss_ratio": {"mean": 0.0, "p50": 0.0, "p95": 0.0, "max": 0.0},
                    "jitter_ms": {"mean": 9.0, "p50": 8.0, "p95": 33.0, "max": 41.0}},
        "fps": 14.2, "freezes": 3, "freeze_s": 1.6})
    rep["outbound"].update({"fps": 4.5, "freezes": 1, "freeze_s": 1.2, "longest_stall_s": 2})
    j = judge_report(rep, hearing)
    assert j.verdict == "unusable"
    assert j.reasons == [
        "outbound video frame rate 4.5 fps < 5.0 fps (unusable)",
        "outbound longest stall (no packets) 2.0 s > 1.0 s (degraded)",
        "inbound jitter 33 ms > 30 ms (degraded)",
        "inbound video frozen in total (3 freezes) 1.6 s > 1.0 s (degraded)",
    ]


def test_direction_with_only_empty_figures_is_not_measured(hearing):
    # agent/report.py writes {key: None} for a side that sent nothing back.
    empty = {k: None for k in ("packets", "lost", "loss_ratio", "jitter_ms", "bitrate_kbps")}
    j = judge_report(_report(outbound=empty), hearing)
    assert j.verdict == "degraded"
    assert j.reasons == ["outbound: no figures (direction not measured)"]


def test_direction_without_figures_is_degraded(hearing):
    j = judge_report(_report(outbound=None), hearing)
    assert j.verdict == "degraded"
    assert "outbound: no figures (direction not measured)" in j.reasons


def test_direction_without_packets_is_unusable(hearing):
    j = judge_report(_report(inbound=_direction(packets=0, lost=0)), hearing)
    assert j.verdict == "unusable"
    assert "inbound: no packets received" in j.reasons


def test_mos_uses_audio_stream_figures(hearing):
    rep = _report()
    for s in rep["streams"]:
        if s["direction"] == "inbound" and s["kind"] == "audio":
            s.update(lost=25, packets=475, loss_ratio=0.05)
    j = judge_report(rep, hearing)
    assert j.mos == pytest.approx(q.mos(24, 2.0, 0.05), abs=0.01)


def test_report_without_rtt_notes_it(hearing):
    j = judge_report(_report(rtt_ms={"mean": None, "p50": None, "p95": None, "max": None}), hearing)
    assert j.verdict == "good"
    assert j.reasons == ["both directions delay unknown (no RTT): not judged"]


def test_judge_report_does_not_modify_the_report(hearing):
    rep = _report()
    before = copy.deepcopy(rep)
    judge_report(rep, hearing)
    assert rep == before


# --- judge_interval ----------------------------------------------------------

def test_interval_good(profiles):
    iv = {"t": 3.0, "rtt_ms": 42.0, "inbound": _direction(75, 0), "outbound": _direction(75, 0)}
    assert judge_interval(iv, profiles["monitor"]).verdict == "good"


def test_interval_without_packets_is_a_stall(profiles):
    iv = {"t": 3.0, "rtt_ms": None, "inbound": _direction(0, 0), "outbound": _direction(75, 0)}
    j = judge_interval(iv, profiles["monitor"])
    assert j.verdict == "unusable"
    assert j.reasons[0] == "inbound stalled: no packets received in this second"


def test_interval_stalled_flag_wins(profiles):
    iv = {"t": 3.0, "rtt_ms": 40.0, "inbound": dict(_direction(30, 0), stalled=True),
          "outbound": _direction(75, 0)}
    assert judge_interval(iv, profiles["monitor"]).verdict == "unusable"


def test_interval_loss_against_monitor_profile(profiles):
    iv = {"t": 3.0, "rtt_ms": 40.0, "inbound": _direction(71, 4), "outbound": _direction(75, 0)}
    j = judge_interval(iv, profiles["monitor"])
    assert j.verdict == "unusable"
    assert j.reasons[0] == "inbound loss 5.3% > 5.0% (unusable)"


def test_interval_absent_direction_is_noted_not_a_stall(profiles):
    iv = {"t": 3.0, "rtt_ms": 40.0, "inbound": _direction(75, 0), "outbound": None}
    j = judge_interval(iv, profiles["monitor"])
    assert j.verdict == "good"
    assert j.reasons == ["outbound: no figures this second"]


def test_interval_frame_count_and_short_last_interval(profiles):
    iv = {"t": 5.0, "rtt_ms": 40.0, "inbound": dict(_direction(3, 0), fps=1), "outbound": _direction(75, 0)}
    j = judge_interval(iv, profiles["monitor"])
    assert j.reasons == ["inbound video frame rate 1.0 fps < 3.0 fps (unusable)"]
    iv["duration_s"] = 0.1      # the session ended 0.1 s into this second: 1 frame is 10 fps
    assert judge_interval(iv, profiles["monitor"]).verdict == "good"


def test_exit_codes_match_issue_3():
    assert q.EXIT_CODES == {"good": 0, "degraded": 1, "unusable": 3}
