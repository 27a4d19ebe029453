"""End to end on loopback: the real controller app (API, scheduler, the agent
hub over real WebSockets) and two real agents (agent.daemon, real aiortc
sessions). Scheduling a hearing makes the controller run the test session
between the courtroom and the SIZO terminal and store the judged report."""
from __future__ import annotations

import asyncio
import datetime as dt

import pytest
from aiohttp.test_utils import TestClient, TestServer

from agent import wire
from agent.daemon import Daemon
from agent.settings import AgentSettings
from controller.app import create_app
from controller.keys import DB_KEY, GATEWAY_KEY
from controller.settings import ControllerSettings
from controller.store import agents as agent_store
from controller.store import registry, users
from agent import configfile
from controller.models import SitesFile
from tests.controller_kit import SITES

pytestmark = pytest.mark.timeout(120)


async def eventually(check, timeout: float = 60.0, step: float = 0.2):
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = await check()
        if value:
            return value
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(step)


async def test_scheduled_hearing_gets_its_test_session_run_by_real_agents(db_url, tmp_path):
    settings = ControllerSettings.model_validate({
        "db": db_url, "scheduler": {"poll_s": 0.2, "retry_s": 1},
        "checks": {"test_duration_s": 3, "preconnect_duration_s": 3}})
    app = create_app(settings)
    client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    daemons: list[tuple[Daemon, asyncio.Task]] = []
    try:
        db = app[DB_KEY]
        now = dt.datetime.now(dt.timezone.utc)
        sites = configfile.validate(SitesFile, configfile.read_yaml(SITES), SITES)
        async with db.transaction() as conn:
            await registry.import_sites(conn, sites.model_dump()["institutions"], now)
            u = await users.create_user(conn, "sec", "secretary", now)
            token = await users.issue_token(conn, u["id"], now)
            agent_tokens = {t: (await agent_store.issue_token(conn, t))[1]
                            for t in ("court-almaty-1", "sizo-almaty-1")}
        url = f"ws://127.0.0.1:{client.port}{wire.WS_PATH}"
        for terminal, tok in agent_tokens.items():
            s = AgentSettings.model_validate({
                "terminal_id": terminal, "role": "courtroom" if terminal.startswith("court") else "institution",
                "controller": {"url": url, "token": tok, "outbox_path": str(tmp_path / f"{terminal}.outbox"),
                               "heartbeat_s": 0.5},
                "session": {"host_addresses": ["127.0.0.1"]}})
            d = Daemon(s, stop_timeout_s=2)
            daemons.append((d, asyncio.create_task(d.run())))

        async def both_online():
            return {"court-almaty-1", "sizo-almaty-1"} <= app[GATEWAY_KEY].online()
        await eventually(both_online, 20)

        headers = {"Authorization": f"Bearer {token}"}
        rooms = await (await client.get("/api/v1/rooms?institution_id=almaty-medeu-district", headers=headers)).json()
        room = next(r["id"] for r in rooms["items"] if r["name"] == "Зал 1")
        resp = await client.post("/api/v1/hearings", headers=headers, json={
            "case_number": "1-77/2026", "room_id": room, "start_utc": (now + dt.timedelta(hours=3)).isoformat(),
            "participants": [{"terminal_id": "sizo-almaty-1"}]})
        assert resp.status == 201, await resp.text()
        hid = (await resp.json())["id"]

        async def tested():
            h = await (await client.get(f"/api/v1/hearings/{hid}", headers=headers)).json()
            return h if h["test_request"]["status"] in ("passed", "failed") else None
        h = await eventually(tested, 60)
        report = h["test_request"]["result"]
        assert report["schema"] == "vks.test-report/1" and report["connected"] is True
        assert h["test_request"]["status"] == "passed", h["test_request"]
        assert h["verdict"] in ("good", "degraded")
        ev = await (await client.get(f"/api/v1/hearings/{hid}/events", headers=headers)).json()
        kinds = [e["kind"] for e in ev["items"]]
        assert kinds.count("check_started") == 1 and kinds.count("check_result") == 1
    finally:
        for d, _ in daemons:
            d.request_stop()
        await asyncio.gather(*(t for _, t in daemons), return_exceptions=True)
        await client.close()
