"""Plain words on the web page (issue 12, part 3), in a real headless chromium against a real
controller judging with the real quality model: a failed check shows its reasons in the page's
language with the terminals named, and the event record reads as sentences with the technical
detail (session ids, raw figures) folded away."""
from __future__ import annotations

import datetime as dt
import re

import pytest

from contract import quality
from contract.reasons import EVENT_PARAMS, LANGS, ParamKind, ReasonCode, event_text, text
from contract.reasons import catalog as event_catalog
from controller.checks import quality_judge
from controller.store import users as users_repo
from tests.browser import PASSWORD, browser, new_page, requires_browser, set_lang, shot, sign_in
from tests.conftest import FakeClock
from tests.controller_kit import Controller, report

pytestmark = [requires_browser, pytest.mark.timeout(120)]
H = dt.timedelta(hours=1)



@pytest.fixture
async def failed(tmp_path):
    """A hearing whose test session lost 20 % of what the SIZO sent to the court (the caller's
    inbound direction); the other way was clean."""
    clock = FakeClock(dt.datetime.now(dt.UTC).replace(microsecond=0))
    profiles = quality.load_thresholds()
    judge = quality_judge(profiles, quality.select(profiles))
    async with Controller(f"sqlite:///{tmp_path / 'controller.sqlite'}", clock, judge=judge) as c:
        c.base = str(c.client.make_url("/"))
        _, h = await c.schedule(start=clock() + 3 * H, case="2-201/2026")
        await c.scheduler.run_until_idle()
        lossy = report("unusable")
        lossy["inbound"] = {**lossy["inbound"], "lost": 200, "loss_ratio": 0.2}
        await c.checks.on_session_result(c.gw.started[-1]["session_id"], lossy)
        async with c.db.transaction() as conn:
            await users_repo.set_password(conn, "technician-1", await users_repo.password_hash(PASSWORD), clock())
        _, c.hearing = await c.call("GET", f"/api/v1/hearings/{h['id']}", expect=200)
        yield c


async def test_a_failed_checks_reasons_and_the_event_record_in_three_languages(failed):
    item = failed.hearing["test_request"]["items"][0]
    assert item["status"] == "failed" and item["reason_codes"][0]["code"] == "loss_high"
    court = (await failed.call("GET", "/api/v1/terminals/court-almaty-1", expect=200))[1]["name"]
    sizo = (await failed.call("GET", "/api/v1/terminals/sizo-almaty-1", expect=200))[1]["name"]
    path = f"{sizo} → {court}"            # inbound: what the court's terminal (the caller) received
    expected = {
        "kk": (f"Пакеттердің жоғалуы 20,0 %, 3,0 % шегінен жоғары — жарамсыз ({path})",
               f"Сынақ сеансы {court} → {sizo}: өтпеді", "Техникалық мәліметтер"),
        "en": (f"{path} loss 20.0% > 3.0% (unusable)", f"Test session {court} → {sizo}: failed",
               "Technical details"),
        "ru": (f"Потери пакетов 20,0 % выше предела 3,0 % — непригодно ({path})",
               f"Тестовый сеанс {court} → {sizo}: не пройдено", "Технические подробности"),
    }
    async with browser() as b:
        page = await new_page(b)
        await sign_in(page, failed.base, "technician-1")
        for lang, (reason, sentence, technical) in expected.items():
            await set_lang(page, lang)
            await page.goto(f"{failed.base}#hearing/{failed.hearing['id']}")
            await page.wait_for_selector(f"tr[data-check='{item['id']}'] ul.reasons li")
            reasons = await page.locator(f"tr[data-check='{item['id']}'] ul.reasons li").all_inner_texts()
            assert reasons[0] == reason, reasons
            assert not any("inbound" in r or "outbound" in r for r in reasons) or lang == "en", reasons

            result = page.locator("tr[data-kind='check_result']")
            await result.wait_for()
            said = await result.locator("td.sentence").inner_text()
            assert said.lower().startswith(sentence.lower()), said
            assert reason in said, said                             # the event says why too
            # The session id is there for a technician, folded away from the sentence.
            details = result.locator("details.technical")
            assert await details.locator("summary").inner_text() == technical
            assert item["session_id"] not in said
            assert not await details.locator("dd", has_text=item["session_id"]).is_visible()
            await details.locator("summary").click()
            assert await details.locator("dd", has_text=item["session_id"]).is_visible()
            await shot(page, f"hearing-reasons-{lang}")

        # The terminals' page (still in Russian): each terminal's last check with its reasons; the
        # hearings' list: on the check's cell.
        await page.click('#nav a[data-view="terminals"]')
        last = page.locator("tr[data-terminal='sizo-almaty-1'] ul.reasons li").first
        await last.wait_for()
        assert await last.inner_text() == expected["ru"][0]
        await page.click('#nav a[data-view="hearings"]')
        cell = page.locator("table.hearings tbody tr", has_text="2-201/2026").locator("div.check").first
        await cell.wait_for()
        assert expected["ru"][0] in (await cell.get_attribute("title") or "")
        assert page.errors == []


def samples() -> list[dict]:
    """Every code with figures of every sort: exact halves (8.25 ms, 12.5 ms), tiny and zero ratios,
    long fractions, an error with brackets; with and without the terminals named."""
    values = {ParamKind.PERCENT: [0.115, 0.0, 0.00949, 0.0095, 0.03, 0.2, 1.0],
              ParamKind.MS: [8.25, 12.5, 170.4, 0.0, 9.95, 150, 4.75],
              ParamKind.FPS: [4.5, 7.25, 10, 0.05, 29.97, 1, 3.0],
              ParamKind.SECONDS: [4.0, 1.25, 0.0, 2, 10.75, 3.05, 0.5],
              ParamKind.MOS: [2.3220993651465873, 3.1, 4.125, 1.0, 3.605, 2.5, 4.4],
              ParamKind.COUNT: [3, 2, 12, 1, 0, 7, 100],
              ParamKind.KBPS: [514.0, 2500, 0.0, 899.5, 700, 1966.08, 12.5],
              ParamKind.DIRECTION: ["inbound", "outbound", "both", "inbound", "outbound", "both", "inbound"],
              ParamKind.LEVEL: ["degraded", "unusable"] * 3 + ["unusable"],
              ParamKind.TEXT: ["ICE failed", "TimeoutError() : {x}", "no answer (15 s)", "", "a", "b", "c"]}
    out = []
    for code in ReasonCode:
        for i in range(7):
            params = {k: values[kind][(i + j) % 7] for j, (k, kind) in enumerate(code.params.items())}
            if i == 3:
                params.pop("direction", None)        # an absent parameter
            out.append({"code": str(code), "params": params})
    return out


async def test_the_page_writes_every_reason_as_the_controller_does(failed):
    """The page's renderer (reasons.js) and contract.reasons.text give the same text for every code
    in every language, with and without the terminals named: one catalog, one set of rules."""
    cases = samples()
    names = {"caller": "Медеуский суд, зал 1", "callee": "СИЗО ДС-70/1"}
    async with browser() as b:
        page = await new_page(b)
        await sign_in(page, failed.base, "technician-1")
        got = await page.evaluate("""async ([cases, names, langs]) => {
            const m = await import("/static/reasons.js");
            return langs.map((lang) => cases.map(
                (rc) => [m.reasonText(rc, null, lang), m.reasonText(rc, names, lang)]));
        }""", [cases, names, list(LANGS)])
        assert page.errors == []
    for lang, rendered in zip(LANGS, got, strict=True):
        want = [[text(rc, lang), text(rc, lang, names=names)] for rc in cases]
        assert rendered == want, lang


def event_samples() -> list[dict]:
    """Every event kind with parameters of every sort (times either side of midnight in the court's
    zone, exact halves of a second, counts), once with all of them and once with one missing."""
    values = {ParamKind.TIME: ["2026-12-03T18:59:30Z", "2026-06-30T04:05:00+00:00"],
              ParamKind.SECONDS: [41.25, 0.5, 12], ParamKind.COUNT: [3, 1],
              ParamKind.TEXT: ["secretary-1", "TimeoutError() : {x}"], ParamKind.TERMINAL: ["СИЗО ДС-70/1"],
              ParamKind.LABEL: ["не пройдено", "degraded"]}
    out = []
    for kind in event_catalog().events:
        for i in range(3):
            params = {k: values[pk][(i + j) % len(values[pk])] for j, (k, pk) in enumerate(EVENT_PARAMS.items())}
            if i == 2:
                params.pop(next(iter(re.findall(r"\{(\w+)\}", event_catalog().events[kind]["en"])), "by"), None)
            out.append({"kind": kind, "params": params, "tz": ["Asia/Almaty", "Europe/Moscow", "Asia/Aqtobe"][i]})
    return out


async def test_the_page_writes_every_event_sentence_as_the_act_does(failed):
    """reasons.js eventText (the page's record) and contract.reasons.event_text (the act's) give the
    same sentence for every event kind in every language; a sentence missing a word is None on both."""
    cases = event_samples()
    async with browser() as b:
        page = await new_page(b)
        await sign_in(page, failed.base, "technician-1")
        got = await page.evaluate("""async ([cases, langs]) => {
            const m = await import("/static/reasons.js");
            await m.loadReasons();
            return langs.map((lang) => cases.map((c) => m.eventText(c.kind, c.params, c.tz, lang)));
        }""", [cases, list(LANGS)])
        assert page.errors == []
    for lang, rendered in zip(LANGS, got, strict=True):
        want = [event_text(c["kind"], c["params"], lang, tz=c["tz"]) for c in cases]
        assert rendered == want, lang
    assert any(w is None for w in want) and sum(w is not None for w in want) > 100
