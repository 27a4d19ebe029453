"""Every event kind the controller writes to a hearing's record (rule 21) has its sentence in kk, ru and
en, once, in the catalog (contract/reasons.yaml `events`, its parameters declared in
contract.reasons.EVENT_PARAMS), so the record never shows `trigger: preconnect_passed, caller: ...` as
its words. The page (views/events.js through reasons.js) and the act (controller.event_words, kk and
ru) write the same sentence; no sentence is left in the page's i18n files.

The kinds are read from the source: the literal kind of each `events_repo.append(...)` (both words of
a `"a" if ... else "b"`) and of each `Event("...")` of the live flow. A call whose kind is a variable
is allowed only in the modules listed in INDIRECT, whose kinds are listed there by hand: a new such
call elsewhere fails the test until it is listed."""
from __future__ import annotations

import json
import re
from pathlib import Path

from contract import reasons
from controller import acts, event_words

ROOT = Path(__file__).resolve().parent.parent
I18N = ROOT / "controller" / "web" / "i18n"
APPEND = re.compile(r"events_repo\.append\(\s*conn,\s*[^,]+,\s*(?P<kind>[^,]+?),\s*(?:now|t|to_dt|ctx\.now)", re.S)
WORD = re.compile(r'"([a-z][a-z0-9_]*)"')
EVENT = re.compile(r'\bEvent\(\s*"([a-z][a-z0-9_]*)"')
# Modules that pass a variable as the kind, and the kinds they pass.
INDIRECT = {
    "controller/api/live.py": {"hearing_started", "hearing_ended"},          # _set_status(..., event)
    "controller/live/service.py": set(),                                     # w.kind: the Event()s below
    "controller/live/machine.py": {"reconnect_attempt_failed", "ready_withdrawn",     # Event(kind, ...)
                                   "break_declared", "break_continued"},             # Event(DECISIONS[...])
    "controller/agreements.py": {"agreement_requested", "agreement_reset"},  # _tell(..., kind, ...)
}


def written_kinds() -> set[str]:
    kinds: set[str] = set()
    for path in sorted((ROOT / "controller").rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        text = path.read_text(encoding="utf-8")
        for m in APPEND.finditer(text):
            expr = m.group("kind")
            branches = re.split(r"\bif\b|\belse\b", expr)       # "a" if cond else "b": a and b
            words = WORD.findall(branches[0] + " " + branches[-1] if len(branches) == 3 else expr)
            if not words:
                assert rel in INDIRECT, f"{rel}: an event kind given as {m.group('kind')!r}: list it in INDIRECT"
            kinds.update(words)
        kinds.update(EVENT.findall(text))
        if rel in INDIRECT:
            kinds.update(INDIRECT[rel])
    return kinds


def test_the_source_is_read():
    kinds = written_kinds()
    assert {"hearing_scheduled", "break", "resume", "monitoring_started", "test_request_created",
            "preconnect_scheduled", "hearing_started", "mode_recorded", "agreement_reset"} <= kinds
    for bad in ("conn", "now", "t"):
        assert bad not in kinds


def test_every_event_kind_has_its_sentence_in_the_three_languages():
    kinds = written_kinds()
    events = reasons.catalog().events
    for lang in ("kk", "ru", "en"):
        missing = sorted(k for k in kinds if not (events.get(k) or {}).get(lang))
        assert not missing, f"contract/reasons.yaml has no {lang} event sentence for {missing}"


def test_every_parameter_a_sentence_names_is_declared():
    for kind, texts in reasons.catalog().events.items():
        assert set(texts) == {"kk", "ru", "en"}, kind
        named = [{m for m in re.findall(r"\{(\w+)\}", texts[lg])} for lg in ("kk", "ru", "en")]
        assert named[0] == named[1] == named[2], f"{kind}: the languages name different parameters {named}"
        undeclared = named[2] - set(reasons.EVENT_PARAMS)
        assert not undeclared, f"{kind} names {sorted(undeclared)}: declare them in contract.reasons.EVENT_PARAMS"


def test_a_sentence_is_written_once():
    """No event sentence is left in the page's words, nor an event table in the act's code."""
    for lang in ("kk", "ru", "en"):
        words = json.loads((I18N / f"{lang}.json").read_text(encoding="utf-8"))
        assert not [k for k in words if k.startswith("eventline.")], lang
    assert not hasattr(acts, "EVENT_TEXT")
    served = reasons.served()
    assert served["events"] == reasons.catalog().events
    assert served["event_params"] == {k: str(v) for k, v in reasons.EVENT_PARAMS.items()}
    assert {"languages", "formats", "decimal_mark", "words", "codes", "params"} <= set(served)


HEARING = {"court": {"name": "Алматы қалалық соты", "timezone": "Asia/Almaty"}, "room": {"name": "3"},
           "court_terminal": "court-t", "participants": [{"terminal_id": "sizo-t", "institution_name": "СИЗО ДС-70/1"}]}


def test_the_act_writes_the_catalogs_sentence():
    """The act's kk and ru timeline texts are contract.reasons.event_text's for the same detail (the page
    renders that text with the same rules: reasons.js eventText; tests/test_web_conduct.py compares)."""
    detail = {"terminal_id": "sizo-t", "detected_at": "2026-12-03T04:05:00Z", "after_s": 41.25, "by": "secretary-1"}
    texts, worded, _ = event_words.act_text("break_declared", detail, HEARING, ("kk", "ru"))
    for lang, got in zip(("kk", "ru"), texts, strict=True):
        params = {"terminal": "СИЗО ДС-70/1", "detected": "2026-12-03T04:05:00Z", "after": 41.25, "by": "secretary-1"}
        assert got == reasons.event_text("break_declared", params, lang, tz="Asia/Almaty")
    assert texts[1] == ("Председательствующий объявил перерыв (п. 22) из-за связи с СИЗО ДС-70/1: потеря в "
                        "03.12.2026 09:05, объявлен через 41,2 с (secretary-1)")
    # Labels in the reader's language (the page's words), times in the court's zone.
    assert worded
    ru, = event_words.act_text("check_result", {"kind": "test", "callee": "sizo-t", "status": "failed",
                                                 "verdict": "unusable"}, HEARING, ("ru",))[0]
    words = json.loads((I18N / "ru.json").read_text(encoding="utf-8"))
    assert words["verdict.unusable"] in ru and "СИЗО ДС-70/1" in ru and "unusable" not in ru
    # A sentence whose words are not all known falls back to the kind's label, never to braces.
    bare = event_words.sentence("hearing_scheduled", {}, HEARING, "ru")
    assert "{" not in bare and bare.lower() == words["event.hearing_scheduled"].lower()
