"""Declared audit (rules 5, 6): a route names its audit action, and the audit row is written for it,
in the same transaction as the change it records.

How to declare it::

    Route("PATCH", f"{API}/rooms/{{id}}", patch_room, auth.REGISTRY, "Rename a room",
          audit=Audit("room.update", "room:{id}"), ...)

    async def patch_room(request):
        data = await body(request, m.RoomPatch)
        rid = path_int(request, "id")                    # fills {id} of the target with the parsed int
        async with transaction(request) as conn:        # the route's audit row is written in here
            row = await registry.update_room(conn, rid, data.name)
            audit(request).note(data.model_dump())      # the row's detail (default: {})
        return ok(row)

- The target is a `str.format` template filled from the path's parameters (as parsed by `path_int`,
  else as written) and from fields the handler notes: `audit(request).note(id=row["id"])`.
- `who` is the signed-in user unless noted (`note(who=...)`, e.g. a login).
- `at` is the time of the change: the time the handler made it with (`transaction(request, t)`), else
  the clock when first asked for (`audit(request).at`) or when the row is written - never the time
  the request arrived (its body may take a while).
- `transaction(request)` is the request's write transaction: on leaving it without an error the row
  is written inside it, so the change and its row commit together or not at all; a declared row
  neither written nor skipped by then fails the transaction (rolled back, 500). A service that
  computes the detail deep inside takes `audit(request).note` as a callback.
- `audit(request).skip()` when the request changed nothing (a second cancel): no row; a later
  `note(...)` undoes the skip.
- A declared route that answers 2xx without having written or skipped its row (its change made
  outside `transaction(request)`) is a bug: the routing layer logs it and answers 500 (tests catch it).
"""
from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncConnection

from controller.keys import CLOCK_KEY, DB_KEY, USER_KEY
from controller.store import users as users_repo


@dataclass(frozen=True)
class Audit:
    """The audit row a route writes: its action ("room.update") and target template ("room:{id}")."""

    action: str
    target: str


class AuditEntry:
    """The audit row of one request: declared by its route, filled in by its handler, written by
    `transaction(request)` just before the handler's changes commit."""

    def __init__(self, declared: Audit, request: web.Request):
        self.action = declared.action
        self.template = declared.target
        self.fields: dict[str, Any] = dict(request.match_info)
        self.detail: dict[str, Any] = {}
        user = request.get(USER_KEY)
        self.who: str | None = user["name"] if user else None
        self.clock: Callable[[], dt.datetime] = request.app[CLOCK_KEY]
        self._at: dt.datetime | None = None
        self.skipped = False
        self.written = False

    @property
    def at(self) -> dt.datetime:
        """The time of the change: set by the handler, else the clock when first asked for."""
        if self._at is None:
            self._at = self.clock()
        return self._at

    @at.setter
    def at(self, t: dt.datetime) -> None:
        self._at = t

    def note(self, detail: dict[str, Any] | None = None, /, *, who: str | None = None, **fields: Any) -> None:
        """What the row says: its detail, who did it, and fields of the target template."""
        if detail is not None:
            self.detail = detail
        if who is not None:
            self.who = who
        self.fields.update(fields)
        self.skipped = False

    def skip(self) -> None:
        """The request changed nothing: no row."""
        self.skipped = True

    @property
    def target(self) -> str:
        """The target template filled in."""
        return self.template.format_map(self.fields)

    @property
    def done(self) -> bool:
        """Written, or skipped on purpose."""
        return self.written or self.skipped

    async def write(self, conn: AsyncConnection) -> None:
        """Insert the row into the caller's transaction (once)."""
        if self.done:
            return
        if self.who is None:
            raise RuntimeError(f"audit {self.action}: nobody signed in and no who= noted")
        await users_repo.record(conn, self.who, self.action, self.target, self.at, self.detail)
        self.written = True


AUDIT_KEY = web.RequestKey("vks_audit", AuditEntry)


def begin(request: web.Request, declared: Audit | None) -> AuditEntry | None:
    """Start the request's audit entry for a route declared with `audit=` (the routing layer calls it)."""
    if declared is None:
        return None
    entry = AuditEntry(declared, request)
    request[AUDIT_KEY] = entry
    return entry


def audit(request: web.Request) -> AuditEntry:
    """The audit entry of this request (its route must declare `audit=`)."""
    entry = request.get(AUDIT_KEY)
    if entry is None:
        raise RuntimeError(f"{request.method} {request.path}: the route declares no audit")
    return entry


@asynccontextmanager
async def transaction(request: web.Request, at: dt.datetime | None = None) -> AsyncIterator[AsyncConnection]:
    """The request's write transaction for its change made at `at` (default: the clock when the row is
    written); the declared audit row is written in it before it commits, or the change rolls back."""
    entry = request.get(AUDIT_KEY)
    if entry is not None and at is not None:
        entry.at = at
    async with request.app[DB_KEY].transaction() as conn:
        yield conn
        if entry is not None:
            await entry.write(conn)
            if not entry.done:      # never commit a declared change without its row
                raise RuntimeError(f"{request.method} {request.path}: audit {entry.action!r} not written")
