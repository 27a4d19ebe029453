"""The append-only event record per hearing (rule 21). Nothing here updates or
deletes an event; the API exposes no way to."""
from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from controller.store.schema import events

# Kinds written by this package (others add their own, e.g. break/reconnect/resume):
#   hearing_scheduled, hearing_updated, hearing_cancelled, agreement_given,
#   test_request_created, preconnect_scheduled, check_started, check_result, check_failed,
#   check_overdue, check_blocked, check_unblocked, check_retry, suspended, suspension_lifted


async def append(conn: AsyncConnection, hearing_id: int, kind: str, at: dt.datetime,
                 detail: dict[str, Any] | None = None) -> int:
    """Append an event to the hearing's record; its id."""
    return (await conn.execute(insert(events).values(hearing_id=hearing_id, kind=kind, at=at,
                                                     detail=detail or {}).returning(events.c.id))).scalar_one()


async def list_for(conn: AsyncConnection, hearing_id: int, *, after_id: int = 0,
                   limit: int | None = None) -> list[dict]:
    """The hearing's events after `after_id`, oldest first (at most `limit`)."""
    q = (select(events).where(events.c.hearing_id == hearing_id, events.c.id > after_id)
         .order_by(events.c.id))
    if limit:
        q = q.limit(limit)
    return [dict(r._mapping) for r in await conn.execute(q)]
