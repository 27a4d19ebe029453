"""POST /api/v1/hearings/import: a day's hearings from a CSV or iCalendar file (issue 13), all or
nothing. The file is parsed by controller.hearing_import; each row's room and the court's time zone
are resolved here, and each row is scheduled by controller.hearings.schedule (the same validation
as POST /hearings) inside ONE transaction with the route's audit row. Any row in error: the
transaction rolls back, nothing is created, and the answer lists every row's errors in words."""
from __future__ import annotations

import asyncio
import datetime as dt
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncConnection

from contract.vocab import InstitutionKind
from controller import access, auth
from controller import hearing_import as parse
from controller import hearings as ops
from controller import models as m
from controller.api.audit import Audit, audit, transaction
from controller.api.hearings import booked_as_seen, room_in_scope, view
from controller.api.requests import API, SlowBody, now, ok, who
from controller.api.routing import Route, items
from controller.errors import Conflict, ControllerError, Forbidden, Invalid
from controller.keys import RESULTS_KEY, SCHEDULER_KEY, SETTINGS_KEY
from controller.store import registry

BODY_TYPES = ("text/csv", "text/calendar", "multipart/form-data")


class ImportRefused(ControllerError):
    """Rows in error: nothing imported. 403 when a row's room is out of the user's scope, else 400."""

    def __init__(self, errors: list[parse.RowError], forbidden: bool):
        n = len({(e.unit, e.n) for e in errors})
        unit = errors[0].unit
        super().__init__(f"{n} {unit}{'s' if n > 1 else ''} with errors; nothing was imported",
                         field="file", code="forbidden" if forbidden else "invalid",
                         detail={"errors": [e.out() for e in errors]})
        self.status = 403 if forbidden else 400


# The API's field (HearingIn, controller.hearings) -> the file's column (CSV) or property (iCalendar).
CSV_FIELDS = {"case_number": "case_number", "start_utc": "start", "duration_min": "duration_min",
              "initiative": "initiative", "participants": "participants"}
ICAL_FIELDS = {"case_number": "SUMMARY", "start_utc": "DTSTART", "duration_min": "DTEND",
               "initiative": parse.ICAL_INITIATIVE, "participants": parse.ICAL_PARTICIPANTS}


def file_field(row: parse.Row, api_field: str | None) -> str:
    """The column or property of the file that an API error's field names."""
    top = (api_field or "").split(".")[0]
    if top in ("room_id", "court_terminal_id"):
        return row.room_field
    names = ICAL_FIELDS if row.unit == "event" else CSV_FIELDS
    return names.get(top, top or "row")


async def read_file(request: web.Request) -> tuple[str, bytes]:
    """The uploaded file's kind (csv or ical) and bytes: the body itself (text/csv, text/calendar) or
    the part named `file` of a multipart form."""
    limit = request.app[SETTINGS_KEY].idle_timeout_s if SETTINGS_KEY in request.app else 75.0
    try:
        async with asyncio.timeout(limit):
            if request.content_type == "multipart/form-data":
                form = await request.post()      # bounded by client_max_size like any body
                upload = form.get("file")
                if not isinstance(upload, web.FileField):
                    raise Invalid("the form has no file (its part is named 'file')", field="file")
                raw = upload.file.read()
                ctype = (upload.content_type or "").split(";")[0].strip().lower()
                return parse.kind_of(ctype, upload.filename, raw), raw
            raw = await request.read()
    except TimeoutError:
        raise SlowBody(f"the body did not arrive within {limit:g} s") from None
    except (ValueError, HttpProcessingError) as exc:       # a malformed multipart body
        raise Invalid(f"the form cannot be read: {exc}", field="file") from None
    if request.content_type not in (*parse.CSV_TYPES, *parse.ICAL_TYPES):
        raise Invalid(f"send the file as text/csv, text/calendar or multipart/form-data, not "
                      f"{request.content_type or 'no content type'}", field="file")
    return parse.kind_of(request.content_type, None, raw), raw


async def resolve_room(conn: AsyncConnection, row: parse.Row) -> dict | None:
    """The room the row names (an error noted on the row when there is none, or more than one)."""
    where = row.room_field
    if row.room_id is not None:
        if not 0 < row.room_id < 2**31:      # beyond the INTEGER ids (PostgreSQL would refuse the query)
            row.error(where, f"no room {row.room_id}")
            return None
        try:
            return await registry.get_room(conn, row.room_id)
        except ControllerError:
            row.error(where, f"no room {row.room_id}")
            return None
    courts = await registry.list_institutions(conn, kind=InstitutionKind.COURT)
    if row.location is not None and row.location.isdigit():
        row.room_id = int(row.location)
        room = await resolve_room(conn, row)
        row.room_id = None
        return room
    candidates: list[tuple[str, str]] = []
    if row.court is not None and row.room is not None:
        candidates = [(row.court, row.room)]
    elif row.location is not None:
        parts = row.location.split(" - ")
        candidates = [(" - ".join(parts[:i]), " - ".join(parts[i:])) for i in range(1, len(parts))]
    found = []
    for court_name, room_name in candidates:
        key = court_name.strip().casefold()
        for c in courts:
            if key in (c["id"].casefold(), c["name"].casefold()):
                found += [r for r in await registry.list_rooms(conn, institution_id=c["id"])
                          if r["name"].strip().casefold() == room_name.strip().casefold()]
    if row.location is not None and not candidates:       # a room's name alone, unique among the courts
        for c in courts:
            found += [r for r in await registry.list_rooms(conn, institution_id=c["id"])
                      if r["name"].strip().casefold() == row.location.casefold()]
    if len(found) == 1:
        return found[0]
    named = row.location or f"{row.court} - {row.room}"
    row.error(where, f"no courtroom {named!r}: write \"<court name> - <room name>\" as the page lists them, "
                     "or the room's number" if not found else f"{named!r} names {len(found)} rooms; give the "
                     "court's name too, or the room's number")
    return None


def hearing_in(row: parse.Row, room: dict, zone: ZoneInfo) -> m.HearingIn | None:
    """The row as POST /hearings would take it (errors noted on the row), its local start in `zone`."""
    if row.start is None:
        return None
    start = row.start if row.start.tzinfo is not None else row.start.replace(tzinfo=zone)
    data: dict = {"case_number": row.case_number, "room_id": room["id"], "start_utc": start,
                  "participants": [{"terminal_id": t} for t in row.participants]}
    if row.duration_min is not None:
        data["duration_min"] = row.duration_min
    if row.initiative is not None:
        data["initiative"] = row.initiative
    try:
        return m.HearingIn.model_validate(data)
    except ValidationError as exc:
        for e in exc.errors():
            loc = ".".join(str(p) for p in e["loc"])
            msg = e["msg"].removeprefix("Value error, ")
            row.error(file_field(row, loc), msg)
        return None


async def schedule_rows(request: web.Request, conn: AsyncConnection, rows: list[parse.Row],
                        t: dt.datetime) -> tuple[list[int], bool]:
    """Schedule every valid row in the caller's transaction; the ids, and whether a row's room was
    out of the user's scope. Rows in error keep their errors (the caller rolls back)."""
    scope = access.of(request)
    ids: list[int] = []
    forbidden = False
    for row in rows:
        room = await resolve_room(conn, row)
        if room is None or row.errors:
            continue
        court = await registry.get_institution(conn, room["institution_id"])
        try:
            zone = ZoneInfo(court["timezone"])
        except (ZoneInfoNotFoundError, ValueError):
            row.error(row.room_field, f"the court's time zone {court['timezone']!r} is unknown")
            continue
        data = hearing_in(row, room, zone)
        if data is None:
            continue
        try:
            await room_in_scope(conn, scope, data.room_id)
        except Forbidden as exc:
            forbidden = True
            row.error(row.room_field, exc.message)
            continue
        try:
            ids.append(await ops.schedule(conn, request.app[RESULTS_KEY], data, who(request), t))
        except Forbidden as exc:
            forbidden = True
            row.error(file_field(row, exc.field), exc.message)
        except Conflict as exc:
            seen = await booked_as_seen(request, exc, conn)
            row.error(file_field(row, "start_utc"), seen.message)
        except ControllerError as exc:
            if exc.status >= 500:
                raise
            row.error(file_field(row, exc.field), exc.message)
    return ids, forbidden


async def import_hearings(request: web.Request) -> web.Response:
    """POST /hearings/import: every row scheduled, or none (the rows' errors listed)."""
    kind, raw = await read_file(request)
    try:
        rows = parse.parse(kind, raw)
    except parse.FileInvalid as exc:
        raise Invalid(str(exc), field="file") from None
    t = now(request)
    async with transaction(request, t) as conn:
        ids, forbidden = await schedule_rows(request, conn, rows, t)
        errors = [e for r in rows for e in r.errors]
        if errors:
            raise ImportRefused(errors, forbidden)       # rolls back every row scheduled above
        audit(request).note({"format": kind, "hearings": ids})
        out = [await view(conn, hid, t) for hid in ids]
    request.app[SCHEDULER_KEY].wake()
    return ok({"items": out}, 201)


ROUTES: list[Route] = [
    Route("POST", f"{API}/hearings/import", import_hearings, auth.HEARINGS_WRITE,
          "Import a day's hearings from CSV or iCalendar (docs/import.md): all rows scheduled in one "
          "transaction, or none and every row's errors listed",
          response=items(m.HearingOut), status=201, raw_body=BODY_TYPES,
          extra_responses={413: "file too large"}, audit=Audit("hearing.import", "hearings:import")),
]
