"""The web page in a real headless browser (Debian's chromium, driven by Playwright; see
tests/browser.py) against a real controller on SQLite: sign in, hearings with their deadlines
and verdicts in Kazakh, Russian and English, what each role may do, suspensions, the break
banner and resume, and a test run now between two real `vks-agent run` processes.
Screenshots go to tests/artifacts/web/."""
from __future__ import annotations

import asyncio
import datetime as dt
import os
import signal
import subprocess
import sys
import time
from zoneinfo import ZoneInfo

import aiohttp
import pytest

from contract import configfile
from controller.app import create_app
from controller.keys import DB_KEY, GATEWAY_KEY
from controller.models import SitesFile
from controller.settings import ControllerSettings
from controller.store import agents as agents_repo
from controller.store import registry
from controller.store import users as users_repo
from tests.browser import PASSWORD, browser, new_page, open_page, requires_browser, set_lang, shot, sign_in
from tests.conftest import FakeClock
from tests.controller_kit import REPO, SITES, Controller, report, report_verdict
from tests.test_link_hub import free_port

pytestmark = [requires_browser, pytest.mark.timeout(120)]
H = dt.timedelta(hours=1)


async def seeded(ctl: Controller) -> dict[str, dict]:
    """Hearings for today and the days ahead with different states: a passed test (good), an
    overdue one (the SIZO terminal away), a degraded one, one pending with its deadline ahead,
    and a cassation hearing (the Department coordinator's agreement). The controller's clock
    is moved from a day before to now, so the checks have run or gone overdue on the way."""
    real_now = ctl.clock.now
    ctl.clock.set(real_now - 30 * H)
    ctl.gw.offline.add("sizo-almaty-2")
    hs = {}
    _, hs["good"] = await ctl.schedule(start=real_now + 2 * H, case="2-101/2026")
    _, hs["overdue"] = await ctl.schedule(start=real_now + 3 * H, case="2-102/2026", participants=("sizo-almaty-2",),
                                          room=("almaty-medeu-district", "Зал 2"))
    _, hs["degraded"] = await ctl.schedule(start=real_now + 4 * H, case="2-103/2026",
                                           room=("kyzylorda-district-2", "Зал 1"), participants=("sizo-kyzylorda-1",))
    await ctl.scheduler.run_until_idle()
    for s in ctl.gw.started:
        await ctl.checks.on_session_result(s["session_id"], report("degraded" if s["caller"] == "court-kyzylorda-1"
                                                                   else "good"))
    ctl.clock.set(real_now)
    await ctl.scheduler.run_until_idle()
    _, hs["ahead"] = await ctl.schedule(start=real_now + 50 * H, case="2-104/2026", participants=("sizo-almaty-1",),
                                        room=("almaty-city-court", "Зал апелляционной коллегии 3"))
    _, hs["cassation"] = await ctl.schedule(start=real_now + 75 * H, case="3-105/2026",
                                            participants=("inst-karaganda-1",),
                                            room=("supreme-court", "Зал кассационной коллегии 1"))
    await ctl.call("POST", f"/api/v1/hearings/{hs['good']['id']}/agreement", expect=200, json={})
    hashed = await users_repo.password_hash(PASSWORD)
    async with ctl.db.transaction() as conn:
        for role in ("admin", "coordinator", "secretary", "technician", "viewer"):
            await users_repo.set_password(conn, f"{role}-1", hashed, ctl.clock())
    return hs


@pytest.fixture
async def ctl(tmp_path):
    clock = FakeClock(dt.datetime.now(dt.UTC).replace(microsecond=0))
    async with Controller(f"sqlite:///{tmp_path / 'controller.sqlite'}", clock) as c:
        c.base = str(c.client.make_url("/"))
        c.hearings = await seeded(c)
        yield c


def row(page, case: str):
    return page.locator("table.hearings tbody tr", has_text=case)


async def test_hearings_with_deadlines_and_verdicts_in_three_languages(ctl):
    async with browser() as b:
        page = await new_page(b)
        await sign_in(page, ctl.base, "admin-1")
        await page.wait_for_selector("table.hearings")
        expected = {
            "ru": {"good": "хорошо", "degraded": "ухудшено", "overdue": "просрочено", "given": "получено",
                   "pending": "ожидается", "title": "Заседания сегодня и предстоящие"},
            "kk": {"good": "жақсы", "degraded": "нашарлаған", "overdue": "мерзімі өтті", "given": "берілді",
                   "pending": "күтілуде", "title": "Бүгінгі және алдағы отырыстар"},
            "en": {"good": "good", "degraded": "degraded", "overdue": "overdue", "given": "given",
                   "pending": "pending", "title": "Today's and upcoming hearings"},
        }
        for lang, words in expected.items():
            await set_lang(page, lang)
            await page.wait_for_selector(f"h2:has-text(\"{words['title']}\")")
            good, overdue = row(page, "2-101/2026"), row(page, "2-102/2026")
            await overdue.wait_for()
            assert words["good"] in await good.locator("td").last.inner_text()
            assert words["given"] in await good.inner_text()
            assert words["overdue"] in await overdue.inner_text()
            assert words["degraded"] in await row(page, "2-103/2026").locator("td").last.inner_text()
            assert words["pending"] in await row(page, "3-105/2026").inner_text()
            # Each start and deadline in the court's own zone, named (the browser runs in Berlin).
            almaty = await good.locator("td").first.inner_text()
            start = dt.datetime.fromisoformat(ctl.hearings["good"]["start_utc"].replace("Z", "+00:00"))
            assert "Asia/Almaty" in almaty
            assert (start + 5 * H).strftime("%H:%M") in almaty
            assert "Asia/Qyzylorda" in await row(page, "2-103/2026").locator("td").first.inner_text()
            deadline = dt.datetime.fromisoformat(
                ctl.hearings["ahead"]["test_request"]["deadline"].replace("Z", "+00:00"))
            assert (deadline + 5 * H).strftime("%H:%M") in await row(page, "2-104/2026").inner_text()
            await shot(page, f"hearings-{lang}")

        # The language is remembered.
        await page.reload()
        await page.wait_for_selector("table.hearings")
        assert await page.eval_on_selector("html", "e => e.lang") == "en"

        # One hearing: checks, event record, agreement.
        await row(page, "2-102/2026").get_by_role("link").click()
        await page.wait_for_selector("h2:has-text('Hearing 2-102/2026')")
        await page.wait_for_selector("text=Event record (rule 21)")
        assert "overdue" in await page.locator("dl.facts").inner_text()
        await shot(page, "hearing-detail-en")

        # A narrow screen: the same page, stacked. A secretary's home (#today) lists only the hearings
        # of the court's own day, which these (2-4 h ahead) leave late in an Almaty evening: the
        # stacked table is looked at on #hearings, which holds the days ahead too.
        narrow = await new_page(b, width=390, height=844)
        await sign_in(narrow, ctl.base, "secretary-1")
        await set_lang(narrow, "kk")
        await narrow.wait_for_function("() => location.hash === '#today'")
        await narrow.goto(ctl.base + "#hearings")
        await narrow.wait_for_selector("table.hearings")
        assert await narrow.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
        await shot(narrow, "hearings-kk-narrow")
        for view in ("terminals", "suspensions", "escalations"):
            await narrow.click(f'#nav a[data-view="{view}"]')
            await narrow.wait_for_selector(f'#nav a[data-view="{view}"][aria-current="page"]')
            await narrow.wait_for_selector("#view h2")
            await narrow.wait_for_timeout(300)
            assert await narrow.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1"), view
            await shot(narrow, f"{view}-kk-narrow")
        assert page.errors == [] and narrow.errors == []


async def test_a_secretarys_home_lists_the_hearings_of_each_courts_own_day(ctl):
    """#today holds the hearings whose start falls on today's date where the court sits; the rest
    wait on #hearings. The page's clock is set to two moments, the first hearing's start and a day
    later, and what is today's at each is worked out here in each court's zone."""
    cases = {}
    for h in ctl.hearings.values():
        full = (await ctl.call("GET", f"/api/v1/hearings/{h['id']}", expect=200))[1]
        cases[full["case_number"]] = (dt.datetime.fromisoformat(full["start_utc"].replace("Z", "+00:00")),
                                      ZoneInfo(full["court"]["timezone"]))
    first = cases["2-101/2026"][0]

    async with browser() as b:
        page = await new_page(b)
        await sign_in(page, ctl.base, "secretary-1")
        await set_lang(page, "en")
        await page.wait_for_function("() => location.hash === '#today'")
        for moment in (first, first + 24 * H):
            await page.clock.set_system_time(moment)
            await page.reload()
            await page.wait_for_selector("#view h2:has-text(\"Today's hearings\")")
            await page.wait_for_selector("#view section.group")
            expected = {c for c, (start, tz) in cases.items()
                        if start.astimezone(tz).date() == moment.astimezone(tz).date()}
            shown = {c for c in cases if await row(page, c).count()}
            assert shown == expected, (moment, shown, expected)
            assert await page.locator("#view section.group h3").all_inner_texts() == ["Today"]   # no "Upcoming"
        assert page.errors == []


async def test_each_role_sees_only_its_actions(ctl):
    async with browser() as b:
        sec = await new_page(b)
        await sign_in(sec, ctl.base, "secretary-1")
        await set_lang(sec, "en")
        assert "secretary" in await sec.inner_text("#whoami")
        assert not await sec.locator('#nav a[data-view="test"]').is_visible()
        await sec.click('#nav a[data-view="suspensions"]')
        await sec.wait_for_selector("h2:has-text('Suspensions (rule 24)')")
        assert await sec.locator("#susp-form").count() == 0
        await sec.goto(ctl.base + f"#hearing/{ctl.hearings['good']['id']}")
        await sec.wait_for_selector("h2:has-text('Hearing 2-101/2026')")
        assert await sec.get_by_role("button", name="Run the test session now").count() == 0
        assert await sec.get_by_role("button", name="Give agreement").count() == 0
        await shot(sec, "secretary-hearing-en")

        # A technician signs in with an API token instead; may run tests, not suspend.
        tech = await new_page(b)
        await tech.goto(ctl.base)
        await tech.wait_for_selector("body[data-ready='1']")
        await set_lang(tech, "en")
        await tech.click("#token-login summary")
        await tech.fill("#login-token", ctl.tokens["technician"])
        await tech.click("#token-form button[type=submit]")
        await tech.wait_for_selector("#whoami:not([hidden])")
        assert await tech.locator('#nav a[data-view="test"]').is_visible()
        await tech.goto(ctl.base + f"#hearing/{ctl.hearings['ahead']['id']}")
        await tech.get_by_role("button", name="Run the test session now").wait_for()
        await tech.goto(ctl.base + "#suspensions")
        await tech.wait_for_selector("h2:has-text('Suspensions')")
        assert await tech.locator("#susp-form").count() == 0

        # Wrong password: refused, stays on the form; then sign out returns to it.
        bad = await new_page(b)
        await bad.goto(ctl.base)
        await bad.wait_for_selector("body[data-ready='1']")
        await bad.fill("#login-user", "admin-1")
        await bad.fill("#login-pass", "not the password")
        await bad.click("#login-form button[type=submit]")
        await bad.wait_for_selector("#login-error:not(:empty)")
        assert await bad.inner_text("#login-error") == "Неверное имя пользователя, пароль или токен."   # ru-RU browser
        assert await bad.locator("#whoami").is_hidden()
        await shot(bad, "login-failed")
        await tech.click("#logout")
        await tech.wait_for_selector("#login:not([hidden])")
        assert sec.errors == [] and tech.errors == []


async def test_suspension_added_and_lifted_by_the_coordinator(ctl):
    async with browser() as b:
        page = await new_page(b)
        await sign_in(page, ctl.base, "coordinator-1")
        await set_lang(page, "ru")
        await page.click('#nav a[data-view="suspensions"]')
        await page.wait_for_selector("#susp-form")
        await page.select_option("#susp-institution", "sizo-almaty-70-1")
        await page.select_option("#susp-reason", "escape")
        await page.fill("#susp-note", "учения")
        await page.click("#susp-form button[type=submit]")
        susp = page.locator("table.suspensions tbody tr", has_text="побег")
        await susp.wait_for()
        assert "действует" in await susp.inner_text()
        # Three of the seeded hearings have a terminal of SIZO DS-70/1 (2-101, 2-102, 2-104).
        await page.wait_for_selector("#susp-form p:has-text('Затронуто заседаний: 3')")
        await shot(page, "suspensions-ru")

        await page.click('#nav a[data-view="hearings"]')
        await row(page, "2-101/2026").wait_for()
        assert "приостановлено" in await row(page, "2-101/2026").inner_text()

        await page.click('#nav a[data-view="suspensions"]')
        await page.locator("table.suspensions button[data-action=lift]").click()
        await page.wait_for_selector("table.suspensions tbody tr:has-text('не действует')")
        assert await page.locator("table.suspensions button[data-action=lift]").count() == 0
        _, items = await ctl.call("GET", "/api/v1/suspensions")
        assert [s["lifted_by"] for s in items["items"]] == ["coordinator-1"]
        assert page.errors == []


async def test_terminals_with_health_and_last_check(ctl):
    async with ctl.db.transaction() as conn:
        await conn.execute(agents_repo.agent_presence.insert().values(
            terminal_id="court-almaty-1", controller_id=None, last_seen=ctl.clock(), agent_version="0.1.0",
            health='{"status": "warn", "problems": ["clock offset 0.8 s"], "checked_at": "2026-01-01T00:00:00Z"}'))
    async with browser() as b:
        page = await new_page(b)
        await sign_in(page, ctl.base, "technician-1")
        await set_lang(page, "en")
        await page.click('#nav a[data-view="terminals"]')
        court = page.locator("table.terminals tbody tr", has_text="court-almaty-1")
        await court.wait_for()
        text = await court.inner_text()
        assert "online" in text and "warning" in text and "clock offset 0.8 s" in text
        assert "test session: passed" in text
        assert "no data" in await page.locator("table.terminals tbody tr", has_text="sizo-kyzylorda-1").inner_text()
        await shot(page, "terminals-en")
        assert page.errors == []


# --- run a test now between two real agent processes --------------------------------------------

def agent_config(tmp_path, terminal: str, port: int, token: str):
    (tmp_path / f"{terminal}.token").write_text(token + "\n")
    path = tmp_path / f"{terminal}.yaml"
    path.write_text(f"terminal_id: {terminal}\nsession: {{host_addresses: [127.0.0.1]}}\n"
                    f"controller:\n  url: ws://127.0.0.1:{port}/api/v1/agent/ws\n"
                    f"  token_file: {tmp_path / f'{terminal}.token'}\n"
                    f"  outbox_path: {tmp_path / f'{terminal}.outbox'}\n  heartbeat_s: 1\n"
                    f"metrics:\n  listen: 127.0.0.1:{free_port()}\n")
    return path


@pytest.fixture
async def live_controller(tmp_path):
    """A controller with its real agent hub (no scheduler: only what the page asks runs),
    and two `vks-agent run` processes connected to it over WebSockets on loopback."""
    from aiohttp.test_utils import TestServer
    settings = ControllerSettings.model_validate({
        "db": f"sqlite:///{tmp_path / 'controller.sqlite'}",
        # Rule 22 quickly: ready to resume after 3 good seconds.
        "live": {"resume_good_s": 3, "reconcile_s": 0.5, "backoff_max_s": 1.0}})
    app = create_app(settings, judge=report_verdict, run_scheduler=False)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    db = app[DB_KEY]
    sites = configfile.validate(SitesFile, configfile.read_yaml(SITES), SITES)
    now = dt.datetime.now(dt.UTC)
    tokens = {}
    hashed = await users_repo.password_hash(PASSWORD)
    async with db.transaction() as conn:
        await registry.import_sites(conn, sites.model_dump()["institutions"], now)
        for name, role in (("tech-1", "technician"), ("sec-1", "secretary")):
            await users_repo.create_user(conn, name, role, now)
            await users_repo.set_password(conn, name, hashed, now)
        for t in ("court-almaty-1", "sizo-almaty-1"):
            tokens[t] = (await agents_repo.issue_token(conn, t))[1]
    procs, logs = [], []
    env = dict(os.environ, PYTHONPATH=str(REPO))
    try:
        for t, token in tokens.items():
            log = open(tmp_path / f"{t}.log", "wb")
            logs.append(log)
            procs.append(subprocess.Popen([sys.executable, "-m", "agent.cli", "run", "--config",
                                           str(agent_config(tmp_path, t, server.port, token))],
                                          cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT))
        yield server, app, tmp_path, procs
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        for f in logs:
            f.close()
        await server.close()



async def test_run_a_test_now_between_two_real_agents(live_controller):
    server, app, tmp_path, procs = live_controller
    base = str(server.make_url("/"))
    async with browser() as b:
        page = await new_page(b)
        await sign_in(page, base, "tech-1")
        await set_lang(page, "en")
        await page.click('#nav a[data-view="terminals"]')
        # Both agents connect (a few seconds: they start their Python and aiortc).
        deadline = time.monotonic() + 60
        while not {"court-almaty-1", "sizo-almaty-1"} <= app[GATEWAY_KEY].online():
            if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                pytest.fail(f"the agents did not connect; see {tmp_path}/*.log")
            await page.wait_for_timeout(300)
        await page.reload()
        for t in ("court-almaty-1", "sizo-almaty-1"):
            await page.locator("table.terminals tbody tr", has_text=t).locator(".online-yes").wait_for()
        await page.click('#nav a[data-view="test"]')
        await page.select_option("#test-caller", "court-almaty-1")
        await page.select_option("#test-callee", "sizo-almaty-1")
        await page.select_option("#test-profile", "monitor")
        await page.fill("#test-duration", "3")
        await page.click("#view form button[type=submit]")
        await page.wait_for_selector("#test-out p.running")
        await shot(page, "test-running-en")
        await page.wait_for_selector("#test-out .test-result", timeout=60_000)
        status = await page.get_attribute("#test-out .test-result", "data-status")
        text = await page.inner_text("#test-out")
        await shot(page, "test-result-en")
        assert status == "done", text
        assert "Verdict:" in text and "outbound" in text and "RTT" in text
        assert page.errors == []


async def test_escalation_acknowledged_and_the_act_drawn_up_and_signed(ctl):
    """The seeded overdue hearing (its SIZO terminal away) has an open escalation (rule 16)."""
    hid = ctl.hearings["overdue"]["id"]
    async with browser() as b:
        tech = await new_page(b)
        await sign_in(tech, ctl.base, "technician-1")
        await set_lang(tech, "en")
        await tech.click('#nav a[data-view="escalations"]')
        esc = tech.locator("table.escalations tbody tr", has_text="2-102/2026")
        await esc.wait_for()
        assert "test session failed" in await esc.inner_text()
        await esc.locator("button[data-action=ack]").click()
        await tech.wait_for_selector("table.escalations tbody tr:has-text('technician-1')")
        assert await tech.locator("table.escalations button[data-action=ack]").count() == 0
        await shot(tech, "escalations-en")

        sec = await new_page(b)
        await sign_in(sec, ctl.base, "secretary-1")
        await set_lang(sec, "ru")
        assert not await sec.locator("table.escalations").count()
        await sec.goto(ctl.base + f"#hearing/{hid}")
        await sec.click("#act-draft")
        await sec.wait_for_selector("a:has-text('Печать (казахский, HTML)')")
        # The secretary signs from their account, in its role, and enters a head of office with none.
        assert await sec.inner_text("#sign-self") == "Подписать как secretary-1 (секретарь судебного заседания)"
        await sec.click("#sign-self")
        await sec.wait_for_selector("ul.signatures li.signed[data-role=secretary]:has-text('secretary-1')")
        assert await sec.locator("#sign-self").count() == 0
        assert await sec.locator("#sign-role option").all_inner_texts() == [
            "руководитель канцелярии суда", "технический специалист"]
        await sec.select_option("#sign-role", "head_of_office")
        await sec.fill("#sign-name", "А. Заведующая")
        await sec.click("#sign-form button[type=submit]")
        head = sec.locator("ul.signatures li.signed[data-role=head_of_office]")
        await head.wait_for()
        assert "А. Заведующая" in await head.inner_text() and "внесено: secretary-1" in await head.inner_text()
        assert await sec.locator("ul.signatures li.unsigned").count() == 1
        # An act holds one signer with no account: the technician signs from their own account.
        assert await sec.locator("#sign-form").count() == 0
        await shot(sec, "act-ru")
        # The technician has no form for others, only their own signature: the third makes the act final.
        await tech.goto(ctl.base + f"#hearing/{hid}")
        await tech.wait_for_selector("#sign-self")
        assert await tech.locator("#sign-form").count() == 0
        assert await tech.inner_text("#sign-self") == "Sign as technician-1 (technical specialist)"
        await tech.click("#sign-self")
        await tech.wait_for_selector("ul.signatures li.signed[data-role=technician]:has-text('technician-1')")
        assert await tech.locator("ul.signatures li.unsigned").count() == 0
        assert await tech.locator("#sign-self").count() == 0
        # The print links work with the page's session cookie.
        for lang in ("kk", "ru"):
            resp = await sec.request.get(ctl.base + f"api/v1/hearings/{hid}/act.html?lang={lang}")
            assert resp.status == 200 and "2-102/2026" in await resp.text()
        assert tech.errors == [] and sec.errors == []


async def test_live_chart_break_banner_and_confirm_resume(live_controller):
    """A hearing in progress between the two real agents: its live quality is drawn; the SIZO
    agent frozen (SIGSTOP) is a loss of connection -> break (banner); thawed, the link holds
    again -> ready to resume; the secretary confirms on the banner."""
    server, app, tmp_path, procs = live_controller
    base = str(server.make_url("/"))
    client = aiohttp.ClientSession(base_url=base, cookie_jar=aiohttp.CookieJar(unsafe=True))   # an IP host
    try:
        resp = await client.post("/api/v1/login", json={"username": "sec-1", "password": PASSWORD})
        assert resp.status == 200
        hdr = {"X-Requested-With": "vks-web"}
        deadline = time.monotonic() + 60
        while not {"court-almaty-1", "sizo-almaty-1"} <= app[GATEWAY_KEY].online():
            assert time.monotonic() < deadline and all(p.poll() is None for p in procs), f"agents: see {tmp_path}"
            await asyncio.sleep(0.3)
        rooms = await (await client.get("/api/v1/rooms?institution_id=almaty-medeu-district")).json()
        room = next(r["id"] for r in rooms["items"] if r["name"] == "Зал 1")
        start = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=10)
        resp = await client.post("/api/v1/hearings", headers=hdr, json={
            "case_number": "2-777/2026", "room_id": room, "start_utc": start.isoformat(), "duration_min": 60,
            "participants": [{"terminal_id": "sizo-almaty-1"}]})
        hid = (await resp.json())["id"]
        assert (await client.post(f"/api/v1/hearings/{hid}/start", headers=hdr)).status == 200

        async def live():
            return await (await client.get(f"/api/v1/hearings/{hid}/live")).json()

        async def until(pred, timeout, what):
            end = time.monotonic() + timeout
            while time.monotonic() < end:
                lv = await live()
                if pred(lv):
                    return lv
                await asyncio.sleep(0.3)
            raise AssertionError(f"{what} not within {timeout} s: {(await live())['state']}; see {tmp_path}")

        async with browser() as b:
            page = await new_page(b)
            await sign_in(page, base, "sec-1")
            await set_lang(page, "en")
            await page.click('#nav a[data-view="live"]')
            card = page.locator("section.live", has_text="2-777/2026")
            await card.wait_for()
            await until(lambda lv: lv["state"] == "monitoring" and len(lv["intervals"]) >= 5, 40, "monitoring")
            await page.wait_for_function(
                "() => [...document.querySelectorAll('section.live canvas')]"
                ".some(c => c.getAttribute('aria-label').includes('Latest'))")
            await page.wait_for_timeout(2500)            # a few more seconds drawn
            assert "monitoring" in await card.locator(".live-state").inner_text()
            await shot(page, "live-en")

            sizo = procs[1]
            sizo.send_signal(signal.SIGSTOP)
            try:
                await until(lambda lv: lv["break"] is not None, 20, "break")
                banner = page.locator("#banners .banner", has_text="2-777/2026")
                await banner.wait_for()
                said = await banner.inner_text()
                assert "Connection to ДС-70/1, кабинет ВКС 1 lost - break recommended" in said, said
                assert "Break declared" in said and "Continue" in said
                await shot(page, "break-banner-en")
                await page.wait_for_timeout(1500)
            finally:
                sizo.send_signal(signal.SIGCONT)
            await until(lambda lv: lv["state"] == "ready_to_resume", 60, "ready to resume")
            await set_lang(page, "kk")
            button = page.locator("#banners button.resume")
            await button.wait_for()
            assert "Жалғастыруды растау" == (await button.inner_text()).strip()
            await shot(page, "ready-to-resume-kk")
            await button.click()
            await page.wait_for_selector("#banners .banner", state="detached")
            lv = await live()
            assert lv["state"] == "monitoring" and lv["break"] is None
            breaks = await (await client.get(f"/api/v1/hearings/{hid}/breaks")).json()
            assert [x["resumed_by"] for x in breaks["items"]] == ["sec-1"]
            await page.goto(base + f"#hearing/{hid}")
            await page.wait_for_selector("text=sec-1")
            await shot(page, "hearing-after-break-kk")
            assert page.errors == []
    finally:
        await client.close()


UNLABELLED = """() => [...document.querySelectorAll('input, select, textarea, button, canvas')]
    .filter(e => e.offsetParent !== null)
    .filter(e => (e.labels ? e.labels.length === 0 : true) && !e.getAttribute('aria-label') && !e.textContent.trim())
    .map(e => e.outerHTML.slice(0, 80))"""


async def test_keyboard_only_and_every_control_labelled(ctl):
    async with browser() as b:
        page = await new_page(b)
        await open_page(page, ctl.base)
        assert await page.evaluate("document.activeElement.id") == "login-user"       # ready to type
        # The first stop of the tab order skips to the content.
        assert await page.evaluate("document.querySelector('body > :first-child').matches('a.skip[href=\"#main\"]')")
        assert await page.evaluate(UNLABELLED) == []
        await page.focus("#login-user")
        await page.keyboard.type("admin-1")
        await page.keyboard.press("Tab")
        await page.keyboard.type(PASSWORD)
        await page.keyboard.press("Enter")
        await page.wait_for_selector("#whoami:not([hidden])")
        await set_lang(page, "kk")
        for view, title in (("terminals", "Терминалдар"), ("test", "Екі терминал"), ("suspensions", "Тоқтата тұрулар"),
                            ("escalations", "Ашық эскалациялар"), ("live", "Ағымдағы сеанстардың"),
                            ("hearings", "Бүгінгі және алдағы")):
            await page.focus(f'#nav a[data-view="{view}"]')
            await page.keyboard.press("Enter")
            await page.wait_for_selector(f"h2:has-text('{title}')")
            assert await page.get_attribute(f'#nav a[data-view="{view}"]', "aria-current") == "page"
            assert await page.evaluate(UNLABELLED) == [], view
        # From the list to a hearing with the keyboard.
        link = row(page, "2-103/2026").get_by_role("link")
        await link.focus()
        await page.keyboard.press("Enter")
        await page.wait_for_selector("h2:has-text('2-103/2026')")
        assert await page.evaluate(UNLABELLED) == []
        assert page.errors == []
