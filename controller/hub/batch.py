"""Many agents' small database requests as one (issue 15): the tokens of the hellos arriving
together checked in one query, their presence rows claimed and released in one transaction.

A reconnect storm brings thousands of hellos within seconds; one query (and, on SQLite, one write
transaction) each made the database - and its connection pool - the storm's bottleneck. A
`Batcher` gathers what is asked within `wait_s` (at most `max_items`), runs it in one call and
answers each caller with its own result; a failure of that call is every caller's failure (each
handles it as it did its own query's: 503 before the upgrade, or closing the socket).
"""
from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

from controller.store import agents as store
from controller.store.db import Database

T = TypeVar("T")
R = TypeVar("R")
# Runs job(conn) in a write transaction (the report writer's lane on SQLite, else the pool's).
Write = Callable[[Callable[[Any], Awaitable[Any]]], Awaitable[Any]]


class Batcher(Generic[T, R]):
    """`await submit(item)`: `run(items)` is called with what was submitted together and returns
    one result per item, in order."""

    def __init__(self, run: Callable[[list[T]], Awaitable[list[R]]], *, wait_s: float = 0.005,
                 max_items: int = 500):
        self.run = run
        self.wait_s = wait_s
        self.max_items = max_items
        self._queue: list[tuple[T, asyncio.Future[R]]] = []
        self._task: asyncio.Task | None = None
        self.batches = 0

    async def submit(self, item: T) -> R:
        fut: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._queue.append((item, fut))
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._flush(), name="hub-batch")
        return await fut

    async def _flush(self) -> None:
        while self._queue:
            if self.wait_s > 0:
                await asyncio.sleep(self.wait_s)
            batch, self._queue = self._queue[:self.max_items], self._queue[self.max_items:]
            batch = [(item, fut) for item, fut in batch if not fut.cancelled()]
            if not batch:
                continue
            self.batches += 1
            try:
                results = await self.run([item for item, _ in batch])
            except Exception as exc:
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(exc)
                continue
            except asyncio.CancelledError:
                for _, fut in batch:
                    fut.cancel()
                raise
            for (_, fut), result in zip(batch, results, strict=True):
                if not fut.done():
                    fut.set_result(result)

    async def close(self) -> None:
        """Cancel what waits (its callers see CancelledError)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for _, fut in self._queue:
            fut.cancel()
        self._queue = []


class HelloBatches:
    """The hub's batched requests: token checks, presence claims and releases."""

    def __init__(self, db: Database, instance_id: str, lease_s: float, write: Write | None = None):
        self.db = db
        self.write = write or self._transaction
        self.instance_id = instance_id
        self.lease_s = lease_s
        self.tokens: Batcher[str, str | None] = Batcher(self._authenticate)
        # One queue for claims and releases, so that a terminal's release and its next claim are
        # written in the order they were asked.
        self.presence: Batcher[tuple[str, str, str | None], str | None] = Batcher(self._presence)
        self.sessions: Batcher[str, store.SessionRow | None] = Batcher(self._sessions)
        self.orphans: Batcher[tuple[str, dt.datetime], list[str]] = Batcher(self._orphans, wait_s=0.05)

    async def authenticate(self, token: str) -> str | None:
        """The terminal of a token (None: unknown, revoked or expired) - one query per batch."""
        return await self.tokens.submit(token)

    async def claim(self, terminal_id: str, agent_version: str) -> str | None:
        """Hold the terminal's presence; the controller that held it before (if another, live)."""
        return await self.presence.submit(("claim", terminal_id, agent_version))

    async def release(self, terminal_id: str) -> None:
        """Let go of the terminal's presence row (no-op when another controller holds it)."""
        await self.presence.submit(("release", terminal_id, None))

    async def session(self, session_id: str) -> store.SessionRow | None:
        """A commanded session (None: never commanded) - one query per batch."""
        return await self.sessions.submit(session_id)

    async def _sessions(self, ids: list[str]) -> list[store.SessionRow | None]:
        async with self.db.read() as conn:
            found = await store.get_sessions(conn, ids)
        return [found.get(i) for i in ids]

    async def started_sessions(self, caller: str, created_before: dt.datetime) -> list[str]:
        """The sessions `caller` was commanded to call before `created_before`, still open."""
        return await self.orphans.submit((caller, created_before))

    async def _orphans(self, asked: list[tuple[str, dt.datetime]]) -> list[list[str]]:
        async with self.db.read() as conn:
            found = await store.started_sessions_of_callers(conn, [t for t, _ in asked])
        return [[s for s, created in found.get(t, []) if created < before] for t, before in asked]

    async def _authenticate(self, tokens: list[str]) -> list[str | None]:
        async with self.db.read() as conn:
            found = await store.authenticate_many(conn, tokens)
        return [found.get(store.token_hash(t)) for t in tokens]

    async def _presence(self, ops: list[tuple[str, str, str | None]]) -> list[str | None]:
        lease_until = store.utcnow() + dt.timedelta(seconds=self.lease_s)
        return await self.write(lambda conn: self._presence_in(conn, ops, lease_until))

    async def _presence_in(self, conn: Any, ops: list[tuple[str, str, str | None]],
                           lease_until: dt.datetime) -> list[str | None]:
        results: list[str | None] = []
        i = 0
        while i < len(ops):                 # runs of claims or releases, in the order asked
            j = i
            while j < len(ops) and ops[j][0] == ops[i][0]:
                j += 1
            run = ops[i:j]
            if ops[i][0] == "claim":
                previous = await store.claim_presences(conn, [(t, v) for _, t, v in run], self.instance_id,
                                                       lease_until=lease_until)
                results.extend(previous.get(t) for _, t, _ in run)
            else:
                await store.release_presences(conn, [t for _, t, _ in run], self.instance_id)
                results.extend(None for _ in run)
            i = j
        return results

    async def _transaction(self, job: Callable[[Any], Awaitable[Any]]) -> Any:
        async with self.db.transaction() as conn:
            return await job(conn)

    async def close(self) -> None:
        await self.tokens.close()
        await self.presence.close()
        await self.orphans.close()
        await self.sessions.close()
