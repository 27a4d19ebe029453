"""`vks-agent run`'s daemon end to end: the controller commands two daemons, they run a real
WebRTC session (aiortc on loopback) signalled through the controller, and the reports arrive
through the durable outbox: intervals while it runs, the final report once."""
from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time

import pytest

from agent.daemon import Daemon
from controller.store import agents as store
from tests.test_link_hub import Controller, agent_settings, eventually

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
async def controller(tmp_path):
    c = await Controller(f"sqlite:///{tmp_path}/controller.sqlite").start()
    yield c
    await c.stop()


async def start_daemon(controller, tmp_path, terminal_id):
    token = await controller.token(terminal_id)
    d = Daemon(agent_settings(tmp_path, terminal_id, controller.url, token),
               link_options={"backoff_initial": 0.05, "backoff_max": 0.5}, stop_timeout_s=5)
    return d, asyncio.create_task(d.run())


@contextlib.asynccontextmanager
async def two_daemons(controller, tmp_path):
    """Daemons for court-1 and sizo-1, both online; stopped on leaving (each exits 0)."""
    caller, caller_task = await start_daemon(controller, tmp_path, "court-1")
    callee, callee_task = await start_daemon(controller, tmp_path, "sizo-1")
    try:
        await eventually(lambda: controller.hub.online() == {"court-1", "sizo-1"}, timeout=15)
        yield caller, callee
    finally:
        caller.request_stop()
        callee.request_stop()
        assert await asyncio.wait_for(asyncio.gather(caller_task, callee_task), 30) == [0, 0]


async def test_two_daemons_run_a_commanded_session_and_report_through_the_outbox(controller, tmp_path):
    async with two_daemons(controller, tmp_path) as (caller, callee):
        await controller.hub.start_session(session_id="s-real", caller="court-1", callee="sizo-1",
                                           kind="test", profile="monitor", duration_s=3)
        await eventually(lambda: "s-real" in controller.results.results, timeout=60, step=0.1)
        report = controller.results.results["s-real"][0]
        assert report["schema"] == "vks.test-report/1"
        assert report["connected"] is True, report.get("error")
        assert report["inbound"]["packets"] > 0 and report["outbound"]["packets"] > 0

        async def stored(kind, terminal):
            async with controller.db.read() as conn:
                rows = await store.reports_for_session(conn, "s-real", kind)
            return [r for r in rows if r["terminal_id"] == terminal]
        # Intervals from the caller while it ran; the callee's own final report too.
        intervals = await stored("interval", "court-1")
        assert len(intervals) >= 2 and intervals[0]["body"]["role"] == "caller"
        await eventually(lambda: stored("session", "sizo-1"), timeout=20, step=0.1)
        # Everything acked: both outboxes empty.
        await eventually(lambda: len(caller.outbox) == 0 and len(callee.outbox) == 0, timeout=10)
        assert controller.results.results["s-real"] == [report]


async def test_stop_session_cancels_it_and_the_controller_hears_so(controller, tmp_path):
    async with two_daemons(controller, tmp_path) as (caller, _):
        await controller.hub.start_session(session_id="s-stop", caller="court-1", callee="sizo-1",
                                           kind="monitor", profile="monitor", duration_s=600)
        await eventually(lambda: "s-stop" in caller.running_sessions(), timeout=10)
        await controller.hub.stop_session("s-stop")
        await eventually(lambda: not caller.running_sessions(), timeout=15)
        assert "s-stop" not in controller.results.results     # no final report for a stopped session


async def test_a_final_report_the_contract_refuses_fails_the_session_at_once(controller, tmp_path, monkeypatch):
    """A caller's final report that the contract refuses never reaches the outbox, and the
    controller hears at once that the session failed and why - not, after its grace, that no
    result came."""
    from agent import session as engine

    async def refused_report(settings, *, signal, duration_s, profile, on_interval, with_capacity=False, media=None):
        return {"schema": "vks.test-report/1", "connected": True, "duration_s": "thirty"}
    monkeypatch.setattr(engine, "run_caller", refused_report)
    async with two_daemons(controller, tmp_path) as (caller, _):
        await controller.hub.start_session(session_id="s-refused", caller="court-1", callee="sizo-1",
                                           kind="test", profile="monitor", duration_s=3)
        await eventually(lambda: "s-refused" in controller.results.failed, timeout=15, step=0.1)
        [error] = controller.results.failed["s-refused"]
        assert error.startswith("report refused by the contract: ") and "duration_s" in error, error
        assert "s-refused" not in controller.results.results
        assert len(caller.outbox) == 0
        async with controller.db.read() as conn:
            assert await store.reports_for_session(conn, "s-refused", "session") == []


def test_vks_agent_run_exits_0_on_sigterm(tmp_path):
    """A real `vks-agent run` process: SIGTERM while it is connected exits 0 within the bound."""
    async def scenario():
        c = await Controller(f"sqlite:///{tmp_path}/controller.sqlite").start()
        try:
            token = await c.token("court-1")
            cfg = tmp_path / "agent.yaml"
            cfg.write_text(f"terminal_id: court-1\ncontroller:\n  url: {c.url}\n  token: {token}\n"
                           f"  outbox_path: {tmp_path}/outbox.sqlite\n  heartbeat_s: 0.5\n")
            env = dict(os.environ, PYTHONPATH=REPO)
            proc = subprocess.Popen([sys.executable, "-m", "agent.cli", "run", "--config", str(cfg),
                                     "--stop-timeout", "3"], env=env, cwd=REPO,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            try:
                await eventually(lambda: c.hub.online() == {"court-1"}, timeout=30, step=0.1)
                t0 = time.monotonic()
                proc.send_signal(signal.SIGTERM)
                rc = await asyncio.to_thread(proc.wait, 30)
                assert rc == 0, proc.stderr.read().decode()
                assert time.monotonic() - t0 < 20
                await eventually(lambda: c.hub.online() == set(), timeout=10)
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
                proc.stdout.close()
                proc.stderr.close()
        finally:
            await c.stop()
    asyncio.run(scenario())
