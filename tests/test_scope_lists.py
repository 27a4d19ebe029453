"""What a scoped user reaches beyond a path's {id} (issue 11, item 1): lists and exports hold only
the hearings, escalations and suspensions in scope (filtered in the query, so a page is cut among
them); every terminal is listed with its registry data and link, its health and last check only
when in scope; a hearing is scheduled or moved only into a room of a court in scope, a suspension
only where the coordinator acts, a test only when a terminal is in scope - and no one, national
users included, tests a terminal that is in a live hearing now (409 naming the hearing, when the
user may see it). Against the app on a real socket, on SQLite and PostgreSQL.

The world (configs/sites.yaml): Almaty (the Medeu district court, the city court, SIZO 70/1) and
Kyzylorda (district court no. 2, SIZO 35/1), plus the Supreme Court in Astana.
"""
from __future__ import annotations

import csv
import datetime as dt
import io
from dataclasses import dataclass

import pytest

from contract.vocab import EscalationCause, LiveState
from controller.store import agents as agents_repo
from controller.store import checks as checks_repo
from controller.store import escalations as esc_repo
from controller.store import live as live_repo
from tests.browser import requires_browser
from tests.controller_kit import Controller

MEDEU, KYZ_COURT = "almaty-medeu-district", "kyzylorda-district-2"
SIZO_ALMATY, SIZO_KYZ = "sizo-almaty-70-1", "sizo-kyzylorda-35-1"
# Who acts where: name -> (role, body of POST /users beyond name and role).
PEOPLE = {
    "sec-medeu": ("secretary", {"institutions": [MEDEU]}),
    "sec-sizo": ("secretary", {"institutions": [SIZO_ALMATY]}),
    "sec-kyz": ("secretary", {"regions": ["Kyzylorda"]}),
    "tech-almaty": ("technician", {"regions": ["Almaty"]}),
    "tech-kyz": ("technician", {"regions": ["Kyzylorda"]}),
    "tech-supreme": ("technician", {"institutions": ["supreme-court"]}),
    "coord-almaty": ("coordinator", {"scope": "regional", "regions": ["Almaty"]}),
    "coord-sizo": ("coordinator", {"scope": "department", "institutions": [SIZO_ALMATY]}),
}


@dataclass
class World:
    ctl: Controller
    tokens: dict[str, str]
    h_almaty: int       # the Medeu court with the Almaty SIZO
    h_kyz: int          # the Kyzylorda court with the Kyzylorda SIZO (the earliest)
    h_mixed: int        # the Kyzylorda court with the Almaty SIZO's second terminal
    start: dt.datetime

    async def call(self, who: str, method: str, path: str, **kw):
        return await self.ctl.call(method, path, token=self.tokens[who], **kw)

    async def ids(self, who: str, path: str) -> set[int]:
        _, out = await self.call(who, "GET", path, expect=200)
        return {x["id"] for x in out["items"]}


@pytest.fixture
async def world(db_url, fake_clock):
    async with Controller(db_url, fake_clock) as ctl:
        tokens = {}
        for name, (role, extra) in PEOPLE.items():
            _, u = await ctl.call("POST", "/api/v1/users", expect=201, json={"name": name, "role": role, **extra})
            tokens[name] = u["token"]
        start = fake_clock() + dt.timedelta(days=2)
        _, hk = await ctl.schedule(start=start, room=(KYZ_COURT, "Зал 1"), participants=["sizo-kyzylorda-1"],
                                   role="admin", case="K-1")
        _, ha = await ctl.schedule(start=start + dt.timedelta(hours=2), participants=["sizo-almaty-1"],
                                   role="admin", case="A-1")
        _, hm = await ctl.schedule(start=start + dt.timedelta(hours=4), room=(KYZ_COURT, "Зал 1"),
                                   participants=["sizo-almaty-2"], role="admin", case="M-1")
        yield World(ctl, tokens, ha["id"], hk["id"], hm["id"], start)


async def test_hearing_lists_and_exports_hold_only_the_hearings_in_scope(world):
    w = world
    everyone = {w.h_almaty, w.h_kyz, w.h_mixed}
    expected = {"sec-medeu": {w.h_almaty}, "sec-sizo": {w.h_almaty, w.h_mixed}, "sec-kyz": {w.h_kyz, w.h_mixed},
                "tech-almaty": {w.h_almaty, w.h_mixed}, "tech-supreme": set()}
    _, all_ = await w.ctl.call("GET", "/api/v1/hearings", role="viewer", expect=200)
    assert {h["id"] for h in all_["items"]} == everyone
    for who, ids in expected.items():
        assert await w.ids(who, "/api/v1/hearings") == ids, who
        assert await w.ids(who, "/api/v1/hearings?verdict=unknown") == ids, who
        _, out = await w.call(who, "GET", "/api/v1/exports/hearings", expect=200)
        assert {h["id"] for h in out["hearings"]} == ids, who
        _, text = await w.call(who, "GET", "/api/v1/exports/hearings?format=csv", expect=200)
        assert {int(r["id"]) for r in csv.DictReader(io.StringIO(text))} == ids, who
    # The filter is in the query: the first page of one is the first hearing in scope, not the
    # first hearing of all (the Kyzylorda one) left out after the page was cut.
    _, page = await w.call("tech-almaty", "GET", "/api/v1/hearings?limit=1", expect=200)
    assert [h["id"] for h in page["items"]] == [w.h_almaty]
    _, page = await w.call("tech-almaty", "GET", "/api/v1/hearings?limit=1&offset=1", expect=200)
    assert [h["id"] for h in page["items"]] == [w.h_mixed]
    # A filter naming what is out of scope finds nothing, rather than an error.
    assert await w.ids("sec-medeu", f"/api/v1/hearings?court_id={KYZ_COURT}") == set()
    _, out = await w.call("sec-medeu", "GET", f"/api/v1/exports/hearings?court_id={KYZ_COURT}", expect=200)
    assert out["hearings"] == []


async def test_escalations_listed_and_reached_only_for_hearings_in_scope(world, fake_clock):
    w = world
    async with w.ctl.db.transaction() as conn:
        e_almaty = await esc_repo.insert_escalation(conn, hearing_id=w.h_almaty, cause=EscalationCause.MANUAL,
                                                    detail={}, now=fake_clock())
        e_kyz = await esc_repo.insert_escalation(conn, hearing_id=w.h_kyz, cause=EscalationCause.MANUAL,
                                                 detail={}, now=fake_clock())
    assert await w.ids("sec-medeu", "/api/v1/escalations?state=all") == {e_almaty}
    assert await w.ids("tech-kyz", "/api/v1/escalations") == {e_kyz}
    assert await w.ids("tech-supreme", "/api/v1/escalations") == set()
    assert await w.ids("sec-medeu", f"/api/v1/escalations?hearing_id={w.h_kyz}") == set()
    _, all_ = await w.ctl.call("GET", "/api/v1/escalations", role="viewer", expect=200)
    assert {e["id"] for e in all_["items"]} >= {e_almaty, e_kyz}
    # One by id, and the technician's actions on it: 404 out of scope, as for none at all.
    status, out = await w.call("sec-medeu", "GET", f"/api/v1/escalations/{e_kyz}")
    assert status == 404 and out["error"] == "not_found"
    status, out = await w.call("tech-almaty", "POST", f"/api/v1/escalations/{e_kyz}/resolve", json={})
    assert status == 404 and out["error"] == "not_found"
    _, kept = await w.ctl.call("GET", f"/api/v1/escalations/{e_kyz}", role="viewer", expect=200)
    assert kept["state"] != "resolved"
    await w.call("tech-kyz", "POST", f"/api/v1/escalations/{e_kyz}/ack", json={}, expect=200)
    await w.call("sec-medeu", "GET", f"/api/v1/escalations/{e_almaty}", expect=200)
    # The act of a hearing out of scope, and an institution's contacts.
    status, _ = await w.call("sec-medeu", "POST", f"/api/v1/hearings/{w.h_kyz}/act", json={})
    assert status == 404
    status, _ = await w.call("sec-medeu", "GET", f"/api/v1/hearings/{w.h_kyz}/act.html")
    assert status == 404
    status, out = await w.call("sec-medeu", "GET", f"/api/v1/institutions/{KYZ_COURT}/contacts")
    assert status == 404 and out["error"] == "not_found"
    await w.call("sec-medeu", "GET", f"/api/v1/institutions/{MEDEU}/contacts", expect=200)


async def test_suspensions_listed_created_and_lifted_only_where_the_coordinator_acts(world):
    w = world

    async def suspend(json, who=None):
        body = {"reason": "special_regime", **json}
        if who is None:
            return await w.ctl.call("POST", "/api/v1/suspensions", json=body, expect=201)
        return await w.call(who, "POST", "/api/v1/suspensions", json=body)

    _, s_kyz = await suspend({"institution_id": SIZO_KYZ})
    _, s_kyz_region = await suspend({"region": "Kyzylorda"})
    _, s_karaganda = await suspend({"region": "Karaganda"})
    status, s_sizo = await suspend({"institution_id": SIZO_ALMATY}, "coord-sizo")
    assert status == 201, s_sizo
    status, s_region = await suspend({"region": "Almaty"}, "coord-almaty")
    assert status == 201, s_region
    assert await w.ids("coord-almaty", "/api/v1/suspensions") == {s_sizo["id"], s_region["id"]}
    assert await w.ids("coord-sizo", "/api/v1/suspensions?active=true") == {s_sizo["id"], s_region["id"]}
    # The Kyzylorda court's hearing M-1 connects to the Almaty SIZO: its suspensions block M-1, so the
    # court's secretary sees them (and by id), though the SIZO is not in her scope.
    assert await w.ids("sec-kyz", "/api/v1/suspensions") == {s_kyz["id"], s_kyz_region["id"], s_sizo["id"],
                                                             s_region["id"]}
    _, mixed = await w.call("sec-kyz", "GET", f"/api/v1/hearings/{w.h_mixed}", expect=200)
    assert set(mixed["suspension_ids"]) <= await w.ids("sec-kyz", "/api/v1/suspensions")
    await w.call("sec-kyz", "GET", f"/api/v1/suspensions/{s_sizo['id']}", expect=200)
    await w.call("sec-medeu", "GET", f"/api/v1/suspensions/{s_kyz['id']}", expect=404)
    assert await w.ids("tech-supreme", "/api/v1/suspensions") == set()
    _, all_ = await w.ctl.call("GET", "/api/v1/suspensions", role="viewer", expect=200)
    assert {s["id"] for s in all_["items"]} == {s_kyz["id"], s_kyz_region["id"], s_karaganda["id"],
                                                s_sizo["id"], s_region["id"]}
    # Refused where the coordinator does not act: 403 naming the field, nothing written.
    for who, body, field in [("coord-almaty", {"institution_id": SIZO_KYZ}, "institution_id"),
                             ("coord-almaty", {"region": "Kyzylorda"}, "region"),
                             ("coord-sizo", {"region": "Almaty"}, "region")]:
        status, out = await suspend(body, who)
        assert status == 403 and out["error"] == "forbidden" and out["field"] == field, (who, body, out)
        assert "outside your scope" in out["message"]
    _, after = await w.ctl.call("GET", "/api/v1/suspensions", role="viewer", expect=200)
    assert len(after["items"]) == 5
    # An institution that does not exist is still the plain 400.
    status, out = await suspend({"institution_id": "no-such-sizo"}, "coord-almaty")
    assert status == 400 and out["field"] == "institution_id"
    # The SIZO's coordinator sees the region's suspension (it touches the SIZO) but does not lift it.
    status, out = await w.call("coord-sizo", "DELETE", f"/api/v1/suspensions/{s_region['id']}")
    assert status == 403 and out["field"] == "region"
    status, _ = await w.call("coord-almaty", "DELETE", f"/api/v1/suspensions/{s_kyz['id']}")
    assert status == 404
    _, lifted = await w.call("coord-almaty", "DELETE", f"/api/v1/suspensions/{s_region['id']}", expect=200)
    assert lifted["lifted_at"] is not None
    await w.call("coord-sizo", "DELETE", f"/api/v1/suspensions/{s_sizo['id']}", expect=200)


async def test_terminals_listed_with_health_and_last_check_only_in_scope(world, fake_clock):
    w = world
    async with w.ctl.db.transaction() as conn:
        lease = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
        for t in ("court-almaty-1", "court-kyzylorda-1"):
            await agents_repo.claim_presence(conn, t, "ctl-scope-test", lease_until=lease, agent_version="1.0")
        await agents_repo.refresh_presence(conn, "ctl-scope-test", lease_until=lease, health={
            t: {"status": "warn", "problems": ["disk 91% full"]} for t in ("court-almaty-1", "court-kyzylorda-1")})
        for c in await checks_repo.checks_for(conn, [w.h_almaty, w.h_kyz]):
            await checks_repo.update_check(conn, c["id"], status="passed", verdict="good",
                                           finished_at=fake_clock())
    _, mine = await w.call("sec-medeu", "GET", "/api/v1/terminals", expect=200)
    _, every = await w.ctl.call("GET", "/api/v1/terminals", role="viewer", expect=200)
    assert [t["id"] for t in mine["items"]] == [t["id"] for t in every["items"]]   # the registry is open
    by = {t["id"]: t for t in mine["items"]}
    national = {t["id"]: t for t in every["items"]}
    for t in ("court-almaty-1", "court-kyzylorda-1"):
        assert national[t]["health"]["problems"] == ["disk 91% full"] and national[t]["last_check"] is not None
    assert by["court-almaty-1"]["health"]["status"] == "warn"
    assert by["court-almaty-1"]["last_check"]["hearing_id"] == w.h_almaty
    out = by["court-kyzylorda-1"]
    assert out["health"] is None and out["last_check"] is None
    assert out["name"] and out["institution_id"] == KYZ_COURT and out["role"] == "courtroom"
    # Presence is health too: `online` in scope (the test gateway has these two connected), null out.
    assert by["court-almaty-1"]["online"] is True and national["sizo-almaty-1"]["online"] is True
    assert by["sizo-almaty-1"]["online"] is None     # the Almaty SIZO is not the Medeu court's
    assert by["court-kyzylorda-1"]["online"] is None and national["court-kyzylorda-1"]["online"] is False
    _, one = await w.call("sec-medeu", "GET", "/api/v1/terminals/court-kyzylorda-1", expect=200)
    assert one["health"] is None and one["last_check"] is None and one["name"] == out["name"]
    _, one = await w.call("tech-kyz", "GET", "/api/v1/terminals/court-kyzylorda-1", expect=200)
    assert one["health"]["status"] == "warn" and one["last_check"]["hearing_id"] == w.h_kyz


async def test_hearings_are_scheduled_and_moved_only_into_rooms_in_scope(world):
    w = world
    kyz_room = await w.ctl.room_id(KYZ_COURT)
    medeu_2 = await w.ctl.room_id(MEDEU, "Зал 2")
    body = {"case_number": "2-77/2026", "start_utc": (w.start + dt.timedelta(days=1)).isoformat(),
            "duration_min": 30, "participants": [{"terminal_id": "sizo-kyzylorda-1"}]}
    status, out = await w.call("sec-medeu", "POST", "/api/v1/hearings", json={**body, "room_id": kyz_room})
    assert status == 403 and out["error"] == "forbidden" and out["field"] == "room_id", out
    assert "outside your scope" in out["message"] and KYZ_COURT in out["message"]
    _, all_ = await w.ctl.call("GET", "/api/v1/hearings", role="viewer", expect=200)
    assert len(all_["items"]) == 3
    # Participants may be any terminal: the Medeu court books the Kyzylorda SIZO.
    _, made = await w.call("sec-medeu", "POST", "/api/v1/hearings", expect=201,
                           json={**body, "room_id": await w.ctl.room_id(MEDEU)})
    assert made["participants"][0]["terminal_id"] == "sizo-kyzylorda-1"
    # The SIZO's secretary reaches the hearing through its participant, but cannot move it to
    # another room of a court out of their scope; the court's secretary can.
    status, out = await w.call("sec-sizo", "PATCH", f"/api/v1/hearings/{w.h_almaty}", json={"room_id": medeu_2})
    assert status == 403 and out["field"] == "room_id"
    assert (await w.ctl.hearing(w.h_almaty))["room"]["name"] == "Зал 1"
    await w.call("sec-sizo", "PATCH", f"/api/v1/hearings/{w.h_almaty}", json={"case_number": "A-1/b"}, expect=200)
    _, moved = await w.call("sec-medeu", "PATCH", f"/api/v1/hearings/{w.h_almaty}", json={"room_id": medeu_2},
                            expect=200)
    assert moved["room"]["name"] == "Зал 2"
    # A hearing out of scope cannot be changed at all.
    status, _ = await w.call("sec-medeu", "PATCH", f"/api/v1/hearings/{w.h_kyz}", json={"case_number": "x"})
    assert status == 404


async def test_a_booking_clash_with_a_hearing_out_of_scope_does_not_name_it(world):
    w = world
    body = {"case_number": "2-78/2026", "room_id": await w.ctl.room_id(MEDEU, "Зал 2"),
            "start_utc": w.start.isoformat(), "duration_min": 30,
            "participants": [{"terminal_id": "sizo-kyzylorda-1"}]}
    status, out = await w.call("sec-medeu", "POST", "/api/v1/hearings", json=body)
    assert status == 409 and out["error"] == "booked", out
    assert out["conflicts"] == [{"hearing_id": None, "case_number": None, "resource": "terminal sizo-kyzylorda-1"}]
    assert f"hearing {w.h_kyz}" not in out["message"] and "K-1" not in out["message"]
    assert "another hearing" in out["message"]
    status, out = await w.ctl.call("POST", "/api/v1/hearings", json=body)
    assert status == 409 and out["conflicts"][0]["hearing_id"] == w.h_kyz and "K-1" in out["message"]


async def test_tests_run_and_read_only_when_a_terminal_is_in_scope(world):
    w = world
    status, out = await w.call("tech-almaty", "POST", "/api/v1/tests",
                               json={"caller": "court-kyzylorda-1", "callee": "sizo-kyzylorda-1"})
    assert status == 403 and out["error"] == "forbidden" and "outside your scope" in out["message"], out
    assert w.ctl.gw.started == []
    # One end in scope is enough: the Almaty technician tests the Kyzylorda court with the Almaty SIZO.
    _, run = await w.call("tech-almaty", "POST", "/api/v1/tests", expect=202,
                          json={"caller": "court-kyzylorda-1", "callee": "sizo-almaty-2"})
    await w.call("tech-almaty", "GET", f"/api/v1/tests/{run['id']}", expect=200)
    await w.call("tech-kyz", "GET", f"/api/v1/tests/{run['id']}", expect=200)
    status, out = await w.call("tech-supreme", "GET", f"/api/v1/tests/{run['id']}")
    missing = await w.call("tech-supreme", "GET", "/api/v1/tests/adhoc-0000000000000000")
    assert status == 404 and out["error"] == missing[1]["error"] == "not_found"
    await w.ctl.call("GET", f"/api/v1/tests/{run['id']}", role="viewer", expect=200)


async def test_no_one_tests_a_terminal_in_a_live_hearing(world, fake_clock):
    w = world
    pair = {"caller": "court-almaty-2", "callee": "sizo-almaty-1"}
    await w.ctl.call("POST", "/api/v1/tests", role="technician", json=pair, expect=202)
    # The Almaty hearing is in progress: its SIZO terminal is taken, for a national user too.
    await w.ctl.call("POST", f"/api/v1/hearings/{w.h_almaty}/start", role="secretary", expect=200)
    started = len(w.ctl.gw.started)
    for kw in ({"role": "admin"}, {"role": "technician"}, {"token": w.tokens["tech-almaty"]}):
        status, out = await w.ctl.call("POST", "/api/v1/tests", json=pair, **kw)
        assert status == 409 and out["error"] == "conflict", (kw, out)
        assert out["hearing_id"] == w.h_almaty and f"hearing {w.h_almaty}" in out["message"]
        assert "sizo-almaty-1" in out["message"]
    # A technician who may not see that hearing is refused too, without it being named.
    status, out = await w.call("tech-kyz", "POST", "/api/v1/tests",
                               json={"caller": "court-kyzylorda-1", "callee": "sizo-almaty-1"})
    assert status == 409 and out["error"] == "conflict" and "hearing_id" not in out, out
    assert f"hearing {w.h_almaty}" not in out["message"] and "sizo-almaty-1" in out["message"]
    # A hearing monitored live (rule 22) though still "scheduled": its courtroom terminal is taken.
    async with w.ctl.db.transaction() as conn:
        t = fake_clock()
        await live_repo.insert_state(conn, {"hearing_id": w.h_mixed, "state": LiveState.MONITORING,
                                            "verdict": "unknown", "since": t, "stats": {}, "started_at": t,
                                            "updated_at": t, "attempt": 0})
    status, out = await w.call("tech-kyz", "POST", "/api/v1/tests",
                               json={"caller": "court-kyzylorda-1", "callee": "sizo-kyzylorda-1"})
    assert status == 409 and out["hearing_id"] == w.h_mixed, out
    assert len(w.ctl.gw.started) == started
    # Once the hearing is held the terminal is free again.
    await w.ctl.call("POST", f"/api/v1/hearings/{w.h_almaty}/end", role="secretary", expect=200)
    await w.ctl.call("POST", "/api/v1/tests", role="admin", json=pair, expect=202)


async def test_a_test_is_stopped_when_its_terminal_went_live_while_it_was_commanded(world, fake_clock):
    """POST /tests asks before and again after commanding the session: a hearing that went live in
    between (here: while the gateway starts the session) is seen, the session stopped, 409."""
    w = world
    gw = w.ctl.gw
    start_session = gw.start_session

    async def the_hearing_goes_live_meanwhile(**kw):
        await start_session(**kw)
        async with w.ctl.db.transaction() as conn:
            t = fake_clock()
            await live_repo.insert_state(conn, {"hearing_id": w.h_almaty, "state": LiveState.MONITORING,
                                                "verdict": "unknown", "since": t, "stats": {}, "started_at": t,
                                                "updated_at": t, "attempt": 0})

    gw.start_session = the_hearing_goes_live_meanwhile
    status, out = await w.ctl.call("POST", "/api/v1/tests", role="technician",
                                   json={"caller": "court-almaty-2", "callee": "sizo-almaty-1"})
    assert status == 409 and out["hearing_id"] == w.h_almaty and "sizo-almaty-1" in out["message"], out
    sid = gw.started[-1]["session_id"]
    assert gw.stopped == [sid]
    status, _ = await w.ctl.call("GET", f"/api/v1/tests/{sid}")     # refused: no request on record
    assert status == 404


async def test_a_hearing_check_does_not_take_a_terminal_from_another_live_hearing(world):
    """POST /hearings/{id}/checks asks what POST /tests asks: the Kyzylorda hearing is in progress on
    court-kyzylorda-1, so the mixed hearing's check from that courtroom is refused (409), naming the
    live hearing only to who may see it; the live hearing's own check is its business and runs."""
    w = world
    await w.ctl.call("POST", f"/api/v1/hearings/{w.h_kyz}/start", role="secretary", expect=200)
    before = await w.ctl.events(w.h_mixed)
    for kw in ({"role": "admin"}, {"role": "technician"}, {"token": w.tokens["tech-kyz"]}):
        status, out = await w.ctl.call("POST", f"/api/v1/hearings/{w.h_mixed}/checks", json={"kind": "test"}, **kw)
        assert status == 409 and out["error"] == "conflict", (kw, out)
        assert out["hearing_id"] == w.h_kyz and f"hearing {w.h_kyz}" in out["message"], out
        assert "court-kyzylorda-1" in out["message"]
    # The Almaty technician sees the mixed hearing (its SIZO) but not the Kyzylorda one.
    status, out = await w.call("tech-almaty", "POST", f"/api/v1/hearings/{w.h_mixed}/checks", json={"kind": "test"})
    assert status == 409 and out["error"] == "conflict" and "hearing_id" not in out, out
    assert f"hearing {w.h_kyz}" not in out["message"] and "court-kyzylorda-1" in out["message"]
    assert await w.ctl.events(w.h_mixed) == before      # refused: nothing requested, nothing recorded
    # The hearing in progress checks its own terminals.
    await w.ctl.call("POST", f"/api/v1/hearings/{w.h_kyz}/checks", json={"kind": "test"}, role="technician",
                     expect=202)
    await w.ctl.scheduler.run_until_idle()
    pairs = [(s["caller"], s["callee"]) for s in w.ctl.gw.started]
    assert ("court-kyzylorda-1", "sizo-kyzylorda-1") in pairs
    assert ("court-kyzylorda-1", "sizo-almaty-2") not in pairs
    # Once it is over the mixed hearing's check runs.
    await w.ctl.call("POST", f"/api/v1/hearings/{w.h_kyz}/end", role="secretary", expect=200)
    await w.call("tech-almaty", "POST", f"/api/v1/hearings/{w.h_mixed}/checks", json={"kind": "test"}, expect=202)


async def test_the_scheduler_defers_a_check_while_a_terminal_is_in_another_live_hearing(world, fake_clock):
    """The check jobs ask right before the session starts: the mixed hearing's test request waits
    (its job due again retry_s later, the record saying why once, without naming the other hearing)
    while the Kyzylorda hearing holds court-kyzylorda-1, and runs once that hearing is over."""
    w = world
    pair = ("court-kyzylorda-1", "sizo-almaty-2")
    await w.ctl.call("POST", f"/api/v1/hearings/{w.h_kyz}/start", role="secretary", expect=200)
    retry = dt.timedelta(seconds=w.ctl.settings.scheduler.retry_s)
    for _ in range(2):      # deferred, and deferred again at the retry
        await w.ctl.scheduler.run_until_idle()
        assert pair not in [(s["caller"], s["callee"]) for s in w.ctl.gw.started]
        fake_clock.advance(retry)
    await w.ctl.scheduler.run_until_idle()
    assert pair not in [(s["caller"], s["callee"]) for s in w.ctl.gw.started]
    # The other hearings' checks ran meanwhile, the live one's own included.
    assert ("court-kyzylorda-1", "sizo-kyzylorda-1") in [(s["caller"], s["callee"]) for s in w.ctl.gw.started]
    async with w.ctl.db.read() as conn:
        check = next(c for c in await checks_repo.checks_for(conn, [w.h_mixed]) if c["kind"] == "test")
    assert check["status"] in ("pending", "overdue") and "live" in check["error"], check
    retries = [e for e in await w.ctl.events(w.h_mixed) if e["kind"] == "check_retry"]
    assert len(retries) == 1, retries
    assert retries[0]["detail"]["reason"] == "in_live_hearing" and retries[0]["detail"]["terminal_id"] == pair[0]
    assert f"hearing {w.h_kyz}" not in retries[0]["detail"]["error"] and "another hearing" in check["error"]
    assert not any(e["kind"] == "check_started" for e in await w.ctl.events(w.h_mixed))
    # The Kyzylorda hearing is over: at its next turn the check starts.
    await w.ctl.call("POST", f"/api/v1/hearings/{w.h_kyz}/end", role="secretary", expect=200)
    await w.ctl.scheduler.run_until_idle()
    assert pair not in [(s["caller"], s["callee"]) for s in w.ctl.gw.started]    # not before its turn
    fake_clock.advance(retry)
    await w.ctl.scheduler.run_until_idle()
    assert [(s["caller"], s["callee"]) for s in w.ctl.gw.started].count(pair) == 1
    started = [e for e in await w.ctl.events(w.h_mixed) if e["kind"] == "check_started"]
    assert len(started) == 1 and started[0]["detail"]["check_id"] == check["id"]


# --- the page ------------------------------------------------------------------------------------

@requires_browser
@pytest.mark.timeout(120)
async def test_the_page_shows_the_scope_in_its_header_and_only_what_is_in_it(tmp_path):
    """In Debian's chromium (tests/browser.py): the header says where the user acts, in each
    language; the hearings are those in scope; a terminal out of scope has no health shown."""
    from controller.store import users as users_repo
    from tests.browser import PASSWORD, browser, new_page, set_lang, shot, sign_in
    from tests.conftest import FakeClock

    now = dt.datetime.now(dt.UTC).replace(microsecond=0)   # the page lists from its own clock
    async with Controller(f"sqlite:///{tmp_path / 'c.sqlite'}", FakeClock(now)) as ctl:
        await ctl.call("POST", "/api/v1/users", expect=201,
                       json={"name": "sec-medeu", "role": "secretary", "institutions": [MEDEU]})
        await ctl.schedule(start=now + dt.timedelta(hours=2), case="A-1")
        await ctl.schedule(start=now + dt.timedelta(hours=3), case="K-1", room=(KYZ_COURT, "Зал 1"),
                           participants=["sizo-kyzylorda-1"])
        hashed = await users_repo.password_hash(PASSWORD)
        async with ctl.db.transaction() as conn:
            for name in ("sec-medeu", "admin-1"):
                await users_repo.set_password(conn, name, hashed, now)
            await conn.execute(agents_repo.agent_presence.insert().values(
                terminal_id="court-kyzylorda-1", controller_id=None, last_seen=now, agent_version="0.1.0",
                health='{"status": "fail", "problems": ["camera missing"]}'))
        base = str(ctl.client.make_url("/"))
        async with browser() as b:
            page = await new_page(b)
            await sign_in(page, base, "sec-medeu")
            await page.wait_for_selector("#scope:not([hidden])")
            court = "Медеуский районный суд г. Алматы"
            for lang, words in (("en", "scope: "), ("ru", "в ведении: "), ("kk", "қарамағында: ")):
                await set_lang(page, lang)
                await page.wait_for_function("(s) => document.querySelector('#scope').textContent.startsWith(s)",
                                             arg=words)
                assert await page.inner_text("#scope") == words + court
            await set_lang(page, "en")
            await page.click('#nav a[data-view="hearings"]')
            await page.locator("table.hearings tbody tr", has_text="A-1").wait_for()
            assert await page.locator("table.hearings tbody tr", has_text="K-1").count() == 0
            await page.click('#nav a[data-view="terminals"]')
            row = page.locator("table.terminals tbody tr", has_text="court-kyzylorda-1")
            await row.wait_for()
            text = await row.inner_text()
            assert "outside your scope" in text and "camera missing" not in text
            assert "outside your scope" not in await page.locator("table.terminals tbody tr",
                                                                  has_text="court-almaty-1").inner_text()
            await shot(page, "scope-terminals-en")
            admin = await new_page(b)
            await sign_in(admin, base, "admin-1")
            await set_lang(admin, "en")
            await admin.wait_for_selector("#scope:not([hidden])")
            assert await admin.inner_text("#scope") == "national: every court and institution"
            await admin.click('#nav a[data-view="terminals"]')
            row = admin.locator("table.terminals tbody tr", has_text="court-kyzylorda-1")
            await row.wait_for()
            assert "camera missing" in await row.inner_text()
            assert page.errors == [] and admin.errors == []
