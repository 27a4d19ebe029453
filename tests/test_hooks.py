"""Endpoint hooks (rule 22): a real command that writes a file, a real local HTTP server,
timeouts and failures that never crash the agent, and the daemon firing them on the
controller's break / reconnect / resume commands."""
from __future__ import annotations

import asyncio
import json
import sys
import time

from aiohttp import web

from agent.daemon import Daemon
from agent.hooks import Hooks
from agent.settings import AgentSettings, HookSettings
from contract import wire

WRITER = ("import json, os, sys; open(sys.argv[1], 'w', encoding='utf-8').write(json.dumps("
          "{k: os.environ.get(k) for k in ('VKS_HEARING', 'VKS_EVENT', 'VKS_CAUSE', 'VKS_ATTEMPT', "
          "'VKS_MESSAGE_KK', 'VKS_MESSAGE_RU')} | {'argv': sys.argv[1:]}, ensure_ascii=False))")


def command(*args: str) -> str:
    import shlex
    return shlex.join([sys.executable, "-c", *args])


async def test_command_hook_gets_the_hearing_and_both_messages(tmp_path):
    out = tmp_path / "break.json"
    hooks = Hooks(HookSettings(on_break=command(WRITER, str(out), "a; touch /tmp/never")))
    r = await hooks.fire("break", 42, cause="connection_lost")
    assert r.ok and r.configured and r.kind == "command" and r.exit_code == 0
    got = json.loads(out.read_text(encoding="utf-8"))
    assert got["VKS_HEARING"] == "42" and got["VKS_EVENT"] == "break" and got["VKS_CAUSE"] == "connection_lost"
    assert got["VKS_MESSAGE_KK"] == "Байланыс үзілді — үзіліс жариялау ұсынылады"
    assert got["VKS_MESSAGE_RU"] == "Связь потеряна — рекомендуется объявить перерыв"
    # No shell: the ';' reached the program as part of an argument.
    assert got["argv"] == [str(out), "a; touch /tmp/never"]


async def test_unset_hook_does_nothing_and_failures_are_results_not_exceptions(tmp_path):
    hooks = Hooks(HookSettings(on_break=None, on_reconnect="/nonexistent/program --x",
                               on_resume=command("import sys; sys.exit(3)")))
    assert (await hooks.fire("break", 1)).configured is False
    r = await hooks.fire("reconnect", 1, attempt=2)
    assert not r.ok and "cannot run" in r.error
    r = await hooks.fire("resume", 1)
    assert not r.ok and r.exit_code == 3 and "exited with 3" in r.error


async def test_a_hanging_command_is_killed_at_the_timeout_without_blocking_the_loop(tmp_path):
    hooks = Hooks(HookSettings(on_break=command("import time; time.sleep(30)"), timeout_s=0.5))
    ticks = 0

    async def ticker():
        nonlocal ticks
        while True:
            await asyncio.sleep(0.05)
            ticks += 1
    t = asyncio.create_task(ticker())
    started = time.monotonic()
    r = await hooks.fire("break", 7)
    t.cancel()
    assert not r.ok and "did not finish" in r.error
    assert time.monotonic() - started < 10
    assert ticks >= 3          # the event loop kept running while the hook ran


async def test_http_hook_posts_json_to_a_real_server():
    got: list[dict] = []

    async def handler(request):
        got.append(await request.json())
        return web.json_response({"shown": True})

    async def failing(request):
        return web.Response(status=500, text="screen offline")

    app = web.Application()
    app.router.add_post("/screen", handler)
    app.router.add_post("/broken", failing)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    try:
        hooks = Hooks(HookSettings(on_break=f"http://127.0.0.1:{port}/screen",
                                   on_resume=f"http://127.0.0.1:{port}/broken",
                                   on_reconnect="http://127.0.0.1:1/closed", timeout_s=2),
                      terminal_id="court-1")
        r = await hooks.fire("break", 5, cause="quality")
        assert r.ok and r.kind == "http" and r.http_status == 200
        assert got[0]["event"] == "break" and got[0]["hearing_id"] == 5 and got[0]["cause"] == "quality"
        assert got[0]["terminal_id"] == "court-1"
        assert got[0]["message"] == {"kk": "Байланыс үзілді — үзіліс жариялау ұсынылады",
                                     "ru": "Связь потеряна — рекомендуется объявить перерыв"}
        r = await hooks.fire("resume", 5)
        assert not r.ok and r.http_status == 500
        r = await hooks.fire("reconnect", 5)
        assert not r.ok and "POST" in r.error
        await hooks.close()
    finally:
        await runner.cleanup()


async def test_daemon_fires_the_hook_on_the_controllers_command_and_reports_it(tmp_path):
    out = tmp_path / "hook.json"
    settings = AgentSettings.model_validate({
        "terminal_id": "court-1",
        "controller": {"url": "ws://127.0.0.1:1", "outbox_path": str(tmp_path / "outbox.sqlite")},
        "hooks": {"on_break": command(WRITER, str(out)), "on_resume": "/nonexistent/x"}})
    d = Daemon(settings)
    await d.on_command(wire.LiveEvent(name="break", hearing_id=9, cause="connection_lost"))
    await d.on_command(wire.LiveEvent(name="resume", hearing_id=9))
    await d.on_command(wire.LiveEvent(name="reconnect", hearing_id=9, attempt=1))   # not configured
    await d.jobs.wait_and_close()          # every hook the commands started has run
    assert json.loads(out.read_text(encoding="utf-8"))["VKS_HEARING"] == "9"
    reports = []
    while not d._reports.empty():
        reports.append(d._reports.get_nowait())
    bodies = {body["hook"]["event"]: body["hook"] for _, kind, body, _, _ in reports if kind == "health"}
    assert set(bodies) == {"break", "resume"}
    assert bodies["break"]["ok"] is True and bodies["resume"]["ok"] is False
    await d.hooks.close()
