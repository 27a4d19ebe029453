#!/usr/bin/env python3
"""Accuracy of the test report against the router's ground truth, beside iperf3 and aiortc.

For each scenario of tests/linktest.py: a real session across the impaired link,
then, per direction, truth vs measured loss, jitter and RTT, aiortc's own getStats
figures, and iperf3's UDP figures on the same emulated link. Targets (issue 3):
loss within 0.5 percentage points, jitter within max(2 ms, 20 %), RTT within
max(5 ms, 10 %), never less accurate than iperf3.

    .venv/bin/python benchmarks/accuracy.py [--only NAME] [--repeat N] [--no-iperf]

Needs root, /dev/net/tun and iproute2 (network namespaces); iperf3 for its column.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.linktest import (  # noqa: E402
    DIRECTION_PATH,
    LOSS_TOLERANCE,
    SCENARIOS,
    _per_direction,
    compare,
    jitter_tolerance_ms,
    rtt_tolerance_ms,
    run_session,
)
from tests.netlab.lab import Lab, unavailable_reason  # noqa: E402


def iperf3(lab: Lab, scenario, seconds: float = 5.0) -> dict[str, dict]:
    """iperf3 UDP at the session's rate, each direction, with the scenario's impairment."""
    out = {}
    server = lab.popen("b", ["iperf3", "-s", "-B", lab.addr("b"), "-1", "--json"],
                       stdout=__import__("subprocess").PIPE, text=True)
    time.sleep(0.5)
    try:
        for direction, reverse in (("outbound", False), ("inbound", True)):
            if direction == "inbound":
                server.wait(10)
                server = lab.popen("b", ["iperf3", "-s", "-B", lab.addr("b"), "-1", "--json"],
                                   stdout=__import__("subprocess").PIPE, text=True)
                time.sleep(0.5)
            lab.clear()
            for d, params in _per_direction(scenario.impair).items():
                lab.impair(d, **params)
            lab.truth_reset()
            argv = ["iperf3", "-c", lab.addr("b"), "-u", "-b", "800K", "-l", "1000", "-t", f"{seconds:g}",
                    "--json"] + (["-R"] if reverse else [])
            blackout = None
            if scenario.blackout_at_s is not None:
                import threading
                blackout = threading.Timer(min(scenario.blackout_at_s, seconds / 2) - 1,
                                           lambda: lab.blackout(scenario.blackout_dir, seconds=scenario.blackout_s))
                blackout.start()
            r = lab.run("a", argv, timeout=seconds + 30)
            if blackout:
                blackout.join()
            truth = lab.truth()
            try:
                summary = json.loads(r.stdout)["end"]["sum"]
            except (ValueError, KeyError):
                out[direction] = {"error": (r.stderr or r.stdout)[-200:]}
                continue
            flows = [f for f in truth["directions"][DIRECTION_PATH[direction]]["flows"] if f["flow"].startswith("udp")]
            flow = max(flows, key=lambda f: f["packets"]) if flows else None
            out[direction] = {"loss_ratio": summary.get("lost_percent", 0) / 100.0,
                              "jitter_ms": summary.get("jitter_ms"),
                              "truth_loss_ratio": flow["loss_ratio"] if flow else None,
                              "truth_jitter_ms": flow["jitter_ms"] if flow else None}
    finally:
        if server.poll() is None:
            server.kill()
    return out


def fmt(v, unit="", pct=False):
    if v is None:
        return "n/a"
    return f"{100 * v:.2f}%" if pct else f"{v:.2f}{unit}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", help="run only scenarios whose name contains this")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--no-iperf", action="store_true")
    args = ap.parse_args()
    reason = unavailable_reason()
    if reason:
        print(f"cannot run: {reason}", file=sys.stderr)
        return 2
    have_iperf = shutil.which("iperf3") is not None and not args.no_iperf
    if not have_iperf and not args.no_iperf:
        print("iperf3 not found (apt-get install iperf3): its column is left out", file=sys.stderr)
    misses = 0
    for scenario in SCENARIOS:
        if args.only and args.only not in scenario.name:
            continue
        for n in range(args.repeat):
            with Lab() as lab, tempfile.TemporaryDirectory() as tmp:
                report, truth, status = run_session(lab, scenario, Path(tmp))
                ip = iperf3(lab, scenario) if have_iperf else {}
            print(f"\n== {scenario.name} (run {n + 1}): exit {status}, verdict {report['verdict']}, "
                  f"connect {fmt(report['connect_ms'], ' ms')}, MOS {report['mos']}")
            if not report["connected"]:
                print(f"   not connected: {report['error']}")
                misses += 1
                continue
            rows, rtt = compare(report, truth)
            print(f"   {'stream':16} {'loss truth':>11} {'measured':>9} {'aiortc':>7} | {'jitter truth':>12} "
                  f"{'measured':>9} {'(mean)':>8} {'aiortc':>8}")
            for r in rows:
                ok_loss = abs(r.measured_loss_ratio - r.truth_loss_ratio) <= LOSS_TOLERANCE
                # A retransmission (RTX) stream has no jitter of its own: its loss is compared only.
                ok_jit = r.rtx or (abs(r.measured_jitter_ms - r.truth_jitter_ms)
                                   <= jitter_tolerance_ms(r.truth_jitter_ms))
                misses += (not ok_loss) + (not ok_jit)
                a_loss = "" if r.aiortc_lost is None else str(r.aiortc_lost)
                label = f"{r.direction} {r.kind}{' rtx' if r.rtx else ''}"
                print(f"   {label:16} {r.truth_lost:>5} {fmt(r.truth_loss_ratio, pct=True):>5} "
                      f"{r.measured_lost:>5}{'' if ok_loss else '!':1}   {a_loss:>7} | "
                      f"{fmt(r.truth_jitter_ms, ' ms'):>12} "
                      f"{fmt(r.measured_jitter_ms, ' ms'):>9}{'' if ok_jit else '!'} "
                      f"{fmt(r.measured_jitter_mean_ms, ''):>8} {fmt(r.aiortc_jitter_ms, ''):>8}")
            ok_rtt = abs(rtt["measured_mean_ms"] - rtt["truth_added_ms"]) <= rtt_tolerance_ms(rtt["truth_added_ms"])
            misses += not ok_rtt
            print(f"   RTT: truth (router delay of the probes' packets, both ways) "
                  f"{fmt(rtt['truth_added_ms'], ' ms')}, measured mean "
                  f"{fmt(rtt['measured_mean_ms'], ' ms')}{'' if ok_rtt else '!'} "
                  f"p95 {fmt(rtt['measured_p95_ms'], ' ms')}, "
                  f"aiortc RTCP {fmt(rtt['aiortc_rtcp_ms'], ' ms')}")
            for direction, f in ip.items():
                if "error" in f:
                    print(f"   iperf3 {direction}: {f['error']}")
                    continue
                print(f"   iperf3 {direction:8} loss {fmt(f['loss_ratio'], pct=True)} "
                      f"(truth {fmt(f['truth_loss_ratio'], pct=True)})"
                      f"  jitter {fmt(f['jitter_ms'], ' ms')} (truth {fmt(f['truth_jitter_ms'], ' ms')})")
    print(f"\n{misses} figure(s) outside the targets (marked !)")
    return 0 if misses == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
