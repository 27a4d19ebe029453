"""Which side (issue 12, part 2) through the real controller's API: a degraded check or on-demand
test tests each side against the reference terminal in the data centre, and its `finding` shows on
GET /api/v1/tests/{id} and on the hearing's check, with a `check_finding` event - only to those who
may see the test or the hearing. The agents are a gateway that stores the side sessions' reports as
the hub does (the real agents: tests/test_diagnosis_netlab.py)."""
from __future__ import annotations

import asyncio
import datetime as dt

import pytest

from contract.wire import session_span_s
from controller.api.tests import AdhocTestOut
from controller.keys import DIAGNOSIS_KEY
from controller.models import HearingOut
from controller.store import agents as agents_repo
from controller.store import diagnoses as diag_repo
from tests.controller_kit import Controller, report
from tests.diagnosis_kit import REF, SideAgents
from tests.procs import eventually

H = dt.timedelta(hours=1)


@pytest.fixture
async def dctl(db_url, fake_clock):
    holder: dict = {}
    gw = SideAgents(lambda: holder["ctl"])
    async with Controller(db_url, fake_clock, gateway=gw, diagnosis={"duration_s": 5}) as ctl:
        holder["ctl"] = ctl
        for name, role, extra in (("tech-almaty", "technician", {"regions": ["Almaty"]}),
                                  ("tech-kyz", "technician", {"regions": ["Kyzylorda"]})):
            _, u = await ctl.call("POST", "/api/v1/users", expect=201, json={"name": name, "role": role, **extra})
            ctl.tokens[name] = u["token"]
        yield ctl


async def caller_report(ctl, sid: str, caller: str, rep: dict) -> None:
    """The caller's final report of an on-demand test, as the hub stores it."""
    async with ctl.db.transaction() as conn:
        await agents_repo.store_reports(conn, [agents_repo.NewReport(
            caller, f"r-{sid}", "session", sid, {"role": "caller", "report": rep}, None)])


def side_time_up(ctl) -> float:
    """Seconds after which a side session that never reported is given up: its media (5 s), the
    capacity ramps it was asked for, and the grace."""
    return session_span_s(5, ctl.settings.checks.test_capacity) + ctl.settings.diagnosis.result_grace_s + 1


async def settle(ctl) -> None:
    await asyncio.wait_for(ctl.app[DIAGNOSIS_KEY].idle(), 30)


async def test_a_degraded_test_names_the_lossy_side_to_its_readers_only(dctl):
    dctl.gw.side = {"court-almaty-1": report("good"), "sizo-almaty-1": report("degraded", loss=0.07)}
    _, t = await dctl.call("POST", "/api/v1/tests", token=dctl.tokens["tech-almaty"], expect=202,
                           json={"caller": "court-almaty-1", "callee": "sizo-almaty-1", "duration_s": 5})
    sid = t["id"]
    await caller_report(dctl, sid, "court-almaty-1", report("degraded", loss=0.07))
    await settle(dctl)
    sides = [s for s in dctl.gw.started if s["session_id"].startswith("diag-")]
    assert sorted((s["caller"], s["callee"], s["kind"]) for s in sides) == [
        ("court-almaty-1", REF, "test"), ("sizo-almaty-1", REF, "test")]
    assert {s["duration_s"] for s in sides} == {5.0}
    _, got = await dctl.call("GET", f"/api/v1/tests/{sid}", token=dctl.tokens["tech-almaty"], expect=200)
    AdhocTestOut.model_validate(got)
    f = got["finding"]
    assert got["diagnosis"] == "done" and got["verdict"] == "degraded"
    assert (f["code"], f["side"], f["segment"]) == ("access_link_b", "sizo-almaty-1", "b")
    assert f["figures"]["b"]["loss_ratio"] == 0.07 and f["figures"]["a"]["verdict"] == "good"
    assert f["figures"]["reference"] == REF
    assert f["text"] == ("СИЗО ДС-70/1 г. Алматы's access link loses 7.0% toward the data centre (degraded); "
                         "Медеуский районный суд г. Алматы's side is clean")
    _, metrics = await dctl.call("GET", "/metrics", role=None, expect=200)
    assert 'vks_controller_diagnoses_total{finding="access_link_b"} 1.0' in metrics
    assert 'vks_controller_diagnoses_total{finding="between"} 0.0' in metrics
    # Not in the Kyzylorda technician's scope: no test at all, so no finding either.
    status, _ = await dctl.call("GET", f"/api/v1/tests/{sid}", token=dctl.tokens["tech-kyz"])
    assert status == 404


async def test_a_clean_test_has_no_finding_and_is_not_diagnosed(dctl):
    _, t = await dctl.call("POST", "/api/v1/tests", expect=202,
                           json={"caller": "court-almaty-1", "callee": "sizo-almaty-1", "duration_s": 5})
    await caller_report(dctl, t["id"], "court-almaty-1", report("good"))
    await settle(dctl)
    _, got = await dctl.call("GET", f"/api/v1/tests/{t['id']}", expect=200)
    assert (got["verdict"], got["diagnosis"], got["finding"]) == ("good", None, None)
    assert not [s for s in dctl.gw.started if s["session_id"].startswith("diag-")]


async def test_no_side_sessions_through_the_links_as_the_hearing_opens(dctl):
    """A pre-connect check failing 20 minutes before the start is not followed by two side sessions
    (and their capacity ramps) through the SIZO's link while the hearing opens: the sides are named
    untested, with why."""
    dctl.gw.side = {"court-almaty-1": report("good"), "sizo-almaty-1": report("degraded", loss=0.07)}
    dctl.settings.diagnosis.duration_s = 30 * 60          # side sessions that would outlast the start
    _, h = await dctl.schedule(start=dctl.clock() + 25 * dt.timedelta(minutes=1))
    await dctl.scheduler.run_until_idle()
    for s in list(dctl.gw.started):
        await dctl.checks.on_session_result(s["session_id"], report("unusable", loss=0.07))
    await settle(dctl)
    assert [s for s in dctl.gw.started if s["session_id"].startswith("diag-")] == []
    item = (await dctl.hearing(h["id"]))["test_request"]["items"][0]
    assert item["finding"]["code"] == "side_untested"
    assert "starts before the side tests" in item["finding"]["text"]


async def test_a_failed_check_carries_its_finding_and_an_event_in_the_hearing(dctl):
    dctl.gw.side = {"court-almaty-1": report("good"), "sizo-almaty-1": report("good")}
    _, h = await dctl.schedule(start=dctl.clock() + 48 * H)
    await dctl.scheduler.run_until_idle()
    check_sid = dctl.gw.started[0]["session_id"]
    await dctl.checks.on_session_result(check_sid, report("unusable", connected=False))
    await settle(dctl)
    view = await dctl.hearing(h["id"])
    HearingOut.model_validate(view)
    item = view["test_request"]["items"][0]
    assert item["diagnosis"] == "done"
    assert (item["finding"]["code"], item["finding"]["segment"]) == ("between_no_path", "between")
    _, events = await dctl.call("GET", f"/api/v1/hearings/{h['id']}/events", token=dctl.tokens["tech-almaty"],
                                expect=200)
    found = [e for e in events["items"] if e["kind"] == "check_finding"]
    assert len(found) == 1 and found[0]["detail"]["code"] == "between_no_path"
    assert found[0]["detail"]["check_id"] == item["id"] and found[0]["detail"]["reference"] == REF
    # The hearing is out of the Kyzylorda technician's scope: neither it nor its finding is shown.
    status, _ = await dctl.call("GET", f"/api/v1/hearings/{h['id']}", token=dctl.tokens["tech-kyz"])
    assert status == 404

    # Run again and clean: the earlier run's finding is not shown with it, and nothing is diagnosed.
    dctl.clock.advance(minutes=1)
    await dctl.call("POST", f"/api/v1/hearings/{h['id']}/checks", json={"kind": "test"}, expect=202)
    await dctl.scheduler.run_until_idle()
    view = await dctl.hearing(h["id"])
    assert (view["test_request"]["items"][0]["finding"], view["test_request"]["items"][0]["diagnosis"]) == (None, None)
    started = len(dctl.gw.started)
    await dctl.checks.on_session_result(dctl.gw.started[-1]["session_id"], report("good"))
    await settle(dctl)
    item = (await dctl.hearing(h["id"]))["test_request"]["items"][0]
    assert (item["status"], item["finding"], item["diagnosis"]) == ("passed", None, None)
    assert len(dctl.gw.started) == started


async def test_a_diagnosis_left_running_by_a_stopped_controller_is_closed_at_start(dctl):
    async with dctl.db.transaction() as conn:
        await diag_repo.start(conn, "test:adhoc-gone", {"caller": "court-almaty-1", "callee": "sizo-almaty-1",
                                                        "pair": {}}, dctl.clock() - 2 * H)
        await diag_repo.start(conn, "test:adhoc-now", {"caller": "court-almaty-1", "callee": "sizo-almaty-1",
                                                       "pair": {}}, dctl.clock())
    assert await dctl.app[DIAGNOSIS_KEY].sweep() == 1
    async with dctl.db.read() as conn:
        gone = await diag_repo.by_subject(conn, "test:adhoc-gone")
        now = await diag_repo.by_subject(conn, "test:adhoc-now")
    assert (gone["status"], gone["finding"], now["status"]) == ("done", None, "running")


async def test_without_a_reference_online_the_finding_says_so(dctl):
    dctl.gw.offline = {REF}
    _, t = await dctl.call("POST", "/api/v1/tests", expect=202,
                           json={"caller": "court-almaty-1", "callee": "sizo-almaty-1", "duration_s": 5})
    await caller_report(dctl, t["id"], "court-almaty-1", report("unusable", loss=0.2))
    await settle(dctl)
    _, got = await dctl.call("GET", f"/api/v1/tests/{t['id']}", expect=200)
    assert got["finding"]["code"] == "reference_unavailable" and got["finding"]["side"] is None


async def test_a_silent_side_is_untested_once_its_time_is_up(dctl):
    dctl.gw.side = {"court-almaty-1": report("good")}              # the SIZO's side never reports
    _, t = await dctl.call("POST", "/api/v1/tests", expect=202,
                           json={"caller": "court-almaty-1", "callee": "sizo-almaty-1", "duration_s": 5})
    await caller_report(dctl, t["id"], "court-almaty-1", report("degraded", loss=0.05))
    svc = dctl.app[DIAGNOSIS_KEY]
    for _ in range(100):                                            # the side sessions are started
        if len([s for s in dctl.gw.started if s["session_id"].startswith("diag-")]) == 2:
            break
        await asyncio.sleep(0.05)
    _, got = await dctl.call("GET", f"/api/v1/tests/{t['id']}", expect=200)
    assert got["diagnosis"] == "running" and got["finding"] is None
    dctl.clock.advance(seconds=side_time_up(dctl))
    await settle(dctl)
    _, got = await dctl.call("GET", f"/api/v1/tests/{t['id']}", expect=200)
    f = got["finding"]
    assert (f["code"], f["side"]) == ("side_untested", "sizo-almaty-1")
    assert "no result from the agents in time" in f["text"]
    assert svc.waiting == 0


async def test_diagnoses_wait_their_turn_at_the_reference(dctl):
    """At most diagnosis.max_concurrent (1) diagnoses use the reference at once: the second pair's
    side sessions start only once the first diagnosis is done."""
    dctl.gw.side = {}                                               # every side silent until told
    ids = []
    for caller, callee in (("court-almaty-1", "sizo-almaty-1"), ("court-almaty-2", "sizo-almaty-2")):
        _, t = await dctl.call("POST", "/api/v1/tests", expect=202,
                               json={"caller": caller, "callee": callee, "duration_s": 5})
        ids.append(t["id"])
        await caller_report(dctl, t["id"], caller, report("degraded", loss=0.05))
    svc = dctl.app[DIAGNOSIS_KEY]
    for _ in range(200):
        if svc.waiting == 1:
            break
        await asyncio.sleep(0.05)
    diag = [s for s in dctl.gw.started if s["session_id"].startswith("diag-")]
    assert svc.waiting == 1 and len(diag) == 2                       # one diagnosis at the reference
    dctl.clock.advance(seconds=side_time_up(dctl))
    for _ in range(200):
        if len([s for s in dctl.gw.started if s["session_id"].startswith("diag-")]) == 4:
            break
        await asyncio.sleep(0.05)
    assert svc.waiting == 0
    dctl.clock.advance(seconds=side_time_up(dctl))
    await settle(dctl)
    for sid in ids:
        _, got = await dctl.call("GET", f"/api/v1/tests/{sid}", expect=200)
        assert got["diagnosis"] == "done" and got["finding"]["code"] == "side_untested"


async def test_beyond_the_queue_at_the_reference_a_result_is_not_diagnosed(dctl):
    dctl.settings.diagnosis.max_waiting = 0
    dctl.gw.side = {}
    ids = []
    for caller, callee in (("court-almaty-1", "sizo-almaty-1"), ("court-almaty-2", "sizo-almaty-2")):
        _, t = await dctl.call("POST", "/api/v1/tests", expect=202,
                               json={"caller": caller, "callee": callee, "duration_s": 5})
        ids.append(t["id"])
        await caller_report(dctl, t["id"], caller, report("degraded", loss=0.05))
        if len(ids) == 1:      # the first one holds the reference: both its side sessions started
            await eventually(lambda: len([s for s in dctl.gw.started if s["session_id"].startswith("diag-")]) == 2,
                             timeout=30, what="the first diagnosis's side sessions")


    async def code_of(sid):
        finding = (await dctl.call("GET", f"/api/v1/tests/{sid}", expect=200))[1]["finding"]
        return finding and finding["code"]
    # The second comes while the first holds the reference and the queue is full: not run at all.
    assert await eventually(lambda: code_of(ids[1]), timeout=30, what="the second's finding") == \
        "reference_unavailable"
    dctl.clock.advance(seconds=side_time_up(dctl))
    await settle(dctl)
    assert await code_of(ids[0]) == "side_untested"
    assert len([s for s in dctl.gw.started if s["session_id"].startswith("diag-")]) == 2


async def test_a_reference_terminal_takes_no_part_in_a_hearing(dctl):
    status, out = await dctl.schedule(start=dctl.clock() + 48 * H, participants=(REF,), expect=None)
    assert status == 400 and out["field"] == "participants.0.terminal_id" and "data centre" in out["message"]
