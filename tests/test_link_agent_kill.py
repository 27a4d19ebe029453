"""An agent killed (SIGKILL) mid-session and restarted (issue 7): the per-second intervals it had
written to its outbox before dying are delivered after the restart, once and without gaps; the
controller fails the orphaned session at once (so the check is retried) instead of waiting for
its timeout; the restarted agent runs the next session normally."""
from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

from controller.store import agents as store
from tests.test_link_hub import Controller, eventually

REPO = Path(__file__).resolve().parent.parent


def agent_proc(cfg: Path, log: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "agent.cli", "-v", "run", "--config", str(cfg)],
                            env=dict(os.environ, PYTHONPATH=str(REPO)), cwd=REPO,
                            stdout=open(log, "ab"), stderr=subprocess.STDOUT)


async def test_agent_killed_mid_session_loses_nothing_written_and_the_session_is_failed(tmp_path):
    c = await Controller(f"sqlite:///{tmp_path}/controller.sqlite", orphan_grace_s=1.0).start()
    procs: dict[str, subprocess.Popen] = {}
    cfgs = {}
    try:
        for t in ("court-1", "sizo-1"):
            token = await c.token(t)
            cfgs[t] = tmp_path / f"{t}.yaml"
            cfgs[t].write_text(f"terminal_id: {t}\nsession: {{host_addresses: [127.0.0.1]}}\n"
                               f"controller:\n  url: {c.url}\n  token: {token}\n"
                               f"  outbox_path: {tmp_path / (t + '.outbox')}\n  heartbeat_s: 0.5\n"
                               f"metrics: {{listen: '127.0.0.1:0'}}\n")
            procs[t] = agent_proc(cfgs[t], tmp_path / f"{t}.log")
        await eventually(lambda: c.hub.online() == {"court-1", "sizo-1"}, timeout=60, step=0.1)
        await c.hub.start_session(session_id="long", caller="court-1", callee="sizo-1", kind="monitor",
                                  profile="monitor", duration_s=120)

        async def intervals():
            async with c.db.read() as conn:
                rows = await store.reports_for_session(conn, "long", "interval")
            return sorted(int(r["report_id"].rsplit(":i", 1)[1]) for r in rows if r["terminal_id"] == "court-1")
        await eventually(lambda: _at_least(intervals, 3), timeout=60, step=0.2)
        procs["court-1"].send_signal(signal.SIGKILL)
        procs["court-1"].wait(30)
        before = await intervals()

        procs["court-1"] = agent_proc(cfgs["court-1"], tmp_path / "court-1.log")
        await eventually(lambda: "long" in c.results.failed, timeout=60, step=0.2)
        assert "restarted" in c.results.failed["long"][0]
        assert "long" not in c.results.results
        got = await intervals()
        assert got == list(range(1, len(got) + 1)), got       # once each, no gaps
        assert len(got) >= len(before)

        # The restarted agent takes the next session.
        await eventually(lambda: c.hub.online() == {"court-1", "sizo-1"}, timeout=30)
        await c.hub.start_session(session_id="next", caller="court-1", callee="sizo-1", kind="test",
                                  profile="monitor", duration_s=2)
        await eventually(lambda: "next" in c.results.results, timeout=60, step=0.2)
        assert c.results.results["next"][0]["connected"] is True
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs.values():
            try:
                await asyncio.to_thread(p.wait, 30)
            except subprocess.TimeoutExpired:
                p.kill()
        await c.stop()


async def _at_least(fn, n):
    return len(await fn()) >= n
