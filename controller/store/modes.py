"""Each party's way of taking part in a hearing (rules 21, 23; issue 13, migration 0010): a row per
recording, never updated, so the record keeps who recorded which mode when.

A party is one of the hearing's remote terminals (`terminal_id`) or a named person without a
terminal (`name`, and optionally what they are: `party_kind`, e.g. lawyer, witness, victim). The
mode is `contract.vocab.ParticipationMode` (vks | mobile | in_person). `occasion` says why it was
asked: after a break, after a postponement, or none (recorded at any time).

- `participation_modes`: the table (on `schema.metadata`, like `diagnoses` and `measurements`).
- `record(conn, ...)`: the rows of one recording; `rows_of(conn, hearing_ids)`: every row, oldest first;
  `current(rows)`: the latest row per party, in first-recorded order.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any

from sqlalchemy import Column, ForeignKey, Index, Integer, String, Table, Text, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from contract.vocab import ParticipationMode
from controller.store.schema import CheckConstraint, UTCDateTime, _in, metadata

participation_modes = Table(
    "participation_modes", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("hearing_id", Integer, ForeignKey("hearings.id", ondelete="CASCADE"), nullable=False),
    Column("terminal_id", String(64), nullable=True),        # a remote terminal of the hearing, or
    Column("name", Text, nullable=True),                     # a named person without a terminal
    Column("party_kind", String(64), nullable=True),         # e.g. lawyer, witness, victim (free words)
    Column("mode", String(16), nullable=False),
    Column("occasion", String(16), nullable=True),           # break | postponement | NULL
    Column("recorded_at", UTCDateTime, nullable=False),
    Column("recorded_by", Text, nullable=False),
    CheckConstraint(_in("mode", ParticipationMode), name="mode"),
    CheckConstraint("terminal_id IS NOT NULL OR name IS NOT NULL", name="party"),
    Index("ix_participation_modes_hearing_id", "hearing_id"),
)

pm = participation_modes.c


def party_key(row: dict) -> tuple[str, str]:
    """("terminal", id) or ("name", the name) - one party, however often recorded."""
    return ("terminal", row["terminal_id"]) if row.get("terminal_id") else ("name", row["name"])


async def record(conn: AsyncConnection, hearing_id: int, items: Iterable[dict[str, Any]], *, occasion: str | None,
                 at: dt.datetime, by: str) -> None:
    """Keep one recording: a row per item ({terminal_id | name, party_kind, mode})."""
    rows = [{"hearing_id": hearing_id, "terminal_id": i.get("terminal_id"), "name": i.get("name"),
             "party_kind": i.get("party_kind"), "mode": ParticipationMode(i["mode"]), "occasion": occasion,
             "recorded_at": at, "recorded_by": by} for i in items]
    if rows:
        await conn.execute(insert(participation_modes), rows)


async def rows_of(conn: AsyncConnection, hearing_ids: Iterable[int]) -> dict[int, list[dict]]:
    """{hearing id: its rows, oldest first}."""
    ids = list(hearing_ids)
    out: dict[int, list[dict]] = {i: [] for i in ids}
    if not ids:
        return out
    for r in await conn.execute(select(participation_modes).where(pm.hearing_id.in_(ids)).order_by(pm.id)):
        out[r.hearing_id].append(dict(r._mapping))
    return out


def current(rows: Iterable[dict]) -> list[dict]:
    """The latest row of each party, the parties in the order first recorded."""
    rows = list(rows)
    last: dict[tuple[str, str], dict] = {}
    for r in rows:
        key = party_key(r)
        last.pop(key, None)
        last[key] = r
    first: dict[tuple[str, str], int] = {}
    for i, r in enumerate(rows):
        first.setdefault(party_key(r), i)
    return sorted(last.values(), key=lambda r: first[party_key(r)])
