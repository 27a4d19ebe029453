"""The quality model: threshold profiles, the E-model MOS, verdicts with reasons.

One implementation for agent and controller (pure logic; the only I/O is
reading configs/thresholds.yaml). Imports nothing heavy: the controller uses it.

- `load_thresholds(path)` -> {profile name: Thresholds}.
- `emodel_r(...)`, `r_to_mos(r)`, `mos(...)`: ITU-T G.107 (06/2015).
- `judge(figures, thresholds)`: one direction's figures -> Judgement.
- `judge_report(report, thresholds)`: a `vks.test-report/1` dict -> Judgement.
- `judge_interval(interval, thresholds)`: one per-second interval -> Judgement
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
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from contract import configfile

Verdict = Literal["good", "degraded", "unusable"]
VERDICTS: tuple[Verdict, ...] = ("good", "degraded", "unusable")
DIRECTIONS = ("outbound", "inbound")
DEFAULT_PROFILE = "hearing"
# The threshold profiles travel with the package (package data), so an installed wheel judges
# reports from any directory; configs/thresholds.yaml links to this file as the operator's example.
DEFAULT_PATH = Path(str(resources.files(__package__) / "thresholds.yaml"))


def worst(*verdicts: Verdict) -> Verdict:
    """The worst of the verdicts ("good" when none)."""
    return max(verdicts, key=VERDICTS.index, default="good")


# ---------------------------------------------------------------------------
# E-model (ITU-T G.107 (06/2015), narrowband: R 0..100, 93.2 with all defaults)
# ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Codec:
    """E-model values of a codec: equipment impairment Ie and packet-loss robustness Bpl."""
    name: str
    ie: float
    bpl: float
    source: str


CODECS: dict[str, Codec] = {
    # ITU-T G.113 (11/2007) Appendix I, Tables I.1 and I.3 (random loss).
    "g711": Codec("G.711, no PLC", 0.0, 4.3, "ITU-T G.113 Appendix I"),
    "g711-plc": Codec("G.711 with PLC (G.711 Appendix I)", 0.0, 25.1, "ITU-T G.113 Appendix I"),
    "g729a": Codec("G.729A + VAD", 11.0, 19.0, "ITU-T G.113 Appendix I"),
    "g723.1": Codec("G.723.1 6.3 kbit/s + VAD", 15.0, 16.1, "ITU-T G.113 Appendix I"),
    # Opus is not in G.113. Our choice, stated as such: Ie = 0 because Opus at the
    # bitrates WebRTC uses (>= 24 kbit/s, wideband/fullband) is transparent on the
    # narrowband G.107 scale (listening tests, e.g. Ramo & Toukomaa, "Voice quality
    # characterization of IETF Opus codec", Interspeech 2011, rate Opus at these
    # rates above G.711); Bpl = 20, between G.729A (19.0) and G.711 with PLC (25.1):
    # Opus has its own PLC but a hearing tolerates no optimism. A published Ie/Bpl
    # pair for Opus (ITU-T P.833/P.834 method) should replace these when adopted.
    "opus": Codec("Opus (WebRTC)", 0.0, 20.0, "project choice; not in ITU-T G.113"),
}


@dataclass(frozen=True)
class G107Params:
    """The G.107 (06/2015) Table 3 default values (all but delay, loss and codec)."""
    SLR: float = 8.0       # send loudness rating, dB
    RLR: float = 2.0       # receive loudness rating, dB
    STMR: float = 15.0     # sidetone masking rating, dB
    LSTR: float = 18.0     # listener sidetone rating, dB
    Ds: float = 3.0        # D-value of telephone, send side
    TELR: float = 65.0     # talker echo loudness rating, dB
    WEPL: float = 110.0    # weighted echo path loss, dB
    qdu: float = 1.0       # quantizing distortion units
    Nc: float = -70.0      # circuit noise, dBm0p
    Nfor: float = -64.0    # noise floor, dBmp
    Ps: float = 35.0       # room noise, send side, dB(A)
    Pr: float = 35.0       # room noise, receive side, dB(A)
    A: float = 0.0         # advantage factor
    mT: float = 100.0      # delay below which Idd = 0, ms
    sT: float = 1.0        # delay sensitivity


G107_DEFAULTS = G107Params()


def _log10(x: float) -> float:
    return math.log10(x)


def emodel_r_g107(*, T: float, Tr: float, Ta: float, ie: float, bpl: float,
                  ppl: float, burst_r: float = 1.0, p: G107Params = G107_DEFAULTS) -> float:
    """R = Ro - Is - Id - Ie,eff + A with the full G.107 formulas.

    T: mean one-way delay of the echo path (ms); Tr: round-trip delay in a
    4-wire loop (ms); Ta: absolute one-way delay (ms); ppl: packet loss in %.
    """
    # Basic signal-to-noise ratio Ro (G.107 7.2).
    olr = p.SLR + p.RLR
    nfo = p.Nfor + p.RLR
    pre = p.Pr + 10 * _log10(1 + 10 ** ((10 - p.LSTR) / 10))
    nor = p.RLR - 121 + pre + 0.008 * (pre - 35) ** 2
    nos = p.Ps - p.SLR - p.Ds - 100 + 0.004 * (p.Ps - olr - p.Ds - 14) ** 2
    no = 10 * _log10(10 ** (p.Nc / 10) + 10 ** (nos / 10) + 10 ** (nor / 10) + 10 ** (nfo / 10))
    ro = 15 - 1.5 * (p.SLR + no)

    # Simultaneous impairment Is = Iolr + Ist + Iq (G.107 7.3).
    xolr = olr + 0.2 * (64 + no - p.RLR)
    iolr = 20 * ((1 + (xolr / 8) ** 8) ** (1 / 8) - xolr / 8)
    stmro = -10 * _log10(10 ** (-p.STMR / 10) + math.exp(-T / 4) * 10 ** (-p.TELR / 10))
    ist = (12 * (1 + ((stmro - 13) / 6) ** 8) ** (1 / 8)
           - 28 * (1 + ((stmro + 1) / 19.4) ** 35) ** (1 / 35)
           - 13 * (1 + ((stmro - 3) / 33) ** 13) ** (1 / 13) + 29)
    q = 37 - 15 * _log10(p.qdu)
    g = 1.07 + 0.258 * q + 0.0602 * q ** 2
    y = (ro - 100) / 15 + 46 / 8.4 - g / 9
    z = 46 / 30 - g / 40
    iq = 15 * _log10(1 + 10 ** y + 10 ** z)
    is_ = iolr + ist + iq

    # Delay impairment Id = Idte + Idle + Idd (G.107 7.4).
    terv = p.TELR - 40 * _log10((1 + T / 10) / (1 + T / 150)) + 6 * math.exp(-0.3 * T ** 2)
    if p.STMR < 9:
        terv += ist / 2
    re = 80 + 2.5 * (terv - 14)
    roe = -1.5 * (no - p.RLR)
    idte = ((roe - re) / 2 + math.sqrt((roe - re) ** 2 / 4 + 100) - 1) * (1 - math.exp(-T))
    if p.STMR > 20:
        idte = math.sqrt(idte ** 2 + ist ** 2)
    rle = 10.5 * (p.WEPL + 7) * (Tr + 1) ** -0.25
    idle = (ro - rle) / 2 + math.sqrt((ro - rle) ** 2 / 4 + 169)
    if Ta <= p.mT:
        idd = 0.0
    else:
        x = _log10(Ta / p.mT) / _log10(2)
        e = 6 * p.sT
        idd = 25 * ((1 + x ** e) ** (1 / e) - 3 * (1 + (x / 3) ** e) ** (1 / e) + 2)
    id_ = idte + idle + idd

    # Effective equipment impairment (G.107 7.5).
    ie_eff = ie + (95 - ie) * ppl / (ppl / burst_r + bpl)
    return ro - is_ - id_ - ie_eff + p.A


def _codec(codec: str | Codec) -> Codec:
    if isinstance(codec, Codec):
        return codec
    try:
        return CODECS[codec]
    except KeyError:
        raise ValueError(f"unknown codec {codec!r} (known: {', '.join(sorted(CODECS))})") from None


def emodel_r(one_way_delay_ms: float, jitter_ms: float, loss_ratio: float, burst_r: float = 1.0,
             codec: str | Codec = "opus", *, jitter_buffer_factor: float = 2.0,
             params: G107Params = G107_DEFAULTS) -> float:
    """The E-model rating R of one direction from network figures.

    Ta = T = one_way_delay + jitter_buffer_factor * jitter (mouth-to-ear delay
    after the de-jitter buffer; echo path delay taken equal to it, echo
    cancelled per the G.107 default TELR 65 dB), Tr = 2 * Ta.
    Ppl = 100 * loss_ratio; BurstR 1 for random loss, > 1 for bursty loss.
    """
    if loss_ratio < 0 or loss_ratio > 1:
        raise ValueError(f"loss_ratio must be within 0..1, got {loss_ratio}")
    if burst_r <= 0:
        raise ValueError(f"burst_r must be > 0, got {burst_r}")
    c = _codec(codec)
    ta = max(0.0, one_way_delay_ms) + jitter_buffer_factor * max(0.0, jitter_ms)
    return emodel_r_g107(T=ta, Tr=2 * ta, Ta=ta, ie=c.ie, bpl=c.bpl, ppl=100 * loss_ratio,
                         burst_r=burst_r, p=params)


def r_to_mos(r: float) -> float:
    """G.107 Annex B: MOS(CQE) from R."""
    if r <= 0:
        return 1.0
    if r >= 100:
        return 4.5
    return 1 + 0.035 * r + r * (r - 60) * (100 - r) * 7e-6


def mos(one_way_delay_ms: float, jitter_ms: float, loss_ratio: float, burst_r: float = 1.0,
        codec: str | Codec = "opus", *, jitter_buffer_factor: float = 2.0) -> float:
    """r_to_mos(emodel_r(...))."""
    return r_to_mos(emodel_r(one_way_delay_ms, jitter_ms, loss_ratio, burst_r, codec,
                             jitter_buffer_factor=jitter_buffer_factor))


def r_rating(r: float) -> str:
    """G.107 / G.109 user satisfaction for R."""
    for bound, text in ((90, "very satisfied"), (80, "satisfied"), (70, "some users dissatisfied"),
                        (60, "many users dissatisfied"), (50, "nearly all users dissatisfied")):
        if r >= bound:
            return text
    return "not recommended"


# ---------------------------------------------------------------------------
# Threshold profiles (configs/thresholds.yaml)
# ---------------------------------------------------------------------------

class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Limits(_Strict):
    """The limits of one level. None: not checked."""
    one_way_delay_ms: float | None = Field(None, ge=0)
    jitter_ms: float | None = Field(None, ge=0)
    loss_ratio: float | None = Field(None, ge=0, le=1)
    mos_min: float | None = Field(None, ge=1, le=4.5)
    frame_rate_min: float | None = Field(None, ge=0)
    freeze_s: float | None = Field(None, ge=0)


# Which limits are maxima (a higher figure is worse) and which are minima.
_MAXIMA = ("one_way_delay_ms", "jitter_ms", "loss_ratio", "freeze_s")
_MINIMA = ("mos_min", "frame_rate_min")


class Thresholds(_Strict):
    """One profile: the degraded and unusable limits and the E-model inputs."""
    name: str = DEFAULT_PROFILE
    description: str = ""
    codec: str = "opus"
    jitter_buffer_factor: float = Field(2.0, ge=0, le=10)
    degraded: Limits = Field(default_factory=Limits)
    unusable: Limits = Field(default_factory=Limits)

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
    verdict: Verdict
    reasons: list[str] = field(default_factory=list)
    mos: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _Findings:
    """Reasons collected with their level; sorted worst first, notes last."""
    items: list[tuple[int, str]] = field(default_factory=list)
    mos: list[float] = field(default_factory=list)

    def add(self, verdict: Verdict, reason: str) -> None:
        self.items.append((VERDICTS.index(verdict), reason))

    def note(self, reason: str) -> None:
        self.items.append((-1, reason))

    def judgement(self) -> Judgement:
        levels = [lvl for lvl, _ in self.items if lvl >= 0]
        verdict = VERDICTS[max(levels)] if levels else "good"
        ordered = sorted(self.items, key=lambda item: -item[0])  # stable: check order kept
        return Judgement(verdict, [r for _, r in ordered],
                         round(min(self.mos), 2) if self.mos else None)


def _pct(ratio: float) -> str:
    pct = 100 * ratio
    return f"{pct:.1f}%" if pct >= 0.95 or pct == 0 else f"{pct:.2f}%"


def _ms(v: float) -> str:
    return f"{v:.0f} ms" if v >= 10 else f"{v:.1f} ms"


def _num(v: float) -> str:
    return f"{v:.1f}"


def _prefix(label: str | None) -> str:
    return f"{label} " if label else ""


def _check_max(f: _Findings, th: Thresholds, key: str, value: float, what: str, fmt) -> None:
    for level in ("unusable", "degraded"):
        limit = getattr(getattr(th, level), key)
        if limit is not None and value > limit:
            f.add(level, f"{what} {fmt(value)} > {fmt(limit)} ({level})")
            return


def _check_min(f: _Findings, th: Thresholds, key: str, value: float, what: str, fmt) -> None:
    for level in ("unusable", "degraded"):
        limit = getattr(getattr(th, level), key)
        if limit is not None and value < limit:
            f.add(level, f"{what} {fmt(value)} < {fmt(limit)} ({level})")
            return


def _has_limit(th: Thresholds, key: str) -> bool:
    return getattr(th.degraded, key) is not None or getattr(th.unusable, key) is not None


def _judge_delay(f: _Findings, fig: Figures, th: Thresholds, label: str | None) -> None:
    delay, how = fig.delay()
    if delay is None:
        if _has_limit(th, "one_way_delay_ms"):
            f.note(f"{_prefix(label)}delay unknown (no RTT): not judged")
        return
    what = f"{_prefix(label)}one-way delay" + (" (RTT/2)" if how == "RTT/2" else "")
    _check_max(f, th, "one_way_delay_ms", delay, what, _ms)


def _judge_direction(f: _Findings, fig: Figures, th: Thresholds, label: str | None, *,
                     with_delay: bool = True, mos_fig: Figures | None = None,
                     freeze_what: str = "longest freeze") -> None:
    p = _prefix(label)
    if with_delay:
        _judge_delay(f, fig, th, label)
    if fig.loss_ratio is not None:
        _check_max(f, th, "loss_ratio", fig.loss_ratio, f"{p}loss", _pct)
    elif _has_limit(th, "loss_ratio"):
        f.note(f"{p}loss unknown: not judged")
    if fig.jitter_ms is not None:
        _check_max(f, th, "jitter_ms", fig.jitter_ms, f"{p}jitter", _ms)
    elif _has_limit(th, "jitter_ms"):
        f.note(f"{p}jitter unknown: not judged")
    if fig.frame_rate is not None:
        _check_min(f, th, "frame_rate_min", fig.frame_rate, f"{p}video frame rate",
                   lambda v: f"{v:.1f} fps")
    if fig.freeze_s is not None:
        _check_max(f, th, "freeze_s", fig.freeze_s, f"{p}{freeze_what}", lambda v: f"{v:.1f} s")
    # MOS of this direction (speech: the audio stream's figures when given).
    m = mos_fig or fig
    if m.loss_ratio is None:
        return
    delay, _ = m.delay()
    value = mos(delay or 0.0, m.jitter_ms or 0.0, min(max(m.loss_ratio, 0.0), 1.0),
                max(m.burst_r, 1e-6), th.codec, jitter_buffer_factor=th.jitter_buffer_factor)
    f.mos.append(value)
    _check_min(f, th, "mos_min", value, f"{p}MOS", lambda v: f"{v:.2f}")


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

def _num_or_none(v: Any) -> float | None:
    if isinstance(v, bool) or v is None:
        return None
    if isinstance(v, (int, float)) and math.isfinite(v):
        return float(v)
    return None


def _summary(v: Any, *keys: str) -> float | None:
    """A figure that may be a number or a summary {mean, p50, p95, max}."""
    if isinstance(v, Mapping):
        for k in keys:
            x = _num_or_none(v.get(k))
            if x is not None:
                return x
        return None
    return _num_or_none(v)


def p95(values: Iterable[float]) -> float | None:
    """Nearest-rank 95th percentile; None for no values."""
    xs = sorted(values)
    if not xs:
        return None
    return xs[max(0, math.ceil(0.95 * len(xs)) - 1)]


def _loss_ratio(d: Mapping[str, Any]) -> float | None:
    lr = _num_or_none(d.get("loss_ratio"))
    if lr is not None:
        return lr
    packets, lost = _num_or_none(d.get("packets")), _num_or_none(d.get("lost"))
    if packets is None or lost is None:
        return None
    expected = packets + max(lost, 0.0)
    return max(lost, 0.0) / expected if expected > 0 else None


def _stalled(d: Mapping[str, Any]) -> bool:
    if "stalled" in d and d["stalled"] is not None:
        return bool(d["stalled"])
    return _num_or_none(d.get("packets")) == 0


def _longest_stall_s(intervals: list[Mapping[str, Any]], direction: str) -> float | None:
    """Longest run of stalled seconds after media first flowed (a trailing run counts)."""
    run = best = 0
    flowing = seen = False
    for iv in intervals:
        d = iv.get(direction)
        if not isinstance(d, Mapping):
            continue
        seen = True
        if _stalled(d):
            if flowing:
                run += 1
                best = max(best, run)
        else:
            flowing = True
            run = 0
    return float(best) if seen else None


def _audio_stream(report: Mapping[str, Any], direction: str) -> Mapping[str, Any] | None:
    for s in report.get("streams") or ():
        if isinstance(s, Mapping) and s.get("kind") == "audio" and s.get("direction") == direction:
            return s
    return None


def _report_jitter(d: Mapping[str, Any], intervals: list[Mapping[str, Any]], direction: str) -> float | None:
    """p95 jitter: the direction's summary, else the per-second values, else its scalar."""
    for v in (d.get("jitter_ms"), (d.get("summary") or {}).get("jitter_ms")):
        if isinstance(v, Mapping):
            x = _summary(v, "p95", "mean", "max")
            if x is not None:
                return x
    per_second = [x for iv in intervals if isinstance(iv.get(direction), Mapping)
                  for x in [_num_or_none(iv[direction].get("jitter_ms"))] if x is not None]
    return p95(per_second) if per_second else _num_or_none(d.get("jitter_ms"))


def _report_freeze(d: Mapping[str, Any], intervals: list[Mapping[str, Any]],
                   direction: str) -> tuple[float | None, str]:
    """(freeze figure, how to name it): the longest freeze or stall.

    `freeze_max_s` is the longest video freeze; stalls are runs of seconds without
    packets (`longest_stall_s`, or counted in the intervals). When only the total
    `freeze_s` is known it is exact for a single freeze and, for several, stands
    in for the longest (conservatively) and is named as a total.
    """
    stall = max((x for x in (_num_or_none(d.get("longest_stall_s")), _longest_stall_s(intervals, direction))
                 if x is not None), default=None)
    longest = _summary(d.get("freeze_max_s"), "max_s", "max")
    what = "longest freeze"
    if longest is None:
        total = _summary(d.get("freeze_s"), "total_s", "max_s", "max")
        count = _num_or_none(d.get("freezes"))
        if total is not None and count is not None and count > 1:
            if stall is None or total > stall:
                return total, f"video frozen in total ({count:.0f} freezes)"
        longest = total
    if stall is not None and (longest is None or stall >= longest):
        return (stall or None), "longest stall (no packets)"
    return longest, what


def _judge_shared_delay(f: _Findings, rtt: float | None, th: Thresholds, directions: list[str]) -> None:
    """The RTT-derived delay, judged once for the directions that share it."""
    if not directions:
        return
    label = "both directions" if len(directions) == len(DIRECTIONS) else directions[0]
    _judge_delay(f, Figures(rtt_ms=rtt, jitter_ms=None, loss_ratio=None), th, label)


def judge_report(report: Mapping[str, Any], thresholds: Thresholds) -> Judgement:
    """Judge a `vks.test-report/1` dict: the worst of both directions, with reasons.

    A session that never connected is unusable ("not connected: <error>").
    A direction without figures (the peer sent none) is degraded: not proven.
    A direction that received no packets at all is unusable.
    """
    if not report.get("connected"):
        return Judgement("unusable", [f"not connected: {report.get('error') or 'unknown error'}"], None)
    f = _Findings()
    rtt = _summary(report.get("rtt_ms"), "p95", "mean", "p50", "max")
    intervals = [iv for iv in report.get("intervals") or () if isinstance(iv, Mapping)]
    rtt_delay_for: list[str] = []   # measured directions without their own one-way delay
    for direction in DIRECTIONS:
        d = report.get(direction)
        if not isinstance(d, Mapping):
            f.add("degraded", f"{direction}: no figures (direction not measured)")
            continue
        packets = _num_or_none(d.get("packets"))
        loss_ratio = _loss_ratio(d)
        if packets is None and loss_ratio is None:
            f.add("degraded", f"{direction}: no figures (direction not measured)")
            continue
        if packets == 0:
            f.add("unusable", f"{direction}: no packets received")
            continue
        jitter = _report_jitter(d, intervals, direction)
        freeze, freeze_what = _report_freeze(d, intervals, direction)
        one_way = _summary(d.get("one_way_delay_ms"), "p95", "mean")
        if one_way is None:
            rtt_delay_for.append(direction)
        fig = Figures(rtt_ms=rtt, jitter_ms=jitter, loss_ratio=loss_ratio, one_way_delay_ms=one_way,
                      frame_rate=_summary(d.get("frame_rate", d.get("fps")), "mean", "p50"),
                      freeze_s=freeze, burst_r=_num_or_none(d.get("burst_r")) or 1.0)
        audio = _audio_stream(report, direction)
        mos_fig = None
        if audio is not None and _loss_ratio(audio) is not None:
            mos_fig = replace(fig, loss_ratio=_loss_ratio(audio),
                              jitter_ms=_summary(audio.get("jitter_ms"), "p95", "mean") or fig.jitter_ms)
        _judge_direction(f, fig, thresholds, direction, with_delay=one_way is not None,
                         mos_fig=mos_fig, freeze_what=freeze_what)
    _judge_shared_delay(f, rtt, thresholds, rtt_delay_for)
    return f.judgement()


def judge_interval(interval: Mapping[str, Any], thresholds: Thresholds) -> Judgement:
    """Judge one per-second interval (the live detector's input).

    A direction present in the interval is expected to carry packets: a second
    with none (or marked `stalled`) is a stall, unusable. A direction absent
    (None) is not expected and is noted. `fps` is the frames counted in the
    interval; an interval shorter than a second (the last one of a session)
    should say so in `duration_s`, or its frame count reads as a low rate.
    """
    f = _Findings()
    rtt = _num_or_none(interval.get("rtt_ms"))
    span = _num_or_none(interval.get("duration_s"))
    span = span if span is not None and 0 < span < 1 else None
    rtt_delay_for: list[str] = []
    for direction in DIRECTIONS:
        d = interval.get(direction)
        if not isinstance(d, Mapping):
            f.note(f"{direction}: no figures this second")
            continue
        if _stalled(d):
            f.add("unusable", f"{direction} stalled: no packets received in this second")
            continue
        frame_rate = _num_or_none(d.get("frame_rate", d.get("fps")))
        if frame_rate is not None and span is not None:
            frame_rate = frame_rate / span      # frames counted in a shorter (last) interval
        fig = Figures(rtt_ms=rtt, jitter_ms=_num_or_none(d.get("jitter_ms")), loss_ratio=_loss_ratio(d),
                      one_way_delay_ms=_num_or_none(d.get("one_way_delay_ms")),
                      frame_rate=frame_rate, freeze_s=_num_or_none(d.get("freeze_s")))
        if fig.one_way_delay_ms is None:
            rtt_delay_for.append(direction)
        _judge_direction(f, fig, thresholds, direction, with_delay=fig.one_way_delay_ms is not None)
    _judge_shared_delay(f, rtt, thresholds, rtt_delay_for)
    return f.judgement()


EXIT_CODES: dict[Verdict, int] = {"good": 0, "degraded": 1, "unusable": 3}
"""The `vks-agent test` exit status of each verdict (issue 3); 4 = could not connect."""
