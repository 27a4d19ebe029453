"""Suspensions' REST resource (rule 24): VKS suspended at an institution or in a whole area, and
lifted."""
from __future__ import annotations

import datetime as dt

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncConnection

from controller import access, auth
from controller import hearings as ops
from controller import models as m
from controller.api.audit import Audit, audit, transaction
from controller.api.requests import API, body, now, ok, path_int, q_choice, row, who
from controller.api.routing import Query, Route, items
from controller.errors import Forbidden, NotFound
from controller.keys import DB_KEY, RESULTS_KEY, SCHEDULER_KEY
from controller.store import registry
from controller.store import suspensions as susp_repo
from controller.store.hearings import iso


def suspension_out(s: dict, t: dt.datetime, affected: list[int] | None = None) -> dict:
    """A suspension as the API shows it: in force at `t` or not, and the hearings it touched."""
    out = row(s)
    out["active"] = susp_repo.to_rule(s).in_force(t)
    if affected is not None:
        out["affected_hearings"] = affected
    return out


async def list_suspensions(request: web.Request) -> web.Response:
    """GET /suspensions[?active=true|false]: those that concern the user (controller.access)."""
    t = now(request)
    active = q_choice(request, "active", ("true", "false"))
    async with request.app[DB_KEY].read() as conn:
        rows = await susp_repo.list_all(conn, active_at=t if active == "true" else None)
        seen = await access.suspension_view(conn, access.of(request))
    return ok({"items": [suspension_out(s, t) for s in rows
                         if access.suspension_visible(seen, s["institution_id"], s["region"])]})


async def may_suspend(conn: AsyncConnection, scope: access.Scope, institution_id: str | None,
                      region: str | None) -> None:
    """Forbidden unless the user acts there: an institution in their scope, or a whole region they
    were given (not one where they merely hold an institution). An institution that does not exist
    is left to controller.hearings.suspend to refuse (400)."""
    if scope.national:
        return
    if institution_id is not None:
        try:
            await registry.get_institution(conn, institution_id)
        except NotFound:
            return
        if not scope.covers(institution_id):
            raise Forbidden(f"institution {institution_id!r} is outside your scope", field="institution_id")
    elif not scope.holds_region(region):
        raise Forbidden(f"region {region!r} as a whole is outside your scope: only a user given that region "
                        "suspends or lifts VKS there", field="region")


async def create_suspension(request: web.Request) -> web.Response:
    """POST /suspensions: checks of the hearings affected are blocked (now or when it begins)."""
    data = await body(request, m.SuspensionIn)
    t = now(request)
    checks = request.app[RESULTS_KEY]
    async with transaction(request, t) as conn:
        await may_suspend(conn, access.of(request), data.institution_id, data.region)
        s, affected, stop = await ops.suspend(conn, checks, data, who(request), t)
        audit(request).note({
            "institution_id": data.institution_id, "region": data.region, "reason": data.reason,
            "from_utc": iso(data.from_utc or t), "until_utc": iso(data.until_utc), "affected_hearings": affected},
            id=s["id"])
    await checks.stop_sessions(stop)
    request.app[SCHEDULER_KEY].wake()
    return ok(suspension_out(s, t, affected), 201)


async def get_suspension(request: web.Request) -> web.Response:
    """GET /suspensions/{id}."""
    async with request.app[DB_KEY].read() as conn:
        return ok(suspension_out(await susp_repo.get(conn, path_int(request, "id")), now(request)))


async def delete_suspension(request: web.Request) -> web.Response:
    """DELETE /suspensions/{id}: lift it (one of a whole region: a user given that region)."""
    sid = path_int(request, "id")
    t = now(request)
    async with transaction(request, t) as conn:
        found = await susp_repo.get(conn, sid)
        await may_suspend(conn, access.of(request), found["institution_id"], found["region"])
        affected = await ops.lift(conn, request.app[RESULTS_KEY], sid, who(request), t)
        audit(request).note({"affected_hearings": affected})
        s = await susp_repo.get(conn, sid)
    request.app[SCHEDULER_KEY].wake()
    return ok(suspension_out(s, t, affected))


ROUTES: list[Route] = [
    Route("GET", f"{API}/suspensions", list_suspensions, auth.READ, "List suspensions (rule 24)",
          response=items(m.SuspensionOut), query=[Query("active", {"type": "string", "enum": ["true", "false"]})]),
    Route("POST", f"{API}/suspensions", create_suspension, auth.SUSPENSIONS,
          "Suspend VKS at an institution or a whole area (rule 24)", body=m.SuspensionIn,
          response=m.SuspensionOut, status=201, audit=Audit("suspension.create", "suspension:{id}")),
    Route("GET", f"{API}/suspensions/{{id}}", get_suspension, auth.READ, "A suspension", response=m.SuspensionOut,
          scoped=access.SUSPENSION),
    Route("DELETE", f"{API}/suspensions/{{id}}", delete_suspension, auth.SUSPENSIONS,
          "Lift a suspension", response=m.SuspensionOut, audit=Audit("suspension.lift", "suspension:{id}"),
          scoped=access.SUSPENSION),
]
