"""Hearing operations: schedule, change, cancel, agree (rules 10-13, 15), and
suspensions (rule 24). Each function runs inside the caller's transaction and
writes the hearing's events there; the audit row is the route's (declared in
controller.api, written in the same transaction), so that a request is all
written or nothing is.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from sqlalchemy.ext.asyncio import AsyncConnection

from contract.vocab import AgreementState, CheckStatus, HearingStatus, HearingVerdict, InstitutionKind, Role
from controller import agreements, rules
from controller.checks import CheckService
from controller.errors import Conflict, Forbidden, Invalid, NotFound
from controller.models import HearingIn, HearingPatch, SuspensionIn
from controller.store import checks as checks_repo
from controller.store import events as events_repo
from controller.store import hearings as hearings_repo
from controller.store import jobs as jobs_repo
from controller.store import registry
from controller.store import selfchecks as selfchecks_repo
from controller.store import suspensions as susp_repo

iso = hearings_repo.iso


async def _court_terminal(conn: AsyncConnection, room: dict, given: str | None) -> str:
    if given:
        t = await registry.find_terminal(conn, given)
        if t is None:
            raise Invalid(f"no terminal {given!r}", field="court_terminal_id")
        if t["institution_id"] != room["institution_id"]:
            raise Invalid(f"terminal {given!r} is not at the court of room {room['id']}", field="court_terminal_id")
        return given
    in_room = await registry.list_terminals(conn, room_id=room["id"])
    if not in_room:
        raise Invalid(f"room {room['id']} has no terminal; give court_terminal_id", field="court_terminal_id")
    return in_room[0]["id"]


async def _participants(conn: AsyncConnection, given, court_id: str, court_terminal: str) -> list[dict]:
    out: list[dict] = []
    for i, p in enumerate(given):
        t = await registry.find_terminal(conn, p.terminal_id)
        if t is None:
            raise Invalid(f"no terminal {p.terminal_id!r}", field=f"participants.{i}.terminal_id")
        if p.institution_id and p.institution_id != t["institution_id"]:
            raise Invalid(f"terminal {p.terminal_id!r} belongs to {t['institution_id']!r}",
                          field=f"participants.{i}.institution_id")
        if t["id"] == court_terminal:
            raise Invalid("a participant cannot be the courtroom terminal itself",
                          field=f"participants.{i}.terminal_id")
        if t["id"] in {o["terminal_id"] for o in out}:
            raise Invalid(f"terminal {t['id']!r} is listed twice", field=f"participants.{i}.terminal_id")
        if (await registry.get_institution(conn, t["institution_id"]))["kind"] == InstitutionKind.DATACENTRE:
            raise Invalid(f"terminal {t['id']!r} is a reference terminal in a data centre, not a participant",
                          field=f"participants.{i}.terminal_id")
        out.append({"institution_id": t["institution_id"], "terminal_id": t["id"]})
    return out


async def _room(conn: AsyncConnection, room_id: int) -> tuple[dict, dict]:
    try:
        room = await registry.get_room(conn, room_id)
    except NotFound:
        raise Invalid(f"no room {room_id}", field="room_id") from None
    court = await registry.get_institution(conn, room["institution_id"])
    if court["kind"] != InstitutionKind.COURT:
        raise Invalid(f"room {room_id} is not in a court", field="room_id")
    return room, court


async def _no_double_booking(conn: AsyncConnection, room_id: int, terminal_ids: list[str], start: dt.datetime,
                             end: dt.datetime, exclude_id: int | None = None) -> None:
    await hearings_repo.lock_resources(conn, room_id, terminal_ids)
    clashes = await hearings_repo.booking_conflicts(conn, room_id=room_id, terminal_ids=terminal_ids,
                                                    start=start, end=end, exclude_id=exclude_id)
    if clashes:
        c = clashes[0]
        raise Conflict(f"{c['resource']} is booked by hearing {c['hearing_id']} ({c['case_number']}) "
                       f"at an overlapping time", code="booked", detail={"conflicts": clashes})


async def schedule(conn: AsyncConnection, checks: CheckService, data: HearingIn, who: str,
                   now: dt.datetime) -> int:
    """Schedule a hearing (rules 10-13, 15): no double booking, the coordinator it needs, its checks
    requested at once; its id."""
    room, court = await _room(conn, data.room_id)
    court_terminal = await _court_terminal(conn, room, data.court_terminal_id)
    parts = await _participants(conn, data.participants, court["id"], court_terminal)
    start = data.start_utc
    end = start + dt.timedelta(minutes=data.duration_min)
    if end <= now:
        raise Invalid("the hearing would be over already", field="start_utc")
    await _no_double_booking(conn, room["id"], [court_terminal] + [p["terminal_id"] for p in parts], start, end)
    coordinator = rules.coordinator_for(court["level"])
    hid = await hearings_repo.insert_hearing(conn, {
        "case_number": data.case_number, "court_id": court["id"], "room_id": room["id"],
        "court_terminal_id": court_terminal, "start_utc": start, "end_utc": end,
        "duration_min": data.duration_min, "initiative": data.initiative, "status": HearingStatus.SCHEDULED,
        "verdict": HearingVerdict.UNKNOWN, "agreement_coordinator": coordinator,
        "agreement_state": AgreementState.PENDING,
        "created_at": now, "updated_at": now, "created_by": who}, parts)
    hearing = await hearings_repo.get_hearing(conn, hid)
    await events_repo.append(conn, hid, "hearing_scheduled", now, {
        "by": who, "case_number": data.case_number, "start_utc": iso(start), "room_id": room["id"],
        "court_terminal": court_terminal, "participants": [p["terminal_id"] for p in parts],
        "agreement_coordinator": coordinator})
    await agreements.requested(conn, hid, now)      # rules 11, 12: the coordinator is told
    await checks.create_checks(conn, hearing, [p["terminal_id"] for p in parts], now)
    await checks.refresh_verdict(conn, hid, now)
    return hid


async def change(conn: AsyncConnection, checks: CheckService, hid: int, patch: HearingPatch, who: str,
                 now: dt.datetime, *, noted: Callable[[dict], object] | None = None) -> list[str]:
    """Apply a PATCH; returns the session ids to stop once committed (checks of
    removed participants, or of a hearing now held). When the hearing changed,
    `noted` is called with what changed (the audit row's detail)."""
    h = await hearings_repo.get_hearing(conn, hid, for_update=True)
    if h["status"] == HearingStatus.CANCELLED:
        raise Conflict(f"hearing {hid} is cancelled")
    values = patch.model_dump(exclude_unset=True)
    if not values:
        return []
    for key in ("case_number", "room_id", "start_utc", "duration_min", "initiative", "status", "participants"):
        if key in values and values[key] is None:
            raise Invalid(f"{key} cannot be null", field=key)
    changes = {k: v for k, v in values.items() if h.get(k) != v}
    room_id = values.get("room_id", h["room_id"])
    room, court = await _room(conn, room_id)
    if court["id"] != h["court_id"]:
        raise Invalid("the room must be in the hearing's court", field="room_id")
    court_terminal = h["court_terminal_id"]
    if "court_terminal_id" in values or "room_id" in changes:
        court_terminal = await _court_terminal(conn, room, values.get("court_terminal_id"))
    start = values.get("start_utc", h["start_utc"])
    duration = values.get("duration_min", h["duration_min"])
    end = start + dt.timedelta(minutes=duration)
    update = {k: v for k, v in changes.items() if k not in ("court_terminal_id", "participants")}
    current = [p["terminal_id"] for p in (await hearings_repo.participants_of(conn, [hid]))[hid]]
    new_parts = None
    if patch.participants is not None:
        new_parts = await _participants(conn, patch.participants, court["id"], court_terminal)
        if [p["terminal_id"] for p in new_parts] == current:
            new_parts = None
    remote = [p["terminal_id"] for p in new_parts] if new_parts is not None else current
    if court_terminal in remote:
        raise Invalid("a participant cannot be the courtroom terminal itself", field="court_terminal_id")
    if {"room_id", "start_utc", "duration_min"} & changes.keys() or court_terminal != h["court_terminal_id"] \
            or new_parts is not None:
        await _no_double_booking(conn, room_id, [court_terminal] + remote, start, end, exclude_id=hid)
        update["end_utc"] = end
    if court_terminal != h["court_terminal_id"]:
        update["court_terminal_id"] = court_terminal
    if not update and new_parts is None:
        return []
    update["updated_at"] = now
    await hearings_repo.update_hearing(conn, hid, **update)
    if "end_utc" in update and update["end_utc"] != h["end_utc"]:     # the self-check links' expiry (issue 14)
        await selfchecks_repo.follow_end(conn, hid, h["end_utc"], update["end_utc"])
    shown = {k: (iso(v) if isinstance(v, dt.datetime) else v) for k, v in update.items()
             if k not in ("updated_at", "end_utc")}
    if new_parts is not None:
        shown["participants"] = remote
    await events_repo.append(conn, hid, "hearing_updated", now, {"by": who, "changes": shown})
    if "start_utc" in update:               # rules 11, 12: a new date or time needs a new agreement
        await agreements.date_changed(conn, hid, who, now)
    stop: list[str] = []
    if new_parts is not None:
        await hearings_repo.replace_participants(conn, hid, new_parts)
        stop = await checks.cancel_checks(conn, hid, now, callees=set(current) - set(remote))
        added = [t for t in remote if t not in current]
        if added:
            await checks.create_checks(conn, await hearings_repo.get_hearing(conn, hid), added, now)
    if "court_terminal_id" in update:
        for c in await checks_repo.checks_for(conn, [hid]):
            if c["status"] not in rules.FINISHED and c["status"] != CheckStatus.RUNNING:
                await checks_repo.update_check(conn, c["id"], caller=court_terminal)
    if update.get("status") == HearingStatus.HELD:
        stop += await checks.cancel_checks(conn, hid, now)     # nothing left to check for a hearing held
        await checks.refresh_verdict(conn, hid, now)
    elif "start_utc" in update:
        await checks.replan(conn, await hearings_repo.get_hearing(conn, hid), now)
    else:
        await checks.refresh_verdict(conn, hid, now)
    if noted is not None:
        noted(shown)
    return stop


async def cancel(conn: AsyncConnection, checks: CheckService, hid: int, who: str, now: dt.datetime) -> list[str]:
    """Cancel a hearing (once) and its checks; the session ids to stop once committed."""
    h = await hearings_repo.get_hearing(conn, hid, for_update=True)
    if h["status"] == HearingStatus.CANCELLED:
        return []
    stop = await checks.cancel_checks(conn, hid, now)
    await hearings_repo.update_hearing(conn, hid, status=HearingStatus.CANCELLED, updated_at=now)
    await events_repo.append(conn, hid, "hearing_cancelled", now, {"by": who})
    await checks.refresh_verdict(conn, hid, now)
    return stop


async def agree(conn: AsyncConnection, hid: int, user: dict, note: str | None, now: dt.datetime) -> None:
    """Rules 11, 12: the coordinator of the right kind agrees the date and time."""
    h = await hearings_repo.get_hearing(conn, hid, for_update=True)
    if h["status"] == HearingStatus.CANCELLED:
        raise Conflict(f"hearing {hid} is cancelled")
    need = h["agreement_coordinator"]
    if user["role"] == Role.COORDINATOR and user.get("scope") and user["scope"] != need:
        raise Forbidden(f"this hearing needs the {need} coordinator's agreement (you are {user['scope']})")
    if h["agreement_state"] == AgreementState.GIVEN:
        raise Conflict(f"agreement for hearing {hid} was given by {h['agreement_by']}")
    await hearings_repo.update_hearing(conn, hid, agreement_state=AgreementState.GIVEN, agreement_by=user["name"],
                                       agreement_at=now, updated_at=now)
    await events_repo.append(conn, hid, "agreement_given", now, {"by": user["name"], "coordinator": need,
                                                                  "note": note})


# --- suspensions ----------------------------------------------------------------------------

async def suspend(conn: AsyncConnection, checks: CheckService, data: SuspensionIn, who: str,
                  now: dt.datetime) -> tuple[dict, list[int], list[str]]:
    """Rule 24: suspend an institution or an area (now or from a time, until a time or lifted); the
    suspension, the hearings it affects and the session ids to stop once committed."""
    if data.institution_id is not None:
        try:
            inst = await registry.get_institution(conn, data.institution_id)
        except NotFound:
            raise Invalid(f"no institution {data.institution_id!r}", field="institution_id") from None
        if inst["kind"] == InstitutionKind.COURT:
            raise Invalid("rule 24 suspends SIZO and institutions, or a whole area; not a court",
                          field="institution_id")
    else:
        in_area = await registry.list_institutions(conn, region=data.region)
        if not [i for i in in_area if i["kind"] != InstitutionKind.COURT]:
            raise Invalid(f"no SIZO or institution in region {data.region!r}", field="region")
    start = data.from_utc or now
    if data.until_utc is not None and data.until_utc <= start:
        raise Invalid("until_utc must be after from_utc", field="until_utc")
    s = await susp_repo.create(conn, {
        "institution_id": data.institution_id, "region": data.region, "reason": data.reason, "note": data.note,
        "from_utc": start, "until_utc": data.until_utc, "created_by": who})
    affected = await hearings_repo.hearings_affected(conn, institution_id=s["institution_id"], region=s["region"],
                                                     after=now)
    stop: list[str] = []
    if start <= now:
        stop = await checks.block_hearings(conn, affected, now, s)
    else:
        await jobs_repo.enqueue(conn, "suspension.start", f"suspension:{s['id']}:start", start, now,
                                {"suspension_id": s["id"]})
    if data.until_utc is not None:
        await jobs_repo.enqueue(conn, "suspension.end", f"suspension:{s['id']}:end", data.until_utc, now,
                                {"suspension_id": s["id"]})
    return s, affected, stop


async def lift(conn: AsyncConnection, checks: CheckService, sid: int, who: str, now: dt.datetime) -> list[int]:
    """Lift a suspension (once): its pending start and end jobs cancelled; the hearings unblocked."""
    s = await susp_repo.get(conn, sid, for_update=True)
    if s["lifted_at"] is not None:
        raise Conflict(f"suspension {sid} was lifted at {iso(s['lifted_at'])}")
    await susp_repo.lift(conn, sid, now, who)
    await jobs_repo.cancel(conn, [f"suspension:{sid}:start", f"suspension:{sid}:end"], now)
    s = await susp_repo.get(conn, sid)
    affected = await hearings_repo.hearings_affected(conn, institution_id=s["institution_id"], region=s["region"],
                                                     after=now)
    await checks.unblock_hearings(conn, affected, now, s)
    return affected
