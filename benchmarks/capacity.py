#!/usr/bin/env python3
"""Capacity on a capped link: ours beside iperf3 UDP and a WebRTC bandwidth-estimation ramp.

Issue 12, part 1. tests/netlab's router caps the a>b direction (drop-tail queue of --queue-ms),
and three tools say what that direction carries, in IP kb/s:

- ours: `vks-agent test --capacity` (agent/capacity.py) - a short session, then the ramp on its
  own 5-tuple; the figure is the report's `capacity.outbound.kbps`, the time its `duration_s`;
- iperf3 UDP: 1,200-byte datagrams sent for --iperf-s seconds at the ceiling (2,500 kb/s, above
  every cap here: iperf3 does not search, it must be told to send more than the link carries);
  the figure is what the receiver got, payload converted to IP bytes (+28 bytes a datagram);
- REMB: a real session with a video profile allowed up to the ceiling (`bwe`: 640x360, 15 fps,
  2,500 kb/s), for --remb-s seconds; the figure is the sender's last REMB from aiortc's receiver
  (the report's `outbound.estimate_kbps`): what WebRTC's own estimation believes after that long.

    .venv/bin/python benchmarks/capacity.py [--caps 500,2000] [--queue-ms 150] [--repeat 1]

Needs root, /dev/net/tun and iproute2 (network namespaces), and iperf3.
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.linktest import Scenario, run_session  # noqa: E402
from tests.netlab.lab import Lab, unavailable_reason  # noqa: E402

CEILING = 2500.0
DATAGRAM = 1200
IP_UDP = 28
BWE_PROFILES = """profiles:
  hearing: {width: 640, height: 360, fps: 15, bitrate_kbps: 600, audio: true, video: true, thresholds: hearing}
  bwe: {width: 640, height: 360, fps: 15, bitrate_kbps: 2500, audio: true, video: true, thresholds: hearing}"""


def ours(cap: float, queue_ms: float) -> dict:
    scenario = Scenario(f"ours {cap:g}", {"a>b": {"rate_kbps": cap, "buffer_ms": queue_ms}}, duration_s=2.0,
                        profile="hearing", test_args=("--capacity",))
    with Lab() as lab, tempfile.TemporaryDirectory() as tmp:
        report, _, _ = run_session(lab, scenario, Path(tmp))
    c = (report.get("capacity") or {}).get("outbound")
    if not c:
        return {"error": report.get("error") or (report.get("capacity") or {}).get("error")}
    return {"kbps": c["kbps"], "seconds": c["duration_s"], "limited_by": c["limited_by"], "steps": len(c["steps"])}


def iperf3(cap: float, queue_ms: float, seconds: float) -> dict:
    with Lab() as lab:
        lab.impair("a>b", rate_kbps=cap, buffer_ms=queue_ms)
        server = lab.popen("b", ["iperf3", "-s", "-B", lab.addr("b"), "-1", "--json"],
                           stdout=subprocess.PIPE, text=True)
        time.sleep(0.5)
        try:
            r = lab.run("a", ["iperf3", "-c", lab.addr("b"), "-u", "-b", f"{CEILING:g}K", "-l", str(DATAGRAM),
                              "-t", f"{seconds:g}", "--json"], timeout=seconds + 30)
        finally:
            if server.poll() is None:
                server.kill()
    try:
        end = json.loads(r.stdout)["end"]
    except (ValueError, KeyError):
        return {"error": (r.stderr or r.stdout)[-200:]}
    received = end.get("sum_received") or {}
    total = end.get("sum") or {}
    if received.get("bits_per_second") is not None:
        payload_bps = float(received["bits_per_second"])
    else:
        payload_bps = float(total["bits_per_second"]) * (1 - float(total.get("lost_percent", 0)) / 100)
    return {"kbps": round(payload_bps * (DATAGRAM + IP_UDP) / DATAGRAM / 1000, 1), "seconds": seconds}


def remb(cap: float, queue_ms: float, seconds: float) -> dict:
    scenario = Scenario(f"remb {cap:g}", {"a>b": {"rate_kbps": cap, "buffer_ms": queue_ms}}, duration_s=seconds,
                        profile="bwe", session_config=BWE_PROFILES)
    with Lab() as lab, tempfile.TemporaryDirectory() as tmp:
        report, _, _ = run_session(lab, scenario, Path(tmp))
    out = report.get("outbound") or {}
    if out.get("estimate_kbps") is None:
        return {"error": report.get("error") or "no REMB estimate in the report"}
    return {"kbps": out["estimate_kbps"], "seconds": seconds, "sent_kbps": out.get("bitrate_kbps")}


def cell(r: dict, cap: float) -> str:
    if "kbps" not in r:
        return f"error: {r.get('error')}"
    return f"{r['kbps']:.0f} ({100 * (r['kbps'] / cap - 1):+.1f} %, {r['seconds']:.1f} s)"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--caps", default="500,2000", help="a>b caps to try, kb/s (comma-separated)")
    parser.add_argument("--queue-ms", type=float, default=150.0)
    parser.add_argument("--iperf-s", type=float, default=5.0)
    parser.add_argument("--remb-s", type=float, default=12.0)
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    reason = unavailable_reason()
    if reason:
        print(f"cannot run: {reason}")
        return 2
    have_iperf = shutil.which("iperf3") is not None
    rows = []
    for cap in (float(c) for c in args.caps.split(",")):
        for n in range(args.repeat):
            row = {"cap": cap, "run": n + 1, "ours": ours(cap, args.queue_ms),
                   "iperf3": iperf3(cap, args.queue_ms, args.iperf_s) if have_iperf else {"error": "no iperf3"},
                   "remb": remb(cap, args.queue_ms, args.remb_s)}
            print(json.dumps(row), file=sys.stderr)
            rows.append(row)
    print(f"\nCapacity of a>b capped by the router (drop-tail queue {args.queue_ms:g} ms), IP kb/s "
          "(error vs the cap, time taken):\n")
    print("| cap | run | ours (vks-agent test --capacity) | iperf3 UDP at 2,500 kb/s | REMB after "
          f"{args.remb_s:g} s of video |")
    print("|---|---|---|---|---|")
    for r in rows:
        extra = f", limited by {r['ours']['limited_by']}, {r['ours']['steps']} steps" if "kbps" in r["ours"] else ""
        print(f"| {r['cap']:g} | {r['run']} | {cell(r['ours'], r['cap'])}{extra} | {cell(r['iperf3'], r['cap'])} "
              f"| {cell(r['remb'], r['cap'])} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
