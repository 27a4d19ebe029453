"""agent/heap.py: what a session freed goes back to the system (issue 15, the agent's footprint).

glibc keeps memory freed in a thread's arena for that arena's next allocations; an agent whose
sessions run their codecs and reports in worker threads grew session after session (88 -> 130 MB
idle after eight). These tests make such a heap in a worker thread - blocks with a survivor every
so often, so that nothing is at the arena's top for free() to give back by itself - and check that
`trim` returns it, and that `release_soon` trims in a worker thread once the delay has passed.
"""
from __future__ import annotations

import asyncio
import threading

import psutil
import pytest

from agent import heap

pytestmark = pytest.mark.skipif(not heap.available(), reason="not glibc: nothing to trim")

BLOCK = 32 * 1024          # under glibc's mmap threshold: from the arena, not a mapping of its own
BLOCKS = 2000              # ~64 MB


def fragmented_heap_in_a_thread() -> list[bytearray]:
    """Allocate ~64 MB in a worker thread (its own arena), free all but every 50th block."""
    kept: list[bytearray] = []

    def work() -> None:
        blocks = [bytearray(BLOCK) for _ in range(BLOCKS)]
        for b in blocks:                 # touch every page: resident, not just reserved
            b[::4096] = b"\x01" * len(b[::4096])
        kept.extend(blocks[::50])
        blocks.clear()

    t = threading.Thread(target=work)
    t.start()
    t.join()
    return kept


def test_trim_gives_a_threads_freed_heap_back():
    kept = fragmented_heap_in_a_thread()
    before = psutil.Process().memory_info().rss
    assert heap.trim() is True
    after = psutil.Process().memory_info().rss
    assert before - after > 30 * 2**20, (before / 2**20, after / 2**20)     # of ~62 MB freed
    assert len(kept) == BLOCKS // 50


async def test_release_soon_trims_in_a_worker_thread_after_the_delay(monkeypatch):
    calls: list[tuple[float, bool]] = []
    done = asyncio.Event()
    loop = asyncio.get_running_loop()

    def recorded() -> bool:
        calls.append((loop.time(), threading.current_thread() is threading.main_thread()))
        loop.call_soon_threadsafe(done.set)
        return True

    monkeypatch.setattr(heap, "trim", recorded)
    start = loop.time()
    heap.release_soon(0.2)
    assert calls == []                               # not at once: the session's objects go first
    await asyncio.wait_for(done.wait(), 5)
    (at, on_main), = calls
    assert at - start >= 0.19 and not on_main
