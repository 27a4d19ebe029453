"""Escalation on top of real agents (rule 16): the real controller (API, the
agent hub over real WebSockets, the scheduler on the real clock) with the
courtroom's real agent connected and the SIZO's agent absent. The test session
cannot start; the technicians of both sides are told at once - by a webhook to
a real HTTP server and an e-mail to a real SMTP server on loopback."""
from __future__ import annotations

import asyncio
import datetime as dt

import pytest
from aiohttp.test_utils import TestClient, TestServer

from agent.daemon import Daemon
from agent.settings import AgentSettings
from contract import configfile, wire
from controller.app import create_app
from controller.keys import DB_KEY, GATEWAY_KEY
from controller.models import SitesFile
from controller.settings import ControllerSettings
from controller.store import agents as agent_store
from controller.store import escalations as esc_repo
from controller.store import registry, users
from tests.controller_kit import SITES
from tests.escalation_kit import SmtpServer, WebhookServer
from tests.procs import eventually

pytestmark = pytest.mark.timeout(120)


async def test_sizo_agent_unreachable_for_the_test_session_opens_an_escalation(db_url, tmp_path):
    hook = await WebhookServer().start()
    smtp = SmtpServer().start()
    settings = ControllerSettings.model_validate({
        "db": db_url, "scheduler": {"poll_s": 0.2, "retry_s": 2},
        "checks": {"test_duration_s": 3, "preconnect_duration_s": 3},
        "smtp": {"host": "127.0.0.1", "port": smtp.port, "security": "none"}})
    app = create_app(settings)
    client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    daemon = task = None
    try:
        db = app[DB_KEY]
        now = dt.datetime.now(dt.UTC)
        sites = configfile.validate(SitesFile, configfile.read_yaml(SITES), SITES)
        async with db.transaction() as conn:
            await registry.import_sites(conn, sites.model_dump()["institutions"], now)
            u = await users.create_user(conn, "sec", "secretary", now)
            token = await users.issue_token(conn, u["id"], now)
            court_token = (await agent_store.issue_token(conn, "court-almaty-1"))[1]
            for inst, mail in (("almaty-medeu-district", "tech@court.kz"), ("sizo-almaty-70-1", "tech@sizo.kz")):
                await esc_repo.add_contact(conn, {"institution_id": inst, "kind": "technician", "name": mail,
                                                  "email": mail, "webhook_url": hook.url}, now)
        s = AgentSettings.model_validate({
            "terminal_id": "court-almaty-1", "role": "courtroom",
            "controller": {"url": f"ws://127.0.0.1:{client.port}{wire.WS_PATH}", "token": court_token,
                           "outbox_path": str(tmp_path / "court.outbox"), "heartbeat_s": 0.5},
            "session": {"host_addresses": ["127.0.0.1"]}})
        daemon = Daemon(s, stop_timeout_s=2)
        task = asyncio.create_task(daemon.run())

        async def court_online():
            return "court-almaty-1" in app[GATEWAY_KEY].online()
        await eventually(court_online, 20)

        headers = {"Authorization": f"Bearer {token}"}
        rooms = await (await client.get("/api/v1/rooms?institution_id=almaty-medeu-district", headers=headers)).json()
        room = next(r["id"] for r in rooms["items"] if r["name"] == "Зал 1")
        resp = await client.post("/api/v1/hearings", headers=headers, json={
            "case_number": "1-88/2026", "room_id": room, "start_utc": (now + dt.timedelta(hours=3)).isoformat(),
            "participants": [{"terminal_id": "sizo-almaty-1"}]})
        assert resp.status == 201, await resp.text()
        hid = (await resp.json())["id"]

        async def delivered():
            items = (await (await client.get("/api/v1/escalations", headers=headers)).json())["items"]
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
        h = await (await client.get(f"/api/v1/hearings/{hid}", headers=headers)).json()
        assert h["test_request"]["status"] in ("pending", "overdue")     # still retried until the start
        await asyncio.sleep(2.5)                   # a retry later: still one escalation, nobody told again
        items = (await (await client.get("/api/v1/escalations", headers=headers)).json())["items"]
        assert [x["id"] for x in items] == [e["id"]] and len(hook.received) == 1
    finally:
        if daemon is not None:
            daemon.request_stop()
            await asyncio.gather(task, return_exceptions=True)
        await client.close()
        await hook.stop()
        smtp.stop()
