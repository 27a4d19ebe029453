#!/usr/bin/env python3
"""How evenly fresh results spread the load (controller.freshness): the re-test minute of N hearings
starting at the same hour (a hash of the hearing id inside the 48-24 h window), and the second of M
nightly pair tests in one court's night window (a hash of pair and night). Prints, for each, the
mean and the largest number of tests starting in one minute, and the same for a perfectly even
spread (the floor no plan can beat), as JSON.

    .venv/bin/python benchmarks/freshness.py [--hearings 10000] [--pairs 2000] [--window 01:00-05:00]
"""
from __future__ import annotations

import argparse
import collections
import datetime as dt
import json
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from controller import freshness as fr  # noqa: E402
from controller.settings import parse_window  # noqa: E402


def per_minute(times: list[dt.datetime], minutes: int) -> dict[str, float]:
    counts = collections.Counter(t.replace(second=0, microsecond=0) for t in times)
    return {"tests": len(times), "minutes": minutes, "minutes_used": len(counts),
            "mean_per_minute": round(len(times) / minutes, 2), "max_per_minute": max(counts.values()),
            "even_max_per_minute": math.ceil(len(times) / minutes)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hearings", type=int, default=10_000)
    ap.add_argument("--pairs", type=int, default=2_000)
    ap.add_argument("--window", default="01:00-05:00")
    ap.add_argument("--timezone", default="Asia/Almaty")
    a = ap.parse_args()
    start = dt.datetime(2026, 12, 20, 10, 0, tzinfo=dt.UTC)
    t0 = time.perf_counter()
    retests = [fr.retest_at(i, start, [48, 24]) for i in range(1, a.hearings + 1)]
    retest_s = time.perf_counter() - t0
    night = dt.date(2026, 12, 10)
    t0 = time.perf_counter()
    # Pairs as a judiciary has them: ~300 courtroom terminals, each with several remote ones.
    slots = [fr.pair_slot(f"court-{i % 300}", f"sizo-{i // 300}-{i}", night, a.timezone, a.window)
             for i in range(a.pairs)]
    pair_s = time.perf_counter() - t0
    w0, w1 = parse_window(a.window)
    print(json.dumps({
        "retest": {**per_minute(retests, 24 * 60), "window_h": [48, 24],
                   "plan_us_each": round(retest_s / len(retests) * 1e6, 1)},
        "nightly": {**per_minute(slots, (w1 - w0) % 1440), "window": a.window, "timezone": a.timezone,
                    "plan_us_each": round(pair_s / len(slots) * 1e6, 1)},
    }, indent=2))


if __name__ == "__main__":
    main()
