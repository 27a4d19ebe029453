"""The REST API under /api/v1, one module per resource.

- `routing`: `Route` (path, permission, audit action), `Query`, the error and auth middlewares,
  `install`; `audit`: declared audit rows written in the handler's transaction (how to declare one
  is in its docstring); `requests`: body, path and query parsing, JSON answers.
- Resources: `registry` (institutions, rooms, terminals), `hearings`, `suspensions`, `users`
  (users, tokens, the audit trail), `exports` (the operability export, rule 3), `escalations`
  (escalations, contacts, acts), `tests` (test sessions on demand), `history` (a terminal's and a
  pair's checks per day), `modes` (each party's way of taking part, rules 21, 23), `agreements` (the
  coordinator's list, rules 11, 12), `system` (health, the OpenAPI
  document, metrics, vocabularies).

`ROUTES` is every route of this package; `setup_routes(app, extra=...)` serves them with the routes
of other modules (the web page's, live monitoring's) and lists them all in the OpenAPI document.
Each request that changes something runs in one transaction together with its audit row and
events: on any error nothing is written.
"""
from __future__ import annotations

from aiohttp import web

from controller.api import (
    agreements,
    escalations,
    exports,
    hearing_import,
    hearings,
    history,
    modes,
    registry,
    suspensions,
    system,
    tests,
    users,
)
from controller.api.audit import AUDIT_KEY, Audit, AuditEntry, audit, transaction
from controller.api.requests import (
    API,
    SlowBody,
    body,
    dumps,
    error_response,
    invalid_from,
    now,
    ok,
    path_int,
    q_choice,
    q_int,
    q_time,
    row,
    who,
)
from controller.api.routing import (
    ROUTES_KEY,
    Handler,
    Query,
    Route,
    auth_middleware,
    database_unavailable,
    errors_middleware,
    install,
    items,
)

__all__ = [
    "API", "AUDIT_KEY", "Audit", "AuditEntry", "Handler", "Query", "ROUTES", "ROUTES_KEY", "Route", "SlowBody",
    "audit", "auth_middleware", "body", "database_unavailable", "dumps", "error_response", "errors_middleware",
    "install", "invalid_from", "items", "now", "ok", "path_int", "q_choice", "q_int", "q_time", "row",
    "setup_routes", "transaction", "view", "who",
]

view = hearings.view

ROUTES: list[Route] = [*system.ROUTES, *registry.ROUTES, *hearings.ROUTES, *hearing_import.ROUTES, *exports.ROUTES,
                       *suspensions.ROUTES, *users.ROUTES, *escalations.ROUTES, *tests.ROUTES, *history.ROUTES,
                       *modes.ROUTES, *agreements.ROUTES]


def setup_routes(app: web.Application, extra: list[Route] | tuple[Route, ...] = ()) -> None:
    """Serve `ROUTES` and `extra` (each (method, path) once) with the error and auth middlewares."""
    install(app, [*ROUTES, *extra])
