"""The registry's REST resources: institutions, rooms and terminals (with each terminal's
connection, health and last check)."""
from __future__ import annotations

import logging

from aiohttp import web
from pydantic import ValidationError

from contract.reports import Health
from contract.vocab import HealthStatus, InstitutionKind, TerminalRole, words
from controller import access, auth
from controller import models as m
from controller.api.audit import Audit, audit, transaction
from controller.api.requests import API, body, now, ok, path_int, q_int, row
from controller.api.routing import Query, Route, items
from controller.errors import Invalid, NotFound
from controller.keys import DB_KEY, GATEWAY_KEY, HUB_KEY
from controller.store import agents as agents_repo
from controller.store import checks as checks_repo
from controller.store import registry
from controller.store.hearings import iso

log = logging.getLogger("controller.api")


# --- institutions ------------------------------------------------------------------------------

async def list_institutions(request: web.Request) -> web.Response:
    """GET /institutions[?kind=&region=]."""
    async with request.app[DB_KEY].read() as conn:
        rows = await registry.list_institutions(conn, kind=request.query.get("kind") or None,
                                                region=request.query.get("region") or None)
    return ok({"items": [row(r) for r in rows]})


async def create_institution(request: web.Request) -> web.Response:
    """POST /institutions."""
    data = await body(request, m.InstitutionIn)
    t = now(request)
    async with transaction(request, t) as conn:
        created = await registry.create_institution(conn, data.model_dump(), t)
        audit(request).note(data.model_dump(), id=data.id)
    return ok(row(created), 201)


async def get_institution(request: web.Request) -> web.Response:
    """GET /institutions/{id}."""
    async with request.app[DB_KEY].read() as conn:
        return ok(row(await registry.get_institution(conn, request.match_info["id"])))


async def patch_institution(request: web.Request) -> web.Response:
    """PATCH /institutions/{id}."""
    data = await body(request, m.InstitutionPatch)
    values = data.model_dump(exclude_unset=True)
    async with transaction(request) as conn:
        changed = await registry.update_institution(conn, request.match_info["id"], values)
        if "region" in values:
            await access.require_regions_held(conn)
        audit(request).note(values)
    return ok(row(changed))


async def delete_institution(request: web.Request) -> web.Response:
    """DELETE /institutions/{id} (409 while anything hangs off it)."""
    async with transaction(request) as conn:
        await registry.delete_institution(conn, request.match_info["id"])
    return web.Response(status=204)


# --- rooms -------------------------------------------------------------------------------------

async def list_rooms(request: web.Request) -> web.Response:
    """GET /rooms[?institution_id=]."""
    async with request.app[DB_KEY].read() as conn:
        rows = await registry.list_rooms(conn, institution_id=request.query.get("institution_id") or None)
    return ok({"items": rows})


async def create_room(request: web.Request) -> web.Response:
    """POST /rooms."""
    data = await body(request, m.RoomIn)
    async with transaction(request) as conn:
        try:
            created = await registry.create_room(conn, data.institution_id, data.name)
        except NotFound as exc:
            raise Invalid(exc.message, field="institution_id") from None
        audit(request).note(data.model_dump(), id=created["id"])
    return ok(created, 201)


async def get_room(request: web.Request) -> web.Response:
    """GET /rooms/{id}."""
    async with request.app[DB_KEY].read() as conn:
        return ok(await registry.get_room(conn, path_int(request, "id")))


async def patch_room(request: web.Request) -> web.Response:
    """PATCH /rooms/{id}: rename."""
    data = await body(request, m.RoomPatch)
    rid = path_int(request, "id")
    async with transaction(request) as conn:
        changed = await registry.update_room(conn, rid, data.name)
        audit(request).note(data.model_dump())
    return ok(changed)


async def delete_room(request: web.Request) -> web.Response:
    """DELETE /rooms/{id}."""
    rid = path_int(request, "id")
    async with transaction(request) as conn:
        await registry.delete_room(conn, rid)
    return web.Response(status=204)


# --- terminals ---------------------------------------------------------------------------------

def _online(request: web.Request) -> set[str]:
    try:
        return request.app[GATEWAY_KEY].online()
    except Exception:
        log.exception("gateway.online() failed")
        return set()


def _health_out(p: dict | None) -> dict | None:
    if p is None:
        return None
    try:
        h = Health.model_validate(p.get("health"))     # as stored from the heartbeat: the contract's model
    except ValidationError:
        h = Health()
    return {"status": h.status if h.status in words(HealthStatus) else None, "problems": list(h.problems),
            "checked_at": h.checked_at, "last_seen": iso(p.get("last_seen")), "agent_version": p.get("agent_version")}


def _terminal_out(r: dict, online: set[str] | None, last: dict[str, dict],
                  presence: dict[str, dict] | None = None) -> dict:
    """One terminal as TerminalOut; `online` None: its presence is not the user's to see."""
    c = last.get(r["id"])
    last_check = None if c is None else {
        "hearing_id": c["hearing_id"], "kind": c["kind"], "status": c["status"], "verdict": c["verdict"],
        "finished_at": iso(c["finished_at"]), "peer": c["peer"], "caller": c["caller"], "callee": c["callee"],
        "reasons": list((c["result"] or {}).get("reasons") or []),
        "reason_codes": list((c["result"] or {}).get("reason_codes") or [])}
    return {**r, "online": None if online is None else r["id"] in online, "last_check": last_check,
            "health": _health_out((presence or {}).get(r["id"]))}


async def _terminals_out(request: web.Request, conn, rows: list[dict]) -> list[dict]:
    """The terminals as the user sees them: the registry for every one (ids, names, kinds: a
    secretary books any terminal); presence (`online`), the health detail and the last check (which
    names a hearing) only for those whose institution is in the user's scope - null for the others
    (controller.access; issue 11 opens the registry, not the health of other courts' terminals)."""
    scope = access.of(request)
    ids = [r["id"] for r in rows if scope.covers(r["institution_id"])]
    last = await checks_repo.last_finished(conn, ids)
    presence = await agents_repo.presence(conn, ids)
    online = _online(request)
    return [_terminal_out(r, online if scope.covers(r["institution_id"]) else None, last, presence) for r in rows]


async def list_terminals(request: web.Request) -> web.Response:
    """GET /terminals[?institution_id=&room_id=]."""
    room = request.query.get("room_id")
    room_id = q_int(request, "room_id", 0, 0, 2**31) if room else None
    async with request.app[DB_KEY].read() as conn:
        rows = await registry.list_terminals(conn, institution_id=request.query.get("institution_id") or None,
                                             room_id=room_id)
        out = await _terminals_out(request, conn, rows)
    return ok({"items": out})


async def create_terminal(request: web.Request) -> web.Response:
    """POST /terminals (role: courtroom at a court, institution elsewhere, unless given)."""
    data = await body(request, m.TerminalIn)
    values = data.model_dump()
    async with transaction(request) as conn:
        try:
            inst = await registry.get_institution(conn, data.institution_id)
        except NotFound as exc:
            raise Invalid(exc.message, field="institution_id") from None
        values["role"] = values["role"] or (
            TerminalRole.COURTROOM if inst["kind"] == InstitutionKind.COURT else TerminalRole.INSTITUTION).value
        created = await registry.create_terminal(conn, values)
        audit(request).note(values, id=data.id)
    return ok(_terminal_out(created, _online(request), {}), 201)


async def get_terminal(request: web.Request) -> web.Response:
    """GET /terminals/{id}."""
    async with request.app[DB_KEY].read() as conn:
        found = await registry.get_terminal(conn, request.match_info["id"])
        return ok((await _terminals_out(request, conn, [found]))[0])


async def patch_terminal(request: web.Request) -> web.Response:
    """PATCH /terminals/{id}."""
    data = await body(request, m.TerminalPatch)
    values = data.model_dump(exclude_unset=True)
    async with transaction(request) as conn:
        changed = await registry.update_terminal(conn, request.match_info["id"], values)
        audit(request).note(values)
        out = (await _terminals_out(request, conn, [changed]))[0]
    return ok(out)


async def delete_terminal(request: web.Request) -> web.Response:
    """DELETE /terminals/{id}: the terminal and, in the same transaction, every token it holds
    (issue 11: a removed terminal's token connected; a terminal added again with the same id gets
    new tokens only). Its connection to this controller is closed at once; one held by another
    controller is closed by that controller's token check (`token_check_s`)."""
    terminal_id = request.match_info["id"]
    async with transaction(request) as conn:
        await registry.delete_terminal(conn, terminal_id)
        revoked = await agents_repo.revoke_tokens(conn, terminal_id)
        audit(request).note({"tokens_revoked": revoked})
    hub = request.app.get(HUB_KEY)
    if hub is not None:
        try:
            await hub.disconnect(terminal_id, "the terminal was removed from the registry")
        except Exception:           # the tokens are revoked: the token check closes it anyway
            log.exception("terminal %s: its connection was not closed at once", terminal_id)
    return web.Response(status=204)


ROUTES: list[Route] = [
    Route("GET", f"{API}/institutions", list_institutions, auth.READ, "List institutions",
          response=items(m.InstitutionOut),
          query=[Query("kind", {"type": "string", "enum": list(words(InstitutionKind))}),
                 Query("region", {"type": "string"})]),
    Route("POST", f"{API}/institutions", create_institution, auth.REGISTRY, "Add an institution",
          body=m.InstitutionIn, response=m.InstitutionOut, status=201,
          audit=Audit("institution.create", "institution:{id}")),
    Route("GET", f"{API}/institutions/{{id}}", get_institution, auth.READ, "An institution", response=m.InstitutionOut),
    Route("PATCH", f"{API}/institutions/{{id}}", patch_institution, auth.REGISTRY, "Change an institution",
          body=m.InstitutionPatch, response=m.InstitutionOut, audit=Audit("institution.update", "institution:{id}")),
    Route("DELETE", f"{API}/institutions/{{id}}", delete_institution, auth.REGISTRY,
          "Remove an institution (409 while it has rooms, terminals or hearings)", status=204,
          audit=Audit("institution.delete", "institution:{id}")),
    Route("GET", f"{API}/rooms", list_rooms, auth.READ, "List rooms", response=items(m.RoomOut),
          query=[Query("institution_id", {"type": "string"})]),
    Route("POST", f"{API}/rooms", create_room, auth.REGISTRY, "Add a room", body=m.RoomIn, response=m.RoomOut,
          status=201, audit=Audit("room.create", "room:{id}")),
    Route("GET", f"{API}/rooms/{{id}}", get_room, auth.READ, "A room", response=m.RoomOut),
    Route("PATCH", f"{API}/rooms/{{id}}", patch_room, auth.REGISTRY, "Rename a room", body=m.RoomPatch,
          response=m.RoomOut, audit=Audit("room.update", "room:{id}")),
    Route("DELETE", f"{API}/rooms/{{id}}", delete_room, auth.REGISTRY, "Remove a room", status=204,
          audit=Audit("room.delete", "room:{id}")),
    Route("GET", f"{API}/terminals", list_terminals, auth.READ, "List terminals (agents)",
          response=items(m.TerminalOut), query=[Query("institution_id", {"type": "string"}),
                                                Query("room_id", {"type": "integer"})]),
    Route("POST", f"{API}/terminals", create_terminal, auth.REGISTRY, "Add a terminal", body=m.TerminalIn,
          response=m.TerminalOut, status=201, audit=Audit("terminal.create", "terminal:{id}")),
    Route("GET", f"{API}/terminals/{{id}}", get_terminal, auth.READ, "A terminal", response=m.TerminalOut),
    Route("PATCH", f"{API}/terminals/{{id}}", patch_terminal, auth.REGISTRY, "Change a terminal",
          body=m.TerminalPatch, response=m.TerminalOut, audit=Audit("terminal.update", "terminal:{id}")),
    Route("DELETE", f"{API}/terminals/{{id}}", delete_terminal, auth.REGISTRY, "Remove a terminal", status=204,
          audit=Audit("terminal.delete", "terminal:{id}")),
]
