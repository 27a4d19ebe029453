"""Every event kind the controller writes to a hearing's record (rule 21) has its sentence on the page
in kk, ru and en (controller/web/i18n/*.json "eventline.<kind>", rendered by views/events.js with the
terminals named), so the record never shows `trigger: preconnect_passed, caller: ...` as its words.

The kinds are read from the source: the literal kind of each `events_repo.append(...)` (both words of
a `"a" if ... else "b"`) and of each `Event("...")` of the live flow. A call whose kind is a variable
is allowed only in the modules listed in INDIRECT, whose kinds are listed there by hand: a new such
call elsewhere fails the test until it is listed."""
from __future__ import annotations

import json
import re
from pathlib import Path

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
    for lang in ("kk", "ru", "en"):
        catalog = json.loads((I18N / f"{lang}.json").read_text(encoding="utf-8"))
        missing = sorted(k for k in kinds if not catalog.get(f"eventline.{k}"))
        assert not missing, f"{lang}.json has no eventline sentence for {missing}"
