"""Pure ground-truth recorder of the emulated link (no I/O, times passed in).

Per direction the router records, for every packet: the ingress (arrival at the router)
and, for delivered packets, the ACTUAL time it was written to the far TUN device. From that:

* totals and per-flow / per-RTP-SSRC counters: packets in, dropped by the loss model,
  dropped by a blackout, dropped by the queue cap, delivered;
* added delay (actual write time - arrival) of delivered packets: mean, p50, p95, max
  (percentiles from a 10 microsecond histogram, so memory stays bounded);
* RFC 3550 interarrival jitter over the added delay: for delivered packets in delivery
  order, D = transit_i - transit_(i-1), J += (|D| - J) / 16, in milliseconds;
* a per-second series indexed by the INGRESS second relative to lab start
  (``{"t", "in", "delivered", "dropped", "blackout"}``: packets that entered the router in
  that second and what became of them);
* the router's own timing error (actual - planned departure), in microseconds.

Everything is bounded: flows per direction, SSRCs per flow, listed dropped sequence numbers.
"""
from __future__ import annotations

import math

from .impair import DELIVER, DIRECTIONS, DROP_BLACKOUT, DROP_LOSS, DROP_QUEUE
from .packet import KIND_DTLS, KIND_RTP, PacketInfo, flow_key

MAX_FLOWS = 512
MAX_SSRCS_PER_FLOW = 64
MAX_DROPPED_SEQS = 5_000
MAX_SERIES_SECONDS = 4 * 3600
MAX_DTLS_SIZES = 256          # DTLS packet sizes kept apart per flow (past it: only in "dtls")
OVERFLOW_FLOW = "(other flows)"


class Histogram:
    """Counts of values in fixed-width bins; exact mean and max, binned percentiles."""

    __slots__ = ("width", "bins", "n", "total", "max")

    def __init__(self, width: float) -> None:
        self.width = width
        self.bins: dict[int, int] = {}
        self.n = 0
        self.total = 0.0
        self.max = -math.inf

    def add(self, value: float) -> None:
        k = math.floor(value / self.width)
        self.bins[k] = self.bins.get(k, 0) + 1
        self.n += 1
        self.total += value
        if value > self.max:
            self.max = value

    def percentile(self, q: float) -> float | None:
        """Value below which a fraction ``q`` of samples lie (bin centre)."""
        if not self.n:
            return None
        rank = max(1, math.ceil(q * self.n))
        seen = 0
        for k in sorted(self.bins):
            seen += self.bins[k]
            if seen >= rank:
                return min((k + 0.5) * self.width, self.max)
        return self.max

    def summary(self, ndigits: int = 3) -> dict:
        if not self.n:
            return {"n": 0, "mean": None, "p50": None, "p95": None, "p99": None, "max": None}
        r = lambda v: round(v, ndigits)  # noqa: E731
        return {"n": self.n, "mean": r(self.total / self.n), "p50": r(self.percentile(0.50)),
                "p95": r(self.percentile(0.95)), "p99": r(self.percentile(0.99)), "max": r(self.max)}


class Counters:
    """What became of the packets of one scope (direction, flow or SSRC)."""

    __slots__ = ("packets", "bytes", "delivered", "bytes_delivered", "dropped_loss",
                 "dropped_blackout", "dropped_queue", "delay", "jitter", "_last_transit",
                 "series")

    def __init__(self) -> None:
        self.packets = 0
        self.bytes = 0
        self.delivered = 0
        self.bytes_delivered = 0
        self.dropped_loss = 0
        self.dropped_blackout = 0
        self.dropped_queue = 0
        self.delay = Histogram(0.01)  # ms, 10 us bins
        self.jitter = 0.0
        self._last_transit: float | None = None
        self.series: dict[int, list[int]] = {}  # second -> [in, delivered, dropped, blackout]

    def _slot(self, sec: int) -> list[int] | None:
        slot = self.series.get(sec)
        if slot is None:
            if len(self.series) >= MAX_SERIES_SECONDS:
                return None
            slot = self.series[sec] = [0, 0, 0, 0]
        return slot

    def ingress(self, size: int, sec: int, verdict: str) -> None:
        self.packets += 1
        self.bytes += size
        slot = self._slot(sec)
        if slot is not None:
            slot[0] += 1
        if verdict == DELIVER:
            return
        if verdict == DROP_LOSS:
            self.dropped_loss += 1
        elif verdict == DROP_BLACKOUT:
            self.dropped_blackout += 1
            if slot is not None:
                slot[3] += 1
        elif verdict == DROP_QUEUE:
            self.dropped_queue += 1
        if slot is not None:
            slot[2] += 1

    def delivery(self, size: int, sec: int, transit_ms: float) -> None:
        self.delivered += 1
        self.bytes_delivered += size
        self.delay.add(transit_ms)
        if self._last_transit is not None:
            self.jitter += (abs(transit_ms - self._last_transit) - self.jitter) / 16.0
        self._last_transit = transit_ms
        slot = self.series.get(sec)
        if slot is not None:
            slot[1] += 1

    @property
    def dropped(self) -> int:
        return self.dropped_loss + self.dropped_blackout + self.dropped_queue

    def to_dict(self, with_series: bool = True) -> dict:
        d = {
            "packets": self.packets, "bytes": self.bytes,
            "dropped": self.dropped, "dropped_loss": self.dropped_loss,
            "dropped_blackout": self.dropped_blackout, "dropped_queue": self.dropped_queue,
            "delivered": self.delivered, "bytes_delivered": self.bytes_delivered,
            "loss_ratio": round(self.dropped / self.packets, 6) if self.packets else 0.0,
            "jitter_ms": round(self.jitter, 4),
            "delay_ms": self.delay.summary(),
        }
        if with_series:
            d["series"] = [{"t": s, "in": v[0], "delivered": v[1], "dropped": v[2], "blackout": v[3]}
                           for s, v in sorted(self.series.items())]
        return d


class SsrcRecord(Counters):
    """Counters of one RTP stream plus its sequence numbers (extended per RFC 3550)."""

    __slots__ = ("ssrc", "pt", "ext_first", "ext_max", "dropped_seqs", "dropped_seqs_truncated")

    def __init__(self, ssrc: int, pt: int | None) -> None:
        super().__init__()
        self.ssrc = ssrc
        self.pt = pt
        self.ext_first: int | None = None
        self.ext_max: int | None = None
        self.dropped_seqs: list[int] = []
        self.dropped_seqs_truncated = False

    def seen_seq(self, seq: int) -> None:
        if self.ext_max is None:
            self.ext_first = self.ext_max = seq
            return
        delta = (seq - (self.ext_max & 0xFFFF)) & 0xFFFF
        ext = self.ext_max + delta if delta < 0x8000 else self.ext_max - (0x10000 - delta)
        if ext > self.ext_max:
            self.ext_max = ext
        if ext < self.ext_first:  # type: ignore[operator]
            self.ext_first = ext

    def dropped_seq(self, seq: int) -> None:
        if len(self.dropped_seqs) < MAX_DROPPED_SEQS:
            self.dropped_seqs.append(seq)
        else:
            self.dropped_seqs_truncated = True

    def to_dict(self, with_series: bool = True) -> dict:
        d = {"ssrc": self.ssrc, "pt": self.pt}
        d.update(super().to_dict(with_series))
        d.update({
            "first_seq": None if self.ext_first is None else self.ext_first & 0xFFFF,
            "last_seq": None if self.ext_max is None else self.ext_max & 0xFFFF,
            "ext_first_seq": self.ext_first, "ext_last_seq": self.ext_max,
            "dropped_seqs": list(self.dropped_seqs),
            "dropped_seqs_truncated": self.dropped_seqs_truncated,
        })
        return d


class FlowRecord(Counters):
    """Counters of one 5-tuple flow, with the kinds of packets seen and its RTP streams.

    `kind_delay` keeps the added delay of each kind of packet apart: on a FIFO link with jitter
    the delay a packet meets depends on the packets just ahead of it, so the sparse data-channel
    packets (DTLS: the agent's RTT probes ride there) meet another mean than paced media does.
    `dtls_size_delay` keeps DTLS packets apart by size (IP bytes, at most MAX_DTLS_SIZES sizes): an
    encrypted data-channel message of fixed length (the agent's probe and its echo) always makes a
    packet of one size, and it meets another delay than the SACK sent just before it, which it
    queues behind."""

    __slots__ = ("key", "kinds", "ssrcs", "kind_delay", "dtls_size_delay")

    def __init__(self, key: str) -> None:
        super().__init__()
        self.key = key
        self.kinds: dict[str, int] = {}
        self.ssrcs: dict[int, SsrcRecord] = {}
        self.kind_delay: dict[str, Histogram] = {}
        self.dtls_size_delay: dict[int, Histogram] = {}

    def kind_delivery(self, kind: str, size: int, transit_ms: float) -> None:
        hist = self.kind_delay.get(kind)
        if hist is None:
            hist = self.kind_delay[kind] = Histogram(0.01)
        hist.add(transit_ms)
        if kind == KIND_DTLS:
            hist = self.dtls_size_delay.get(size)
            if hist is None:
                if len(self.dtls_size_delay) >= MAX_DTLS_SIZES:
                    return
                hist = self.dtls_size_delay[size] = Histogram(0.01)
            hist.add(transit_ms)

    def to_dict(self, with_series: bool = True) -> dict:
        d = {"flow": self.key, "kinds": dict(self.kinds),
             "delay_ms_by_kind": {k: h.summary() for k, h in sorted(self.kind_delay.items())},
             "dtls_delay_ms_by_size": {str(k): h.summary() for k, h in sorted(self.dtls_size_delay.items())}}
        d.update(super().to_dict(with_series))
        d["ssrcs"] = [s.to_dict(with_series) for _, s in sorted(self.ssrcs.items())]
        return d


class DirectionRecord:
    """Ground truth of one direction since the last reset."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.totals = Counters()
        self.kinds: dict[str, int] = {}
        self.flows: dict[str, FlowRecord] = {}
        self.timing_us = Histogram(1.0)  # actual - planned departure, microseconds
        self.write_errors = 0

    def _flow(self, info: PacketInfo) -> FlowRecord:
        key = flow_key(info.flow)
        rec = self.flows.get(key)
        if rec is None:
            if len(self.flows) >= MAX_FLOWS:
                key = OVERFLOW_FLOW
                rec = self.flows.get(key)
            if rec is None:
                rec = self.flows[key] = FlowRecord(key)
        return rec

    def ingress(self, info: PacketInfo, size: int, sec: int, verdict: str) -> tuple:
        """Record an arriving packet; returns the handle to pass to :meth:`delivery`."""
        self.totals.ingress(size, sec, verdict)
        self.kinds[info.kind] = self.kinds.get(info.kind, 0) + 1
        flow = self._flow(info)
        flow.kinds[info.kind] = flow.kinds.get(info.kind, 0) + 1
        flow.ingress(size, sec, verdict)
        ssrc_rec = None
        if info.kind == KIND_RTP and info.ssrc is not None:
            ssrc_rec = flow.ssrcs.get(info.ssrc)
            if ssrc_rec is None and len(flow.ssrcs) < MAX_SSRCS_PER_FLOW:
                ssrc_rec = flow.ssrcs[info.ssrc] = SsrcRecord(info.ssrc, info.pt)
            if ssrc_rec is not None:
                ssrc_rec.ingress(size, sec, verdict)
                ssrc_rec.seen_seq(info.seq)  # type: ignore[arg-type]
                if verdict != DELIVER:
                    ssrc_rec.dropped_seq(info.seq)  # type: ignore[arg-type]
        return (flow, ssrc_rec, size, sec, info.kind)

    def delivery(self, handle: tuple, arrival: float, planned: float, actual: float) -> None:
        flow, ssrc_rec, size, sec, kind = handle
        transit_ms = (actual - arrival) * 1000.0
        self.totals.delivery(size, sec, transit_ms)
        flow.delivery(size, sec, transit_ms)
        flow.kind_delivery(kind, size, transit_ms)
        if ssrc_rec is not None:
            ssrc_rec.delivery(size, sec, transit_ms)
        self.timing_us.add((actual - planned) * 1e6)

    def to_dict(self, queued: int = 0, with_series: bool = True) -> dict:
        totals = self.totals.to_dict(with_series)
        totals["in_flight"] = queued
        totals["write_errors"] = self.write_errors
        return {
            "totals": totals,
            "kinds": dict(self.kinds),
            "flows": [f.to_dict(with_series) for _, f in sorted(self.flows.items())],
            "timing_error_us": self.timing_us.summary(ndigits=1),
        }


def new_records() -> dict[str, DirectionRecord]:
    return {d: DirectionRecord(d) for d in DIRECTIONS}
