"""Fresh results on the web page (issue 12 part 5), in a real headless chromium against a real
controller: the escalation the terminal watch opened for a terminal offline before tomorrow's
hearing reads in Kazakh, Russian and English, with the terminal named and since when it is away;
the hearing's record says it in a sentence; a scoped user of another court does not see it."""
from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import insert

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
        "kk": ("терминал қолжетімсіз", f"{sizo}", "бастап байланыста жоқ", "Техникалық мамандарға хабарланды"),
        "ru": ("терминал недоступен", f"{sizo} не на связи с", "", "Технические специалисты обеих сторон"),
        "en": ("terminal unreachable", f"{sizo} offline since", "", "technicians of both sides told"),
    }
    async with browser() as b:
        page = await new_page(b)
        await sign_in(page, c.base, "technician-1")
        for lang, (cause, about, tail, _) in expected.items():
            await set_lang(page, lang)
            await page.goto(f"{c.base}#escalations")
            row = page.locator(f"tr[data-escalation='{e['id']}']")
            await row.wait_for()
            assert (await row.locator(".badge").first.inner_text()).strip() == cause
            line = await row.locator("div.about").inner_text()
            assert line.startswith(about) and hm in line and tail in line, line
            await shot(page, f"escalation-offline-{lang}")
        # The hearing's record: the escalation opened, in a sentence with its cause (still English).
        await page.goto(f"{c.base}#hearing/{c.hearing_id}")
        opened = page.locator("tr[data-kind='escalation_opened'] td.sentence")
        await opened.wait_for()
        said = (await opened.inner_text()).lower()
        assert "terminal unreachable" in said, said
        assert page.errors == []
