"""Tracked background work of both programs: every task the agent or the controller starts (the
agent's sessions, hooks and loops; the hub's, the relay's, live monitoring's and the app's loops)
belongs to a scheduler that awaits or cancels it on close (aiojobs), never a bare `create_task`
that nobody awaits.

- `scheduler(owner)`: an `aiojobs.Scheduler` without a concurrency limit whose failed jobs are
  logged under the owner's name (a job nobody waits for must not fail in silence);
  `close()` cancels what is still running, waiting at most `close_timeout` for each job.
- `stop(job, timeout)`: cancel one job and wait at most `timeout` for it to finish.
"""
from __future__ import annotations

import contextlib
import logging
from typing import Any

import aiojobs

log = logging.getLogger(__name__)


def scheduler(owner: str, *, close_timeout: float = 5.0) -> aiojobs.Scheduler:
    """A scheduler for `owner`'s background work; failures are logged, not lost."""

    def failed(_: aiojobs.Scheduler, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        job = context.get("job")
        name = job.get_name() if job is not None else None
        log.error("%s: %s (%s): %s", owner, context.get("message"), name or "job", exc,
                  exc_info=exc if isinstance(exc, BaseException) else None)

    return aiojobs.Scheduler(limit=None, close_timeout=close_timeout, exception_handler=failed)


async def stop(job: aiojobs.Job[Any], timeout: float) -> None:
    """Cancel `job` and wait up to `timeout` seconds for it to end (its own clean-up included)."""
    with contextlib.suppress(TimeoutError):
        await job.close(timeout=timeout)
