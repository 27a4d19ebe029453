"""The hub's report writer: reports are stored by one task in batches (INSERT ... ON CONFLICT DO
NOTHING on (terminal_id, report_id)) on a connection of its own, and the `ack` of each is sent
only after its batch committed, so a duplicate is stored once and acked again. Then the batch is
handed on: to the metrics, to live monitoring, and a session's final report to the hub's
processor. While the database is away the batch is kept and retried (contract.backoff, no
jitter: one writer); the agents keep their outboxes meanwhile.
"""
from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from contract import backoff, wire
from contract.vocab import ReportKind
from controller.hub.base import SLOW_S, AgentConn, HubMetrics, HubOptions, HubStats, LiveListener
from controller.store import agents as store
from controller.store.db import Database

log = logging.getLogger("controller.hub")

T = TypeVar("T")

# Retry delays while the database refuses a batch: 0.2 s doubling up to 10 s.
RETRY_INITIAL_S = 0.2
RETRY_MAX_S = 10.0


def body_text(body: Any) -> str:
    """A report body as it is stored: compact ASCII JSON of exactly the keys given - serialized by
    pydantic in one pass (a third of `dumps(body.dump())`), the slower path when it is not ASCII."""
    text = body.model_dump_json(exclude_unset=True)
    return text if text.isascii() else store.dumps(body.dump())


class ReportWriter:
    """Queue of received reports -> stored batches -> acks and hand-offs."""

    def __init__(self, db: Database, options: HubOptions, stats: HubStats, *,
                 session_report: Callable[[str, str], None], live: LiveListener | None = None,
                 metrics: HubMetrics | None = None):
        self.db = db
        self.options = options
        self.stats = stats
        self.session_report = session_report       # (terminal_id, report_id) of a final report
        self.live = live
        self.metrics = metrics
        # Reports, and (SQLite) the hub's other writes as (None, job): see `write`.
        self.queue: asyncio.Queue[tuple[AgentConn | None, Any]] = asyncio.Queue()
        self._conn: Any = None
        self._pending = 0                            # reports put and not yet acked
        self._room: collections.deque[asyncio.Future[None]] = collections.deque()

    async def put(self, c: AgentConn, m: wire.Report) -> None:
        """A report to store and ack; waits while `queue_max` reports are waiting (the caller, a
        connection's reader, then reads nothing more from its agent)."""
        while self._pending >= self.options.queue_max:
            self.stats.backpressure_waits_total += 1
            room: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._room.append(room)
            await room
        self._pending += 1
        self.queue.put_nowait((c, m))

    def _stored(self, n: int) -> None:
        """`n` reports stored and acked: readers held back may go on while there is room."""
        self._pending -= n
        while self._room and self._pending < self.options.queue_max:
            room = self._room.popleft()
            if not room.done():
                room.set_result(None)

    async def write(self, job: Callable[[Any], Awaitable[T]]) -> T:
        """Run `job(conn)` in a transaction of its own on the writer's connection, between two
        batches of reports. On SQLite, where one connection writes at a time, the hub's other
        writes (presence claims and releases, the lease refresh) going through here never make
        the reports wait on the database's lock - the busy handler's sleeps cost up to seconds
        under load (issue 15). Raises what the job raises."""
        fut: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self.queue.put_nowait((None, (job, fut)))
        return await fut

    async def drain(self, timeout: float) -> None:
        """Wait (at most `timeout`) until what was received is stored and acked."""
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.queue.join(), timeout)

    async def run(self) -> None:
        """Store reports in batches; ack each only after its batch committed."""
        self._conn = None
        try:
            await self._loop()
        finally:
            if self._conn is not None:
                with contextlib.suppress(Exception):
                    await asyncio.shield(self._conn.close())
                self._conn = None

    async def _batch(self) -> list[tuple[AgentConn | None, Any]]:
        batch = [await self.queue.get()]
        if self.options.batch_wait_s > 0 and self.queue.empty():
            # Gather a few milliseconds' worth: one transaction for many reports costs far
            # less than one each (thousands of agents each sending one a second).
            await asyncio.sleep(self.options.batch_wait_s)
        while len(batch) < self.options.batch_max:
            try:
                batch.append(self.queue.get_nowait())
            except asyncio.QueueEmpty:
                break
        return batch

    async def _store(self, rows: list[store.ReportRow]) -> Any:
        retry = backoff.Backoff(RETRY_INITIAL_S, RETRY_MAX_S, spread=backoff.NO_JITTER)
        while True:
            try:
                # The writer keeps its own connection: reports never queue behind the
                # pool (agent handshakes, API requests) - one round of BEGIN/INSERT/COMMIT.
                t0 = time.monotonic()
                await self._connect()
                async with self._conn.begin():
                    inserted = await store.store_report_rows(self._conn, rows)
                took = time.monotonic() - t0
                if took > SLOW_S:
                    log.warning("storing %d reports took %.2f s", len(rows), took)
                return inserted
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # Database away: keep the batch, no acks; the agents keep their outboxes.
                self.stats.store_errors_total += 1
                delay = retry.next()
                log.error("storing %d reports failed (%s); retrying in %.1f s", len(rows), exc, delay)
                if self._conn is not None:
                    with contextlib.suppress(Exception):
                        await self._conn.close()
                    self._conn = None
                await asyncio.sleep(delay)

    async def _connect(self) -> None:
        if self._conn is not None:
            return
        self._conn = await self.db.engine.connect()
        if not self.db.is_postgres:
            # No checkpoint inside the writer's commits (its fsync stalled every report for up to
            # seconds on a busy disk): `checkpoints()` runs them beside it, from another connection.
            driver: Any = (await self._conn.get_raw_connection()).driver_connection
            await driver.execute("PRAGMA wal_autocheckpoint=0")

    async def checkpoints(self, period_s: float = 1.0) -> None:
        """SQLite: checkpoint the WAL every `period_s` from a connection of its own (PASSIVE: it never
        waits for, nor holds up, the writer; the WAL restarts from the start once all is copied)."""
        while True:
            await asyncio.sleep(period_s)
            try:
                async with self.db.engine.connect() as conn:
                    driver: Any = (await conn.get_raw_connection()).driver_connection
                    await driver.execute("PRAGMA wal_checkpoint(PASSIVE)")
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("checkpointing the database failed: %s", exc)

    async def _run_job(self, job: Callable[[Any], Awaitable[Any]], fut: asyncio.Future) -> None:
        try:
            await self._connect()
            async with self._conn.begin():
                result = await job(self._conn)
        except asyncio.CancelledError:
            fut.cancel()
            raise
        except Exception as exc:
            if not fut.done():
                fut.set_exception(exc)
            if self._conn is not None:
                with contextlib.suppress(Exception):
                    await self._conn.close()
                self._conn = None
        else:
            if not fut.done():
                fut.set_result(result)
        finally:
            self.queue.task_done()

    async def _loop(self) -> None:
        while True:
            items = await self._batch()
            batch: list[tuple[AgentConn, wire.Report]] = []
            for c, item in items:
                if c is None:
                    await self._run_job(*item)
                else:
                    batch.append((c, item))
            if not batch:
                continue
            rows: list[store.ReportRow] = [(c.terminal_id, m.report_id, m.kind.value, m.session_id,
                                            body_text(m.body), m.created_at) for c, m in batch]
            inserted = await self._store(rows)
            self.stats.reports_stored_total += len(rows)
            self.stats.report_batches_total += 1
            reports = [(c.terminal_id, m) for c, m in batch]
            if self.metrics is not None:
                self.metrics.reports_stored(reports, len(rows) - inserted if isinstance(inserted, int) else None)
            for c, m in batch:
                await c.send(wire.encode_ack(m.report_id))
                if m.kind == ReportKind.SESSION and m.session_id:
                    self.session_report(c.terminal_id, m.report_id)
                self.queue.task_done()
            self._stored(len(batch))
            if self.live is not None:
                try:
                    self.live.on_reports(reports)
                except Exception:
                    log.exception("live monitoring could not take %d reports", len(batch))
