"""Tracked background work of the controller: every loop the hub, the relay, live monitoring and
the app start belongs to an `aiojobs.Scheduler`, which cancels and awaits it on close - never a
bare `create_task` that nobody awaits.

`scheduler(owner)`: no concurrency limit; a job that fails is logged under the owner's name (a
loop nobody waits for must not die in silence); `close()` cancels what still runs and waits at
most `close_timeout` for each job.
"""
from __future__ import annotations

import logging
from typing import Any

import aiojobs

log = logging.getLogger(__name__)


def scheduler(owner: str, *, close_timeout: float = 5.0) -> aiojobs.Scheduler:
    """A scheduler for `owner`'s background work; failures are logged, not lost."""

    def failed(_: aiojobs.Scheduler, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        job = context.get("job")
        log.error("%s: %s (%s): %s", owner, context.get("message"), job.get_name() if job else "job", exc,
                  exc_info=exc if isinstance(exc, BaseException) else None)

    return aiojobs.Scheduler(limit=None, close_timeout=close_timeout, exception_handler=failed)
