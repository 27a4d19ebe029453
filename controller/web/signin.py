"""Sign-in that cannot be raced or turned against the user (issue 11).

- Every attempt is counted (controller.store.logins, in the database: controllers on one
  PostgreSQL share the counts) BEFORE a password is checked: from one address at most
  `auth.login_limit` attempts are checked per window, the rest get 429 (retry_after_s) at once,
  however many arrive together. A successful attempt is given back.
- A user name under attack is slowed, never locked: past `auth.name_free` failures in the window
  each check for it first waits `AuthSettings.name_delay` (doubling, capped). Its owner, from
  another address, still signs in (after the wait).
- Few checks run at once (`auth.max_checks`, a semaphore around scrypt).
- The client's address is the connection's, or - when the connection comes from one of
  `trusted_proxies` - the last address in X-Forwarded-For that is not a trusted proxy; the page is
  served over TLS when the connection is, or a trusted proxy says so in X-Forwarded-Proto.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import web

from controller.auth import AuthSettings
from controller.errors import ControllerError
from controller.keys import CLOCK_KEY, DB_KEY
from controller.store import logins

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class TooManyAttempts(ControllerError):
    """Too many sign-in attempts from this address (429)."""
    status, code = 429, "too_many_attempts"


def _ip(text: str | None) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address((text or "").strip().strip("[]"))
    except ValueError:
        return None


@dataclass
class Attempt:
    """One sign-in attempt once counted: its keys and how long its check waits."""
    keys: list[str]
    delay_s: float
    name_failures: int


@dataclass
class SignInGuard:
    """The sign-in limits of one controller process (the counts themselves are in the database)."""
    settings: AuthSettings
    trusted: list[Network] = field(default_factory=list)
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    checks: asyncio.Semaphore = field(init=False)

    def __post_init__(self) -> None:
        self.checks = asyncio.Semaphore(self.settings.max_checks)

    @property
    def limit(self) -> int:
        """Attempts per address and window."""
        return self.settings.login_limit

    @property
    def window_s(self) -> float:
        """The counting window (seconds)."""
        return self.settings.login_window_s

    def _trusted(self, addr) -> bool:
        return addr is not None and any(addr.version == n.version and addr in n for n in self.trusted)

    def client(self, request: web.Request) -> str:
        """The client's address (X-Forwarded-For believed only from a trusted proxy)."""
        peer = _ip(request.remote)
        if not self._trusted(peer):
            return request.remote or "unknown"
        hops = [h for h in request.headers.get("X-Forwarded-For", "").split(",") if h.strip()]
        for hop in reversed(hops):
            addr = _ip(hop)
            if addr is None:
                break
            if not self._trusted(addr):
                return str(addr)
        return str(peer)

    def secure(self, request: web.Request) -> bool:
        """Whether the page is served over TLS: directly, or as a trusted proxy says."""
        if request.secure:
            return True
        proto = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower()
        return proto == "https" and self._trusted(_ip(request.remote))

    async def count(self, request: web.Request, address: str, name: str | None) -> Attempt:
        """Count the attempt before anything is checked: TooManyAttempts when the address is over its
        limit; else the attempt with the wait its name's failures decide."""
        now: dt.datetime = request.app[CLOCK_KEY]()
        window = dt.timedelta(seconds=self.window_s)
        keys = [f"ip:{address}"]
        failures = 0
        async with request.app[DB_KEY].transaction() as conn:
            n, start = await logins.count(conn, keys[0], now, window)
            if n <= self.limit and name is not None:
                keys.append(f"user:{name.lower()}")
                failures, _ = await logins.count(conn, keys[1], now, window)
                failures -= 1            # this attempt has not failed (yet)
        if n > self.limit:
            wait = max(1, int((start + window - now).total_seconds()) + 1)
            raise TooManyAttempts(f"too many sign-in attempts; try again in {wait} s",
                                  detail={"retry_after_s": wait})
        return Attempt(keys, self.settings.name_delay(failures), failures)

    async def succeeded(self, request: web.Request, attempt: Attempt) -> None:
        """A successful attempt is not held against its address or name."""
        async with request.app[DB_KEY].transaction() as conn:
            for k in attempt.keys:
                await logins.give_back(conn, k)


GUARD_KEY = web.AppKey("signin_guard", SignInGuard)
