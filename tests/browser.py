"""The headless-browser harness for the web page's tests.

Debian's chromium (`/usr/bin/chromium`, scripts/system-packages.sh) driven by
Playwright for Python: its driver ships inside the wheel and talks to the
browser over the DevTools protocol, so no chromedriver whose version must
match the browser, and its async API runs on the test's own event loop next to
the in-process controller. No browser is ever downloaded (`playwright install`
is never run): the system chromium is launched by path.

    async with browser() as b:
        page = await new_page(b)
        await sign_in(page, base, "admin-1", PASSWORD)
        await shot(page, "hearings-ru")      # tests/artifacts/web/hearings-ru.png

`requires_browser` skips a test, with the reason, where chromium or
Playwright is missing (under CI it fails instead: tests/harness.py). `page.errors` collects uncaught exceptions, console
errors and 5xx responses: a test asserts it stays empty.
"""
from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

from tests.harness import needs_system

REPO = Path(__file__).resolve().parent.parent
ARTIFACTS = REPO / "tests" / "artifacts" / "web"
CHROMIUM = os.environ.get("VKS_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
        "--disable-dev-shm-usage"]
PASSWORD = "correct horse battery"
I18N = REPO / "controller" / "web" / "i18n"


def catalog(lang: str) -> dict[str, str]:
    """The page's catalog of one language (controller/web/i18n): the words a test expects to see."""
    return json.loads((I18N / f"{lang}.json").read_text(encoding="utf-8"))
# Chromium's fake camera (a moving test pattern, or `--use-file-for-fake-video-capture=<file.y4m>`)
# and fake microphone (a beep about once a second); `FAKE_UI` also grants the camera and microphone
# without a prompt - with DENY_PROMPTS instead the page's request is refused (NotAllowedError): a denied camera.
FAKE_MEDIA = ["--use-fake-device-for-media-stream", "--autoplay-policy=no-user-gesture-required"]
FAKE_UI = "--use-fake-ui-for-media-stream"
DENY_PROMPTS = "--deny-permission-prompts"      # headless, a prompt would wait for ever: refuse it


def unavailable() -> str | None:
    """Why the browser tests cannot run here, or None."""
    if not Path(CHROMIUM).exists():
        return f"no chromium at {CHROMIUM} (install it: bash scripts/system-packages.sh)"
    if importlib.util.find_spec("playwright") is None:
        return "Playwright for Python is not installed (pip install playwright; never `playwright install`)"
    return None


requires_browser = needs_system(unavailable())


@contextlib.asynccontextmanager
async def browser(extra_args: list[str] | tuple[str, ...] = ()) -> AsyncIterator:
    """Chromium with ARGS and `extra_args` (e.g. FAKE_MEDIA + [FAKE_UI] for the fake devices)."""
    from playwright.async_api import async_playwright
    async with async_playwright() as p:
        b = await p.chromium.launch(executable_path=CHROMIUM, headless=True, args=[*ARGS, *extra_args])
        try:
            yield b
        finally:
            await b.close()


async def new_page(b, *, width: int = 1280, height: int = 800, timezone: str = "Europe/Berlin",
                   locale: str = "ru-RU"):
    """A page in a fresh context (own cookies and localStorage). The browser's own zone is
    deliberately not the courts' one: the page must show each court's local time."""
    ctx = await b.new_context(viewport={"width": width, "height": height}, timezone_id=timezone, locale=locale)
    ctx.set_default_timeout(15_000)
    page = await ctx.new_page()
    page.errors = []
    page.on("pageerror", lambda exc: page.errors.append(f"pageerror: {exc}"))
    # A 4xx the page expects (e.g. no act drafted yet) is not an error; 5xx and script errors are.
    page.on("console", lambda msg: page.errors.append(f"console: {msg.text}")
            if msg.type == "error" and not msg.text.startswith("Failed to load resource") else None)
    page.on("response", lambda resp: page.errors.append(f"HTTP {resp.status} {resp.url}")
            if resp.status >= 500 else None)
    return page


async def shot(page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    await page.screenshot(path=str(path), full_page=True)
    return path


async def open_page(page, base: str) -> None:
    await page.goto(base)
    await page.wait_for_selector("body[data-ready='1']")


async def sign_in(page, base: str, user: str, password: str = PASSWORD) -> None:
    await open_page(page, base)
    await page.fill("#login-user", user)
    await page.fill("#login-pass", password)
    await page.click("#login-form button[type=submit]")
    await page.wait_for_selector("#whoami:not([hidden])")


async def set_lang(page, lang: str) -> None:
    await page.select_option("#lang", lang)
    await page.wait_for_function("(l) => document.documentElement.lang === l", arg=lang)
