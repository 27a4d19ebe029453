"""Relaying agent traffic between controllers that share one PostgreSQL.

Each terminal holds its WebSocket to one controller (table `agent_presence`: the controller's
instance id and a lease it refreshes). A command or a signal for a terminal held by another
controller goes through PostgreSQL: the message is written to `relay_messages` (SDP can exceed
NOTIFY's 8000-byte payload limit) and `pg_notify('vks_relay', '<target>:<row id>')` is sent in
the same transaction. The target controller LISTENs on that channel with its own asyncpg
connection, takes the row (DELETE ... RETURNING, so each message is delivered once) and hands it
to its hub. A periodic sweep picks up anything whose notification was missed (listener
reconnecting); rows older than `max_age_s` are purged.

Payloads are JSON: {"op": "deliver", "terminal": T, "msg": <wire message text>}
                or {"op": "kick", "terminal": T}  (T connected elsewhere: drop the old socket).

On SQLite there is one controller: `NoRelay`, whose `send` says the terminal is unavailable.
"""
from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from sqlalchemy import text

from contract.jobs import scheduler
from controller.gateway import AgentUnavailable
from controller.store import agents as store
from controller.store.db import Database

log = logging.getLogger(__name__)

CHANNEL = "vks_relay"

Deliver = Callable[[dict], Awaitable[None]]


class Relay(Protocol):
    """Messages for terminals held by another controller."""

    async def start(self, deliver: Deliver) -> None: ...
    async def send(self, target: str, terminal_id: str, payload: dict) -> None: ...
    async def close(self) -> None: ...


class NoRelay:
    """A single controller (SQLite): nothing to relay to."""

    async def start(self, deliver: Deliver) -> None:
        return None

    async def send(self, target: str, terminal_id: str, payload: dict) -> None:
        raise AgentUnavailable(f"terminal {terminal_id!r} is held by controller {target!r}, "
                               "and this database cannot relay (SQLite)")

    async def close(self) -> None:
        return None


def _asyncpg_dsn(url: str) -> str:
    from sqlalchemy.engine import make_url
    u = make_url(url.replace("postgres://", "postgresql://", 1))
    return u.set(drivername="postgresql").render_as_string(hide_password=False)


class PgRelay:
    """Relay through PostgreSQL: a row in relay_messages and a NOTIFY to the holder."""

    def __init__(self, db: Database, instance_id: str, *, sweep_s: float = 5.0, max_age_s: float = 600.0):
        self.db = db
        self.instance_id = instance_id
        self.sweep_s = sweep_s
        self.max_age_s = max_age_s
        self._deliver: Deliver | None = None
        self._conn: Any = None           # asyncpg's connection (LISTEN)
        self._jobs = scheduler("relay")
        self._wake = asyncio.Event()
        self._closing = False
        self.delivered = 0

    async def start(self, deliver: Deliver) -> None:
        self._deliver = deliver
        await self._listen()
        await self._jobs.spawn(self._loop(), name="relay-sweep")

    async def _listen(self) -> None:
        import asyncpg
        self._conn = await asyncpg.connect(_asyncpg_dsn(self.db.url))
        await self._conn.add_listener(CHANNEL, self._on_notify)

    def _on_notify(self, _conn, _pid, _channel, payload: str) -> None:
        target, _, _ = payload.rpartition(":")
        if target == self.instance_id:
            self._wake.set()

    async def _loop(self) -> None:
        last_purge = 0.0
        loop = asyncio.get_running_loop()
        while not self._closing:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.sweep_s)
            self._wake.clear()
            try:
                if self._conn is None or self._conn.is_closed():
                    await self._listen()
                await self._take_all()
                if loop.time() - last_purge > 60:
                    last_purge = loop.time()
                    async with self.db.transaction() as conn:
                        old = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=self.max_age_s)
                        n = await store.purge_relay(conn, old)
                    if n:
                        log.warning("relay: purged %d undelivered messages older than %.0f s", n, self.max_age_s)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("relay: %s; retrying", exc)
                with contextlib.suppress(Exception):
                    if self._conn is not None:
                        await self._conn.close()
                self._conn = None
                await asyncio.sleep(1.0)

    async def _take_all(self) -> None:
        if self._deliver is None:
            return
        while True:
            async with self.db.transaction() as conn:
                rows = await store.take_relay(conn, self.instance_id, limit=100)
            for _id, _terminal, payload in rows:
                try:
                    await self._deliver(json.loads(payload))
                    self.delivered += 1
                except Exception:
                    log.exception("relay: delivering message %s failed", _id)
            if len(rows) < 100:
                return

    async def send(self, target: str, terminal_id: str, payload: dict) -> None:
        body = json.dumps(payload, separators=(",", ":"))
        async with self.db.transaction() as conn:
            mid = await store.enqueue_relay(conn, target, terminal_id, body)
            await conn.execute(text("SELECT pg_notify(:ch, :p)"), {"ch": CHANNEL, "p": f"{target}:{mid}"})

    async def close(self) -> None:
        self._closing = True
        await self._jobs.close()
        if self._conn is not None:
            with contextlib.suppress(Exception):
                await self._conn.close()
            self._conn = None


def make_relay(db: Database, instance_id: str) -> Relay:
    """The relay the database allows: PgRelay on PostgreSQL, NoRelay on SQLite."""
    return PgRelay(db, instance_id) if db.is_postgres else NoRelay()
