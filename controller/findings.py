"""Which side (issue 12, part 2): from a degraded or failed pair and each side's session with the
reference terminal in the data centre, the `finding` - pure, no I/O.

    finding = {code, side: <terminal id> | None, segment: a | b | between | none, figures, params, text}

`a` is the caller, `b` the callee. `code` is a reason code (contract.reasons, FINDING_CODES), `params`
its parameters (the page renders the code in its language from them), `text` the English sentence,
`figures` the measured figures each conclusion rests on: the pair's and each side's verdict, loss
(the worse direction), jitter, round trip and whether it connected.

| code                  | when                                                        | side   | segment |
|-----------------------|-------------------------------------------------------------|--------|---------|
| reference_unavailable | no reference terminal, or neither side reached it           | null   | none    |
| side_untested         | a side's session with the reference could not run           | it/null| none    |
| access_link_a / _b    | that side is bad to the reference, the other clean          | it     | a / b   |
| access_capacity_a / _b| ... bad by what it carries alone (capacity_low, no loss)    | it     | a / b   |
| both                  | both sides are bad to the reference                         | null   | none    |
| between               | both sides clean to the reference, the pair is bad          | null   | between |
| between_no_path       | the pair never connected, but each side reaches the reference| null  | between |

A side is clean when its session with the reference connected and the quality model judged it good.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from contract import reasons
from contract.reasons import Reason, ReasonCode

FINDING_CODES = (ReasonCode.ACCESS_LINK_A, ReasonCode.ACCESS_LINK_B, ReasonCode.ACCESS_CAPACITY_A,
                 ReasonCode.ACCESS_CAPACITY_B, ReasonCode.BOTH, ReasonCode.BETWEEN,
                 ReasonCode.BETWEEN_NO_PATH, ReasonCode.SIDE_UNTESTED, ReasonCode.REFERENCE_UNAVAILABLE)


@dataclass(frozen=True)
class Leg:
    """One session's outcome as the finding needs it: the pair's, or a side's with the reference."""
    verdict: str | None               # the quality model's; None when the session gave no report
    connected: bool
    loss_ratio: float | None = None   # the worse direction
    jitter_ms: float | None = None    # the worse direction
    rtt_ms: float | None = None
    error: str | None = None
    capacity_kbps: float | None = None                    # the direction that carries less (its ramp)
    # the quality model's capacity_low {value, limit} when only what the leg carries failed it (no
    # loss_high): a thin access link, not a lossy one
    capacity_low: Mapping[str, Any] | None = None

    @property
    def clean(self) -> bool:
        return self.connected and self.verdict == "good"

    def figures(self) -> dict[str, Any]:
        return {"verdict": self.verdict, "connected": self.connected, "loss_ratio": self.loss_ratio,
                "jitter_ms": self.jitter_ms, "rtt_ms": self.rtt_ms, "capacity_kbps": self.capacity_kbps,
                "error": self.error}


def _worst(*values: float | None) -> float | None:
    known = [float(v) for v in values if v is not None]
    return max(known) if known else None


def leg_of(report: Mapping[str, Any] | None, verdict: str | None, *, error: str | None = None,
           reason_codes: list[Mapping[str, Any]] | None = None) -> Leg:
    """A judged session report (vks.test-report/1 as a dict) as a leg; None: the session gave none.
    `reason_codes`: the judgement's (capacity_low without loss_high makes it a thin leg)."""
    if report is None:
        return Leg(verdict=None, connected=False, error=error)
    connected = report.get("connected", True) is not False and report.get("connected", True) is not None
    dirs = [report.get(d) or {} for d in ("inbound", "outbound")]

    def fig(d: Mapping[str, Any], key: str) -> float | None:
        v = d.get(key)
        if isinstance(v, Mapping):          # a summary: its mean
            v = v.get("mean", v.get("max"))
        return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None
    cap = report.get("capacity") or {}
    carried = [float(c["kbps"]) for c in (cap.get("outbound"), cap.get("inbound"))
               if isinstance(c, Mapping) and isinstance(c.get("kbps"), int | float)]
    codes = list(reason_codes or [])
    thin = [dict(r.get("params") or {}) for r in codes if r.get("code") == ReasonCode.CAPACITY_LOW]
    lossy = any(r.get("code") == ReasonCode.LOSS_HIGH for r in codes)
    return Leg(verdict=verdict, connected=connected,
               loss_ratio=_worst(*(d.get("loss_ratio") for d in dirs)),
               jitter_ms=_worst(*(fig(d, "jitter_ms") for d in dirs)),
               rtt_ms=fig(report, "rtt_ms"), error=error or report.get("error"),
               capacity_kbps=min(carried) if carried else None,
               capacity_low=min(thin, key=lambda p: float(p.get("value") or 0)) if thin and not lossy else None)


@dataclass(frozen=True)
class Names:
    """How the finding names the two sides: a terminal's institution (or the terminal itself)."""
    a: str
    b: str


def finding(*, caller: str, callee: str, pair: Leg, side_a: Leg | None, side_b: Leg | None,
            reference: str | None, names: Names | None = None,
            errors: Mapping[str, str] | None = None) -> dict[str, Any] | None:
    """The finding of a pair (None when the pair is clean: nothing to find). `side_a` / `side_b`:
    the caller's / callee's session with the reference (None: it could not be run, `errors` says why
    by side, "a" or "b")."""
    errors = errors or {}
    if pair.clean:
        return None
    n = names or Names(caller, callee)
    figures: dict[str, Any] = {"reference": reference, "pair": pair.figures(),
                               "a": side_a.figures() if side_a else None, "b": side_b.figures() if side_b else None}

    def out(code: ReasonCode, side: str | None, segment: str, params: dict[str, Any]) -> dict[str, Any]:
        r = Reason(code, params)
        return {"code": str(code), "side": side, "segment": segment, "figures": figures,
                "params": r.to_dict()["params"], "text": reasons.text(r, "en")}

    if reference is None:
        return out(ReasonCode.REFERENCE_UNAVAILABLE, None, "none", {})
    untested = [(tid, name, leg.error if leg else errors.get(k))
                for k, tid, name, leg in (("a", caller, n.a, side_a), ("b", callee, n.b, side_b))
                if leg is None or leg.verdict is None and leg.connected]
    if len(untested) == 2:
        why = untested[0][2] if untested[0][2] == untested[1][2] else None
        return out(ReasonCode.SIDE_UNTESTED, None, "none", {"side": f"{n.a}, {n.b}", "error": why})
    if untested:
        tid, name, why = untested[0]
        return out(ReasonCode.SIDE_UNTESTED, tid, "none", {"side": name, "error": why})
    assert side_a is not None and side_b is not None
    if not side_a.connected and not side_b.connected:
        # Neither side reached the reference: it is the reference (or its own link) that is away.
        return out(ReasonCode.REFERENCE_UNAVAILABLE, None, "none", {})
    a_bad, b_bad = not side_a.clean, not side_b.clean
    if a_bad and b_bad:
        return out(ReasonCode.BOTH, None, "none", {"a": n.a, "b": n.b, "loss_a": side_a.loss_ratio,
                                                    "loss_b": side_b.loss_ratio})
    if a_bad or b_bad:
        bad, clean_name = (side_a, n.b) if a_bad else (side_b, n.a)
        if bad.connected and bad.capacity_low is not None:
            code = ReasonCode.ACCESS_CAPACITY_A if a_bad else ReasonCode.ACCESS_CAPACITY_B
            return out(code, caller if a_bad else callee, "a" if a_bad else "b",
                       {"side": n.a if a_bad else n.b, "other": clean_name, "value": bad.capacity_low.get("value"),
                        "limit": bad.capacity_low.get("limit"), "level": bad.verdict})
        code = ReasonCode.ACCESS_LINK_A if a_bad else ReasonCode.ACCESS_LINK_B
        return out(code, caller if a_bad else callee, "a" if a_bad else "b",
                   {"side": n.a if a_bad else n.b, "other": clean_name,
                    # a side that could not connect to the reference lost everything it sent
                    "loss": bad.loss_ratio if bad.connected else 1.0,
                    "level": bad.verdict if bad.connected else "unusable",
                    "error": None if bad.connected else bad.error})
    if not pair.connected:
        return out(ReasonCode.BETWEEN_NO_PATH, None, "between", {"a": n.a, "b": n.b})
    return out(ReasonCode.BETWEEN, None, "between", {"a": n.a, "b": n.b, "loss": pair.loss_ratio,
                                                      "level": pair.verdict})
