"""The words of a recommended break (rule 22): "Connection to <terminal> lost - break recommended"
and the detector's evidence as a sentence, in Kazakh, Russian and English, from the reasons catalog
(contract/reasons.yaml: `link_lost`, `break_*`). The room screens (the agents' hooks) and the
secretary's page show the same words."""
from __future__ import annotations

from typing import Any

from contract.reasons import LANGS, Reason, ReasonCode, text


def recommendation(terminal: str) -> Reason:
    """"Connection to <terminal> lost - break recommended"."""
    return Reason(ReasonCode.LINK_LOST, {"terminal": terminal})


def evidence_reason(evidence: dict[str, Any]) -> Reason | None:
    """The detector's evidence (a break's `evidence`: its rule's `kind` and figures) as a reason."""
    kind = evidence.get("kind")
    if kind == "stall":
        return Reason(ReasonCode.BREAK_STALL, {"value": evidence.get("stalled_s")})
    if kind == "dropouts":
        gap = evidence.get("longest_gap_ms")
        return Reason(ReasonCode.BREAK_DROPOUTS, {"count": evidence.get("dropouts"),
                                                  "window": evidence.get("dropouts_window_s"),
                                                  "value": None if gap is None else round(gap / 1000.0, 1)})
    if kind == "unusable":
        return Reason(ReasonCode.BREAK_UNUSABLE, {"count": evidence.get("unusable"),
                                                  "window": evidence.get("window_s")})
    if kind == "freeze":
        return Reason(ReasonCode.BREAK_FROZEN, {"value": evidence.get("unusable_run_s")})
    if kind == "silent":
        return Reason(ReasonCode.BREAK_SILENT, {"value": evidence.get("silent_s")})
    return None


def reasons(terminal: str, evidence: dict[str, Any] | None) -> list[dict[str, Any]]:
    """[recommendation, evidence] as `{code, params}` (what the page renders in its language)."""
    ev = evidence_reason(evidence or {})
    return [r.to_dict() for r in (recommendation(terminal), ev) if r is not None]


def banner(terminal: str, evidence: dict[str, Any] | None) -> dict[str, str]:
    """{kk, ru, en}: the recommendation and, after it, the evidence in words."""
    rs = reasons(terminal, evidence)
    out = {}
    for lang in LANGS:
        head, *rest = [text(r, lang) for r in rs]
        out[lang] = head + "".join(f". {_cap(t)}" for t in rest)
    return out


def _cap(s: str) -> str:
    return s[:1].upper() + s[1:]
