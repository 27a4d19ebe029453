"""Institutions, rooms and terminals (the registry)."""
from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from contract.vocab import InstitutionKind, TerminalRole
from controller.errors import Conflict, Invalid, NotFound
from controller.store.schema import hearing_participants, hearings, institutions, rooms, terminals


def _d(row) -> dict[str, Any]:
    return dict(row._mapping)


# --- institutions ---------------------------------------------------------------------------

async def get_institution(conn: AsyncConnection, inst_id: str) -> dict:
    """The institution row (NotFound otherwise)."""
    row = (await conn.execute(select(institutions).where(institutions.c.id == inst_id))).first()
    if row is None:
        raise NotFound(f"no institution {inst_id!r}")
    return _d(row)


async def list_institutions(conn: AsyncConnection, *, kind: str | None = None,
                            region: str | None = None) -> list[dict]:
    """Institutions by id, of a kind and/or in a region when given."""
    q = select(institutions).order_by(institutions.c.id)
    if kind:
        q = q.where(institutions.c.kind == kind)
    if region:
        q = q.where(institutions.c.region == region)
    return [_d(r) for r in await conn.execute(q)]


async def create_institution(conn: AsyncConnection, values: dict, now: dt.datetime) -> dict:
    """Add an institution (Conflict when the id exists); the new row."""
    exists = (await conn.execute(select(institutions.c.id).where(institutions.c.id == values["id"]))).first()
    if exists:
        raise Conflict(f"institution {values['id']!r} exists", field="id")
    await conn.execute(insert(institutions).values(**values, created_at=now))
    return await get_institution(conn, values["id"])


async def update_institution(conn: AsyncConnection, inst_id: str, values: dict) -> dict:
    """Change an institution (a court keeps a level, others none); the row after."""
    current = await get_institution(conn, inst_id)
    kind = values.get("kind", current["kind"])
    level = values.get("level", current["level"])
    if (kind == InstitutionKind.COURT) != (level is not None):
        raise Invalid("a court needs a level (district, regional, supreme); other institutions none",
                      field="level")
    if values:
        await conn.execute(update(institutions).where(institutions.c.id == inst_id).values(**values))
    return await get_institution(conn, inst_id)


async def delete_institution(conn: AsyncConnection, inst_id: str) -> None:
    """Delete an institution; Conflict while rooms, terminals or hearings refer to it."""
    await get_institution(conn, inst_id)
    try:
        async with conn.begin_nested():
            await conn.execute(delete(institutions).where(institutions.c.id == inst_id))
    except IntegrityError:
        raise Conflict(f"institution {inst_id!r} still has rooms, terminals or hearings") from None


# --- rooms ----------------------------------------------------------------------------------

async def get_room(conn: AsyncConnection, room_id: int) -> dict:
    """The room row (NotFound otherwise)."""
    row = (await conn.execute(select(rooms).where(rooms.c.id == room_id))).first()
    if row is None:
        raise NotFound(f"no room {room_id}")
    return _d(row)


async def list_rooms(conn: AsyncConnection, *, institution_id: str | None = None) -> list[dict]:
    """Rooms by institution and id (of one institution when given)."""
    q = select(rooms).order_by(rooms.c.institution_id, rooms.c.id)
    if institution_id:
        q = q.where(rooms.c.institution_id == institution_id)
    return [_d(r) for r in await conn.execute(q)]


async def create_room(conn: AsyncConnection, institution_id: str, name: str) -> dict:
    """Add a room to an institution (Conflict on a name it already has); the new row."""
    await get_institution(conn, institution_id)
    dup = (await conn.execute(select(rooms.c.id).where(rooms.c.institution_id == institution_id,
                                                       rooms.c.name == name))).first()
    if dup:
        raise Conflict(f"room {name!r} exists in {institution_id!r}", field="name")
    room_id = (await conn.execute(insert(rooms).values(institution_id=institution_id, name=name)
                                  .returning(rooms.c.id))).scalar_one()
    return await get_room(conn, room_id)


async def update_room(conn: AsyncConnection, room_id: int, name: str) -> dict:
    """Rename a room (Conflict on a name its institution already has); the row after."""
    room = await get_room(conn, room_id)
    dup = (await conn.execute(select(rooms.c.id).where(rooms.c.institution_id == room["institution_id"],
                                                       rooms.c.name == name, rooms.c.id != room_id))).first()
    if dup:
        raise Conflict(f"room {name!r} exists in {room['institution_id']!r}", field="name")
    await conn.execute(update(rooms).where(rooms.c.id == room_id).values(name=name))
    return await get_room(conn, room_id)


async def delete_room(conn: AsyncConnection, room_id: int) -> None:
    """Delete a room; Conflict while hearings refer to it."""
    await get_room(conn, room_id)
    try:
        async with conn.begin_nested():
            await conn.execute(delete(rooms).where(rooms.c.id == room_id))
    except IntegrityError:
        raise Conflict(f"room {room_id} has hearings") from None


# --- terminals ------------------------------------------------------------------------------

async def get_terminal(conn: AsyncConnection, terminal_id: str) -> dict:
    """The terminal row: id, institution_id, room_id, role, name (NotFound otherwise)."""
    row = (await conn.execute(select(terminals).where(terminals.c.id == terminal_id))).first()
    if row is None:
        raise NotFound(f"no terminal {terminal_id!r}")
    return _d(row)


async def find_terminal(conn: AsyncConnection, terminal_id: str) -> dict | None:
    """The terminal row, or None."""
    row = (await conn.execute(select(terminals).where(terminals.c.id == terminal_id))).first()
    return _d(row) if row else None


async def terminals_by_ids(conn: AsyncConnection, ids: Iterable[str]) -> dict[str, dict]:
    """{id: terminal row} of those of `ids` that exist."""
    ids = list(ids)
    if not ids:
        return {}
    return {r.id: _d(r) for r in await conn.execute(select(terminals).where(terminals.c.id.in_(ids)))}


async def list_terminals(conn: AsyncConnection, *, institution_id: str | None = None,
                         room_id: int | None = None) -> list[dict]:
    """Terminals by id (of an institution and/or a room when given)."""
    q = select(terminals).order_by(terminals.c.id)
    if institution_id:
        q = q.where(terminals.c.institution_id == institution_id)
    if room_id is not None:
        q = q.where(terminals.c.room_id == room_id)
    return [_d(r) for r in await conn.execute(q)]


async def _check_terminal_refs(conn: AsyncConnection, institution_id: str, room_id: int | None) -> None:
    await get_institution(conn, institution_id)
    if room_id is not None:
        room = (await conn.execute(select(rooms).where(rooms.c.id == room_id))).first()
        if room is None:
            raise Invalid(f"no room {room_id}", field="room_id")
        if room.institution_id != institution_id:
            raise Invalid(f"room {room_id} is not in {institution_id!r}", field="room_id")


async def create_terminal(conn: AsyncConnection, values: dict) -> dict:
    """Add a terminal (Conflict when the id exists, Invalid for a room elsewhere); the new row."""
    if await find_terminal(conn, values["id"]):
        raise Conflict(f"terminal {values['id']!r} exists", field="id")
    await _check_terminal_refs(conn, values["institution_id"], values.get("room_id"))
    await conn.execute(insert(terminals).values(**values))
    return await get_terminal(conn, values["id"])


async def update_terminal(conn: AsyncConnection, terminal_id: str, values: dict) -> dict:
    """Change a terminal (its room must be in its institution); the row after."""
    current = await get_terminal(conn, terminal_id)
    merged = {**current, **values}
    await _check_terminal_refs(conn, merged["institution_id"], merged.get("room_id"))
    if values:
        await conn.execute(update(terminals).where(terminals.c.id == terminal_id).values(**values))
    return await get_terminal(conn, terminal_id)


async def delete_terminal(conn: AsyncConnection, terminal_id: str) -> None:
    """Delete a terminal; Conflict while hearings use it."""
    await get_terminal(conn, terminal_id)
    try:
        async with conn.begin_nested():
            await conn.execute(delete(terminals).where(terminals.c.id == terminal_id))
    except IntegrityError:
        raise Conflict(f"terminal {terminal_id!r} is used by hearings") from None


async def terminal_in_use(conn: AsyncConnection, terminal_id: str) -> bool:
    """Whether any hearing uses the terminal (as its courtroom terminal or a participant)."""
    n = (await conn.execute(select(func.count()).select_from(hearing_participants)
                            .where(hearing_participants.c.terminal_id == terminal_id))).scalar_one()
    m = (await conn.execute(select(func.count()).select_from(hearings)
                            .where(hearings.c.court_terminal_id == terminal_id))).scalar_one()
    return bool(n or m)


# --- sites file -----------------------------------------------------------------------------

async def import_sites(conn: AsyncConnection, sites: list[dict], now: dt.datetime) -> dict[str, int]:
    """Upsert institutions, rooms and terminals from a validated sites file
    (controller.models.SitesFile().model_dump()["institutions"]). Idempotent:
    importing the same file twice changes nothing. Returns counts of what was
    created and updated."""
    counts = {"institutions_created": 0, "institutions_updated": 0, "rooms_created": 0,
              "terminals_created": 0, "terminals_updated": 0}
    for inst in sites:
        values = {k: inst[k] for k in ("kind", "level", "name", "region", "timezone")}
        row = (await conn.execute(select(institutions).where(institutions.c.id == inst["id"]))).first()
        if row is None:
            await conn.execute(insert(institutions).values(id=inst["id"], created_at=now, **values))
            counts["institutions_created"] += 1
        elif any(getattr(row, k) != v for k, v in values.items()):
            await conn.execute(update(institutions).where(institutions.c.id == inst["id"]).values(**values))
            counts["institutions_updated"] += 1
        wanted: list[tuple[dict, int | None]] = [(t, None) for t in inst.get("terminals", [])]
        for room in inst.get("rooms", []):
            r = (await conn.execute(select(rooms.c.id).where(rooms.c.institution_id == inst["id"],
                                                             rooms.c.name == room["name"]))).first()
            if r is None:
                room_id = (await conn.execute(insert(rooms).values(institution_id=inst["id"], name=room["name"])
                                              .returning(rooms.c.id))).scalar_one()
                counts["rooms_created"] += 1
            else:
                room_id = r.id
            wanted += [(t, room_id) for t in room.get("terminals", [])]
        for term, room_id in wanted:
            role = term.get("role") or (TerminalRole.COURTROOM if inst["kind"] == InstitutionKind.COURT
                                         else TerminalRole.INSTITUTION)
            tvalues = {"institution_id": inst["id"], "room_id": room_id, "role": role, "name": term["name"]}
            existing = await find_terminal(conn, term["id"])
            if existing is None:
                await conn.execute(insert(terminals).values(id=term["id"], **tvalues))
                counts["terminals_created"] += 1
            elif any(existing[k] != v for k, v in tvalues.items()):
                await conn.execute(update(terminals).where(terminals.c.id == term["id"]).values(**tvalues))
                counts["terminals_updated"] += 1
    return counts
