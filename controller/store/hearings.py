"""Hearings, their remote participants, booking overlaps, and the hearing view
(the JSON shape the API and the exports give)."""
from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any, overload
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, and_, delete, exists, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from contract.vocab import ACTIVE_HEARING_STATUSES, CheckKind, CheckStatus, InstitutionKind
from controller import rules
from controller.errors import NotFound
from controller.store import checks as checks_repo
from controller.store import diagnoses as diag_repo
from controller.store import live as live_repo
from controller.store import suspensions as susp_repo
from controller.store.schema import hearing_participants, hearings, institutions, live_state, rooms, terminals

# (for callers) the statuses of a hearing that still needs its link: contract.vocab's list.
ACTIVE_STATUSES = ACTIVE_HEARING_STATUSES


def _d(row) -> dict[str, Any]:
    return dict(row._mapping)


async def insert_hearing(conn: AsyncConnection, values: dict, participants: list[dict]) -> int:
    """Insert a hearing and its participants; its id."""
    hid = (await conn.execute(insert(hearings).values(**values).returning(hearings.c.id))).scalar_one()
    if participants:
        await conn.execute(insert(hearing_participants),
                           [{"hearing_id": hid, "institution_id": p["institution_id"],
                             "terminal_id": p["terminal_id"]} for p in participants])
    return hid


async def replace_participants(conn: AsyncConnection, hid: int, participants: list[dict]) -> None:
    """The hearing's participants become `participants`."""
    await conn.execute(delete(hearing_participants).where(hearing_participants.c.hearing_id == hid))
    await conn.execute(insert(hearing_participants),
                       [{"hearing_id": hid, "institution_id": p["institution_id"],
                         "terminal_id": p["terminal_id"]} for p in participants])


async def get_hearing(conn: AsyncConnection, hid: int, *, for_update: bool = False) -> dict:
    """The hearing row, locked for update when asked (NotFound otherwise)."""
    q = select(hearings).where(hearings.c.id == hid)
    if for_update:
        q = q.with_for_update()
    row = (await conn.execute(q)).first()
    if row is None:
        raise NotFound(f"no hearing {hid}")
    return _d(row)


async def update_hearing(conn: AsyncConnection, hid: int, **values) -> None:
    """Set columns of a hearing."""
    await conn.execute(update(hearings).where(hearings.c.id == hid).values(**values))


async def participants_of(conn: AsyncConnection, hearing_ids: Iterable[int]) -> dict[int, list[dict]]:
    """{hearing id: its participants with their institution's name, region, kind and time zone}."""
    ids = list(hearing_ids)
    out: dict[int, list[dict]] = {i: [] for i in ids}
    if not ids:
        return out
    q = (select(hearing_participants, institutions.c.name.label("institution_name"),
                institutions.c.region, institutions.c.kind.label("institution_kind"), institutions.c.timezone)
         .join(institutions, institutions.c.id == hearing_participants.c.institution_id)
         .where(hearing_participants.c.hearing_id.in_(ids)).order_by(hearing_participants.c.id))
    for r in await conn.execute(q):
        out[r.hearing_id].append(_d(r))
    return out


async def lock_resources(conn: AsyncConnection, room_id: int, terminal_ids: Iterable[str]) -> None:
    """Serialise bookings of the same room and terminals (PostgreSQL row locks;
    SQLite write transactions are already serial)."""
    if conn.dialect.name != "postgresql":
        return
    await conn.execute(select(rooms.c.id).where(rooms.c.id == room_id).with_for_update())
    ids = sorted(set(terminal_ids))
    if ids:
        await conn.execute(select(terminals.c.id).where(terminals.c.id.in_(ids))
                           .order_by(terminals.c.id).with_for_update())


async def booking_conflicts(conn: AsyncConnection, *, room_id: int, terminal_ids: Iterable[str],
                            start: dt.datetime, end: dt.datetime,
                            exclude_id: int | None = None) -> list[dict]:
    """Active hearings overlapping [start, end) in the same room or using any of
    the terminals (as the courtroom terminal or as a participant)."""
    tids = sorted(set(terminal_ids))
    overlap = and_(hearings.c.start_utc < end, hearings.c.end_utc > start,
                   hearings.c.status.in_(ACTIVE_HEARING_STATUSES))
    if exclude_id is not None:
        overlap = and_(overlap, hearings.c.id != exclude_id)
    found: dict[int, dict] = {}
    for r in await conn.execute(select(hearings.c.id, hearings.c.case_number, hearings.c.room_id,
                                       hearings.c.court_terminal_id).where(overlap, or_(
                                           hearings.c.room_id == room_id, hearings.c.court_terminal_id.in_(tids)))):
        what = "room" if r.room_id == room_id else f"terminal {r.court_terminal_id}"
        found[r.id] = {"hearing_id": r.id, "case_number": r.case_number, "resource": what}
    if tids:
        q = (select(hearings.c.id, hearings.c.case_number, hearing_participants.c.terminal_id)
             .join(hearing_participants, hearing_participants.c.hearing_id == hearings.c.id)
             .where(overlap, hearing_participants.c.terminal_id.in_(tids)))
        for p in await conn.execute(q):
            found.setdefault(p.id, {"hearing_id": p.id, "case_number": p.case_number,
                                    "resource": f"terminal {p.terminal_id}"})
    return sorted(found.values(), key=lambda c: c["hearing_id"])


async def list_ids(conn: AsyncConnection, *, start_from: dt.datetime | None = None,
                   start_to: dt.datetime | None = None, status: str | None = None,
                   court_id: str | None = None, institution_id: str | None = None,
                   where: ColumnElement[bool] | None = None, limit: int = 500, offset: int = 0) -> list[int]:
    """Hearing ids by start time, filtered by start window, status, court and institution, one page.
    `where` (SQL on `hearings`, e.g. a user's scope: controller.access.Scope.hearing_clause) is applied
    before the page is cut, so a page holds `limit` of the hearings it lets through."""
    q = select(hearings.c.id).order_by(hearings.c.start_utc, hearings.c.id)
    if where is not None:
        q = q.where(where)
    if start_from:
        q = q.where(hearings.c.start_utc >= start_from)
    if start_to:
        q = q.where(hearings.c.start_utc < start_to)
    if status:
        q = q.where(hearings.c.status == status)
    if court_id:
        q = q.where(hearings.c.court_id == court_id)
    if institution_id:
        sub = select(hearing_participants.c.hearing_id).where(hearing_participants.c.institution_id == institution_id)
        q = q.where(or_(hearings.c.court_id == institution_id, hearings.c.id.in_(sub)))
    return [r.id for r in await conn.execute(q.limit(limit).offset(offset))]


async def hearings_affected(conn: AsyncConnection, *, institution_id: str | None, region: str | None,
                            after: dt.datetime) -> list[int]:
    """Active hearings not yet ended with a remote SIZO / institution that is
    the suspended one, or is in the suspended area (rule 24 suspends VKS at
    penitentiary institutions; courts are not suspended)."""
    penitentiary = institutions.c.kind != InstitutionKind.COURT
    if institution_id is not None:
        inst_ids = select(institutions.c.id).where(institutions.c.id == institution_id, penitentiary)
    else:
        inst_ids = select(institutions.c.id).where(institutions.c.region == region, penitentiary)
    sub = select(hearing_participants.c.hearing_id).where(hearing_participants.c.institution_id.in_(inst_ids))
    q = (select(hearings.c.id).where(hearings.c.status.in_(ACTIVE_HEARING_STATUSES), hearings.c.end_utc > after,
                                     hearings.c.id.in_(sub))
         .order_by(hearings.c.id))
    return [r.id for r in await conn.execute(q)]


def suspendable(participants: list[dict]) -> dict[str, str]:
    """{institution_id: region} of the participants rule 24 can suspend (not courts)."""
    return {p["institution_id"]: p["region"] for p in participants if p["institution_kind"] != InstitutionKind.COURT}


async def sites_of(conn: AsyncConnection, hid: int) -> dict[str, str]:
    """{institution_id: region} of the hearing's participants rule 24 can suspend."""
    return suspendable((await participants_of(conn, [hid]))[hid])


# --- the view -------------------------------------------------------------------------------

@overload
def iso(t: dt.datetime) -> str: ...
@overload
def iso(t: None) -> None: ...
def iso(t: dt.datetime | None) -> str | None:
    """ISO 8601 in UTC with a Z (None stays None)."""
    return t.astimezone(dt.UTC).isoformat().replace("+00:00", "Z") if t else None


_AGG_ORDER = (CheckStatus.FAILED, CheckStatus.BLOCKED, CheckStatus.OVERDUE, CheckStatus.RUNNING,
              CheckStatus.PENDING, CheckStatus.SCHEDULED, CheckStatus.PASSED)


def _aggregate_status(items: list[dict]) -> str:
    live = [c["status"] for c in items if c["status"] != CheckStatus.CANCELLED]
    if not live:
        return CheckStatus.CANCELLED
    for s in _AGG_ORDER:
        if s in live:
            return s
    return live[0]


def check_view(kind: str, items: list[dict]) -> dict | None:
    """`test_request` / `preconnect` of a hearing: the request as a whole and
    one item per remote terminal. `result` is the report that decides the
    verdict (the worst), `verdict` the worst over the items."""
    items = [c for c in items if c["kind"] == kind]
    if not items:
        return None
    verdict = rules.worst(c["verdict"] for c in items if c["verdict"])
    deciding = next((c for c in items if verdict and c["verdict"] == verdict), None)
    return {
        "created_at": iso(min(c["created_at"] for c in items)),
        "due_from": iso(min(c["due_from"] for c in items)),
        "deadline": iso(min(c["deadline"] for c in items)),
        "status": _aggregate_status(items),
        "late": any(c["late"] for c in items),
        "overdue": any(c["overdue_at"] is not None for c in items),
        "verdict": verdict,
        "result": deciding["result"] if deciding else None,
        "items": [{
            "id": c["id"], "caller": c["caller"], "callee": c["callee"], "status": c["status"],
            "session_id": c["session_id"], "attempts": c["attempts"], "deadline": iso(c["deadline"]),
            "late": c["late"], "overdue_at": iso(c["overdue_at"]), "started_at": iso(c["started_at"]),
            "finished_at": iso(c["finished_at"]), "verdict": c["verdict"], "error": c["error"],
            "reasons": list((c["result"] or {}).get("reasons") or []),
            "reason_codes": list((c["result"] or {}).get("reason_codes") or []),
            "result": c["result"],
            **diag_repo.view(diag_repo.of_run(c.get("diagnosis_row"), c["started_at"])),
        } for c in items],
    }


def local(t: dt.datetime, tz: str) -> str:
    """The time as ISO 8601 in the time zone `tz`."""
    try:
        return t.astimezone(ZoneInfo(tz)).isoformat()
    except Exception:  # an unknown zone in old data: show UTC rather than fail the view
        return iso(t)


async def views(conn: AsyncConnection, ids: list[int], now: dt.datetime) -> list[dict]:
    """The JSON-ready view of each hearing in `ids` (order kept)."""
    if not ids:
        return []
    rows = {r.id: _d(r) for r in await conn.execute(
        select(hearings, institutions.c.name.label("court_name"), institutions.c.level.label("court_level"),
               institutions.c.timezone.label("court_tz"), institutions.c.region.label("court_region"),
               rooms.c.name.label("room_name"))
        .join(institutions, institutions.c.id == hearings.c.court_id)
        .join(rooms, rooms.c.id == hearings.c.room_id).where(hearings.c.id.in_(ids)))}
    parts = await participants_of(conn, ids)
    by_hearing: dict[int, list[dict]] = {i: [] for i in ids}
    all_checks = await checks_repo.checks_for(conn, ids)
    diags = await diag_repo.by_subjects(conn, [diag_repo.check_subject(c["id"]) for c in all_checks])
    for c in all_checks:
        by_hearing[c["hearing_id"]].append({**c, "diagnosis_row": diags.get(diag_repo.check_subject(c["id"]))})
    susps = await susp_repo.not_ended(conn, now)
    live = await live_repo.verdicts(conn, ids)      # rule 22: monitored hearings
    out = []
    for hid in ids:
        h = rows.get(hid)
        if h is None:
            continue
        sites = suspendable(parts[hid])
        blocking = {s.id for at in (now, max(now, h["start_utc"]))
                    for s in rules.blocking_suspensions(susps, sites, at)}
        hc = by_hearing[hid]
        verdict = rules.hearing_verdict(
            [rules.CheckState(c["kind"], c["status"], c["verdict"], c["finished_at"]) for c in hc],
            suspended=bool(blocking) and h["status"] in ACTIVE_HEARING_STATUSES, live=live.get(hid))
        opens, closes = rules.preconnect_window(h["start_utc"])
        pre = check_view(CheckKind.PRECONNECT, hc)
        if pre is not None:
            pre["window"] = {"opens": iso(opens), "closes": iso(closes)}
        out.append({
            "id": hid, "case_number": h["case_number"],
            "court": {"id": h["court_id"], "name": h["court_name"], "level": h["court_level"],
                      "region": h["court_region"], "timezone": h["court_tz"]},
            "room": {"id": h["room_id"], "name": h["room_name"]},
            "court_terminal": h["court_terminal_id"],
            "start_utc": iso(h["start_utc"]), "start_local": local(h["start_utc"], h["court_tz"]),
            "end_utc": iso(h["end_utc"]), "duration_min": h["duration_min"],
            "initiative": h["initiative"], "status": h["status"],
            "participants": [{"institution_id": p["institution_id"], "institution_name": p["institution_name"],
                              "institution_kind": p["institution_kind"], "region": p["region"],
                              "terminal_id": p["terminal_id"], "timezone": p["timezone"],
                              "start_local": local(h["start_utc"], p["timezone"])} for p in parts[hid]],
            "agreement": {"coordinator": h["agreement_coordinator"], "state": h["agreement_state"],
                          "by": h["agreement_by"], "at": iso(h["agreement_at"])},
            "test_request": check_view(CheckKind.TEST, hc),
            "preconnect": pre,
            "verdict": verdict,
            "suspended": bool(blocking) and h["status"] in ACTIVE_HEARING_STATUSES,
            "suspension_ids": sorted(blocking),
            "created_at": iso(h["created_at"]), "updated_at": iso(h["updated_at"]),
            "created_by": h["created_by"],
        })
    return out


async def open_hearings(conn: AsyncConnection, hearing_ids: list[int], ended_after: dt.datetime) -> set[int]:
    """Those of the hearings whose record still takes what their terminals report (issue 11): still
    active, under live monitoring, or ended after `ended_after`. A hearing held or cancelled was
    last changed when it ended (`updated_at`; a later edit of it only moves that on)."""
    if not hearing_ids:
        return set()
    h, lv = hearings.c, live_state.c
    monitored = exists().where(lv.hearing_id == h.id, lv.state.notin_(live_repo.FINISHED))
    q = select(h.id).where(h.id.in_(hearing_ids), or_(h.status.in_(ACTIVE_HEARING_STATUSES), monitored,
                                                      h.updated_at > ended_after))
    return {hid for (hid,) in await conn.execute(q)}
