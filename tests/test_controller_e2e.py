"""End to end on loopback: the real controller (API, scheduler, the agent hub
over real WebSockets) and two real agents (real aiortc sessions). Scheduling a
hearing makes the controller run the test session between the courtroom and
the SIZO terminal and store the judged report - in one process, and as real
`vks-controller serve` / `vks-agent run` processes with the controller killed
mid-session."""
from __future__ import annotations

import datetime as dt
import signal
import time
from collections import Counter

import pytest

from tests.harness import TERMINALS
from tests.procs import eventually, wait_for

pytestmark = pytest.mark.timeout(120)


async def test_scheduled_hearing_gets_its_test_session_run_by_real_agents(db_url, controller_app, agent_daemon):
    c = await controller_app({"db": db_url, "scheduler": {"poll_s": 0.2, "retry_s": 1},
                              "checks": {"test_duration_s": 3, "preconnect_duration_s": 3}})
    for terminal in TERMINALS:
        await agent_daemon(c, terminal)
    await eventually(lambda: set(TERMINALS) <= c.online(), 20)

    now = dt.datetime.now(dt.UTC)
    status, h = await c.api("POST", "/api/v1/hearings", {
        "case_number": "1-77/2026", "room_id": await c.room_id(),
        "start_utc": (now + dt.timedelta(hours=3)).isoformat(), "participants": [{"terminal_id": "sizo-almaty-1"}]})
    assert status == 201, h
    hid = h["id"]

    async def tested():
        h = (await c.api("GET", f"/api/v1/hearings/{hid}"))[1]
        return h if h["test_request"]["status"] in ("passed", "failed") else None
    h = await eventually(tested, 60)
    report = h["test_request"]["result"]
    assert report["schema"] == "vks.test-report/1" and report["connected"] is True
    assert h["test_request"]["status"] == "passed", h["test_request"]
    assert h["verdict"] in ("good", "degraded")
    kinds = [e["kind"] for e in (await c.api("GET", f"/api/v1/hearings/{hid}/events"))[1]["items"]]
    assert kinds.count("check_started") == 1 and kinds.count("check_result") == 1


# --- real processes -----------------------------------------------------------------------------

@pytest.mark.timeout(180)
def test_real_processes_controller_killed_mid_session_loses_and_doubles_nothing(db_url, vks_system):
    """`vks-controller serve` and two `vks-agent run` processes. The controller is
    SIGKILLed while the test session runs between the agents; after the restart
    the agents reconnect and resend, and the result is stored exactly once."""
    s = vks_system(db_url, heartbeat_s=0.5,
                   config={"scheduler": {"poll_s": 0.2, "lease_s": 2, "retry_s": 1},
                           "checks": {"test_duration_s": 5, "preconnect_duration_s": 3}})
    c, token = s.controller, s.secretary

    def wait(pred, timeout: float, what: str):
        try:
            return wait_for(pred, timeout, what=what)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{c.log_text()}") from None

    start = dt.datetime.now(dt.UTC) + dt.timedelta(hours=3)
    status, h = c.api("POST", "/api/v1/hearings", token, {
        "case_number": "1-99/2026", "room_id": c.room_id(token), "start_utc": start.isoformat(),
        "participants": [{"terminal_id": "sizo-almaty-1"}]})
    assert status == 201, h
    hid = h["id"]

    def events():
        return Counter(e["kind"] for e in c.api("GET", f"/api/v1/hearings/{hid}/events", token)[1]["items"])
    wait(lambda: events()["check_started"] >= 1, 30, "test session started")
    time.sleep(2.0)                                   # connected, media flowing, report not yet sent
    assert c.kill() == -signal.SIGKILL
    time.sleep(4.0)                                   # the session ends while the controller is down
    c.start()

    def decided():
        h = c.api("GET", f"/api/v1/hearings/{hid}", token)[1]
        return h if h["test_request"]["status"] in ("passed", "failed") else None
    h = wait(decided, 60, "result after restart")
    assert h["test_request"]["result"]["schema"] == "vks.test-report/1"
    assert h["test_request"]["result"]["connected"] is True, h["test_request"]
    time.sleep(2.0)                                   # any resend has arrived by now
    n = events()
    assert n["check_result"] == 1 and n["check_started"] == 1 and n["test_request_created"] == 1, n
