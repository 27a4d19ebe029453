"""The self-check link in Debian's Chromium with its fake camera and microphone (issue 14): a real
WebRTC session between the browser and the controller's own aiortc peer, the page's verdict in the
browser's language, and the hearing's list showing the finished self-check with figures; a denied
camera reported `denied`, a black camera (a black .y4m played as the camera) `black`.

Across the netlab's impaired link: tests/test_selfcheck_netlab.py."""
from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from controller.store import users as users_repo
from tests.browser import (
    DENY_PROMPTS,
    FAKE_MEDIA,
    FAKE_UI,
    PASSWORD,
    browser,
    new_page,
    requires_browser,
    set_lang,
    shot,
    sign_in,
)
from tests.conftest import FakeClock
from tests.controller_kit import Controller

pytestmark = [requires_browser, pytest.mark.timeout(240)]
API = "/api/v1"
DURATION_S = 6.0     # the media window (the default is 15 s; the figures need a few seconds only)


def black_y4m(path: Path, frames: int = 30, luma: int = 16) -> Path:
    """A black camera: frames of Y=16 (black in video range), U=V=128, written with PyAV; another
    `luma` gives a grey picture that never changes (a frozen camera)."""
    import av
    with av.open(str(path), "w", format="yuv4mpegpipe") as out:
        stream = out.add_stream("rawvideo", rate=15)
        stream.width, stream.height, stream.pix_fmt = 320, 240, "yuv420p"
        for _ in range(frames):
            frame = av.VideoFrame(320, 240, "yuv420p")
            for plane, value in zip(frame.planes, (luma, 128, 128), strict=True):
                plane.update(bytes([value]) * plane.buffer_size)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


@pytest.fixture
async def ctl(tmp_path):
    clock = FakeClock(dt.datetime.now(dt.UTC).replace(microsecond=0))
    async with Controller(f"sqlite:///{tmp_path / 'c.sqlite'}", clock,
                          selfcheck={"duration_s": DURATION_S}) as c:
        _, h = await c.schedule(start=clock() + dt.timedelta(days=1))
        c.hid = h["id"]
        c.base = str(c.client.make_url("/"))
        hashed = await users_repo.password_hash(PASSWORD)
        async with c.db.transaction() as conn:
            await users_repo.set_password(conn, "secretary-1", hashed, clock())
        yield c


async def link(ctl, name: str) -> dict:
    _, out = await ctl.call("POST", f"{API}/hearings/{ctl.hid}/self-checks", role="secretary",
                            json={"name": name, "mode": "mobile"}, expect=201)
    return out


async def run_check(b, url: str, *, locale: str = "ru-RU", permissions: list[str] | None = None):
    page = await new_page(b, width=390, height=844, locale=locale)     # a phone's screen
    if permissions is not None:
        await page.context.grant_permissions(permissions)
    await page.goto(url)
    await page.wait_for_selector("body[data-state='ready']")
    await page.click("#start")
    try:
        await page.wait_for_selector("body[data-state='done']", timeout=DURATION_S * 1000 + 40_000)
    except Exception:
        raise AssertionError(f"the page did not finish: {await page.inner_text('body')!r} {page.errors}") from None
    return page


async def item(ctl, sid: int) -> dict:
    _, listed = await ctl.call("GET", f"{API}/hearings/{ctl.hid}/self-checks", expect=200)
    return next(i for i in listed["items"] if i["id"] == sid)


async def test_a_phone_with_fake_devices_runs_the_check_and_the_hearing_shows_it(ctl):
    made = await link(ctl, "Айгерим Нурланова")
    async with browser([*FAKE_MEDIA, FAKE_UI]) as b:
        page = await run_check(b, made["url"], locale="kk-KZ")
        assert await page.evaluate("document.documentElement.lang") == "kk"
        assert await page.get_attribute("#result", "data-verdict") == "good"
        reasons = await page.inner_text("#reasons")
        assert "Камера, микрофон және байланыс жұмыс істейді" in reasons
        await shot(page, "selfcheck-phone-kk")
        assert page.errors == []
        got = await item(ctl, made["id"])
        print("self-check with fake devices:", got)
        assert got["status"] == "done" and got["verdict"] == "good"
        assert got["camera"] == "ok" and got["microphone"] == "ok"
        assert got["mode"] == "mobile" and "Chrome" in got["browser"]
        assert got["path_type"] in ("host", "prflx", "srflx")
        assert got["rtt_ms"] is not None and 0 <= got["rtt_ms"] < 100          # one machine
        for d in ("inbound", "outbound"):
            assert got[d]["loss_ratio"] is not None and got[d]["loss_ratio"] < 0.02, got
            assert got[d]["jitter_ms"] is not None
            assert got[d]["bitrate_kbps"] is not None and got[d]["bitrate_kbps"] > 10, got
        # The hearing's page lists it with its figures, in each language on a phone-wide screen (one
        # page, the language switched), and makes a new link to copy and as a QR code.
        staff = await new_page(b, width=390, height=844, locale="en-US")
        await sign_in(staff, ctl.base, "secretary-1")
        await staff.goto(f"{ctl.base}#hearing/{ctl.hid}")
        row = staff.locator(f"table.selfchecks tbody tr[data-id='{made['id']}']")
        await row.wait_for()
        text = await row.inner_text()
        assert "Айгерим Нурланова" in text and "RTT" in text
        events = staff.locator("tr[data-kind='self_check_finished'] td.sentence")
        sentence = "Self-check of Айгерим Нурланова (mobile VKS (phone or laptop)) finished: good"
        assert sentence in await events.inner_text()
        await staff.fill("#selfcheck-name", "Серік Ахметов")
        await staff.click("form.inline button[type=submit]")
        url = await (await staff.wait_for_selector("#selfcheck-url")).get_attribute("value")
        assert url.startswith(ctl.base.rstrip("/") + "/self-check/")
        await staff.wait_for_function("() => document.querySelector('img.qr')?.naturalWidth > 0")
        await staff.locator("table.selfchecks tbody tr", has_text="Серік Ахметов").wait_for()
        heading = {"kk": "Қашықтағы қатысушылардың өзін-өзі тексеруі", "ru": "Самопроверки удалённых участников",
                   "en": "Self-checks of remote participants"}
        for lang in ("kk", "ru", "en"):
            await set_lang(staff, lang)
            await staff.get_by_role("heading", name=heading[lang]).wait_for()
            await row.wait_for()
            await shot(staff, f"selfcheck-hearing-{lang}")
        assert staff.errors == []


async def test_a_denied_camera_is_reported_denied(ctl):
    made = await link(ctl, "Denied Camera")
    async with browser([*FAKE_MEDIA, DENY_PROMPTS]) as b:      # no fake UI: the browser refuses the request
        page = await run_check(b, made["url"], locale="en-US")
        assert await page.get_attribute("#result", "data-verdict") == "unusable"
        assert "allow the camera in the browser's settings" in await page.inner_text("#reasons")
    got = await item(ctl, made["id"])
    assert got["camera"] == "denied" and got["microphone"] == "denied"
    assert got["verdict"] == "unusable"


async def test_a_black_camera_is_reported_black(ctl, tmp_path):
    made = await link(ctl, "Black Camera")
    y4m = black_y4m(tmp_path / "black.y4m")
    async with browser([*FAKE_MEDIA, FAKE_UI, f"--use-file-for-fake-video-capture={y4m}"]) as b:
        page = await run_check(b, made["url"], locale="ru-RU")
        assert await page.get_attribute("#result", "data-verdict") == "unusable"
        assert "только чёрный экран" in await page.inner_text("#reasons")
        assert page.errors == []
    got = await item(ctl, made["id"])
    assert got["camera"] == "black" and got["microphone"] == "ok" and got["status"] == "done"


def silent_wav(path: Path, seconds: int = 3) -> Path:
    """A microphone that gives only silence: 48 kHz mono zeros."""
    import wave
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(48_000)
        w.writeframes(b"\0\0" * 48_000 * seconds)
    return path


async def test_a_frozen_camera_and_a_silent_microphone_are_reported(ctl, tmp_path):
    made = await link(ctl, "Frozen Camera")
    grey = black_y4m(tmp_path / "grey.y4m", luma=128)
    quiet = silent_wav(tmp_path / "silent.wav")
    async with browser([*FAKE_MEDIA, FAKE_UI, f"--use-file-for-fake-video-capture={grey}",
                        f"--use-file-for-fake-audio-capture={quiet}"]) as b:
        page = await run_check(b, made["url"], locale="en-GB")
        reasons = await page.inner_text("#reasons")
        assert "picture does not move" in reasons and "microphone gives no sound" in reasons
        assert page.errors == []
    got = await item(ctl, made["id"])
    assert (got["camera"], got["microphone"], got["verdict"]) == ("frozen", "silent", "unusable")
