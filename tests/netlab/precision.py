"""Measure the router's timing precision and print the figures (not a test).

    sudo .venv/bin/python -m tests.netlab.precision [--seconds 5] [--pps 200] [--load 0|1|2]

For each scenario a UDP stream (udp_send -> udp_recv) crosses the lab and the script
prints:
* the router's departure error (actual write time - planned departure), p50/p99/max, us;
* the end-to-end overhead: the receiver's mean one-way transit minus the router's mean
  added delay (TUN read + write + the kernel's own path), ms;
* the receiver's RFC 3550 jitter next to the truth's.
``--load N`` runs N busy-looping processes meanwhile (a busy 2-core machine).
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import time

from .lab import Lab
from .streams import find_ssrc, ping, udp_stream

SCENARIOS = [
    ("clean", {}),
    ("delay 40 ms", {"delay_ms": 40}),
    ("delay 40 ms, jitter 15 ms", {"delay_ms": 40, "jitter_ms": 15}),
    ("delay 40 ms, jitter 15 ms, reorder", {"delay_ms": 40, "jitter_ms": 15, "reorder": True}),
]


def _spin(stop_at: float) -> None:
    while time.monotonic() < stop_at:
        pass


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--pps", type=float, default=200.0)
    p.add_argument("--load", type=int, default=0, help="busy processes during the run (0..8)")
    p.add_argument("--no-realtime", action="store_true")
    p.add_argument("--json", action="store_true")
    a = p.parse_args()
    load = max(0, min(8, a.load))
    rows = []
    with Lab(seed=1, realtime=not a.no_realtime) as lab:
        ctx = multiprocessing.get_context("fork")
        procs = [ctx.Process(target=_spin, args=(time.monotonic() + 3600,), daemon=True) for _ in range(load)]
        for pr in procs:
            pr.start()
        try:
            lab.impair("both", delay_ms=40)
            pg = ping(lab, "a", count=20, interval=0.05)
            lab.clear()
            for i, (name, imp) in enumerate(SCENARIOS):
                lab.impair("a>b", **imp)
                lab.truth_reset()
                res = udp_stream(lab, "a>b", count=int(a.seconds * a.pps), pps=a.pps, port=7000 + i,
                                 ssrc=0x5000 + i, idle=1.0)
                t = lab.truth(series=False)
                s = find_ssrc(t, "a>b", 0x5000 + i)
                te = t["directions"]["a>b"]["timing_error_us"]
                rows.append({
                    "scenario": name, "packets": s["packets"],
                    "departure_error_us": {k: te[k] for k in ("p50", "p99", "max")},
                    "overhead_ms": round(res.receiver["delay_ms"]["mean"] - s["delay_ms"]["mean"], 3),
                    "truth_jitter_ms": s["jitter_ms"], "receiver_jitter_ms": res.receiver["jitter_ms"],
                    "truth_delay_mean_ms": s["delay_ms"]["mean"],
                })
        finally:
            for pr in procs:
                pr.terminate()
                pr.join(5)
        tuning = lab.router_info.get("tuning")
    out = {"pps": a.pps, "seconds": a.seconds, "load": load, "router_tuning": tuning,
           "ping_rtt_ms_40ms_each_way": {k: pg.get(k) for k in ("min", "p50", "max")}, "scenarios": rows}
    if a.json:
        print(json.dumps(out))
        return
    print(f"router tuning: {tuning}; stream {a.pps:g} pps for {a.seconds:g} s; busy processes: {load}")
    print(f"ping, 40 ms each way: RTT min {pg.get('min')} / p50 {pg.get('p50')} / max {pg.get('max')} ms")
    print(f"{'scenario':38} {'dep.err p50/p99/max us':>24} {'overhead ms':>12} {'jitter truth/rx ms':>20}")
    for r in rows:
        e = r["departure_error_us"]
        print(f"{r['scenario']:38} {e['p50']:>7}/{e['p99']:>7}/{e['max']:>8} {r['overhead_ms']:>12} "
              f"{r['truth_jitter_ms']:>9}/{r['receiver_jitter_ms']:<9}")


if __name__ == "__main__":
    main()
