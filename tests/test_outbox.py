"""The durable outbox: kept until acked, in order, bounded, survives restart and a full disk."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import uuid

import pytest

from agent.outbox import Outbox, OutboxStorageError
from tests.harness import require_or_skip


async def ids(box: Outbox) -> list[str]:
    return [e.report_id for e in await box.pending(limit=10_000)]


async def test_report_is_kept_until_acked_and_returned_in_order(tmp_path):
    async with Outbox(tmp_path / "o.sqlite") as box:
        for i in range(5):
            await box.put(f"r{i}", "interval", {"i": i}, session_id="s1")
        assert await ids(box) == ["r0", "r1", "r2", "r3", "r4"]
        assert await box.ack("r2") is True
        assert await box.ack("r2") is False          # a second ack is harmless
        assert await ids(box) == ["r0", "r1", "r3", "r4"]
        entries = await box.pending()
        assert entries[0].body == {"i": 0} and entries[0].session_id == "s1"
        # The drainer pages by seq: nothing before what it has already sent.
        later = await box.pending(after_seq=entries[1].seq)
        assert [e.report_id for e in later] == ["r3", "r4"]


async def test_a_burst_of_acks_is_forgotten_in_one_transaction(tmp_path):
    """The link deletes what a burst of acks covers at once (agent/link.py): one commit, the
    counts kept, unknown and repeated ids harmless, and it holds across a restart."""
    path = tmp_path / "o.sqlite"
    async with Outbox(path) as box:
        for i in range(1200):                       # more than one DELETE statement's chunk
            await box.put(f"r{i}", "interval", {"i": i})
        size = box.stats().bytes
        acked = [f"r{i}" for i in range(0, 1200, 2)] + ["r0", "never-sent"]
        commits = []
        box._db.set_trace_callback(lambda sql: commits.append(sql) if sql == "COMMIT" else None)
        assert await box.ack_many(acked) == 600
        box._db.set_trace_callback(None)
        assert commits == ["COMMIT"]
        assert len(box) == 600 and 0 < box.stats().bytes < size
        assert await box.ack_many(["r0", "r2"]) == 0      # acked twice: nothing more to do
    async with Outbox(path) as box:
        assert await ids(box) == [f"r{i}" for i in range(1, 1200, 2)]
        assert box.stats().bytes == sum(len(f'{{"i":{i}}}') for i in range(1, 1200, 2))


async def test_same_report_id_is_stored_once(tmp_path):
    async with Outbox(tmp_path / "o.sqlite") as box:
        await box.put("r1", "session", {"a": 1})
        await box.put("r1", "session", {"a": 1})
        assert await ids(box) == ["r1"] and len(box) == 1


async def test_unacked_reports_survive_a_restart_of_the_agent_process(tmp_path):
    """A real process writes reports and is killed with SIGKILL; a new one finds them all."""
    path = tmp_path / "o.sqlite"
    script = textwrap.dedent(f"""
        import asyncio, os, signal
        from agent.outbox import Outbox
        async def main():
            box = await Outbox({str(path)!r}).open()
            for i in range(50):
                await box.put(f"r{{i}}", "interval", {{"i": i}})
            await box.ack("r0")
            os.kill(os.getpid(), signal.SIGKILL)
        asyncio.run(main())
    """)
    proc = subprocess.run([sys.executable, "-c", script], cwd=os.getcwd(), timeout=60)
    assert proc.returncode == -9
    async with Outbox(path) as box:
        assert await ids(box) == [f"r{i}" for i in range(1, 50)]


async def test_when_full_oldest_intervals_go_first_and_session_reports_stay(tmp_path):
    async with Outbox(tmp_path / "o.sqlite", max_rows=5) as box:
        await box.put("s-old", "session", {"v": 1})
        for i in range(4):
            await box.put(f"i{i}", "interval", {"v": i})
        await box.put("s-new", "session", {"v": 2})      # evicts i0
        assert await ids(box) == ["s-old", "i1", "i2", "i3", "s-new"]
        await box.put("i4", "interval", {"v": 4})        # evicts i1
        assert await ids(box) == ["s-old", "i2", "i3", "s-new", "i4"]
        for i in range(5, 9):
            await box.put(f"h{i}", "health", {})
        # Health reports evict intervals, never session reports.
        # (h8 finds no interval left and evicts the oldest health report, h5)
        assert await ids(box) == ["s-old", "s-new", "h6", "h7", "h8"]
        assert box.dropped["interval"] == 5 and box.dropped["health"] == 1
        for i in range(5):
            await box.put(f"s{i}", "session", {"v": i})
        # Only session reports left: the newest five are kept.
        assert await ids(box) == ["s0", "s1", "s2", "s3", "s4"]
        await box.put("late-interval", "interval", {})   # no room for an interval: it is dropped
        assert "late-interval" not in await ids(box)
        dropped = box.dropped
    # Counts persist across restarts, for metrics.
    async with Outbox(tmp_path / "o.sqlite", max_rows=5) as box:
        assert box.dropped == dropped
        assert dropped["session"] == 2 and dropped["interval"] == 6


async def test_byte_bound(tmp_path):
    async with Outbox(tmp_path / "o.sqlite", max_bytes=1000) as box:
        for i in range(20):
            await box.put(f"i{i}", "interval", {"pad": "x" * 90})
        assert box.stats().bytes <= 1000
        assert (await ids(box))[-1] == "i19"
        await box.put("huge", "session", {"pad": "x" * 5000})   # larger than the bound itself
        assert "huge" not in await ids(box) and box.dropped["session"] == 1


def _can_mount_tmpfs() -> bool:
    return os.geteuid() == 0 and shutil.which("mount") is not None


@pytest.fixture
def small_disk(tmp_path):
    """A real 1 MiB filesystem (tmpfs) that can be filled up."""
    if not _can_mount_tmpfs():
        require_or_skip("needs root to mount a small tmpfs")
    mnt = tmp_path / f"disk-{uuid.uuid4().hex[:6]}"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)], capture_output=True)
    if r.returncode != 0:
        require_or_skip(f"cannot mount tmpfs: {r.stderr.decode().strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def _fill(mnt) -> list:
    fillers = []
    i = 0
    while True:
        p = mnt / f"fill{i}"
        try:
            with open(p, "wb") as f:
                while True:
                    f.write(b"\0" * 4096)
                    f.flush()
        except OSError:
            fillers.append(p)
            return fillers
        fillers.append(p)
        i += 1


async def test_disk_full_raises_a_typed_error_keeps_the_report_and_recovers(small_disk):
    box = await Outbox(small_disk / "o.sqlite").open()
    try:
        await box.put("before", "session", {"v": 0})
        fillers = _fill(small_disk)
        big = {"pad": "y" * 20_000}
        with pytest.raises(OutboxStorageError) as info:
            for i in range(20):
                await box.put(f"full{i}", "interval", big)
        assert info.value.kept_in_memory
        failed_at = info.value.report_id
        # Held in memory and still handed out for sending, in order.
        pending = await ids(box)
        assert pending[0] == "before" and pending[-1] == failed_at
        assert box.stats().memory_rows >= 1
        # An ack of a memory-only report forgets it, alone or in a batch.
        assert await box.ack(failed_at)
        with pytest.raises(OutboxStorageError):
            await box.put("still-full", "session", {"v": 1})
        with pytest.raises(OutboxStorageError):
            await box.put("acked-in-a-batch", "interval", {"v": 1})
        assert await box.ack_many(["acked-in-a-batch", "never-sent"]) == 1
        # Space comes back: the next put writes what was held, in order.
        for p in fillers:
            p.unlink()
        await box.put("after", "session", {"v": 2})
        assert box.stats().memory_rows == 0
        tail = (await ids(box))[-2:]
        assert tail == ["still-full", "after"]
    finally:
        await box.close()
    async with Outbox(small_disk / "o.sqlite") as box:
        assert {"before", "still-full", "after"} <= set(await ids(box))
