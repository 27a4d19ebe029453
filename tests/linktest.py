"""A real test session across the impaired link, and its comparison with the router's truth.

Used by tests/test_session_netlab.py (assertions) and benchmarks/accuracy.py (figures):
a `vks-agent responder` in namespace B, `vks-agent test --json` in namespace A, each
offering only its own TUN address as ICE host candidate, so that every media packet
crosses the router and is recorded there.
"""
from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from pathlib import Path

from agent.session import PROBE
from tests.netlab.lab import Lab
from tests.procs import PYTHON, REPO, agent_argv, env_with, token_file

PORT = 8443
# The caller is in namespace A: what it sends (outbound) crosses a>b.
DIRECTION_PATH = {"outbound": "a>b", "inbound": "b>a"}


@dataclass
class Scenario:
    name: str
    impair: dict = field(default_factory=dict)       # Lab impair= argument
    duration_s: float = 8.0
    blackout_at_s: float | None = None               # seconds after the test process starts
    blackout_s: float = 3.0
    blackout_dir: str = "both"
    profile: str | None = None
    session_config: str = ""                         # more `session:` keys for both agents (YAML lines)
    test_args: tuple[str, ...] = ()                  # more `vks-agent test` arguments (e.g. --capacity)


SCENARIOS = [
    Scenario("clean"),
    Scenario("delay 40 ms each way", {"delay_ms": 40}),
    Scenario("jitter 15 ms", {"delay_ms": 20, "jitter_ms": 15}),
    Scenario("loss 3 % random", {"loss": 0.03}),
    Scenario("bursty loss (Gilbert-Elliott)", {"ge": (0.02, 0.25, 0.6, 0.0)}),
    Scenario("asymmetric: a>b only", {"a>b": {"delay_ms": 30, "jitter_ms": 8, "loss": 0.05}}),
    Scenario("blackout 3 s", {"delay_ms": 10}, duration_s=10.0, blackout_at_s=5.0),
]


def write_agent_config(directory: Path, side: str, address: str, session_config: str = "") -> Path:
    path = directory / f"agent-{side}.yaml"
    extra = "".join(f"  {line}\n" for line in session_config.splitlines() if line.strip())
    path.write_text(f"session:\n  host_addresses: ['{address}']\n{extra}", encoding="utf-8")
    return path


def run_session(lab: Lab, scenario: Scenario, workdir: Path) -> tuple[dict, dict, int]:
    """Run one session across `lab`; returns (report, truth, exit status)."""
    cfg_a = write_agent_config(workdir, "a", lab.addr("a"), scenario.session_config)
    cfg_b = write_agent_config(workdir, "b", lab.addr("b"), scenario.session_config)
    url = f"http://{lab.addr('b')}:{PORT}"
    lab.clear()
    token = str(token_file(workdir))
    resp = lab.popen("b", agent_argv("responder", "--listen", f"{lab.addr('b')}:{PORT}", "--token-file", token),
                     env=env_with(cfg_b), cwd=REPO)
    try:
        # Health is checked from inside A, across the (still clean) link.
        lab.run("a", [PYTHON, "-c", f"from tests.procs import wait_http; wait_http({url + '/healthz'!r})"],
                env=env_with(), cwd=REPO, timeout=30, check=True)
        if scenario.impair:
            for direction, params in _per_direction(scenario.impair).items():
                lab.impair(direction, **params)
        lab.truth_reset()
        argv = agent_argv("test", "--peer", url, "--duration", f"{scenario.duration_s:g}", "--json",
                          "--token-file", token)
        if scenario.profile:
            argv += ["--profile", scenario.profile]
        argv += list(scenario.test_args)
        timer = None
        if scenario.blackout_at_s is not None:
            timer = threading.Timer(scenario.blackout_at_s,
                                    lambda: lab.blackout(scenario.blackout_dir, seconds=scenario.blackout_s))
            timer.start()
        r = lab.run("a", argv, env=env_with(cfg_a), cwd=REPO, timeout=scenario.duration_s + 90)
        if timer is not None:
            timer.join()
        truth = lab.truth()
    finally:
        resp.terminate()
        try:
            resp.wait(10)
        except Exception:
            resp.kill()
    try:
        report = json.loads(r.stdout)
    except ValueError:
        raise AssertionError(f"no JSON report (exit {r.returncode}): {r.stderr[-3000:]}") from None
    return report, truth, r.returncode


def _per_direction(impair: dict) -> dict[str, dict]:
    if set(impair) <= {"a>b", "b>a", "both"}:
        out = {}
        for d, params in impair.items():
            for dd in (("a>b", "b>a") if d == "both" else (d,)):
                out[dd] = dict(params)
        return out
    return {"a>b": dict(impair), "b>a": dict(impair)}


def truth_ssrcs(truth: dict, path: str) -> dict[int, dict]:
    out = {}
    for flow in truth["directions"][path]["flows"]:
        for rec in flow.get("ssrcs", []):
            out[rec["ssrc"]] = rec
    return out


# The IP packet that carries one RTT probe (or its echo), as the router sees it: IPv4 20 + UDP 8 +
# DTLS 1.2 record 13 + AES-GCM's explicit nonce 8 and tag 16 + SCTP common header 12 + DATA chunk
# header 16 + the probe (12 bytes, a multiple of 4: no padding).
PROBE_PACKET_BYTES = 20 + 8 + 13 + 8 + 16 + 12 + 16 + PROBE.size


def probe_delay_ms(truth: dict, path: str, stat: str = "mean") -> float | None:
    """Added delay (`stat`: mean or p50) met by the agent's RTT probes (their echoes, b>a) on the flow
    that carries the session (the one with RTP in it): the data-channel packets of the probe's size.
    Not the media's, nor the mean of every DTLS packet: on a FIFO link with jitter a packet waits for
    the ones just ahead of it, so the delay depends on the traffic around it - paced video meets less
    of it than a sparse probe does, and an echo leaves right behind the SACK of the probe it answers,
    so it meets more than that SACK (the probe's truth is its own). None of the probe's size on a
    flow that carried media is an error, not a reason to read another truth: the cipher or the
    probe's format changed, and PROBE_PACKET_BYTES with it."""
    best = None
    for flow in truth["directions"][path]["flows"]:
        if flow.get("kinds", {}).get("rtp") and (best is None or flow["packets"] > best["packets"]):
            best = flow
    if best is None:
        return None
    probes = best.get("dtls_delay_ms_by_size", {}).get(str(PROBE_PACKET_BYTES))
    if not probes or not probes["n"]:
        sizes = sorted(best.get("dtls_delay_ms_by_size", {}), key=int)
        raise AssertionError(f"no {PROBE_PACKET_BYTES}-byte DTLS packets ({path}) to time the RTT probes by; "
                             f"DTLS sizes seen: {sizes} - see PROBE_PACKET_BYTES")
    return probes[stat]


@dataclass
class StreamComparison:
    direction: str
    kind: str
    ssrc: int
    truth_sent: int
    truth_lost: int
    truth_loss_ratio: float
    measured_lost: int
    measured_loss_ratio: float
    truth_jitter_ms: float
    measured_jitter_ms: float | None   # RFC 3550 J at the session's end, as the truth computes it (None: RTX)
    measured_jitter_mean_ms: float | None
    rtx: bool = False                  # a retransmission stream: loss compared, no jitter
    aiortc_lost: int | None = None
    aiortc_jitter_ms: float | None = None


def compare(report: dict, truth: dict) -> tuple[list[StreamComparison], dict]:
    """Per-stream loss and jitter, measured vs truth; and RTT measured vs truth."""
    rows = []
    aiortc_in = {s["ssrc"]: s for s in report.get("aiortc_stats", {}).get("inbound", [])}
    for stream in report["streams"]:
        rec = truth_ssrcs(truth, DIRECTION_PATH[stream["direction"]]).get(stream["ssrc"])
        if rec is None:
            raise AssertionError(f"the router never saw SSRC {stream['ssrc']} ({stream['direction']})")
        a = aiortc_in.get(stream["ssrc"]) if stream["direction"] == "inbound" else None
        rows.append(StreamComparison(
            direction=stream["direction"], kind=stream["kind"], ssrc=stream["ssrc"],
            truth_sent=rec["packets"], truth_lost=rec["dropped"], truth_loss_ratio=rec["loss_ratio"],
            measured_lost=stream["lost"], measured_loss_ratio=stream["loss_ratio"],
            truth_jitter_ms=rec["jitter_ms"], measured_jitter_ms=stream["jitter_ms_last"],
            measured_jitter_mean_ms=stream["jitter_ms"], rtx=bool(stream.get("rtx")),
            aiortc_lost=None if a is None else a["packets_lost"],
            aiortc_jitter_ms=None if a is None else a["jitter_ms"]))
    def both_ways(stat: str) -> float | None:
        d_ab, d_ba = probe_delay_ms(truth, "a>b", stat), probe_delay_ms(truth, "b>a", stat)
        return None if d_ab is None or d_ba is None else d_ab + d_ba
    rtcp = [s["rtt_ms"] for s in report.get("aiortc_stats", {}).get("remote_inbound", []) if s.get("rtt_ms")]
    rtt = {"truth_added_ms": both_ways("mean"), "truth_added_p50_ms": both_ways("p50"),
           "measured_mean_ms": report["rtt_ms"]["mean"], "measured_p50_ms": report["rtt_ms"].get("p50"),
           "measured_p95_ms": report["rtt_ms"]["p95"],
           "aiortc_rtcp_ms": sum(rtcp) / len(rtcp) if rtcp else None}
    return rows, rtt


def rtp_truth(truth: dict, path: str) -> dict:
    """Every RTP packet the router saw one way (media and RTX): packets, dropped, loss ratio, bytes."""
    recs = truth_ssrcs(truth, path).values()
    packets = sum(r["packets"] for r in recs)
    dropped = sum(r["dropped"] for r in recs)
    return {"packets": packets, "dropped": dropped, "loss_ratio": dropped / packets if packets else 0.0,
            "ssrcs": sorted(r["ssrc"] for r in recs), "bytes": sum(r["bytes"] for r in recs)}


def jitter_tolerance_ms(truth_ms: float) -> float:
    """The accuracy target of issue 3: within max(2 ms, 20 %)."""
    return max(2.0, 0.2 * truth_ms)


def rtt_tolerance_ms(truth_ms: float) -> float:
    """Within max(5 ms, 10 %)."""
    return max(5.0, 0.1 * truth_ms)


LOSS_TOLERANCE = 0.005       # 0.5 percentage points
