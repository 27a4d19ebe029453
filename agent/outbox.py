"""The agent's durable outbox: nothing a terminal measured is lost while the controller is away.

Guarantees
- A report is written to a local SQLite file (WAL, synchronous=FULL) before anything is sent;
  `put()` returns only once it is on disk.
- It is deleted only when the controller acknowledges it (`ack(report_id)`), and the controller
  acks only once it has stored it. Until then `pending()` returns it, oldest first, after any
  reconnect and after an agent restart.
- A report_id is unique in the outbox: putting the same id twice keeps one row.
- Bounded by `max_rows` and `max_bytes`. When a new report does not fit, the oldest *interval*
  reports are dropped first, then the oldest health reports, and only then the oldest session
  reports; the newest session reports are kept. Every drop is counted per kind (`dropped`),
  persistently, so metrics can say so.
- Disk full (or any storage failure): `put()` keeps the report in memory (bounded by
  `max_memory_rows`, same eviction order), still hands it to `pending()`, tries to write it to
  disk again on the next call, and raises `OutboxStorageError` so that the caller knows the
  report is not durable. If the agent dies before the disk recovers, those reports are lost
  (nothing else can be done on a full disk).

All blocking SQLite calls run in a thread (asyncio.to_thread), one at a time.
"""
from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import time
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from contract.vocab import ReportKind, words

log = logging.getLogger(__name__)

KINDS = words(ReportKind)
# Eviction order when full: the first kind is dropped first.
EVICTION_ORDER = (ReportKind.INTERVAL, ReportKind.HEALTH, ReportKind.SESSION)
# Acked reports deleted per statement (SQLite allows 32,766 parameters; a window is 200).
_DELETE_CHUNK = 500


class OutboxError(Exception):
    """The outbox cannot do what was asked."""


class OutboxStorageError(OutboxError):
    """Writing to the outbox file failed (e.g. disk full); the report is held in memory."""

    def __init__(self, message: str, *, report_id: str | None = None, kept_in_memory: bool = True):
        self.report_id = report_id
        self.kept_in_memory = kept_in_memory
        super().__init__(message)


@dataclass(frozen=True)
class Entry:
    """One report waiting for the controller's ack."""
    report_id: str
    kind: str
    session_id: str | None
    body: dict[str, Any]
    created_at: float
    seq: int = 0            # order of arrival (durable rows); memory rows come after

    def size(self) -> int:
        return len(json.dumps(self.body, separators=(",", ":")))


@dataclass
class OutboxStats:
    """What the outbox holds and has dropped (read by the metrics at scrape time)."""
    rows: int = 0
    bytes: int = 0
    memory_rows: int = 0
    dropped: dict[str, int] = field(default_factory=lambda: {k: 0 for k in KINDS})
    storage_errors: int = 0


_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    report_id  TEXT NOT NULL UNIQUE,
    kind       TEXT NOT NULL,
    session_id TEXT,
    body       TEXT NOT NULL,
    bytes      INTEGER NOT NULL,
    created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS outbox_kind_seq ON outbox (kind, seq);
CREATE TABLE IF NOT EXISTS outbox_dropped (
    kind  TEXT PRIMARY KEY,
    count INTEGER NOT NULL
);
"""


class Outbox:
    """The durable queue of reports waiting for the controller's acknowledgement."""

    def __init__(self, path: str | Path, *, max_rows: int = 100_000, max_bytes: int = 200 * 1024 * 1024,
                 max_memory_rows: int = 10_000):
        if max_rows < 1 or max_bytes < 1:
            raise ValueError("outbox bounds must be positive")
        self.path = Path(path)
        self.max_rows = max_rows
        self.max_bytes = max_bytes
        self.max_memory_rows = max_memory_rows
        self._db: sqlite3.Connection | None = None
        self._lock = asyncio.Lock()
        self._rows = 0
        self._bytes = 0
        self._dropped = {k: 0 for k in KINDS}
        self._storage_errors = 0
        # Reports that could not be written to disk, oldest first.
        self._memory: OrderedDict[str, Entry] = OrderedDict()
        self.changed = asyncio.Event()     # set whenever a report is added

    # ---- lifecycle ----

    async def open(self) -> Outbox:
        """Open (or create) the file; counts what is already waiting."""
        async with self._lock:
            await asyncio.to_thread(self._open_sync)
        return self

    def _open_sync(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            # Keep the WAL small and reuse it often: at the default (1000 pages, 4 MiB) a nearly
            # full disk could not grow it far enough to checkpoint, and acked reports were never
            # deleted again (issue 7, found on a 2 MiB tmpfs).
            db.execute("PRAGMA wal_autocheckpoint=64")
            db.execute("PRAGMA journal_size_limit=1048576")
            db.executescript(_SCHEMA)
            self._rows, self._bytes = db.execute(
                "SELECT count(*), coalesce(sum(bytes), 0) FROM outbox").fetchone()
            for kind, count in db.execute("SELECT kind, count FROM outbox_dropped"):
                self._dropped[kind] = count
        except BaseException:
            db.close()
            raise
        self._db = db

    async def close(self) -> None:
        """Idempotent. Reports still in memory only (disk full) are tried once more."""
        async with self._lock:
            if self._db is None:
                return
            if self._memory:
                try:
                    await asyncio.to_thread(self._flush_memory_sync)
                except OutboxStorageError as exc:
                    log.error("outbox closing with %d reports not written to disk: %s",
                              len(self._memory), exc)
            db, self._db = self._db, None
            await asyncio.to_thread(db.close)

    async def __aenter__(self) -> Outbox:
        return await self.open()

    async def __aexit__(self, *exc) -> None:
        await self.close()

    # ---- API ----

    async def put(self, report_id: str, kind: str, body: dict[str, Any], *,
                  session_id: str | None = None, created_at: float | None = None) -> None:
        """Store a report durably. Raises OutboxStorageError if it is only in memory."""
        if kind not in KINDS:
            raise ValueError(f"unknown report kind {kind!r}")
        entry = Entry(report_id, kind, session_id, body, created_at or time.time())
        async with self._lock:
            db = self._require_open()
            if self._memory:
                try:
                    await asyncio.to_thread(self._flush_memory_sync)
                except OutboxStorageError:
                    pass
            if not self._memory:
                try:
                    await asyncio.to_thread(self._insert_sync, db, entry)
                    self.changed.set()
                    return
                except OutboxStorageError as exc:
                    self._hold_in_memory(entry)
                    self.changed.set()
                    raise OutboxStorageError(f"report {report_id} held in memory only: {exc}",
                                             report_id=report_id) from None
            # Disk still failing: keep order, hold this one in memory too.
            self._hold_in_memory(entry)
            self.changed.set()
            raise OutboxStorageError(f"report {report_id} held in memory only: outbox file not writable",
                                     report_id=report_id)

    async def pending(self, *, after_seq: int = 0, limit: int = 500) -> list[Entry]:
        """Unacknowledged reports, oldest first: durable rows with seq > after_seq, then memory."""
        async with self._lock:
            db = self._require_open()
            rows = await asyncio.to_thread(self._select_sync, db, after_seq, limit)
            if len(rows) < limit:
                mem = list(self._memory.values())
                rows.extend(mem[: limit - len(rows)])
            return rows

    async def ack(self, report_id: str) -> bool:
        """The controller stored it: forget it. False if it was not (or no longer) here."""
        return await self.ack_many([report_id]) == 1

    async def ack_many(self, report_ids: Iterable[str]) -> int:
        """Forget every report of a batch of acks in one transaction (one fsync, not one a report:
        a link reading a burst of acks would otherwise wait on the disk for each). How many were
        here; OutboxStorageError (those on disk stay) if the file cannot be written."""
        ids = list(dict.fromkeys(report_ids))
        async with self._lock:
            on_disk = [rid for rid in ids if self._memory.pop(rid, None) is None]
            done = len(ids) - len(on_disk)
            if not on_disk:
                return done
            db = self._require_open()
            return done + await asyncio.to_thread(self._delete_many_sync, db, on_disk)

    def stats(self) -> OutboxStats:
        """The current counts (no I/O)."""
        return OutboxStats(rows=self._rows, bytes=self._bytes, memory_rows=len(self._memory),
                           dropped=dict(self._dropped), storage_errors=self._storage_errors)

    @property
    def dropped(self) -> dict[str, int]:
        """Reports dropped so far, per kind (kept across restarts)."""
        return dict(self._dropped)

    def __len__(self) -> int:
        return self._rows + len(self._memory)

    # ---- internals (run in a thread, under self._lock) ----

    def _require_open(self) -> sqlite3.Connection:
        if self._db is None:
            raise OutboxError(f"outbox {self.path} is not open")
        return self._db

    def _insert_sync(self, db: sqlite3.Connection, e: Entry) -> None:
        text = json.dumps(e.body, separators=(",", ":"), allow_nan=False)
        size = len(text)
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                if db.execute("SELECT 1 FROM outbox WHERE report_id = ?", (e.report_id,)).fetchone():
                    db.execute("COMMIT")
                    return
                dropped = self._make_room_sync(db, e.kind, size)
                if dropped is None:
                    # Does not fit even after evicting everything it may evict.
                    self._count_drop_sync(db, e.kind, 1)
                    db.execute("COMMIT")
                    self._dropped[e.kind] += 1
                    log.warning("outbox: dropped %s report %s (%d bytes): no room", e.kind, e.report_id, size)
                    return
                db.execute(
                    "INSERT INTO outbox (report_id, kind, session_id, body, bytes, created_at) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    (e.report_id, e.kind, e.session_id, text, size, e.created_at))
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            self._storage_errors += 1
            # Recompute what is really on disk after a failed transaction.
            self._recount_sync(db)
            raise OutboxStorageError(str(exc), report_id=e.report_id) from None
        self._rows += 1
        self._bytes += size
        for kind, n in dropped.items():
            self._dropped[kind] += n

    def _make_room_sync(self, db: sqlite3.Connection, kind: str, size: int) -> dict[str, int] | None:
        """Delete oldest rows in eviction order until `size` more bytes and one more row fit.

        Returns counts dropped per kind, or None when it cannot fit (nothing is deleted then).
        A report never evicts a kind that is kept longer than its own.
        """
        rows, nbytes = self._rows, self._bytes
        if rows + 1 <= self.max_rows and nbytes + size <= self.max_bytes:
            return {}
        if size > self.max_bytes:
            return None
        allowed = EVICTION_ORDER[: EVICTION_ORDER.index(kind) + 1]
        victims: list[tuple[int, str, int]] = []
        for victim_kind in allowed:
            cur = db.execute("SELECT seq, bytes FROM outbox WHERE kind = ? ORDER BY seq", (victim_kind,))
            for seq, b in cur:
                victims.append((seq, victim_kind, b))
                rows -= 1
                nbytes -= b
                if rows + 1 <= self.max_rows and nbytes + size <= self.max_bytes:
                    break
            cur.close()
            if rows + 1 <= self.max_rows and nbytes + size <= self.max_bytes:
                break
        else:
            return None
        dropped = {k: 0 for k in KINDS}
        db.executemany("DELETE FROM outbox WHERE seq = ?", [(seq,) for seq, _, _ in victims])
        for _, k, b in victims:
            dropped[k] += 1
            self._rows -= 1
            self._bytes -= b
        for k, n in dropped.items():
            if n:
                self._count_drop_sync(db, k, n)
        log.warning("outbox full (%d rows, %d bytes max): dropped %s", self.max_rows, self.max_bytes,
                    ", ".join(f"{n} {k}" for k, n in dropped.items() if n))
        return {k: n for k, n in dropped.items() if n}

    @staticmethod
    def _count_drop_sync(db: sqlite3.Connection, kind: str, n: int) -> None:
        db.execute("INSERT INTO outbox_dropped (kind, count) VALUES (?, ?) "
                   "ON CONFLICT (kind) DO UPDATE SET count = count + excluded.count", (kind, n))

    def _recount_sync(self, db: sqlite3.Connection) -> None:
        try:
            self._rows, self._bytes = db.execute(
                "SELECT count(*), coalesce(sum(bytes), 0) FROM outbox").fetchone()
        except sqlite3.Error:
            pass

    def _select_sync(self, db: sqlite3.Connection, after_seq: int, limit: int) -> list[Entry]:
        try:
            cur = db.execute(
                "SELECT seq, report_id, kind, session_id, body, created_at FROM outbox "
                "WHERE seq > ? ORDER BY seq LIMIT ?", (after_seq, limit))
            return [Entry(report_id=r, kind=k, session_id=s, body=json.loads(b), created_at=c, seq=seq)
                    for seq, r, k, s, b, c in cur]
        except sqlite3.Error as exc:
            raise OutboxStorageError(f"cannot read outbox {self.path}: {exc}", kept_in_memory=False) from None

    def _delete_many_sync(self, db: sqlite3.Connection, report_ids: list[str]) -> int:
        def delete() -> list[int]:
            sizes: list[int] = []
            db.execute("BEGIN IMMEDIATE")
            try:
                for i in range(0, len(report_ids), _DELETE_CHUNK):
                    chunk = report_ids[i:i + _DELETE_CHUNK]
                    marks = ",".join("?" * len(chunk))
                    sizes += [b for (b,) in db.execute(
                        f"DELETE FROM outbox WHERE report_id IN ({marks}) RETURNING bytes", chunk)]
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
            return sizes
        try:
            try:
                sizes = delete()
            except sqlite3.OperationalError:
                # Disk full: move the WAL into the database and truncate it, then try once more.
                db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                sizes = delete()
        except sqlite3.Error as exc:
            # The rows stay; they will be sent again and acked again (the controller stores each once).
            raise OutboxStorageError(f"cannot delete {len(report_ids)} acked reports: {exc}",
                                     kept_in_memory=False) from None
        self._rows -= len(sizes)
        self._bytes -= sum(sizes)
        return len(sizes)

    def _hold_in_memory(self, e: Entry) -> None:
        self._storage_errors += 1
        if e.report_id in self._memory:
            return
        while len(self._memory) >= self.max_memory_rows:
            victim = self._memory_victim(e.kind)
            if victim is None:
                self._dropped[e.kind] += 1
                log.error("outbox: disk not writable and memory full: dropped %s report %s",
                          e.kind, e.report_id)
                return
            self._dropped[self._memory.pop(victim).kind] += 1
        self._memory[e.report_id] = e
        log.error("outbox: %s not writable; holding %d reports in memory", self.path, len(self._memory))

    def _memory_victim(self, kind: str) -> str | None:
        allowed = EVICTION_ORDER[: EVICTION_ORDER.index(kind) + 1]
        for k in allowed:
            for rid, e in self._memory.items():
                if e.kind == k:
                    return rid
        return None

    def _flush_memory_sync(self) -> None:
        db = self._require_open()
        while self._memory:
            rid, e = next(iter(self._memory.items()))
            self._insert_sync(db, e)       # raises OutboxStorageError while the disk is full
            del self._memory[rid]
            log.info("outbox: report %s written to disk after a storage error", rid)
