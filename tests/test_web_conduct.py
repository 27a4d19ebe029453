"""Issue 13's "Done when", parts 2 and 6, in a real headless chromium against a real controller:
a secretary signed in with her password starts and ends a hearing from its page and records each
party's way of taking part - a remote terminal and a named person - again when the page asks after
a postponement; a coordinator sees her pending agreement on #agreements with the test results beside
and gives it. Every screen in kk, ru and en and on a narrow screen: one pass each, one browser."""
from __future__ import annotations

import datetime as dt

import pytest

from contract import reasons
from controller.store import events as events_repo
from controller.store import users as users_repo
from tests.browser import PASSWORD, browser, catalog, new_page, requires_browser, set_lang, shot, sign_in
from tests.conftest import FakeClock
from tests.controller_kit import Controller, report

pytestmark = [requires_browser, pytest.mark.timeout(240)]
# (language, viewport width): the three languages on a desktop, then Kazakh on a phone.
PASSES = [("kk", 1280), ("ru", 1280), ("en", 1280), ("kk", 390)]
SIZO = "sizo-almaty-1"


@pytest.fixture
async def ctl(tmp_path):
    clock = FakeClock(dt.datetime.now(dt.UTC).replace(microsecond=0))
    async with Controller(f"sqlite:///{tmp_path / 'controller.sqlite'}", clock) as c:
        c.base = str(c.client.make_url("/"))
        _, u = await c.call("POST", "/api/v1/users", expect=201, json={
            "name": "coord-almaty", "role": "coordinator", "scope": "regional", "regions": ["Almaty"]})
        c.hearings = []
        for i in range(len(PASSES)):
            _, h = await c.schedule(start=clock() + dt.timedelta(hours=3 + 2 * i), case=f"2-{401 + i}/2026")
            c.hearings.append(h["id"])
        # The first hearing's test session found the link unusable: the coordinator sees why.
        await c.scheduler.run_until_idle()
        await c.checks.on_session_result(c.gw.started[0]["session_id"], report("unusable", loss=0.2))
        async with c.db.transaction() as conn:
            for name in ("secretary-1", "coord-almaty"):
                await users_repo.set_password(conn, name, await users_repo.password_hash(PASSWORD), clock())
        yield c


async def modes(ctl, hid: int) -> dict:
    return (await ctl.call("GET", f"/api/v1/hearings/{hid}/modes", expect=200))[1]


async def test_a_secretary_starts_and_ends_a_hearing_and_records_each_party_s_mode(ctl):
    async with browser() as b:
        for n, (lang, width) in enumerate(PASSES):
            words = catalog(lang)
            hid = ctl.hearings[n]
            page = await new_page(b, width=width, height=844 if width < 600 else 800)
            await sign_in(page, ctl.base, "secretary-1")
            await set_lang(page, lang)
            assert await page.locator('#nav a[data-view="agreements"]').is_hidden()     # not hers
            await page.goto(f"{ctl.base}#hearing/{hid}")
            card = page.locator("section.modes")
            await card.wait_for()
            assert await card.locator("h3").inner_text() == words["conduct.modes"]
            assert await page.locator(".ask-modes").count() == 0
            # Each party: the remote terminal preset to VKS; a named person added.
            terminal = card.locator(f"tr[data-party='{SIZO}'] select")
            assert await terminal.input_value() == "vks"
            assert await terminal.locator("option").all_inner_texts() == [
                words[f"mode.{m}"] for m in ("vks", "mobile", "in_person")]
            await card.locator("input[id^='person-name-']").fill("Серикова А. Б.")
            await card.locator("input[id^='person-kind-']").fill("адвокат")
            await card.locator("button.add-person").click()
            person = card.locator("tr[data-party='name:Серикова А. Б.'] select")
            assert await person.input_value() == "in_person"
            await person.select_option("mobile")
            put = f"/hearings/{hid}/modes"
            async with page.expect_response(lambda r, put=put: r.url.endswith(put)
                                            and r.request.method == "PUT") as saved:
                await card.locator("button.save-modes").click()
            assert (await saved.value).ok
            got = await modes(ctl, hid)
            assert [(p["terminal_id"], p["name"], p["kind"], p["mode"], p["recorded_by"]) for p in got["parties"]] == [
                (SIZO, None, None, "vks", "secretary-1"), (None, "Серикова А. Б.", "адвокат", "mobile", "secretary-1")]
            # Postponed (the API here; the page's Postpone is another part of the issue): the page asks
            # for each party's mode again, preset to the last recorded (rule 23).
            await ctl.call("PATCH", f"/api/v1/hearings/{hid}", role="secretary", json={"status": "postponed"},
                           expect=200)
            await page.reload()
            ask = page.locator(".ask-modes")
            await ask.wait_for()
            assert await ask.inner_text() == words["conduct.ask.postponement"]
            card = page.locator("section.modes")
            assert await card.locator(f"tr[data-party='{SIZO}'] select").input_value() == "vks"
            assert await card.locator("tr[data-party='name:Серикова А. Б.'] select").input_value() == "mobile"
            await card.locator(f"tr[data-party='{SIZO}'] select").select_option("in_person")
            await card.locator("button.save-modes").click()
            await page.locator(".ask-modes").wait_for(state="detached")
            got = await modes(ctl, hid)
            assert [p["mode"] for p in got["parties"]] == ["in_person", "mobile"] and got["ask"] is None
            assert got["parties"][0]["occasion"] == "postponement"
            # Start and end the hearing from its page (any time before its start).
            start = page.locator("button.start-hearing")
            assert await start.inner_text() == words["conduct.start"]
            await start.click()
            end = page.locator("button.end-hearing")
            await end.wait_for()
            assert await end.inner_text() == words["conduct.end"]
            assert (await ctl.hearing(hid))["status"] == "in_progress"
            if n == 0:
                # A break and the resumption (the live flow's events; tests/test_live_flow.py drives the
                # real one) while the page is open: it asks at once for each party's mode (rule 23).
                async with ctl.db.transaction() as conn:
                    for kind in ("break", "resume"):
                        await events_repo.append(conn, hid, kind, ctl.clock(), {"break_id": 1, "by": "secretary-1"})
                ask = page.locator(".ask-modes")
                await ask.wait_for()
                assert await ask.inner_text() == words["conduct.ask.break"]
                card = page.locator("section.modes")
                await card.locator(f"tr[data-party='{SIZO}'] select").select_option("vks")
                await card.locator("button.save-modes").click()
                await ask.wait_for(state="detached")
                got = await modes(ctl, hid)
                assert [(p["mode"], p["occasion"]) for p in got["parties"]] == [("vks", "break"), ("mobile", "break")]
            if width < 600:
                assert await page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
            await shot(page, f"hearing-conduct-{lang}-{width}")
            await end.click()
            await page.wait_for_selector("tr[data-kind='hearing_ended']")
            assert (await ctl.hearing(hid))["status"] == "held"
            assert await page.locator("button.start-hearing, button.end-hearing").count() == 0
            # The record in sentences of the page's language, the parties named.
            sentence = page.locator("tr[data-kind='hearing_started'] td.sentence")
            assert await sentence.inner_text() == reasons.event_text("hearing_started", {"by": "secretary-1"}, lang)
            recorded = await page.locator("tr[data-kind='mode_recorded'] td.sentence").all_inner_texts()
            assert len(recorded) == (3 if n == 0 else 2), recorded
            assert any(words["mode.in_person"] in r for r in recorded), recorded
            assert all("Серикова А. Б." in r for r in recorded), recorded
            assert page.errors == [], (lang, width, page.errors)
            await page.context.close()


async def test_a_coordinator_sees_and_gives_her_pending_agreement(ctl):
    async with browser() as b:
        for n, (lang, width) in enumerate(PASSES):
            words = catalog(lang)
            page = await new_page(b, width=width, height=844 if width < 600 else 800)
            await sign_in(page, ctl.base, "coord-almaty")
            await set_lang(page, lang)
            await page.click('#nav a[data-view="agreements"]')
            await page.wait_for_selector("table.agreements")
            assert await page.locator("#view h2").inner_text() == words["agreements.title"]
            rows = page.locator("table.agreements tbody tr")
            assert await rows.count() == len(PASSES) - n            # one given in each pass before
            # The first hearing's failed test beside it: the verdict and the reasons in words.
            first = page.locator(f"tr[data-hearing='{ctl.hearings[-1]}']") if n else \
                page.locator(f"tr[data-hearing='{ctl.hearings[0]}']")
            if n == 0:
                last = first.locator(".last-check")
                assert words["verdict.unusable"] in await last.inner_text()
                assert await last.locator("ul.reasons li").count() >= 1
            else:
                assert await first.locator(".last-check").inner_text() == words["agreements.no_check"]
            give = page.locator(f"tr[data-hearing='{ctl.hearings[n]}'] button.give-agreement")
            assert await give.inner_text() == words["hearing.agree"]
            if width < 600:
                assert await page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
            await shot(page, f"agreements-{lang}-{width}")
            await give.click()
            await page.wait_for_selector(f"tr[data-hearing='{ctl.hearings[n]}']", state="detached")
            h = await ctl.hearing(ctl.hearings[n])
            assert h["agreement"]["state"] == "given" and h["agreement"]["by"] == "coord-almaty"
            assert page.errors == [], (lang, width, page.errors)
            await page.context.close()
        # Nothing left: the page says so.
        page = await new_page(b)
        await sign_in(page, ctl.base, "coord-almaty")
        await set_lang(page, "ru")
        await page.goto(f"{ctl.base}#agreements")
        assert await page.locator("p.none").inner_text() == catalog("ru")["agreements.none"]
        assert page.errors == []
