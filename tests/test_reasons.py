"""The catalog of reason codes (contract.reasons, contract/reasons.yaml): every code has its text in
Kazakh, Russian and English naming exactly its parameters; the quality model's `reasons` are its
`reason_codes` rendered in English, so the two never disagree; numbers are written in each
language's way; a direction becomes the path it names when the terminals are known."""
from __future__ import annotations

import re

import pytest
from hypothesis import given

from contract import quality
from contract.reasons import LANGS, ParamKind, Reason, ReasonCode, catalog, code_of, served, text
from contract.reports import Interval, SessionReport
from tests.strategies import intervals, session_reports

HEARING = quality.select(quality.load_thresholds())
NUMBERS = {ParamKind.PERCENT, ParamKind.MS, ParamKind.FPS, ParamKind.SECONDS, ParamKind.MOS, ParamKind.COUNT}


@pytest.mark.parametrize("code", list(ReasonCode))
def test_every_code_has_its_text_in_three_languages_naming_exactly_its_parameters(code):
    texts = catalog().codes[code]
    assert set(texts) == set(LANGS), code
    for lang in LANGS:
        named = set(re.findall(r"\{(\w+)\}", texts[lang]))
        assert named == set(code.params), (code, lang, named)


def test_the_catalog_knows_no_code_outside_the_enum_and_every_kind_is_written_somehow():
    c = catalog()
    assert set(c.codes) == {str(code) for code in ReasonCode}
    kinds = {kind for code in ReasonCode for kind in code.params.values()}
    for kind in kinds & NUMBERS:
        fmt = c.formats[kind]
        assert not fmt.unit or set(fmt.unit) == set(LANGS), kind
    for kind in kinds & {ParamKind.DIRECTION, ParamKind.LEVEL}:
        assert all(set(word) == set(LANGS) for word in c.words[kind].values()), kind
    assert set(c.words["direction"]) == {"inbound", "outbound", "both"}
    assert set(c.words["level"]) == {"degraded", "unusable"}
    assert set(served()["params"]) == set(c.codes)


def _agree(j: quality.Judgement) -> None:
    assert len(j.reasons) == len(j.reason_codes)
    assert j.reasons == [text(rc) for rc in j.reason_codes]
    for rc in j.reason_codes:
        code = code_of(rc["code"])
        assert code is not None and set(rc["params"]) <= set(code.params), rc
        for lang in LANGS:
            # No placeholder left unfilled - a parameter's own text may hold braces (an error
            # message "{" did, found by the random profile), so what the values wrote is taken out.
            rendered = text(rc, lang)
            for value in rc["params"].values():
                if isinstance(value, str):
                    rendered = rendered.replace(value, "")
            assert not re.search(r"\{\w*\}", rendered), (rc, lang)


@given(session_reports)
def test_a_reports_reasons_are_its_reason_codes_in_english(report):
    _agree(quality.judge_report(SessionReport.model_validate(report), HEARING))


@given(intervals)
def test_a_seconds_reasons_are_its_reason_codes_in_english(interval):
    _agree(quality.judge_interval(Interval.model_validate(interval), HEARING))


def test_a_lossy_inbound_direction_in_three_languages_and_with_the_terminals_named():
    j = quality.judge(quality.Figures(rtt_ms=40, jitter_ms=2, loss_ratio=0.115), HEARING, direction="inbound")
    [loss] = [rc for rc in j.reason_codes if rc["code"] == "loss_high"]
    assert loss == {"code": "loss_high",
                    "params": {"direction": "inbound", "value": 0.115, "limit": 0.03, "level": "unusable"}}
    assert text(loss) == "inbound loss 11.5% > 3.0% (unusable)" == j.reasons[0]
    assert text(loss, "ru") == "Потери пакетов 11,5 % выше предела 3,0 % — непригодно (входящий поток)"
    assert text(loss, "kk") == "Пакеттердің жоғалуы 11,5 %, 3,0 % шегінен жоғары — жарамсыз (кіріс ағын)"
    names = {"caller": "Медеуский суд, зал 1", "callee": "СИЗО ДС-70/1"}
    assert text(loss, "ru", names=names).endswith("(СИЗО ДС-70/1 → Медеуский суд, зал 1)")
    out = {**loss, "params": {**loss["params"], "direction": "outbound"}}
    assert text(out, "kk", names=names).endswith("(Медеуский суд, зал 1 → СИЗО ДС-70/1)")


def test_numbers_keep_the_models_precision_and_an_absent_parameter_leaves_no_trace():
    small = Reason(ReasonCode.LOSS_HIGH, {"value": 0.004, "limit": 0.003, "level": "degraded"})
    assert text(small) == "loss 0.40% > 0.30% (degraded)"
    assert text(small, "ru") == "Потери пакетов 0,40 % выше предела 0,30 % — качество снижено"
    delay = Reason(ReasonCode.DELAY_RTT_HIGH, {"direction": "both", "value": 170.4, "limit": 150, "level": "degraded"})
    assert text(delay) == "both directions one-way delay (RTT/2) 170 ms > 150 ms (degraded)"
    assert text(delay, "kk").startswith("Бір бағыттағы кідіріс (RTT жартысы) 170 мс, 150 мс шегінен жоғары")
    assert text(Reason(ReasonCode.JITTER_HIGH, {"value": 8.25, "limit": 5, "level": "degraded"}), "ru") \
        == "Джиттер 8,2 мс выше предела 5,0 мс — качество снижено"


def test_an_error_is_shown_exactly_as_it_came_and_an_unknown_code_as_it_is():
    err = {"code": "not_connected", "params": {"error": "TimeoutError() : {x}  (a)"}}
    assert text(err) == "not connected: TimeoutError() : {x}  (a)"
    assert text(err, "ru") == "Соединение не установлено: TimeoutError() : {x}  (a)"
    assert text({"code": "capacity_low_from_a_newer_agent", "params": {"kbps": 400}}) == \
        "capacity_low_from_a_newer_agent {'kbps': 400}"


def test_a_parameter_with_braces_is_written_as_it_is():
    rc = {"code": "not_connected", "params": {"error": "bad {json} {"}}
    for lang in LANGS:
        assert text(rc, lang).endswith(": bad {json} {"), lang
