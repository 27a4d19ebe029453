"""Acts of technical impossibility (rule 18), one per hearing, and their
signatures. Migration 0004 creates these tables.

An act stores its content as data (`content`, the snapshot the HTML and PDF
are rendered from, reproducibly) with the sha256 of its canonical JSON. Once
the three signatures are in, `status` is "final", `final_sha256` seals the
content together with the signatures, and nothing about the act changes again
(the code refuses; the API answers 409).
"""
from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    CheckConstraint,
    Column,
    ForeignKey,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
    insert,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from controller.store.schema import JSONType, UTCDateTime, metadata

ACT_STATUSES = ("draft", "final")
SIGNER_ROLES = ("head_of_office", "secretary", "technician")

acts = Table(
    "acts", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("hearing_id", Integer, ForeignKey("hearings.id", ondelete="CASCADE"), nullable=False, unique=True),
    Column("status", String(16), nullable=False),
    Column("trigger", String(16), nullable=False),           # not_fixed | cannot_fix | requested
    Column("content", JSONType, nullable=False),
    Column("content_sha256", String(64), nullable=False),
    Column("final_sha256", String(64), nullable=True),
    Column("documents", JSONType, nullable=True),            # sha256 of the final HTML and PDF per language
    Column("created_at", UTCDateTime, nullable=False),
    Column("created_by", Text, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("finalized_at", UTCDateTime, nullable=True),
    CheckConstraint("status IN ('draft', 'final')", name="status"),
)

act_signatures = Table(
    "act_signatures", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("act_id", Integer, ForeignKey("acts.id", ondelete="CASCADE"), nullable=False),
    Column("role", String(16), nullable=False),
    Column("name", Text, nullable=False),
    Column("recorded_by", Text, nullable=False),
    Column("signed_at", UTCDateTime, nullable=False),
    CheckConstraint("role IN ('head_of_office', 'secretary', 'technician')", name="role"),
    UniqueConstraint("act_id", "role", name="uq_act_signatures_act_role"),
)


def _d(row) -> dict[str, Any]:
    return dict(row._mapping)


async def get_for_hearing(conn: AsyncConnection, hearing_id: int, *, for_update: bool = False) -> dict | None:
    q = select(acts).where(acts.c.hearing_id == hearing_id)
    if for_update:
        q = q.with_for_update()
    row = (await conn.execute(q)).first()
    return _d(row) if row else None


async def insert_act(conn: AsyncConnection, values: dict) -> int:
    return (await conn.execute(insert(acts).values(**values).returning(acts.c.id))).scalar_one()


async def update_act(conn: AsyncConnection, act_id: int, **values) -> None:
    await conn.execute(update(acts).where(acts.c.id == act_id, acts.c.status == "draft").values(**values))


async def signatures(conn: AsyncConnection, act_id: int) -> list[dict]:
    q = select(act_signatures).where(act_signatures.c.act_id == act_id).order_by(act_signatures.c.id)
    return [_d(r) for r in await conn.execute(q)]


async def add_signature(conn: AsyncConnection, act_id: int, role: str, name: str, recorded_by: str,
                        at: dt.datetime) -> None:
    await conn.execute(insert(act_signatures).values(act_id=act_id, role=role, name=name, recorded_by=recorded_by,
                                                     signed_at=at))
