"""Rule 22 with real parts: the controller, two `vks-agent run` processes in the namespaces of
`Lab(mgmt=True)`, monitoring media across the impaired link, the controller link beside it.

- a blackout mid-hearing gives break -> reconnect -> ready to resume, the endpoint hooks fire at
  both ends, and the secretary's resume closes the break with its duration and cause;
- brief spikes (one 0.6 s blackout, 2 s of 5 % loss) give no break;
- a suspension (rule 24) stops monitoring.
"""
from __future__ import annotations

import asyncio
import time

import pytest

from tests.live_kit import COURT, SIZO, LiveLab
from tests.netlab.fixtures import netlab_mark

pytestmark = [*netlab_mark, pytest.mark.timeout(150)]
SIZO_NAME = "ДС-70/1, кабинет ВКС 1"


async def test_blackout_mid_hearing_breaks_reconnects_and_resumes(tmp_path):
    async with LiveLab(tmp_path, impair={"delay_ms": 10}) as ll:
        await ll.lab.ablackout("both")
        t0 = time.monotonic()
        lv = lv_break = await ll.until_live(lambda lv: lv["state"] == "reconnecting", 20, "break recommended")
        assert lv["break"]["cause"] == "connection_lost"
        assert lv["verdict"] == "unusable"
        assert lv["banner"]["ru"].startswith(f"Связь с {SIZO_NAME} потеряна — рекомендуется объявить перерыв. ")
        assert lv["break"]["terminal_id"] == SIZO and lv["break"]["decision"] is None
        old_session = lv["break"]["evidence"]["session_id"]
        await asyncio.sleep(max(0.0, 6 - (time.monotonic() - t0)))     # attempts fail meanwhile
        assert (await ll.live())["state"] == "reconnecting"
        await ll.lab.arestore("both")
        lv = await ll.until_live(lambda lv: lv["state"] == "ready_to_resume", 60, "ready to resume")
        assert lv["session_id"] != old_session                           # a new session, not the old one
        assert lv["break"]["ready_at"] is not None and lv["break"]["attempts"] >= 1

        status, out = await ll.api("POST", f"/api/v1/hearings/{ll.hid}/resume")
        assert status == 200, out
        assert out["cause"] == "connection_lost" and out["duration_s"] > 5
        assert out["live"]["state"] == "monitoring" and out["live"]["break"] is None
        status, again = await ll.api("POST", f"/api/v1/hearings/{ll.hid}/resume")
        assert status == 409 and again["error"] == "not_ready"

        kinds = [e["kind"] for e in await ll.events()]
        for k in ("hearing_started", "monitoring_started", "break", "reconnect", "ready_to_resume", "resume"):
            assert k in kinds, (k, kinds)
        assert kinds.index("break") < kinds.index("reconnect") < kinds.index("ready_to_resume") < kinds.index("resume")
        ev = {e["kind"]: e for e in await ll.events()}
        assert ev["break"]["detail"]["kind"] in ("stall", "silent") and ev["break"]["detail"]["seconds"]
        assert ev["resume"]["detail"]["duration_s"] == out["duration_s"]
        breaks = (await ll.api("GET", f"/api/v1/hearings/{ll.hid}/breaks"))[1]["items"]
        assert len(breaks) == 1 and breaks[0]["outcome"] == "resumed" and breaks[0]["resumed_by"] == "sec"

        # The endpoint hooks ran at both ends: break, reconnect (per attempt) and resume.
        await ll.until(lambda: all("resume" in {h["event"] for h in ll.hooks(t)} for t in (COURT, SIZO)), 10,
                       "resume hooks")
        for t in (COURT, SIZO):
            got = ll.hooks(t)
            assert [h["event"] for h in got][0] == "break" and got[0]["hearing"] == str(ll.hid)
            assert got[0]["kk"].startswith(f"{SIZO_NAME} терминалымен байланыс үзілді — үзіліс жариялау ұсынылады")
            assert got[0]["ru"] == lv_break["banner"]["ru"]
            assert "reconnect" in {h["event"] for h in got}

        # The hearing's live verdict is shown on the hearing; the end stops monitoring.
        status, h = await ll.api("POST", f"/api/v1/hearings/{ll.hid}/end")
        assert status == 200 and h["status"] == "held"
        lv = await ll.live()
        assert lv["state"] == "ended" and lv["verdict"] == "degraded"      # one break, resumed
        assert h["verdict"] == "degraded"
        assert "hearing_ended" in [e["kind"] for e in await ll.events()]


async def test_brief_spikes_do_not_break_and_a_suspension_stops_monitoring(tmp_path):
    async with LiveLab(tmp_path, impair={"delay_ms": 10}) as ll:
        # One 0.6 s blackout, then 2 s of 5 % loss: the hearing goes on.
        await ll.lab.ablackout("both", seconds=0.6)
        await asyncio.sleep(6)
        await ll.lab.aimpair("both", delay_ms=10, loss=0.05)
        await asyncio.sleep(2)
        await ll.lab.aimpair("both", delay_ms=10)
        await asyncio.sleep(6)
        lv = await ll.live()
        kinds = [e["kind"] for e in await ll.events()]
        assert "break" not in kinds, [e for e in await ll.events() if e["kind"] == "break"]
        assert lv["state"] == "monitoring" and lv["break"] is None
        assert len(lv["intervals"]) >= 12
        session = lv["session_id"]

        # Rule 24: the SIZO is suspended - monitoring stops, the agents' session is stopped.
        status, s = await ll.api("POST", "/api/v1/suspensions", {"institution_id": "sizo-almaty-70-1",
                                                                 "reason": "riot"}, token=ll.coord_token)
        assert status == 201, s
        lv = await ll.until_live(lambda lv: lv["state"] == "stopped", 15, "monitoring stopped")
        ev = next(e for e in await ll.events() if e["kind"] == "monitoring_stopped")
        assert ev["detail"]["reason"] == "suspended" and ev["detail"]["suspension_ids"] == [s["id"]]
        count = len(lv["intervals"])
        await asyncio.sleep(3)
        lv = await ll.live()
        assert lv["state"] == "stopped" and len([i for i in lv["intervals"] if i["session_id"] == session]) <= count
        assert not [i for i in lv["intervals"] if i["session_id"] != session]
        h = (await ll.api("GET", f"/api/v1/hearings/{ll.hid}"))[1]
        assert h["verdict"] == "suspended"
