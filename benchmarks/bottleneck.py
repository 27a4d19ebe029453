#!/usr/bin/env python3
"""A hearing-profile test across a thin one-way bottleneck, with aiortc's own sender and with ours.

Issue 12, part 0: across a 900 kb/s bottleneck with 100 ms of queue (a>b), aiortc's sender
flooded the link with retransmissions and the test measured the storm it made. This runs the
same real session (responder in namespace B, `vks-agent test` in A, tests/netlab's router between)
twice - `session.bounded_sender: false` (aiortc as it is) and `true` (agent/sender.py) - and
prints, for the a>b direction, what the router saw and what the report said:

    .venv/bin/python benchmarks/bottleneck.py [--rate 900] [--buffer-ms 100] [--duration 20] [--repeat 1]

Needs root, /dev/net/tun and iproute2 (network namespaces).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.linktest import Scenario, rtp_truth, run_session, truth_ssrcs  # noqa: E402
from tests.netlab.lab import Lab, unavailable_reason  # noqa: E402


def one_run(bounded: bool, rate: float, buffer_ms: float, duration: float) -> dict:
    scenario = Scenario(f"bottleneck {rate:g} kb/s", {"a>b": {"rate_kbps": rate, "buffer_ms": buffer_ms}},
                        duration_s=duration, profile="hearing",
                        session_config=f"bounded_sender: {'true' if bounded else 'false'}")
    with Lab() as lab, tempfile.TemporaryDirectory() as tmp:
        report, truth, _ = run_session(lab, scenario, Path(tmp))
    if not report["connected"]:
        return {"error": report["error"]}
    link = rtp_truth(truth, "a>b")
    recs = truth_ssrcs(truth, "a>b")
    out_streams = [s for s in report["streams"] if s["direction"] == "outbound"]
    rtx_ssrcs = {s["ssrc"] for s in out_streams if s.get("rtx")}
    video = next(s for s in out_streams if s["kind"] == "video" and not s.get("rtx"))
    rtx_truth = [recs[s] for s in rtx_ssrcs if s in recs]
    retransmission = (report.get("sent") or {}).get("retransmission") or {}
    out = report["outbound"]
    return {
        "video_sent": recs[video["ssrc"]]["packets"] if video["ssrc"] in recs else None,
        "rtx_sent": sum(r["packets"] for r in rtx_truth),
        "rtx_dropped": sum(r["dropped"] for r in rtx_truth),
        "rtp_sent": link["packets"], "rtp_dropped": link["dropped"], "link_loss": link["loss_ratio"],
        "report_loss": out["loss_ratio"], "report_rtx_streams": len(rtx_ssrcs),
        "report_rtx_share": out.get("rtx_share"), "bitrate_kbps": out["bitrate_kbps"],
        "estimate_kbps": out.get("estimate_kbps"), "encoder_kbps": retransmission.get("encoder_kbps"),
        "fps": out.get("fps"), "freeze_s": out.get("freeze_s"), "verdict": report["verdict"],
    }


def pct(v) -> str:
    return "n/a" if v is None else f"{100 * v:.1f} %"


def num(v, unit="") -> str:
    return "n/a" if v is None else f"{v:.0f}{unit}" if isinstance(v, (int, float)) else str(v)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=900.0, help="bottleneck a>b, kb/s")
    parser.add_argument("--buffer-ms", type=float, default=100.0, help="its drop-tail queue, ms")
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    reason = unavailable_reason()
    if reason:
        print(f"cannot run: {reason}")
        return 2
    rows = []
    for n in range(args.repeat):
        for bounded in (False, True):
            r = one_run(bounded, args.rate, args.buffer_ms, args.duration)
            rows.append(("bounded (agent/sender.py)" if bounded else "aiortc as is", n + 1, r))
            print(f"{rows[-1][0]}, run {n + 1}: {r}", file=sys.stderr)
    print(f"\nHearing profile, {args.duration:g} s, a>b bottleneck {args.rate:g} kb/s with {args.buffer_ms:g} ms "
          "of queue; the router's truth vs the report, a>b:\n")
    print("| sender | run | video sent | RTX sent (dropped) | RTP lost by the link | report's loss | "
          "RTX streams in report | RTX share | bitrate | estimate | fps | frozen | verdict |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, n, r in rows:
        if "error" in r:
            print(f"| {name} | {n} | not connected: {r['error']} |")
            continue
        print(f"| {name} | {n} | {r['video_sent']} | {r['rtx_sent']} ({r['rtx_dropped']}) | "
              f"{r['rtp_dropped']} of {r['rtp_sent']} = {pct(r['link_loss'])} | {pct(r['report_loss'])} | "
              f"{r['report_rtx_streams']} | {pct(r['report_rtx_share'])} | {num(r['bitrate_kbps'], ' kb/s')} | "
              f"{num(r['estimate_kbps'], ' kb/s')} | {num(r['fps'])} | {num(r['freeze_s'], ' s')} | {r['verdict']} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
