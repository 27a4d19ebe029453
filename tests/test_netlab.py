"""The impaired-link harness proves itself: what the router says it did is what agents see.

Pure parts (packet demux, loss models, truth arithmetic) run everywhere; the rest needs
root, /dev/net/tun and iproute2 and is marked ``netns`` (skipped with the reason otherwise).
"""
from __future__ import annotations

import asyncio
import itertools
import json
import os
import random
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.netlab import ControlError, Impairment, ImpairmentError, Lab, LabError, control
from tests.netlab.agents import path as agent_path
from tests.netlab.fixtures import requires_netlab
from tests.netlab.impair import DELIVER, DROP_BLACKOUT, DROP_LOSS, DROP_QUEUE, LinkDirection
from tests.netlab.packet import KIND_DTLS, KIND_RTCP, KIND_RTP, KIND_STUN, KIND_UDP, classify_udp_payload, parse
from tests.netlab.streams import find_ssrc, ping, udp_stream
from tests.netlab.truth import DirectionRecord, Histogram


# --------------------------------------------------------------------------- pure parts
def rtp(seq: int, ssrc: int = 0xDEADBEEF, pt: int = 111) -> bytes:
    return struct.pack("!BBHII", 0x80, pt, seq, 0, ssrc) + b"x" * 20


def ipv4_udp(payload: bytes, src="10.231.0.1", dst="10.231.0.2", sport=5000, dport=6000) -> bytes:
    udp = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    return (struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0,
                        socket.inet_aton(src), socket.inet_aton(dst)) + udp)


@pytest.mark.parametrize("first,second,kind", [
    (0x00, 0x01, KIND_STUN), (0x01, 0x01, KIND_STUN), (0x03, 0x00, KIND_STUN),
    (20, 0xFE, KIND_DTLS), (22, 0xFE, KIND_DTLS), (63, 0, KIND_DTLS),
    (0x80, 200, KIND_RTCP), (0x81, 201, KIND_RTCP), (0x8F, 206, KIND_RTCP),
    (0x80, 192, KIND_RTCP), (0x80, 223, KIND_RTCP),
    (0x80, 96, KIND_RTP), (0x80, 96 | 0x80, KIND_RTP),  # marker bit set
    (0x80, 111, KIND_RTP), (0x80, 63, KIND_RTP), (0x80, 224, KIND_RTP),  # PT 96 with marker
    (0x90, 100, KIND_RTP),  # extension bit
    (0xC0, 96, KIND_UDP), (100, 0, KIND_UDP),
])
def test_demux_follows_rfc7983_and_rfc5761(first, second, kind):
    payload = bytes([first, second]) + bytes(range(2, 30))
    assert classify_udp_payload(payload)[0] == kind


def test_parse_reads_rtp_ssrc_and_seq_from_an_ip_packet():
    info = parse(ipv4_udp(rtp(65535, ssrc=0x01020304, pt=96)))
    assert (info.kind, info.ssrc, info.seq, info.pt) == (KIND_RTP, 0x01020304, 65535, 96)
    assert info.flow == ("udp", "10.231.0.1", 5000, "10.231.0.2", 6000)
    assert parse(b"\x45garbage").kind == "other"


def test_bernoulli_loss_rate_and_seed_repeatability():
    def run(seed):
        link = LinkDirection("a>b", random.Random(seed))
        link.set_config(Impairment(loss=0.1))
        return [link.decide(i * 0.01, 0)[0] for i in range(20000)]
    a, b = run(7), run(7)
    assert a == b
    assert 0.09 < a.count(DROP_LOSS) / len(a) < 0.11


def test_gilbert_elliott_loss_is_bursty_with_the_stationary_mean():
    p_gb, p_bg, loss_bad = 0.02, 0.25, 1.0
    link = LinkDirection("a>b", random.Random(1))
    link.set_config(Impairment(ge=(p_gb, p_bg, loss_bad, 0.0)))
    verdicts = [link.decide(i * 0.01, 0)[0] for i in range(50000)]
    lost = [v == DROP_LOSS for v in verdicts]
    expected = p_gb / (p_gb + p_bg) * loss_bad
    assert abs(sum(lost) / len(lost) - expected) < 0.015
    bursts, run_len = [], 0
    for x in lost + [False]:
        if x:
            run_len += 1
        elif run_len:
            bursts.append(run_len)
            run_len = 0
    assert abs(sum(bursts) / len(bursts) - 1 / p_bg) < 0.5  # mean burst ~ 1/p_bg = 4


def test_fifo_keeps_order_and_reorder_lets_packets_overtake():
    for reorder in (False, True):
        link = LinkDirection("a>b", random.Random(3))
        link.set_config(Impairment(delay_ms=20, jitter_ms=10, reorder=reorder))
        deps = [link.decide(i * 0.002, 0)[1] for i in range(2000)]
        in_order = all(x <= y for x, y in itertools.pairwise(deps))
        assert in_order is (not reorder)
        assert min(d - i * 0.002 for i, d in enumerate(deps)) >= 0.0


def test_rate_limit_serialises_packets_and_tail_drops_past_the_buffer():
    link = LinkDirection("a>b", random.Random(0))
    link.set_config(Impairment(rate_kbps=800, buffer_ms=45))  # 1000 bytes = 10 ms each
    out = [link.decide(0.0, 0, 1000) for _ in range(10)]
    delivered = [t for v, t in out if v == DELIVER]
    assert delivered == pytest.approx([0.01 * (i + 1) for i in range(5)])
    assert [v for v, _ in out[5:]] == [DROP_QUEUE] * 5
    assert link.decide(0.2, 0, 1000) == (DELIVER, pytest.approx(0.21))


def test_blackout_drops_until_its_end():
    link = LinkDirection("a>b", random.Random(0))
    link.blackout_until = 1.0
    assert link.decide(0.5, 0)[0] == DROP_BLACKOUT
    assert link.decide(1.0, 0)[0] == DELIVER


def test_impairment_validation_names_the_parameter():
    with pytest.raises(ImpairmentError, match="loss"):
        Impairment(loss=1.5)
    with pytest.raises(ImpairmentError, match="ge"):
        Impairment(ge=(0.1, 0.2))
    with pytest.raises(ImpairmentError, match="unknown"):
        Impairment.from_dict({"delay": 3})


def test_truth_jitter_is_rfc3550_over_added_delay_and_counts_seq_wrap():
    rec = DirectionRecord("a>b")
    transits = [10.0, 12.0, 11.0, 15.0, 15.0]
    seqs = [65533, 65534, 65535, 0, 1, 2]
    handles = []
    for i, seq in enumerate(seqs):
        verdict = DROP_LOSS if i == 2 else DELIVER
        handles.append((rec.ingress(parse(ipv4_udp(rtp(seq))), 60, 0, verdict), verdict))
    j = 0.0
    for k, (h, _) in enumerate(x for x in handles if x[1] == DELIVER):
        rec.delivery(h, 1.0, 1.0 + transits[k] / 1000, 1.0 + transits[k] / 1000)
    for a, b in itertools.pairwise(transits):
        j += (abs(b - a) - j) / 16
    s = rec.to_dict()["flows"][0]["ssrcs"][0]
    assert s["jitter_ms"] == pytest.approx(j, abs=1e-3)
    assert (s["first_seq"], s["last_seq"], s["ext_last_seq"] - s["ext_first_seq"]) == (65533, 2, 5)
    assert (s["packets"], s["dropped"], s["delivered"], s["dropped_seqs"]) == (6, 1, 5, [65535])
    assert s["delay_ms"]["max"] == pytest.approx(15.0, abs=0.01)


def test_truth_keeps_the_delay_of_each_dtls_size_apart():
    """An echo that queues behind the SACK just ahead of it meets another delay than the SACK: the
    truth keeps DTLS packets apart by size, so the RTT probes' own delay can be read (tests/linktest)."""
    rec = DirectionRecord("a>b")
    for size, transit in ((93, 10.0), (105, 14.0), (93, 12.0), (105, 16.0)):
        packet = ipv4_udp(bytes([23, 0xFE, 0xFD]) + b"x" * (size - 31))
        assert len(packet) == size
        rec.delivery(rec.ingress(parse(packet), size, 0, DELIVER), 1.0, 1.0 + transit / 1000, 1.0 + transit / 1000)
    flow = rec.to_dict()["flows"][0]
    assert flow["delay_ms_by_kind"]["dtls"]["mean"] == pytest.approx(13.0, abs=0.01)
    by_size = flow["dtls_delay_ms_by_size"]
    assert set(by_size) == {"93", "105"}
    assert by_size["93"]["mean"] == pytest.approx(11.0, abs=0.01) and by_size["93"]["n"] == 2
    assert by_size["105"]["mean"] == pytest.approx(15.0, abs=0.01) and by_size["105"]["n"] == 2


def test_histogram_percentiles():
    h = Histogram(0.01)
    for v in range(1, 101):
        h.add(float(v))
    assert h.percentile(0.5) == pytest.approx(50.0, abs=0.01)
    assert h.percentile(0.95) == pytest.approx(95.0, abs=0.01)
    assert h.summary()["max"] == 100.0


def test_router_control_ops_without_devices(tmp_path):
    """The router's control semantics on plain pipes: runs without root."""
    from tests.netlab.router import Router

    fds = [os.pipe() for _ in range(2)]
    router = Router(fds[0][0], fds[1][0], str(tmp_path / "c.sock"), os.getpid(), 60, 5,
                    {"a>b": {"delay_ms": 7}})
    try:
        assert router.config()["a>b"]["impairment"]["delay_ms"] == 7
        assert router.handle_line(b'{"op": "impair", "dir": "both", "params": {"loss": 0.5}}')["ok"]
        bad = router.handle_line(b'{"op": "blackout", "dir": "a>b", "seconds": -1}')
        assert (bad["ok"], bad["error"]) == (False, "bad_parameter")
        assert router.handle({"op": "blackout", "dir": "b>a", "seconds": None})["b>a"]["blackout"]
        router._ingress("b>a", ipv4_udp(rtp(1), src="10.231.0.2", dst="10.231.0.1"), router.t0 + 0.1)
        router._ingress("a>b", ipv4_udp(rtp(1)), router.t0 + 2.5)
        truth = router.truth()
        assert truth["directions"]["b>a"]["totals"]["dropped_blackout"] == 1
        assert truth["directions"]["a>b"]["totals"]["series"][0]["t"] == 2
        assert [h["op"] for h in truth["history"]] == ["start", "impair", "blackout"]
        assert truth["history"][1]["params"]["loss"] == 0.5
        json.dumps(truth)  # JSON-able
        router.handle({"op": "reset"})
        assert router.truth()["directions"]["b>a"]["totals"]["packets"] == 0
        assert router.handle_line(b"[1]")["error"] == "bad_request"
    finally:
        router.lsock.close()
        for r, w in fds:
            os.close(r)
            os.close(w)


# --------------------------------------------------------------------------- netns


@requires_netlab
def test_ping_shows_the_configured_round_trip(make_lab):
    lab = make_lab(impair={"both": {"delay_ms": 40}}, seed=1)
    r = ping(lab, "a", count=20, interval=0.05)
    assert r["received"] == 20
    assert r["min"] >= 79.5  # never earlier than 2 x 40 ms
    assert r["p50"] < 100.0  # tolerant: a busy 2-core machine
    truth = lab.truth(series=False)
    for d in ("a>b", "b>a"):
        tot = truth["directions"][d]["totals"]
        assert tot["delivered"] == 20 and tot["dropped"] == 0
        assert 40.0 <= tot["delay_ms"]["p50"] < 45.0
        assert truth["directions"][d]["kinds"] == {"icmp": 20}


@requires_netlab
@pytest.mark.parametrize("impairment", [
    {"loss": 0.05},
    {"ge": [0.03, 0.3, 0.9, 0.0]},
    {"loss": 0.02, "ge": [0.02, 0.4, 0.7, 0.0], "delay_ms": 10, "jitter_ms": 3},
    {"rate_kbps": 250, "buffer_ms": 80, "delay_ms": 10},  # 200 pps x 228 B IP = 365 kbit/s offered
], ids=["bernoulli", "gilbert-elliott", "both-with-jitter", "bottleneck"])
def test_receiver_loss_equals_truth_exactly(make_lab, impairment):
    lab = make_lab(impair={"a>b": impairment}, seed=11)
    res = udp_stream(lab, "a>b", count=400, pps=200, port=5004)
    truth = lab.truth()
    s = find_ssrc(truth, "a>b", res.ssrc)
    assert res.sender["sent"] == 400 == s["packets"]
    assert s["dropped"] > 0
    assert res.receiver["lost"] == s["dropped"]
    cause = "dropped_queue" if "rate_kbps" in impairment else "dropped_loss"
    assert s[cause] == s["dropped"]
    assert sorted(res.receiver["lost_seqs"]) == sorted(s["dropped_seqs"])
    assert res.receiver["received"] == s["delivered"]
    assert (s["first_seq"], s["last_seq"]) == (1000, 1399)
    flow = truth["directions"]["a>b"]["flows"][0]
    assert flow["flow"].startswith("udp 10.231.0.1:") and flow["flow"].endswith(">10.231.0.2:5004")
    assert sum(x["dropped"] for x in s["series"]) == s["dropped"]
    assert lab.iface_stats("a")["tx"]["dropped"] == 0  # nothing lost before the router saw it


@requires_netlab
def test_jitter_seen_by_the_receiver_matches_truth(make_lab):
    lab = make_lab(impair={"a>b": {"delay_ms": 20, "jitter_ms": 5}}, seed=5)
    res = udp_stream(lab, "a>b", count=300, pps=100, port=5006)
    s = find_ssrc(lab.truth(series=False), "a>b", res.ssrc)
    assert s["jitter_ms"] > 1.0
    # The receiver's transit adds only the kernel's own microseconds to the router's delay.
    assert res.receiver["jitter_ms"] == pytest.approx(s["jitter_ms"], abs=max(0.5, 0.15 * s["jitter_ms"]))
    assert res.receiver["delay_ms"]["mean"] == pytest.approx(s["delay_ms"]["mean"], abs=1.0)


@requires_netlab
def test_blackout_drops_everything_for_its_duration(make_lab):
    lab = make_lab(seed=2)

    def cut(lab):
        time.sleep(1.0)
        lab.blackout("a>b", seconds=1.0)

    res = udp_stream(lab, "a>b", count=300, pps=100, port=5008, during=cut, idle=2.0)
    truth = lab.truth()
    s = find_ssrc(truth, "a>b", res.ssrc)
    assert s["dropped_loss"] == 0 and s["dropped"] == s["dropped_blackout"]
    assert res.receiver["lost"] == s["dropped_blackout"]
    assert 50 <= s["dropped_blackout"] <= 150  # 1 s at 100 pps, the sender's timing aside
    lost = sorted(res.receiver["lost_seqs"])
    assert lost == list(range(lost[0], lost[0] + len(lost)))  # one contiguous hole
    blk = [h for h in truth["history"] if h["op"] == "blackout"]
    assert len(blk) == 1 and blk[0]["seconds"] == 1.0 and blk[0]["until"] > blk[0]["t"]
    assert max(x["blackout"] for x in s["series"]) >= 30
    assert truth["config"]["a>b"]["blackout"] is False  # over by now


@requires_netlab
def test_runtime_control_history_errors_and_reset(lab):
    cfg = lab.impair("b>a", delay_ms=30, jitter_ms=2, ge=(0.1, 0.5, 1.0, 0.0))
    assert cfg["b>a"]["impairment"]["delay_ms"] == 30 and cfg["a>b"]["impairment"]["delay_ms"] == 0
    assert lab.blackout("both")["a>b"]["blackout"] is True
    assert lab.restore()["b>a"]["blackout"] is False
    with pytest.raises(ImpairmentError, match="loss"):
        lab.impair("a>b", loss=2)  # checked before it is sent
    with pytest.raises(ControlError) as err:  # and by the router itself
        control.request(lab.control_path, "impair", dir="a>b", params={"loss": 2})
    assert err.value.code == "bad_parameter" and "loss" in str(err.value)
    with pytest.raises(ControlError, match="bad_request"):
        control.request(lab.control_path, "fly")
    with pytest.raises(ImpairmentError):
        lab.impair("sideways", loss=0.1)
    ping(lab, "a", count=3, interval=0.02, timeout=0.5)
    assert lab.truth(series=False)["directions"]["a>b"]["totals"]["packets"] == 3
    start = lab.truth_reset()
    truth = lab.truth()
    assert truth["record_start"] == start > 0
    assert truth["directions"]["a>b"]["totals"]["packets"] == 0
    assert [h["op"] for h in truth["history"]] == ["start", "impair", "blackout", "restore", "truth_reset"]
    lab.clear()
    assert lab.config()["b>a"]["impairment"]["delay_ms"] == 0


@requires_netlab
def test_management_link_reaches_the_root_namespace_unimpaired(make_lab):
    lab = make_lab(mgmt=True, impair={"both": {"delay_ms": 200}})
    srv = socket.create_server((lab.mgmt_root, 0))
    port = srv.getsockname()[1]
    got = []

    def accept():
        srv.settimeout(10)
        for _ in range(2):
            conn, addr = srv.accept()
            with conn:
                got.append((addr[0], conn.recv(64)))

    t = threading.Thread(target=accept)
    t.start()
    code = (f"import socket,time;t=time.monotonic();s=socket.create_connection(('{lab.mgmt_root}',{port}),5);"
            "s.sendall(b'hi');print(round((time.monotonic()-t)*1000,1))")
    try:
        for side in ("a", "b"):
            r = lab.run(side, [sys.executable, "-c", code], timeout=15)
            assert r.returncode == 0, r.stderr
            assert float(r.stdout) < 150  # not across the 200 ms impaired link
    finally:
        t.join(15)
        srv.close()
    assert sorted(a for a, _ in got) == sorted([lab.mgmt_a, lab.mgmt_b])
    assert lab.truth(series=False)["directions"]["a>b"]["totals"]["packets"] == 0


@requires_netlab
async def test_async_api_and_cleanup_of_spawned_processes():
    async with Lab(impair={"a>b": {"delay_ms": 5}}) as lab:
        ns = (lab.ns_a, lab.ns_b)
        await lab.aimpair("b>a", delay_ms=5)
        proc = await lab.spawn("a", [sys.executable, agent_path("ping"), lab.addr_b, "--count", "5",
                                     "--interval", "0.02"], stdout=asyncio.subprocess.PIPE)
        out, _ = await asyncio.wait_for(proc.communicate(), 20)
        assert json.loads(out)["received"] == 5
        sleeper = await lab.spawn("b", ["sleep", "600"])
        truth = await lab.atruth(series=False)
        assert truth["directions"]["b>a"]["totals"]["delivered"] == 5
        await lab.ablackout("both", 0.5)
        assert (await lab.aconfig())["a>b"]["blackout"] is True
    assert sleeper.returncode is not None
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert ns[0] not in listed and ns[1] not in listed


@requires_netlab
def test_cleanup_kills_processes_and_leaves_no_namespace_even_on_failure():
    with pytest.raises(RuntimeError):
        with Lab() as lab:
            names = (lab.ns_a, lab.ns_b)
            router = lab._router
            p = lab.popen("a", ["sleep", "600"])
            raise RuntimeError("test failed inside the lab")
    assert p.poll() is not None and router.poll() is not None
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert names[0] not in listed and names[1] not in listed
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    assert f"vkt{router.pid}" not in links


@requires_netlab
def test_stale_namespaces_of_dead_runs_are_swept():
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = f"vksa-{dead.pid}-0"
    subprocess.run(["ip", "netns", "add", stale], check=True)
    try:
        with Lab() as lab:
            listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
            assert stale not in listed and lab.ns_a in listed
    finally:
        subprocess.run(["ip", "netns", "del", stale], capture_output=True)


@requires_netlab
def test_router_exits_when_its_parent_dies():
    code = (f"import sys,time; sys.path.insert(0, {str(Path(__file__).resolve().parents[1])!r})\n"
            "from tests.netlab import Lab\n"
            "lab = Lab(); lab.start(); print(lab._router.pid, lab.ns_a, lab.ns_b, flush=True)\n"
            "time.sleep(600)\n")
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        router_pid, ns_a, ns_b = parent.stdout.readline().split()
        parent.kill()
        parent.wait(10)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                with open(f"/proc/{router_pid}/stat") as f:
                    if f.read().split()[2] == "Z":
                        break
            except FileNotFoundError:
                break
            time.sleep(0.05)
        else:
            pytest.fail("router outlived its parent")
    finally:
        parent.stdout.close()
        if parent.poll() is None:
            parent.kill()
            parent.wait()
    # The dead parent's namespaces are swept by the next lab.
    with Lab():
        listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        assert ns_a not in listed and ns_b not in listed


@requires_netlab
def test_router_stops_after_its_max_lifetime_and_says_so(make_lab):
    lab = make_lab(max_lifetime=0.3)
    lab._router.wait(timeout=5)
    with pytest.raises(LabError, match="router exited.*max lifetime"):
        lab.truth()


@requires_netlab
def test_control_socket_survives_garbage_and_oversized_requests(lab):
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(5)
        s.connect(lab.control_path)
        s.sendall(b"this is not json\n")
        assert json.loads(s.makefile().readline())["error"] == "bad_request"
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(5)
        s.connect(lab.control_path)
        try:
            s.sendall(b"x" * (200 * 1024))  # no newline, over the 64 KiB bound: dropped
            assert s.recv(10) == b""
        except (BrokenPipeError, ConnectionResetError):
            pass
    assert lab.config()["a>b"]["blackout"] is False  # still serving
