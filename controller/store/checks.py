"""Test requests (rule 13) and pre-connect checks (rule 15): one row per
hearing, kind and remote terminal."""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from contract.vocab import CheckStatus
from controller.errors import NotFound
from controller.store.schema import checks


def _d(row) -> dict[str, Any]:
    return dict(row._mapping)


async def insert_check(conn: AsyncConnection, values: dict) -> int:
    """Insert a check; its id."""
    return (await conn.execute(insert(checks).values(attempts=0, **values).returning(checks.c.id))).scalar_one()


async def get_check(conn: AsyncConnection, check_id: int, *, for_update: bool = False) -> dict:
    """The check row, locked for update when asked (NotFound otherwise)."""
    q = select(checks).where(checks.c.id == check_id)
    if for_update:
        q = q.with_for_update()
    row = (await conn.execute(q)).first()
    if row is None:
        raise NotFound(f"no check {check_id}")
    return _d(row)


async def check_by_session(conn: AsyncConnection, session_id: str, *, for_update: bool = False) -> dict | None:
    """The check a session runs (locked for update when asked), or None."""
    q = select(checks).where(checks.c.session_id == session_id)
    if for_update:
        q = q.with_for_update()
    row = (await conn.execute(q)).first()
    return _d(row) if row else None


async def checks_for(conn: AsyncConnection, hearing_ids: Iterable[int]) -> list[dict]:
    """The checks of these hearings, by hearing and id."""
    ids = list(hearing_ids)
    if not ids:
        return []
    q = select(checks).where(checks.c.hearing_id.in_(ids)).order_by(checks.c.hearing_id, checks.c.id)
    return [_d(r) for r in await conn.execute(q)]


async def update_check(conn: AsyncConnection, check_id: int, **values) -> None:
    """Set columns of a check."""
    await conn.execute(update(checks).where(checks.c.id == check_id).values(**values))


async def last_finished(conn: AsyncConnection, terminal_ids: Iterable[str]) -> dict[str, dict]:
    """{terminal_id: its latest passed or failed check (as caller or callee)}."""
    ids = list(terminal_ids)
    if not ids:
        return {}
    done = checks.c.status.in_((CheckStatus.PASSED, CheckStatus.FAILED))
    latest: dict[str, Any] = {}
    for col in (checks.c.callee, checks.c.caller):
        q = select(col, func.max(checks.c.finished_at)).where(done, col.in_(ids)).group_by(col)
        for t, at in await conn.execute(q):
            if at is not None and (t not in latest or at > latest[t]):
                latest[t] = at
    if not latest:
        return {}
    rows = [_d(r) for r in await conn.execute(
        select(checks).where(done, checks.c.finished_at.in_(set(latest.values())),
                             or_(checks.c.callee.in_(latest), checks.c.caller.in_(latest)))
        .order_by(checks.c.id))]
    out: dict[str, dict] = {}
    for r in rows:
        for t, peer in ((r["callee"], r["caller"]), (r["caller"], r["callee"])):
            if latest.get(t) == r["finished_at"]:
                out[t] = {**r, "peer": peer}
    return out
