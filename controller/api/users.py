"""People's REST resources (rules 5, 6): users and their tokens, and the audit trail."""
from __future__ import annotations

from aiohttp import web

from controller import auth
from controller import models as m
from controller.api.audit import Audit, audit, transaction
from controller.api.requests import API, body, now, ok, q_int, row
from controller.api.routing import Query, Route, items
from controller.keys import DB_KEY
from controller.store import users as users_repo


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


async def revoke_user_tokens(request: web.Request) -> web.Response:
    """DELETE /users/{name}/tokens."""
    t = now(request)
    async with transaction(request, t) as conn:
        u = await users_repo.get_user(conn, request.match_info["name"])
        n = await users_repo.revoke_tokens(conn, u["id"], t)
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
    Route("DELETE", f"{API}/users/{{name}}/tokens", revoke_user_tokens, auth.USERS,
          "Revoke all of a user's tokens", response=m.RevokedOut, audit=Audit("user.revoke_tokens", "user:{name}")),
    Route("GET", f"{API}/audit", list_audit, auth.AUDIT, "The audit trail, newest first",
          response=items(m.AuditOut), query=[Query("target", {"type": "string"}), Query("limit", {"type": "integer"})]),
]
