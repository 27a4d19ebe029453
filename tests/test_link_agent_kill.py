"""An agent killed (SIGKILL) mid-session and restarted (issue 7): the per-second intervals it had
written to its outbox before dying are delivered after the restart, once and without gaps; the
controller fails the orphaned session at once (so the check is retried) instead of waiting for
its timeout; the restarted agent runs the next session normally."""
from __future__ import annotations

import asyncio
import signal

from controller.store import agents as store
from tests.harness import AgentProc
from tests.procs import eventually
from tests.test_link_hub import Controller


async def test_agent_killed_mid_session_loses_nothing_written_and_the_session_is_failed(tmp_path, agent_proc):
    c = await Controller(f"sqlite:///{tmp_path}/controller.sqlite", orphan_grace_s=1.0).start()
    agents: dict[str, AgentProc] = {}
    try:
        tokens = {t: await c.token(t) for t in ("court-1", "sizo-1")}

        def start(t: str) -> AgentProc:         # the same home, outbox and log after a restart
            return agent_proc(t, c.url, tokens[t], heartbeat_s=0.5, config={"metrics": {"listen": "127.0.0.1:0"}})
        for t in tokens:
            agents[t] = start(t)
        await eventually(lambda: c.hub.online() == {"court-1", "sizo-1"}, timeout=60, step=0.1)
        await c.hub.start_session(session_id="long", caller="court-1", callee="sizo-1", kind="monitor",
                                  profile="monitor", duration_s=120)

        async def intervals():
            async with c.db.read() as conn:
                rows = await store.reports_for_session(conn, "long", "interval")
            return sorted(int(r["report_id"].rsplit(":i", 1)[1]) for r in rows if r["terminal_id"] == "court-1")
        await eventually(lambda: _at_least(intervals, 3), timeout=60, step=0.2)
        agents["court-1"].proc.send_signal(signal.SIGKILL)
        agents["court-1"].proc.wait(30)
        before = await intervals()

        agents["court-1"] = start("court-1")
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
        await asyncio.gather(*(asyncio.to_thread(a.stop) for a in agents.values()))
        await c.stop()


async def _at_least(fn, n):
    return len(await fn()) >= n
