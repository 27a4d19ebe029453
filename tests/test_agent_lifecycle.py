"""The daemon's lifecycle (issue 10): every task it starts is awaited or cancelled when it stops;
a stop lets running sessions finish within `stop_timeout_s` and cancels the rest; `close()` may be
called again; nothing needs a controller to be reachable."""
from __future__ import annotations

import asyncio
import time

from agent.daemon import Daemon
from agent.monitor import Monitor
from agent.settings import AgentSettings
from contract import sdnotify, wire
from tests.procs import eventually


def settings(tmp_path) -> AgentSettings:
    return AgentSettings.model_validate({
        "terminal_id": "court-1",
        "controller": {"url": "ws://127.0.0.1:1", "token": "t", "outbox_path": str(tmp_path / "outbox.sqlite")},
        "metrics": {"listen": "off"}})


async def test_a_stop_cancels_a_session_that_outlives_the_bound_and_leaves_no_task(tmp_path):
    d = Daemon(settings(tmp_path), stop_timeout_s=0.5, link_options={"backoff_initial": 0.05, "backoff_max": 0.1})
    run = asyncio.create_task(d.run())
    await eventually(lambda: d.monitor is not None and d.link is not None and d._loops_alive(), timeout=10)
    ended: list[str] = []

    async def endless() -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            ended.append("cancelled")
            raise

    await d._start_session("s-1", endless(), "caller-s-1")
    await d.on_command(wire.LiveEvent(name="break", hearing_id=3))      # no hook configured: returns
    assert d.running_sessions() == ["s-1"]
    started = time.monotonic()
    d.request_stop()
    assert await asyncio.wait_for(run, 10) == 0
    assert time.monotonic() - started >= 0.5   # waited the bound (0.5 s), then cancelled (wait_for bounds it)
    assert ended == ["cancelled"] and d.running_sessions() == []
    # Every task the daemon started (loops, sessions, hooks, monitor) is gone.
    leftover = {t for t in asyncio.all_tasks() if not t.done()} - {asyncio.current_task()}
    assert not leftover, leftover
    assert not d._loops_alive()
    await d.close()                                       # idempotent


async def test_a_session_that_ends_in_time_is_not_cancelled(tmp_path):
    d = Daemon(settings(tmp_path), stop_timeout_s=5.0)
    run = asyncio.create_task(d.run())
    await eventually(lambda: d.monitor is not None and d._loops_alive(), timeout=10)
    finished: list[str] = []

    async def short() -> None:
        await asyncio.sleep(0.3)
        finished.append("done")

    await d._start_session("s-2", short(), "caller-s-2")
    d.request_stop()
    assert await asyncio.wait_for(run, 10) == 0
    assert finished == ["done"]


async def test_after_a_stop_no_command_starts_anything(tmp_path):
    d = Daemon(settings(tmp_path))
    await d.close()
    await d.close()
    await d.on_command(wire.LiveEvent(name="break", hearing_id=3))
    assert len(d.jobs) == 0 and d.running_sessions() == []


async def test_the_monitor_stops_once(tmp_path):
    notes: list[dict] = []

    class Recording(sdnotify.Notifier):
        def send(self, **fields):
            notes.append(fields)
            return True

    m = Monitor(settings(tmp_path), Daemon(settings(tmp_path)).metrics, notifier=Recording(None))
    await m.start()
    await m.stop()
    await m.stop()
    assert [n for n in notes if "stopping" in n] == [{"stopping": 1}]
    assert notes[0].get("ready") == 1
