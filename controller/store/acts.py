"""Acts of technical impossibility (rule 18), one per hearing, and their
signatures (tables `acts`, `act_signatures` of the schema module; migrations 0004, 0007).

An act stores its content as data (`content`, the snapshot the HTML and PDF
are rendered from, reproducibly) with the sha256 of its canonical JSON. Once
the three signatures are in, `status` is "final", `final_sha256` seals the
content together with the signatures, and nothing about the act changes again
(the code refuses; the API answers 409).

A signature is given by the signed-in account in its role (`user_name`: the account, at most one
signature of an act per account), or entered for a signer with no account (`user_name` NULL;
`recorded_by` says who entered it).
"""
from __future__ import annotations

import datetime as dt
import unicodedata
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from contract.vocab import ActStatus, SignerRole, words
from controller.store.schema import act_signatures, acts, users

ACT_STATUSES = words(ActStatus)
SIGNER_ROLES = words(SignerRole)


def _d(row) -> dict[str, Any]:
    return dict(row._mapping)


async def get_for_hearing(conn: AsyncConnection, hearing_id: int, *, for_update: bool = False) -> dict | None:
    """The hearing's act (locked for update when asked), or None."""
    q = select(acts).where(acts.c.hearing_id == hearing_id)
    if for_update:
        q = q.with_for_update()
    row = (await conn.execute(q)).first()
    return _d(row) if row else None


async def insert_act(conn: AsyncConnection, values: dict) -> int:
    """Store a new act; its id."""
    return (await conn.execute(insert(acts).values(**values).returning(acts.c.id))).scalar_one()


async def update_act(conn: AsyncConnection, act_id: int, **values) -> None:
    """Change a draft act (a final act is never changed: the update matches no row)."""
    await conn.execute(update(acts).where(acts.c.id == act_id, acts.c.status == "draft").values(**values))


async def signatures(conn: AsyncConnection, act_id: int) -> list[dict]:
    """The act's signatures in the order they were recorded."""
    q = select(act_signatures).where(act_signatures.c.act_id == act_id).order_by(act_signatures.c.id)
    return [_d(r) for r in await conn.execute(q)]


async def add_signature(conn: AsyncConnection, act_id: int, *, role: str, name: str, user_name: str | None,
                        recorded_by: str, at: dt.datetime) -> None:
    """Record one signature (one per role, one per account: the unique constraints refuse a second)."""
    await conn.execute(insert(act_signatures).values(act_id=act_id, role=role, name=name, user_name=user_name,
                                                     recorded_by=recorded_by, signed_at=at))


# Hyphen-like characters (U+2010-U+2015 and the minus sign U+2212) read as "-" in a name.
_HYPHENS = {cp: "-" for cp in (*range(0x2010, 0x2016), 0x2212)}


def fold_name(name: str) -> str:
    """`name` as compared with other names: NFKC-normalised, format characters (zero-width and the like)
    dropped, hyphen-like characters read as "-", spaces collapsed, case folded - so a name that only
    looks different (a non-breaking hyphen U+2011, full-width letters) is the same name."""
    text = unicodedata.normalize("NFKC", name).translate(_HYPHENS)
    text = "".join(ch for ch in text if unicodedata.category(ch) != "Cf")
    return " ".join(text.split()).casefold()


async def account_named(conn: AsyncConnection, name: str) -> str | None:
    """The active account whose name is `name` (compared by `fold_name`), else None: such a person
    signs from their account, nobody enters their name for them. Compared in Python because SQLite's
    lower() folds ASCII only."""
    want = fold_name(name)
    rows = await conn.execute(select(users.c.name).where(users.c.disabled_at.is_(None)))
    return next((n for (n,) in rows if fold_name(n) == want), None)
