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

from tests.reliability_kit import ControllerProc, http
from tests.test_link_dbdown import RestartablePg
from tests.test_link_e2e import wait_for

pytestmark = pytest.mark.postgres


@pytest.fixture
def pg():
    p = RestartablePg()
    yield p
    p.stop()


def hearing_body(room_id: int, start: dt.datetime, case: str) -> dict:
    return {"case_number": case, "room_id": room_id, "start_utc": start.isoformat(), "duration_min": 30,
            "participants": [{"terminal_id": "sizo-almaty-1"}]}


def test_database_outage_the_controller_lives_through_and_catches_up(pg, tmp_path):
    url = pg.create_database(f"out_{uuid.uuid4().hex[:8]}")
    c = ControllerProc(tmp_path, url, config={"scheduler": {"poll_s": 0.2, "retry_s": 1, "lease_s": 5}})
    admin = c.prepare()
    c.start()
    try:
        _, rooms = http("GET", c.url + "/api/v1/rooms?institution_id=almaty-medeu-district", admin)
        room_id = next(r["id"] for r in rooms["items"] if r["name"] == "Зал 1")
        now = dt.datetime.now(dt.timezone.utc)
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
