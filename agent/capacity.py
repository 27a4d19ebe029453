"""Capacity: what each direction of the session's own media path carries (issue 12, part 1).

After the media phase of a test session (media paused, final figures exchanged), the caller ramps
each direction in turn on the session's ICE 5-tuple itself - the same sockets, the same NAT
bindings, the same queues as the media - with media-sized datagrams:

    0xF6 | ramp id (8 bytes) | step (u16) | sequence (u32) | send time (f64) | padding -> 1,200 bytes

The first byte 0xF6 is outside every range of the RFC 7983 demultiplexing (STUN 0-3, ZRTP 16-19,
DTLS 20-63, TURN channels 64-79, RTP/RTCP 128-191): the datagrams go out through the aioice
connection, and on the far side a hook on the aioice connection's `data_received` (which its
protocols call for every non-STUN datagram) takes them off before DTLS/SRTP ever sees them. They
are never counted in the session's streams or loss figures. A ramp carries a random 8-byte id
agreed over the session's reliable control channel; a datagram of any other id is dropped.

Each step sends at one rate for `step_s` (0.5 s); the rate is counted in IP bytes (UDP and IP
headers included). Then the sender sends an end-of-step message over the control channel: it
travels the same path behind the step's datagrams (SCTP over the same 5-tuple and the same
bottleneck queue), so when it arrives every datagram of the step has arrived or been dropped, and
the queue it built has drained. The receiver waits `SETTLE_S` for reordered stragglers and
counts: packets received of those sent (loss), and the queueing delay growth within the step: the
smallest one-way delay of the step's last quarter minus the smallest of the whole ramp so far
(every step starts on a drained queue, so that is the path's base delay, and a step whose first
datagrams left late in a burst does not hide its growth). The clocks need not agree, only
differences are used; arrivals are the kernel's receive times (SO_TIMESTAMPNS, agent/rtp_tap.py)
and the minima keep what is left of the event loops' own delays out.

The rate grows x1.6 from `start_kbps` while the steps are clean; the first step with loss above the
profile's limit or delay growth above `delay_growth_ms` is the bottleneck's first sign. Then the
rate is bisected between the highest clean and the lowest failed rate until they are within 6 %
(`precision`); when no clean rate is known below a failed one, it shrinks x0.6. A direction ends
at the ceiling (`ceiling_kbps`, clean there: `limited_by: ceiling`), within precision, or when the
next step would pass `max_s` (12 s). `kbps` is the highest rate carried cleanly.

`RampLogic` is the pure decision (tested on its own); `RampEndpoint` is one side's datagrams and
control messages (both sides of every session have one); `measure()` is the caller's driver.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

MAGIC = 0xF6
_HEAD = struct.Struct("!B8sHId")        # magic, ramp id, step, sequence, sender's monotonic time
DATAGRAM_BYTES = 1200                   # UDP payload: media-sized
IP_OVERHEAD = {4: 28, 6: 48}            # UDP + IPv4 / IPv6 headers
SETTLE_S = 0.03                         # after the end-of-step marker: reordered stragglers
REPLY_TIMEOUT_S = 4.0                   # a step's counts (or the far side's step) must come by then
READY_TIMEOUT_S = 2.0                   # the far side must agree to a ramp by then
MAX_STEPS_KEPT = 64                     # per ramp, on the receiving side
MAX_DELAYS_PER_STEP = 4096
MAX_RAMPS = 4
CONTROL_TYPE = "capacity"
DIRECTIONS = ("outbound", "inbound")


@dataclass(frozen=True)
class RampConfig:
    """How a ramp runs (settings `session.capacity`, plus the profile's loss limit)."""
    ceiling_kbps: float = 2500.0
    start_kbps: float = 300.0
    step_s: float = 0.5
    max_s: float = 12.0
    grow: float = 1.6
    shrink: float = 0.6
    precision: float = 1.06            # stop when the failed rate is within 6 % of the clean one
    loss_limit: float = 0.01           # the profile's degraded loss limit
    delay_growth_ms: float = 15.0      # queueing delay growth within a step that means a queue builds
    floor_kbps: float = 32.0           # below this a direction is not worth ramping further


@dataclass(frozen=True)
class Step:
    """One step's outcome (rate in IP kb/s)."""
    kbps: float
    sent: int
    received: int
    delay_growth_ms: float | None
    verdict: str                       # clean | loss | delay
    seconds: float                     # wall time of the step, waiting for its counts included

    @property
    def loss_ratio(self) -> float:
        return 0.0 if self.sent <= 0 else max(0, self.sent - self.received) / self.sent

    def to_dict(self) -> dict[str, Any]:
        return {"kbps": round(self.kbps, 1), "sent": self.sent, "received": self.received,
                "loss_ratio": round(self.loss_ratio, 4),
                "delay_growth_ms": None if self.delay_growth_ms is None else round(self.delay_growth_ms, 1) + 0.0,
                "verdict": self.verdict}


def step_verdict(sent: int, received: int, growth_ms: float | None, cfg: RampConfig) -> str:
    """clean, loss (more lost than the profile allows, or nothing arrived) or delay (a queue builds)."""
    if sent > 0 and (received <= 0 or (sent - received) / sent > cfg.loss_limit):
        return "loss"
    if growth_ms is not None and growth_ms > cfg.delay_growth_ms:
        return "delay"
    return "clean"


@dataclass
class RampLogic:
    """The ramp's decisions: which rate next, and what the direction carries."""
    cfg: RampConfig
    steps: list[Step] = field(default_factory=list)
    lo: float | None = None            # highest clean rate
    hi: Step | None = None             # lowest failed step
    elapsed_s: float = 0.0

    def add(self, step: Step) -> None:
        self.steps.append(step)
        self.elapsed_s += step.seconds
        if step.verdict == "clean":
            if self.hi is None or step.kbps < self.hi.kbps:
                self.lo = max(self.lo or 0.0, step.kbps)
        else:
            if self.hi is None or step.kbps <= self.hi.kbps:
                self.hi = step
            if self.lo is not None and self.lo >= step.kbps:
                self.lo = None          # a rate once clean failed now: start again below it

    def next_rate(self) -> float | None:
        """The next step's rate, or None: done."""
        cfg = self.cfg
        if self.steps:
            per_step = self.elapsed_s / len(self.steps)
            if self.elapsed_s + per_step > cfg.max_s:
                return None
        if not self.steps:
            return min(cfg.start_kbps, cfg.ceiling_kbps)
        if self.hi is None:
            top = self.lo or 0.0
            if top >= cfg.ceiling_kbps:
                return None
            return min(cfg.ceiling_kbps, top * cfg.grow)
        if self.lo is None:
            rate = self.hi.kbps * cfg.shrink
            return None if rate < cfg.floor_kbps else rate
        if self.hi.kbps / self.lo <= cfg.precision:
            return None
        return (self.lo + self.hi.kbps) / 2

    def result(self) -> dict[str, Any]:
        """The direction's figures for the report."""
        limit = self.hi if self.hi is not None else (self.steps[-1] if self.steps else None)
        if self.hi is not None:
            limited_by: str | None = self.hi.verdict
        elif self.lo is not None and self.lo >= self.cfg.ceiling_kbps:
            limited_by = "ceiling"
        else:
            limited_by = None           # ran out of time before any limit: kbps is a lower bound
        return {"kbps": round(self.lo, 1) if self.lo is not None else 0.0,
                "limited_by": limited_by,
                "loss_ratio_at_limit": round(limit.loss_ratio, 4) if limit else None,
                "delay_growth_ms": (round(limit.delay_growth_ms, 1)
                                    if limit and limit.delay_growth_ms is not None else None),
                "duration_s": round(self.elapsed_s, 2),
                "steps": [s.to_dict() for s in self.steps]}


def delay_growth_ms(delays: list[tuple[int, float]], base: float | None = None) -> float | None:
    """Queueing delay growth in a step: (seq, one-way delay s) pairs -> ms, or None (too few).
    The smallest delay of the step's last quarter (by sequence) minus the base: the smallest delay
    of the ramp so far (`base`; every step starts on an empty queue) or of the step's first quarter.
    A step whose start was sent late in a burst (a busy sender) raises its first quarter, never
    the base: the growth is still seen."""
    if len(delays) < 4:
        return None
    ordered = [d for _, d in sorted(delays)]
    q = max(1, len(ordered) // 4)
    floor = min(ordered[:q]) if base is None else min(base, min(ordered))
    return (min(ordered[-q:]) - floor) * 1000.0


def ip_bytes(address: str | None) -> int:
    """One ramp datagram's size on the wire in IP bytes."""
    return DATAGRAM_BYTES + IP_OVERHEAD[6 if address and ":" in address else 4]


def packet(ramp: bytes, step: int, seq: int, sent_at: float) -> bytes:
    """One ramp datagram (DATAGRAM_BYTES long)."""
    head = _HEAD.pack(MAGIC, ramp, step & 0xFFFF, seq & 0xFFFFFFFF, sent_at)
    return head + bytes(DATAGRAM_BYTES - len(head))


def parse(data: bytes) -> tuple[bytes, int, int, float] | None:
    """(ramp id, step, seq, send time) of a ramp datagram, None for anything else."""
    if len(data) < _HEAD.size or data[0] != MAGIC:
        return None
    _, ramp, step, seq, sent_at = _HEAD.unpack_from(data)
    return ramp, step, seq, sent_at


class CapacityError(Exception):
    """The ramp could not run (no connection, the far side does not answer)."""


class RampEndpoint:
    """One side's part in the ramps of a session: the datagram hook, pacing, control messages.

    `send_control(dict)` sends on the session's reliable control channel; `connection()` returns
    the session's aioice Connection (None before ICE is up); `arrival()` the kernel's receive time
    of the datagram just read (agent/rtp_tap.py), None without one: then the time it is handed on,
    which a busy event loop delays."""

    def __init__(self, send_control: Callable[[dict], None], connection: Callable[[], Any],
                 arrival: Callable[[], float | None] = lambda: None) -> None:
        self._send_control = send_control
        self._connection = connection
        self._arrival = arrival
        self._hooked: Any = None
        self._ramps: dict[bytes, dict[int, list[tuple[int, float]]]] = {}   # receiving: step -> delays
        self._base: dict[bytes, float] = {}     # receiving: the smallest one-way delay of the ramp
        self._waiters: dict[tuple[str, str, int], asyncio.Future] = {}
        self._tasks: set[asyncio.Task] = set()
        self.stray = 0                  # ramp datagrams of no agreed ramp
        self.last_seen = 0.0            # monotonic time of the last ramp message or datagram

    # -- datagrams -------------------------------------------------------------------
    def hook(self) -> Any:
        """Take ramp datagrams off the aioice connection (idempotent); the connection."""
        conn = self._connection()
        if conn is None:
            raise CapacityError("no ICE connection")
        if self._hooked is not conn:
            deliver = conn.data_received

            def data_received(data: bytes, component: int) -> None:
                if data[:1] == b"\xf6":
                    self._on_datagram(data)
                    return
                deliver(data, component)

            conn.data_received = data_received
            self._hooked = conn
        return conn

    def _on_datagram(self, data: bytes) -> None:
        self.last_seen = time.monotonic()
        now = self._arrival() or self.last_seen
        parsed = parse(data)
        steps = self._ramps.get(parsed[0]) if parsed else None
        if parsed is None or steps is None:
            self.stray += 1
            return
        ramp, step, seq, sent_at = parsed
        self._base[ramp] = min(self._base.get(ramp, now - sent_at), now - sent_at)
        delays = steps.get(step)
        if delays is None:
            if len(steps) >= MAX_STEPS_KEPT:
                steps.pop(min(steps))
            delays = steps[step] = []
        if len(delays) < MAX_DELAYS_PER_STEP:
            delays.append((seq, now - sent_at))

    def expect(self, ramp: bytes) -> None:
        """Count datagrams of `ramp` from now on."""
        self.hook()
        while len(self._ramps) >= MAX_RAMPS:
            self.forget(next(iter(self._ramps)))
        self._ramps.setdefault(ramp, {})

    def forget(self, ramp: bytes) -> None:
        self._ramps.pop(ramp, None)
        self._base.pop(ramp, None)

    def counted(self, ramp: bytes, step: int) -> tuple[int, float | None]:
        """(datagrams received, delay growth ms) of a step of a ramp this side receives."""
        delays = self._ramps.get(ramp, {}).get(step, [])
        return len(delays), delay_growth_ms(delays, self._base.get(ramp))

    async def send_step(self, ramp: bytes, step: int, kbps: float, seconds: float) -> int:
        """Send one step: `kbps` in IP bytes for `seconds`, paced; returns the datagrams sent."""
        conn = self.hook()
        pair = conn._nominated.get(1)
        size_bits = ip_bytes(pair.local_candidate.host if pair is not None else None) * 8
        interval = size_bits / (kbps * 1000.0)
        total = max(1, round(seconds / interval))
        start = time.monotonic()
        sent = 0
        while sent < total:
            due = min(total, int((time.monotonic() - start) / interval) + 1)
            while sent < due:
                try:
                    await conn.send(packet(ramp, step, sent, time.monotonic()))
                except ConnectionError as exc:
                    raise CapacityError(f"the connection closed during the ramp: {exc}") from None
                sent += 1
            next_at = start + sent * interval
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
        return sent

    # -- control messages ----------------------------------------------------------------
    def send(self, op: str, ramp: bytes, **fields: Any) -> None:
        self._send_control({"type": CONTROL_TYPE, "op": op, "ramp": ramp.hex(), **fields})

    def expect_reply(self, op: str, ramp: bytes, step: int = 0) -> asyncio.Future:
        fut: asyncio.Future = asyncio.get_running_loop().create_future()
        self._waiters[(op, ramp.hex(), step)] = fut
        return fut

    async def reply(self, fut: asyncio.Future, what: str, timeout: float = REPLY_TIMEOUT_S) -> dict:
        try:
            return await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            raise CapacityError(f"the peer did not answer ({what}) within {timeout:g} s") from None
        finally:
            for key, f in list(self._waiters.items()):
                if f is fut:
                    del self._waiters[key]

    def on_message(self, message: dict) -> None:
        """A `capacity` control message from the far side."""
        self.last_seen = time.monotonic()
        op, ramp_hex, step = message.get("op"), message.get("ramp"), message.get("step", 0)
        try:
            ramp = bytes.fromhex(ramp_hex) if isinstance(ramp_hex, str) else b""
        except ValueError:
            ramp = b""
        if len(ramp) != 8 or not isinstance(step, int) or isinstance(step, bool):
            log.warning("ignoring a malformed capacity message")
            return
        fut = self._waiters.get((str(op), ramp.hex(), step))
        if fut is not None and not fut.done():
            fut.set_result(message)
            return
        if op == "open":
            try:
                self.expect(ramp)
            except CapacityError as exc:
                self.send("refused", ramp, error=str(exc))
                return
            self.send("ready", ramp)
        elif op == "end" and ramp in self._ramps:
            self._spawn(self._report_counts(ramp, step))
        elif op == "send":
            kbps, seconds = message.get("kbps"), message.get("seconds")
            if isinstance(kbps, int | float) and isinstance(seconds, int | float) and \
                    0 < kbps <= 100_000 and 0 < seconds <= 2:
                self._spawn(self._send_asked(ramp, step, float(kbps), float(seconds)))
        elif op == "close":
            self.forget(ramp)

    async def _report_counts(self, ramp: bytes, step: int) -> None:
        await asyncio.sleep(SETTLE_S)
        received, growth = self.counted(ramp, step)
        self.send("counts", ramp, step=step, received=received, delay_growth_ms=growth)

    async def _send_asked(self, ramp: bytes, step: int, kbps: float, seconds: float) -> None:
        try:
            sent = await self.send_step(ramp, step, kbps, seconds)
        except CapacityError as exc:
            self.send("end", ramp, step=step, sent=0, error=str(exc))
            return
        self.send("end", ramp, step=step, sent=sent)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):
                await task
        self._ramps.clear()


async def _outbound_step(ep: RampEndpoint, ramp: bytes, step: int, kbps: float, cfg: RampConfig) -> Step:
    """This side sends, the far side counts."""
    began = time.monotonic()
    counts = ep.expect_reply("counts", ramp, step)
    sent = await ep.send_step(ramp, step, kbps, cfg.step_s)
    ep.send("end", ramp, step=step, sent=sent)
    reply = await ep.reply(counts, f"counts of step {step}")
    received = reply.get("received")
    growth = reply.get("delay_growth_ms")
    received = received if isinstance(received, int) and not isinstance(received, bool) else 0
    growth = float(growth) if isinstance(growth, int | float) and not isinstance(growth, bool) else None
    return Step(kbps, sent, min(received, sent), growth, step_verdict(sent, received, growth, cfg),
                time.monotonic() - began)


async def _inbound_step(ep: RampEndpoint, ramp: bytes, step: int, kbps: float, cfg: RampConfig) -> Step:
    """The far side sends (asked over the control channel), this side counts."""
    began = time.monotonic()
    end = ep.expect_reply("end", ramp, step)
    ep.send("send", ramp, step=step, kbps=round(kbps, 3), seconds=cfg.step_s)
    reply = await ep.reply(end, f"step {step}", REPLY_TIMEOUT_S + cfg.step_s)
    if reply.get("error"):
        raise CapacityError(f"the peer could not send: {reply['error']}")
    sent = reply.get("sent")
    sent = sent if isinstance(sent, int) and not isinstance(sent, bool) and sent >= 0 else 0
    await asyncio.sleep(SETTLE_S)
    received, growth = ep.counted(ramp, step)
    return Step(kbps, sent, min(received, sent), growth, step_verdict(sent, received, growth, cfg),
                time.monotonic() - began)


async def ramp_direction(ep: RampEndpoint, direction: str, cfg: RampConfig) -> dict[str, Any]:
    """Ramp one direction (from the caller's side: outbound = this side sends)."""
    ramp = os.urandom(8)
    ep.hook()
    if direction == "inbound":
        ep.expect(ramp)
    ready = ep.expect_reply("ready", ramp)
    ep.send("open", ramp, direction=direction)
    try:
        await ep.reply(ready, "ramp open", READY_TIMEOUT_S)
    except CapacityError:
        ep.forget(ramp)
        raise CapacityError("the peer does not measure capacity (an older agent?)") from None
    logic = RampLogic(cfg)
    run = _outbound_step if direction == "outbound" else _inbound_step
    try:
        step = 0
        while (rate := logic.next_rate()) is not None:
            logic.add(await run(ep, ramp, step, rate, cfg))
            step += 1
    finally:
        ep.send("close", ramp)
        ep.forget(ramp)
    return logic.result()


async def measure(ep: RampEndpoint, cfg: RampConfig) -> dict[str, Any]:
    """Both directions, outbound first: the report's `capacity`. Never raises for the far side's
    or the network's failure: `error` says what stopped it (a direction not measured is null)."""
    out: dict[str, Any] = {"outbound": None, "inbound": None, "ceiling_kbps": cfg.ceiling_kbps, "error": None}
    for direction in DIRECTIONS:
        try:
            out[direction] = await ramp_direction(ep, direction, cfg)
        except CapacityError as exc:
            out["error"] = f"{direction}: {exc}"
            log.warning("capacity not measured: %s", out["error"])
            break
    return out


def config(settings: Any, loss_limit: float | None) -> RampConfig:
    """The ramp's configuration from settings `session.capacity` and the profile's loss limit."""
    fields = {k: v for k, v in settings.model_dump().items() if k in RampConfig.__dataclass_fields__}
    if loss_limit is not None:
        fields["loss_limit"] = loss_limit
    return RampConfig(**fields)


async def session_config(session_settings: Any, thresholds_profile: str) -> RampConfig:
    """The ramp's configuration for a session: settings `session.capacity`, and the loss limit of
    the session's threshold profile (`degraded.loss_ratio`; read in a worker thread)."""
    from contract import quality

    def loss_limit() -> float | None:
        profiles = quality.load_thresholds(session_settings.thresholds_path)
        th = profiles.get(thresholds_profile)
        return th.degraded.loss_ratio if th is not None else None

    return config(session_settings.capacity, await asyncio.to_thread(loss_limit))


def ice_connection(pc: Any) -> Any:
    """The aioice Connection under a peer connection's (bundled) transport; None before there is one."""
    sctp = pc.sctp
    dtls = sctp.transport if sctp is not None else None
    ice = dtls.transport if dtls is not None else None
    return getattr(ice, "_connection", None)


