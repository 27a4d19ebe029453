"""Escalation (rules 16, 17): who is told, what was opened, who acknowledged,
and every notification with its delivery state. Migration 0004 creates these
tables (declared in `controller.store.schema`); the words are `contract.vocab`'s.

- `contacts`: per institution, the people and endpoints to notify:
  `kind` "technician" (step 1, rule 16) or "organiser" (step 2, rule 17), an
  e-mail address and/or a webhook URL, optionally linked to a user.
- `escalations`: one per hearing and cause while not resolved (`open_key` is
  "{hearing_id}:{cause}" until resolved, then NULL: a unique index makes
  opening idempotent on both databases).
- `escalation_actions`: the append-only history of an escalation (opened,
  step2, ack, cannot_fix, resolved) with who and when.
- `notifications`: one row per (escalation, step, channel, target); a durable
  job (`escalation.notify`, key `notify:{id}`) delivers it with retries.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any

from sqlalchemy import ColumnElement, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from contract.vocab import DeliveryState, EscalationState
from controller.errors import NotFound
from controller.store.schema import contacts, escalation_actions, escalations, hearings, notifications


def _d(row) -> dict[str, Any]:
    return dict(row._mapping)


def open_key(hearing_id: int, cause: str, subject: str | None = None) -> str:
    """The unique key of a hearing's unresolved escalation for a cause (and a subject, such as the
    terminal it is about: then one per hearing, cause and terminal)."""
    return f"{hearing_id}:{cause}" if subject is None else f"{hearing_id}:{cause}:{subject}"


# --- contacts ------------------------------------------------------------------------------------

async def add_contact(conn: AsyncConnection, values: dict, now: dt.datetime) -> dict:
    """Add a contact; the new row."""
    cid = (await conn.execute(insert(contacts).values(**values, created_at=now)
                              .returning(contacts.c.id))).scalar_one()
    return await get_contact(conn, cid)


async def get_contact(conn: AsyncConnection, contact_id: int) -> dict:
    """The contact row (NotFound otherwise)."""
    row = (await conn.execute(select(contacts).where(contacts.c.id == contact_id))).first()
    if row is None:
        raise NotFound(f"no contact {contact_id}")
    return _d(row)


async def list_contacts(conn: AsyncConnection, institution_ids: Iterable[str] | None = None,
                        kind: str | None = None) -> list[dict]:
    """Contacts by institution and id (of these institutions, of a kind, when given)."""
    q = select(contacts).order_by(contacts.c.institution_id, contacts.c.id)
    if institution_ids is not None:
        q = q.where(contacts.c.institution_id.in_(list(institution_ids)))
    if kind:
        q = q.where(contacts.c.kind == kind)
    return [_d(r) for r in await conn.execute(q)]


async def delete_contact(conn: AsyncConnection, contact_id: int) -> None:
    """Delete a contact (NotFound when there is none)."""
    await get_contact(conn, contact_id)
    await conn.execute(contacts.delete().where(contacts.c.id == contact_id))


# --- escalations ---------------------------------------------------------------------------------

async def find_open(conn: AsyncConnection, hearing_id: int, cause: str, *, for_update: bool = False,
                    subject: str | None = None) -> dict | None:
    """The hearing's unresolved escalation for `cause` (and `subject`), locked for update when asked, or None."""
    q = select(escalations).where(escalations.c.open_key == open_key(hearing_id, cause, subject))
    if for_update:
        q = q.with_for_update()
    row = (await conn.execute(q)).first()
    return _d(row) if row else None


async def insert_escalation(conn: AsyncConnection, *, hearing_id: int, cause: str, detail: dict,
                            now: dt.datetime, subject: str | None = None) -> int:
    """Open an escalation at step 1; its id (the open key makes a second one fail)."""
    return (await conn.execute(insert(escalations).values(
        hearing_id=hearing_id, cause=cause, detail=detail, state=EscalationState.OPEN, step=1,
        open_key=open_key(hearing_id, cause, subject), opened_at=now, updated_at=now)
        .returning(escalations.c.id))).scalar_one()


async def get(conn: AsyncConnection, eid: int, *, for_update: bool = False) -> dict:
    """The escalation row, locked for update when asked (NotFound otherwise)."""
    q = select(escalations).where(escalations.c.id == eid)
    if for_update:
        q = q.with_for_update()
    row = (await conn.execute(q)).first()
    if row is None:
        raise NotFound(f"no escalation {eid}")
    return _d(row)


async def update_escalation(conn: AsyncConnection, eid: int, **values) -> None:
    """Set columns of an escalation."""
    await conn.execute(update(escalations).where(escalations.c.id == eid).values(**values))


async def list_escalations(conn: AsyncConnection, *, open_only: bool = False, hearing_id: int | None = None,
                           hearings_where: ColumnElement[bool] | None = None, limit: int = 500) -> list[dict]:
    """Escalations, newest first (unresolved only, of one hearing, when asked; of the hearings
    `hearings_where` - SQL on `hearings`, e.g. a user's scope - lets through, before the limit)."""
    q = select(escalations).order_by(escalations.c.id.desc()).limit(limit)
    if hearings_where is not None:
        q = q.where(escalations.c.hearing_id.in_(select(hearings.c.id).where(hearings_where)))
    if open_only:
        q = q.where(escalations.c.state != EscalationState.RESOLVED)
    if hearing_id is not None:
        q = q.where(escalations.c.hearing_id == hearing_id)
    return [_d(r) for r in await conn.execute(q)]


async def add_action(conn: AsyncConnection, eid: int, action: str, by: str, at: dt.datetime,
                     role: str | None = None, note: str | None = None) -> None:
    """Append an entry to an escalation's history."""
    await conn.execute(insert(escalation_actions).values(escalation_id=eid, action=action, by=by, role=role,
                                                         at=at, note=note))


async def actions_for(conn: AsyncConnection, ids: Iterable[int]) -> dict[int, list[dict]]:
    """{escalation id: its history, oldest first}."""
    ids = list(ids)
    out: dict[int, list[dict]] = {i: [] for i in ids}
    if ids:
        q = (select(escalation_actions).where(escalation_actions.c.escalation_id.in_(ids))
             .order_by(escalation_actions.c.id))
        for r in await conn.execute(q):
            out[r.escalation_id].append(_d(r))
    return out


# --- notifications -------------------------------------------------------------------------------

async def add_notification(conn: AsyncConnection, *, eid: int, step: int, channel: str, target: str,
                           institution_id: str | None, now: dt.datetime) -> int:
    """A pending notification of a step to one target; its id."""
    return (await conn.execute(insert(notifications).values(
        escalation_id=eid, step=step, channel=channel, target=target, institution_id=institution_id,
        state=DeliveryState.PENDING, attempts=0, created_at=now).returning(notifications.c.id))).scalar_one()


async def get_notification(conn: AsyncConnection, nid: int, *, for_update: bool = False) -> dict | None:
    """The notification row (locked for update when asked), or None."""
    q = select(notifications).where(notifications.c.id == nid)
    if for_update:
        q = q.with_for_update()
    row = (await conn.execute(q)).first()
    return _d(row) if row else None


async def update_notification(conn: AsyncConnection, nid: int, **values) -> None:
    """Set columns of a notification (its delivery state, attempts, error)."""
    await conn.execute(update(notifications).where(notifications.c.id == nid).values(**values))


async def notifications_for(conn: AsyncConnection, ids: Iterable[int]) -> dict[int, list[dict]]:
    """{escalation id: its notifications, oldest first}."""
    ids = list(ids)
    out: dict[int, list[dict]] = {i: [] for i in ids}
    if ids:
        q = select(notifications).where(notifications.c.escalation_id.in_(ids)).order_by(notifications.c.id)
        for r in await conn.execute(q):
            out[r.escalation_id].append(_d(r))
    return out
