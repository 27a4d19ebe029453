"""The controller through its REST API, on SQLite and on PostgreSQL, with a
fake clock driving the rules (13, 15, 24, 3, 11/12) and the scheduler."""
from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io

import pytest

from contract.wire import session_span_s
from controller.models import HealthOut, HearingOut, SuspensionOut, TerminalOut
from tests.controller_kit import Controller, report

H = dt.timedelta(hours=1)


@pytest.fixture
async def ctl(db_url, fake_clock):
    async with Controller(db_url, fake_clock) as c:
        yield c


def kinds(events):
    return [e["kind"] for e in events]


async def test_rule13_request_at_once_test_run_and_result_stored(ctl):
    now = ctl.clock()
    start = now + 72 * H
    _, h = await ctl.schedule(start=start)
    HearingOut.model_validate(h)
    tr = h["test_request"]
    assert tr["created_at"] == now.isoformat().replace("+00:00", "Z")
    assert dt.datetime.fromisoformat(tr["deadline"]) == start - 24 * H
    assert tr["status"] == "pending" and not tr["late"] and not tr["overdue"] and tr["result"] is None
    assert h["preconnect"]["status"] == "scheduled"
    assert h["verdict"] == "unknown"
    assert h["agreement"] == {"coordinator": "regional", "state": "pending", "by": None, "at": None}
    assert h["start_local"].endswith("+05:00")

    await ctl.scheduler.run_until_idle()
    assert [(s["kind"], s["caller"], s["callee"]) for s in ctl.gw.started] == \
        [("test", "court-almaty-1", "sizo-almaty-1")]
    sid = ctl.gw.started[0]["session_id"]
    assert (await ctl.hearing(h["id"]))["test_request"]["status"] == "running"

    ctl.clock.advance(minutes=1)
    await ctl.checks.on_session_result(sid, report("good"))
    await ctl.checks.on_session_result(sid, report("good"))        # a resent duplicate: stored once
    h2 = await ctl.hearing(h["id"])
    HearingOut.model_validate(h2)
    _, terms = await ctl.call("GET", "/api/v1/terminals?institution_id=sizo-almaty-70-1", role="technician",
                              expect=200)
    last = {t["id"]: TerminalOut.model_validate(t).last_check for t in terms["items"]}
    assert last["sizo-almaty-1"].status == "passed" and last["sizo-almaty-1"].peer == "court-almaty-1"
    assert last["sizo-almaty-2"] is None
    assert h2["test_request"]["status"] == "passed"
    assert h2["test_request"]["result"]["schema"] == "vks.test-report/1"
    assert h2["verdict"] == "good"
    ev = kinds(await ctl.events(h["id"]))
    assert ev == ["hearing_scheduled", "agreement_requested", "test_request_created", "preconnect_scheduled",
                  "check_started", "check_result"]
    _, text = await ctl.call("GET", f"/api/v1/hearings/{h['id']}/events?format=csv", role="viewer", expect=200)
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [r["kind"] for r in rows] == ev


async def test_rule13_hearing_sooner_than_a_day_is_late_and_runs_at_once(ctl):
    now = ctl.clock()
    _, h = await ctl.schedule(start=now + 2 * H)
    assert h["test_request"]["late"] is True
    assert dt.datetime.fromisoformat(h["test_request"]["deadline"]) == now
    await ctl.scheduler.run_until_idle()
    assert [s["kind"] for s in ctl.gw.started] == ["test"]


async def test_rule13_overdue_flag_when_the_agent_is_away(ctl):
    ctl.gw.offline.add("sizo-almaty-1")
    start = ctl.clock() + 30 * H
    _, h = await ctl.schedule(start=start)
    await ctl.scheduler.run_until_idle()
    assert ctl.gw.started == []
    h1 = await ctl.hearing(h["id"])
    assert h1["test_request"]["status"] == "pending" and not h1["test_request"]["overdue"]
    assert "check_retry" in kinds(await ctl.events(h["id"]))

    ctl.clock.set(start - 24 * H)                                     # the deadline
    await ctl.scheduler.run_until_idle()
    h2 = await ctl.hearing(h["id"])
    assert h2["test_request"]["status"] == "overdue" and h2["test_request"]["overdue"]
    _, metrics = await ctl.call("GET", "/metrics", role=None, expect=200)
    assert 'vks_checks_overdue{kind="test"} 1.0' in metrics

    ctl.gw.offline.clear()                                            # back: the late test still runs
    ctl.clock.advance(minutes=5)
    await ctl.scheduler.run_until_idle()
    assert [s["kind"] for s in ctl.gw.started] == ["test"]
    await ctl.checks.on_session_result(ctl.gw.started[0]["session_id"], report("degraded"))
    h3 = await ctl.hearing(h["id"])
    assert h3["test_request"]["status"] == "passed" and h3["test_request"]["overdue"] is True
    assert h3["verdict"] == "degraded"
    assert kinds(await ctl.events(h["id"])).count("check_overdue") == 1


async def test_rule15_preconnect_runs_in_its_window_not_before(ctl):
    start = ctl.clock() + 48 * H
    _, h = await ctl.schedule(start=start)
    await ctl.scheduler.run_until_idle()
    await ctl.checks.on_session_result(ctl.gw.started[0]["session_id"], report("good"))
    ctl.clock.set(start - dt.timedelta(minutes=31))
    await ctl.scheduler.run_until_idle()
    assert [s["kind"] for s in ctl.gw.started] == ["test"]
    ctl.clock.set(start - dt.timedelta(minutes=30))
    await ctl.scheduler.run_until_idle()
    assert [s["kind"] for s in ctl.gw.started] == ["test", "preconnect"]
    ctl.clock.advance(minutes=1)
    await ctl.checks.on_session_result(ctl.gw.started[1]["session_id"], report("unusable"))
    h2 = await ctl.hearing(h["id"])
    assert h2["preconnect"]["status"] == "failed" and h2["verdict"] == "unusable"


async def test_session_failure_is_retried_then_result(ctl):
    _, h = await ctl.schedule(start=ctl.clock() + 48 * H)
    await ctl.scheduler.run_until_idle()
    await ctl.checks.on_session_failed(ctl.gw.started[0]["session_id"], "agent disconnected")
    assert (await ctl.hearing(h["id"]))["test_request"]["status"] == "pending"
    ctl.clock.advance(seconds=ctl.settings.scheduler.retry_s)
    await ctl.scheduler.run_until_idle()
    assert len(ctl.gw.started) == 2
    await ctl.checks.on_session_result(ctl.gw.started[0]["session_id"], report("good"))   # stale: ignored
    assert (await ctl.hearing(h["id"]))["test_request"]["status"] == "running"
    await ctl.checks.on_session_result(ctl.gw.started[1]["session_id"], report("good"))
    assert (await ctl.hearing(h["id"]))["test_request"]["status"] == "passed"


@pytest.mark.parametrize("connected, status", [(None, "failed"), ("absent", "passed"), (True, "passed")],
                         ids=["null", "absent", "true"])
async def test_connected_null_fails_the_check_and_an_absent_key_does_not(ctl, connected, status):
    """A report that says `"connected": null` did not connect: its check fails whatever verdict it
    carries. A report without the key (an older agent's) connected."""
    _, h = await ctl.schedule(start=ctl.clock() + 48 * H)
    await ctl.scheduler.run_until_idle()
    sent = report("good")
    if connected == "absent":
        del sent["connected"]
    else:
        sent["connected"] = connected
    await ctl.checks.on_session_result(ctl.gw.started[0]["session_id"], sent)
    assert (await ctl.hearing(h["id"]))["test_request"]["status"] == status


async def test_session_that_never_reports_times_out_and_is_retried(ctl):
    _, h = await ctl.schedule(start=ctl.clock() + 48 * H)
    await ctl.scheduler.run_until_idle()
    first = ctl.gw.started[0]["session_id"]
    cs = ctl.settings.checks
    ctl.clock.advance(seconds=cs.test_duration_s + ctl.settings.scheduler.result_grace_s + 1)
    await ctl.scheduler.run_until_idle()
    assert first not in ctl.gw.stopped            # its capacity ramps may still run (contract.wire)
    ctl.clock.advance(seconds=session_span_s(cs.test_duration_s, cs.test_capacity) - cs.test_duration_s)
    await ctl.scheduler.run_until_idle()
    assert first in ctl.gw.stopped
    ctl.clock.advance(seconds=ctl.settings.scheduler.retry_s)
    await ctl.scheduler.run_until_idle()
    assert len(ctl.gw.started) == 2
    ev = kinds(await ctl.events(h["id"]))
    assert ev.count("check_started") == 2 and "check_retry" in ev


async def test_rule24_suspension_blocks_checks_and_flags_hearings_until_lifted(ctl):
    _, h = await ctl.schedule(start=ctl.clock() + 48 * H)
    _, other = await ctl.schedule(start=ctl.clock() + 48 * H, room=("almaty-medeu-district", "Зал 2"),
                                  participants=("inst-karaganda-1",))
    status, s = await ctl.call("POST", "/api/v1/suspensions", role="coordinator",
                               json={"institution_id": "sizo-almaty-70-1", "reason": "riot", "note": "mass riot"})
    assert status == 201, s
    SuspensionOut.model_validate(s)
    assert s["affected_hearings"] == [h["id"]] and s["active"]
    await ctl.scheduler.run_until_idle()
    assert [st["callee"] for st in ctl.gw.started] == ["inst-karaganda-1"]     # nothing at the SIZO
    blocked = await ctl.hearing(h["id"])
    assert blocked["suspended"] and blocked["verdict"] == "suspended"
    assert blocked["test_request"]["status"] == "blocked"
    assert not (await ctl.hearing(other["id"]))["suspended"]

    # a run requested by a technician does not get around it
    await ctl.call("POST", f"/api/v1/hearings/{h['id']}/checks", role="technician", json={"kind": "test"}, expect=202)
    await ctl.scheduler.run_until_idle()
    assert len(ctl.gw.started) == 1

    ctl.clock.advance(H)
    await ctl.call("DELETE", f"/api/v1/suspensions/{s['id']}", role="coordinator", expect=200)
    lifted = await ctl.hearing(h["id"])
    assert not lifted["suspended"] and lifted["test_request"]["status"] == "pending"
    await ctl.scheduler.run_until_idle()
    assert [st["callee"] for st in ctl.gw.started] == ["inst-karaganda-1", "sizo-almaty-1"]
    ev = kinds(await ctl.events(h["id"]))
    assert "suspended" in ev and "check_blocked" in ev and "suspension_lifted" in ev


async def test_rule24_area_suspension_with_an_end_time(ctl):
    _, h = await ctl.schedule(start=ctl.clock() + 48 * H, room=("almaty-medeu-district", "Зал 2"),
                              participants=("inst-karaganda-1",))
    # an emergency in Almaty does not touch a hearing at an Almaty court with a Karaganda colony:
    # rule 24 suspends VKS at the penitentiary institutions of the area, not at courts
    _, almaty = await ctl.call("POST", "/api/v1/suspensions", role="coordinator",
                               json={"region": "Almaty", "reason": "natural_disaster"}, expect=201)
    assert almaty["affected_hearings"] == []
    await ctl.call("DELETE", f"/api/v1/suspensions/{almaty['id']}", role="coordinator", expect=200)
    until = ctl.clock() + 6 * H
    _, s = await ctl.call("POST", "/api/v1/suspensions", role="coordinator",
                          json={"region": "Karaganda", "reason": "state_of_emergency",
                                "until_utc": until.isoformat()}, expect=201)
    assert s["affected_hearings"] == [h["id"]]
    await ctl.scheduler.run_until_idle()
    assert ctl.gw.started == []
    ctl.clock.set(until)
    await ctl.scheduler.run_until_idle()
    assert [st["callee"] for st in ctl.gw.started] == ["inst-karaganda-1"]
    _, active = await ctl.call("GET", "/api/v1/suspensions?active=true", role="viewer", expect=200)
    assert active["items"] == []


async def test_409_room_or_terminal_booked_twice_and_nothing_half_written(ctl):
    start = ctl.clock() + 48 * H
    _, h = await ctl.schedule(start=start)
    _, audit_before = await ctl.call("GET", "/api/v1/audit", expect=200)
    # the same room, overlapping
    _, body = await ctl.schedule(start=start + dt.timedelta(minutes=30), participants=("inst-karaganda-1",),
                                 expect=409)
    assert body["error"] == "booked" and body["conflicts"][0]["hearing_id"] == h["id"]
    # the same SIZO terminal from another room, overlapping
    _, body = await ctl.schedule(start=start + dt.timedelta(minutes=59), room=("almaty-medeu-district", "Зал 2"),
                                 expect=409)
    assert "sizo-almaty-1" in body["message"]
    _, listed = await ctl.call("GET", "/api/v1/hearings", role="viewer", expect=200)
    assert [x["id"] for x in listed["items"]] == [h["id"]]
    _, audit_after = await ctl.call("GET", "/api/v1/audit", expect=200)
    assert audit_after["items"] == audit_before["items"]
    # back to back is fine; a cancelled hearing frees the room
    await ctl.schedule(start=start + H, participants=("inst-karaganda-1",))
    await ctl.call("DELETE", f"/api/v1/hearings/{h['id']}", role="secretary", expect=200)
    await ctl.schedule(start=start, participants=("sizo-almaty-2",), duration_min=60)
    # moving a hearing onto a booked slot is refused too
    _, third = await ctl.schedule(start=start + 5 * H, participants=("sizo-almaty-2",))
    status, body = await ctl.call("PATCH", f"/api/v1/hearings/{third['id']}", role="secretary",
                                  json={"start_utc": (start + dt.timedelta(minutes=10)).isoformat()})
    assert status == 409, body


async def test_bad_input_is_400_naming_the_field(ctl):
    room = await ctl.room_id("almaty-medeu-district")
    good = {"case_number": "1-1/2026", "room_id": room, "start_utc": (ctl.clock() + 48 * H).isoformat(),
            "participants": [{"terminal_id": "sizo-almaty-1"}]}
    cases = [
        ({k: v for k, v in good.items() if k != "participants"}, "participants"),
        ({**good, "start_utc": "2026-12-05T10:00:00"}, "start_utc"),
        ({**good, "duration_min": 0}, "duration_min"),
        ({**good, "room_id": 99999}, "room_id"),
        ({**good, "participants": [{"terminal_id": "nope"}]}, "participants.0.terminal_id"),
        ({**good, "participants": [{"terminal_id": "court-almaty-1"}]}, "participants.0.terminal_id"),
        ({**good, "surprise": 1}, "surprise"),
        ({**good, "start_utc": (ctl.clock() - 48 * H).isoformat()}, "start_utc"),
    ]
    for body, field in cases:
        status, err = await ctl.call("POST", "/api/v1/hearings", role="secretary", json=body)
        assert (status, err["error"], err["field"]) == (400, "invalid", field), (body, err)
    status, err = await ctl.call("POST", "/api/v1/hearings", role="secretary", data=b"{not json",
                                 expect=400)
    assert err["field"] == "body"
    status, err = await ctl.call("POST", "/api/v1/suspensions", role="coordinator",
                                 json={"reason": "riot"}, expect=400)
    assert err["field"] == "institution_id"
    status, err = await ctl.call("POST", "/api/v1/suspensions", role="coordinator",
                                 json={"institution_id": "sizo-almaty-70-1", "reason": "boredom"}, expect=400)
    assert err["field"] == "reason"
    big = b'{"case_number": "' + b"x" * (ctl.settings.max_body_bytes + 10) + b'"}'
    status, err = await ctl.call("POST", "/api/v1/hearings", role="secretary", data=big)
    assert status == 413 and err["error"] == "too_large"
    _, err = await ctl.call("GET", "/api/v1/hearings/4242", expect=404)
    assert err["error"] == "not_found"
    await ctl.call("GET", "/api/v1/hearings/abc", expect=404)
    _, listed = await ctl.call("GET", "/api/v1/hearings", expect=200)
    assert listed["items"] == []


async def test_tokens_and_least_privilege(ctl):
    status, err = await ctl.call("GET", "/api/v1/hearings", role=None, expect=401)
    assert err["error"] == "unauthorized"
    await ctl.call("GET", "/api/v1/hearings", token="not-a-token", expect=401)
    start = ctl.clock() + 48 * H
    await ctl.schedule(start=start, role="viewer", expect=403)
    await ctl.schedule(start=start, role="technician", expect=403)
    await ctl.schedule(start=start, role="coordinator", expect=403)
    _, h = await ctl.schedule(start=start, role="secretary")
    susp = {"institution_id": "sizo-almaty-70-1", "reason": "escape"}
    await ctl.call("POST", "/api/v1/suspensions", role="secretary", json=susp, expect=403)
    await ctl.call("POST", f"/api/v1/hearings/{h['id']}/checks", role="secretary", json={}, expect=403)
    await ctl.call("POST", f"/api/v1/hearings/{h['id']}/checks", role="technician", json={}, expect=202)
    await ctl.call("POST", "/api/v1/terminals", role="technician",
                   json={"id": "t-x", "institution_id": "sizo-almaty-70-1", "name": "x"}, expect=403)
    await ctl.call("GET", "/api/v1/audit", role="coordinator", expect=403)
    _, terms = await ctl.call("GET", "/api/v1/terminals", role="viewer", expect=200)
    online = {t["id"] for t in terms["items"] if t["online"]}
    assert online == {"court-almaty-1", "sizo-almaty-1"}
    # public: health, the API document, metrics
    await ctl.call("GET", "/healthz", role=None, expect=200)
    await ctl.call("GET", "/api/v1/openapi.json", role=None, expect=200)
    # a user made through the API gets a working token; the audit names who did what
    _, u = await ctl.call("POST", "/api/v1/users", json={"name": "aigerim", "role": "viewer"}, expect=201)
    await ctl.call("GET", "/api/v1/hearings", token=u["token"], expect=200)
    _, audit = await ctl.call("GET", "/api/v1/audit", expect=200)
    actions = {(a["who"], a["action"]) for a in audit["items"]}
    assert ("secretary-1", "hearing.create") in actions and ("technician-1", "check.run") in actions
    assert ("admin-1", "user.create") in actions
    await ctl.call("DELETE", "/api/v1/users/aigerim/tokens", role="secretary", expect=403)
    _, r = await ctl.call("DELETE", "/api/v1/users/aigerim/tokens", expect=200)
    assert r == {"revoked": 1}
    await ctl.call("GET", "/api/v1/hearings", token=u["token"], expect=401)
    await ctl.call("DELETE", "/api/v1/users/nobody/tokens", expect=404)


async def test_rules11_12_agreement_by_the_right_coordinator(ctl):
    _, h = await ctl.schedule(start=ctl.clock() + 48 * H, room=("supreme-court", "Зал кассационной коллегии 1"),
                              participants=("inst-karaganda-1",))
    assert h["agreement"]["coordinator"] == "department"
    _, u = await ctl.call("POST", "/api/v1/users", json={"name": "reg", "role": "coordinator", "scope": "regional",
                                                         "regions": ["Astana"]},
                          expect=201)
    await ctl.call("POST", f"/api/v1/hearings/{h['id']}/agreement", token=u["token"], json={}, expect=403)
    await ctl.call("POST", f"/api/v1/hearings/{h['id']}/agreement", role="secretary", json={}, expect=403)
    _, agreed = await ctl.call("POST", f"/api/v1/hearings/{h['id']}/agreement", role="coordinator",
                               json={"note": "ok"}, expect=200)
    assert agreed["agreement"]["state"] == "given" and agreed["agreement"]["by"] == "coordinator-1"
    await ctl.call("POST", f"/api/v1/hearings/{h['id']}/agreement", role="coordinator", json={}, expect=409)
    assert "agreement_given" in kinds(await ctl.events(h["id"]))


async def test_patch_start_replans_and_delete_cancels(ctl):
    start = ctl.clock() + 48 * H
    _, h = await ctl.schedule(start=start)
    new_start = start + 24 * H
    _, p = await ctl.call("PATCH", f"/api/v1/hearings/{h['id']}", role="secretary",
                          json={"start_utc": new_start.isoformat()}, expect=200)
    assert dt.datetime.fromisoformat(p["test_request"]["deadline"]) == new_start - 24 * H
    assert dt.datetime.fromisoformat(p["preconnect"]["window"]["opens"]) == new_start - dt.timedelta(minutes=30)
    await ctl.scheduler.run_until_idle()
    assert len(ctl.gw.started) == 1
    _, c = await ctl.call("DELETE", f"/api/v1/hearings/{h['id']}", role="secretary", expect=200)
    assert c["status"] == "cancelled" and c["test_request"]["status"] == "cancelled"
    assert ctl.gw.stopped == [ctl.gw.started[0]["session_id"]]
    ctl.clock.set(new_start - dt.timedelta(minutes=30))
    await ctl.scheduler.run_until_idle()
    assert len(ctl.gw.started) == 1                                  # no pre-connect for a cancelled hearing
    await ctl.call("PATCH", f"/api/v1/hearings/{h['id']}", role="secretary", json={"duration_min": 30}, expect=409)
    ev = kinds(await ctl.events(h["id"]))
    assert "hearing_updated" in ev and ev[-1] == "hearing_cancelled"


async def test_exports_json_and_csv_carry_the_verdict(ctl):
    _, h = await ctl.schedule(start=ctl.clock() + 48 * H)
    await ctl.scheduler.run_until_idle()
    await ctl.checks.on_session_result(ctl.gw.started[0]["session_id"], report("good"))
    _, j = await ctl.call("GET", "/api/v1/exports/hearings?format=json", role="viewer", expect=200)
    assert j["schema"] == "vks.hearings-export/1"
    row = j["hearings"][0]
    assert (row["id"], row["verdict"], row["test_status"], row["room"]) == (h["id"], "good", "passed", "Зал 1")
    resp = await ctl.client.get("/api/v1/exports/hearings?format=csv",
                                headers={"Authorization": f"Bearer {ctl.tokens['viewer']}"})
    assert resp.status == 200 and resp.headers["Content-Type"].startswith("text/csv")
    text = await resp.text()
    assert text.splitlines()[0] == (
        "id,case_number,court_id,court_name,court_level,room,start_utc,start_local,duration_min,status,verdict,"
        "suspended,participants,test_status,test_deadline,test_verdict,preconnect_status,preconnect_verdict,"
        "agreement_coordinator,agreement_state,modes,self_checks") and text.endswith("\r\n")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert rows[0]["verdict"] == "good" and rows[0]["court_name"].startswith("Медеуский")
    assert rows[0]["preconnect_verdict"] == "" and rows[0]["suspended"] == "False"
    await ctl.call("GET", "/api/v1/exports/hearings?format=xml", role="viewer", expect=400)


async def test_registry_crud(ctl):
    _, inst = await ctl.call("POST", "/api/v1/institutions", json={
        "id": "sizo-pavlodar-1", "kind": "sizo", "name": "СИЗО Павлодар", "region": "Pavlodar",
        "timezone": "Asia/Almaty"}, expect=201)
    _, err = await ctl.call("POST", "/api/v1/institutions", json={
        "id": "court-x", "kind": "court", "name": "x", "region": "x"}, expect=400)
    assert err["field"] == "level"
    await ctl.call("POST", "/api/v1/institutions", json={**{k: inst[k] for k in ("id", "kind", "name", "region")}},
                   expect=409)
    _, err = await ctl.call("POST", "/api/v1/institutions", json={
        "id": "x-1", "kind": "sizo", "name": "x", "region": "x", "timezone": "Mars/Olympus"}, expect=400)
    assert err["field"] == "timezone"
    _, t = await ctl.call("POST", "/api/v1/terminals", json={"id": "sizo-pavlodar-t1", "institution_id": inst["id"],
                                                             "name": "ВКС 1"}, expect=201)
    assert t["role"] == "institution" and t["online"] is False
    await ctl.call("PATCH", "/api/v1/terminals/sizo-pavlodar-t1", json={"name": "ВКС один"}, expect=200)
    await ctl.call("DELETE", f"/api/v1/institutions/{inst['id']}", expect=409)        # still has a terminal
    await ctl.call("DELETE", "/api/v1/terminals/sizo-pavlodar-t1", expect=204)
    await ctl.call("DELETE", f"/api/v1/institutions/{inst['id']}", expect=204)
    await ctl.call("GET", f"/api/v1/institutions/{inst['id']}", expect=404)
    _, room = await ctl.call("POST", "/api/v1/rooms", json={"institution_id": "almaty-city-court", "name": "Зал 9"},
                             expect=201)
    await ctl.call("POST", "/api/v1/rooms", json={"institution_id": "almaty-city-court", "name": "Зал 9"}, expect=409)
    await ctl.call("DELETE", f"/api/v1/rooms/{room['id']}", expect=204)


async def test_openapi_document_lists_the_contract(ctl):
    _, doc = await ctl.call("GET", "/api/v1/openapi.json", role=None, expect=200)
    assert doc["openapi"].startswith("3.1")
    paths = doc["paths"]
    for path, methods in {
        "/api/v1/hearings": {"get", "post"}, "/api/v1/hearings/{id}": {"get", "patch", "delete"},
        "/api/v1/hearings/{id}/events": {"get"}, "/api/v1/exports/hearings": {"get"},
        "/api/v1/suspensions": {"get", "post"}, "/api/v1/suspensions/{id}": {"delete", "get"},
        "/api/v1/terminals": {"get", "post"}, "/healthz": {"get"}, "/metrics": {"get"},
        "/api/v1/openapi.json": {"get"},
    }.items():
        assert methods <= set(paths[path]), path
    hearing = doc["components"]["schemas"]["HearingOut"]
    assert {"test_request", "preconnect", "verdict"} <= set(hearing["properties"])
    # every documented route is served: an unauthenticated call is never 404/405
    for path, ops in paths.items():
        for method in ops:
            resp = await ctl.client.request(method.upper(), path.replace("{id}", "1").replace("{name}", "x")
                                            .replace("{a}", "x").replace("{b}", "y"))
            assert resp.status not in (404, 405), (method, path, resp.status)


async def test_health_and_metrics(ctl):
    _, health = await ctl.call("GET", "/healthz", role=None, expect=200)
    HealthOut.model_validate(health)
    assert health["status"] == "ok" and health["database"] == "ok" and health["scheduler"] == "off"
    await ctl.schedule(start=ctl.clock() + 48 * H)
    _, text = await ctl.call("GET", "/metrics", role=None, expect=200)
    assert 'vks_hearings{verdict="unknown"} 1.0' in text
    assert 'vks_hearings{verdict="good"} 0.0' in text


async def test_two_controllers_on_one_database_start_each_check_once(db_url, fake_clock):
    async with Controller(db_url, fake_clock) as a, Controller(db_url, fake_clock, seed=False) as b:
        start = fake_clock() + 48 * H
        ids = []
        for i, (room, remote) in enumerate([("Зал 1", "sizo-almaty-1"), ("Зал 2", "sizo-almaty-2")]):
            for day in range(3):
                ctl = (a, b)[(i + day) % 2]
                _, h = await ctl.schedule(start=start + day * 24 * H, room=("almaty-medeu-district", room),
                                          participants=(remote,))
                ids.append(h["id"])
        await asyncio.gather(a.scheduler.run_until_idle(), b.scheduler.run_until_idle())
        started = a.gw.started + b.gw.started
        assert len(started) == len(ids) == len({s["session_id"] for s in started})
        for s in a.gw.started:
            await a.checks.on_session_result(s["session_id"], report("good"))
        for s in b.gw.started:
            await b.checks.on_session_result(s["session_id"], report("good"))
        for hid in ids:
            h = await b.hearing(hid)
            assert h["test_request"]["status"] == "passed" and h["verdict"] == "good"


async def test_rule24_future_suspension_and_hearings_scheduled_while_suspended(ctl):
    start = ctl.clock() + 72 * H
    _, s = await ctl.call("POST", "/api/v1/suspensions", role="coordinator", json={
        "institution_id": "sizo-almaty-70-1", "reason": "hostage_taking",
        "from_utc": (ctl.clock() + H).isoformat()}, expect=201)
    assert s["active"] is False
    _, h = await ctl.schedule(start=start)
    # flagged (it will be in force at the start), but the test may still run before it begins
    assert h["suspended"] and h["suspension_ids"] == [s["id"]] and h["test_request"]["status"] == "pending"
    await ctl.scheduler.run_until_idle()
    assert len(ctl.gw.started) == 1
    ctl.clock.advance(H)                                              # the suspension begins
    await ctl.scheduler.run_until_idle()
    h = await ctl.hearing(h["id"])
    assert h["suspended"] and h["verdict"] == "suspended" and h["test_request"]["status"] == "blocked"
    assert ctl.gw.stopped == [ctl.gw.started[0]["session_id"]]       # the running test was stopped
    _, h2 = await ctl.schedule(start=start + 3 * H)                   # scheduled while suspended
    assert h2["suspended"] and h2["test_request"]["status"] == "blocked"
    await ctl.scheduler.run_until_idle()
    assert len(ctl.gw.started) == 1


async def test_patch_participants_cancels_removed_and_requests_added(ctl):
    _, h = await ctl.schedule(start=ctl.clock() + 48 * H)
    await ctl.scheduler.run_until_idle()
    running = ctl.gw.started[0]["session_id"]
    _, p = await ctl.call("PATCH", f"/api/v1/hearings/{h['id']}", role="secretary",
                          json={"participants": [{"terminal_id": "inst-karaganda-1"}]}, expect=200)
    assert [x["terminal_id"] for x in p["participants"]] == ["inst-karaganda-1"]
    items = {i["callee"]: i["status"] for i in p["test_request"]["items"]}
    assert items == {"sizo-almaty-1": "cancelled", "inst-karaganda-1": "pending"}
    assert p["test_request"]["status"] == "pending" and ctl.gw.stopped == [running]
    await ctl.scheduler.run_until_idle()
    assert [s["callee"] for s in ctl.gw.started] == ["sizo-almaty-1", "inst-karaganda-1"]
    # the SIZO terminal is free now for another hearing at that time; adding it back re-opens its request
    _, p = await ctl.call("PATCH", f"/api/v1/hearings/{h['id']}", role="secretary", json={
        "participants": [{"terminal_id": "inst-karaganda-1"}, {"terminal_id": "sizo-almaty-1"}]}, expect=200)
    items = {i["callee"]: i for i in p["test_request"]["items"]}
    assert items["sizo-almaty-1"]["status"] == "pending" and items["sizo-almaty-1"]["attempts"] == 0
    _, err = await ctl.call("PATCH", f"/api/v1/hearings/{h['id']}", role="secretary",
                            json={"participants": []}, expect=400)
    assert err["field"] == "participants"


async def test_concurrent_bookings_of_one_room_give_one_hearing_and_409s(ctl):
    start = ctl.clock() + 48 * H
    results = await asyncio.gather(*(
        ctl.schedule(start=start + dt.timedelta(minutes=i), participants=(remote,), expect=None)
        for i, remote in enumerate(["sizo-almaty-1", "sizo-almaty-2", "inst-karaganda-1", "sizo-kyzylorda-1"] * 2)))
    statuses = sorted(status for status, _ in results)
    assert statuses == [201] + [409] * 7, [b for _, b in results]
    _, listed = await ctl.call("GET", "/api/v1/hearings", expect=200)
    assert len(listed["items"]) == 1


async def test_vocabularies_are_served_from_the_contract(ctl):
    """The web page reads every word list from GET /api/v1/vocabularies: any signed-in user, each list in
    the contract's order, and listed in the API document like every route."""
    from contract.vocab import PUBLISHED, HearingStatus, SuspensionReason

    await ctl.call("GET", "/api/v1/vocabularies", role=None, expect=401)
    _, vocab = await ctl.call("GET", "/api/v1/vocabularies", role="viewer", expect=200)
    assert vocab == {name: [w.value for w in words] for name, words in PUBLISHED.items()}
    assert vocab["hearing_statuses"] == ["scheduled", "in_progress", "held", "postponed", "cancelled"]
    assert vocab["suspension_reasons"] == [r.value for r in SuspensionReason]
    _, doc = await ctl.call("GET", "/api/v1/openapi.json", role=None, expect=200)
    op = doc["paths"]["/api/v1/vocabularies"]["get"]
    assert op["x-permission"] == "read"
    # the word lists that filter the API are the contract's: an unknown status is refused by name
    _, err = await ctl.call("GET", "/api/v1/hearings?status=adjourned", expect=400)
    assert err["field"] == "status" and ", ".join(HearingStatus) in err["message"]
