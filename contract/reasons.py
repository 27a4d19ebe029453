"""Reason codes: every reason the quality model gives, as a stable code with parameters.

`ReasonCode` is the vocabulary (each member names its parameters and their kinds); the texts in
Kazakh, Russian and English live once, in the package data `contract/reasons.yaml`. A report keeps
its English `reasons` strings and carries `reason_codes` (`[{code, params}]`) beside them: the
English string is `text(reason, "en")`, so the two never disagree. The web page reads the same
catalog from `GET /api/v1/reasons` (`served()`) and renders it with the same rules
(controller/web/static/reasons.js); the e-mails and the act call `text(...)` in kk and ru.

Parameters carry raw figures (a loss ratio 0.115, a delay in ms), formatted only when rendered, so a
reader in any language gets the measured value and the limit, not an English string.

The same catalog holds the sentence of each event kind of a hearing's record (rule 21, `events`),
its parameters declared once in `EVENT_PARAMS`: `event_text(kind, params, lang, tz=...)` writes it
for the act (controller.event_words) and reasons.js's `eventText` for the page, by the same rules.
"""
from __future__ import annotations

import datetime as dt
import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from importlib import resources
from pathlib import Path
from typing import Any, Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict

from contract import configfile

__all__ = ["EVENT_PARAMS", "LANGS", "PATH", "Catalog", "ParamKind", "Reason", "ReasonCode", "catalog", "code_of",
           "event_text", "served", "text", "word"]

PATH = Path(str(resources.files(__package__) / "reasons.yaml"))
LANGS = ("kk", "ru", "en")


class ParamKind(StrEnum):
    """How a parameter is written: a number in its unit, a word of the catalog, or text as given."""
    PERCENT = "percent"
    MS = "ms"
    FPS = "fps"
    SECONDS = "seconds"
    MOS = "mos"
    COUNT = "count"
    KBPS = "kbps"
    DIRECTION = "direction"
    LEVEL = "level"
    TEXT = "text"
    # An event's sentence (EVENT_PARAMS) also has:
    TIME = "time"            # an instant (ISO, UTC) written in the court's zone: dd.mm.yyyy HH:MM
    TERMINAL = "terminal"    # a terminal's name (the renderer names it; ids are not words)
    LABEL = "label"          # a word of the page's vocabulary, given by the renderer in the reader's language


_K = ParamKind
_LIMIT_MS = {"direction": _K.DIRECTION, "value": _K.MS, "limit": _K.MS, "level": _K.LEVEL}
_LIMIT_S = {"direction": _K.DIRECTION, "value": _K.SECONDS, "limit": _K.SECONDS, "level": _K.LEVEL}
_SIDE = {"direction": _K.DIRECTION}


class ReasonCode(StrEnum):
    """Every reason of the quality model; `params` names each code's parameters and their kinds."""
    params: dict[str, ParamKind]

    def __new__(cls, value: str, params: dict[str, ParamKind]) -> Self:
        member = str.__new__(cls, value)
        member._value_ = value
        member.params = params
        return member

    DELAY_HIGH = "delay_high", _LIMIT_MS                       # one-way delay measured
    DELAY_RTT_HIGH = "delay_rtt_high", _LIMIT_MS               # one-way delay taken as RTT/2
    LOSS_HIGH = "loss_high", {"direction": _K.DIRECTION, "value": _K.PERCENT, "limit": _K.PERCENT,
                              "level": _K.LEVEL}
    JITTER_HIGH = "jitter_high", _LIMIT_MS
    FRAME_RATE_LOW = "frame_rate_low", {"direction": _K.DIRECTION, "value": _K.FPS, "limit": _K.FPS,
                                        "level": _K.LEVEL}
    FREEZE_LONG = "freeze_long", _LIMIT_S                      # the longest video freeze
    FROZEN_TOTAL = "frozen_total", {"count": _K.COUNT, **_LIMIT_S}   # several freezes, their total
    STALL_LONG = "stall_long", _LIMIT_S                        # the longest run of seconds without packets
    MOS_LOW = "mos_low", {"direction": _K.DIRECTION, "value": _K.MOS, "limit": _K.MOS, "level": _K.LEVEL}
    DELAY_UNKNOWN = "delay_unknown", _SIDE                     # notes: a figure not known, not judged
    LOSS_UNKNOWN = "loss_unknown", _SIDE
    JITTER_UNKNOWN = "jitter_unknown", _SIDE
    NOT_CONNECTED = "not_connected", {"error": _K.TEXT}
    DIRECTION_UNMEASURED = "direction_unmeasured", _SIDE
    NO_PACKETS = "no_packets", _SIDE
    SECOND_UNMEASURED = "second_unmeasured", _SIDE             # the live detector's seconds
    SECOND_STALLED = "second_stalled", _SIDE
    CAPACITY_LOW = "capacity_low", {"direction": _K.DIRECTION, "value": _K.KBPS, "limit": _K.KBPS,
                                    "level": _K.LEVEL}             # what a direction carries (capacity ramp)
    NOT_JUDGED = "not_judged", {"why": _K.TEXT}                # the controller's model could not judge
    # Findings (controller.findings): which side of a degraded pair is at fault, each side tested
    # against the reference terminal in the data centre. `side`, `other`, `a`, `b`: the sides' names.
    ACCESS_LINK_A = "access_link_a", {"side": _K.TEXT, "other": _K.TEXT, "loss": _K.PERCENT,
                                      "level": _K.LEVEL, "error": _K.TEXT}
    ACCESS_LINK_B = "access_link_b", {"side": _K.TEXT, "other": _K.TEXT, "loss": _K.PERCENT,
                                      "level": _K.LEVEL, "error": _K.TEXT}
    # ... that side carries too little (its capacity ramp to the reference, not its loss, failed it)
    ACCESS_CAPACITY_A = "access_capacity_a", {"side": _K.TEXT, "other": _K.TEXT, "value": _K.KBPS,
                                              "limit": _K.KBPS, "level": _K.LEVEL}
    ACCESS_CAPACITY_B = "access_capacity_b", {"side": _K.TEXT, "other": _K.TEXT, "value": _K.KBPS,
                                              "limit": _K.KBPS, "level": _K.LEVEL}
    BOTH = "both", {"a": _K.TEXT, "b": _K.TEXT, "loss_a": _K.PERCENT, "loss_b": _K.PERCENT}
    BETWEEN = "between", {"a": _K.TEXT, "b": _K.TEXT, "loss": _K.PERCENT, "level": _K.LEVEL}
    BETWEEN_NO_PATH = "between_no_path", {"a": _K.TEXT, "b": _K.TEXT}
    SIDE_UNTESTED = "side_untested", {"side": _K.TEXT, "error": _K.TEXT}
    REFERENCE_UNAVAILABLE = "reference_unavailable", dict[str, ParamKind]()
    # A self-check from a phone or a laptop (issue 14, controller.selfcheck): what was found, each in
    # words with what the person can do about it.
    SELF_CHECK_OK = "self_check_ok", dict[str, ParamKind]()
    CAMERA_DENIED = "camera_denied", dict[str, ParamKind]()
    MICROPHONE_DENIED = "microphone_denied", dict[str, ParamKind]()
    CAMERA_MISSING = "camera_missing", dict[str, ParamKind]()
    MICROPHONE_MISSING = "microphone_missing", dict[str, ParamKind]()
    CAMERA_BLACK = "camera_black", dict[str, ParamKind]()
    CAMERA_FROZEN = "camera_frozen", dict[str, ParamKind]()
    MICROPHONE_SILENT = "microphone_silent", dict[str, ParamKind]()
    ADVICE_MOVE_CLOSER = "advice_move_closer", dict[str, ParamKind]()    # loss or jitter: the radio link
    ADVICE_CLOSE_APPS = "advice_close_apps", dict[str, ParamKind]()      # delay: a crowded uplink
    SELF_CHECK_NO_CONNECTION = "self_check_no_connection", {"error": _K.TEXT}
    # The live flow (rule 22, controller.live.words): the break it recommends, whose link, and why.
    LINK_LOST = "link_lost", {"terminal": _K.TEXT}
    BREAK_STALL = "break_stall", {"value": _K.SECONDS}
    BREAK_DROPOUTS = "break_dropouts", {"count": _K.COUNT, "window": _K.SECONDS, "value": _K.SECONDS}
    BREAK_UNUSABLE = "break_unusable", {"count": _K.COUNT, "window": _K.SECONDS}
    BREAK_FROZEN = "break_frozen", {"value": _K.SECONDS}
    BREAK_SILENT = "break_silent", {"value": _K.SECONDS}


# The parameters of the event sentences (the catalog's `events`), each declared once: a sentence that
# names a parameter not here fails tests/test_event_sentences.py.
EVENT_PARAMS: dict[str, ParamKind] = {
    "by": _K.TEXT, "name": _K.TEXT, "given_by": _K.TEXT, "case": _K.TEXT, "error": _K.TEXT, "channel": _K.TEXT,
    "event": _K.TEXT,
    "callee": _K.TERMINAL, "terminal": _K.TERMINAL,
    "pair": _K.TEXT,           # two terminals' names, caller → callee
    "finding": _K.TEXT,        # a finding's reason, already in the reader's language (text(...))
    "modes": _K.TEXT,          # each party with its way of taking part, already in the reader's language
    "start": _K.TIME, "deadline": _K.TIME, "detected": _K.TIME, "retry_at": _K.TIME,
    "after": _K.SECONDS, "duration": _K.SECONDS,
    "attempt": _K.COUNT, "attempts": _K.COUNT,
    "check": _K.LABEL, "status": _K.LABEL, "verdict": _K.LABEL, "cause": _K.LABEL, "reason": _K.LABEL,
    "trigger": _K.LABEL, "mode": _K.LABEL, "coordinator": _K.LABEL,
}


_BY_VALUE: dict[str, ReasonCode] = {c.value: c for c in ReasonCode}


def code_of(value: str) -> ReasonCode | None:
    """The code named `value`; None for a code this catalog does not know (a newer agent's)."""
    return _BY_VALUE.get(value)


@dataclass(frozen=True)
class Reason:
    """One reason: a code and its parameters (raw figures; None or absent: not known)."""
    code: ReasonCode
    params: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """`{code, params}` as a report carries it (absent parameters left out)."""
        return {"code": str(self.code),
                "params": {k: str(v) if isinstance(v, StrEnum) else v for k, v in self.params.items() if v is not None}}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Format(_Strict):
    """How a number is written: `digits` decimals (`fine_digits` below `fine_below`, except zero when
    `zero_coarse`), after multiplying by `scale`, then the language's unit."""
    scale: float = 1
    digits: int = 1
    fine_below: float | None = None
    fine_digits: int | None = None
    zero_coarse: bool = False
    unit: dict[str, str] = {}


class Catalog(_Strict):
    """contract/reasons.yaml, validated."""
    languages: list[str]
    formats: dict[str, Format]
    decimal_mark: dict[str, str]
    words: dict[str, dict[str, dict[str, str]]]
    codes: dict[str, dict[str, str]]
    events: dict[str, dict[str, str]]


@functools.cache
def catalog() -> Catalog:
    """The packaged catalog (read once)."""
    return configfile.validate(Catalog, configfile.read_yaml(PATH), PATH)


def served() -> dict[str, Any]:
    """What `GET /api/v1/reasons` gives the page: the catalog with each code's parameter kinds."""
    c = catalog().model_dump(mode="json")
    c["params"] = {str(code): {k: str(v) for k, v in code.params.items()} for code in ReasonCode}
    c["event_params"] = {k: str(v) for k, v in EVENT_PARAMS.items()}
    return c


def _number(value: float, fmt: Format, lang: str) -> str:
    v = float(value) * fmt.scale
    fine = (fmt.fine_below is not None and fmt.fine_digits is not None and abs(v) < fmt.fine_below
            and not (fmt.zero_coarse and v == 0))
    s = f"{v:.{fmt.fine_digits if fine else fmt.digits}f}"
    return s.replace(".", catalog().decimal_mark.get(lang, ".")) + fmt.unit.get(lang, "")


def _param(kind: ParamKind, value: Any, lang: str, names: Mapping[str, str] | None) -> str:
    c = catalog()
    if kind is ParamKind.DIRECTION and names and names.get("caller") and names.get("callee"):
        a, b = names["caller"], names["callee"]
        path = {"inbound": f"{b} → {a}", "outbound": f"{a} → {b}", "both": f"{a} ↔ {b}"}.get(str(value))
        if path:
            return path
    if kind in (ParamKind.DIRECTION, ParamKind.LEVEL):
        return word(kind, value, lang)
    if kind is ParamKind.TEXT or isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    return _number(value, c.formats[str(kind)], lang)


def word(kind: ParamKind, value: str, lang: str) -> str:
    """A word of the catalog (a direction, a level) in `lang`; the value itself when it has none."""
    entry = catalog().words[str(kind)].get(str(value))
    return entry.get(lang, entry["en"]) if entry else str(value)


def _tidy(s: str) -> str:
    """An absent parameter leaves no trace: empty brackets, doubled spaces, a space before a colon."""
    s = re.sub(r"\(\s*\)", "", s)
    s = re.sub(r" {2,}", " ", s)
    return re.sub(r" ([:,;])", r"\1", s).strip()


def text(reason: Reason | Mapping[str, Any], lang: str = "en", *,
         names: Mapping[str, str] | None = None) -> str:
    """The reason in `lang` (kk, ru, en). `names` ({caller, callee}: the terminals' names) turns a
    direction into the path it names. A code this catalog does not know gives the code and its
    parameters as they are (a newer agent's reason is still shown)."""
    if isinstance(reason, Reason):
        code, params = str(reason.code), reason.params
    else:
        code, params = str(reason.get("code")), dict(reason.get("params") or {})
    member = code_of(code)
    if member is None:
        return f"{code} {params}" if params else code
    texts = catalog().codes[code]
    template = texts.get(lang) or texts["en"]
    given = {k: _param(kind, params[k], lang, names)
             for k, kind in member.params.items() if params.get(k) is not None}
    # Tidy the template with the absent parameters gone, then fill in the rest: a value (an error
    # message) is shown exactly as it came.
    template = _tidy(re.sub(r"\{(\w+)\}", lambda m: m.group(0) if m.group(1) in given else "", template))
    return re.sub(r"\{(\w+)\}", lambda m: given[m.group(1)], template)


def _time(value: str, tz: str | None) -> str:
    t = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.UTC)
    try:
        zone: dt.tzinfo = ZoneInfo(tz or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        zone = dt.UTC
    return t.astimezone(zone).strftime("%d.%m.%Y %H:%M")


def event_text(kind: str, params: Mapping[str, Any], lang: str = "en", *, tz: str | None = None) -> str | None:
    """The sentence of an event of `kind` in `lang`, its parameters (EVENT_PARAMS) written by their
    kinds (a time in the zone `tz`); None when the catalog has no sentence for the kind or a parameter
    it names is not given (the reader then sees the kind's label). The page's reasons.js eventText
    follows the same rules."""
    texts = catalog().events.get(kind)
    if not texts:
        return None
    template = texts.get(lang) or texts["en"]
    given: dict[str, str] = {}
    for k, v in params.items():
        kind_of = EVENT_PARAMS.get(k)
        if kind_of is None or v is None or v == "":
            continue
        if kind_of is ParamKind.TIME:
            given[k] = _time(v, tz)
        elif kind_of in (ParamKind.SECONDS, ParamKind.COUNT):
            given[k] = _param(kind_of, v, lang, None)
        else:
            given[k] = str(v)
    if any(m.group(1) not in given for m in re.finditer(r"\{(\w+)\}", template)):
        return None
    s = re.sub(r"\{(\w+)\}", lambda m: given[m.group(1)], template)
    return s[:1].upper() + s[1:]
