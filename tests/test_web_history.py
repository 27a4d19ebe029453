"""The history on the web page (issue 12, part 4), in a real headless chromium against a real
controller: the terminals' list links a terminal to its history page, which draws the daily figures
of GET /api/v1/terminals/{id}/history as charts and lists the days; a hearing's check links its
pair to the pair's page - in Kazakh, Russian and English."""
from __future__ import annotations

import datetime as dt

import pytest

from contract.reports import SessionReport
from controller.store import history
from controller.store import users as users_repo
from tests.browser import PASSWORD, browser, catalog, new_page, requires_browser, set_lang, shot, sign_in
from tests.conftest import FakeClock
from tests.controller_kit import Controller, report

pytestmark = [requires_browser, pytest.mark.timeout(180)]
SERIES = [(31, 111, 235), (209, 36, 47)]   # views/history.js COLORS.p50 (#1f6feb), COLORS.p95 (#d1242f)
LOSSES = [0.0, 0.01, 0.02, 0.05, 0.01]   # one check a day, the last five days (today last)


@pytest.fixture
async def ctl(tmp_path):
    clock = FakeClock(dt.datetime.now(dt.UTC).replace(microsecond=0))
    async with Controller(f"sqlite:///{tmp_path / 'controller.sqlite'}", clock) as c:
        c.base = str(c.client.make_url("/"))
        _, c.hearing = await c.schedule(start=clock() + dt.timedelta(hours=3), case="2-301/2026")
        async with c.db.transaction() as conn:
            for back, loss in zip(range(len(LOSSES) - 1, -1, -1), LOSSES, strict=True):
                r = report("good", loss=loss)
                r["capacity"] = {"outbound": {"kbps": 1800}, "inbound": {"kbps": 1200 + 100 * back}}
                await history.record(conn, at=clock() - dt.timedelta(days=back), caller="court-almaty-1",
                                     callee="sizo-almaty-1", kind="test", report=SessionReport.model_validate(r),
                                     verdict="good")
            await users_repo.set_password(conn, "technician-1", await users_repo.password_hash(PASSWORD), clock())
        yield c


async def colored_pixels(page, chart: str) -> int:
    """How many pixels of the series' colours (the median's and the 95th percentile's, drawn over
    it where they are equal) the chart's canvas holds."""
    return await page.evaluate("""([sel, colours]) => {
        const c = document.querySelector(sel);
        const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
        let n = 0;
        for (let i = 0; i < d.length; i += 4) {
            if (colours.some((rgb) => Math.abs(d[i] - rgb[0]) < 8 && Math.abs(d[i + 1] - rgb[1]) < 8
                                      && Math.abs(d[i + 2] - rgb[2]) < 8)) n++;
        }
        return n;
    }""", [f"canvas[data-chart='{chart}']", [list(c) for c in SERIES]])


async def test_a_terminals_history_page_draws_the_days_in_three_languages(ctl):
    _, api = await ctl.call("GET", "/api/v1/terminals/sizo-almaty-1/history", expect=200)
    assert [d["checks"] for d in api["items"]] == [1] * len(LOSSES)
    days = [d["day"] for d in api["items"]]
    sizo = (await ctl.call("GET", "/api/v1/terminals/sizo-almaty-1", expect=200))[1]["name"]
    court = (await ctl.call("GET", "/api/v1/terminals/court-almaty-1", expect=200))[1]["name"]
    async with browser() as b:
        page = await new_page(b)
        await sign_in(page, ctl.base, "technician-1")
        for lang in ("kk", "ru", "en"):
            words = catalog(lang)
            await set_lang(page, lang)
            await page.goto(f"{ctl.base}#terminals")
            link = page.locator("tr[data-terminal='sizo-almaty-1'] th a")
            await link.click()
            await page.wait_for_selector("table.history tbody tr")
            assert page.url.endswith("#terminal/sizo-almaty-1")
            assert (await page.locator("#view h2").inner_text()).startswith(
                words["history.title_terminal"].replace("{name}", sizo))
            # The table: one row a day, newest first.
            shown = await page.locator("table.history tbody th").all_inner_texts()
            assert shown == days[::-1]
            assert await page.locator("table.history thead th").all_inner_texts() == [
                words[f"history.col.{k}"] for k in ("day", "checks", "loss", "jitter", "rtt", "capacity")]
            # The charts: drawn (the median's colour on the canvas), captioned and described.
            for chart, key in (("loss", "history.loss"), ("jitter", "history.jitter"), ("rtt", "history.rtt")):
                canvas = page.locator(f"canvas[data-chart='{chart}']")
                label = await canvas.get_attribute("aria-label") or ""
                assert label.startswith(words[key]) and days[-1] in label, label
                assert words["history.p50"] in label, label
                assert await colored_pixels(page, chart) > 100, (lang, chart)     # none: not drawn
            assert await page.locator("figure.chart-box figcaption").all_inner_texts() == [
                words[k] for k in ("history.loss", "history.jitter", "history.rtt", "history.capacity",
                                   "history.checks")]
            await shot(page, f"terminal-history-{lang}")
        # Fewer days: the period selector asks again.
        async with page.expect_response(lambda r: "/history?" in r.url and "days=7" in r.url) as asked:
            await page.select_option("#history-days", "7")
        assert (await asked.value).ok
        await page.wait_for_function("document.querySelectorAll('table.history tbody tr').length > 0")
        assert await page.locator("table.history tbody tr").count() == len(LOSSES)     # all within 7 days

        # A hearing's check links its pair (a test's pair here: the hearing's check has no result).
        await page.goto(f"{ctl.base}#hearing/{ctl.hearing['id']}")
        await page.locator("tr[data-check] a[href^='#pair/']").first.click()
        await page.wait_for_selector("table.history tbody tr")
        assert page.url.endswith("#pair/court-almaty-1/sizo-almaty-1")
        assert await page.locator("#view h2").inner_text() == \
            catalog("en")["history.title_pair"].replace("{a}", court).replace("{b}", sizo)
        assert await page.locator("table.history tbody tr").count() == len(LOSSES)
        assert await colored_pixels(page, "loss") > 100
        assert page.errors == []
