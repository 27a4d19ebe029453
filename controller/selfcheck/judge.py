"""A self-check's verdict (issue 14): the devices the browser found, and each direction's figures
judged by the `mobile` threshold profile through the one quality model (contract.quality), with
what the person can do about each finding - reasons of the catalog (contract/reasons.yaml), so the
page, the hearing's record and the act say it in kk/ru/en.

- A camera or microphone that is not `ok` makes the check unusable: the person cannot be seen or
  heard (`camera_denied` ... `microphone_silent`, each saying what to do).
- `inbound` (what the browser received) and `outbound` (what the controller received) are each
  judged on loss, jitter and MOS; the delay (RTT/2, one figure for both) once, with `inbound`.
- Loss, jitter or a low MOS add `advice_move_closer` (the radio link); a long delay adds
  `advice_close_apps` (a crowded uplink). Nothing found: `self_check_ok`.
- No media path at all: `self_check_no_connection` and the verdict unusable.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from contract import quality
from contract.reasons import Reason, ReasonCode
from contract.vocab import DeviceStatus, Direction, Verdict, worst

_DEVICE = {
    ("camera", DeviceStatus.DENIED): ReasonCode.CAMERA_DENIED,
    ("camera", DeviceStatus.MISSING): ReasonCode.CAMERA_MISSING,
    ("camera", DeviceStatus.BLACK): ReasonCode.CAMERA_BLACK,
    ("camera", DeviceStatus.FROZEN): ReasonCode.CAMERA_FROZEN,
    ("microphone", DeviceStatus.DENIED): ReasonCode.MICROPHONE_DENIED,
    ("microphone", DeviceStatus.MISSING): ReasonCode.MICROPHONE_MISSING,
    ("microphone", DeviceStatus.SILENT): ReasonCode.MICROPHONE_SILENT,
}
_RADIO = {ReasonCode.LOSS_HIGH, ReasonCode.JITTER_HIGH, ReasonCode.MOS_LOW}
_DELAY = {ReasonCode.DELAY_RTT_HIGH, ReasonCode.DELAY_HIGH}


@dataclass
class Outcome:
    """The verdict with its reasons as `{code, params}` (device findings first, advice last)."""
    verdict: Verdict
    reason_codes: list[dict[str, Any]] = field(default_factory=list)


def _figures(d: dict[str, Any] | None, rtt_ms: float | None) -> quality.Figures | None:
    if not d or all(d.get(k) is None for k in ("loss_ratio", "jitter_ms")):
        return None
    return quality.Figures(rtt_ms=rtt_ms, jitter_ms=d.get("jitter_ms"), loss_ratio=d.get("loss_ratio"))


def judge(*, camera: str, microphone: str, inbound: dict[str, Any] | None, outbound: dict[str, Any] | None,
          rtt_ms: float | None, thresholds: quality.Thresholds, connected: bool = True,
          error: str | None = None) -> Outcome:
    """The self-check's verdict (see the module's docstring)."""
    verdicts: list[Verdict] = []
    reasons: list[Reason] = []
    for device, status in (("camera", camera), ("microphone", microphone)):
        code = _DEVICE.get((device, DeviceStatus(status)))
        if code is not None:
            verdicts.append(Verdict.UNUSABLE)
            reasons.append(Reason(code))
    found: list[dict[str, Any]] = []
    if not connected:
        verdicts.append(Verdict.UNUSABLE)
        reasons.append(Reason(ReasonCode.SELF_CHECK_NO_CONNECTION, {"error": error or "ICE"}))
    else:
        for direction, figures in ((Direction.INBOUND, inbound), (Direction.OUTBOUND, outbound)):
            fig = _figures(figures, rtt_ms)
            if fig is None:
                verdicts.append(Verdict.DEGRADED)
                reasons.append(Reason(ReasonCode.DIRECTION_UNMEASURED, {"direction": str(direction)}))
                continue
            j = quality.judge(fig, thresholds, direction=str(direction))
            codes = [r for r in j.reason_codes
                     if direction == Direction.INBOUND or r["code"] not in (*_DELAY, ReasonCode.DELAY_UNKNOWN)]
            levels = [r.get("params", {}).get("level") for r in codes]
            verdicts.append(worst(Verdict, [lv for lv in levels if lv], Verdict.GOOD))
            found += codes
    out = [r.to_dict() for r in reasons] + found
    codes_found = {r["code"] for r in found if r.get("params", {}).get("level")}
    if codes_found & _RADIO:
        out.append(Reason(ReasonCode.ADVICE_MOVE_CLOSER).to_dict())
    if codes_found & _DELAY:
        out.append(Reason(ReasonCode.ADVICE_CLOSE_APPS).to_dict())
    verdict = worst(Verdict, verdicts, Verdict.GOOD)
    if verdict == Verdict.GOOD:
        out.insert(0, Reason(ReasonCode.SELF_CHECK_OK).to_dict())
    return Outcome(verdict, out)
