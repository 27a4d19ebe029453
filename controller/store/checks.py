"""Test requests (rule 13) and pre-connect checks (rule 15): one row per
hearing, kind and remote terminal."""
from __future__ import annotations

from typing import Any, Iterable

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from controller.errors import NotFound
from controller.store.schema import checks


def _d(row) -> dict[str, Any]:
    return dict(row._mapping)


async def insert_check(conn: AsyncConnection, values: dict) -> int:
    return (await conn.execute(insert(checks).values(attempts=0, **values).returning(checks.c.id))).scalar_one()


async def get_check(conn: AsyncConnection, check_id: int, *, for_update: bool = False) -> dict:
    q = select(checks).where(checks.c.id == check_id)
    if for_update:
        q = q.with_for_update()
    row = (await conn.execute(q)).first()
    if row is None:
        raise NotFound(f"no check {check_id}")
    return _d(row)


async def check_by_session(conn: AsyncConnection, session_id: str, *, for_update: bool = False) -> dict | None:
    q = select(checks).where(checks.c.session_id == session_id)
    if for_update:
        q = q.with_for_update()
    row = (await conn.execute(q)).first()
    return _d(row) if row else None


async def checks_for(conn: AsyncConnection, hearing_ids: Iterable[int]) -> list[dict]:
    ids = list(hearing_ids)
    if not ids:
        return []
    q = select(checks).where(checks.c.hearing_id.in_(ids)).order_by(checks.c.hearing_id, checks.c.id)
    return [_d(r) for r in await conn.execute(q)]


async def update_check(conn: AsyncConnection, check_id: int, **values) -> None:
    await conn.execute(update(checks).where(checks.c.id == check_id).values(**values))
