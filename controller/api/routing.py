"""The route table and what every request goes through: `Route` declares a path with its
permission and audit action beside it; `install` adds the routes to the app with the error
middleware (every error is JSON, never a traceback) and the auth middleware (token or session
cookie, role, and the route's declared audit entry: controller.api.audit).

One route table feeds both the aiohttp router and the OpenAPI document (controller.openapi), so the
document lists exactly what is served.
"""
from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from pydantic import BaseModel

from controller import access, auth
from controller.api.audit import Audit, begin
from controller.api.requests import error_response, now
from controller.errors import ControllerError, Forbidden, Invalid, Unauthorized
from controller.keys import DB_KEY, USER_KEY
from controller.store import users as users_repo

log = logging.getLogger("controller.api")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class Query:
    """A query parameter of a route, for the OpenAPI document."""

    name: str
    schema: dict
    description: str = ""


@dataclass
class Route:
    """One API operation: method, path, handler, the permission it needs (None: no token) and the
    audit row it writes (None: it changes nothing, or writes no audit), with what the document says."""

    method: str
    path: str
    handler: Handler
    permission: str | None
    summary: str
    body: type[BaseModel] | None = None
    response: Any = None            # a model, ("items", model), or None (no JSON model)
    status: int = 200
    query: list[Query] = field(default_factory=list)
    content_type: str = "application/json"
    extra_responses: dict[int, str] = field(default_factory=dict)
    audit: Audit | None = None
    # What the path's {id} names (controller.access.KINDS): the route answers 404 unless it is in the
    # user's scope, checked before the handler runs. None: the handler filters (lists, creations) or
    # the route reaches nothing scoped (the registry, a national admin's routes).
    scoped: str | None = None
    # A body that is a file, not a JSON object: its content types (the OpenAPI document's requestBody).
    raw_body: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.scoped is not None and (self.scoped not in access.KINDS or "{id}" not in self.path):
            raise ValueError(f"{self.method} {self.path}: scoped={self.scoped!r} needs one of {access.KINDS} "
                             "and an {id} in the path")


def items(model: type[BaseModel]) -> tuple[str, type[BaseModel]]:
    """The response shape {"items": [model, ...]}."""
    return ("items", model)


# Every API route of this app, for the OpenAPI document.
ROUTES_KEY: web.AppKey[list[Route]] = web.AppKey("api_routes")


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every error is JSON {"error", "message"[, "field"]}; never a traceback."""
    try:
        if "\x00" in request.path or any("\x00" in k or "\x00" in v for k, v in request.query.items()):
            # PostgreSQL cannot hold NUL in text: refuse it here rather than fail in the database.
            raise Invalid("NUL characters are not allowed in the path or query", field="path")
        return await handler(request)
    except ControllerError as exc:
        return error_response(exc.status, exc.body(), exc.headers())
    except web.HTTPRequestEntityTooLarge as exc:
        return error_response(413, {"error": "too_large", "message": f"the body is too large ({exc.text})"})
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = {404: "not_found", 405: "method_not_allowed", 413: "too_large"}.get(exc.status, "http_error")
        return error_response(exc.status, {"error": code, "message": exc.reason}, None)
    except Exception as exc:
        if database_unavailable(exc):    # the transaction rolled back: nothing was written
            log.error("%s %s: database unavailable: %s", request.method, request.path, exc)
            return error_response(503, {"error": "unavailable", "message": "database unavailable; retry later"},
                                  {"Retry-After": "5"})
        log.exception("%s %s failed", request.method, request.path)
        return error_response(500, {"error": "internal", "message": "internal error (logged)"})


def database_unavailable(exc: BaseException) -> bool:
    """The database cannot be reached or dropped the connection (not a bug in the request):
    connection refused, closed, not accepting connections yet, pool timeout (issue 7)."""
    from sqlalchemy import exc as sa_exc
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, (ConnectionError, TimeoutError, sa_exc.TimeoutError)):
            return True
        if isinstance(e, OSError) and e.errno is not None:
            return True
        if isinstance(e, sa_exc.DBAPIError) and (e.connection_invalidated or isinstance(e, sa_exc.OperationalError)):
            return True
        if type(e).__module__.startswith("asyncpg") and type(e).__name__ in (
                "ConnectionDoesNotExistError", "CannotConnectNowError", "ConnectionFailureError",
                "InterfaceError", "TooManyConnectionsError", "AdminShutdownError", "CrashShutdownError"):
            return True
        e = e.__cause__ or e.__context__
    return False


async def _authenticate(request: web.Request, route: Route) -> None:
    token = auth.bearer(request.headers.get("Authorization"))
    if token is None:
        # The web page's session cookie (controller.web); a change also needs the page's
        # header, which another site's page cannot send (with SameSite=Strict: no CSRF).
        token = request.cookies.get(auth.SESSION_COOKIE) or None
        if token is not None and request.method not in ("GET", "HEAD", "OPTIONS") \
                and request.headers.get("X-Requested-With") != auth.PAGE_HEADER:
            raise Forbidden(f"send X-Requested-With: {auth.PAGE_HEADER} with the session cookie", code="csrf")
    if token is None:
        raise Unauthorized("send Authorization: Bearer <token>")
    async with request.app[DB_KEY].read() as conn:
        found = await users_repo.authenticate(conn, token, now(request))
        if found is None:
            raise Unauthorized("unknown or revoked token")
        user, stale = found
        # Where the user acts, resolved against the registry as it is now (controller.access).
        request[access.SCOPE_KEY] = await access.load(conn, user["id"])
    if stale:                   # an API token's last use, to the minute (users.LAST_USED_STEP)
        async with request.app[DB_KEY].transaction() as conn:
            await users_repo.touch_token(conn, token, now(request))
    if route.permission is not None and not auth.allowed(user["role"], route.permission):
        raise Forbidden(f"role {user['role']!r} may not {route.permission}")
    request[USER_KEY] = user
    if route.scoped is not None and not request[access.SCOPE_KEY].national:
        async with request.app[DB_KEY].read() as conn:
            await access.require(conn, request[access.SCOPE_KEY], route.scoped, request.match_info["id"])


def auth_middleware(routes_by_resource: dict[tuple[str, str], Route]) -> Callable:
    """The middleware that lets a request through to its route: signed in with a role that has the
    route's permission, with the route's audit entry begun (and checked to be written or skipped)."""
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        resource = request.match_info.route.resource
        canonical = resource.canonical if resource is not None else None
        route = routes_by_resource.get((request.method, canonical)) if canonical is not None else None
        if route is None:
            return await handler(request)
        if route.permission is not None:
            await _authenticate(request, route)
        entry = begin(request, route.audit)
        resp = await handler(request)
        if entry is not None and not entry.done and 200 <= resp.status < 300:
            raise RuntimeError(f"{route.method} {route.path} declares audit {entry.action!r} but wrote no row: "
                               "make its changes in controller.api.transaction(request), or skip()")
        return resp
    return middleware


def install(app: web.Application, routes: list[Route]) -> None:
    """Add `routes` to the app's router (each (method, path) once) with the error and auth middlewares."""
    by_resource: dict[tuple[str, str], Route] = {}
    for r in routes:
        if (r.method, r.path) in by_resource:
            raise ValueError(f"route {r.method} {r.path} is declared twice")
        by_resource[(r.method, r.path)] = r
    app[ROUTES_KEY] = list(routes)
    for r in routes:
        app.router.add_route(r.method, r.path, r.handler)
    app.middlewares.append(errors_middleware)
    app.middlewares.append(auth_middleware(by_resource))
