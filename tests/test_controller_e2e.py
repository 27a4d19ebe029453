"""End to end on loopback: the real controller (API, scheduler, the agent hub
over real WebSockets) and two real agents (real aiortc sessions). Scheduling a
hearing makes the controller run the test session between the courtroom and
the SIZO terminal and store the judged report - in one process, and as real
`vks-controller serve` / `vks-agent run` processes with the controller killed
mid-session."""
from __future__ import annotations

import asyncio
import datetime as dt
import json as _json
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

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
from controller.store import registry, users
from tests.controller_kit import SITES
from tests.procs import eventually
from tests.test_controller_cli import ENV, REPO, Serve, api, free_port, run

pytestmark = pytest.mark.timeout(120)


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
        now = dt.datetime.now(dt.UTC)
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


# --- real processes -----------------------------------------------------------------------------



def start_agent(tmp_path: Path, terminal: str, token: str, port: int) -> subprocess.Popen:
    cfg = tmp_path / f"{terminal}.yaml"
    cfg.write_text(_json.dumps({
        "terminal_id": terminal, "role": "courtroom" if terminal.startswith("court") else "institution",
        "controller": {"url": f"ws://127.0.0.1:{port}{wire.WS_PATH}", "token": token,
                       "outbox_path": str(tmp_path / f"{terminal}.outbox"), "heartbeat_s": 0.5},
        "session": {"host_addresses": ["127.0.0.1"]}}))
    return subprocess.Popen([sys.executable, "-m", "agent.cli", "run", "--config", str(cfg)],
                            stdout=(tmp_path / f"{terminal}.log").open("a"), stderr=subprocess.STDOUT,
                            env=ENV, cwd=REPO)


@pytest.mark.timeout(180)
def test_real_processes_controller_killed_mid_session_loses_and_doubles_nothing(db_url, tmp_path):
    """`vks-controller serve` and two `vks-agent run` processes. The controller is
    SIGKILLed while the test session runs between the agents; after the restart
    the agents reconnect and resend, and the result is stored exactly once."""
    config = tmp_path / "controller.yaml"
    config.write_text(f"db: {db_url}\nscheduler: {{poll_s: 0.2, lease_s: 2, retry_s: 1}}\n"
                      f"checks: {{test_duration_s: 5, preconnect_duration_s: 3}}\n")
    assert run("sites", "import", str(REPO / "configs" / "sites.yaml"), "--config", str(config)).returncode == 0
    token = run("user", "add", "sec", "--role", "secretary", "--config", str(config)).stdout.strip()
    terminals = ("court-almaty-1", "sizo-almaty-1")
    agent_tokens = {}
    for t in terminals:
        r = run("terminal", "token", t, "--config", str(config))
        assert r.returncode == 0, r.stderr
        agent_tokens[t] = r.stdout.strip()
    port = free_port()
    serve = Serve(config, port, tmp_path / "serve.log").start()
    agents = [start_agent(tmp_path, t, agent_tokens[t], port) for t in terminals]
    try:
        def wait_for(pred, timeout=60.0, what="condition"):
            deadline = time.monotonic() + timeout
            while True:
                v = pred()
                if v:
                    return v
                assert time.monotonic() < deadline, f"{what}: not in time\n" + (tmp_path / "serve.log").read_text()
                time.sleep(0.2)

        def online():
            _, terms = api(port, token, "GET", "/api/v1/terminals")
            return {t["id"] for t in terms["items"] if t["online"]} >= set(terminals)
        wait_for(online, 30, "agents online")
        _, rooms = api(port, token, "GET", "/api/v1/rooms?institution_id=almaty-medeu-district")
        room = next(r["id"] for r in rooms["items"] if r["name"] == "Зал 1")
        start = dt.datetime.now(dt.UTC) + dt.timedelta(hours=3)
        status, h = api(port, token, "POST", "/api/v1/hearings", {
            "case_number": "1-99/2026", "room_id": room, "start_utc": start.isoformat(),
            "participants": [{"terminal_id": "sizo-almaty-1"}]})
        assert status == 201, h
        hid = h["id"]

        def events():
            return Counter(e["kind"] for e in api(port, token, "GET", f"/api/v1/hearings/{hid}/events")[1]["items"])
        wait_for(lambda: events()["check_started"] >= 1, 30, "test session started")
        time.sleep(2.0)                                   # connected, media flowing, report not yet sent
        assert serve.kill() == -signal.SIGKILL
        time.sleep(4.0)                                   # the session ends while the controller is down
        serve.start()

        def decided():
            h = api(port, token, "GET", f"/api/v1/hearings/{hid}")[1]
            return h if h["test_request"]["status"] in ("passed", "failed") else None
        h = wait_for(decided, 60, "result after restart")
        assert h["test_request"]["result"]["schema"] == "vks.test-report/1"
        assert h["test_request"]["result"]["connected"] is True, h["test_request"]
        time.sleep(2.0)                                   # any resend has arrived by now
        c = events()
        assert c["check_result"] == 1 and c["check_started"] == 1 and c["test_request_created"] == 1, c
    finally:
        for a in agents:
            a.send_signal(signal.SIGTERM)
        for a in agents:
            try:
                a.wait(timeout=20)
            except subprocess.TimeoutExpired:
                a.kill()
                a.wait()
        serve.stop()
