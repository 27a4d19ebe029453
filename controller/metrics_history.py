"""The last check of each terminal pair on /metrics (issue 12): Prometheus keeps them, so Grafana
shows the trends of every pair checked recently without the controller's history API.

Read from the history (controller.store.history) when scraped, like the other database figures:
for each pair - unordered, labelled `a` < `b` (terminal ids) - with a check or test within
`history.metrics_days`, its latest result: loss (the worse direction), jitter and RTT in seconds,
the capacity (the lower direction) in bit/s when measured, and when it was taken. At most
`history.metrics_max_pairs` pairs, the most recently checked (the labels stay bounded); how many
more there were is `vks_pair_last_check_pairs_omitted`. A figure the result did not measure has no
series for that pair.
"""
from __future__ import annotations

import datetime as dt

from aiohttp import web
from prometheus_client import CollectorRegistry, Gauge

from controller.keys import CLOCK_KEY, DB_KEY, SETTINGS_KEY
from controller.store import history

PAIR = ["a", "b"]
# metric name -> (help, the history's column, factor to base units)
FIGURES: dict[str, tuple[str, str, float]] = {
    "vks_pair_last_check_loss_ratio": ("Loss of the pair's last check or test (the worse direction, 0..1)",
                                       "loss_ratio", 1.0),
    "vks_pair_last_check_jitter_seconds": ("Jitter (p95) of the pair's last check or test, the worse direction",
                                           "jitter_ms", 0.001),
    "vks_pair_last_check_rtt_seconds": ("Round-trip time (p95) of the pair's last check or test", "rtt_ms", 0.001),
    "vks_pair_last_check_capacity_bits_per_second": (
        "Capacity of the pair's last check or test that measured it (the lower direction)", "capacity_kbps", 1000.0),
}


class HistoryMetrics:
    """The `vks_pair_last_check_*` gauges, refreshed from the database at each scrape."""

    def __init__(self, registry: CollectorRegistry):
        self.figures = {name: (Gauge(name, text, PAIR, registry=registry), col, k)
                        for name, (text, col, k) in FIGURES.items()}
        self.at = Gauge("vks_pair_last_check_timestamp_seconds", "Unix time of the pair's last check or test",
                        PAIR, registry=registry)
        self.omitted = Gauge("vks_pair_last_check_pairs_omitted",
                             "Pairs checked within history.metrics_days left out beyond history.metrics_max_pairs",
                             registry=registry)

    async def refresh(self, app: web.Application) -> None:
        """Read the last result of each pair checked recently and set the gauges to them."""
        s = app[SETTINGS_KEY].history
        since = app[CLOCK_KEY]() - dt.timedelta(days=s.metrics_days)
        async with app[DB_KEY].read() as conn:
            rows, omitted = await history.last_per_pair(conn, since, s.metrics_max_pairs)
        for gauge, _, _ in self.figures.values():
            gauge.clear()
        self.at.clear()
        for r in rows:
            pair = {"a": r["a"], "b": r["b"]}
            self.at.labels(**pair).set(r["at"].timestamp())
            for gauge, col, k in self.figures.values():
                if r[col] is not None:
                    gauge.labels(**pair).set(float(r[col]) * k)
        self.omitted.set(omitted)
