"""Memory a session freed, given back to the operating system (glibc's `malloc_trim`).

A session encodes, decodes and builds its report in worker threads, and glibc gives each thread a
malloc arena of its own and keeps what was freed there for the next allocation: across eight
loopback sessions a responder went from 88 to 130 MB idle, with the same 60,160 Python objects
alive after each (docs/agent-link.md, "The agent's footprint"). `release_soon()`, run once a
session has ended, trims the heap in a worker thread a moment later, when the session's objects
are gone. Without glibc (musl, macOS) it does nothing.
"""
from __future__ import annotations

import asyncio
import ctypes
import logging
from collections.abc import Callable

log = logging.getLogger(__name__)

# A session's objects are dropped when its task ends; a moment later their memory is free.
SETTLE_S = 1.0


def _find_trim() -> Callable[[int], int] | None:
    try:
        fn = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):      # not glibc
        return None
    fn.argtypes = [ctypes.c_size_t]
    fn.restype = ctypes.c_int
    return fn


_TRIM = _find_trim()


def available() -> bool:
    """Whether this C library can give freed heap back (glibc)."""
    return _TRIM is not None


def trim() -> bool:
    """Give the freed heap back to the system (blocking: milliseconds); whether any was released."""
    return bool(_TRIM(0)) if _TRIM is not None else False


def release_soon(delay_s: float = SETTLE_S) -> None:
    """Once a session has ended: trim the heap in a worker thread `delay_s` later. Not awaited
    and not a task (nothing to wait for at shutdown, nothing counted as a session's work)."""
    if _TRIM is None:
        return
    loop = asyncio.get_running_loop()
    loop.call_later(delay_s, _in_thread, loop)


def _in_thread(loop: asyncio.AbstractEventLoop) -> None:
    if loop.is_closed():
        return
    try:
        loop.run_in_executor(None, trim)
    except RuntimeError as exc:            # the executor is shutting down with the process
        log.debug("heap trim skipped: %s", exc)
