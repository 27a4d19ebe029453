"""What one terminal may make the controller write (issue 11): only into its own sessions and into
the record of the hearings it takes part in, and only so many records a minute.

- `refusal(session, terminal_id, report)`: a report naming a session is taken only from that
  session's caller or callee, and only for its own place in it (the role and peer its body
  claims). One naming a session the controller never commanded is not taken either: session ids
  are the controller's own random ids, told only to the two terminals, so an honest agent never
  names an unknown one. A report naming no session is the terminal's own (its health, a hook's
  outcome); where it names a hearing, live monitoring checks that the terminal takes part in it
  and that it is not long over (controller.live.service, HOOK_GRACE_S).
- `EventBudget`: a token bucket per terminal for the records a report creates in a hearing's
  record (a failed endpoint hook -> a `hook_failed` event). The reports themselves are never
  limited: they are the at-least-once path (acked after commit, resent by the agent until then),
  and dropping one would lose a measurement or a check's result. The budget lives in the
  controller process's memory: it is per controller process (with several controllers, each
  grants its own; a restart refills it), which bounds a flood without a shared store.
- `Drops`: what was not written, counted by reason (`vks_controller_agent_writes_dropped_total`)
  and logged once per terminal and reason a minute, so a misbehaving agent makes no log storm.
"""
from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable

from contract import wire
from contract.reports import IntervalBody, SessionBody
from contract.vocab import AgentDrop, SessionRole, words
from controller.store.agents import SessionRow

log = logging.getLogger("controller.agents")

# A refused kind of write is logged again for the same terminal at most this often (seconds).
LOG_EVERY_S = 60.0


def refusal(session: SessionRow | None, terminal_id: str, report: wire.Report) -> AgentDrop | None:
    """Why `terminal_id` may not write `report` (None: it may). `session` is the report's session
    as the controller commanded it (None when it names none, or one never commanded)."""
    if report.session_id is None:
        return None
    if session is None:
        return AgentDrop.UNKNOWN_SESSION
    peer = session.peer_of(terminal_id)
    if peer is None:
        return AgentDrop.NOT_IN_SESSION
    body = report.body
    if isinstance(body, SessionBody | IntervalBody):
        own = SessionRole.CALLER if terminal_id == session.caller else SessionRole.CALLEE
        if (body.role is not None and body.role != own) or (body.peer is not None and body.peer != peer):
            return AgentDrop.NOT_IN_SESSION
    return None


class EventBudget:
    """Per terminal: at most `burst` records at once, refilled at `per_minute` (a token bucket).
    Memory: one entry per terminal that ever spent from it (terminals are registered, bounded)."""

    def __init__(self, per_minute: float, burst: int, clock: Callable[[], float] = time.monotonic):
        if per_minute <= 0 or burst < 1:
            raise ValueError("an event budget needs per_minute > 0 and burst >= 1")
        self.rate = per_minute / 60.0
        self.burst = float(burst)
        self.clock = clock
        self._levels: dict[str, tuple[float, float]] = {}     # terminal -> (tokens, at)

    def take(self, terminal_id: str) -> bool:
        """Spend one of the terminal's tokens; False when it has none left."""
        now = self.clock()
        level, at = self._levels.get(terminal_id, (self.burst, now))
        level = min(self.burst, level + max(0.0, now - at) * self.rate)
        if level < 1.0:
            self._levels[terminal_id] = (level, now)
            return False
        self._levels[terminal_id] = (level - 1.0, now)
        return True


class Drops:
    """Counts what terminals sent and the controller did not write; `count(reason)` feeds the
    metric (it never raises into the caller)."""

    def __init__(self, count: Callable[[str], None] | None = None, *, log_every_s: float = LOG_EVERY_S,
                 clock: Callable[[], float] = time.monotonic):
        self.count = count
        self.log_every_s = log_every_s
        self.clock = clock
        self.totals: dict[str, int] = dict.fromkeys(words(AgentDrop), 0)
        self._logged: dict[tuple[str, str], tuple[float, int]] = {}   # -> (last logged at, dropped since)

    def drop(self, terminal_id: str, reason: AgentDrop, what: str) -> None:
        """`what` (a short description, never a secret) from `terminal_id` was not written."""
        self.totals[reason] += 1
        if self.count is not None:
            with contextlib.suppress(Exception):
                self.count(reason)
        key = (terminal_id, str(reason))
        now = self.clock()
        last = self._logged.get(key)
        if last is not None and now - last[0] < self.log_every_s:
            self._logged[key] = (last[0], last[1] + 1)
            return
        since = f"; {last[1]} more since the last notice" if last is not None and last[1] else ""
        log.warning("terminal %s: not written (%s): %s%s. Further ones are counted "
                    "(vks_controller_agent_writes_dropped_total) and noted once a minute",
                    terminal_id, reason, what[:300], since)
        self._logged[key] = (now, 0)
