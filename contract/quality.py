"""The quality model: threshold profiles, the E-model MOS, verdicts with reasons.

One implementation for agent and controller (pure logic; the only I/O is
reading configs/thresholds.yaml). Imports nothing heavy: the controller uses it.

- `load_thresholds(path)` -> {profile name: Thresholds}.
- `emodel_r(...)`, `r_to_mos(r)`, `mos(...)`: ITU-T G.107 (06/2015), from contract.emodel.
- `judge(figures, thresholds)`: one direction's figures -> Judgement.
- `judge_report(report, thresholds)`: a `vks.test-report/1` (contract.reports.SessionReport)
  -> Judgement.
- `judge_interval(interval, thresholds)`: one per-second interval (reports.Interval) -> Judgement
  (for the live detector; a second without packets is a stall: unusable).

What is compared with the limits:
- one-way delay: measured one-way when known, else RTT/2. A report uses the
  session's RTT p95 (then mean); delay is one figure for both directions unless
  a direction carries its own `one_way_delay_ms`.
- jitter: RFC 3550 jitter of each direction as received. A report uses the
  direction's p95 when its `jitter_ms` is a summary {mean, p95, max}, else the
  p95 of the per-second interval values, else the scalar.
- loss: lost / (received + lost) of each direction over the session (or second).
- MOS: E-model per direction, fed Ta = one-way delay + jitter_buffer_factor *
  jitter (a de-jitter buffer turns jitter into delay; factor 2 is the common
  approximation) and the audio stream's loss and jitter when the report lists
  streams. Delay and jitter are also judged on their own network limits.
- capacity: each direction's `capacity.kbps` (agent/capacity.py) against `capacity_kbps_min`, when
  the report carries `capacity` (a report without it is not judged on it).
- frame rate / freeze: when the report carries them (`frame_rate` or `fps`,
  `freeze_s`); per-second stalls (no packets) in the intervals count as freezes.
An unknown delay, jitter or loss (None) fails nothing; it is noted in the
reasons. Frame rate and freeze are optional figures: judged when present.
"""
from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from contract import configfile
from contract.emodel import (
    CODECS,
    G107_DEFAULTS,
    Codec,
    G107Params,
    emodel_r,
    emodel_r_g107,
    mos,
    r_rating,
    r_to_mos,
)
from contract.reasons import Reason, ReasonCode, text
from contract.reports import (
    DirectionFigures,
    Interval,
    SessionReport,
    SideSecond,
    Stream,
    Summary,
    figure,
)
from contract.vocab import Direction, Verdict

__all__ = [
    "CODECS", "DEFAULT_PATH", "DEFAULT_PROFILE", "EXIT_CODES", "G107_DEFAULTS", "Codec", "Figures",
    "G107Params", "Judgement", "Limits", "Thresholds", "check_order", "emodel_r", "emodel_r_g107",
    "judge", "judge_interval", "judge_report", "load_thresholds", "mos", "p95", "r_rating", "r_to_mos",
    "select", "stalled", "thresholds_from_dict",
]

DEFAULT_PROFILE = "hearing"
# The threshold profiles travel with the package (package data), so an installed wheel judges
# reports from any directory; configs/thresholds.yaml links to this file as the operator's example.
DEFAULT_PATH = Path(str(resources.files(__package__) / "thresholds.yaml"))
_RANKS = list(Verdict)          # best first


# ---------------------------------------------------------------------------
# Threshold profiles (configs/thresholds.yaml)
# ---------------------------------------------------------------------------

class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Limits(_Strict):
    """The limits of one level. None: not checked."""
    one_way_delay_ms: float | None = Field(default=None, ge=0)
    jitter_ms: float | None = Field(default=None, ge=0)
    loss_ratio: float | None = Field(default=None, ge=0, le=1)
    mos_min: float | None = Field(default=None, ge=1, le=4.5)
    frame_rate_min: float | None = Field(default=None, ge=0)
    freeze_s: float | None = Field(default=None, ge=0)
    capacity_kbps_min: float | None = Field(default=None, ge=0)


# Which limits are maxima (a higher figure is worse) and which are minima.
_MAXIMA = ("one_way_delay_ms", "jitter_ms", "loss_ratio", "freeze_s")
_MINIMA = ("mos_min", "frame_rate_min", "capacity_kbps_min")


class Thresholds(_Strict):
    """One profile: the degraded and unusable limits and the E-model inputs."""
    name: str = DEFAULT_PROFILE
    description: str = ""
    codec: str = "opus"
    jitter_buffer_factor: float = Field(default=2.0, ge=0, le=10)
    degraded: Limits = Limits()
    unusable: Limits = Limits()

    @field_validator("codec")
    @classmethod
    def _known_codec(cls, v: str) -> str:
        if v not in CODECS:
            raise ValueError(f"unknown codec {v!r} (known: {', '.join(sorted(CODECS))})")
        return v


class _ThresholdsFile(_Strict):
    profiles: dict[str, Thresholds]


def check_order(th: Thresholds) -> tuple[str, str] | None:
    """(key, problem) when a degraded limit is looser than its unusable limit, else None."""
    for key in _MAXIMA + _MINIMA:
        d, u = getattr(th.degraded, key), getattr(th.unusable, key)
        if d is None or u is None:
            continue
        if key in _MAXIMA and d > u:
            return key, f"degraded limit {d:g} is looser than the unusable limit {u:g} (must be <= it)"
        if key in _MINIMA and d < u:
            return key, f"degraded limit {d:g} is looser than the unusable limit {u:g} (must be >= it)"
    return None


def thresholds_from_dict(data: Mapping[str, Any], path: str | os.PathLike | None = None) -> dict[str, Thresholds]:
    """Validate a parsed thresholds file; errors name the file and the key."""
    parsed = configfile.validate(_ThresholdsFile, data, path)
    if not parsed.profiles:
        raise configfile.ConfigError(path, "profiles", "at least one profile is required")
    out: dict[str, Thresholds] = {}
    for name, th in parsed.profiles.items():
        bad = check_order(th)
        if bad:
            raise configfile.ConfigError(path, f"profiles.{name}.degraded.{bad[0]}", bad[1])
        out[name] = th.model_copy(update={"name": name})
    return out


def load_thresholds(path: str | os.PathLike | None = None) -> dict[str, Thresholds]:
    """Load the packaged thresholds.yaml (or `path`): {profile name: Thresholds}."""
    path = DEFAULT_PATH if path is None else path
    return thresholds_from_dict(configfile.read_yaml(path), path)


def select(profiles: Mapping[str, Thresholds], name: str | None = None,
           path: str | os.PathLike | None = None) -> Thresholds:
    """The profile `name` (default "hearing"); a ConfigError lists the known ones."""
    name = name or DEFAULT_PROFILE
    try:
        return profiles[name]
    except KeyError:
        raise configfile.ConfigError(path, "profiles", f"no profile named {name!r} "
                                     f"(known: {', '.join(sorted(profiles))})") from None


# ---------------------------------------------------------------------------
# Verdicts
# ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Figures:
    """One direction's figures. None = unknown (noted, never a failure)."""
    rtt_ms: float | None
    jitter_ms: float | None
    loss_ratio: float | None
    one_way_delay_ms: float | None = None
    frame_rate: float | None = None
    freeze_s: float | None = None
    burst_r: float = 1.0

    def delay(self) -> tuple[float | None, str]:
        """(one-way delay, how it was obtained)."""
        if self.one_way_delay_ms is not None:
            return self.one_way_delay_ms, "one-way"
        if self.rtt_ms is not None:
            return self.rtt_ms / 2, "RTT/2"
        return None, "unknown"


@dataclass
class Judgement:
    """A verdict with its reasons (worst first, notes last) and the lowest MOS of the directions.

    `reason_codes` are the reasons as codes with parameters (contract.reasons); `reasons` is each
    of them rendered in English from the same catalog, in the same order."""
    verdict: Verdict
    reasons: list[str] = field(default_factory=list)
    mos: float | None = None
    reason_codes: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def of(cls, verdict: Verdict, reasons: list[Reason], mos: float | None = None) -> Judgement:
        """The judgement with `reasons` given as codes: their English text and their `{code, params}`."""
        return cls(verdict, [text(r) for r in reasons], mos, [r.to_dict() for r in reasons])

    def to_dict(self) -> dict[str, Any]:
        """The judgement as a JSON-able dict."""
        return asdict(self)


@dataclass
class _Findings:
    """Reasons collected with their level; sorted worst first, notes last."""
    items: list[tuple[int, Reason]] = field(default_factory=list)
    mos: list[float] = field(default_factory=list)

    def add(self, verdict: Verdict, reason: Reason) -> None:
        self.items.append((_RANKS.index(verdict), reason))

    def note(self, reason: Reason) -> None:
        self.items.append((-1, reason))

    def judgement(self) -> Judgement:
        levels = [lvl for lvl, _ in self.items if lvl >= 0]
        verdict = _RANKS[max(levels)] if levels else Verdict.GOOD
        ordered = sorted(self.items, key=lambda item: -item[0])  # stable: check order kept
        return Judgement.of(verdict, [r for _, r in ordered], round(min(self.mos), 2) if self.mos else None)


_LEVELS = (Verdict.UNUSABLE, Verdict.DEGRADED)    # the limits of a profile, strictest first


def _check(f: _Findings, th: Thresholds, key: str, value: float, code: ReasonCode, label: str | None,
           **extra: Any) -> None:
    """A figure beyond the profile's limit `key` (a maximum, or a minimum for `_MINIMA`): the reason
    `code` with the figure, the limit and the level it breaks."""
    for level in _LEVELS:
        limit = getattr(getattr(th, level), key)
        if limit is not None and (value < limit if key in _MINIMA else value > limit):
            f.add(level, Reason(code, {"direction": label, **extra, "value": value, "limit": limit,
                                       "level": str(level)}))
            return


def _has_limit(th: Thresholds, key: str) -> bool:
    return getattr(th.degraded, key) is not None or getattr(th.unusable, key) is not None


def _judge_delay(f: _Findings, fig: Figures, th: Thresholds, label: str | None) -> None:
    delay, how = fig.delay()
    if delay is None:
        if _has_limit(th, "one_way_delay_ms"):
            f.note(Reason(ReasonCode.DELAY_UNKNOWN, {"direction": label}))
        return
    code = ReasonCode.DELAY_RTT_HIGH if how == "RTT/2" else ReasonCode.DELAY_HIGH
    _check(f, th, "one_way_delay_ms", delay, code, label)


def _judge_direction(f: _Findings, fig: Figures, th: Thresholds, label: str | None, *,
                     with_delay: bool = True, mos_fig: Figures | None = None,
                     freeze_what: tuple[ReasonCode, dict[str, Any]] = (ReasonCode.FREEZE_LONG, {})) -> None:
    if with_delay:
        _judge_delay(f, fig, th, label)
    if fig.loss_ratio is not None:
        _check(f, th, "loss_ratio", fig.loss_ratio, ReasonCode.LOSS_HIGH, label)
    elif _has_limit(th, "loss_ratio"):
        f.note(Reason(ReasonCode.LOSS_UNKNOWN, {"direction": label}))
    if fig.jitter_ms is not None:
        _check(f, th, "jitter_ms", fig.jitter_ms, ReasonCode.JITTER_HIGH, label)
    elif _has_limit(th, "jitter_ms"):
        f.note(Reason(ReasonCode.JITTER_UNKNOWN, {"direction": label}))
    if fig.frame_rate is not None:
        _check(f, th, "frame_rate_min", fig.frame_rate, ReasonCode.FRAME_RATE_LOW, label)
    if fig.freeze_s is not None:
        _check(f, th, "freeze_s", fig.freeze_s, freeze_what[0], label, **freeze_what[1])
    # MOS of this direction (speech: the audio stream's figures when given).
    m = mos_fig or fig
    if m.loss_ratio is None:
        return
    delay, _ = m.delay()
    value = mos(delay or 0.0, m.jitter_ms or 0.0, min(max(m.loss_ratio, 0.0), 1.0),
                max(m.burst_r, 1e-6), th.codec, jitter_buffer_factor=th.jitter_buffer_factor)
    f.mos.append(value)
    _check(f, th, "mos_min", value, ReasonCode.MOS_LOW, label)


def judge(figures: Figures, thresholds: Thresholds, *, direction: str | None = None) -> Judgement:
    """Judge one direction's figures against a profile.

    Each figure beyond a limit gives a reason naming the direction (when given),
    the figure, the measured value and the limit, e.g.
    "inbound loss 4.1% > 3.0% (unusable)".
    """
    f = _Findings()
    _judge_direction(f, figures, thresholds, direction)
    return f.judgement()


# --- reports and intervals ----------------------------------------------------

def p95(values: Iterable[float]) -> float | None:
    """Nearest-rank 95th percentile; None for no values."""
    xs = sorted(values)
    if not xs:
        return None
    return xs[max(0, math.ceil(0.95 * len(xs)) - 1)]


def _scalar(value: float | Summary | None) -> float | None:
    """A figure given as one number; None for a summary or nothing."""
    return None if value is None or isinstance(value, Summary) else float(value)


def _loss_ratio(d: SideSecond | DirectionFigures | Stream) -> float | None:
    if d.loss_ratio is not None:
        return float(d.loss_ratio)
    if d.packets is None or d.lost is None:
        return None
    expected = d.packets + d.lost
    return d.lost / expected if expected > 0 else None


def stalled(d: SideSecond) -> bool:
    """No packet in this second: as the agent marked it, else from the packet count."""
    if d.stalled is not None:
        return d.stalled
    return d.packets == 0


def _longest_stall_s(intervals: list[Interval], direction: Direction) -> float | None:
    """Longest run of stalled seconds after media first flowed (a trailing run counts)."""
    run = best = 0
    flowing = seen = False
    for iv in intervals:
        d = iv.side(direction)
        if d is None:
            continue
        seen = True
        if stalled(d):
            if flowing:
                run += 1
                best = max(best, run)
        else:
            flowing = True
            run = 0
    return float(best) if seen else None


def _report_jitter(d: DirectionFigures, intervals: list[Interval], direction: Direction) -> float | None:
    """p95 jitter: the direction's summary, else the per-second values, else its scalar."""
    for v in (d.jitter_ms, d.summary.jitter_ms if d.summary is not None else None):
        if isinstance(v, Summary):
            x = v.pick("p95", "mean", "max")
            if x is not None:
                return x
    per_second = [float(s.jitter_ms) for iv in intervals
                  if (s := iv.side(direction)) is not None and s.jitter_ms is not None]
    return p95(per_second) if per_second else _scalar(d.jitter_ms)


def _report_freeze(d: DirectionFigures, intervals: list[Interval],
                   direction: Direction) -> tuple[float | None, tuple[ReasonCode, dict[str, Any]]]:
    """(freeze figure, how to name it): the longest freeze or stall.

    `freeze_max_s` is the longest video freeze; stalls are runs of seconds without
    packets (`longest_stall_s`, or counted in the intervals). When only the total
    `freeze_s` is known it is exact for a single freeze and, for several, stands
    in for the longest (conservatively) and is named as a total.
    """
    stall = max((x for x in (_scalar(d.longest_stall_s), _longest_stall_s(intervals, direction))
                 if x is not None), default=None)
    longest = figure(d.freeze_max_s, "max_s", "max")
    if longest is None:
        total = figure(d.freeze_s, "total_s", "max_s", "max")
        count = d.freezes
        if total is not None and count is not None and count > 1:
            if stall is None or total > stall:
                return total, (ReasonCode.FROZEN_TOTAL, {"count": count})
        longest = total
    if stall is not None and (longest is None or stall >= longest):
        return (stall or None), (ReasonCode.STALL_LONG, {})
    return longest, (ReasonCode.FREEZE_LONG, {})


def _judge_shared_delay(f: _Findings, rtt: float | None, th: Thresholds, directions: list[Direction]) -> None:
    """The RTT-derived delay, judged once for the directions that share it."""
    if not directions:
        return
    label = "both" if len(directions) == len(Direction) else directions[0]
    _judge_delay(f, Figures(rtt_ms=rtt, jitter_ms=None, loss_ratio=None), th, label)


def judge_report(report: SessionReport, thresholds: Thresholds) -> Judgement:
    """Judge a `vks.test-report/1`: the worst of both directions, with reasons.

    A session that never connected is unusable ("not connected: <error>").
    A direction without figures (the peer sent none) is degraded: not proven.
    A direction that received no packets at all is unusable.
    """
    if not report.connected:
        return Judgement.of(Verdict.UNUSABLE, [Reason(ReasonCode.NOT_CONNECTED,
                                                      {"error": report.error or "unknown error"})])
    f = _Findings()
    rtt = figure(report.rtt_ms, "p95", "mean", "p50", "max")
    rtt_delay_for: list[Direction] = []   # measured directions without their own one-way delay
    for direction in Direction:
        d = report.direction(direction)
        loss_ratio = _loss_ratio(d) if d is not None else None
        if d is None or (d.packets is None and loss_ratio is None):
            f.add(Verdict.DEGRADED, Reason(ReasonCode.DIRECTION_UNMEASURED, {"direction": direction}))
            continue
        if d.packets == 0:
            f.add(Verdict.UNUSABLE, Reason(ReasonCode.NO_PACKETS, {"direction": direction}))
            continue
        jitter = _report_jitter(d, report.intervals, direction)
        freeze, freeze_what = _report_freeze(d, report.intervals, direction)
        one_way = figure(d.one_way_delay_ms, "p95", "mean")
        if one_way is None:
            rtt_delay_for.append(direction)
        fig = Figures(rtt_ms=rtt, jitter_ms=jitter, loss_ratio=loss_ratio, one_way_delay_ms=one_way,
                      frame_rate=figure(d.frame_rate if d.frame_rate is not None else d.fps, "mean", "p50"),
                      freeze_s=freeze, burst_r=float(d.burst_r or 1.0))
        audio = report.audio(direction)
        audio_loss = _loss_ratio(audio) if audio is not None else None
        mos_fig = None
        if audio is not None and audio_loss is not None:
            mos_fig = replace(fig, loss_ratio=audio_loss,
                              jitter_ms=figure(audio.jitter_ms, "p95", "mean") or fig.jitter_ms)
        _judge_direction(f, fig, thresholds, direction, with_delay=one_way is not None,
                         mos_fig=mos_fig, freeze_what=freeze_what)
    _judge_shared_delay(f, rtt, thresholds, rtt_delay_for)
    _judge_capacity(f, report, thresholds)
    return f.judgement()


def _judge_capacity(f: _Findings, report: SessionReport, th: Thresholds) -> None:
    """Each measured direction's capacity against `capacity_kbps_min` (a report without
    `capacity`, or a direction not measured, is not judged on it)."""
    if report.capacity is None:
        return
    for direction in Direction:
        d = report.capacity.direction(direction)
        if d is not None and d.kbps is not None:
            _check(f, th, "capacity_kbps_min", float(d.kbps), ReasonCode.CAPACITY_LOW, direction)


def judge_interval(interval: Interval, thresholds: Thresholds) -> Judgement:
    """Judge one per-second interval (the live detector's input).

    A direction present in the interval is expected to carry packets: a second
    with none (or marked `stalled`) is a stall, unusable. A direction absent
    (None) is not expected and is noted. `fps` is the frames counted in the
    interval; an interval shorter than a second (the last one of a session)
    should say so in `duration_s`, or its frame count reads as a low rate.
    """
    f = _Findings()
    rtt = interval.rtt_ms
    span = interval.duration_s if interval.duration_s is not None and 0 < interval.duration_s < 1 else None
    rtt_delay_for: list[Direction] = []
    for direction in Direction:
        d = interval.side(direction)
        if d is None:
            f.note(Reason(ReasonCode.SECOND_UNMEASURED, {"direction": direction}))
            continue
        if stalled(d):
            f.add(Verdict.UNUSABLE, Reason(ReasonCode.SECOND_STALLED, {"direction": direction}))
            continue
        frame_rate = d.frame_rate if d.frame_rate is not None else d.fps
        if frame_rate is not None and span is not None:
            frame_rate = frame_rate / span      # frames counted in a shorter (last) interval
        fig = Figures(rtt_ms=rtt, jitter_ms=d.jitter_ms, loss_ratio=_loss_ratio(d),
                      one_way_delay_ms=d.one_way_delay_ms, frame_rate=frame_rate, freeze_s=d.freeze_s)
        if fig.one_way_delay_ms is None:
            rtt_delay_for.append(direction)
        _judge_direction(f, fig, thresholds, direction, with_delay=fig.one_way_delay_ms is not None)
    _judge_shared_delay(f, rtt, thresholds, rtt_delay_for)
    return f.judgement()


EXIT_CODES: dict[Verdict, int] = {Verdict.GOOD: 0, Verdict.DEGRADED: 1, Verdict.UNUSABLE: 3}
"""The `vks-agent test` exit status of each verdict (issue 3); 4 = could not connect."""
