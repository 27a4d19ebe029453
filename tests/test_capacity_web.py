"""Capacity on the web page (issue 12, part 1), in a real headless chromium against a real
controller: a rule-13 check whose report carries `capacity` shows kb/s each way, with the
terminals named and what limited each direction, in Kazakh, Russian and English."""
from __future__ import annotations

import datetime as dt
import re

import pytest

from contract import quality
from controller.checks import quality_judge
from controller.store import users as users_repo
from tests.browser import PASSWORD, browser, new_page, requires_browser, set_lang, shot, sign_in
from tests.conftest import FakeClock
from tests.controller_kit import Controller, report
from tests.test_capacity_controller import with_capacity

pytestmark = [requires_browser, pytest.mark.timeout(120)]
H = dt.timedelta(hours=1)


def ungrouped(s: str) -> str:
    return re.sub(r"(?<=\d)[\s\u00a0\u202f,.](?=\d{3}\b)", "", s)


async def test_a_checks_capacity_in_three_languages(tmp_path):
    clock = FakeClock(dt.datetime.now(dt.UTC).replace(microsecond=0))
    profiles = quality.load_thresholds()
    judge = quality_judge(profiles, quality.select(profiles))
    async with Controller(f"sqlite:///{tmp_path / 'controller.sqlite'}", clock, judge=judge) as c:
        base = str(c.client.make_url("/"))
        _, h = await c.schedule(start=clock() + 3 * H, case="2-301/2026")
        await c.scheduler.run_until_idle()
        await c.checks.on_session_result(c.gw.started[-1]["session_id"], with_capacity(report("good"), 514.0))
        async with c.db.transaction() as conn:
            await users_repo.set_password(conn, "technician-1", await users_repo.password_hash(PASSWORD), clock())
        _, hearing = await c.call("GET", f"/api/v1/hearings/{h['id']}", expect=200)
        item = hearing["test_request"]["items"][0]
        court = (await c.call("GET", "/api/v1/terminals/court-almaty-1", expect=200))[1]["name"]
        sizo = (await c.call("GET", "/api/v1/terminals/sizo-almaty-1", expect=200))[1]["name"]
        expected = {
            "en": (f"{court} → {sizo}: 514 kbit/s (limited by loss)",
                   f"{sizo} → {court}: 2500 kbit/s (at the ceiling, the link carries more)",
                   f"{court} → {sizo} capacity 514 kb/s < 700 kb/s (unusable)"),
            "ru": (f"{court} → {sizo}: 514 кбит/с (ограничено потерями)",
                   f"{sizo} → {court}: 2500 кбит/с (достигнут потолок замера, канал пропускает больше)",
                   f"Пропускная способность 514 кбит/с ниже необходимой 700 кбит/с — непригодно ({court} → {sizo})"),
            "kk": (f"{court} → {sizo}: 514 кбит/с (жоғалтулармен шектелді)",
                   f"{sizo} → {court}: 2500 кбит/с (өлшеу шегіне жетті, арна бұдан да көп өткізеді)",
                   f"Өткізу қабілеті 514 кбит/с, қажетті 700 кбит/с деңгейінен төмен — жарамсыз ({court} → {sizo})"),
        }
        async with browser() as b:
            page = await new_page(b)
            await sign_in(page, base, "technician-1")
            for lang, (outbound, inbound, reason) in expected.items():
                await set_lang(page, lang)
                await page.goto(f"{base}#hearing/{hearing['id']}")
                row = page.locator(f"tr[data-check='{item['id']}']")
                await row.locator("ul.capacity-list li").first.wait_for()
                # Thousands are grouped as the browser's locale data says (Intl.NumberFormat).
                sides = [ungrouped(x) for x in await row.locator("ul.capacity-list li").all_inner_texts()]
                assert sides == [outbound, inbound], sides
                assert reason in await row.locator("ul.reasons li").all_inner_texts()
                await shot(page, f"hearing-capacity-{lang}")
            assert page.errors == []
