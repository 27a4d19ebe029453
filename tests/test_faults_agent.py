"""Faults on the agent's side (issue 7).

Disk full while the controller is unreachable: the outbox sits on a real 2 MiB tmpfs that is
filled up; the agent keeps running and keeps what it measures (in memory when the disk refuses
it), its health check fails naming the outbox's disk and its metrics count the storage errors;
when space returns and the controller comes back, every report is delivered exactly once.

The controller unreachable for a long time while the agent keeps producing (compressed: a few
seconds and hundreds of reports here; benchmarks/soak.py runs it for as long as you like): the
durable outbox holds everything and delivers each report once, in order per kind."""
from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import uuid

import pytest

from agent.health import HealthChecker
from agent.metrics import AgentMetrics
from agent.outbox import OutboxStorageError
from tests.harness import require_or_skip
from tests.procs import eventually
from tests.test_link_hub import Agent, Controller, agent_settings
from tests.test_outbox import _fill


@pytest.fixture
def small_disk(tmp_path):
    if os.geteuid() != 0 or shutil.which("mount") is None:
        require_or_skip("needs root to mount a small tmpfs")
    mnt = tmp_path / f"disk-{uuid.uuid4().hex[:6]}"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)], capture_output=True)
    if r.returncode != 0:
        require_or_skip(f"cannot mount tmpfs: {r.stderr.decode().strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


async def stored_ids(c: Controller, terminal_id: str) -> list[str]:
    from sqlalchemy import select

    from controller.store import agents as store
    t = store.agent_reports
    async with c.db.read() as conn:
        return [r[0] for r in (await conn.execute(select(t.c.report_id).where(t.c.terminal_id == terminal_id)))]


async def test_disk_full_with_the_controller_away_then_everything_delivered_once(small_disk, tmp_path):
    c = Controller(f"sqlite:///{tmp_path / 'c.sqlite'}")       # not started yet: unreachable
    await c.start()
    token = await c.token("court-1")
    await c.stop()
    settings = agent_settings(small_disk, "court-1", c.url, token)
    a = await Agent(settings).start()
    metrics = AgentMetrics(terminal_id="court-1")
    metrics.bind_outbox(a.outbox)
    sent: list[str] = []
    try:
        for i in range(5):
            await a.outbox.put(f"early-{i}", "interval", {"i": i})
            sent.append(f"early-{i}")
        fillers = _fill(small_disk)
        refused = 0
        for i in range(40):
            try:
                await a.outbox.put(f"full-{i}", "interval", {"i": i, "pad": "p" * 2000})
            except OutboxStorageError as exc:
                assert exc.kept_in_memory
                refused += 1
            sent.append(f"full-{i}")
        assert refused > 0 and a.outbox.stats().storage_errors > 0
        # The agent reports the problem: health fails naming the outbox's disk; metrics count it.
        health = await HealthChecker(settings).check()
        assert health["status"] == "fail", health
        assert any("outbox" in p for p in health["problems"]), health["problems"]
        body, _ = metrics.render()
        errors = [line for line in body.decode().splitlines()
                  if line.startswith("vks_agent_outbox_storage_errors") and not line.startswith("#")]
        assert errors and float(errors[0].split()[-1]) > 0, errors
        assert not a.task.done(), "the link gave up"

        # Space returns, the controller comes back: all delivered, each once.
        for p in fillers:
            p.unlink()
        await a.outbox.put("after", "session", {"v": 1})
        sent.append("after")
        await c.start()
        # (Before the fix in agent/outbox.py the acked reports could not be deleted any more:
        # the WAL had filled the small disk and was never checkpointed.)
        await eventually(lambda: len(a.outbox) == 0, timeout=60, step=0.1)
        got = await stored_ids(c, "court-1")
        assert sorted(got) == sorted(sent)
    finally:
        await a.stop()
        await c.stop()


async def test_controller_away_for_long_reports_held_then_delivered_once(tmp_path):
    """Compressed: 600 reports produced over several controller-less seconds, with the agent's
    link retrying all along; then the controller starts and every report is stored once."""
    c = Controller(f"sqlite:///{tmp_path / 'c.sqlite'}")
    await c.start()
    token = await c.token("court-1")
    await c.stop()
    a = await Agent(agent_settings(tmp_path, "court-1", c.url, token)).start()
    try:
        sent = []
        for i in range(600):
            kind = "session" if i % 100 == 99 else "interval"
            await a.outbox.put(f"r{i}", kind, {"i": i})       # naming no session: none was commanded
            sent.append(f"r{i}")
            if i % 50 == 0:
                await asyncio.sleep(0.2)              # time passes; the link keeps retrying
        assert len(a.outbox) == 600 and a.link.connects == 0
        await c.start()
        await eventually(lambda: len(a.outbox) == 0, timeout=60, step=0.1)
        # Restart the controller once more: nothing is sent again (all were acked).
        await c.stop()
        await c.start()
        await eventually(lambda: a.link.connects >= 2, timeout=30)
        await asyncio.sleep(0.5)
        got = await stored_ids(c, "court-1")
        assert len(got) == 600 and sorted(got) == sorted(sent)
    finally:
        await a.stop()
        await c.stop()


async def test_acked_reports_are_deleted_after_the_disk_was_full(small_disk):
    """Regression (agent/outbox.py): after the disk had been full, deleting acked reports failed
    with "database or disk is full" for ever - the WAL grew until it filled the small disk
    (autocheckpoint at 4 MiB). Now the WAL stays small and a full disk forces a checkpoint."""
    from agent.outbox import Outbox
    box = await Outbox(small_disk / "o.sqlite").open()
    try:
        fillers = _fill(small_disk)
        for i in range(40):
            try:
                await box.put(f"f{i}", "interval", {"i": i, "pad": "p" * 2000})
            except OutboxStorageError:
                pass
        for p in fillers:
            p.unlink()
        await box.put("after", "session", {})
        assert len(box) == 41 and box.stats().memory_rows == 0
        for i in range(20):
            assert await box.ack(f"f{i}")
        # The link's batched delete (one transaction) works on the same refilled disk.
        fillers = _fill(small_disk)
        try:
            assert await box.ack_many([f"f{i}" for i in range(20, 40)]) == 20
        finally:
            for p in fillers:
                p.unlink()
        assert await box.ack("after") and len(box) == 0
    finally:
        await box.close()
