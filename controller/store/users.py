"""Users, API tokens and the audit trail (rules 5, 6).

A token is 32 random bytes (URL-safe base64, shown once); only its sha256 is
stored. Every change made through the API or the CLI writes one audit row in
the same transaction as the change.

The web page (migration 0005, tables declared here): a user may have a
password (`user_passwords`, hashlib.scrypt with a per-user salt, compared in
constant time); signing in with it opens a session (`web_sessions`: only the
sha256 of the cookie's token, an expiry, ended at logout). `user_for_token`
accepts an API token or a live session token.

People come and go (migration 0006): `disable_user` removes a user at once (every token and
session ends, the password no longer signs in; the row and its name stay for the audit trail); an
API token may expire (`expires_at`) and is revoked one by one (`revoke_token`); its last use is
kept to the minute (`touch_token`). A token sign-in opens a session tied to its token.
"""
from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import hmac
import secrets
from typing import Any

from sqlalchemy import delete, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from controller.errors import Conflict, Invalid, NotFound
from controller.store.db import Database
from controller.store.schema import api_tokens, audit, user_passwords, users, web_sessions

# A user is active until disabled.
ACTIVE = users.c.disabled_at.is_(None)

SESSION_TTL = dt.timedelta(hours=12)
SESSION_PREFIX = "vkss_"          # a web session's token (API tokens carry no prefix)
MIN_PASSWORD = 10
# scrypt cost: N=2**17, r=8, p=1 (128 MiB): OWASP's current figures; N is a setting (auth.scrypt_n)
# passed in by the callers, and every stored hash records its own parameters.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2 ** 17, 8, 1
# Last use is recorded to this resolution (no write per request).
LAST_USED_STEP = dt.timedelta(minutes=1)


def token_hash(token: str) -> str:
    """The sha256 (hex) a token is stored and looked up as."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


async def create_user(conn: AsyncConnection, name: str, role: str, now: dt.datetime,
                      scope: str | None = None) -> dict:
    """Add a user (Conflict when the name exists); the new user."""
    if (await conn.execute(select(users.c.id).where(users.c.name == name))).first():
        raise Conflict(f"user {name!r} exists", field="name")
    uid = (await conn.execute(insert(users).values(name=name, role=role, scope=scope, created_at=now)
                              .returning(users.c.id))).scalar_one()
    return {"id": uid, "name": name, "role": role, "scope": scope, "created_at": now}


async def update_user(conn: AsyncConnection, user_id: int, **values: Any) -> dict:
    """Set columns of a user (role, scope); the user as it is now."""
    await conn.execute(update(users).where(users.c.id == user_id).values(**values))
    return dict((await conn.execute(select(users).where(users.c.id == user_id))).one()._mapping)


async def get_user(conn: AsyncConnection, name: str, *, active: bool = False) -> dict:
    """The user named `name` (NotFound otherwise; with `active`, Conflict when disabled)."""
    row = (await conn.execute(select(users).where(users.c.name == name))).first()
    if row is None:
        raise NotFound(f"no user {name!r}")
    if active and row.disabled_at is not None:
        raise Conflict(f"user {name!r} is disabled", field="name")
    return dict(row._mapping)


async def disable_user(conn: AsyncConnection, name: str, now: dt.datetime) -> tuple[dict, bool]:
    """Disable a user at once: every API token is revoked and every web session ends; the row (and
    its name) stays. The user, and whether this call disabled them (False: already disabled)."""
    u = await get_user(conn, name)
    res = await conn.execute(update(users).where(users.c.id == u["id"], ACTIVE).values(disabled_at=now))
    await revoke_tokens(conn, u["id"], now)
    return {**u, "disabled_at": u["disabled_at"] or now}, bool(res.rowcount)


async def list_users(conn: AsyncConnection) -> list[dict]:
    """Every user, oldest first."""
    return [dict(r._mapping) for r in await conn.execute(select(users).order_by(users.c.id))]


async def issue_token(conn: AsyncConnection, user_id: int, now: dt.datetime,
                      expires_at: dt.datetime | None = None) -> str:
    """A new API token for the user, expiring at `expires_at` (None: never); only its hash is
    stored, the token is shown once."""
    token = secrets.token_urlsafe(32)
    await conn.execute(insert(api_tokens).values(user_id=user_id, token_sha256=token_hash(token), created_at=now,
                                                 expires_at=expires_at))
    return token


def _live_token(now: dt.datetime):
    return (api_tokens.c.revoked_at.is_(None)) & (api_tokens.c.expires_at.is_(None) | (api_tokens.c.expires_at > now))


async def token_user(conn: AsyncConnection, token: str, now: dt.datetime | None = None) -> tuple[dict, dict] | None:
    """(the user, the token: id, expires_at, last_used_at) of a live API token of an active user."""
    now = now or dt.datetime.now(dt.UTC)
    q = (select(users, api_tokens.c.id.label("token_id"), api_tokens.c.expires_at.label("token_expires_at"),
                api_tokens.c.last_used_at)
         .join(api_tokens, api_tokens.c.user_id == users.c.id)
         .where(api_tokens.c.token_sha256 == token_hash(token), _live_token(now), ACTIVE))
    row = (await conn.execute(q)).first()
    if row is None:
        return None
    m = dict(row._mapping)
    tok = {"id": m.pop("token_id"), "expires_at": m.pop("token_expires_at"), "last_used_at": m.pop("last_used_at")}
    return m, tok


async def user_for_token(conn: AsyncConnection, token: str, now: dt.datetime | None = None) -> dict | None:
    """The active user of a live API token (not revoked, not expired), or of a web session token
    that has not ended or expired."""
    now = now or dt.datetime.now(dt.UTC)
    if token.startswith(SESSION_PREFIX):
        q = (select(users).join(web_sessions, web_sessions.c.user_id == users.c.id)
             .where(web_sessions.c.token_sha256 == token_hash(token), web_sessions.c.ended_at.is_(None),
                    web_sessions.c.expires_at > now, ACTIVE))
        row = (await conn.execute(q)).first()
        return dict(row._mapping) if row else None
    found = await token_user(conn, token, now)
    return found[0] if found else None


async def authenticate(conn: AsyncConnection, token: str, now: dt.datetime) -> tuple[dict, bool] | None:
    """(the user, whether the API token's last use is to be recorded: older than LAST_USED_STEP) of a
    live API token or session token (`user_for_token`), else None."""
    if token.startswith(SESSION_PREFIX):
        user = await user_for_token(conn, token, now)
        return (user, False) if user else None
    found = await token_user(conn, token, now)
    if found is None:
        return None
    last = found[1]["last_used_at"]
    return found[0], last is None or now - last >= LAST_USED_STEP


async def touch_token(conn: AsyncConnection, token: str, now: dt.datetime) -> None:
    """Record an API token's use (to the minute)."""
    await conn.execute(update(api_tokens).where(api_tokens.c.token_sha256 == token_hash(token))
                       .values(last_used_at=now))


async def list_tokens(conn: AsyncConnection, user_id: int) -> list[dict]:
    """The user's API tokens (id, created, expires, last used, revoked), oldest first; never the token."""
    q = (select(api_tokens.c.id, api_tokens.c.created_at, api_tokens.c.expires_at, api_tokens.c.last_used_at,
                api_tokens.c.revoked_at).where(api_tokens.c.user_id == user_id).order_by(api_tokens.c.id))
    return [dict(r._mapping) for r in await conn.execute(q)]


async def revoke_token(conn: AsyncConnection, user_id: int, token_id: int, now: dt.datetime) -> bool:
    """Revoke one of the user's API tokens and end the sessions signed in with it (NotFound when the
    user has no such token); whether it was live until now."""
    row = (await conn.execute(select(api_tokens.c.revoked_at).where(api_tokens.c.id == token_id,
                                                                    api_tokens.c.user_id == user_id))).first()
    if row is None:
        raise NotFound(f"no token {token_id}")
    await conn.execute(update(web_sessions).where(web_sessions.c.api_token_id == token_id,
                                                  web_sessions.c.ended_at.is_(None)).values(ended_at=now))
    if row.revoked_at is not None:
        return False
    await conn.execute(update(api_tokens).where(api_tokens.c.id == token_id).values(revoked_at=now))
    return True


# --- passwords and web sessions (migration 0005) ----------------------------------------------

def _b64(b: bytes) -> str:
    return base64.b64encode(b).decode("ascii")


def _maxmem(n: int, r: int, p: int) -> int:
    return 128 * r * (n + p + 2) + 2 ** 20


def hash_password(password: str, n: int = SCRYPT_N) -> str:
    """scrypt$N$r$p$salt$hash; the work happens here (call it from a thread)."""
    salt = secrets.token_bytes(16)
    h = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=SCRYPT_R, p=SCRYPT_P, dklen=32,
                       maxmem=_maxmem(n, SCRYPT_R, SCRYPT_P))
    return f"scrypt${n}${SCRYPT_R}${SCRYPT_P}${_b64(salt)}${_b64(h)}"


def verify_password(password: str, stored: str) -> bool:
    """Whether `password` matches a stored scrypt hash (constant-time; call it from a thread)."""
    try:
        scheme, n, r, p, salt, want = stored.split("$")
        if scheme != "scrypt":
            return False
        got = hashlib.scrypt(password.encode("utf-8"), salt=base64.b64decode(salt), n=int(n), r=int(r),
                             p=int(p), dklen=len(base64.b64decode(want)), maxmem=_maxmem(int(n), int(r), int(p)))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, base64.b64decode(want))


def _dummy(n: int) -> str:
    """A stored hash to compare against when the user does not exist (or is disabled), so that an
    unknown name costs as much time as a wrong password."""
    return f"scrypt${n}${SCRYPT_R}${SCRYPT_P}${_b64(bytes(16))}${_b64(bytes(32))}"


async def password_hash(password: str, n: int = SCRYPT_N) -> str:
    """The stored form of a new password (Invalid when too short), hashed in a thread: call it before
    opening the transaction that stores it (`set_password`), so no write waits for scrypt."""
    if len(password) < MIN_PASSWORD:
        raise Invalid(f"password: at least {MIN_PASSWORD} characters", field="password")
    return await asyncio.to_thread(hash_password, password, n)


async def set_password(conn: AsyncConnection, name: str, hashed: str, now: dt.datetime) -> dict:
    """Set (or replace) a user's password by its `password_hash`; their open web sessions end."""
    if not hashed.startswith("scrypt$") or hashed.count("$") != 5:
        raise ValueError("set_password takes the password's hash (password_hash), not the password")
    u = await get_user(conn, name)
    await conn.execute(delete(user_passwords).where(user_passwords.c.user_id == u["id"]))
    await conn.execute(insert(user_passwords).values(user_id=u["id"], scrypt=hashed, updated_at=now))
    await conn.execute(update(web_sessions).where(web_sessions.c.user_id == u["id"], web_sessions.c.ended_at.is_(None))
                       .values(ended_at=now))
    return u


async def check_password(db: Database, name: str, password: str, n: int = SCRYPT_N) -> dict | None:
    """The active user when `password` is theirs, else None (same cost either way: an unknown or
    disabled name is compared against a dummy hash of cost `n`). The stored hash is read on a read
    connection of its own and compared with none open (scrypt takes a good part of a second)."""
    async with db.read() as conn:
        row = (await conn.execute(select(users, user_passwords.c.scrypt)
                                  .join(user_passwords, user_passwords.c.user_id == users.c.id)
                                  .where(users.c.name == name, ACTIVE))).first()
    stored = row._mapping["scrypt"] if row is not None else _dummy(n)
    good = await asyncio.to_thread(verify_password, password, stored)
    if row is None or not good:
        return None
    return {k: v for k, v in row._mapping.items() if k != "scrypt"}


async def issue_session(conn: AsyncConnection, user_id: int, now: dt.datetime,
                        ttl: dt.timedelta = SESSION_TTL, api_token: dict | None = None) -> str:
    """Open a web session for the user; its token (the cookie's value). A token sign-in's session
    (`api_token`: id, expires_at) ends with that token: at its revocation, at its expiry at the latest."""
    token = SESSION_PREFIX + secrets.token_urlsafe(32)
    expires = now + ttl
    if api_token is not None and api_token["expires_at"] is not None:
        expires = min(expires, api_token["expires_at"])
    await conn.execute(insert(web_sessions).values(user_id=user_id, token_sha256=token_hash(token), created_at=now,
                                                   expires_at=expires,
                                                   api_token_id=api_token["id"] if api_token else None))
    # Old sessions are pruned as new ones open.
    await conn.execute(delete(web_sessions).where(or_(web_sessions.c.expires_at < now - ttl,
                                                      web_sessions.c.ended_at < now - ttl)))
    return token


async def end_session(conn: AsyncConnection, token: str, now: dt.datetime) -> dict | None:
    """End the web session of `token`; the user, or None when it is not a live session."""
    if not token.startswith(SESSION_PREFIX):
        return None
    digest = token_hash(token)
    row = (await conn.execute(select(users).join(web_sessions, web_sessions.c.user_id == users.c.id)
                              .where(web_sessions.c.token_sha256 == digest,
                                     web_sessions.c.ended_at.is_(None)))).first()
    if row is None:
        return None
    await conn.execute(update(web_sessions).where(web_sessions.c.token_sha256 == digest).values(ended_at=now))
    return dict(row._mapping)


async def revoke_tokens(conn: AsyncConnection, user_id: int, now: dt.datetime) -> int:
    """Revoke the user's API tokens (the count) and end their web sessions."""
    res = await conn.execute(update(api_tokens).where(api_tokens.c.user_id == user_id,
                                                      api_tokens.c.revoked_at.is_(None)).values(revoked_at=now))
    await conn.execute(update(web_sessions).where(web_sessions.c.user_id == user_id, web_sessions.c.ended_at.is_(None))
                       .values(ended_at=now))
    return res.rowcount


async def record(conn: AsyncConnection, who: str, action: str, target: str, at: dt.datetime,
                 detail: dict[str, Any] | None = None) -> None:
    """One audit row: who did what to which target, when."""
    await conn.execute(insert(audit).values(who=who, action=action, target=target, at=at, detail=detail or {}))


async def list_audit(conn: AsyncConnection, *, limit: int = 200, target: str | None = None) -> list[dict]:
    """The audit trail, newest first (of one target when given)."""
    q = select(audit).order_by(audit.c.id.desc()).limit(limit)
    if target:
        q = q.where(audit.c.target == target)
    return [dict(r._mapping) for r in await conn.execute(q)]
