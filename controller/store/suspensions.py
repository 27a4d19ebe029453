"""Suspensions of an institution or a whole area (rule 24)."""
from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import and_, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from controller import rules
from controller.errors import NotFound
from controller.store.schema import suspensions


def _d(row) -> dict[str, Any]:
    return dict(row._mapping)


def to_rule(row: dict) -> rules.Suspension:
    """The rules' view of a suspension row."""
    return rules.Suspension(id=row["id"], institution_id=row["institution_id"], region=row["region"],
                            from_utc=row["from_utc"], until_utc=row["until_utc"], lifted_at=row["lifted_at"])


async def create(conn: AsyncConnection, values: dict) -> dict:
    """Insert a suspension; the new row."""
    sid = (await conn.execute(insert(suspensions).values(**values).returning(suspensions.c.id))).scalar_one()
    return await get(conn, sid)


async def get(conn: AsyncConnection, sid: int, *, for_update: bool = False) -> dict:
    """The suspension row, locked for update when asked (NotFound otherwise)."""
    q = select(suspensions).where(suspensions.c.id == sid)
    if for_update:
        q = q.with_for_update()
    row = (await conn.execute(q)).first()
    if row is None:
        raise NotFound(f"no suspension {sid}")
    return _d(row)


def _not_ended(at: dt.datetime):
    return and_(or_(suspensions.c.until_utc.is_(None), suspensions.c.until_utc > at),
                or_(suspensions.c.lifted_at.is_(None), suspensions.c.lifted_at > at))


async def list_all(conn: AsyncConnection, *, active_at: dt.datetime | None = None) -> list[dict]:
    """Suspensions by id (only those in force at `active_at` when given)."""
    q = select(suspensions).order_by(suspensions.c.id)
    if active_at is not None:
        q = q.where(suspensions.c.from_utc <= active_at, _not_ended(active_at))
    return [_d(r) for r in await conn.execute(q)]


async def not_ended(conn: AsyncConnection, at: dt.datetime) -> list[rules.Suspension]:
    """Suspensions in force now or starting later (not lifted, not expired)."""
    return [to_rule(_d(r)) for r in await conn.execute(select(suspensions).where(_not_ended(at)))]


async def lift(conn: AsyncConnection, sid: int, at: dt.datetime, by: str) -> None:
    """Lift a suspension at `at`, by `by`."""
    await conn.execute(update(suspensions).where(suspensions.c.id == sid).values(lifted_at=at, lifted_by=by))
