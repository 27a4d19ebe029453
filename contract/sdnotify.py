"""systemd's notify protocol (sd_notify(3)), for `vks-agent run` and `vks-controller serve`.

Plain socket code, no libsystemd: one AF_UNIX datagram per notification to $NOTIFY_SOCKET
(a path, or an abstract-namespace name written with a leading '@').

- `Notifier.from_env()`: `ready()` (READY=1, once listening), `stopping()` (STOPPING=1),
  `status(text)`, `watchdog()` (WATCHDOG=1). Silent - no socket, no error - when NOTIFY_SOCKET
  is unset (not started by systemd, or the unit is not Type=notify). A send that fails is
  logged once and otherwise ignored: a monitoring hiccup never stops the service.
- `Watchdog(notifier)`: pings WATCHDOG=1 every half of $WATCHDOG_USEC, but only while every
  registered `Heartbeat` has beaten within its `max_silence_s`. The main loops call
  `heartbeat.beat()` each time they make progress; a loop that hangs (or a blocked event loop)
  stops the pings and systemd restarts the service (WatchdogSec=, Restart=on-failure). Not a
  timer that always fires. Without $WATCHDOG_USEC (or when $WATCHDOG_PID names another
  process) the watchdog is off and `run()` returns at once.
"""
from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Callable, Mapping

log = logging.getLogger(__name__)


def socket_address(value: str | None) -> str | bytes | None:
    """$NOTIFY_SOCKET -> an address for socket.sendto ('@name' -> b'\\0name'); None if unusable."""
    if not value:
        return None
    if value.startswith("@"):
        return b"\0" + value[1:].encode()
    if value.startswith("/"):
        return value
    return None        # e.g. vsock:... (not used here)


def watchdog_period_s(env: Mapping[str, str] | None = None) -> float | None:
    """The watchdog timeout systemd expects (WatchdogSec=) in seconds, or None when off."""
    env = os.environ if env is None else env
    usec = env.get("WATCHDOG_USEC")
    if not usec:
        return None
    pid = env.get("WATCHDOG_PID")
    if pid and pid.isdigit() and int(pid) != os.getpid():
        return None
    try:
        value = int(usec)
    except ValueError:
        return None
    return value / 1_000_000 if value > 0 else None


class Notifier:
    """Sends sd_notify datagrams to systemd's socket; silent when there is none."""

    def __init__(self, address: str | bytes | None):
        self.address = address
        self._sock: socket.socket | None = None
        self._warned = False

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, *, unset: bool = True) -> Notifier:
        """From $NOTIFY_SOCKET. `unset` (sd_notify's unset_environment) removes it from
        os.environ so that child processes (timedatectl, chronyc...) do not write to it."""
        if env is None:
            env = os.environ
            address = socket_address(env.get("NOTIFY_SOCKET"))
            if unset:
                os.environ.pop("NOTIFY_SOCKET", None)
            return cls(address)
        return cls(socket_address(env.get("NOTIFY_SOCKET")))

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def send(self, **fields: str | int) -> bool:
        """Send KEY=value lines (keys upper-cased); True when the datagram left."""
        if self.address is None:
            return False
        payload = "\n".join(f"{k.upper()}={v}" for k, v in fields.items()).encode()
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                self._sock.setblocking(False)
            self._sock.sendto(payload, self.address)
            return True
        except OSError as exc:
            if not self._warned:
                log.warning("sd_notify to %r failed: %s", self.address, exc)
                self._warned = True
            return False

    def ready(self, status: str | None = None) -> bool:
        return self.send(ready=1, **({"status": status} if status else {}))

    def stopping(self, status: str | None = None) -> bool:
        return self.send(stopping=1, **({"status": status} if status else {}))

    def status(self, text: str) -> bool:
        return self.send(status=text)

    def watchdog(self) -> bool:
        return self.send(watchdog=1)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


class Heartbeat:
    """One main loop's sign of progress."""

    def __init__(self, name: str, max_silence_s: float, clock: Callable[[], float]):
        self.name = name
        self.max_silence_s = max_silence_s
        self._clock = clock
        self.last = clock()

    def beat(self) -> None:
        self.last = self._clock()

    def stale(self) -> bool:
        return self._clock() - self.last > self.max_silence_s


class Watchdog:
    """Pings systemd's watchdog only while every registered loop shows progress."""

    def __init__(self, notifier: Notifier, period_s: float | None = None, *,
                 clock: Callable[[], float] = time.monotonic):
        self.notifier = notifier
        # systemd's timeout; we ping at half of it.
        self.timeout_s = period_s if period_s is not None else watchdog_period_s()
        self.clock = clock
        self.heartbeats: list[Heartbeat] = []
        self.pings = 0
        self._reported: frozenset[str] = frozenset()

    @property
    def enabled(self) -> bool:
        return self.notifier.enabled and self.timeout_s is not None

    def heartbeat(self, name: str, max_silence_s: float) -> Heartbeat:
        hb = Heartbeat(name, max_silence_s, self.clock)
        self.heartbeats.append(hb)
        return hb

    def stale(self) -> list[str]:
        """Names of the loops that have not made progress in time."""
        return [hb.name for hb in self.heartbeats if hb.stale()]

    def check_and_ping(self) -> bool:
        """Ping when every loop made progress; True if pinged."""
        stale = self.stale()
        if stale:
            if frozenset(stale) != self._reported:
                log.error("watchdog: no progress from %s; not telling systemd we are alive",
                          ", ".join(stale))
            self._reported = frozenset(stale)
            return False
        if self._reported:
            log.info("watchdog: all loops making progress again")
            self._reported = frozenset()
        if self.notifier.watchdog():
            self.pings += 1
            return True
        return False

    async def run(self) -> None:
        """Ping loop (a task); returns at once when the watchdog is off."""
        if not self.notifier.enabled or self.timeout_s is None:
            return
        interval = max(0.05, self.timeout_s / 2)
        while True:
            self.check_and_ping()
            await asyncio.sleep(interval)
