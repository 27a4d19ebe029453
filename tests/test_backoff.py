"""contract/backoff.py, the one retry delay of both programs: exponential from `initial`, capped at
`maximum`, scaled by a jitter factor; bounded, spread out (hundreds of agents must not come back
in the same second), reset after a success, reproducible with a seeded generator."""
from __future__ import annotations

import random

import pytest

from contract.backoff import FULL_JITTER, NO_JITTER, Backoff, backoff_s


def cap(attempt: int, initial: float, maximum: float) -> float:
    return min(maximum, initial * 2 ** (attempt - 1))


@pytest.mark.parametrize("initial, maximum", [(1.0, 60.0), (0.05, 0.2), (0.5, 5.0)])
def test_without_jitter_the_delay_doubles_up_to_the_cap(initial, maximum):
    delays = [backoff_s(a, initial, maximum, spread=NO_JITTER) for a in range(1, 15)]
    assert delays == pytest.approx([cap(a, initial, maximum) for a in range(1, 15)])
    assert delays[0] == pytest.approx(initial) and delays[-1] == pytest.approx(maximum)


def test_full_jitter_stays_within_zero_and_the_cap():
    rng = random.Random(1)
    for attempt in range(1, 20):
        for _ in range(200):
            d = backoff_s(attempt, 1.0, 60.0, spread=FULL_JITTER, rng=rng)
            assert 0.0 <= d <= cap(attempt, 1.0, 60.0)


def test_a_partial_spread_keeps_a_floor():
    rng = random.Random(2)
    delays = [backoff_s(3, 1.0, 5.0, spread=(0.5, 1.0), rng=rng) for _ in range(500)]
    assert min(delays) >= 2.0 and max(delays) <= 4.0


def test_many_agents_do_not_come_back_in_the_same_second():
    # 500 agents that lost the controller at once, at their 6th try (cap 32 s): full jitter
    # spreads them over the whole window, not into one burst.
    rng = random.Random(3)
    delays = [backoff_s(6, 1.0, 60.0, rng=rng) for _ in range(500)]
    per_second = [0] * 33
    for d in delays:
        per_second[int(d)] += 1
    assert max(per_second) < 40                       # ~16 per second expected
    assert min(delays) < 2.0 and max(delays) > 30.0


def test_the_counter_counts_and_reset_starts_again():
    b = Backoff(0.5, 4.0, spread=NO_JITTER)
    assert [b.next() for _ in range(6)] == pytest.approx([0.5, 1.0, 2.0, 4.0, 4.0, 4.0])
    assert b.attempt == 6
    b.reset()
    assert b.attempt == 0
    assert b.next() == pytest.approx(0.5)


def test_a_seeded_generator_makes_the_draws_reproducible():
    a = Backoff(1.0, 60.0, rng=random.Random(42))
    b = Backoff(1.0, 60.0, rng=random.Random(42))
    c = Backoff(1.0, 60.0, rng=random.Random(43))
    seq_a = [a.next() for _ in range(10)]
    assert seq_a == [b.next() for _ in range(10)]
    assert seq_a != [c.next() for _ in range(10)]


def test_attempt_zero_or_below_is_the_first_delay():
    assert backoff_s(0, 1.5, 10.0, spread=NO_JITTER) == pytest.approx(1.5)
    assert backoff_s(-3, 1.5, 10.0, spread=NO_JITTER) == pytest.approx(1.5)
