"""The caller relays the callee's live seconds with its own (agent/session.py `peer_second`): each
of them once, none lost while the two clocks stay within a second of each other. A second relayed
twice is counted twice by the live detector - one stalled second read as a stall of two."""
from __future__ import annotations

from collections import deque

from hypothesis import given
from hypothesis import strategies as st

from agent.session import peer_second


def relay(arrivals: list[float], ticks: int) -> list[int | None]:
    """The callee's second j arrives at `arrivals[j]` (in order: one ordered data channel); the
    caller's tick i is at i + 1. What the caller relays at each tick."""
    received: deque[dict] = deque(maxlen=8)
    out: list[int | None] = []
    relayed, j = -1, 0
    for i in range(ticks):
        while j < len(arrivals) and arrivals[j] <= i + 1:
            received.append({"i": j, "received": {"t": float(j)}})
            j += 1
        peer = peer_second(received, i, relayed)
        if peer is not None:
            relayed = peer["i"]
        out.append(None if peer is None else peer["i"])
    return out


def test_a_late_second_is_relayed_once_with_the_next_tick():
    # The callee's second 3 arrives just after the caller's tick 3: tick 3 has nothing new (not
    # second 2 again), tick 4 relays 3, tick 5 relays 4 - a second behind from then on.
    arrivals = [0.9, 1.9, 2.9, 4.05, 5.0, 5.95, 7.1]
    assert relay(arrivals, 8) == [0, 1, 2, None, 3, 4, 5, 6]


def test_what_comes_more_than_a_second_late_is_not_relayed():
    # Paired with the caller's second two or more after its own it would join seconds apart (the
    # two sides of one dropout read as two dropouts): the live stream goes on without it.
    assert relay([2.5, 3.5, 4.5], 5) == [None, None, None, None, None]
    assert relay([0.9, 3.5, 3.6, 3.7], 4) == [0, None, None, 2]


@given(st.floats(-0.95, 0.95), st.lists(st.floats(0.0, 0.9), min_size=5, max_size=40))
def test_each_second_once_and_none_lost_within_a_second(offset, jitter):
    """Arrivals within a second of the caller's tick (an offset of the clocks plus jitter): every
    second relayed, in order, each once."""
    arrivals: list[float] = []
    for j, x in enumerate(jitter):
        at = min(max(j + 1 + offset + x - 0.45, j + 0.05), j + 1.95)
        arrivals.append(max(at, arrivals[-1] if arrivals else 0.0))
    out = relay(arrivals, len(arrivals) + 2)
    relayed = [x for x in out if x is not None]
    assert relayed == list(range(len(arrivals))), (arrivals, out)
