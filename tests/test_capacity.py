"""The capacity ramp's parts without a network (issue 12, part 1): the ramp's decisions, its
datagrams and hook, the exchange between two sides over a simulated link, the report's schema,
the judging and the wire. Real agents across a capped link: test_capacity_netlab.py."""
import asyncio
import math
from types import SimpleNamespace

import pytest
from pydantic import ValidationError

from agent import capacity as cap
from agent.settings import load_settings
from contract import quality as q
from contract import reasons, wire
from contract.reports import SessionReport
from tests.procs import REPO
from tests.test_quality import _report

CFG = cap.RampConfig()


def ramp_against(link_kbps: float, cfg: cap.RampConfig = CFG, seconds: float = 0.7) -> dict:
    """The ramp's decisions on an ideal bottleneck: clean at or below `link_kbps`, a queue above."""
    logic = cap.RampLogic(cfg)
    while (rate := logic.next_rate()) is not None:
        growth = 0.0 if rate <= link_kbps else 500.0 * (rate / link_kbps - 1)
        logic.add(cap.Step(rate, 100, 100, growth, cap.step_verdict(100, 100, growth, cfg), seconds))
        assert len(logic.steps) < 40
    return logic.result()


@pytest.mark.parametrize("link", [100.0, 333.0, 500.0, 900.0, 1400.0, 2000.0, 2400.0])
def test_ramp_finds_a_bottleneck_within_six_percent(link):
    r = ramp_against(link)
    # A rate a little above the link builds less queue in a step than the threshold: at most
    # delay_growth_ms over step_s (15 ms in 0.5 s: 3 %) above it still reads clean.
    assert link / CFG.precision <= r["kbps"] <= link * (1 + CFG.delay_growth_ms / (CFG.step_s * 1000))
    assert r["limited_by"] == "delay"
    assert r["duration_s"] <= CFG.max_s
    assert r["delay_growth_ms"] > CFG.delay_growth_ms
    assert all(s["verdict"] in ("clean", "delay") for s in r["steps"])


def test_ramp_grows_by_1_6_then_bisects():
    r = ramp_against(1000.0)
    rates = [s["kbps"] for s in r["steps"]]
    assert rates[:4] == [300.0, 480.0, 768.0, 1228.8]
    assert rates[4] == pytest.approx((768.0 + 1228.8) / 2, abs=0.1)   # bisect between clean and failed


def test_a_link_above_the_ceiling_stops_there():
    r = ramp_against(math.inf)
    assert r["kbps"] == CFG.ceiling_kbps and r["limited_by"] == "ceiling"
    assert r["loss_ratio_at_limit"] == 0.0
    assert r["steps"][-1]["kbps"] == CFG.ceiling_kbps


def test_a_link_below_the_start_shrinks_by_0_6():
    r = ramp_against(100.0)
    rates = [s["kbps"] for s in r["steps"]]
    assert rates[:3] == [300.0, pytest.approx(180.0), pytest.approx(108.0)]


def test_the_time_limit_ends_the_ramp():
    r = ramp_against(2000.0, seconds=2.5)
    assert r["duration_s"] <= CFG.max_s
    assert len(r["steps"]) == 4
    assert r["limited_by"] is None        # no limit found in time: kbps is what was carried


def test_a_rate_that_failed_below_a_clean_one_starts_again_lower():
    logic = cap.RampLogic(CFG)
    logic.add(cap.Step(300, 10, 10, 0.0, "clean", 0.6))
    logic.add(cap.Step(480, 10, 5, 0.0, "loss", 0.6))
    logic.add(cap.Step(390, 10, 10, 0.0, "clean", 0.6))
    logic.add(cap.Step(300, 10, 5, 0.0, "loss", 0.6))        # the link got worse
    assert logic.lo is None and logic.next_rate() == pytest.approx(180.0)
    assert logic.result()["limited_by"] == "loss" and logic.result()["loss_ratio_at_limit"] == 0.5


def test_step_verdicts():
    assert cap.step_verdict(100, 100, 3.0, CFG) == "clean"
    assert cap.step_verdict(100, 99, 3.0, CFG) == "clean"           # 1 %: at the hearing's limit
    assert cap.step_verdict(100, 98, 3.0, CFG) == "loss"
    assert cap.step_verdict(100, 0, None, CFG) == "loss"
    assert cap.step_verdict(100, 100, CFG.delay_growth_ms + 0.1, CFG) == "delay"
    assert cap.step_verdict(100, 100, None, CFG) == "clean"


def test_delay_growth_compares_the_quarters_minima():
    flat = [(i, 0.050 + (0.02 if i % 5 == 0 else 0.0)) for i in range(40)]    # noise, no trend
    assert cap.delay_growth_ms(flat) == pytest.approx(0.0, abs=1e-9)
    rising = [(i, 0.050 + i * 0.001) for i in range(40)]
    assert cap.delay_growth_ms(list(reversed(rising))) == pytest.approx(30.0)     # by sequence
    assert cap.delay_growth_ms(rising[:3]) is None
    # A busy sender's late start: the first quarter left in a burst and queued; the base (the
    # ramp's smallest delay so far) still shows the queue the step built.
    burst = [(i, 0.080 - i * 0.002) for i in range(10)] + [(i, 0.050 + (i - 10) * 0.001) for i in range(10, 40)]
    assert cap.delay_growth_ms(burst) == pytest.approx(8.0)        # under the 15 ms threshold
    assert cap.delay_growth_ms(burst, base=0.050) == pytest.approx(20.0)


def test_datagram_is_media_sized_and_outside_every_demux_range():
    ramp = bytes(range(8))
    data = cap.packet(ramp, 3, 77, 12.5)
    assert len(data) == cap.DATAGRAM_BYTES == 1200
    b0 = data[0]
    assert b0 == 0xF6 and not (b0 <= 3 or 16 <= b0 <= 79 or 128 <= b0 <= 191)   # RFC 7983
    assert cap.parse(data) == (ramp, 3, 77, 12.5)
    assert cap.parse(b"\x80" + data[1:]) is None and cap.parse(data[:10]) is None
    assert cap.ip_bytes("10.0.0.1") == 1228 and cap.ip_bytes("fd00::1") == 1248


class FakeConnection:
    """An aioice Connection's surface: `data_received` (the protocols' entry), `send`, the pair."""

    def __init__(self, host: str = "10.0.0.1") -> None:
        self.delivered: list[bytes] = []
        self.peer: FakeConnection | None = None
        self.link = None            # (send time, bytes) -> delivered?
        self._nominated = {1: SimpleNamespace(local_candidate=SimpleNamespace(host=host))}

    def data_received(self, data: bytes, component: int) -> None:
        self.delivered.append(data)

    async def send(self, data: bytes) -> None:
        if self.peer is not None and (self.link is None or self.link(data)):
            self.peer.data_received(data, 1)


def test_the_hook_takes_ramp_datagrams_off_the_connection():
    conn = FakeConnection()
    ep = cap.RampEndpoint(lambda m: None, lambda: conn)
    ramp = b"12345678"
    ep.expect(ramp)
    conn.data_received(cap.packet(ramp, 0, 1, 0.0), 1)
    conn.data_received(cap.packet(b"87654321", 0, 1, 0.0), 1)      # no agreed ramp: dropped
    conn.data_received(b"\x80" + bytes(40), 1)                      # RTP passes
    conn.data_received(b"\x17" + bytes(40), 1)                      # DTLS passes
    assert [d[0] for d in conn.delivered] == [0x80, 0x17]
    assert ep.counted(ramp, 0)[0] == 1 and ep.stray == 1
    ep.hook()                                                       # idempotent
    conn.data_received(cap.packet(ramp, 0, 2, 0.0), 1)
    assert ep.counted(ramp, 0)[0] == 2 and len(conn.delivered) == 2


def pair(link_kbps: dict[str, float], step_s: float) -> tuple:
    """Two endpoints over a simulated link: control messages in order after the datagrams sent
    before them (as on the session's path); each way dropping what exceeds its rate in a step."""
    loop = asyncio.get_running_loop()
    a, b = FakeConnection(), FakeConnection()
    a.peer, b.peer = b, a
    ends: dict[str, cap.RampEndpoint] = {}
    ea = cap.RampEndpoint(lambda m: loop.call_soon(ends["b"].on_message, m), lambda: a)
    eb = cap.RampEndpoint(lambda m: loop.call_soon(ends["a"].on_message, m), lambda: b)
    ends.update(a=ea, b=eb)

    def limiter(kbps: float):
        budget: dict[int, int] = {}

        def deliver(data: bytes) -> bool:
            _, step, _, _ = cap.parse(data)
            budget[step] = budget.get(step, 0) + 1
            return budget[step] <= kbps * 1000 * step_s / (cap.ip_bytes("10.0.0.1") * 8)
        return deliver
    a.link = limiter(link_kbps["outbound"])
    b.link = limiter(link_kbps["inbound"])
    return ea, eb, a, b


async def test_both_directions_between_two_endpoints():
    cfg = cap.RampConfig(step_s=0.2, max_s=12.0)
    ea, eb, a, b = pair({"outbound": 600.0, "inbound": math.inf}, cfg.step_s)
    out = await cap.measure(ea, cfg)
    assert out["error"] is None and out["ceiling_kbps"] == 2500.0
    assert 600 / 1.06 <= out["outbound"]["kbps"] <= 600 * 1.02
    assert out["outbound"]["limited_by"] == "loss"
    assert out["inbound"]["limited_by"] == "ceiling" and out["inbound"]["kbps"] == 2500.0
    assert not a.delivered and not b.delivered       # nothing of the ramp reached "DTLS"
    report = SessionReport.model_validate(_report(capacity=out))
    assert report.capacity.outbound.kbps == out["outbound"]["kbps"]
    await ea.close()
    await eb.close()


async def test_an_older_peer_that_ignores_the_ramp_gives_an_error_not_a_hang():
    loop = asyncio.get_running_loop()
    conn = FakeConnection()
    ep = cap.RampEndpoint(lambda m: loop.call_soon(lambda: None), lambda: conn)
    started = loop.time()
    out = await cap.measure(ep, cap.RampConfig())
    assert out["outbound"] is None and out["inbound"] is None
    assert "older agent" in out["error"]
    assert loop.time() - started < cap.READY_TIMEOUT_S + 1


async def test_malformed_control_messages_are_ignored():
    ep = cap.RampEndpoint(lambda m: pytest.fail("answered a malformed message"), lambda: FakeConnection())
    for message in ({"op": "open"}, {"op": "open", "ramp": "zz"}, {"op": "open", "ramp": "00" * 9},
                    {"op": "end", "ramp": "00" * 8, "step": "1"},
                    {"op": "send", "ramp": "00" * 8, "step": 0, "kbps": 1e9, "seconds": 1}):
        ep.on_message(message)
    await asyncio.sleep(0)
    await ep.close()


# --- the report, its judging, the wire, the settings --------------------------------------

def capacity_of(out_kbps: float, in_kbps: float = 2500.0) -> dict:
    def side(kbps, by):
        return {"kbps": kbps, "limited_by": by, "loss_ratio_at_limit": 0.05, "delay_growth_ms": 40.0,
                "duration_s": 4.2, "steps": [{"kbps": kbps, "sent": 20, "received": 20, "loss_ratio": 0.0,
                                              "delay_growth_ms": 1.0, "verdict": "clean"}]}
    return {"outbound": side(out_kbps, "loss"), "inbound": side(in_kbps, "ceiling"), "ceiling_kbps": 2500.0,
            "error": None}


@pytest.fixture
def hearing():
    return q.load_thresholds()["hearing"]


def test_report_schema_takes_capacity_and_refuses_a_wrong_limit():
    r = SessionReport.model_validate(_report(capacity=capacity_of(800.0)))
    assert r.dump()["capacity"] == capacity_of(800.0)
    bad = capacity_of(800.0)
    bad["outbound"]["limited_by"] = "weather"
    with pytest.raises(ValidationError):
        SessionReport.model_validate(_report(capacity=bad))
    with pytest.raises(ValidationError):
        SessionReport.model_validate(_report(capacity={"outbound": {"kbps": "800"}}))


@pytest.mark.parametrize(("kbps", "verdict"), [(2500.0, "good"), (900.0, "good"), (899.0, "degraded"),
                                               (700.0, "degraded"), (514.0, "unusable")])
def test_capacity_is_judged_against_the_profile(hearing, kbps, verdict):
    j = q.judge_report(SessionReport.model_validate(_report(capacity=capacity_of(kbps))), hearing)
    assert j.verdict == verdict, j.reasons
    codes = [rc for rc in j.reason_codes if rc["code"] == "capacity_low"]
    if verdict == "good":
        assert not codes
    else:
        assert codes == [{"code": "capacity_low", "params": {
            "direction": "outbound", "value": kbps, "limit": 900.0 if verdict == "degraded" else 700.0,
            "level": verdict}}]


def test_a_report_without_capacity_is_not_judged_on_it(hearing):
    j = q.judge_report(SessionReport.model_validate(_report()), hearing)
    assert j.verdict == "good" and not j.reasons
    half = capacity_of(514.0)
    half["outbound"] = None
    half["error"] = "outbound: the peer did not answer"
    assert q.judge_report(SessionReport.model_validate(_report(capacity=half)), hearing).verdict == "good"


def test_every_profile_has_capacity_minima_and_the_reason_reads_in_three_languages():
    for name, th in q.load_thresholds().items():
        assert th.degraded.capacity_kbps_min > th.unusable.capacity_kbps_min > 0, name
    assert (q.load_thresholds()["hearing"].degraded.capacity_kbps_min,
            q.load_thresholds()["hearing"].unusable.capacity_kbps_min) == (900, 700)
    r = reasons.Reason(reasons.ReasonCode.CAPACITY_LOW,
                       {"direction": "inbound", "value": 514.0, "limit": 700.0, "level": "unusable"})
    assert reasons.text(r) == "inbound capacity 514 kb/s < 700 kb/s (unusable)"
    assert "514 кбит/с" in reasons.text(r, "ru") and "700 кбит/с" in reasons.text(r, "ru")
    assert "514 кбит/с" in reasons.text(r, "kk") and "Өткізу" in reasons.text(r, "kk")


def test_wire_capacity_only_when_asked_and_never_while_monitoring():
    common = dict(session_id="s1", role="caller", peer="t2", duration_s=10.0)
    plain = wire.encode(wire.Command(command=wire.StartSession(kind="test", **common)))
    assert "capacity" not in plain                                  # an older agent reads it
    asked = wire.encode(wire.Command(command=wire.StartSession(kind="test", capacity=True, **common)))
    assert wire.parse_controller_message(asked).command.capacity is True
    assert wire.parse_controller_message(plain).command.capacity is False
    with pytest.raises(ValidationError, match="monitoring"):
        wire.StartSession(kind="monitor", capacity=True, **common)
    text = asked.replace('"kind":"test"', '"kind":"monitor"')
    with pytest.raises(wire.WireError):
        wire.parse_controller_message(text)


def test_settings_default_and_example():
    settings = load_settings(REPO / "configs" / "agent.yaml")
    assert settings.session.capacity.ceiling_kbps == 2500
    cfg = cap.config(settings.session.capacity, 0.01)
    assert cfg.ceiling_kbps == 2500 and cfg.max_s == 12 and cfg.loss_limit == 0.01


def test_a_ramp_datagrams_kernel_time_is_kept_for_the_ramp_once():
    import socket
    import struct
    import time

    from agent import rtp_tap
    stamps = rtp_tap.KernelStamps()
    wall = time.time()
    anc = [(socket.SOL_SOCKET, rtp_tap.SO_TIMESTAMPNS, struct.pack("@qq", int(wall), int((wall % 1) * 1e9)))]
    stamps.record(cap.packet(b"12345678", 0, 0, 0.0), anc)
    got = stamps.take_ramp_arrival()
    assert got == pytest.approx(time.monotonic(), abs=0.05)
    assert stamps.take_ramp_arrival() is None and not stamps._stamps       # once; never an RTP stamp


def test_the_readable_report_shows_capacity_each_way():
    from agent.report import render_text
    rep = SessionReport.model_validate(_report(capacity=capacity_of(514.0))).dump()
    rep["profile"] = "hearing"
    text = render_text(rep)
    line = next(x for x in text.splitlines() if x.strip().startswith("capacity (IP)"))
    assert "514 kbit/s (loss)" in line and "2500 kbit/s (ceiling)" in line
    assert "capacity" not in render_text({**rep, "capacity": None})


def test_vks_agent_test_capacity_between_two_processes(tmp_path):
    """The CLI: `vks-agent test --capacity` between two real processes on loopback - both ways at
    the ceiling, the session's own figures clean, the readable report showing it too."""
    import json
    import subprocess

    from tests.procs import agent_argv, env_with, responder, token_file, write_config
    config = write_config(tmp_path, "session:\n  host_addresses: ['127.0.0.1']\n  capacity: {ceiling_kbps: 1500}\n")
    token = str(token_file(config.parent))
    with responder(config) as url:
        r = subprocess.run(agent_argv("test", "--peer", url, "--duration", "2", "--json", "--capacity",
                                      "--token-file", token),
                           env=env_with(config), cwd=REPO, capture_output=True, text=True, timeout=120)
        plain = subprocess.run(agent_argv("test", "--peer", url, "--duration", "2", "--token-file", token),
                               env=env_with(config), cwd=REPO, capture_output=True, text=True, timeout=120)
    report = json.loads(r.stdout)
    c = report["capacity"]
    assert c["error"] is None and c["ceiling_kbps"] == 1500
    for direction in ("outbound", "inbound"):
        assert c[direction]["limited_by"] == "ceiling" and c[direction]["kbps"] == 1500, c[direction]
        assert report[direction]["lost"] == 0          # the ramp's datagrams are not the session's
    assert all(s["kind"] in ("audio", "video") for s in report["streams"])
    assert "capacity" not in plain.stdout                 # not asked: not run
