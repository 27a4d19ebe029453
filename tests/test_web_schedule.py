"""Scheduling on the web page (issue 13, parts 1 and 7), in a real headless chromium against a real
controller: a secretary signed in with her password schedules a hearing in the court's local time
through the form (the browser itself keeps another zone), edits it, postpones it without and with a
new date, cancels it; imports a day's hearings from a CSV file, and sees a bad file's row errors;
each role lands on its home; every screen in Kazakh, Russian and English, wide and narrow."""
from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from controller.store import users as users_repo
from tests.browser import PASSWORD, browser, catalog, new_page, open_page, requires_browser, set_lang, shot, sign_in
from tests.conftest import FakeClock
from tests.controller_kit import ROLES, Controller

pytestmark = [requires_browser, pytest.mark.timeout(240)]
ALMATY = ZoneInfo("Asia/Almaty")
COURT = "Медеуский районный суд г. Алматы"
FITS = "document.documentElement.scrollWidth <= window.innerWidth + 1"      # no sideways scrolling


def tomorrow_at(hour: int, minute: int = 0) -> tuple[str, str]:
    """(the datetime-local value, the ISO UTC start the API should store) of tomorrow in Almaty."""
    day = (dt.datetime.now(ALMATY) + dt.timedelta(days=1)).date()
    local = dt.datetime(day.year, day.month, day.day, hour, minute, tzinfo=ALMATY)
    return local.strftime("%Y-%m-%dT%H:%M"), local.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.fixture
async def ctl(tmp_path):
    clock = FakeClock(dt.datetime.now(dt.UTC).replace(microsecond=0))
    async with Controller(f"sqlite:///{tmp_path / 'controller.sqlite'}", clock) as c:
        c.base = str(c.client.make_url("/"))
        hashed = await users_repo.password_hash(PASSWORD)
        async with c.db.transaction() as conn:
            for role in ROLES:
                await users_repo.set_password(conn, f"{role}-1", hashed, clock())
        yield c


async def hearing(ctl, hid: int) -> dict:
    return (await ctl.call("GET", f"/api/v1/hearings/{hid}", expect=200))[1]


async def open_form(page) -> None:
    await page.click("#schedule-open")
    await page.wait_for_selector("#schedule-form")


async def test_a_secretary_schedules_edits_postpones_and_cancels_in_local_time(ctl):
    words = catalog("en")
    start_local, start_utc = tomorrow_at(9)
    async with browser() as b:
        page = await new_page(b)                    # the browser keeps Europe/Berlin, the court Asia/Almaty
        await sign_in(page, ctl.base, "secretary-1")            # her password, not a token
        await set_lang(page, "en")
        await page.wait_for_function("() => location.hash === '#today'")
        await open_form(page)
        form = page.locator("#schedule-form")
        for key in ("schedule.case", "schedule.room", "schedule.start", "schedule.duration", "schedule.terminal",
                    "schedule.initiative"):
            assert await form.locator("label", has_text=words[key]).count() >= 1, key
        assert await page.locator("#sched-start").get_attribute("type") == "datetime-local"
        option = f"{COURT} - Зал 1"
        room_value = await page.locator("#sched-room option", has_text=option).first.get_attribute("value")
        await page.select_option("#sched-room", room_value)
        assert "Asia/Almaty" in await page.inner_text("#sched-zone")
        # Terminals read "name (id)".
        assert await page.locator("#sched-terminal-0 option", has_text="(sizo-almaty-1)").count() == 1

        # An error from the API is shown beside the field it names: a terminal listed twice.
        await page.fill("#sched-case", "2-777/2026")
        await page.fill("#sched-start", start_local)
        await page.fill("#sched-duration", "45")
        await page.select_option("#sched-terminal-0", "sizo-almaty-1")
        await page.click("#sched-add")
        await page.select_option("#sched-terminal-1", "sizo-almaty-1")
        await page.click("#sched-submit")
        err = page.locator("[data-for='participants']")
        await err.filter(has_text="twice").wait_for()
        assert "listed twice" in await err.inner_text()
        assert (await ctl.call("GET", "/api/v1/hearings", expect=200))[1]["items"] == []

        await page.select_option("#sched-terminal-1", "inst-karaganda-1")
        await page.select_option("#sched-initiative", "motion")
        await page.click("#sched-submit")
        await page.wait_for_function("() => location.hash.startsWith('#hearing/')")
        hid = int(page.url.rsplit("/", 1)[1])
        x = await hearing(ctl, hid)
        assert x["start_utc"] == start_utc and x["duration_min"] == 45 and x["initiative"] == "motion"
        assert [p["terminal_id"] for p in x["participants"]] == ["sizo-almaty-1", "inst-karaganda-1"]
        assert (await ctl.events(hid))[0]["detail"]["by"] == "secretary-1"

        # Edit: the same form, filled in; a new local start and duration.
        new_local, new_utc = tomorrow_at(10, 30)
        await page.click("#hearing-edit")
        await page.wait_for_selector("#edit-form")
        assert await page.input_value("#sched-start") == start_local
        assert await page.input_value("#sched-case") == "2-777/2026"
        await page.fill("#sched-start", new_local)
        await page.fill("#sched-duration", "90")
        await page.click("#sched-submit")
        await page.wait_for_selector("#edit-form", state="detached")
        x = await hearing(ctl, hid)
        assert (x["start_utc"], x["duration_min"]) == (new_utc, 90)

        # Postpone without a new date: recorded, the start kept.
        await page.click("#hearing-postpone")
        await page.click("#postpone-submit")
        await page.wait_for_selector("#postpone-form", state="detached")
        x = await hearing(ctl, hid)
        assert (x["status"], x["start_utc"]) == ("postponed", new_utc)
        # ... and once the new date is known.
        later_local, later_utc = tomorrow_at(15)
        await page.click("#hearing-postpone")
        await page.fill("#postpone-start", later_local)
        await page.click("#postpone-submit")
        await page.wait_for_selector("#postpone-form", state="detached")
        x = await hearing(ctl, hid)
        assert (x["status"], x["start_utc"]) == ("postponed", later_utc)
        kinds = [e["kind"] for e in await ctl.events(hid)]
        assert kinds.count("hearing_updated") == 3

        # Cancel, after a confirmation.
        messages = []

        async def confirm(dialog):
            messages.append(dialog.message)
            await dialog.accept()
        page.once("dialog", confirm)
        await page.click("#hearing-cancel")
        await page.wait_for_selector("#hearing-cancel", state="detached")
        assert (await hearing(ctl, hid))["status"] == "cancelled"
        assert "2-777/2026" in messages[0]
        assert await page.locator("#hearing-edit").count() == 0
        await shot(page, "schedule-cancelled-en")
        assert page.errors == []


async def test_a_csv_upload_imports_the_day_and_a_bad_file_shows_its_row_errors(ctl, tmp_path):
    room = await ctl.room_id("almaty-medeu-district")
    first_local, first_utc = tomorrow_at(9)
    second_local, _ = tomorrow_at(11)
    good = ("case_number,room_id,start,duration_min,participants\n"
            f"2-801/2026,{room},{first_local.replace('T', ' ')},60,sizo-almaty-1\n"
            f"2-802/2026,{room},{second_local.replace('T', ' ')},30,sizo-almaty-2;inst-karaganda-1\n")
    bad = ("case_number,room_id,start,duration_min,participants\n"
           f"2-901/2026,{room},{first_local.replace('T', ' ')},60,sizo-almaty-1\n"
           f"2-902/2026,{room},tomorrow,60,sizo-almaty-1\n")
    async with browser() as b:
        page = await new_page(b)
        await sign_in(page, ctl.base, "secretary-1")
        for lang in ("ru", "en"):
            words = catalog(lang)
            await set_lang(page, lang)
            await page.goto(f"{ctl.base}#hearings")
            await page.click("details.import summary")
            assert await page.inner_text("label[for='import-file']") == words["import.file"]
            await page.set_input_files("#import-file", files=[{"name": "bad.csv", "mimeType": "text/csv",
                                                                "buffer": bad.encode()}])
            await page.click("#import-submit")
            errors = page.locator(".import-errors li")
            await errors.first.wait_for()
            line = await errors.first.inner_text()
            assert line.startswith(words["import.row"].replace("{n}", "3") + ", start: "), line
            assert words["import.refused"].split("{")[0] in await page.inner_text("#import-result")
            assert (await ctl.call("GET", "/api/v1/hearings", expect=200))[1]["items"] == []
        await page.set_input_files("#import-file", files=[{"name": "day.csv", "mimeType": "text/csv",
                                                            "buffer": good.encode()}])
        await page.click("#import-submit")
        await page.locator("#import-result", has_text="2").wait_for()
        await page.locator("tr[data-hearing]", has_text="2-802/2026").wait_for()
        assert await page.locator("tr[data-hearing]", has_text="2-801/2026").count() == 1
        items = {x["case_number"]: x for x in (await ctl.call("GET", "/api/v1/hearings", expect=200))[1]["items"]}
        assert items["2-801/2026"]["start_utc"] == first_utc
        await shot(page, "import-en")
        assert page.errors == []


async def test_each_role_lands_on_its_home(ctl):
    async with browser() as b:
        page = await new_page(b)
        await open_page(page, ctl.base)
        agreements = await page.evaluate("import('/static/router.js').then((m) => m.hasView('agreements'))")
        homes = {"secretary": "#today", "head_of_office": "#today", "technician": "#attention",
                 "coordinator": "#agreements" if agreements else "#hearings", "admin": "#hearings",
                 "viewer": "#hearings"}
        for role, home in homes.items():
            await sign_in(page, ctl.base, f"{role}-1")
            await page.wait_for_function("(h) => location.hash === h", arg=home)
            await page.wait_for_selector("#view h2")
            assert await page.locator("#schedule-open").count() == (1 if role in ("secretary", "head_of_office",
                                                                                     "admin") else 0), role
            await page.click("#logout")
            await page.wait_for_selector("#login:not([hidden])")
        # A secretary of one court: only its courtrooms in the form.
        await ctl.call("POST", "/api/v1/users", json={"name": "sec-kyzylorda", "role": "secretary",
                                                      "institutions": ["kyzylorda-district-2"]}, expect=201)
        async with ctl.db.transaction() as conn:
            await users_repo.set_password(conn, "sec-kyzylorda", await users_repo.password_hash(PASSWORD), ctl.clock())
        await sign_in(page, ctl.base, "sec-kyzylorda")
        await page.wait_for_function("() => location.hash === '#today'")
        await open_form(page)
        rooms = await page.locator("#sched-room option").all_inner_texts()
        assert rooms == ["Кызылординский районный суд № 2 - Зал 1"], rooms
        assert "Asia/Qyzylorda" in await page.inner_text("#sched-zone")
        await page.click("#logout")
        await page.wait_for_selector("#login:not([hidden])")
        # The sign-in form shows one "Sign in" button; the token's form stays folded.
        assert await page.locator("#login button:visible").count() == 1
        assert await page.locator("#token-login").get_attribute("open") is None
        assert page.errors == []


async def test_every_screen_in_three_languages_wide_and_narrow(ctl):
    _, x = await ctl.schedule(start=ctl.clock() + dt.timedelta(hours=30), case="2-555/2026")
    async with browser() as b:
        for width, height in ((1280, 800), (390, 844)):
            page = await new_page(b, width=width, height=height)
            await sign_in(page, ctl.base, "secretary-1")
            tech = await new_page(b, width=width, height=height)
            await sign_in(tech, ctl.base, "technician-1")
            for lang in ("kk", "ru", "en"):
                words = catalog(lang)
                await set_lang(page, lang)
                await page.goto(f"{ctl.base}#today")
                await page.locator("#view h2", has_text=words["hearings.today_title"]).wait_for()
                await open_form(page)
                for key, sel in (("schedule.case", "sched-case"), ("schedule.room", "sched-room"),
                                 ("schedule.start", "sched-start"), ("schedule.duration", "sched-duration"),
                                 ("schedule.terminal", "sched-terminal-0"),
                                 ("schedule.initiative", "sched-initiative")):
                    assert await page.inner_text(f"label[for='{sel}']") == words[key], (lang, key)
                assert await page.inner_text("#schedule-open") == words["schedule.open"]
                assert await page.inner_text("#sched-add") == words["schedule.add_participant"]
                assert await page.inner_text("#sched-submit") == words["schedule.submit"]
                await page.click("details.import summary")
                assert await page.inner_text("#import-submit") == words["import.submit"]
                assert await page.inner_text("label[for='import-file']") == words["import.file"]
                wide = "wide" if width > 720 else "narrow"
                await shot(page, f"schedule-{lang}-{wide}")
                assert await page.evaluate(FITS), (lang, wide)
                await page.goto(f"{ctl.base}#hearing/{x['id']}")
                await page.locator("#hearing-edit", has_text=words["hearing_edit.edit"]).wait_for()
                for sel, key in (("#hearing-edit", "hearing_edit.edit"), ("#hearing-postpone", "hearing_edit.postpone"),
                                 ("#hearing-cancel", "hearing_edit.cancel")):
                    assert await page.inner_text(sel) == words[key]
                await page.click("#hearing-postpone")
                assert await page.inner_text("label[for='postpone-start']") == words["hearing_edit.new_start"]
                await page.click("#hearing-edit")
                assert await page.inner_text("#sched-submit") == words["schedule.save"]
                await shot(page, f"hearing-edit-{lang}-{wide}")
                assert await page.evaluate(FITS), (lang, wide)
                await set_lang(tech, lang)
                await tech.goto(f"{ctl.base}#attention")
                await tech.locator("#view h2", has_text=words["attention.title"]).wait_for()
                await tech.wait_for_selector("table.attention")
                # Never connected: listed, in words; online (and nothing else wrong): not listed.
                row = tech.locator("tr[data-terminal='court-almaty-2']")
                assert words["attention.offline"] in await row.inner_text()
                assert await tech.locator("tr[data-terminal='court-almaty-1']").count() == 0
                await shot(tech, f"attention-{lang}-{wide}")
                assert await tech.evaluate(FITS), (lang, wide)
            assert page.errors == [] and tech.errors == []
