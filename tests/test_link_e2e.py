"""End to end with real processes: `vks-controller serve` and two `vks-agent run` terminals on
loopback. A secretary schedules a hearing through the REST API; the controller's scheduler
commands the test session (rule 13); the agents run it over real WebRTC, signalled through the
controller; the caller's report comes back through the outbox and lands on the hearing."""
from __future__ import annotations

import datetime as dt

from tests.procs import wait_for


def test_hearing_test_session_runs_between_real_agent_processes(vks_system):
    s = vks_system(config={"scheduler": {"poll_s": 0.2},
                           "checks": {"test_profile": "monitor", "test_duration_s": 3}})
    c, secretary = s.controller, s.secretary
    start = dt.datetime.now(dt.UTC) + dt.timedelta(days=3)
    status, h = c.api("POST", "/api/v1/hearings", secretary, {
        "case_number": "2-0001/2026", "room_id": c.room_id(secretary), "start_utc": start.isoformat(),
        "duration_min": 60, "participants": [{"terminal_id": "sizo-almaty-1"}]})
    assert status == 201, h

    def finished():
        _, got = c.api("GET", f"/api/v1/hearings/{h['id']}", secretary)
        return got if got["test_request"]["result"] is not None else None
    got = wait_for(finished, 90, step=0.5, what="test result on the hearing")
    result = got["test_request"]["result"]
    assert result["schema"] == "vks.test-report/1"
    assert result["connected"] is True, result.get("error")
    assert got["test_request"]["status"] in ("passed", "failed")
    assert got["verdict"] in ("good", "degraded", "unusable")
    codes = s.stop()
    assert codes == [0] * len(codes), codes
