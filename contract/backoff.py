"""The one retry delay of both programs: exponential backoff with jitter, on tenacity's arithmetic.

Hundreds of agents that lost their controller, or notifications to an endpoint that comes back,
must not all retry in the same second: every retry loop (the agent's link, the live flow's
reconnects, escalation deliveries, the hub's writer) takes its delays from here.

- `backoff_s(attempt, initial, maximum, spread=..., rng=...)`: the delay before try `attempt + 1`
  (attempt counts from 1): `min(maximum, initial * 2 ** (attempt - 1))` times a factor drawn
  uniformly from `spread`. `FULL_JITTER` (0, 1) is AWS's "full jitter"; `(1, 1)` is no jitter.
- `Backoff`: the same with its own attempt counter and `reset()`, for a loop that retries until it
  succeeds and then starts again from the first delay.

`rng` makes the draw reproducible in tests (a seeded `random.Random`).
"""
from __future__ import annotations

import random
from types import SimpleNamespace
from typing import Any

from tenacity import wait_exponential

FULL_JITTER: tuple[float, float] = (0.0, 1.0)
NO_JITTER: tuple[float, float] = (1.0, 1.0)


def backoff_s(attempt: int, initial: float, maximum: float, *, spread: tuple[float, float] = FULL_JITTER,
              rng: random.Random | None = None) -> float:
    """Delay before try `attempt + 1`: exponential from `initial`, capped at `maximum`, scaled by a
    factor drawn from `spread`."""
    wait = wait_exponential(multiplier=initial, min=0, max=maximum)
    state: Any = SimpleNamespace(attempt_number=max(1, attempt))
    base = float(wait(state))
    lo, hi = spread
    return max(0.0, base * (rng or random).uniform(lo, hi))


class Backoff:
    """`backoff_s` with its own attempt counter: `next()` the next delay, `reset()` after a success."""

    def __init__(self, initial: float = 1.0, maximum: float = 60.0, *,
                 spread: tuple[float, float] = FULL_JITTER, rng: random.Random | None = None):
        self.initial, self.maximum, self.spread, self.rng = initial, maximum, spread, rng
        self.attempt = 0

    def next(self) -> float:
        """The delay before the next try; counts the attempt."""
        self.attempt += 1
        return backoff_s(self.attempt, self.initial, self.maximum, spread=self.spread, rng=self.rng)

    def reset(self) -> None:
        """Start again from the first delay (after a success)."""
        self.attempt = 0
