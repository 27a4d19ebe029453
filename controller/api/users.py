"""People's REST resources (rules 5, 6): users and their tokens, and the audit trail.

A user is removed by disabling (`DELETE /users/{name}`): every token and page session ends at once
and password sign-in is refused, while the name stays in the audit trail. Tokens are listed (never
the token itself) and revoked one by one (`DELETE /users/{name}/tokens/{id}`) or all at once.
"""
from __future__ import annotations

from aiohttp import web
from pydantic import BaseModel

from contract.vocab import Role
from controller import access, auth
from controller import models as m
from controller.api.audit import Audit, audit, transaction
from controller.api.requests import API, body, now, ok, path_int, q_int, row
from controller.api.routing import Query, Route, items
from controller.errors import Conflict, Invalid
from controller.keys import DB_KEY
from controller.store import users as users_repo


class TokenOut(BaseModel):
    """One of a user's API tokens: when made, when it expires, when last used (never the token)."""
    id: int
    created_at: str
    expires_at: str | None
    last_used_at: str | None
    revoked_at: str | None


async def _with_scope(conn, found: list[dict]) -> list[dict]:
    scopes = await access.given(conn, [u["id"] for u in found])
    return [{**row(u), "institutions": scopes[u["id"]][0], "regions": scopes[u["id"]][1]} for u in found]


async def _not_the_last_admin(conn, u: dict) -> None:
    """Conflict when `u` is the last active admin: without one no one could manage users or the
    registry from the API (only the command line on the server could)."""
    admins = [x for x in await users_repo.list_users(conn) if x["role"] == Role.ADMIN and x["disabled_at"] is None]
    if [x["id"] for x in admins] == [u["id"]]:
        raise Conflict(f"{u['name']!r} is the last active admin: make another admin first", field="name")


async def list_users(request: web.Request) -> web.Response:
    """GET /users: every user with role, level and scope."""
    async with request.app[DB_KEY].read() as conn:
        return ok({"items": await _with_scope(conn, await users_repo.list_users(conn))})


async def create_user(request: web.Request) -> web.Response:
    """POST /users: the response shows the new token once."""
    data = await body(request, m.UserIn)
    access.check_combination(data.role, data.scope, data.institutions, data.regions)
    t = now(request)
    async with transaction(request, t) as conn:
        u = await users_repo.create_user(conn, data.name, data.role, t, data.scope)
        await access.set_scope(conn, u["id"], data.institutions, data.regions)
        token = await users_repo.issue_token(conn, u["id"], t)
        audit(request).note({"role": data.role, "scope": data.scope, "institutions": sorted(set(data.institutions)),
                             "regions": sorted(set(data.regions))}, name=data.name)
        out = (await _with_scope(conn, [u]))[0]
    return ok({**out, "token": token}, 201)


async def patch_user(request: web.Request) -> web.Response:
    """PATCH /users/{name}: change role, coordinator level, institutions or regions; effective at the
    user's next request (the scope is read with every request)."""
    data = await body(request, m.UserPatch)
    t = now(request)
    async with transaction(request, t) as conn:
        u = await users_repo.get_user(conn, request.match_info["name"], active=True)
        before = (await _with_scope(conn, [u]))[0]
        role = data.role if data.role is not None else u["role"]
        # A coordinator's level goes with the role: leaving the role clears it unless given.
        level = data.scope if "scope" in data.model_fields_set else (u["scope"] if role == Role.COORDINATOR else None)
        inst = data.institutions if data.institutions is not None else before["institutions"]
        regs = data.regions if data.regions is not None else before["regions"]
        access.check_combination(role, level, inst, regs)
        if (before["institutions"] or before["regions"]) and not (inst or regs) \
                and not (data.institutions == [] and data.regions == []):
            # Emptying the one list left would widen the user to the whole country: say it outright.
            raise Invalid("this would make the user national: send both institutions and regions as [] to "
                          "mean it", field="institutions" if data.institutions is not None else "regions")
        if u["role"] == Role.ADMIN and role != Role.ADMIN:
            await _not_the_last_admin(conn, u)
        u = await users_repo.update_user(conn, u["id"], role=role, scope=level)
        await access.set_scope(conn, u["id"], inst, regs)
        after = (await _with_scope(conn, [u]))[0]
        changed = {k: after[k] for k in ("role", "scope", "institutions", "regions") if after[k] != before[k]}
        if changed:
            audit(request).note(changed)
        else:
            audit(request).skip()
    return ok(after)


async def remove_user(request: web.Request) -> web.Response:
    """DELETE /users/{name}: disable the user at once (a second time changes nothing)."""
    t = now(request)
    async with transaction(request, t) as conn:
        found = await users_repo.get_user(conn, request.match_info["name"])
        if found["role"] == Role.ADMIN and found["disabled_at"] is None:
            await _not_the_last_admin(conn, found)
        u, changed = await users_repo.disable_user(conn, request.match_info["name"], t)
        if not changed:
            audit(request).skip()
        out = (await _with_scope(conn, [u]))[0]
    return ok(out)


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
    Route("PATCH", f"{API}/users/{{name}}", patch_user, auth.USERS,
          "Change a user's role, coordinator level (scope), institutions or regions (both empty: national)",
          body=m.UserPatch, response=m.UserOut, extra_responses={409: "the user is disabled"},
          audit=Audit("user.change", "user:{name}")),
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
