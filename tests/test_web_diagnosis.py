"""Which side on the web page (issue 12, part 2), in a real headless chromium against a real
controller: a degraded check's finding - the SIZO's access link loses 7 % toward the data centre, the
court's side is clean - on the hearing's check and as a sentence in its event record, and an on-demand
test's finding on the test page, in Kazakh, Russian and English, rendered from the one catalog."""
from __future__ import annotations

import asyncio
import datetime as dt

import pytest

from contract.reasons import LANGS, text
from controller.keys import DIAGNOSIS_KEY
from controller.store import users as users_repo
from tests.browser import PASSWORD, browser, new_page, requires_browser, set_lang, shot, sign_in
from tests.conftest import FakeClock
from tests.controller_kit import Controller, report
from tests.diagnosis_kit import SideAgents

pytestmark = [requires_browser, pytest.mark.timeout(180)]
H = dt.timedelta(hours=1)
LABEL = {"kk": "Қай тарап", "ru": "Чья сторона", "en": "Which side"}


@pytest.fixture
async def diagnosed(tmp_path):
    clock = FakeClock(dt.datetime.now(dt.UTC).replace(microsecond=0))
    holder: dict = {}
    gw = SideAgents(lambda: holder["c"])
    gw.side = {"court-almaty-1": report("good"), "sizo-almaty-1": report("degraded", loss=0.07)}
    async with Controller(f"sqlite:///{tmp_path / 'controller.sqlite'}", clock, gateway=gw,
                          diagnosis={"duration_s": 5}) as c:
        holder["c"] = c
        c.base = str(c.client.make_url("/"))
        _, h = await c.schedule(start=clock() + 3 * H, case="2-301/2026")
        await c.scheduler.run_until_idle()
        await c.checks.on_session_result(c.gw.started[-1]["session_id"], report("degraded", loss=0.07))
        await asyncio.wait_for(c.app[DIAGNOSIS_KEY].idle(), 30)
        async with c.db.transaction() as conn:
            await users_repo.set_password(conn, "technician-1", await users_repo.password_hash(PASSWORD), clock())
        _, c.hearing = await c.call("GET", f"/api/v1/hearings/{h['id']}", expect=200)
        yield c


async def test_the_finding_on_the_hearing_and_the_test_page_in_three_languages(diagnosed):
    item = diagnosed.hearing["test_request"]["items"][0]
    f = item["finding"]
    assert (f["code"], f["side"]) == ("access_link_b", "sizo-almaty-1")
    said = {lang: text({"code": f["code"], "params": f["params"]}, lang) for lang in LANGS}
    assert "7,0 %" in said["kk"] and "7,0 %" in said["ru"] and "loses 7.0%" in said["en"]
    assert said["en"] == f["text"]
    async with browser() as b:
        page = await new_page(b)
        await sign_in(page, diagnosed.base, "technician-1")
        for lang in LANGS:
            await set_lang(page, lang)
            await page.goto(f"{diagnosed.base}#hearing/{diagnosed.hearing['id']}")
            shown = page.locator(f"tr[data-check='{item['id']}'] p.finding")
            await shown.wait_for()
            assert await shown.inner_text() == f"{LABEL[lang]}: {said[lang]}"
            assert await shown.get_attribute("data-code") == "access_link_b"
            event = page.locator("tr[data-kind='check_finding'] td.sentence")
            await event.wait_for()
            sentence = await event.inner_text()
            assert sentence.endswith(said[lang]), sentence
            assert "check_finding" not in sentence and "access_link_b" not in sentence
            await shot(page, f"hearing-finding-{lang}")

        # An on-demand test, degraded the same way: its finding comes on the test page once the
        # side tests are done.
        diagnosed.gw.pair = report("degraded", loss=0.07)
        await set_lang(page, "ru")
        await page.goto(f"{diagnosed.base}#test")
        await page.select_option("#test-caller", "court-almaty-1")
        await page.select_option("#test-callee", "sizo-almaty-1")
        await page.fill("#test-duration", "5")
        await page.locator("#test-duration").press("Enter")
        shown = page.locator("#test-out p.finding[data-code]")
        await shown.wait_for(timeout=30_000)
        assert await shown.inner_text() == f"{LABEL['ru']}: {said['ru']}"
        await shot(page, "test-finding-ru")
