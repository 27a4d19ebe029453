"""Users, API tokens and the audit trail (rules 5, 6).

A token is 32 random bytes (URL-safe base64, shown once); only its sha256 is
stored. Every change made through the API or the CLI writes one audit row in
the same transaction as the change.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from controller.errors import Conflict, NotFound
from controller.store.schema import api_tokens, audit, users


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


async def create_user(conn: AsyncConnection, name: str, role: str, now: dt.datetime,
                      scope: str | None = None) -> dict:
    if (await conn.execute(select(users.c.id).where(users.c.name == name))).first():
        raise Conflict(f"user {name!r} exists", field="name")
    uid = (await conn.execute(insert(users).values(name=name, role=role, scope=scope, created_at=now)
                              .returning(users.c.id))).scalar_one()
    return {"id": uid, "name": name, "role": role, "scope": scope, "created_at": now}


async def get_user(conn: AsyncConnection, name: str) -> dict:
    row = (await conn.execute(select(users).where(users.c.name == name))).first()
    if row is None:
        raise NotFound(f"no user {name!r}")
    return dict(row._mapping)


async def list_users(conn: AsyncConnection) -> list[dict]:
    return [dict(r._mapping) for r in await conn.execute(select(users).order_by(users.c.id))]


async def issue_token(conn: AsyncConnection, user_id: int, now: dt.datetime) -> str:
    token = secrets.token_urlsafe(32)
    await conn.execute(insert(api_tokens).values(user_id=user_id, token_sha256=token_hash(token), created_at=now))
    return token


async def user_for_token(conn: AsyncConnection, token: str) -> dict | None:
    q = (select(users).join(api_tokens, api_tokens.c.user_id == users.c.id)
         .where(api_tokens.c.token_sha256 == token_hash(token), api_tokens.c.revoked_at.is_(None)))
    row = (await conn.execute(q)).first()
    return dict(row._mapping) if row else None


async def revoke_tokens(conn: AsyncConnection, user_id: int, now: dt.datetime) -> int:
    res = await conn.execute(update(api_tokens).where(api_tokens.c.user_id == user_id,
                                                      api_tokens.c.revoked_at.is_(None)).values(revoked_at=now))
    return res.rowcount


async def record(conn: AsyncConnection, who: str, action: str, target: str, at: dt.datetime,
                 detail: dict[str, Any] | None = None) -> None:
    """One audit row: who did what to which target, when."""
    await conn.execute(insert(audit).values(who=who, action=action, target=target, at=at, detail=detail or {}))


async def list_audit(conn: AsyncConnection, *, limit: int = 200, target: str | None = None) -> list[dict]:
    q = select(audit).order_by(audit.c.id.desc()).limit(limit)
    if target:
        q = q.where(audit.c.target == target)
    return [dict(r._mapping) for r in await conn.execute(q)]
