"""Faults of the controller's surroundings (issue 7), with a real `vks-controller serve` process.

The database away for a while (PostgreSQL stopped for several seconds, then started): the process
does not die; the API answers 503 JSON (never a 500 or a traceback) and writes nothing half-way;
the scheduler retries, and once the database is back it catches up - a check whose deadline
passed during the outage is flagged overdue, and new hearings are taken as before. (The agents'
side of the same outage - reports kept and stored once - is tests/test_link_dbdown.py.)"""
from __future__ import annotations

import datetime as dt
import time
import uuid

import pytest

from tests.harness import ControllerProc, http
from tests.procs import wait_for
from tests.test_link_dbdown import RestartablePg


@pytest.fixture
def pg():
    p = RestartablePg()
    yield p
    p.stop()


def hearing_body(room_id: int, start: dt.datetime, case: str) -> dict:
    return {"case_number": case, "room_id": room_id, "start_utc": start.isoformat(), "duration_min": 30,
            "participants": [{"terminal_id": "sizo-almaty-1"}]}


@pytest.mark.postgres
def test_database_outage_the_controller_lives_through_and_catches_up(pg, tmp_path):
    url = pg.create_database(f"out_{uuid.uuid4().hex[:8]}")
    c = ControllerProc(tmp_path, url, config={"scheduler": {"poll_s": 0.2, "retry_s": 1, "lease_s": 5}})
    admin = c.prepare()
    c.start()
    try:
        _, rooms = http("GET", c.url + "/api/v1/rooms?institution_id=almaty-medeu-district", admin)
        room_id = next(r["id"] for r in rooms["items"] if r["name"] == "Зал 1")
        now = dt.datetime.now(dt.UTC)
        # Its test deadline (start - 24 h) falls due about 6 s from now: during the outage.
        status, due = http("POST", c.url + "/api/v1/hearings", admin,
                           hearing_body(room_id, now + dt.timedelta(hours=24, seconds=6), "2-100/2026"))
        assert status == 201, due
        assert due["test_request"]["overdue"] is False

        pg.pause()
        try:
            t_down = time.monotonic()
            statuses = set()
            while time.monotonic() - t_down < 10:
                assert c.proc.poll() is None, "the controller died with its database\n" + c.log_text()[-3000:]
                s1, body = http("GET", c.url + "/api/v1/hearings", admin)
                s2, _ = http("POST", c.url + "/api/v1/hearings", admin,
                             hearing_body(room_id, now + dt.timedelta(days=5), "2-LOST/2026"))
                s3, _ = http("GET", c.url + "/healthz")
                statuses |= {s1, s2, s3}
                assert s3 == 503
                assert s1 == 503 and s2 == 503 and body["error"] == "unavailable", (s1, s2, body)
                time.sleep(0.5)
        finally:
            pg.resume()

        def back():
            return http("GET", c.url + "/healthz")[0] == 200
        wait_for(back, 60, what="healthy again")
        # Caught up: the deadline that passed while the database was away is flagged.
        def flagged():
            _, h = http("GET", f"{c.url}/api/v1/hearings/{due['id']}", admin)
            return h["test_request"]["overdue"]
        wait_for(flagged, 60, what="the missed deadline flagged overdue")
        # Nothing half-written: the hearings refused during the outage do not exist.
        _, hs = http("GET", c.url + "/api/v1/hearings", admin)
        assert [h["case_number"] for h in hs["items"]] == ["2-100/2026"]
        # And the controller takes new work as before.
        status, h2 = http("POST", c.url + "/api/v1/hearings", admin,
                          hearing_body(room_id, now + dt.timedelta(days=6), "2-101/2026"))
        assert status == 201, h2
        events = http("GET", f"{c.url}/api/v1/hearings/{due['id']}/events", admin)[1]["items"]
        overdue = [e for e in events if e["kind"] == "check_overdue"]
        assert len(overdue) == 1, events
    finally:
        c.stop()
    assert c.proc.returncode == 0
    assert "Traceback" not in c.log_text() or "internal error" not in c.log_text()


def test_controller_sigkilled_twice_during_a_hearing_day_loses_and_doubles_nothing(db_url, tmp_path, agent_proc):
    """Three hearings starting in 21-27 minutes: each has its test request and its pre-connect
    check (rule 15 window open) due at once - six sessions between two real agents. The
    controller is SIGKILLed as soon as the first result is stored and again right after its
    restart. In the end every check has exactly one result, every hearing exactly one request
    event and one pre-connect event, and no result was recorded twice."""
    c = ControllerProc(tmp_path, db_url, config={
        "scheduler": {"poll_s": 0.2, "retry_s": 1, "lease_s": 2, "result_grace_s": 5},
        "checks": {"test_profile": "monitor", "test_duration_s": 2,
                   "preconnect_profile": "monitor", "preconnect_duration_s": 2},
        "live": {"enabled": False}})
    admin = c.prepare()
    tokens = {t: c.cli("terminal", "token", t) for t in ("court-almaty-1", "sizo-almaty-1")}
    c.start()
    agents = [agent_proc(t, c.ws_url, tok) for t, tok in tokens.items()]
    try:
        def online():
            _, terms = http("GET", c.url + "/api/v1/terminals", admin)
            return {"court-almaty-1", "sizo-almaty-1"} <= {t["id"] for t in terms["items"] if t.get("online")}
        wait_for(online, 60, what="agents online")
        _, rooms = http("GET", c.url + "/api/v1/rooms?institution_id=almaty-medeu-district", admin)
        room_id = next(r["id"] for r in rooms["items"] if r["name"] == "Зал 1")
        now = dt.datetime.now(dt.UTC)
        ids = []
        for i, minutes in enumerate((21, 24, 27)):
            status, h = http("POST", c.url + "/api/v1/hearings", admin, {
                **hearing_body(room_id, now + dt.timedelta(minutes=minutes), f"2-{200 + i}/2026"),
                "duration_min": 2})
            assert status == 201, h
            ids.append(h["id"])

        def checks():
            out = []
            for hid in ids:
                _, h = http("GET", f"{c.url}/api/v1/hearings/{hid}", admin)
                out += h["test_request"]["items"] + h["preconnect"]["items"]
            return out

        def results() -> int:
            try:
                return sum(1 for x in checks() if x["result"] is not None)
            except (OSError, KeyError, TypeError):
                return 0
        wait_for(lambda: results() >= 1, 90, what="a first result")
        c.kill()
        c.start()
        time.sleep(1.5)
        c.kill()
        c.start()
        wait_for(lambda: results() == 6 and all(x["status"] in ("passed", "failed") for x in checks()),
                 240, step=1, what="every check finished")
        for hid in ids:
            events = http("GET", f"{c.url}/api/v1/hearings/{hid}/events", admin)[1]["items"]
            kinds = [e["kind"] for e in events]
            assert kinds.count("test_request_created") == 1, kinds
            assert kinds.count("preconnect_scheduled") == 1, kinds
            per_check: dict = {}
            for e in events:
                if e["kind"] == "check_result":
                    cid = (e.get("detail") or e.get("data") or e).get("check_id")
                    per_check[cid] = per_check.get(cid, 0) + 1
            assert per_check and all(n == 1 for n in per_check.values()), events
        assert all(x["result"]["connected"] for x in checks()), [x["result"].get("error") for x in checks()]
    finally:
        codes = [a.stop() for a in agents]
        c.stop()
    assert codes == [0, 0]
