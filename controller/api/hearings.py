"""The hearings' REST resource (rules 3, 10-13, 15, 21): list, schedule, change, cancel, the event
record (JSON or CSV), the coordinator's agreement and a check run on demand. The operations
themselves are controller.hearings; these handlers parse, authorise and answer."""
from __future__ import annotations

import datetime as dt

from aiohttp import web
from sqlalchemy import ColumnElement
from sqlalchemy.ext.asyncio import AsyncConnection

from contract.vocab import ACTIVE_HEARING_STATUSES, HearingStatus, HearingVerdict
from controller import access, auth
from controller import hearings as ops
from controller import models as m
from controller.api.audit import Audit, audit, transaction
from controller.api.exports import csv_text
from controller.api.requests import API, body, dumps, now, ok, path_int, q_choice, q_int, q_time, row, who
from controller.api.routing import Query, Route, items
from controller.api.tests import not_in_live_hearing
from controller.errors import Conflict, Forbidden, NotFound
from controller.keys import DB_KEY, RESULTS_KEY, SCHEDULER_KEY, USER_KEY
from controller.store import checks as checks_repo
from controller.store import events as events_repo
from controller.store import hearings as hearings_repo
from controller.store import registry
from controller.store.hearings import iso

# How many hearings a verdict-filtered page looks at per round (the verdict is computed per view).
SCAN = 500


async def view(conn: AsyncConnection, hid: int, t: dt.datetime) -> dict:
    """The JSON view of hearing `hid` at `t` (404 when there is none)."""
    views = await hearings_repo.views(conn, [hid], t)
    if not views:
        raise NotFound(f"no hearing {hid}")
    return views[0]


async def page(conn: AsyncConnection, t: dt.datetime, *, verdict: str | None, limit: int, offset: int,
               **where) -> list[dict]:
    """The views of the hearings matching `where` and `verdict`, `offset` and `limit` counted among
    the matching ones. The verdict is the one shown (computed at `t` from checks, suspensions and
    live monitoring), so it is filtered on the views before the page is cut, a round at a time."""
    if verdict is None:
        return await hearings_repo.views(conn, await hearings_repo.list_ids(conn, limit=limit, offset=offset,
                                                                            **where), t)
    out: list[dict] = []
    seen = 0
    while len(out) < limit:
        ids = await hearings_repo.list_ids(conn, limit=SCAN, offset=seen, **where)
        seen += len(ids)
        for h in await hearings_repo.views(conn, ids, t):
            if h["verdict"] != verdict:
                continue
            if offset:
                offset -= 1
            elif len(out) < limit:
                out.append(h)
        if len(ids) < SCAN:
            break
    return out


def in_scope(request: web.Request) -> ColumnElement[bool] | None:
    """SQL on `hearings`: those in the user's scope (None: a national user's, every hearing). Lists
    and exports filter with it in the query, so a page is cut among what the user may see."""
    scope = access.of(request)
    return None if scope.national else scope.hearing_clause()


async def list_hearings(request: web.Request) -> web.Response:
    """GET /hearings with filters and a page: the hearings in the user's scope only."""
    t = now(request)
    status = q_choice(request, "status", HearingStatus)
    verdict = q_choice(request, "verdict", HearingVerdict)
    async with request.app[DB_KEY].read() as conn:
        found = await page(conn, t, verdict=verdict, limit=q_int(request, "limit", 500, 1, 5000),
                           offset=q_int(request, "offset", 0, 0, 10**9),
                           start_from=q_time(request, "from"), start_to=q_time(request, "to"), status=status,
                           court_id=request.query.get("court_id") or None,
                           institution_id=request.query.get("institution_id") or None, where=in_scope(request))
    return ok({"items": found})


async def room_in_scope(conn: AsyncConnection, scope: access.Scope, room_id: int) -> None:
    """Forbidden unless the room's court is in the user's scope: a hearing is scheduled in, or moved
    to, a court the user acts for. (The registry is public, so the answer names the room; a room
    that does not exist is left to controller.hearings to refuse, 400.)"""
    if scope.national:
        return
    try:
        room = await registry.get_room(conn, room_id)
    except NotFound:
        return
    if not scope.covers(room["institution_id"]):
        raise Forbidden(f"room {room_id} is at {room['institution_id']!r}, outside your scope: a hearing is "
                        "scheduled in a room of a court in your scope", field="room_id")


async def booked_as_seen(request: web.Request, exc: Conflict, conn: AsyncConnection | None = None) -> Conflict:
    """A double booking (409 booked) as the user may read it: a clashing hearing out of their scope
    is "another hearing", its id and case number left out (existence is not revealed). `conn`: read
    in that transaction (an import's), else in a read connection of its own."""
    scope = access.of(request)
    clashes = exc.detail.get("conflicts")
    if exc.code != "booked" or scope.national or not clashes:
        return exc
    if conn is not None:
        seen = [c for c in clashes if await access.hearing_in_scope(conn, scope, c["hearing_id"])]
    else:
        async with request.app[DB_KEY].read() as own:
            seen = [c for c in clashes if await access.hearing_in_scope(own, scope, c["hearing_id"])]
    shown = [c if c in seen else {"hearing_id": None, "case_number": None, "resource": c["resource"]}
             for c in clashes]
    c = shown[0]
    by = f"hearing {c['hearing_id']} ({c['case_number']})" if c["hearing_id"] is not None else "another hearing"
    return Conflict(f"{c['resource']} is booked by {by} at an overlapping time", code="booked",
                    detail={"conflicts": shown})


async def create_hearing(request: web.Request) -> web.Response:
    """POST /hearings: schedule (the test request and the pre-connect check come with it) in a room
    of a court in the user's scope; the participants may be any terminals."""
    data = await body(request, m.HearingIn)
    t = now(request)
    try:
        async with transaction(request, t) as conn:
            await room_in_scope(conn, access.of(request), data.room_id)
            hid = await ops.schedule(conn, request.app[RESULTS_KEY], data, who(request), t)
            audit(request).note({"case_number": data.case_number, "start_utc": iso(data.start_utc)}, id=hid)
            out = await view(conn, hid, t)
    except Conflict as exc:
        raise await booked_as_seen(request, exc) from None
    request.app[SCHEDULER_KEY].wake()
    return ok(out, 201)


async def get_hearing(request: web.Request) -> web.Response:
    """GET /hearings/{id}."""
    async with request.app[DB_KEY].read() as conn:
        return ok(await view(conn, path_int(request, "id"), now(request)))


async def patch_hearing(request: web.Request) -> web.Response:
    """PATCH /hearings/{id}: audited only when something changed. A move to another room needs that
    room's court in the user's scope."""
    data = await body(request, m.HearingPatch)
    hid = path_int(request, "id")
    t = now(request)
    entry = audit(request)
    entry.skip()                        # unless the hearing changes (ops.change notes what did)
    try:
        async with transaction(request, t) as conn:
            if data.room_id is not None and data.room_id != (await hearings_repo.get_hearing(conn, hid))["room_id"]:
                await room_in_scope(conn, access.of(request), data.room_id)
            stop = await ops.change(conn, request.app[RESULTS_KEY], hid, data, who(request), t, noted=entry.note)
            out = await view(conn, hid, t)
    except Conflict as exc:
        raise await booked_as_seen(request, exc) from None
    await request.app[RESULTS_KEY].stop_sessions(stop)
    request.app[SCHEDULER_KEY].wake()
    return ok(out)


async def delete_hearing(request: web.Request) -> web.Response:
    """DELETE /hearings/{id}: cancel (kept with its record); a cancelled hearing stays as it is."""
    hid = path_int(request, "id")
    t = now(request)
    async with transaction(request, t) as conn:
        h = await hearings_repo.get_hearing(conn, hid, for_update=True)
        if h["status"] == HearingStatus.CANCELLED:
            audit(request).skip()
        stop = await ops.cancel(conn, request.app[RESULTS_KEY], hid, who(request), t)
        out = await view(conn, hid, t)
    await request.app[RESULTS_KEY].stop_sessions(stop)
    return ok(out)


EVENT_COLUMNS = ["id", "hearing_id", "at", "kind", "detail"]


async def hearing_events(request: web.Request) -> web.Response:
    """GET /hearings/{id}/events: the event record (rule 21), JSON or CSV for the hearing record."""
    hid = path_int(request, "id")
    fmt = q_choice(request, "format", ("json", "csv")) or "json"
    async with request.app[DB_KEY].read() as conn:
        await hearings_repo.get_hearing(conn, hid)
        rows = await events_repo.list_for(conn, hid, after_id=q_int(request, "after_id", 0, 0, 2**62))
    if fmt == "json":
        return ok({"items": [row(r) for r in rows]})
    text = csv_text(EVENT_COLUMNS, ([r["id"], r["hearing_id"], iso(r["at"]), r["kind"], dumps(r["detail"])]
                                    for r in rows))
    return web.Response(text=text, content_type="text/csv", charset="utf-8",
                        headers={"Content-Disposition": f'attachment; filename="hearing-{hid}-events.csv"'})


async def give_agreement(request: web.Request) -> web.Response:
    """POST /hearings/{id}/agreement (rules 11, 12)."""
    data = await body(request, m.AgreementIn)
    hid = path_int(request, "id")
    t = now(request)
    async with transaction(request, t) as conn:
        # The hearing is in scope (Route.scoped); agreeing it is for a coordinator whose scope holds
        # its court - one who sees it only through a participant institution does not agree its date.
        court = (await hearings_repo.get_hearing(conn, hid))["court_id"]
        if not access.of(request).covers(court):
            raise Forbidden(f"the agreement of hearing {hid} is given where its court {court!r} lies: "
                            "outside your scope", field="id")
        await ops.agree(conn, hid, request[USER_KEY], data.note, t)
        audit(request).note({"note": data.note})
        out = await view(conn, hid, t)
    return ok(out)


async def run_check(request: web.Request) -> web.Response:
    """POST /hearings/{id}/checks: run the test session (or the pre-connect check) now. Refused (409)
    when a terminal of a check it would run is in another hearing live now (its own is its business:
    the hearing's courtroom and participants are its to check); the scheduler asks again at the start."""
    data = await body(request, m.RunCheckIn)
    hid = path_int(request, "id")
    t = now(request)
    async with transaction(request, t) as conn:
        h = await hearings_repo.get_hearing(conn, hid, for_update=True)
        if h["status"] not in ACTIVE_HEARING_STATUSES:
            raise Conflict(f"hearing {hid} is {h['status']}")
        ids = await request.app[RESULTS_KEY].run_now(conn, hid, data.kind, t)
        pairs = [(c["caller"], c["callee"]) for c in await checks_repo.checks_for(conn, [hid]) if c["id"] in ids]
        await not_in_live_hearing(conn, access.of(request), sorted({x for p in pairs for x in p if x}), t,
                                  other_than=hid, what="check")
        await events_repo.append(conn, hid, "check_requested", t, {"by": who(request), "kind": data.kind,
                                                                   "check_ids": ids})
        audit(request).note({"kind": data.kind})
        out = await view(conn, hid, t)
    request.app[SCHEDULER_KEY].wake()
    return ok(out, 202)


HEARING = "hearing:{id}"      # the target of every hearing audit row

ROUTES: list[Route] = [
    Route("GET", f"{API}/hearings", list_hearings, auth.READ, "List hearings with checks and verdicts",
          response=items(m.HearingOut),
          query=[Query("from", {"type": "string", "format": "date-time"}, "start at or after"),
                 Query("to", {"type": "string", "format": "date-time"}, "start before"),
                 Query("status", {"type": "string"}), Query("verdict", {"type": "string"}),
                 Query("court_id", {"type": "string"}), Query("institution_id", {"type": "string"}),
                 Query("limit", {"type": "integer"}), Query("offset", {"type": "integer"})]),
    Route("POST", f"{API}/hearings", create_hearing, auth.HEARINGS_WRITE,
          "Schedule a hearing: creates the test request (rule 13) and the pre-connect check (rule 15)",
          body=m.HearingIn, response=m.HearingOut, status=201, extra_responses={409: "room or terminal booked"},
          audit=Audit("hearing.create", HEARING)),
    Route("GET", f"{API}/hearings/{{id}}", get_hearing, auth.READ, "A hearing", response=m.HearingOut,
          scoped=access.HEARING),
    Route("PATCH", f"{API}/hearings/{{id}}", patch_hearing, auth.HEARINGS_WRITE,
          "Change a hearing (a new start re-plans its checks)", body=m.HearingPatch, response=m.HearingOut,
          extra_responses={409: "room or terminal booked, or the hearing is cancelled"},
          audit=Audit("hearing.update", HEARING), scoped=access.HEARING),
    Route("DELETE", f"{API}/hearings/{{id}}", delete_hearing, auth.HEARINGS_WRITE,
          "Cancel a hearing (kept, with its record)", response=m.HearingOut,
          audit=Audit("hearing.cancel", HEARING), scoped=access.HEARING),
    Route("GET", f"{API}/hearings/{{id}}/events", hearing_events, auth.READ,
          "The hearing's event record (rule 21), oldest first; format=csv for the hearing record",
          response=items(m.EventOut),
          query=[Query("after_id", {"type": "integer"}), Query("format", {"type": "string", "enum": ["json", "csv"]})],
          scoped=access.HEARING),
    Route("POST", f"{API}/hearings/{{id}}/agreement", give_agreement, auth.AGREEMENTS,
          "The coordinator agrees the date and time (rules 11, 12)", body=m.AgreementIn, response=m.HearingOut,
          audit=Audit("hearing.agree", HEARING), scoped=access.HEARING),
    Route("POST", f"{API}/hearings/{{id}}/checks", run_check, auth.TESTS_RUN,
          "Run the hearing's test session (or pre-connect check) now", body=m.RunCheckIn,
          response=m.HearingOut, status=202, audit=Audit("check.run", HEARING), scoped=access.HEARING,
          extra_responses={409: "the hearing is not active, or a terminal of the check is in another hearing "
                                "live now"}),
]
