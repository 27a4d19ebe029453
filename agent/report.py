"""The test report, `vks.test-report/1`: both directions, per-second intervals, verdict.

`receive_side` turns one side's stream meters into what that side received (the
callee sends its own to the caller at the finish); `build_report` puts the two
sides, the RTT probes and the quality verdict together. The keys are a contract
(issue 3): other tools read them.
"""
from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from agent.measure import Interval, StreamMeter, percentile, summarize
from contract import quality
from contract.configfile import ConfigError
from contract.reports import TEST_REPORT_SCHEMA, ReasonItem, SessionReport
from contract.vocab import Direction, Verdict

SCHEMA = TEST_REPORT_SCHEMA
log = logging.getLogger(__name__)


def _ratio(lost: int, expected: int) -> float:
    return round(lost / expected, 6) if expected > 0 else 0.0


def _mean(values: Iterable[float | None]) -> float | None:
    data = [v for v in values if v is not None]
    return sum(data) / len(data) if data else None


def _r(v: float | None, digits: int = 3) -> float | None:
    return None if v is None else round(v, digits)


def _active_s(meter: StreamMeter) -> float:
    return max(1e-9, (meter.last_arrival or 0) - (meter.first_arrival or 0))


def _stream_summary(meter: StreamMeter, ivs: Mapping[int, Interval] | None, side_s: float,
                    side_bytes: int) -> dict:
    """One stream's figures. A retransmission stream (`rtx`) comes in bursts, so its bitrate is
    over the side's span (the longest stream's), and it has no jitter, stalls or frames."""
    jit = [iv.jitter_ms for iv in ivs.values()] if ivs is not None and not meter.rtx else []
    stream = {
        "kind": meter.kind, "ssrc": meter.ssrc, "rtx": meter.rtx,
        "packets": meter.packets, "lost": meter.lost, "expected": meter.expected,
        "loss_ratio": _ratio(meter.lost, meter.expected),
        "jitter_ms": None if meter.rtx else _r(_mean(jit)) if jit else _r(meter.jitter_s * 1000.0),
        "jitter_ms_p95": _r(percentile(jit, 95)),
        "jitter_ms_max": _r(max((j for j in jit if j is not None), default=None)),
        "jitter_ms_last": None if meter.rtx else _r(meter.jitter_s * 1000.0),
        "bitrate_kbps": _r(meter.bytes * 8 / 1000.0 / (side_s if meter.rtx else _active_s(meter)), 1),
        "bitrate_share": _ratio(meter.bytes, side_bytes),
        "duplicates": meter.duplicates, "reordered": meter.reordered, "early": meter.early,
        "stall_s": meter.stall_seconds(ivs) if ivs is not None and not meter.rtx else None,
    }
    if meter.rtx:
        stream["repairs"] = meter.repairs
    elif meter.kind == "video":
        stream.update(meter.frame_stats())
    return stream


def _merge_interval(idx: int, parts: list[tuple[StreamMeter, Interval | None]]) -> dict:
    """One second of one side: all its streams together."""
    packets = lost = nbytes = frames = 0
    jitters = []
    flowing = False
    # Arrival gaps of the audio (speech; steady packets), or of any media stream without audio.
    audio = any(m.kind == "audio" and not m.rtx for m, _ in parts)
    gap_s = 0.0
    for meter, iv in parts:
        if iv is None:
            continue
        if not meter.rtx and (meter.kind == "audio" or not audio):
            gap_s = max(gap_s, iv.max_gap_s)
        packets += iv.packets
        lost += iv.lost
        nbytes += iv.bytes
        frames += iv.frames
        jitters.append(iv.jitter_ms)
        flowing = flowing or meter.first_arrival is not None
    return {
        "t": float(idx), "packets": packets, "lost": lost,
        "loss_ratio": _ratio(lost, packets + lost),
        "jitter_ms": _r(max((j for j in jitters if j is not None), default=None)),
        "bitrate_kbps": _r(nbytes * 8 / 1000.0, 1),
        "fps": frames if any(m.kind == "video" for m, _ in parts) else None,
        # No packet at all in a second while media was flowing: the link stalled.
        "stalled": flowing and packets == 0,
        # The longest gap in packet arrival that ended in this second (a dropout's length).
        "max_gap_ms": round(gap_s * 1000.0, 1),
    }


def side_interval(meters: Mapping[int, StreamMeter], idx: int) -> dict:
    """Second `idx` of one side as known now: what the live stream reports each second."""
    return _merge_interval(idx, [(m, m.interval(idx)) for m in meters.values()])


def receive_side(meters: Mapping[int, StreamMeter], until: float | None = None,
                 with_intervals: bool = True) -> dict:
    """What one side received: per stream, per second (all streams together), and the totals.

    Without intervals (the callee's cumulative figures sent every second) it costs
    nothing per second of session length."""
    # Media streams first, each kind's retransmissions after it.
    ordered = sorted(meters.values(), key=lambda m: (m.rtx, m.kind))
    per_stream = [(m, m.intervals(until) if with_intervals else None) for m in ordered]
    side_s = max((_active_s(m) for m in ordered), default=1e-9)
    side_bytes = sum(m.bytes for m in ordered)
    streams = [_stream_summary(m, ivs, side_s, side_bytes) for m, ivs in per_stream]
    n = max((len(ivs) for _, ivs in per_stream if ivs is not None), default=0)
    intervals = [_merge_interval(i, [(m, ivs.get(i) if ivs else None) for m, ivs in per_stream])
                 for i in range(n)]

    # Every RTP packet the link carried or lost that way, retransmissions included.
    packets = sum(s["packets"] for s in streams)
    lost = sum(s["lost"] for s in streams)
    expected = sum(s["expected"] for s in streams)
    rtx_bytes = sum(m.bytes for m in ordered if m.rtx)
    side = {
        "packets": packets, "lost": lost, "loss_ratio": _ratio(lost, expected),
        "rtx_packets": sum(s["packets"] for s in streams if s["rtx"]),
        "rtx_share": _ratio(rtx_bytes, side_bytes),
        # The worst stream's jitter: the de-jitter buffer must cover it.
        "jitter_ms": max((s["jitter_ms"] for s in streams if s["jitter_ms"] is not None), default=None),
        "bitrate_kbps": _r(sum(s["bitrate_kbps"] or 0 for s in streams), 1),
        "streams": streams,
    }
    if with_intervals:
        side.update({
            "stall_s": sum(1 for iv in intervals if iv["stalled"]),
            "longest_stall_s": _longest_run(iv["stalled"] for iv in intervals),
            "summary": {
                "loss_ratio": _rounded(summarize(iv["loss_ratio"] for iv in intervals if iv["packets"] or iv["lost"])),
                "jitter_ms": _rounded(summarize(iv["jitter_ms"] for iv in intervals)),
                "bitrate_kbps": _rounded(summarize(iv["bitrate_kbps"] for iv in intervals)),
            },
            "intervals": intervals,
        })
    video = next((s for s in streams if s["kind"] == "video" and not s["rtx"]), None)
    if video is not None:
        side.update({"fps": video.get("fps"), "freezes": video.get("freezes"),
                     "freeze_s": video.get("freeze_s")})
    return side


def _longest_run(flags: Iterable[bool]) -> int:
    best = run = 0
    for f in flags:
        run = run + 1 if f else 0
        best = max(best, run)
    return best


def _rounded(d: dict[str, float | None]) -> dict[str, float | None]:
    return {k: _r(v, 4) for k, v in d.items()}


DIRECTION_KEYS = ("packets", "lost", "loss_ratio", "jitter_ms", "bitrate_kbps")


def _direction(side: Mapping[str, Any] | None) -> dict:
    if not side:
        return {k: None for k in DIRECTION_KEYS}
    return {k: v for k, v in side.items() if k not in ("streams", "intervals")}


def build_report(*, started_at: str, duration_s: float, connected: bool, connect_ms: float | None,
                 error: str | None, rtts: list[tuple[float, float]],
                 inbound: Mapping[str, Any] | None, outbound: Mapping[str, Any] | None,
                 profile: str, thresholds_path: Path | str | None, thresholds_profile: str,
                 extra: Mapping[str, Any] | None = None) -> dict:
    """The report as JSON (validated as a contract.reports.SessionReport and judged).
    `rtts` are (seconds since media start, rtt seconds) probe results."""
    rtt_ms = [r * 1000.0 for _, r in rtts]
    streams = []
    for direction, side in ((Direction.OUTBOUND, outbound), (Direction.INBOUND, inbound)):
        for s in (side or {}).get("streams", []):
            streams.append({"kind": s["kind"], "direction": direction, **{k: v for k, v in s.items() if k != "kind"}})

    in_ivs = (inbound or {}).get("intervals", [])
    out_ivs = (outbound or {}).get("intervals", [])
    intervals = []
    # Whole seconds of the session only: the finish handshake's tail is no interval.
    n = min(max(len(in_ivs), len(out_ivs)), max(1, int(duration_s)))
    for i in range(n):
        rtt_i = [r * 1000.0 for t, r in rtts if int(t) == i]
        intervals.append({"t": float(i), "rtt_ms": _r(sum(rtt_i) / len(rtt_i)) if rtt_i else None,
                          "inbound": in_ivs[i] if i < len(in_ivs) else None,
                          "outbound": out_ivs[i] if i < len(out_ivs) else None})

    report = {
        "schema": SCHEMA,
        "started_at": started_at,
        "duration_s": round(duration_s, 3),
        "connected": connected,
        "connect_ms": _r(connect_ms, 1),
        "error": error,
        "profile": profile,
        "rtt_ms": _rounded(summarize(rtt_ms)) | {"samples": len(rtt_ms)},
        "outbound": _direction(outbound),
        "inbound": _direction(inbound),
        "streams": streams,
        "mos": None, "verdict": Verdict.UNUSABLE, "reasons": [], "reason_codes": [],
        "intervals": intervals,
    }
    first = stalled_first(intervals)
    if first is not None:
        report["stalled_first"] = first
    if extra:
        report.update(extra)
    return judged(SessionReport.model_validate(report), thresholds_path, thresholds_profile).dump()


def stalled_first(intervals: Iterable[Mapping[str, Any]]) -> str | None:
    """For a stall, the direction that stopped first (inbound: what this side received): the one
    whose first second without packets came earlier; None without a stall or when both stopped in
    the same second (then neither can be said to be first)."""
    first: dict[str, int] = {}
    for i, iv in enumerate(intervals):
        for d in (Direction.INBOUND, Direction.OUTBOUND):
            if d not in first and (iv.get(d) or {}).get("stalled"):
                first[d] = i
    if not first or len(set(first.values())) < len(first):
        return None
    return str(min(first, key=lambda d: first[d]))


def judged(report: SessionReport, thresholds_path: Path | str | None, profile: str) -> SessionReport:
    """The report with the verdict, reasons and MOS of the one quality model (shared with the
    controller) on the profile `profile`."""
    thresholds = quality.load_thresholds(thresholds_path)
    if profile not in thresholds:
        known = ", ".join(sorted(thresholds))
        raise ConfigError(thresholds_path, "profiles",
                          f"no threshold profile named {profile!r} (known: {known})")
    judgement = quality.judge_report(report, thresholds[profile])
    return report.model_copy(update={"mos": None if judgement.mos is None else round(judgement.mos, 2),
                                     "verdict": judgement.verdict, "reasons": list(judgement.reasons),
                                     "reason_codes": [ReasonItem.model_validate(r) for r in judgement.reason_codes]})


def render_text(report: Mapping[str, Any]) -> str:
    """The readable report a technician sees after `vks-agent test`."""
    def pct(v):
        return "n/a" if v is None else f"{100 * v:.2f} %"

    def ms(v):
        return "n/a" if v is None else f"{v:.1f} ms"

    lines = [f"VKS test session  {report['started_at']}  profile {report.get('profile')}"]
    if not report["connected"]:
        lines.append(f"NOT CONNECTED: {report['error']}")
        lines.append("Verdict: UNUSABLE")
        return "\n".join(lines)
    rtt = report["rtt_ms"]
    lines += [
        f"Connected in {ms(report['connect_ms'])}, measured for {report['duration_s']:.1f} s",
        f"Round trip:  mean {ms(rtt['mean'])}  p95 {ms(rtt['p95'])}  max {ms(rtt['max'])}",
        f"Path: {report.get('path_type') or 'n/a'} (ICE candidate type; relay: through a TURN server)"
        + (f"; the {report['stalled_first']} direction stalled first" if report.get("stalled_first") else ""),
        "",
        f"{'':22}{'to peer (outbound)':>22}{'from peer (inbound)':>22}",
    ]
    out, inn = report["outbound"], report["inbound"]
    rows = [("packets received", lambda d: "n/a" if d.get("packets") is None else str(d["packets"])),
            ("packets lost", lambda d: "n/a" if d.get("lost") is None else str(d["lost"])),
            ("loss", lambda d: pct(d.get("loss_ratio"))),
            ("jitter (RFC 3550)", lambda d: ms(d.get("jitter_ms"))),
            ("bitrate", lambda d: "n/a" if d.get("bitrate_kbps") is None else f"{d['bitrate_kbps']:.0f} kbit/s"),
            ("video frame rate", lambda d: "n/a" if d.get("fps") is None else f"{d['fps']:.1f} fps"),
            ("freezes", lambda d: "n/a" if d.get("freezes") is None
             else f"{d['freezes']} ({d.get('freeze_s', 0):.1f} s)"),
            ("seconds stalled", lambda d: "n/a" if d.get("stall_s") is None else str(d["stall_s"]))]
    for label, fmt in rows:
        lines.append(f"  {label:20}{fmt(out):>22}{fmt(inn):>22}")
    lines += _capacity_lines(report.get("capacity"))
    lines.append("")
    mos = report.get("mos")
    lines.append(f"MOS (E-model): {'n/a' if mos is None else f'{mos:.2f}'}")
    lines.append(f"Verdict: {report['verdict'].upper()}")
    for reason in report.get("reasons") or []:
        lines.append(f"  - {reason}")
    if report.get("error"):
        lines.append(f"Note: {report['error']}")
    return "\n".join(lines)


def _capacity_lines(capacity: Mapping[str, Any] | None) -> list[str]:
    """The `capacity` rows of the readable report (none without it)."""
    if not capacity:
        return []

    def side(d: Mapping[str, Any] | None) -> str:
        if not d:
            return "n/a"
        return f"{d['kbps']:.0f} kbit/s ({d.get('limited_by') or 'time'})"

    lines = [f"  {'capacity (IP)':20}{side(capacity.get('outbound')):>22}{side(capacity.get('inbound')):>22}"]
    if capacity.get("error"):
        lines.append(f"  capacity not fully measured: {capacity['error']}")
    return lines
