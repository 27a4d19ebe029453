"""agent/metrics.py fed the way the daemon feeds it: the session engine's per-second intervals
(live, and again inside the final report), the callee's receive side, health results, and a real
outbox. Each test has its own AgentMetrics and so its own registry. The metrics take the typed
models of contract.reports, read where the daemon, the monitor and the responder make them."""
from __future__ import annotations

import math

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from agent import metrics as am
from agent.link import health_payload
from agent.monitor import parse_listen
from agent.outbox import Outbox
from agent.settings import AgentSettings
from contract.reports import Interval, ReceiveSide, SessionReport


def sample(m: am.AgentMetrics, name: str, **labels: str) -> float | None:
    for fam in text_string_to_metric_families(generate_latest(m.registry).decode()):
        for s in fam.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return s.value
    return None


def side(packets: int, lost: int, jitter_ms: float, t: float = 0.0, stalled: bool = False) -> dict:
    return {"t": t, "packets": packets, "lost": lost, "loss_ratio": lost / (packets + lost) if packets + lost else 0.0,
            "jitter_ms": jitter_ms, "bitrate_kbps": packets * 8.0, "fps": 15, "stalled": stalled}


def interval(t: float, rtt_ms: float | None = 40.0, inbound=None, outbound=None) -> Interval:
    return Interval.model_validate({"t": t, "rtt_ms": rtt_ms, "inbound": inbound or side(100, 0, 2.0, t),
                                    "outbound": outbound or side(100, 0, 3.0, t)})


def fresh() -> am.AgentMetrics:
    return am.for_settings(AgentSettings(terminal_id="court-test"))


def test_each_instance_has_its_own_registry():
    a, b = fresh(), fresh()
    obs = a.session("test", "caller", "sizo-1")
    obs.interval(interval(0))
    assert sample(a, "vks_agent_link_packets_received_total", peer="sizo-1", direction="inbound") == 100
    assert sample(b, "vks_agent_link_packets_received_total", peer="sizo-1", direction="inbound") is None
    assert sample(b, "vks_agent_sessions_started_total", kind="test", role="caller") == 0


def test_bounded_label_sets_exist_before_any_session():
    m = fresh()
    for kind in am.KINDS:
        for role in am.ROLES:
            for outcome in am.OUTCOMES:
                assert sample(m, "vks_agent_sessions_ended_total", kind=kind, role=role, outcome=outcome) == 0
        for verdict in am.VERDICTS:
            assert sample(m, "vks_agent_session_verdicts_total", kind=kind, verdict=verdict) == 0
    assert sample(m, "vks_agent_health_status", status="unknown") == 1


def test_live_intervals_set_gauges_and_count_each_second_once():
    m = fresh()
    obs = m.session("monitor", "caller", "sizo-1", "monitor")
    assert sample(m, "vks_agent_sessions_active", role="caller") == 1
    obs.interval(interval(0, rtt_ms=50.0, inbound=side(98, 2, 4.0, 0)))
    assert sample(m, "vks_agent_link_loss_ratio", peer="sizo-1", direction="inbound") == 0.02
    assert sample(m, "vks_agent_link_jitter_seconds", peer="sizo-1", direction="inbound") == 0.004
    assert sample(m, "vks_agent_link_rtt_seconds", peer="sizo-1") == 0.05
    mos_in = sample(m, "vks_agent_link_mos", peer="sizo-1", direction="inbound")
    mos_out = sample(m, "vks_agent_link_mos", peer="sizo-1", direction="outbound")
    assert 1.0 <= mos_in < mos_out <= 4.5             # 2 % loss costs MOS
    # The caller's ticker may hand the far end's second again: counted once.
    obs.interval(interval(1, outbound=side(100, 0, 3.0, 0)))
    assert sample(m, "vks_agent_link_packets_received_total", peer="sizo-1", direction="outbound") == 100
    assert sample(m, "vks_agent_link_packets_received_total", peer="sizo-1", direction="inbound") == 198
    assert sample(m, "vks_agent_link_packets_lost_total", peer="sizo-1", direction="inbound") == 2
    assert sample(m, "vks_agent_link_received_bytes_total", peer="sizo-1", direction="inbound") == 198 * 8 * 125
    assert sample(m, "vks_agent_link_seconds_total", peer="sizo-1", verdict="good") == 2


def test_a_stalled_second_is_total_loss_and_an_unusable_second():
    m = fresh()
    obs = m.session("test", "caller", "sizo-1")
    obs.interval(interval(0, inbound={"t": 0.0, "packets": 0, "lost": 0, "stalled": True}))
    assert sample(m, "vks_agent_link_loss_ratio", peer="sizo-1", direction="inbound") == 1.0
    assert sample(m, "vks_agent_link_stalled_seconds_total", peer="sizo-1", direction="inbound") == 1
    assert sample(m, "vks_agent_link_seconds_total", peer="sizo-1", verdict="unusable") == 1


def test_the_final_report_adds_verdict_connect_time_and_missing_seconds_then_clears_the_gauges():
    m = fresh()
    obs = m.session("test", "caller", "sizo-1")
    obs.interval(interval(0))
    report = SessionReport.model_validate({"schema": "vks.test-report/1", "connected": True, "connect_ms": 180.0,
                                           "verdict": "degraded", "intervals": [interval(0), interval(1), interval(2)]})
    obs.end("finished", report)
    obs.end("finished", report)                       # idempotent
    assert sample(m, "vks_agent_link_packets_received_total", peer="sizo-1", direction="inbound") == 300
    assert sample(m, "vks_agent_session_verdicts_total", kind="test", verdict="degraded") == 1
    assert sample(m, "vks_agent_session_connect_seconds_count", kind="test") == 1
    assert sample(m, "vks_agent_session_connect_seconds_bucket", kind="test", le="0.25") == 1
    assert sample(m, "vks_agent_sessions_ended_total", kind="test", role="caller", outcome="finished") == 1
    assert sample(m, "vks_agent_sessions_active", role="caller") == 0
    assert math.isnan(sample(m, "vks_agent_link_loss_ratio", peer="sizo-1", direction="inbound"))
    assert math.isnan(sample(m, "vks_agent_link_rtt_seconds", peer="sizo-1"))


def test_a_session_that_did_not_connect_has_no_verdict():
    m = fresh()
    obs = m.session("preconnect", "caller", "sizo-1")
    obs.end("not_connected", SessionReport.model_validate({"schema": "vks.test-report/1", "connected": False,
                                                           "connect_ms": None, "verdict": "unusable",
                                                           "intervals": []}))
    assert sample(m, "vks_agent_sessions_ended_total", kind="preconnect", role="caller", outcome="not_connected") == 1
    assert sample(m, "vks_agent_session_verdicts_total", kind="preconnect", verdict="unusable") == 0


def test_the_callee_counts_its_receive_side_up_to_the_callers_finish():
    m = fresh()
    obs = m.session("test", "callee", "court-1")
    received = ReceiveSide.model_validate({"packets": 310, "lost": 3, "intervals": [
        side(100, 1, 2.0, 0), side(100, 1, 2.0, 1), side(100, 1, 2.0, 2),
        {"t": 3.0, "packets": 0, "lost": 0, "stalled": True},      # after the caller stopped sending
        side(10, 0, 2.0, 4)]})                                      # the partial last second
    obs.end("finished", received)
    assert sample(m, "vks_agent_link_packets_received_total", peer="court-1", direction="inbound") == 300
    assert sample(m, "vks_agent_link_stalled_seconds_total", peer="court-1", direction="inbound") == 0
    assert sample(m, "vks_agent_link_packets_received_total", peer="court-1", direction="outbound") == 0


def test_health_results():
    m = fresh()
    m.observe_health(health_payload({"status": "warn", "problems": ["camera missing"], "cpu": {"percent": 37.5},
                                     "memory": {"used_ratio": 0.61}, "disk": [{"mount": "/", "used_ratio": 0.42}],
                                     "camera": {"present": False}, "microphone": {"present": True},
                                     "clock": {"offset_s": -0.003}}))
    assert [sample(m, "vks_agent_health_status", status=s) for s in am.HEALTH_STATUSES] == [0, 1, 0, 0]
    assert sample(m, "vks_agent_health_cpu_ratio") == 0.375
    assert sample(m, "vks_agent_health_memory_used_ratio") == 0.61
    assert sample(m, "vks_agent_health_disk_used_ratio", mount="/") == 0.42
    assert sample(m, "vks_agent_health_problems") == 1
    assert sample(m, "vks_agent_health_camera_present") == 0
    assert sample(m, "vks_agent_health_microphone_present") == 1
    assert sample(m, "vks_agent_health_clock_offset_seconds") == -0.003
    assert sample(m, "vks_agent_health_checks_total") == 1
    assert sample(m, "vks_agent_health_device_status", device="camera", status="ok") == 0    # unknown
    m.observe_health(health_payload({"status": "fail", "camera": {"present": True, "status": "black"},
                                     "microphone": {"present": True, "status": "ok"}}))
    assert sample(m, "vks_agent_health_device_status", device="camera", status="black") == 1
    assert sample(m, "vks_agent_health_device_status", device="camera", status="ok") == 0
    assert sample(m, "vks_agent_health_device_status", device="microphone", status="ok") == 1
    m.observe_health(health_payload({"status": "something odd"}))     # refused by the contract
    assert sample(m, "vks_agent_health_status", status="unknown") == 1
    assert sample(m, "vks_agent_health_status", status="warn") == 0
    assert math.isnan(sample(m, "vks_agent_health_cpu_ratio"))


async def test_the_outbox_is_read_when_scraped(tmp_path):
    m = fresh()
    async with Outbox(tmp_path / "outbox.sqlite", max_rows=3) as outbox:
        m.bind_outbox(outbox)
        assert sample(m, "vks_agent_outbox_reports") == 0
        for i in range(5):
            await outbox.put(f"s:caller:i{i}", "interval", {"interval": {"t": i}})
        assert sample(m, "vks_agent_outbox_reports") == 3
        assert sample(m, "vks_agent_outbox_dropped_reports_total", kind="interval") == 2
        assert sample(m, "vks_agent_outbox_dropped_reports_total", kind="session") == 0
        assert sample(m, "vks_agent_outbox_bytes") > 0


def test_metrics_listen_setting():
    assert parse_listen("127.0.0.1:9101") == ("127.0.0.1", 9101)
    assert parse_listen("[::1]:9101") == ("::1", 9101)
    assert parse_listen("") is None and parse_listen("off") is None
