"""The receiver's arithmetic (agent/measure.py) on packet sequences whose truth is known."""
import random

import pytest

from agent.measure import ABS_SEND_TIME_MOD, StreamMeter, percentile, summarize
from agent.report import receive_side, side_interval

T0 = 1000.0


def ast(seconds: float) -> int:
    """abs-send-time of a send moment (6.18 fixed point, 24 bits)."""
    return int(round(seconds * (1 << 18))) % ABS_SEND_TIME_MOD


def feed(meter, packets):
    for seq, sent, arrival in packets:
        meter.add_packet(seq % 65536, int(sent * 48000), arrival, 100, ast(sent))


def stream(n, rate=50.0, delay=0.02, start_seq=100, t_send0=T0):
    return [(start_seq + i, t_send0 + i / rate, t_send0 + i / rate + delay) for i in range(n)]


def test_clean_stream_has_no_loss_and_no_jitter():
    m = StreamMeter("audio", 1, 48000, T0)
    feed(m, stream(500))
    assert (m.packets, m.lost, m.expected) == (500, 0, 500)
    assert m.jitter_s * 1000 == pytest.approx(0.0, abs=0.01)


def test_gaps_are_counted_exactly_and_placed_in_their_second():
    m = StreamMeter("audio", 1, 48000, T0)
    pkts = stream(500)                          # 10 s at 50 pps
    dropped = {10, 11, 12, 260, 499 - 1}
    feed(m, [p for i, p in enumerate(pkts) if i not in dropped])
    assert m.lost == len(dropped)
    ivs = m.intervals()
    assert ivs[0].lost == 3                    # seqs 10-12 were due in second 0
    assert ivs[5].lost == 1                    # 260 / 50 pps = 5.2 s
    assert sum(iv.lost for iv in ivs.values()) == len(dropped)


def test_loss_after_the_last_packet_counts_once_the_sender_tells():
    m = StreamMeter("audio", 1, 48000, T0)
    pkts = stream(300, start_seq=65500)        # wraps the 16-bit sequence number
    feed(m, pkts[5:290])                        # first 5 and last 10 never arrive
    assert m.lost == 0                         # nothing seen is missing yet
    m.finalize(sender_first_seq=65500, sender_last_seq=(65500 + 299) % 65536, end=T0 + 6.5)
    assert m.lost == 15
    assert m.expected == 300


def test_blackout_shows_as_seconds_of_total_loss():
    m = StreamMeter("video", 2, 90000, T0)
    pkts = stream(1000, rate=100.0)            # 10 s at 100 pps
    feed(m, [p for p in pkts if not (T0 + 3.0 <= p[2] < T0 + 6.0)])   # by arrival
    ivs = m.intervals()
    for s in (3, 4, 5):
        assert ivs[s].packets == 0 and ivs[s].lost == pytest.approx(100, abs=2)
    assert m.lost == 300
    side = receive_side({2: m})
    assert side["stall_s"] >= 2 and side["longest_stall_s"] >= 2
    assert [iv["stalled"] for iv in side["intervals"]][3:6].count(True) >= 2


def test_reordered_packets_are_not_lost_and_duplicates_not_counted():
    m = StreamMeter("audio", 1, 48000, T0)
    pkts = stream(100)
    order = pkts[:10] + [pkts[11], pkts[10]] + pkts[12:50] + [pkts[30]] + pkts[50:]
    feed(m, order)
    assert (m.packets, m.lost, m.reordered, m.duplicates) == (100, 0, 1, 1)
    assert sum(iv.lost for iv in m.intervals().values()) == 0


def test_jitter_follows_rfc3550_on_send_times_not_rtp_timestamps():
    """The sender's pacing (RTP timestamps all regular, sends irregular) is not network jitter."""
    rng = random.Random(1)
    m = StreamMeter("audio", 1, 48000, T0)
    truth_j = 0.0
    prev_transit = None
    for i in range(2000):
        sent = T0 + i * 0.02 + rng.uniform(0, 0.008)        # sender-side scheduling wobble
        transit = 0.03 + abs(rng.gauss(0, 0.005))              # network: base + jitter
        m.add_packet((7 + i) % 65536, i * 960, sent + transit, 100, ast(sent))
        if prev_transit is not None:
            truth_j += (abs(transit - prev_transit) - truth_j) / 16
        prev_transit = transit
    assert m.jitter_s * 1000 == pytest.approx(truth_j * 1000, abs=0.05)


def test_abs_send_time_wraps_every_64_seconds():
    m = StreamMeter("audio", 1, 48000, T0)
    feed(m, stream(200, rate=2.0, t_send0=60.0))   # crosses the 64 s wrap
    assert m.jitter_s * 1000 == pytest.approx(0.0, abs=0.01)


def test_sender_restart_is_not_thousands_of_losses():
    m = StreamMeter("audio", 1, 48000, T0)
    feed(m, stream(50, start_seq=100) + stream(50, start_seq=40000, t_send0=T0 + 1))
    assert m.resyncs == 1 and m.lost == 0 and m.packets == 99   # the probation packet is not counted


def test_frame_stats_detect_a_freeze():
    m = StreamMeter("video", 2, 90000, T0)
    t = T0
    for i in range(60):
        t += 1 / 15 if i != 30 else 0.8
        m.add_frame(t)
    stats = m.frame_stats()
    assert stats["freezes"] == 1 and stats["freeze_s"] == pytest.approx(0.8, abs=0.01)
    assert stats["fps"] == pytest.approx(59 / (t - T0 - 1 / 15), rel=0.01)


def test_percentiles_and_summary():
    assert percentile([], 95) is None
    assert percentile(range(1, 101), 95) == 95
    assert summarize([1.0, None, 3.0]) == {"mean": 2.0, "p50": 1.0, "p95": 3.0, "max": 3.0}


def test_the_live_interval_equals_the_final_one_once_nothing_is_in_flight():
    m = StreamMeter("audio", 1, 48000, T0)
    pkts = stream(500)
    feed(m, [p for i, p in enumerate(pkts) if i % 7])
    final = receive_side({1: m})["intervals"]
    for idx in range(len(final)):
        live = side_interval({1: m}, idx)
        assert (live["packets"], live["lost"]) == (final[idx]["packets"], final[idx]["lost"])


def test_packets_that_reached_the_socket_but_were_never_decrypted_are_not_lost():
    """Media that overtakes the DTLS handshake arrives before the keys: delivered, not lost."""
    m = StreamMeter("video", 2, 90000, T0)
    pkts = stream(100, start_seq=500)
    feed(m, pkts[3:50] + pkts[51:])                 # 500-502 and 550 never reached the meter
    reached_socket = {500, 501, 550}                 # ... but three of them reached the socket
    m.finalize(sender_first_seq=500, sender_last_seq=599, end=T0 + 3,
               arrived=lambda seq: seq in reached_socket)
    assert (m.lost, m.early, m.expected) == (1, 3, 100)


def _sides():
    """Both sides' receive figures as agent/report.py writes them: audio and video, a blackout,
    losses, reordering, a freeze."""
    audio, video = StreamMeter("audio", 1, 48000, T0), StreamMeter("video", 2, 90000, T0)
    feed(audio, [p for i, p in enumerate(stream(500)) if i not in (7, 8, 300)])
    feed(video, [p for p in stream(1000, rate=100.0) if not (T0 + 3.0 <= p[2] < T0 + 4.5)])
    for i in range(100):
        video.add_frame(T0 + i * 0.1 if i < 40 or i > 50 else T0 + 4.0)
    return {1: audio, 2: video}


def test_the_agents_report_is_the_contracts_and_round_trips_as_json():
    """What the agent builds (vks.test-report/1, the callee's side, the live second) reads into the
    typed models of contract.reports and dumps to the same JSON object, key for key."""
    import json

    from agent.report import build_report
    from contract.reports import ReceiveSide, SessionReport, SideSecond
    meters = _sides()
    side = receive_side(meters, until=T0 + 10.0)
    report = build_report(started_at="2026-01-01T00:00:00Z", duration_s=10.0, connected=True, connect_ms=120.0,
                          error=None, rtts=[(i / 2, 0.04 + i / 1000) for i in range(20)], inbound=side,
                          outbound=receive_side(meters, until=T0 + 10.0), profile="hearing",
                          thresholds_path=None, thresholds_profile="hearing",
                          extra={"aiortc_stats": {"inbound": [], "remote_inbound": []}, "rtx_received": 3,
                                 "sent": {"packets": 1500}})
    text = json.dumps(report)
    assert json.dumps(SessionReport.model_validate(report).dump()) == text        # same keys, order, values
    assert json.loads(json.dumps(SessionReport.model_validate_json(text).dump())) == report
    assert report["verdict"] == "unusable" and report["reasons"]                  # the blackout is judged
    assert ReceiveSide.model_validate(side).dump() == side
    live = side_interval(meters, 3)
    assert SideSecond.model_validate(live).dump() == live
    failed = build_report(started_at="2026-01-01T00:00:00Z", duration_s=0.0, connected=False, connect_ms=None,
                          error="no answer", rtts=[], inbound=None, outbound=None, profile="hearing",
                          thresholds_path=None, thresholds_profile="hearing")
    assert SessionReport.model_validate(failed).dump() == failed
    assert failed["verdict"] == "unusable" and failed["reasons"] == ["not connected: no answer"]


def test_retransmissions_are_a_stream_of_their_own_whose_losses_count():
    """Issue 12: the link lost video packets and half of their retransmissions; the side's loss is
    every RTP packet that way, the RTX stream is listed with its share, and has no jitter."""
    video = StreamMeter("video", 2, 90000, T0)
    rtx = StreamMeter("video", 3, 90000, T0, rtx=True, repairs=2)
    pkts = stream(1000, rate=100.0)                       # 10 s, 100 B a packet
    lost = set(range(10, 1000, 50))                       # 20 video packets dropped
    feed(video, [p for i, p in enumerate(pkts) if i not in lost])
    # 20 retransmissions at random moments (RTX keeps the original's stamps), every other one dropped.
    resent = [(7000 + k, T0 + 0.3 + k * 0.5, T0 + 0.35 + k * 0.5 + (0.2 if k % 3 else 0.0)) for k in range(20)]
    feed(rtx, [p for k, p in enumerate(resent) if k % 2 == 0])
    rtx.finalize(sender_first_seq=7000, sender_last_seq=7019, end=T0 + 10.5)
    side = receive_side({2: video, 3: rtx}, until=T0 + 10.0)
    by_ssrc = {s["ssrc"]: s for s in side["streams"]}
    assert [s["ssrc"] for s in side["streams"]] == [2, 3]            # media first
    assert (by_ssrc[3]["rtx"], by_ssrc[3]["repairs"], by_ssrc[3]["lost"], by_ssrc[3]["packets"]) == (True, 2, 10, 10)
    assert by_ssrc[3]["jitter_ms"] is None and by_ssrc[3]["stall_s"] is None
    assert (side["packets"], side["lost"]) == (990, 30)
    assert side["loss_ratio"] == pytest.approx(30 / 1020, abs=1e-6)
    assert side["rtx_packets"] == 10
    assert side["rtx_share"] == pytest.approx(10 / 990, abs=1e-6)
    assert by_ssrc[2]["bitrate_share"] + by_ssrc[3]["bitrate_share"] == pytest.approx(1.0)
    assert side["jitter_ms"] == by_ssrc[2]["jitter_ms"]             # the resends' timing is no jitter
    assert all(iv["jitter_ms"] == pytest.approx(0.0, abs=0.01) for iv in side["intervals"] if iv["packets"])


def test_each_second_reports_its_longest_arrival_gap_of_the_audio():
    """`max_gap_ms`: the longest gap between audio packets that ended in the second - a 1.5 s
    dropout from 10.8 s to 12.3 s shows in second 12 (second 11 is stalled), once; the video's
    own gaps (a paused stream) do not count while audio flows."""
    audio = StreamMeter("audio", 1, 48000, T0)
    video = StreamMeter("video", 2, 90000, T0)
    pkts = stream(1000)                                  # 20 s of audio at 50 packets/s
    feed(audio, [p for p in pkts if not (T0 + 10.8 <= p[2] < T0 + 12.3)])
    for i, at in enumerate([T0 + 0.5, T0 + 3.5, T0 + 3.6]):    # video: a 3 s gap ending in second 3
        video.add_packet(10 + i, 0, at, 900, ast(at - 0.02))
    side = {1: audio, 2: video}
    seconds = [side_interval(side, i) for i in range(20)]
    assert seconds[11]["stalled"] and seconds[11]["packets"] == 0
    assert 1500 <= seconds[12]["max_gap_ms"] <= 1540
    assert [i for i, s in enumerate(seconds) if s["max_gap_ms"] >= 1000] == [12]
    assert seconds[3]["max_gap_ms"] <= 21                # the video's gap is not a dropout
    assert all(s["max_gap_ms"] <= 21 for i, s in enumerate(seconds) if i not in (11, 12))
    # ... and the final report's intervals carry it too.
    assert receive_side(side)["intervals"][12]["max_gap_ms"] == seconds[12]["max_gap_ms"]
    # Without audio, the media there is judged by its own gaps.
    assert side_interval({2: video}, 3)["max_gap_ms"] >= 3000
