"""A hearing's events in words for the act (rule 21; controller.acts): the sentence of each event is the
catalog's (contract/reasons.yaml `events`, written by contract.reasons.event_text), the same one the
page writes (controller/web/static/views/events.js through reasons.js's eventText).

`params_of(detail, h, lang)` gives a sentence's parameters from an event's detail exactly as the page's
`vars()` does: terminals by their names, labels (a check's kind, a status, a verdict, a cause...) in
the reader's language from the page's own words (controller/web/i18n/*.json: defined once, there),
times as given (the catalog writes them in the court's zone).
"""
from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

from contract import reasons

I18N = Path(__file__).resolve().parent / "web" / "i18n"


@functools.cache
def _words(lang: str) -> dict[str, str]:
    return json.loads((I18N / f"{lang}.json").read_text(encoding="utf-8"))


def label(prefix: str, value: Any, lang: str) -> Any:
    """The page's label `prefix.value` in `lang`; the value itself when it has none (as events.js)."""
    if value is None:
        return None
    return _words(lang).get(f"{prefix}.{value}", value)


def _names(h: dict) -> dict[str, str]:
    """{terminal id: a name a reader knows}: a participant's by its institution, the court's own by
    the court and its room (controller.acts.terminal_names)."""
    out = {p["terminal_id"]: p["institution_name"] for p in h["participants"] if p.get("terminal_id")}
    out.setdefault(h["court_terminal"], f"{h['court']['name']}, {h['room']['name']}")
    return out


def params_of(detail: dict[str, Any], h: dict, lang: str) -> dict[str, Any]:
    """The words an event's sentence may use, from its detail (absent ones left out)."""
    d = detail or {}
    names = _names(h)

    def term(tid: Any) -> Any:
        return names.get(tid, tid) if tid else None

    caller = d.get("caller") or h["court_terminal"]
    words = _words(lang)
    cause = d.get("cause")
    parties = d.get("parties")
    v: dict[str, Any] = {
        "check": label("kind", d.get("kind"), lang), "status": label("status", d.get("status"), lang),
        "verdict": label("verdict", d.get("verdict"), lang),
        "cause": words[f"break.cause.{cause}"] if f"break.cause.{cause}" in words else label("cause", cause, lang),
        "reason": label("reason", d.get("reason"), lang), "by": d.get("by"), "error": d.get("error"),
        "attempt": d.get("attempt"), "attempts": d.get("attempts"), "channel": d.get("channel"),
        "event": d.get("event"), "case": d.get("case_number"), "duration": d.get("duration_s"),
        "name": d.get("name"), "mode": label("mode", d.get("mode"), lang),
        "callee": term(d.get("callee")), "terminal": term(d.get("terminal_id")),
        "pair": f"{term(caller)} → {term(d['callee'])}" if d.get("callee") and caller else None,
        "start": d.get("start_utc"), "deadline": d.get("deadline"), "detected": d.get("detected_at"),
        "after": d.get("after_s"), "retry_at": d.get("retry_at"),
        "finding": (reasons.text({"code": d["code"], "params": d["params"]}, lang)
                    if d.get("code") and d.get("params") else None),
        "trigger": label("trigger", d.get("trigger"), lang),
        "coordinator": label("agreement", d.get("coordinator"), lang), "given_by": d.get("given_by"),
        "modes": "; ".join(
            f"{term(p['terminal_id']) if p.get('terminal_id') else p.get('name')}"
            f"{' (' + str(p['kind']) + ')' if p.get('kind') else ''} — {label('mode', p.get('mode'), lang)}"
            for p in parties) if isinstance(parties, list) else None,
    }
    return {k: x for k, x in v.items() if x is not None and x != ""}


def sentence(kind: str, detail: dict[str, Any], h: dict, lang: str) -> str:
    """The event as a sentence in `lang`: the catalog's when every word it needs is known, else the
    kind's label (the page's `event.<kind>`), else the kind."""
    s = reasons.event_text(kind, params_of(detail, h, lang), lang, tz=h["court"]["timezone"])
    if s:
        return s
    fallback = str(label("event", kind, lang))
    return fallback[:1].upper() + fallback[1:]


def act_text(kind: str, detail: dict[str, Any], h: dict, langs: tuple[str, ...]) -> tuple[list[str], bool, bool]:
    """The event's sentence in each of `langs` (the act: kk, ru); whether each is the catalog's (not
    the kind's bare label: then the act need not list the detail as `key: value`); and whether those
    sentences already tell the finding the event carries (a check_finding's), so the act does not
    list it again."""
    texts, worded, told = [], True, True
    for lg in langs:
        params = params_of(detail, h, lg)
        s = reasons.event_text(kind, params, lg, tz=h["court"]["timezone"])
        worded = worded and s is not None
        told = told and s is not None and bool(params.get("finding")) and params["finding"] in s
        texts.append(s if s is not None else sentence(kind, detail, h, lg))
    return texts, worded, told
