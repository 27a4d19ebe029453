"""People's REST resources (rules 5, 6): users and their tokens, and the audit trail.

A user is removed by disabling (`DELETE /users/{name}`): every token and page session ends at once
and password sign-in is refused, while the name stays in the audit trail. Tokens are listed (never
the token itself) and revoked one by one (`DELETE /users/{name}/tokens/{id}`) or all at once.
"""
from __future__ import annotations

from aiohttp import web
from pydantic import BaseModel

from controller import auth
from controller import models as m
from controller.api.audit import Audit, audit, transaction
from controller.api.requests import API, body, now, ok, path_int, q_int, row
from controller.api.routing import Query, Route, items
from controller.keys import DB_KEY
from controller.store import users as users_repo


class TokenOut(BaseModel):
    """One of a user's API tokens: when made, when it expires, when last used (never the token)."""
    id: int
    created_at: str
    expires_at: str | None
    last_used_at: str | None
    revoked_at: str | None


async def list_users(request: web.Request) -> web.Response:
    """GET /users."""
    async with request.app[DB_KEY].read() as conn:
        return ok({"items": [row(u) for u in await users_repo.list_users(conn)]})


async def create_user(request: web.Request) -> web.Response:
    """POST /users: the response shows the new token once."""
    data = await body(request, m.UserIn)
    t = now(request)
    async with transaction(request, t) as conn:
        u = await users_repo.create_user(conn, data.name, data.role, t, data.scope)
        token = await users_repo.issue_token(conn, u["id"], t)
        audit(request).note({"role": data.role, "scope": data.scope}, name=data.name)
    return ok({**row(u), "token": token}, 201)


async def remove_user(request: web.Request) -> web.Response:
    """DELETE /users/{name}: disable the user at once (a second time changes nothing)."""
    t = now(request)
    async with transaction(request, t) as conn:
        u, changed = await users_repo.disable_user(conn, request.match_info["name"], t)
        if not changed:
            audit(request).skip()
    return ok(row(u))


async def revoke_user_tokens(request: web.Request) -> web.Response:
    """DELETE /users/{name}/tokens."""
    t = now(request)
    async with transaction(request, t) as conn:
        u = await users_repo.get_user(conn, request.match_info["name"])
        n = await users_repo.revoke_tokens(conn, u["id"], t)
        audit(request).note({"revoked": n})
    return ok({"revoked": n})


async def list_user_tokens(request: web.Request) -> web.Response:
    """GET /users/{name}/tokens: id, created, expires, last used, revoked - never the token."""
    async with request.app[DB_KEY].read() as conn:
        u = await users_repo.get_user(conn, request.match_info["name"])
        return ok({"items": [row(tok) for tok in await users_repo.list_tokens(conn, u["id"])]})


async def revoke_user_token(request: web.Request) -> web.Response:
    """DELETE /users/{name}/tokens/{id}: revoke one token (and the page sessions signed in with it)."""
    tid = path_int(request, "id")
    t = now(request)
    async with transaction(request, t) as conn:
        u = await users_repo.get_user(conn, request.match_info["name"])
        n = int(await users_repo.revoke_token(conn, u["id"], tid, t))
        audit(request).note({"revoked": n})
    return ok({"revoked": n})


async def list_audit(request: web.Request) -> web.Response:
    """GET /audit: the audit trail, newest first."""
    async with request.app[DB_KEY].read() as conn:
        rows = await users_repo.list_audit(conn, limit=q_int(request, "limit", 200, 1, 10000),
                                           target=request.query.get("target") or None)
    return ok({"items": [row(r) for r in rows]})


ROUTES: list[Route] = [
    Route("GET", f"{API}/users", list_users, auth.USERS, "List users", response=items(m.UserOut)),
    Route("POST", f"{API}/users", create_user, auth.USERS, "Add a user; the response shows the token once",
          body=m.UserIn, response=m.UserOut, status=201, audit=Audit("user.create", "user:{name}")),
    Route("DELETE", f"{API}/users/{{name}}", remove_user, auth.USERS,
          "Remove (disable) a user at once: every token and page session ends, password sign-in is refused; "
          "the name stays in the audit trail", response=m.UserOut, audit=Audit("user.remove", "user:{name}")),
    Route("DELETE", f"{API}/users/{{name}}/tokens", revoke_user_tokens, auth.USERS,
          "Revoke all of a user's tokens", response=m.RevokedOut, audit=Audit("user.revoke_tokens", "user:{name}")),
    Route("GET", f"{API}/users/{{name}}/tokens", list_user_tokens, auth.USERS,
          "A user's API tokens: id, created, expires, last used (never the token)", response=items(TokenOut)),
    Route("DELETE", f"{API}/users/{{name}}/tokens/{{id}}", revoke_user_token, auth.USERS,
          "Revoke one of a user's API tokens (and the page sessions signed in with it)", response=m.RevokedOut,
          audit=Audit("user.revoke_token", "user:{name}")),
    Route("GET", f"{API}/audit", list_audit, auth.AUDIT, "The audit trail, newest first",
          response=items(m.AuditOut), query=[Query("target", {"type": "string"}), Query("limit", {"type": "integer"})]),
]
