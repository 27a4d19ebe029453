"""What a receiver counts: loss, jitter, bitrate, frames and stalls of one RTP stream.

Pure logic, no I/O: fed with the RTP packets as they arrive (agent/rtp_tap.py) and
with decoded frames (agent/session.py), it keeps per-second intervals and gives a
summary. Everything is measured where the packets are received, from the packets
themselves, because aiortc's getStats gets several of these wrong (docs/measurement.md).

Loss: from sequence-number gaps (RFC 3550 A.1 extended sequence numbers). A missing
packet is attributed to the second in which it should have arrived, interpolated
between the packets either side of the gap, so a blackout shows as seconds of 100 %
loss instead of being averaged away. Packets lost before the first or after the last
received one are counted once the sender tells its own first and last sequence
numbers (`finalize`).

Jitter: RFC 3550 section 6.4.1 interarrival jitter, J += (|D| - J) / 16, where the
transit time uses the sender's abs-send-time stamp (taken as the packet is handed to
the socket) rather than the RTP timestamp (taken when the frame was captured), so
that the sender's own encoding and pacing delays do not show up as network jitter.
"""
from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

SEQ_MOD = 1 << 16
ABS_SEND_TIME_MOD = 1 << 24          # 6.18 fixed-point seconds, wraps every 64 s
ABS_SEND_TIME_UNIT = 1.0 / (1 << 18)
# A forward jump larger than this is a sender restart, not a loss; one further back
# than MAX_MISORDER is too (RFC 3550 A.1 MAX_DROPOUT, MAX_MISORDER).
MAX_DROPOUT = 3000
MAX_MISORDER = 100
# Missing packets older than this many sequence numbers behind the newest can no
# longer arrive late; they are folded into the per-interval counters.
MISSING_HORIZON = 4096
# A second with no packet at all while the stream was flowing is a stall.
STALL_GAP_S = 1.0


def percentile(values: Iterable[float | None], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100); None for no values."""
    data = sorted(v for v in values if v is not None)
    if not data:
        return None
    k = max(0, min(len(data) - 1, math.ceil(q / 100.0 * len(data)) - 1))
    return data[k]


def summarize(values: Iterable[float | None]) -> dict[str, float | None]:
    """Mean, median, 95th percentile and maximum of the values given (None ones left out)."""
    data = [v for v in values if v is not None]
    if not data:
        return {"mean": None, "p50": None, "p95": None, "max": None}
    return {"mean": sum(data) / len(data), "p50": percentile(data, 50),
            "p95": percentile(data, 95), "max": max(data)}


@dataclass
class Interval:
    """One second of one stream, as received."""
    packets: int = 0
    bytes: int = 0
    lost: int = 0
    jitter_ms: float | None = None      # RFC 3550 J at the last packet of the second
    max_gap_s: float = 0.0              # longest silence between packets inside the second
    frames: int = 0                     # decoded frames (video)


@dataclass
class StreamMeter:
    """One received RTP stream (one SSRC)."""
    kind: str                      # "audio" | "video"
    ssrc: int
    clock_rate: int
    t0: float                      # session time origin (monotonic seconds)
    # A retransmission stream (RTX, RFC 4588) and the SSRC it repairs. Its packets are
    # resent copies that keep no regular spacing, so it has no jitter of its own.
    rtx: bool = False
    repairs: int | None = None

    packets: int = 0               # unique packets received
    duplicates: int = 0
    reordered: int = 0             # arrived after a later sequence number (not lost)
    bytes: int = 0
    base_ext: int | None = None
    max_ext: int | None = None
    last_arrival: float | None = None
    first_arrival: float | None = None
    jitter_s: float = 0.0
    _transit: float | None = None
    _send_unwrapped: int | None = None
    _send_raw: int | None = None
    _received: set[int] = field(default_factory=set)
    _missing: dict[int, int] = field(default_factory=dict)   # ext seq -> interval index
    _intervals: dict[int, Interval] = field(default_factory=dict)
    _frame_times: list[float] = field(default_factory=list)
    resyncs: int = 0
    early: int = 0                 # reached the socket, never decrypted: not lost
    _seq_offset: int = 0
    _bad_seq: int | None = None

    # -- feeding ------------------------------------------------------------------
    def _interval(self, t: float) -> Interval:
        idx = max(0, int(t - self.t0))
        iv = self._intervals.get(idx)
        if iv is None:
            iv = self._intervals[idx] = Interval()
        return iv

    def _ext(self, seq: int) -> int:
        """Extend a 16-bit sequence number relative to the newest one."""
        seq = (seq + self._seq_offset) % SEQ_MOD
        if self.max_ext is None:
            return seq
        delta = (seq - self.max_ext) % SEQ_MOD
        if delta > SEQ_MOD - MAX_MISORDER:
            delta -= SEQ_MOD                  # a late packet
        return self.max_ext + delta

    def _big_jump(self, seq: int) -> bool:
        """RFC 3550 A.1: a jump of more than MAX_DROPOUT is taken as a sender restart
        once two consecutive packets confirm it; the first of them is not counted."""
        assert self.max_ext is not None, "only once a packet has arrived"
        ext = self._ext(seq)
        if ext - self.max_ext <= MAX_DROPOUT:
            return False
        if seq == self._bad_seq:
            self.resyncs += 1
            self._seq_offset = (self._seq_offset + self.max_ext + 1 - self._ext(seq)) % SEQ_MOD
            self._bad_seq = None
            return False
        self._bad_seq = (seq + 1) % SEQ_MOD
        return True

    def _send_time(self, abs_send_time: int) -> float:
        if self._send_unwrapped is None or self._send_raw is None:
            self._send_unwrapped = abs_send_time
        else:
            delta = (abs_send_time - self._send_raw) % ABS_SEND_TIME_MOD
            if delta >= ABS_SEND_TIME_MOD // 2:
                delta -= ABS_SEND_TIME_MOD
            self._send_unwrapped += delta
        self._send_raw = abs_send_time
        return self._send_unwrapped * ABS_SEND_TIME_UNIT

    def _mark_missing(self, first: int, last: int, t_from: float, t_to: float) -> None:
        """Sequence numbers first..last (inclusive) are missing; spread their
        expected arrival linearly over t_from..t_to."""
        n = last - first + 1
        for i, ext in enumerate(range(first, last + 1)):
            t = t_from + (i + 1) / (n + 1) * (t_to - t_from)
            self._missing[ext] = max(0, int(t - self.t0))

    def add_packet(self, seq: int, rtp_timestamp: int, arrival: float, size: int,
                   abs_send_time: int | None = None) -> None:
        if self.max_ext is not None and self._big_jump(seq):
            return
        ext = self._ext(seq)
        if self.max_ext is None:
            self.base_ext = self.max_ext = ext
            self.first_arrival = arrival
        elif ext > self.max_ext:
            if ext > self.max_ext + 1:
                self._mark_missing(self.max_ext + 1, ext - 1, self.last_arrival or arrival, arrival)
            self.max_ext = ext
        elif ext in self._received or ext < self.max_ext - MISSING_HORIZON:
            # A copy, or so late that its gap was already counted as lost.
            self.duplicates += 1
            return
        else:
            self.reordered += 1
            assert self.base_ext is not None, "set with max_ext by the first packet"
            if ext < self.base_ext:
                self._mark_missing(ext + 1, self.base_ext - 1, arrival, arrival)
                self.base_ext = ext
            self._missing.pop(ext, None)

        self._received.add(ext)
        self.packets += 1
        self.bytes += size
        iv = self._interval(arrival)
        if self.last_arrival is not None and arrival - self.last_arrival > iv.max_gap_s:
            iv.max_gap_s = arrival - self.last_arrival
        iv.packets += 1
        iv.bytes += size

        self.last_arrival = arrival if self.last_arrival is None else max(self.last_arrival, arrival)
        if not self.rtx:
            self._jitter(rtp_timestamp, arrival, abs_send_time, iv)
        self._prune()

    def _jitter(self, rtp_timestamp: int, arrival: float, abs_send_time: int | None, iv: Interval) -> None:
        """RFC 3550 interarrival jitter, on the network's own transit time."""
        sent = (self._send_time(abs_send_time) if abs_send_time is not None
                else rtp_timestamp / self.clock_rate)
        transit = arrival - sent
        if self._transit is not None:
            d = abs(transit - self._transit)
            self.jitter_s += (d - self.jitter_s) / 16.0
        self._transit = transit
        iv.jitter_ms = self.jitter_s * 1000.0

    def _prune(self) -> None:
        if len(self._received) > 2 * MISSING_HORIZON and self.max_ext is not None:
            floor = self.max_ext - MISSING_HORIZON
            self._received = {e for e in self._received if e >= floor}
            for ext in [e for e in self._missing if e < floor]:
                self._interval_at(self._missing.pop(ext)).lost += 1

    def _interval_at(self, idx: int) -> Interval:
        iv = self._intervals.get(idx)
        if iv is None:
            iv = self._intervals[idx] = Interval()
        return iv

    def add_frame(self, arrival: float) -> None:
        """A decoded frame left the decoder (video): for frame rate and freezes."""
        self._frame_times.append(arrival)
        self._interval(arrival).frames += 1

    # -- reading ------------------------------------------------------------------
    def finalize(self, sender_first_seq: int | None, sender_last_seq: int | None, end: float,
                 arrived: Callable[[int], bool] | None = None) -> None:
        """Count what was lost before the first and after the last packet received,
        now that the sender has said what it sent.

        `arrived(seq)` tells of a packet that reached the socket but was never
        decrypted (it overtook the DTLS handshake, or SRTP's replay window was not yet
        set up for it): delivered by the network, so counted as received (`early`),
        not lost."""
        if self.max_ext is None:
            return
        # The first packet set them all.
        assert self.base_ext is not None and self.first_arrival is not None and self.last_arrival is not None
        if sender_last_seq is not None:
            last_ext = self._ext(sender_last_seq)
            if last_ext > self.max_ext and last_ext - self.max_ext <= MAX_DROPOUT * 10:
                self._mark_missing(self.max_ext + 1, last_ext, self.last_arrival, max(end, self.last_arrival))
                self.max_ext = last_ext
        if sender_first_seq is not None and not self.resyncs:
            base_seq = self.base_ext % SEQ_MOD
            back = (base_seq - sender_first_seq) % SEQ_MOD
            if 0 < back <= MAX_DROPOUT:
                first_idx = max(0, int(self.first_arrival - self.t0))
                for ext in range(self.base_ext - back, self.base_ext):
                    self._missing[ext] = first_idx
                self.base_ext -= back
        if arrived is not None:
            for ext in [e for e in self._missing if arrived(e % SEQ_MOD)]:
                del self._missing[ext]
                self.early += 1
                self.packets += 1

    def reached(self, seq: int) -> bool:
        """Has a packet at or after sequence number `seq` arrived?"""
        return self.max_ext is not None and self._ext(seq) <= self.max_ext

    @property
    def expected(self) -> int:
        if self.max_ext is None or self.base_ext is None:
            return 0
        return self.max_ext - self.base_ext + 1

    @property
    def lost(self) -> int:
        return max(0, self.expected - self.packets)

    def intervals(self, until: float | None = None) -> dict[int, Interval]:
        """Per-second intervals with the missing packets folded in (a copy)."""
        out: dict[int, Interval] = {}
        last = max(self._intervals, default=-1)
        for idx in self._missing.values():
            last = max(last, idx)
        if until is not None:
            last = max(last, int(until - self.t0) - 1)
        for idx in range(0, last + 1):
            src = self._intervals.get(idx)
            out[idx] = Interval(**vars(src)) if src else Interval()
        for idx in self._missing.values():
            out.setdefault(idx, Interval()).lost += 1
        return out

    def interval(self, idx: int) -> Interval:
        """Second `idx` alone, with the missing packets known now folded in (a copy)."""
        src = self._intervals.get(idx)
        iv = Interval(**vars(src)) if src else Interval()
        iv.lost += sum(1 for i in self._missing.values() if i == idx)
        return iv

    def frame_stats(self) -> dict[str, float | int | None]:
        """Frame rate and freezes of decoded video, WebRTC's freeze definition:
        a frame interval longer than max(3 x average, average + 150 ms)."""
        times = self._frame_times
        if len(times) < 2:
            return {"frames": len(times), "fps": None, "freezes": 0, "freeze_s": 0.0}
        gaps = [b - a for a, b in itertools.pairwise(times)]
        freezes, freeze_s = 0, 0.0
        window: list[float] = []
        for g in gaps:
            avg = sum(window) / len(window) if window else g
            if window and g > max(3 * avg, avg + 0.150):
                freezes += 1
                freeze_s += g
            window.append(g)
            if len(window) > 30:
                window.pop(0)
        span = times[-1] - times[0]
        return {"frames": len(times), "fps": (len(times) - 1) / span if span > 0 else None,
                "freezes": freezes, "freeze_s": round(freeze_s, 3)}

    def stall_seconds(self, intervals: Mapping[int, Interval]) -> int:
        """Whole seconds with no packet while the stream was flowing."""
        idxs = sorted(intervals)
        if not idxs:
            return 0
        first = next((i for i in idxs if intervals[i].packets), None)
        if first is None:
            return 0
        return sum(1 for i in idxs if i >= first and intervals[i].packets == 0)
