"""Escalation on top of real agents (rule 16): the real controller (API, the
agent hub over real WebSockets, the scheduler on the real clock) with the
courtroom's real agent connected and the SIZO's agent absent. The test session
cannot start; the technicians of both sides are told at once - by a webhook to
a real HTTP server and an e-mail to a real SMTP server on loopback."""
from __future__ import annotations

import asyncio
import datetime as dt

import pytest

from controller.store import escalations as esc_repo
from tests.escalation_kit import SmtpServer, WebhookServer
from tests.procs import eventually

pytestmark = pytest.mark.timeout(120)


async def test_sizo_agent_unreachable_for_the_test_session_opens_an_escalation(db_url, controller_app, agent_daemon):
    hook = await WebhookServer().start()
    smtp = SmtpServer().start()
    try:
        c = await controller_app({
            "db": db_url, "scheduler": {"poll_s": 0.2, "retry_s": 2},
            "checks": {"test_duration_s": 3, "preconnect_duration_s": 3},
            "smtp": {"host": "127.0.0.1", "port": smtp.port, "security": "none"}})
        now = dt.datetime.now(dt.UTC)
        async with c.db.transaction() as conn:
            for inst, mail in (("almaty-medeu-district", "tech@court.kz"), ("sizo-almaty-70-1", "tech@sizo.kz")):
                await esc_repo.add_contact(conn, {"institution_id": inst, "kind": "technician", "name": mail,
                                                  "email": mail, "webhook_url": hook.url}, now)
        await agent_daemon(c, "court-almaty-1")
        await eventually(lambda: "court-almaty-1" in c.online(), 20)

        status, h = await c.api("POST", "/api/v1/hearings", {
            "case_number": "1-88/2026", "room_id": await c.room_id(),
            "start_utc": (now + dt.timedelta(hours=3)).isoformat(),
            "participants": [{"terminal_id": "sizo-almaty-1"}]})
        assert status == 201, h
        hid = h["id"]

        async def delivered():
            items = (await c.api("GET", "/api/v1/escalations"))[1]["items"]
            # Delivered, and recorded as sent (the receivers see it a moment before the row says so).
            if (items and hook.received and len(smtp.messages) >= 2
                    and all(n["state"] == "sent" for n in items[0]["notifications"])):
                return items
        [e] = await eventually(delivered, 30)
        assert (e["hearing_id"], e["cause"], e["step"]) == (hid, "test_failed", 1)
        assert "sizo-almaty-1" in e["detail"]["error"] and e["detail"]["retrying"] is True
        assert {n["state"] for n in e["notifications"]} == {"sent"}
        assert len(hook.received) == 1            # one URL for both contacts: told once
        assert smtp.to() == ["tech@court.kz", "tech@sizo.kz"]
        h = (await c.api("GET", f"/api/v1/hearings/{hid}"))[1]
        assert h["test_request"]["status"] in ("pending", "overdue")     # still retried until the start
        await asyncio.sleep(2.5)                   # a retry later: still one escalation, nobody told again
        items = (await c.api("GET", "/api/v1/escalations"))[1]["items"]
        assert [x["id"] for x in items] == [e["id"]] and len(hook.received) == 1
    finally:
        await hook.stop()
        smtp.stop()
