"""Fresh results on the web page (issue 12 part 5), in a real headless chromium against a real
controller: the escalation the terminal watch opened for a terminal offline before tomorrow's
hearing reads in Kazakh, Russian and English, with the terminal named and since when it is away;
the hearing's record says it in a sentence; a scoped user of another court does not see it."""
from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import insert

from controller.store import events as events_repo
from controller.store import users as users_repo
from controller.store.schema import agent_presence
from tests.browser import PASSWORD, browser, new_page, requires_browser, set_lang, shot, sign_in
from tests.conftest import FakeClock
from tests.controller_kit import Controller

pytestmark = [requires_browser, pytest.mark.timeout(120)]
H = dt.timedelta(hours=1)


@pytest.fixture
async def offline(tmp_path):
    """A hearing tomorrow; the SIZO's terminal went away before the controller started, and the watch ran."""
    clock = FakeClock(dt.datetime.now(dt.UTC).replace(second=0, microsecond=0))
    fresh = {"freshness": {"watch_s": 60, "offline_after_s": 300, "watch_horizon_h": 48}}
    async with Controller(f"sqlite:///{tmp_path / 'controller.sqlite'}", clock, **fresh) as c:
        c.base = str(c.client.make_url("/"))
        _, h = await c.schedule(start=clock() + 20 * H, case="2-301/2026")
        gone = clock() - dt.timedelta(minutes=10)
        async with c.db.transaction() as conn:
            for tid, online in (("court-almaty-1", True), ("sizo-almaty-1", False)):
                await conn.execute(insert(agent_presence).values(
                    terminal_id=tid, controller_id="c1" if online else None,
                    lease_until=clock() + H if online else None, last_seen=gone, connected_at=gone))
            await users_repo.set_password(conn, "technician-1", await users_repo.password_hash(PASSWORD), clock())
            # What a nightly pair test and a retried test write in the hearing's record.
            pair = {"caller": "court-almaty-1", "callee": "sizo-almaty-1", "nightly": True}
            await events_repo.append(conn, h["id"], "pair_test_result", gone, {
                **pair, "session_id": "nightly-0123456789abcdef", "status": "passed", "verdict": "good",
                "reasons": [], "reason_codes": [], "attempt": 0})
            await events_repo.append(conn, h["id"], "test_retry_planned", gone, {
                **pair, "attempt": 1, "attempts": 3, "retry_at": (gone + dt.timedelta(minutes=10)).isoformat()})
        await c.scheduler.run_until_idle()
        clock.advance(minutes=6)            # the watch counts no one away longer than it has been running
        await c.scheduler.run_until_idle()
        c.hearing_id = h["id"]
        c.gone = gone
        yield c


async def test_the_offline_terminals_escalation_in_three_languages(offline):
    c = offline
    [e] = (await c.call("GET", "/api/v1/escalations", role="technician", expect=200))[1]["items"]
    assert (e["cause"], e["detail"]["terminal_id"], e["detail"]["reason"]) == \
        ("agent_offline", "sizo-almaty-1", "terminal_offline")
    sizo = (await c.call("GET", "/api/v1/terminals/sizo-almaty-1", expect=200))[1]["name"]
    local = c.gone.astimezone(dt.timezone(dt.timedelta(hours=5)))       # the court's zone, Asia/Almaty
    # The page's time without the zone: day.month and HH:MM in every language (i18n.js).
    hm = local.strftime("%H:%M")
    expected = {
        "kk": ("терминал қолжетімсіз", f"{sizo}", "бастап байланыста жоқ"),
        "ru": ("терминал недоступен", f"{sizo} не на связи с", ""),
        "en": ("terminal unreachable", f"{sizo} offline since", ""),
    }
    async with browser() as b:
        page = await new_page(b)
        await sign_in(page, c.base, "technician-1")
        for lang, (cause, about, tail) in expected.items():
            await set_lang(page, lang)
            await page.goto(f"{c.base}#escalations")
            row = page.locator(f"tr[data-escalation='{e['id']}']")
            await row.wait_for()
            assert (await row.locator(".badge").first.inner_text()).strip() == cause
            line = await row.locator("div.about").inner_text()
            assert line.startswith(about) and hm in line and tail in line, line
            await shot(page, f"escalation-offline-{lang}")
        # The hearing's record: the nightly test, the retry planned and the escalation, in sentences.
        court = (await c.call("GET", "/api/v1/terminals/court-almaty-1", expect=200))[1]["name"]
        pair = f"{court} → {sizo}"
        lines = {
            "kk": (f"{pair} түнгі сынағы: өтті, сапасы — жақсы", f"{pair} сынақ сеансы өтпеді; 3 қайталаудың 1-сі — ",
                   "терминал қолжетімсіз"),
            "ru": (f"ночной тест {pair}: пройдено, качество — хорошо",
                   f"тестовый сеанс {pair} не пройден; повтор 1 из 3 в ", "терминал недоступен"),
            "en": (f"nightly test {pair}: passed, quality good", f"test session {pair} failed; retry 1 of 3 at ",
                   "terminal unreachable"),
        }
        for lang, (result, retry, cause) in lines.items():
            await set_lang(page, lang)
            await page.goto(f"{c.base}#hearing/{c.hearing_id}")
            said = {}
            for kind in ("pair_test_result", "test_retry_planned", "escalation_opened"):
                cell = page.locator(f"tr[data-kind='{kind}'] td.sentence")
                await cell.wait_for()
                said[kind] = (await cell.inner_text()).lower()
            assert said["pair_test_result"].startswith(result.lower()), said
            assert said["test_retry_planned"].startswith(retry.lower()), said
            assert cause in said["escalation_opened"], said
            assert "nightly-0123456789abcdef" not in said["pair_test_result"]      # folded away
            await shot(page, f"hearing-fresh-{lang}")
        assert page.errors == []
