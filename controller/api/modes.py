"""Each party's way of taking part in a hearing (rules 21, 23): GET and PUT /hearings/{id}/modes.

A party is one of the hearing's remote terminals or a named person without a terminal (a lawyer, a
witness, a victim...). The mode is `contract.vocab.ParticipationMode` (vks | mobile | in_person).
Each PUT keeps its rows with its time and who recorded it (controller.store.modes) and appends the
event `mode_recorded`. After a break (the live flow's `break` or `resume`) or a postponement
recorded later than the last recording, the view's `ask` says so: the page then asks for every
party's mode (rule 23), and the recording that answers carries that occasion.
"""
from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import BaseModel, Field
from sqlalchemy.ext.asyncio import AsyncConnection

from contract.vocab import HearingStatus, ParticipationMode
from controller import access, auth
from controller.api.audit import Audit, audit, transaction
from controller.api.hearings import HEARING
from controller.api.requests import API, body, now, ok, path_int, who
from controller.api.routing import Route
from controller.errors import Conflict, Invalid
from controller.keys import DB_KEY
from controller.models import In, OneLine
from controller.store import events as events_repo
from controller.store import hearings as hearings_repo
from controller.store import modes as modes_repo
from controller.store.hearings import iso

# Events after which the page asks again for each party's mode (rule 23), and the occasion they give.
BREAK_KINDS = ("break", "break_declared", "resume")
POSTPONED_KINDS = ("hearing_postponed",)
CALLED_OFF = "break_continued"      # the judge's "Continue": the recommended break was a false alarm


class ModeItemIn(In):
    """One party and its mode: `terminal_id` (a remote terminal of the hearing) or `name` (a person
    without a terminal, with `kind` - lawyer, witness, victim... - if given)."""
    terminal_id: str | None = Field(None, min_length=1, max_length=64)
    name: OneLine | None = Field(None, min_length=1, max_length=200)
    kind: OneLine | None = Field(None, min_length=1, max_length=64)
    mode: ParticipationMode


def _one_party(i: int, it: ModeItemIn) -> None:
    if (it.terminal_id is None) == (it.name is None):
        raise Invalid("give either terminal_id or name", field=f"items.{i}.terminal_id")
    if it.terminal_id is not None and it.kind is not None:
        raise Invalid("a terminal's kind is its institution; give kind with a name only", field=f"items.{i}.kind")


class ModesIn(In):
    """The modes recorded now, one item per party (the others keep what they had)."""
    items: list[ModeItemIn] = Field(min_length=1, max_length=100)


class PartyOut(BaseModel):
    """A party and the mode last recorded for it (none yet: mode null)."""
    terminal_id: str | None
    institution_id: str | None
    institution_name: str | None
    name: str | None
    kind: str | None
    mode: ParticipationMode | None
    recorded_at: str | None
    recorded_by: str | None
    occasion: str | None


class AskOut(BaseModel):
    """Why the page asks for each party's mode now: after a break or a postponement."""
    because: str
    at: str


class ModesOut(BaseModel):
    """A hearing's parties with their modes, and whether they are to be asked again (rule 23)."""
    hearing_id: int
    parties: list[PartyOut]
    ask: AskOut | None
    history: list[dict]


def _occasion(e: dict) -> str | None:
    if e["kind"] in BREAK_KINDS:
        return "break"
    if e["kind"] in POSTPONED_KINDS:
        return "postponement"
    if e["kind"] == "hearing_updated" and (e["detail"].get("changes") or {}).get("status") == HearingStatus.POSTPONED:
        return "postponement"
    return None


async def ask_of(conn: AsyncConnection, hid: int) -> dict | None:
    """{because, at} of the last break or postponement recorded after the last recording of modes
    (the record's order: event ids, not clocks), else None. A break the judge called off
    (`break_continued`: a false alarm, no break) asks nothing: its `break` event no longer counts."""
    asks: dict[tuple[str, Any], dict] = {}       # by occasion (a break by its id): the last is the ask
    for e in await events_repo.list_for(conn, hid):
        if e["kind"] == "mode_recorded":
            asks.clear()
            continue
        if e["kind"] == CALLED_OFF:
            asks.pop(("break", (e["detail"] or {}).get("break_id")), None)
            continue
        why = _occasion(e)
        if why:
            key = ("break", (e["detail"] or {}).get("break_id")) if why == "break" else (why, None)
            asks.pop(key, None)
            asks[key] = {"because": why, "at": iso(e["at"])}
    return next(reversed(asks.values()), None)


async def modes_view(conn: AsyncConnection, hid: int) -> dict[str, Any]:
    """The JSON of GET /hearings/{id}/modes."""
    h = await hearings_repo.get_hearing(conn, hid)
    rows = (await modes_repo.rows_of(conn, [hid]))[hid]
    last = {modes_repo.party_key(r): r for r in modes_repo.current(rows)}

    def recorded(r: dict | None) -> dict[str, Any]:
        return {"mode": r["mode"] if r else None, "recorded_at": iso(r["recorded_at"]) if r else None,
                "recorded_by": r["recorded_by"] if r else None, "occasion": r["occasion"] if r else None}
    parties = [{"terminal_id": p["terminal_id"], "institution_id": p["institution_id"],
                "institution_name": p["institution_name"], "name": None, "kind": None,
                **recorded(last.get(("terminal", p["terminal_id"])))}
               for p in (await hearings_repo.participants_of(conn, [hid]))[hid]]
    parties += [{"terminal_id": None, "institution_id": None, "institution_name": None, "name": r["name"],
                 "kind": r["party_kind"], **recorded(r)} for key, r in last.items() if key[0] == "name"]
    ask = None
    if h["status"] not in (HearingStatus.CANCELLED, HearingStatus.HELD):
        ask = await ask_of(conn, hid)
    history = [{"terminal_id": r["terminal_id"], "name": r["name"], "kind": r["party_kind"], "mode": r["mode"],
                "occasion": r["occasion"], "recorded_at": iso(r["recorded_at"]), "recorded_by": r["recorded_by"]}
               for r in rows]
    return {"hearing_id": hid, "parties": parties, "ask": ask, "history": history}


async def get_modes(request: web.Request) -> web.Response:
    """GET /hearings/{id}/modes."""
    async with request.app[DB_KEY].read() as conn:
        return ok(await modes_view(conn, path_int(request, "id")))


async def put_modes(request: web.Request) -> web.Response:
    """PUT /hearings/{id}/modes: record the modes given (rules 21, 23)."""
    data = await body(request, ModesIn)
    hid = path_int(request, "id")
    t = now(request)
    by = who(request)
    async with transaction(request, t) as conn:
        h = await hearings_repo.get_hearing(conn, hid, for_update=True)
        if h["status"] == HearingStatus.CANCELLED:
            raise Conflict(f"hearing {hid} is cancelled")
        terminals = {p["terminal_id"] for p in (await hearings_repo.participants_of(conn, [hid]))[hid]}
        seen: set[tuple[str, str]] = set()
        items = []
        for i, it in enumerate(data.items):
            _one_party(i, it)
            if it.terminal_id is not None and it.terminal_id not in terminals:
                raise Invalid(f"terminal {it.terminal_id!r} is not a remote participant of hearing {hid}",
                              field=f"items.{i}.terminal_id")
            item = {"terminal_id": it.terminal_id, "name": it.name, "party_kind": it.kind, "mode": it.mode}
            key = modes_repo.party_key(item)
            if key in seen:
                raise Invalid(f"{key[1]!r} is listed twice",
                              field=f"items.{i}.{'name' if key[0] == 'name' else 'terminal_id'}")
            seen.add(key)
            items.append(item)
        ask = await ask_of(conn, hid)
        occasion = ask["because"] if ask else None
        await modes_repo.record(conn, hid, items, occasion=occasion, at=t, by=by)
        parties = [{k: v for k, v in (("terminal_id", it["terminal_id"]), ("name", it["name"]),
                                      ("kind", it["party_kind"]), ("mode", it["mode"])) if v is not None}
                   for it in items]
        await events_repo.append(conn, hid, "mode_recorded", t, {"by": by, "occasion": occasion, "parties": parties})
        audit(request).note({"occasion": occasion, "parties": parties})
        out = await modes_view(conn, hid)
    return ok(out)


ROUTES: list[Route] = [
    Route("GET", f"{API}/hearings/{{id}}/modes", get_modes, auth.READ,
          "Each party's way of taking part (rules 21, 23): vks, mobile or in_person, and whether to ask again",
          response=ModesOut, scoped=access.HEARING),
    Route("PUT", f"{API}/hearings/{{id}}/modes", put_modes, auth.HEARINGS_WRITE,
          "Record parties' ways of taking part (a remote terminal or a named person each; event mode_recorded)",
          body=ModesIn, response=ModesOut, extra_responses={409: "the hearing is cancelled"},
          audit=Audit("hearing.modes", HEARING), scoped=access.HEARING),
]
