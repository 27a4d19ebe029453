"""Pure impairment model of one direction of the emulated link (no I/O, no clock).

The router asks :meth:`LinkDirection.decide` once per packet, passing the packet's
arrival time; the answer is a verdict and the planned departure time. Everything random
comes from one :class:`random.Random` per direction, so a seed makes a run repeatable.

Semantics (documented in README.md):

* delay: ``delay_ms`` plus, when ``jitter_ms`` > 0, a random term per packet:
  ``normal`` (default) draws N(0, jitter_ms) -- the shape of ``tc netem delay D J
  distribution normal`` -- so the mean one-way delay stays ``delay_ms`` while
  ``delay_ms >= 2 * jitter_ms``; ``uniform`` draws from [-jitter_ms, +jitter_ms] like
  netem's default. The total delay is clipped at 0 (a link cannot deliver early).
* ``reorder=False`` (default): FIFO, departure = max(planned, previous departure), as a
  real link queue does, so the realised delay variation is smaller than ``jitter_ms``
  when packets are closer together than the jitter; ground truth records what happened.
  ``reorder=True``: each packet keeps its own planned time and may overtake.
* loss: Bernoulli ``loss`` and, independently, a Gilbert-Elliott chain
  ``ge=(p_gb, p_bg, loss_bad, loss_good)``: the packet is dropped with ``loss_bad`` or
  ``loss_good`` by the chain's current state, then the chain moves good->bad with
  ``p_gb`` or bad->good with ``p_bg``. A packet is dropped if either model drops it.
  Mean loss of the chain alone: ``pi_bad*loss_bad + (1-pi_bad)*loss_good`` with
  ``pi_bad = p_gb / (p_gb + p_bg)``; mean burst length in the bad state ``1 / p_bg``.
* blackout: every packet that reaches the router while a blackout is on is dropped
  (packets already in flight are still delivered, as on a cut behind the queue).
* rate: ``rate_kbps`` > 0 makes the direction a bottleneck of that capacity ahead of the
  delay line: each packet waits for the ones before it to be serialised (size * 8 / rate);
  a packet that would wait more than ``buffer_ms`` is tail-dropped (a drop-tail buffer
  measured in time). 0 = unlimited (the default).
* queue cap: more than ``queue_limit`` packets in flight in one direction -> tail drop.
  Both tail drops are counted as ``dropped_queue`` in the truth.
"""
from __future__ import annotations

import math
import random
from dataclasses import asdict, dataclass, field

DELIVER = "deliver"
DROP_LOSS = "loss"
DROP_BLACKOUT = "blackout"
DROP_QUEUE = "queue"

DIRECTIONS = ("a>b", "b>a")
JITTER_DISTS = ("normal", "uniform")
MAX_DELAY_MS = 10_000.0
MAX_QUEUE = 100_000


class ImpairmentError(ValueError):
    """An impairment parameter is out of range; the message names it."""


@dataclass(slots=True)
class Impairment:
    """The impairment of one direction. All fields optional; the default is a clean link."""

    delay_ms: float = 0.0
    jitter_ms: float = 0.0
    jitter_dist: str = "normal"
    loss: float = 0.0
    ge: tuple[float, float, float, float] | None = None
    reorder: bool = False
    queue_limit: int = 20_000
    rate_kbps: float = 0.0
    buffer_ms: float = 200.0

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        def num(name: str, value: float, lo: float, hi: float) -> float:
            try:
                v = float(value)
            except (TypeError, ValueError):
                raise ImpairmentError(f"{name}: expected a number, got {value!r}") from None
            if not (lo <= v <= hi) or math.isnan(v):
                raise ImpairmentError(f"{name}: expected {lo}..{hi}, got {value!r}")
            return v

        self.delay_ms = num("delay_ms", self.delay_ms, 0.0, MAX_DELAY_MS)
        self.jitter_ms = num("jitter_ms", self.jitter_ms, 0.0, MAX_DELAY_MS)
        self.loss = num("loss", self.loss, 0.0, 1.0)
        if self.jitter_dist not in JITTER_DISTS:
            raise ImpairmentError(f"jitter_dist: expected one of {JITTER_DISTS}, got {self.jitter_dist!r}")
        if self.ge is not None:
            if len(self.ge) != 4:
                raise ImpairmentError("ge: expected (p_gb, p_bg, loss_bad, loss_good)")
            names = ("ge.p_gb", "ge.p_bg", "ge.loss_bad", "ge.loss_good")
            self.ge = tuple(num(n, v, 0.0, 1.0) for n, v in zip(names, self.ge, strict=True))  # type: ignore[assignment]
        self.reorder = bool(self.reorder)
        self.queue_limit = int(num("queue_limit", self.queue_limit, 1, MAX_QUEUE))
        self.rate_kbps = num("rate_kbps", self.rate_kbps, 0.0, 100e6)
        self.buffer_ms = num("buffer_ms", self.buffer_ms, 0.0, MAX_DELAY_MS)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["ge"] = list(self.ge) if self.ge is not None else None
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Impairment:
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(d) - known
        if unknown:
            raise ImpairmentError(f"unknown impairment parameter(s): {sorted(unknown)}")
        d = dict(d)
        if d.get("ge") is not None:
            d["ge"] = tuple(d["ge"])
        return cls(**d)


def check_direction(direction: str, allow_both: bool = False) -> tuple[str, ...]:
    """'a>b' -> ('a>b',); 'both' -> both directions (when allowed)."""
    if direction in DIRECTIONS:
        return (direction,)
    if allow_both and direction == "both":
        return DIRECTIONS
    allowed = DIRECTIONS + (("both",) if allow_both else ())
    raise ImpairmentError(f"direction: expected one of {allowed}, got {direction!r}")


@dataclass(slots=True)
class LinkDirection:
    """State of one direction: config, loss-chain state, FIFO tail, blackout."""

    name: str
    rng: random.Random
    config: Impairment = field(default_factory=Impairment)
    ge_bad: bool = False
    last_departure: float = -math.inf
    link_free_at: float = -math.inf  # when the bottleneck has serialised its backlog
    blackout_until: float | None = None  # monotonic seconds; math.inf = until restore

    def set_config(self, config: Impairment) -> None:
        self.config = config
        self.ge_bad = False

    def blackout_active(self, now: float) -> bool:
        if self.blackout_until is None:
            return False
        if now < self.blackout_until:
            return True
        self.blackout_until = None
        return False

    def sample_delay_s(self) -> float:
        c = self.config
        d = c.delay_ms
        if c.jitter_ms > 0:
            if c.jitter_dist == "normal":
                d += self.rng.gauss(0.0, c.jitter_ms)
            else:
                d += self.rng.uniform(-c.jitter_ms, c.jitter_ms)
        return max(0.0, d) / 1000.0

    def lose(self) -> bool:
        c = self.config
        dropped = c.loss > 0 and self.rng.random() < c.loss
        if c.ge is not None:
            p_gb, p_bg, loss_bad, loss_good = c.ge
            p = loss_bad if self.ge_bad else loss_good
            if p > 0 and self.rng.random() < p:
                dropped = True
            if self.ge_bad:
                if self.rng.random() < p_bg:
                    self.ge_bad = False
            elif self.rng.random() < p_gb:
                self.ge_bad = True
        return dropped

    def decide(self, now: float, queued: int, size: int = 0) -> tuple[str, float]:
        """Verdict for a ``size``-byte packet arriving at ``now`` with ``queued`` in flight."""
        if self.blackout_active(now):
            return DROP_BLACKOUT, now
        if self.lose():
            return DROP_LOSS, now
        c = self.config
        if queued >= c.queue_limit:
            return DROP_QUEUE, now
        base = now
        if c.rate_kbps > 0:
            start = max(now, self.link_free_at)
            if (start - now) * 1000.0 > c.buffer_ms:
                return DROP_QUEUE, now
            self.link_free_at = base = start + size * 8 / (c.rate_kbps * 1000.0)
        planned = base + self.sample_delay_s()
        if not self.config.reorder and planned < self.last_departure:
            planned = self.last_departure
        if planned > self.last_departure:
            self.last_departure = planned
        return DELIVER, planned
