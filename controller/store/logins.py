"""Sign-in counters shared by every controller on the database (issue 11).

One row per key ("ip:ADDRESS", "user:NAME"): the attempts counted in the current fixed window.
`count` adds one atomically (an upsert, on SQLite and PostgreSQL alike) and returns the new
count with its window's start, so two controllers, or forty concurrent requests, never both see
a count under the limit for the same attempt; `give_back` takes one off (a successful sign-in).
"""
from __future__ import annotations

import datetime as dt

from sqlalchemy import case, delete, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from controller.store.schema import login_counters as lc


async def count(conn: AsyncConnection, key: str, now: dt.datetime, window: dt.timedelta) -> tuple[int, dt.datetime]:
    """Count one attempt for `key`: (the attempts in its window including this one, the window's start).
    A window older than `window` starts again at `now`."""
    dialect_insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    expired = lc.c.window_start <= now - window
    stmt = (dialect_insert(lc).values(key=key, window_start=now, count=1)
            .on_conflict_do_update(index_elements=[lc.c.key],
                                   set_={"count": case((expired, 1), else_=lc.c.count + 1),
                                         "window_start": case((expired, now), else_=lc.c.window_start)})
            .returning(lc.c.count, lc.c.window_start))
    n, start = (await conn.execute(stmt)).one()
    if n == 1:                       # a new window: forget keys whose windows are long over
        await conn.execute(delete(lc).where(lc.c.window_start < now - 2 * window))
    return n, start


async def give_back(conn: AsyncConnection, key: str) -> None:
    """Take one attempt off `key`'s count (it succeeded)."""
    await conn.execute(update(lc).where(lc.c.key == key, lc.c.count > 0).values(count=lc.c.count - 1))
