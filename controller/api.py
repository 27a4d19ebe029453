"""REST API under /api/v1: routes, handlers, the error and auth middlewares.

One route table (`ROUTES`) feeds both the aiohttp router and the OpenAPI
document (controller.openapi), so the document lists exactly what is served.
Each request that changes something runs in one transaction, together with
its audit row and events: on any error nothing is written.
"""
from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io
import json
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ValidationError
from sqlalchemy import text

from controller import __version__, auth, openapi
from controller import hearings as ops
from controller import metrics as core_metrics
from controller import models as m
from controller.errors import Conflict, ControllerError, Forbidden, Invalid, NotFound, Unauthorized
from controller.keys import CLOCK_KEY, DB_KEY, GATEWAY_KEY, RESULTS_KEY, SCHEDULER_KEY, SETTINGS_KEY, USER_KEY
from controller.store import agents as agents_repo
from controller.store import checks as checks_repo
from controller.store import events as events_repo
from controller.store import hearings as hearings_repo
from controller.store import registry
from controller.store import suspensions as susp_repo
from controller.store import users as users_repo
from controller.store.hearings import iso

log = logging.getLogger(__name__)

API = "/api/v1"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class Query:
    name: str
    schema: dict
    description: str = ""


@dataclass
class Route:
    method: str
    path: str
    handler: Handler
    permission: str | None          # None: no token needed
    summary: str
    body: type[BaseModel] | None = None
    response: Any = None            # a model, list[model], or None (no body)
    status: int = 200
    query: list[Query] = field(default_factory=list)
    content_type: str = "application/json"
    extra_responses: dict[int, str] = field(default_factory=dict)


# --- helpers ----------------------------------------------------------------------------------

def _default(o):
    if isinstance(o, dt.datetime):
        return iso(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def dumps(data: Any) -> str:
    return json.dumps(data, default=_default, ensure_ascii=False)


def ok(data: Any, status: int = 200) -> web.Response:
    return web.Response(text=dumps(data), status=status, content_type="application/json")


def error_response(status: int, body: dict, headers: dict | None = None) -> web.Response:
    return web.Response(text=dumps(body), status=status, content_type="application/json", headers=headers)


_FIELD_IN_MSG = re.compile(r"^(?:Value error, )?([A-Za-z_][\w.]*): ")


def invalid_from(exc: ValidationError, prefix: str = "") -> Invalid:
    e = exc.errors()[0]
    loc = ".".join(str(p) for p in e["loc"])
    msg = e["msg"]
    hit = _FIELD_IN_MSG.match(msg)
    if not loc and hit:
        loc, msg = hit.group(1), msg[hit.end():]
    elif msg.startswith("Value error, "):
        msg = msg[len("Value error, "):]
    where = ".".join(p for p in (prefix, loc) if p) or "body"
    return Invalid(f"{where}: {msg}", field=where)


def _unstorable(data: Any, path: str = "") -> tuple[str, str] | None:
    """(dotted path, problem) of the first value in parsed JSON that no database column can hold:
    an integer outside the 32-bit range (PostgreSQL INTEGER: ids, minutes, counts), a string (or key) with a NUL character (PostgreSQL
    refuses those); else None. Both were 500s (issue 7: found by fuzzing)."""
    if isinstance(data, bool):
        return None
    if isinstance(data, int):
        return None if -2**31 <= data < 2**31 else (path or "body", "number out of range")
    if isinstance(data, str):
        return (path or "body", "NUL characters are not allowed") if "\x00" in data else None
    items = data.items() if isinstance(data, dict) else enumerate(data) if isinstance(data, list) else ()
    for k, v in items:
        where = f"{path}.{k}" if path else str(k)
        if isinstance(k, str) and "\x00" in k:
            return where, "NUL characters are not allowed"
        found = _unstorable(v, where)
        if found is not None:
            return found
    return None


class SlowBody(ControllerError):
    """The client did not send the body it announced in time (a slow-body attack holds a handler)."""
    status, code = 408, "timeout"


async def body(request: web.Request, model: type[BaseModel]):
    limit = request.app[SETTINGS_KEY].idle_timeout_s if SETTINGS_KEY in request.app else 75.0
    try:
        async with asyncio.timeout(limit):
            raw = await request.read()      # raises HTTPRequestEntityTooLarge past client_max_size
    except TimeoutError:
        raise SlowBody(f"the body did not arrive within {limit:g} s") from None
    if not raw.strip():
        data: Any = {}
    else:
        try:
            data = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise Invalid("the body is not valid JSON", field="body") from None
    if not isinstance(data, dict):
        raise Invalid("the body must be a JSON object", field="body")
    bad = _unstorable(data)
    if bad is not None:
        raise Invalid(f"{bad[0]}: {bad[1]}", field=bad[0])
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise invalid_from(exc) from None


def path_int(request: web.Request, name: str) -> int:
    raw = request.match_info[name]
    try:
        value = int(raw)
    except ValueError:
        raise NotFound(f"no such {name}: {raw!r}") from None
    if not -2**31 <= value < 2**31:     # beyond the INTEGER ids: no such row (was a 500)
        raise NotFound(f"no such {name}: {raw!r}")
    return value


def q_time(request: web.Request, name: str) -> dt.datetime | None:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return None
    try:
        t = dt.datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise Invalid(f"{name}: expected an ISO-8601 time, got {raw!r}", field=name) from None
    if t.tzinfo is None:
        raise Invalid(f"{name}: must carry a time zone", field=name)
    return t.astimezone(dt.UTC)


def q_int(request: web.Request, name: str, default: int, lo: int, hi: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        v = int(raw)
    except ValueError:
        raise Invalid(f"{name}: expected an integer", field=name) from None
    if not lo <= v <= hi:
        raise Invalid(f"{name}: must be between {lo} and {hi}", field=name)
    return v


def q_choice(request: web.Request, name: str, choices: tuple[str, ...]) -> str | None:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return None
    if raw not in choices:
        raise Invalid(f"{name}: expected one of {', '.join(choices)}", field=name)
    return raw


def now(request: web.Request) -> dt.datetime:
    return request.app[CLOCK_KEY]()


def who(request: web.Request) -> str:
    return request[USER_KEY]["name"]


def _row(d: dict) -> dict:
    return {k: (iso(v) if isinstance(v, dt.datetime) else v) for k, v in d.items()}


# --- middlewares -----------------------------------------------------------------------------

@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every error is JSON {"error", "message"[, "field"]}; never a traceback."""
    try:
        if "\x00" in request.path or any("\x00" in k or "\x00" in v for k, v in request.query.items()):
            # PostgreSQL cannot hold NUL in text: refuse it here rather than fail in the database.
            raise Invalid("NUL characters are not allowed in the path or query", field="path")
        return await handler(request)
    except ControllerError as exc:
        headers = {"WWW-Authenticate": 'Bearer realm="vks"'} if exc.status == 401 else None
        return error_response(exc.status, exc.body(), headers)
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


def auth_middleware(routes_by_resource: dict[tuple[str, str], Route]):
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        resource = request.match_info.route.resource
        canonical = resource.canonical if resource is not None else None
        route = routes_by_resource.get((request.method, canonical))
        if route is None or route.permission is None:
            return await handler(request)
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
            user = await users_repo.user_for_token(conn, token, now(request))
        if user is None:
            raise Unauthorized("unknown or revoked token")
        if not auth.allowed(user["role"], route.permission):
            raise Forbidden(f"role {user['role']!r} may not {route.permission}")
        request[USER_KEY] = user
        return await handler(request)
    return middleware


# --- registry --------------------------------------------------------------------------------

async def list_institutions(request):
    async with request.app[DB_KEY].read() as conn:
        rows = await registry.list_institutions(conn, kind=request.query.get("kind") or None,
                                                region=request.query.get("region") or None)
    return ok({"items": [_row(r) for r in rows]})


async def create_institution(request):
    data = await body(request, m.InstitutionIn)
    t = now(request)
    async with request.app[DB_KEY].transaction() as conn:
        row = await registry.create_institution(conn, data.model_dump(), t)
        await users_repo.record(conn, who(request), "institution.create", f"institution:{data.id}", t, data.model_dump())
    return ok(_row(row), 201)


async def get_institution(request):
    async with request.app[DB_KEY].read() as conn:
        return ok(_row(await registry.get_institution(conn, request.match_info["id"])))


async def patch_institution(request):
    data = await body(request, m.InstitutionPatch)
    values = data.model_dump(exclude_unset=True)
    iid = request.match_info["id"]
    t = now(request)
    async with request.app[DB_KEY].transaction() as conn:
        row = await registry.update_institution(conn, iid, values)
        await users_repo.record(conn, who(request), "institution.update", f"institution:{iid}", t, values)
    return ok(_row(row))


async def delete_institution(request):
    iid = request.match_info["id"]
    t = now(request)
    async with request.app[DB_KEY].transaction() as conn:
        await registry.delete_institution(conn, iid)
        await users_repo.record(conn, who(request), "institution.delete", f"institution:{iid}", t, {})
    return web.Response(status=204)


async def list_rooms(request):
    async with request.app[DB_KEY].read() as conn:
        rows = await registry.list_rooms(conn, institution_id=request.query.get("institution_id") or None)
    return ok({"items": rows})


async def create_room(request):
    data = await body(request, m.RoomIn)
    t = now(request)
    async with request.app[DB_KEY].transaction() as conn:
        try:
            row = await registry.create_room(conn, data.institution_id, data.name)
        except NotFound as exc:
            raise Invalid(exc.message, field="institution_id") from None
        await users_repo.record(conn, who(request), "room.create", f"room:{row['id']}", t, data.model_dump())
    return ok(row, 201)


async def get_room(request):
    async with request.app[DB_KEY].read() as conn:
        return ok(await registry.get_room(conn, path_int(request, "id")))


async def patch_room(request):
    data = await body(request, m.RoomPatch)
    rid = path_int(request, "id")
    t = now(request)
    async with request.app[DB_KEY].transaction() as conn:
        row = await registry.update_room(conn, rid, data.name)
        await users_repo.record(conn, who(request), "room.update", f"room:{rid}", t, data.model_dump())
    return ok(row)


async def delete_room(request):
    rid = path_int(request, "id")
    t = now(request)
    async with request.app[DB_KEY].transaction() as conn:
        await registry.delete_room(conn, rid)
        await users_repo.record(conn, who(request), "room.delete", f"room:{rid}", t, {})
    return web.Response(status=204)


def _online(request) -> set[str]:
    try:
        return request.app[GATEWAY_KEY].online()
    except Exception:
        log.exception("gateway.online() failed")
        return set()


def _health_out(p: dict | None) -> dict | None:
    if p is None:
        return None
    h = p.get("health") if isinstance(p.get("health"), dict) else {}
    status = h.get("status") if h.get("status") in ("ok", "warn", "fail") else None
    problems = [str(x) for x in h.get("problems", []) if isinstance(x, str)] if isinstance(h.get("problems"), list) else []
    return {"status": status, "problems": problems, "checked_at": h.get("checked_at") if isinstance(
        h.get("checked_at"), str) else None, "last_seen": iso(p.get("last_seen")), "agent_version": p.get("agent_version")}


def _terminal_out(row: dict, online: set[str], last: dict[str, dict], presence: dict[str, dict] | None = None) -> dict:
    c = last.get(row["id"])
    last_check = None if c is None else {
        "hearing_id": c["hearing_id"], "kind": c["kind"], "status": c["status"], "verdict": c["verdict"],
        "finished_at": iso(c["finished_at"]), "peer": c["peer"]}
    return {**row, "online": row["id"] in online, "last_check": last_check,
            "health": _health_out((presence or {}).get(row["id"]))}


async def _terminals_out(request, conn, rows: list[dict]) -> list[dict]:
    ids = [r["id"] for r in rows]
    last = await checks_repo.last_finished(conn, ids)
    presence = await agents_repo.presence(conn, ids)
    online = _online(request)
    return [_terminal_out(r, online, last, presence) for r in rows]


async def list_terminals(request):
    room = request.query.get("room_id")
    room_id = q_int(request, "room_id", 0, 0, 2**31) if room else None
    async with request.app[DB_KEY].read() as conn:
        rows = await registry.list_terminals(conn, institution_id=request.query.get("institution_id") or None,
                                             room_id=room_id)
        items = await _terminals_out(request, conn, rows)
    return ok({"items": items})


async def create_terminal(request):
    data = await body(request, m.TerminalIn)
    t = now(request)
    values = data.model_dump()
    async with request.app[DB_KEY].transaction() as conn:
        try:
            inst = await registry.get_institution(conn, data.institution_id)
        except NotFound as exc:
            raise Invalid(exc.message, field="institution_id") from None
        values["role"] = values["role"] or ("courtroom" if inst["kind"] == "court" else "institution")
        row = await registry.create_terminal(conn, values)
        await users_repo.record(conn, who(request), "terminal.create", f"terminal:{data.id}", t, values)
    return ok(_terminal_out(row, _online(request), {}), 201)


async def get_terminal(request):
    async with request.app[DB_KEY].read() as conn:
        row = await registry.get_terminal(conn, request.match_info["id"])
        return ok((await _terminals_out(request, conn, [row]))[0])


async def patch_terminal(request):
    data = await body(request, m.TerminalPatch)
    values = data.model_dump(exclude_unset=True)
    tid = request.match_info["id"]
    t = now(request)
    async with request.app[DB_KEY].transaction() as conn:
        row = await registry.update_terminal(conn, tid, values)
        await users_repo.record(conn, who(request), "terminal.update", f"terminal:{tid}", t, values)
        out = (await _terminals_out(request, conn, [row]))[0]
    return ok(out)


async def delete_terminal(request):
    tid = request.match_info["id"]
    t = now(request)
    async with request.app[DB_KEY].transaction() as conn:
        await registry.delete_terminal(conn, tid)
        await users_repo.record(conn, who(request), "terminal.delete", f"terminal:{tid}", t, {})
    return web.Response(status=204)


# --- hearings --------------------------------------------------------------------------------

async def _view(conn, hid: int, t: dt.datetime) -> dict:
    views = await hearings_repo.views(conn, [hid], t)
    if not views:
        raise NotFound(f"no hearing {hid}")
    return views[0]


async def list_hearings(request):
    t = now(request)
    status = q_choice(request, "status", ("scheduled", "in_progress", "held", "postponed", "cancelled"))
    verdict = q_choice(request, "verdict", ("unknown", "good", "degraded", "unusable", "suspended"))
    async with request.app[DB_KEY].read() as conn:
        ids = await hearings_repo.list_ids(conn, start_from=q_time(request, "from"), start_to=q_time(request, "to"),
                                           status=status, court_id=request.query.get("court_id") or None,
                                           institution_id=request.query.get("institution_id") or None,
                                           limit=q_int(request, "limit", 500, 1, 5000),
                                           offset=q_int(request, "offset", 0, 0, 10**9))
        items = await hearings_repo.views(conn, ids, t)
    if verdict:
        items = [h for h in items if h["verdict"] == verdict]
    return ok({"items": items})


async def create_hearing(request):
    data = await body(request, m.HearingIn)
    t = now(request)
    async with request.app[DB_KEY].transaction() as conn:
        hid = await ops.schedule(conn, request.app[RESULTS_KEY], data, who(request), t)
        view = await _view(conn, hid, t)
    request.app[SCHEDULER_KEY].wake()
    return ok(view, 201)


async def get_hearing(request):
    async with request.app[DB_KEY].read() as conn:
        return ok(await _view(conn, path_int(request, "id"), now(request)))


async def patch_hearing(request):
    data = await body(request, m.HearingPatch)
    hid = path_int(request, "id")
    t = now(request)
    async with request.app[DB_KEY].transaction() as conn:
        stop = await ops.change(conn, request.app[RESULTS_KEY], hid, data, who(request), t)
        view = await _view(conn, hid, t)
    await request.app[RESULTS_KEY].stop_sessions(stop)
    request.app[SCHEDULER_KEY].wake()
    return ok(view)


async def delete_hearing(request):
    hid = path_int(request, "id")
    t = now(request)
    async with request.app[DB_KEY].transaction() as conn:
        stop = await ops.cancel(conn, request.app[RESULTS_KEY], hid, who(request), t)
        view = await _view(conn, hid, t)
    await request.app[RESULTS_KEY].stop_sessions(stop)
    return ok(view)


async def hearing_events(request):
    hid = path_int(request, "id")
    fmt = q_choice(request, "format", ("json", "csv")) or "json"
    async with request.app[DB_KEY].read() as conn:
        await hearings_repo.get_hearing(conn, hid)
        rows = await events_repo.list_for(conn, hid, after_id=q_int(request, "after_id", 0, 0, 2**62))
    if fmt == "json":
        return ok({"items": [_row(r) for r in rows]})
    buf = io.StringIO()       # for the hearing record (rule 21)
    w = csv.writer(buf, lineterminator="\r\n")
    w.writerow(["id", "hearing_id", "at", "kind", "detail"])
    for r in rows:
        w.writerow([r["id"], r["hearing_id"], iso(r["at"]), r["kind"], dumps(r["detail"])])
    return web.Response(text=buf.getvalue(), content_type="text/csv", charset="utf-8",
                        headers={"Content-Disposition": f'attachment; filename="hearing-{hid}-events.csv"'})


async def give_agreement(request):
    data = await body(request, m.AgreementIn)
    hid = path_int(request, "id")
    t = now(request)
    async with request.app[DB_KEY].transaction() as conn:
        await ops.agree(conn, hid, request[USER_KEY], data.note, t)
        view = await _view(conn, hid, t)
    return ok(view)


async def run_check(request):
    data = await body(request, m.RunCheckIn)
    hid = path_int(request, "id")
    t = now(request)
    async with request.app[DB_KEY].transaction() as conn:
        h = await hearings_repo.get_hearing(conn, hid, for_update=True)
        if h["status"] not in hearings_repo.ACTIVE_STATUSES:
            raise Conflict(f"hearing {hid} is {h['status']}")
        ids = await request.app[RESULTS_KEY].run_now(conn, hid, data.kind, t)
        await events_repo.append(conn, hid, "check_requested", t, {"by": who(request), "kind": data.kind,
                                                                   "check_ids": ids})
        await users_repo.record(conn, who(request), "check.run", f"hearing:{hid}", t, {"kind": data.kind})
        view = await _view(conn, hid, t)
    request.app[SCHEDULER_KEY].wake()
    return ok(view, 202)


# --- exports (rule 3) ------------------------------------------------------------------------

EXPORT_COLUMNS = ["id", "case_number", "court_id", "court_name", "court_level", "room", "start_utc", "start_local",
                  "duration_min", "status", "verdict", "suspended", "participants", "test_status",
                  "test_deadline", "test_verdict", "preconnect_status", "preconnect_verdict", "agreement_coordinator",
                  "agreement_state"]


def export_record(h: dict) -> dict:
    tr, pc = h["test_request"] or {}, h["preconnect"] or {}
    return {
        "id": h["id"], "case_number": h["case_number"], "court_id": h["court"]["id"],
        "court_name": h["court"]["name"], "court_level": h["court"]["level"], "room": h["room"]["name"],
        "start_utc": h["start_utc"], "start_local": h["start_local"], "duration_min": h["duration_min"],
        "status": h["status"], "verdict": h["verdict"], "suspended": h["suspended"],
        "participants": ";".join(f"{p['institution_id']}/{p['terminal_id']}" for p in h["participants"]),
        "test_status": tr.get("status"), "test_deadline": tr.get("deadline"), "test_verdict": tr.get("verdict"),
        "preconnect_status": pc.get("status"), "preconnect_verdict": pc.get("verdict"),
        "agreement_coordinator": h["agreement"]["coordinator"], "agreement_state": h["agreement"]["state"],
    }


async def export_hearings(request):
    fmt = q_choice(request, "format", ("json", "csv")) or "json"
    t = now(request)
    async with request.app[DB_KEY].read() as conn:
        ids = await hearings_repo.list_ids(conn, start_from=q_time(request, "from"), start_to=q_time(request, "to"),
                                           court_id=request.query.get("court_id") or None, limit=100_000)
        rows = [export_record(h) for h in await hearings_repo.views(conn, ids, t)]
    if fmt == "json":
        return ok({"schema": "vks.hearings-export/1", "exported_at": iso(t), "hearings": rows})
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=EXPORT_COLUMNS, lineterminator="\r\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if v is None else v) for k, v in r.items()})
    return web.Response(text=buf.getvalue(), content_type="text/csv", charset="utf-8",
                        headers={"Content-Disposition": 'attachment; filename="hearings.csv"'})


# --- suspensions -----------------------------------------------------------------------------

def _susp_out(s: dict, t: dt.datetime, affected: list[int] | None = None) -> dict:
    out = _row(s)
    out["active"] = susp_repo.to_rule(s).in_force(t)
    if affected is not None:
        out["affected_hearings"] = affected
    return out


async def list_suspensions(request):
    t = now(request)
    active = q_choice(request, "active", ("true", "false"))
    async with request.app[DB_KEY].read() as conn:
        rows = await susp_repo.list_all(conn, active_at=t if active == "true" else None)
    return ok({"items": [_susp_out(s, t) for s in rows]})


async def create_suspension(request):
    data = await body(request, m.SuspensionIn)
    t = now(request)
    async with request.app[DB_KEY].transaction() as conn:
        s, affected, stop = await ops.suspend(conn, request.app[RESULTS_KEY], data, who(request), t)
    await request.app[RESULTS_KEY].stop_sessions(stop)
    request.app[SCHEDULER_KEY].wake()
    return ok(_susp_out(s, t, affected), 201)


async def get_suspension(request):
    async with request.app[DB_KEY].read() as conn:
        return ok(_susp_out(await susp_repo.get(conn, path_int(request, "id")), now(request)))


async def delete_suspension(request):
    sid = path_int(request, "id")
    t = now(request)
    async with request.app[DB_KEY].transaction() as conn:
        affected = await ops.lift(conn, request.app[RESULTS_KEY], sid, who(request), t)
        s = await susp_repo.get(conn, sid)
    request.app[SCHEDULER_KEY].wake()
    return ok(_susp_out(s, t, affected))


# --- users, audit ----------------------------------------------------------------------------

async def list_users(request):
    async with request.app[DB_KEY].read() as conn:
        return ok({"items": [_row(u) for u in await users_repo.list_users(conn)]})


async def create_user(request):
    data = await body(request, m.UserIn)
    t = now(request)
    async with request.app[DB_KEY].transaction() as conn:
        u = await users_repo.create_user(conn, data.name, data.role, t, data.scope)
        token = await users_repo.issue_token(conn, u["id"], t)
        await users_repo.record(conn, who(request), "user.create", f"user:{data.name}", t,
                                {"role": data.role, "scope": data.scope})
    return ok({**_row(u), "token": token}, 201)


async def revoke_user_tokens(request):
    name = request.match_info["name"]
    t = now(request)
    async with request.app[DB_KEY].transaction() as conn:
        u = await users_repo.get_user(conn, name)
        n = await users_repo.revoke_tokens(conn, u["id"], t)
        await users_repo.record(conn, who(request), "user.revoke_tokens", f"user:{name}", t, {"revoked": n})
    return ok({"revoked": n})


async def list_audit(request):
    async with request.app[DB_KEY].read() as conn:
        rows = await users_repo.list_audit(conn, limit=q_int(request, "limit", 200, 1, 10000),
                                           target=request.query.get("target") or None)
    return ok({"items": [_row(r) for r in rows]})


# --- service ---------------------------------------------------------------------------------

async def healthz(request):
    """Healthy when the database answers and the scheduler loop completes its
    rounds (or is not running in this process)."""
    database = "ok"
    try:
        async with request.app[DB_KEY].read() as conn:
            await conn.execute(text("SELECT 1"))
    except Exception as exc:
        log.warning("health: database: %s", exc)
        database = "error"
    scheduler = request.app[SCHEDULER_KEY].state()
    healthy = database == "ok" and scheduler != "stalled"
    return ok({"status": "ok" if healthy else "degraded", "database": database, "scheduler": scheduler,
               "version": __version__}, 200 if healthy else 503)


async def openapi_json(request):
    return ok(openapi.document(request.app.get(ROUTES_KEY, ROUTES)))


async def metrics(request):
    body_, ctype = await core_metrics.render(request.app)
    return web.Response(body=body_, headers={"Content-Type": ctype})


def _items(model) -> Any:
    return ("items", model)


ROUTES: list[Route] = [
    Route("GET", "/healthz", healthz, None, "Liveness and database reachability", response=m.HealthOut,
          extra_responses={503: "database unreachable"}),
    Route("GET", "/metrics", metrics, None, "Prometheus metrics", content_type="text/plain"),
    Route("GET", f"{API}/openapi.json", openapi_json, None, "This document"),
    # registry
    Route("GET", f"{API}/institutions", list_institutions, auth.READ, "List institutions",
          response=_items(m.InstitutionOut), query=[Query("kind", {"type": "string", "enum": ["court", "sizo", "correctional"]}),
                                                    Query("region", {"type": "string"})]),
    Route("POST", f"{API}/institutions", create_institution, auth.REGISTRY, "Add an institution",
          body=m.InstitutionIn, response=m.InstitutionOut, status=201),
    Route("GET", f"{API}/institutions/{{id}}", get_institution, auth.READ, "An institution", response=m.InstitutionOut),
    Route("PATCH", f"{API}/institutions/{{id}}", patch_institution, auth.REGISTRY, "Change an institution",
          body=m.InstitutionPatch, response=m.InstitutionOut),
    Route("DELETE", f"{API}/institutions/{{id}}", delete_institution, auth.REGISTRY,
          "Remove an institution (409 while it has rooms, terminals or hearings)", status=204),
    Route("GET", f"{API}/rooms", list_rooms, auth.READ, "List rooms", response=_items(m.RoomOut),
          query=[Query("institution_id", {"type": "string"})]),
    Route("POST", f"{API}/rooms", create_room, auth.REGISTRY, "Add a room", body=m.RoomIn, response=m.RoomOut,
          status=201),
    Route("GET", f"{API}/rooms/{{id}}", get_room, auth.READ, "A room", response=m.RoomOut),
    Route("PATCH", f"{API}/rooms/{{id}}", patch_room, auth.REGISTRY, "Rename a room", body=m.RoomPatch,
          response=m.RoomOut),
    Route("DELETE", f"{API}/rooms/{{id}}", delete_room, auth.REGISTRY, "Remove a room", status=204),
    Route("GET", f"{API}/terminals", list_terminals, auth.READ, "List terminals (agents)",
          response=_items(m.TerminalOut), query=[Query("institution_id", {"type": "string"}),
                                                 Query("room_id", {"type": "integer"})]),
    Route("POST", f"{API}/terminals", create_terminal, auth.REGISTRY, "Add a terminal", body=m.TerminalIn,
          response=m.TerminalOut, status=201),
    Route("GET", f"{API}/terminals/{{id}}", get_terminal, auth.READ, "A terminal", response=m.TerminalOut),
    Route("PATCH", f"{API}/terminals/{{id}}", patch_terminal, auth.REGISTRY, "Change a terminal",
          body=m.TerminalPatch, response=m.TerminalOut),
    Route("DELETE", f"{API}/terminals/{{id}}", delete_terminal, auth.REGISTRY, "Remove a terminal", status=204),
    # hearings
    Route("GET", f"{API}/hearings", list_hearings, auth.READ, "List hearings with checks and verdicts",
          response=_items(m.HearingOut),
          query=[Query("from", {"type": "string", "format": "date-time"}, "start at or after"),
                 Query("to", {"type": "string", "format": "date-time"}, "start before"),
                 Query("status", {"type": "string"}), Query("verdict", {"type": "string"}),
                 Query("court_id", {"type": "string"}), Query("institution_id", {"type": "string"}),
                 Query("limit", {"type": "integer"}), Query("offset", {"type": "integer"})]),
    Route("POST", f"{API}/hearings", create_hearing, auth.HEARINGS_WRITE,
          "Schedule a hearing: creates the test request (rule 13) and the pre-connect check (rule 15)",
          body=m.HearingIn, response=m.HearingOut, status=201, extra_responses={409: "room or terminal booked"}),
    Route("GET", f"{API}/hearings/{{id}}", get_hearing, auth.READ, "A hearing", response=m.HearingOut),
    Route("PATCH", f"{API}/hearings/{{id}}", patch_hearing, auth.HEARINGS_WRITE,
          "Change a hearing (a new start re-plans its checks)", body=m.HearingPatch, response=m.HearingOut,
          extra_responses={409: "room or terminal booked, or the hearing is cancelled"}),
    Route("DELETE", f"{API}/hearings/{{id}}", delete_hearing, auth.HEARINGS_WRITE,
          "Cancel a hearing (kept, with its record)", response=m.HearingOut),
    Route("GET", f"{API}/hearings/{{id}}/events", hearing_events, auth.READ,
          "The hearing's event record (rule 21), oldest first; format=csv for the hearing record",
          response=_items(m.EventOut),
          query=[Query("after_id", {"type": "integer"}), Query("format", {"type": "string", "enum": ["json", "csv"]})]),
    Route("POST", f"{API}/hearings/{{id}}/agreement", give_agreement, auth.AGREEMENTS,
          "The coordinator agrees the date and time (rules 11, 12)", body=m.AgreementIn, response=m.HearingOut),
    Route("POST", f"{API}/hearings/{{id}}/checks", run_check, auth.TESTS_RUN,
          "Run the hearing's test session (or pre-connect check) now", body=m.RunCheckIn,
          response=m.HearingOut, status=202),
    Route("GET", f"{API}/exports/hearings", export_hearings, auth.READ,
          "Hearings with their operability verdicts (rule 3) as JSON or CSV",
          query=[Query("format", {"type": "string", "enum": ["json", "csv"]}),
                 Query("from", {"type": "string", "format": "date-time"}),
                 Query("to", {"type": "string", "format": "date-time"}), Query("court_id", {"type": "string"})]),
    # suspensions
    Route("GET", f"{API}/suspensions", list_suspensions, auth.READ, "List suspensions (rule 24)",
          response=_items(m.SuspensionOut), query=[Query("active", {"type": "string", "enum": ["true", "false"]})]),
    Route("POST", f"{API}/suspensions", create_suspension, auth.SUSPENSIONS,
          "Suspend VKS at an institution or a whole area (rule 24)", body=m.SuspensionIn,
          response=m.SuspensionOut, status=201),
    Route("GET", f"{API}/suspensions/{{id}}", get_suspension, auth.READ, "A suspension", response=m.SuspensionOut),
    Route("DELETE", f"{API}/suspensions/{{id}}", delete_suspension, auth.SUSPENSIONS,
          "Lift a suspension", response=m.SuspensionOut),
    # people
    Route("GET", f"{API}/users", list_users, auth.USERS, "List users", response=_items(m.UserOut)),
    Route("POST", f"{API}/users", create_user, auth.USERS, "Add a user; the response shows the token once",
          body=m.UserIn, response=m.UserOut, status=201),
    Route("DELETE", f"{API}/users/{{name}}/tokens", revoke_user_tokens, auth.USERS,
          "Revoke all of a user's tokens", response=m.RevokedOut),
    Route("GET", f"{API}/audit", list_audit, auth.AUDIT, "The audit trail, newest first",
          response=_items(m.AuditOut), query=[Query("target", {"type": "string"}), Query("limit", {"type": "integer"})]),
]


# Every API route of this app (ROUTES and those of other modules, e.g. controller.web), for the document.
ROUTES_KEY = web.AppKey("api_routes", list)


def setup_routes(app: web.Application, extra: list[Route] | tuple[Route, ...] = ()) -> None:
    by_resource: dict[tuple[str, str], Route] = {}
    app[ROUTES_KEY] = [*ROUTES, *extra]
    for r in app[ROUTES_KEY]:
        app.router.add_route(r.method, r.path, r.handler)
        by_resource[(r.method, r.path)] = r
    app.middlewares.append(errors_middleware)
    app.middlewares.append(auth_middleware(by_resource))
