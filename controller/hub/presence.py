"""Who is connected: the hub's presence rows and their leases, the terminals online on any
controller, and the revocation of connected tokens.

Each terminal's presence row names the controller holding its socket and a lease that controller
refreshes every `lease_s / 3` (with the health heard since); `online()` is this controller's
sockets plus (PostgreSQL) the terminals with a live lease elsewhere. Open connections whose token
was revoked or expired are closed within `token_check_s` (issue 7).
"""
from __future__ import annotations

import asyncio
import datetime as dt
import functools
import logging
import time
from typing import Any

from contract import wire
from controller.hub.base import CLOSE_POLICY, SLOW_S, AgentConn, HubOptions, close_ws
from controller.hub.batch import HelloBatches, Write
from controller.relay import NoRelay, Relay
from controller.store import agents as store
from controller.store.db import Database

log = logging.getLogger("controller.hub")


class Presence:
    """The connections of this controller (`conns`, shared with the hub) and who is online."""

    def __init__(self, db: Database, instance_id: str, options: HubOptions, relay: Relay,
                 conns: dict[str, AgentConn], write: Write | None = None):
        self.db = db
        self.instance_id = instance_id
        self.options = options
        self.relay = relay
        self.conns = conns
        self._online_cache: set[str] = set()
        # SQLite: the hub's writes go through the report writer's connection (`write`).
        self.write = write
        self.batches = HelloBatches(db, instance_id, options.lease_s, write)

    async def release_all(self) -> None:
        """Drop every presence row this instance holds (a previous run's, or at close)."""
        async with self.db.transaction() as conn:
            await store.release_all(conn, self.instance_id)

    def connected(self, terminal_id: str) -> None:
        """A socket of `terminal_id` is registered here."""
        self._online_cache.add(terminal_id)

    def disconnected(self, terminal_id: str) -> None:
        """The socket of `terminal_id` is gone from here."""
        self._online_cache.discard(terminal_id)

    async def claim(self, c: AgentConn) -> str | None:
        """Hold the terminal's presence; returns the controller that held it before, if another
        (with the claims and releases asked at the same time, in one transaction)."""
        return await self.batches.claim(c.terminal_id, c.agent_version)

    async def release(self, terminal_id: str) -> None:
        """Let go of the terminal's presence row."""
        await self.batches.release(terminal_id)

    async def refresh_online(self) -> None:
        """Re-read the terminals with a live lease on any controller."""
        async with self.db.read() as conn:
            remote = await store.online_terminals(conn)
        self._online_cache = remote | set(self.conns)

    def online(self) -> set[str]:
        """Terminals connected to this controller or (PostgreSQL) to another with a live lease."""
        if isinstance(self.relay, NoRelay):
            return set(self.conns)
        return set(self._online_cache) | set(self.conns)

    async def lease_loop(self) -> None:
        """Refresh the leases (and write the health heard since) every lease_s / 3."""
        period = max(1.0, self.options.lease_s / 3)
        while True:
            await asyncio.sleep(period)
            try:
                t0 = time.monotonic()
                changed: dict[str, Any] = {t: c.health for t, c in self.conns.items()
                                           if c.health is not None and c.health is not c.health_written}
                until = store.utcnow() + dt.timedelta(seconds=self.options.lease_s)
                await self.batches.write(functools.partial(self._refresh, lease_until=until, health=changed))
                for t, h in changed.items():
                    c = self.conns.get(t)
                    if c is not None:
                        c.health_written = h
                await self.refresh_online()
                took = time.monotonic() - t0
                if took > SLOW_S:
                    log.warning("refreshing %d agent leases took %.2f s", len(self.conns), took)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("refreshing agent leases failed: %s", exc)

    async def _refresh(self, conn: Any, *, lease_until: dt.datetime, health: dict[str, Any]) -> None:
        await store.refresh_presence(conn, self.instance_id, lease_until=lease_until, health=health)

    async def token_loop(self) -> None:
        """Close connections whose token was revoked or expired since they connected (issue 7)."""
        while True:
            await asyncio.sleep(self.options.token_check_s)
            conns = [c for c in self.conns.values() if c.token_sha256]
            if not conns:
                continue
            try:
                async with self.db.read() as conn:
                    valid = await store.valid_token_hashes(conn, {c.token_sha256 for c in conns if c.token_sha256})
            except asyncio.CancelledError:
                raise
            except Exception as exc:           # database away: keep the sockets, check again later
                log.warning("checking agent tokens failed: %s", exc)
                continue
            for c in conns:
                if c.token_sha256 not in valid and self.conns.get(c.terminal_id) is c:
                    log.warning("terminal %s: its token was revoked or expired: closing its connection",
                                c.terminal_id)
                    await c.send(wire.Error(code="unauthorized", message="terminal token revoked or expired",
                                            fatal=True))
                    await close_ws(c.ws, CLOSE_POLICY, b"token revoked")
