"""Agent <-> controller link over real WebSockets on loopback: auth, one connection per
terminal, reports stored once and acked after commit, forged messages refused, commands and
signals relayed between two agents."""
from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from agent.link import Link
from agent.outbox import Outbox
from agent.settings import AgentSettings
from contract import wire
from controller.agent_api import HUB_KEY, setup_agent_api
from controller.gateway import AgentGateway, AgentUnavailable
from controller.hub import Hub, HubOptions
from controller.store import agents as store
from controller.store.db import Database
from controller.store.migrate import migrate
from tests.procs import eventually, free_port


class Results:
    """Stands in for the core's CheckService (the SessionResults protocol)."""

    def __init__(self):
        self.results: dict[str, list[dict]] = {}
        self.failed: dict[str, list[str]] = {}
        self.changed = asyncio.Event()

    async def on_session_result(self, session_id, report):
        self.results.setdefault(session_id, []).append(report.dump())
        self.changed.set()

    async def on_session_failed(self, session_id, error):
        self.failed.setdefault(session_id, []).append(error)
        self.changed.set()


class Controller:
    """A real aiohttp server on loopback with the hub, on its own database."""

    def __init__(self, db_url: str, instance_id: str = "ctl-a", results: Results | None = None,
                 port: int | None = None, **hub_options):
        self.db_url = db_url
        self.instance_id = instance_id
        self.results = results or Results()
        self.port = port or free_port()
        self.hub_options = hub_options
        self.runner: web.AppRunner | None = None
        self.db: Database | None = None

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    @property
    def hub(self) -> Hub:
        return self.app[HUB_KEY]

    async def start(self) -> Controller:
        self.db = Database(self.db_url)
        await migrate(self.db)
        self.app = web.Application()
        from controller.relay import make_relay
        setup_agent_api(self.app, Hub(self.db, instance_id=self.instance_id, results=self.results,
                                      relay=make_relay(self.db, self.instance_id),
                                      options=HubOptions(**self.hub_options)))
        self.runner = web.AppRunner(self.app)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()
        return self

    async def token(self, terminal_id: str, **kw) -> str:
        async with self.db.transaction() as conn:
            return (await store.issue_token(conn, terminal_id, **kw))[1]

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None
        if self.db is not None:
            await self.db.close()
            self.db = None


class Recorder:
    """An agent-side handler that records commands and answers offers with a fake answer."""

    def __init__(self):
        self.commands: list = []
        self.offers: list[wire.RelayedSignal] = []
        self.link: Link | None = None
        self.got = asyncio.Event()

    async def on_command(self, command):
        self.commands.append(command)
        self.got.set()

    async def on_signal(self, message):
        self.offers.append(message)
        await self.link.reply(message, {"type": "answer", "sdp": f"answer-to:{message.description.sdp}"})
        self.got.set()

    def running_sessions(self):
        return []


def agent_settings(tmp_path: Path, terminal_id: str, url: str, token: str, **controller) -> AgentSettings:
    return AgentSettings.model_validate({
        "terminal_id": terminal_id,
        "controller": {"url": url, "token": token, "outbox_path": str(tmp_path / f"{terminal_id}.outbox"),
                       "heartbeat_s": 0.2, **controller},
        "session": {"host_addresses": ["127.0.0.1"]},
    })


class Agent:
    def __init__(self, settings: AgentSettings, handler=None):
        self.settings = settings
        self.handler = handler or Recorder()
        self.outbox = Outbox(settings.controller.outbox_path)
        self.link: Link | None = None
        self.task: asyncio.Task | None = None

    async def start(self) -> Agent:
        await self.outbox.open()
        self.link = Link(self.settings, self.outbox, self.handler, backoff_initial=0.05, backoff_max=0.5,
                         health=_health)
        if isinstance(self.handler, Recorder):
            self.handler.link = self.link
        self.task = asyncio.create_task(self.link.run())
        return self

    async def stop(self) -> None:
        await self.link.close()
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)
        await self.outbox.close()


async def _health():
    return {"status": "ok"}


@pytest.fixture
async def controller(db_url):
    """On SQLite and on PostgreSQL (tests/conftest.py's db_url)."""
    c = await Controller(db_url).start()
    yield c
    await c.stop()


@pytest.fixture
async def agents(tmp_path):
    started: list[Agent] = []

    async def make(controller: Controller, terminal_id: str, handler=None, **controller_opts) -> Agent:
        token = await controller.token(terminal_id)
        a = await Agent(agent_settings(tmp_path, terminal_id, controller.url, token, **controller_opts),
                        handler).start()
        started.append(a)
        return a
    yield make
    for a in started:
        await a.stop()


async def count(controller: Controller, **kw) -> int:
    async with controller.db.read() as conn:
        return await store.count_reports(conn, **kw)


# ---------------------------------------------------------------------------------------------

async def test_agent_connects_with_its_token_and_reports_are_stored_once_then_deleted(controller, agents):
    a = await agents(controller, "court-1")
    await asyncio.wait_for(a.link.connected.wait(), 10)
    assert controller.hub.online() == {"court-1"}
    assert isinstance(controller.hub, AgentGateway)
    for i in range(30):
        await a.outbox.put(f"r{i}", "interval", {"i": i})       # a session would need commanding (issue 11)
    await eventually(lambda: len(a.outbox) == 0)          # every one acked...
    assert await count(controller, terminal_id="court-1") == 30   # ...because every one is stored
    # Heartbeats carry health; the hub keeps it (and writes it with the lease).
    await eventually(lambda: (controller.hub.connection_info("court-1") or {}).get("health") == {"status": "ok"})


async def test_bad_token_gets_401_json_and_is_logged_without_the_token(controller, caplog):
    caplog.set_level(logging.WARNING, logger="controller.hub")
    async with aiohttp.ClientSession() as http:
        for headers in ({"Authorization": "Bearer vkst_not-a-token"}, {}):
            with pytest.raises(aiohttp.WSServerHandshakeError) as info:
                await http.ws_connect(controller.url + wire.WS_PATH, headers=headers)
            assert info.value.status == 401
        async with http.get(f"http://127.0.0.1:{controller.port}{wire.WS_PATH}",
                            headers={"Authorization": "Bearer vkst_not-a-token"}) as resp:
            assert resp.status == 401
            assert (await resp.json())["error"] == "unauthorized"
    assert "refused" in caplog.text and "vkst_not-a-token" not in caplog.text
    assert controller.hub.stats.auth_failures_total == 3


async def test_revoked_token_is_refused_and_rotation_keeps_the_new_one(controller):
    old = await controller.token("court-1")
    async with controller.db.transaction() as conn:
        new_id, new = await store.issue_token(conn, "court-1")
        assert await store.authenticate(conn, old) == "court-1"       # both valid during rotation
        assert await store.revoke_tokens(conn, "court-1", except_id=new_id) == 1
        assert await store.authenticate(conn, old) is None
        assert await store.authenticate(conn, new) == "court-1"
    async with aiohttp.ClientSession() as http:
        with pytest.raises(aiohttp.WSServerHandshakeError) as info:
            await http.ws_connect(controller.url + wire.WS_PATH, headers={"Authorization": f"Bearer {old}"})
        assert info.value.status == 401
        ws = await http.ws_connect(controller.url + wire.WS_PATH, headers={"Authorization": f"Bearer {new}"})
        await ws.send_str(wire.encode(wire.Hello(terminal_id="court-1", agent_version="t")))
        assert wire.parse_controller_message((await ws.receive()).data).type == "welcome"
        await ws.close()


async def _raw(controller: Controller, http, terminal_id: str, hello_as: str | None = None):
    token = await controller.token(terminal_id)
    ws = await http.ws_connect(controller.url + wire.WS_PATH, headers={"Authorization": f"Bearer {token}"})
    await ws.send_str(wire.encode(wire.Hello(terminal_id=hello_as or terminal_id, agent_version="t")))
    return ws


async def _next(ws, type_: str):
    while True:
        raw = await asyncio.wait_for(ws.receive(), 10)
        assert raw.type == aiohttp.WSMsgType.TEXT, raw
        m = wire.parse_controller_message(raw.data)
        if m.type == type_:
            return m


async def test_hello_for_another_terminal_is_refused_and_closed(controller):
    async with aiohttp.ClientSession() as http:
        ws = await _raw(controller, http, "court-1", hello_as="sizo-1")
        err = await _next(ws, "error")
        assert err.code == "forbidden" and err.fatal and "court-1" in err.message
        assert (await ws.receive()).type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
    assert controller.hub.online() == set()


async def test_forged_messages_naming_another_terminal_are_refused_and_not_stored(controller):
    async with aiohttp.ClientSession() as http:
        ws = await _raw(controller, http, "court-1")
        await _next(ws, "welcome")
        forged = wire.Report(report_id="f1", kind="health", body={}, terminal_id="sizo-1")
        await ws.send_str(wire.encode(forged))
        err = await _next(ws, "error")
        assert err.code == "forbidden" and err.ref == forged.id
        # A signal for a session it is not part of, and garbage: refused, the socket stays up.
        sig = wire.Signal(session_id="nope", to="sizo-1", description=wire.Description(type="offer", sdp="v=0"))
        await ws.send_str(wire.encode(sig))
        assert (await _next(ws, "error")).code == "forbidden"
        await ws.send_str('{"type": "report", "report_id": 5}')
        assert (await _next(ws, "error")).code == "invalid"
        ok = wire.Report(report_id="ok1", kind="health", body={"status": "ok"})
        await ws.send_str(wire.encode(ok))
        assert (await _next(ws, "ack")).report_id == "ok1"
        await ws.close()
    assert await count(controller) == 1


async def test_duplicate_report_is_acked_again_and_stored_once(controller):
    async with aiohttp.ClientSession() as http:
        ws = await _raw(controller, http, "court-1")
        await _next(ws, "welcome")
        rep = wire.Report(report_id="dup", kind="interval", body={"x": 1})
        for _ in range(3):
            await ws.send_str(wire.encode(rep))
            assert (await _next(ws, "ack")).report_id == "dup"
        await ws.close()
    assert await count(controller) == 1


async def test_too_many_bad_messages_close_the_socket(tmp_path):
    c = await Controller(f"sqlite:///{tmp_path}/c.sqlite", max_bad_messages=3).start()
    try:
        async with aiohttp.ClientSession() as http:
            ws = await _raw(c, http, "court-1")
            await _next(ws, "welcome")
            for _ in range(3):
                await ws.send_str("{garbage")
            while True:
                raw = await asyncio.wait_for(ws.receive(), 10)
                if raw.type != aiohttp.WSMsgType.TEXT:
                    break
            assert raw.type == aiohttp.WSMsgType.CLOSE and raw.data == 1008
    finally:
        await c.stop()


async def test_second_connection_replaces_the_first(controller):
    async with aiohttp.ClientSession() as http:
        first = await _raw(controller, http, "court-1")
        await _next(first, "welcome")
        second = await _raw(controller, http, "court-1")
        await _next(second, "welcome")
        raw = await asyncio.wait_for(first.receive(), 10)
        assert raw.type == aiohttp.WSMsgType.CLOSE and raw.data == 4000
        assert controller.hub.online() == {"court-1"}
        await second.send_str(wire.encode(wire.Report(report_id="r", kind="health", body={})))
        assert (await _next(second, "ack")).report_id == "r"
        await second.close()


async def test_session_commands_and_signals_between_two_agents(controller, agents):
    caller = await agents(controller, "court-1")
    callee = await agents(controller, "sizo-1")
    await asyncio.wait_for(caller.link.connected.wait(), 10)
    await asyncio.wait_for(callee.link.connected.wait(), 10)
    await eventually(lambda: controller.hub.online() == {"court-1", "sizo-1"})

    with pytest.raises(AgentUnavailable):
        await controller.hub.start_session(session_id="s0", caller="court-1", callee="nobody",
                                           kind="test", profile="hearing", duration_s=5)

    await controller.hub.start_session(session_id="s1", caller="court-1", callee="sizo-1", kind="test",
                                       profile="hearing", duration_s=5)
    await eventually(lambda: caller.handler.commands and callee.handler.commands)
    cmd = caller.handler.commands[0]
    assert (cmd.session_id, cmd.role, cmd.peer, cmd.kind, cmd.duration_s) == ("s1", "caller", "sizo-1", "test", 5.0)
    assert callee.handler.commands[0].role == "callee" and callee.handler.commands[0].peer == "court-1"

    # The caller's offer reaches the callee through the controller; the answer comes back.
    answer = await caller.link.signal("s1", "sizo-1", {"type": "offer", "sdp": "v=0 offer"})
    assert answer == {"type": "answer", "sdp": "answer-to:v=0 offer"}
    assert callee.handler.offers[0].from_ == "court-1"

    # The caller's final report goes to the results once, even if it is sent twice.
    body = {"role": "caller", "peer": "sizo-1", "session_kind": "test",
            "report": {"schema": "vks.test-report/1", "connected": True, "verdict": "good"}}
    await caller.outbox.put("s1:caller:final", "session", body, session_id="s1")
    await eventually(lambda: "s1" in controller.results.results)
    assert controller.results.results["s1"] == [body["report"]]

    # A callee may not signal somebody else, nor report for a session it is not in.
    async with aiohttp.ClientSession() as http:
        ws = await _raw(controller, http, "intruder")
        await _next(ws, "welcome")
        await ws.send_str(wire.encode(wire.Signal(session_id="s1", to="sizo-1",
                                                  description=wire.Description(type="offer", sdp="x"))))
        assert (await _next(ws, "error")).code == "forbidden"
        await ws.send_str(wire.encode(wire.Report(report_id="x", kind="session", session_id="s1",
                                                  body={"role": "caller", "report": {}})))
        assert (await _next(ws, "error")).code == "forbidden"
        await ws.close()
    assert len(controller.results.results["s1"]) == 1


async def test_caller_failure_is_reported_once(controller, agents):
    caller = await agents(controller, "court-1")
    await agents(controller, "sizo-1")
    await eventually(lambda: controller.hub.online() == {"court-1", "sizo-1"})
    await controller.hub.start_session(session_id="s2", caller="court-1", callee="sizo-1", kind="preconnect",
                                       profile=None, duration_s=5)
    await caller.link.session_state("s2", "failed", "camera missing")
    await caller.link.session_state("s2", "failed", "camera missing")
    await eventually(lambda: "s2" in controller.results.failed)
    await asyncio.sleep(0.2)
    assert controller.results.failed["s2"] == ["camera missing"]


async def test_report_sent_twice_across_reconnects_is_processed_once(controller, agents):
    """The agent dies between the controller's commit and the ack: the resend is a duplicate."""
    await agents(controller, "sizo-1")
    body = {"role": "caller", "report": {"connected": False, "error": "no media"}}
    async with aiohttp.ClientSession() as http:
        for attempt in range(2):
            ws = await _raw(controller, http, "court-1")
            await _next(ws, "welcome")
            if attempt == 0:
                await eventually(lambda: controller.hub.online() == {"court-1", "sizo-1"})
                await controller.hub.start_session(session_id="s3", caller="court-1", callee="sizo-1",
                                                   kind="test", profile=None, duration_s=1)
                assert (await _next(ws, "command")).command.role == "caller"
            await ws.send_str(wire.encode(wire.Report(report_id="s3:caller:final", kind="session",
                                                      session_id="s3", body=body)))
            await _next(ws, "ack")
            await ws.close()
    await eventually(lambda: "s3" in controller.results.results)
    await asyncio.sleep(0.2)
    assert controller.results.results["s3"] == [body["report"]]
    assert await count(controller, kind="session") == 1


async def test_reconnects_with_backoff_and_resends_unacked(tmp_path, agents):
    port = free_port()
    c = await Controller(f"sqlite:///{tmp_path}/c.sqlite", port=port).start()
    a = await agents(c, "court-1")
    await asyncio.wait_for(a.link.connected.wait(), 10)
    await c.stop()
    await eventually(lambda: not a.link.connected.is_set())
    for i in range(10):
        await a.outbox.put(f"while-down-{i}", "interval", {"i": i})
    await asyncio.sleep(0.3)                   # a few failed attempts
    c2 = await Controller(f"sqlite:///{tmp_path}/c.sqlite", port=port).start()
    try:
        await eventually(lambda: len(a.outbox) == 0, timeout=15)
        assert await count(c2) == 10
        assert a.link.connects == 2
    finally:
        await a.stop()
        await c2.stop()


async def test_presence_health_and_lease_are_written_and_released(db_url, agents):
    c = await Controller(db_url, lease_s=3.0).start()
    try:
        a = await agents(c, "court-1")
        await asyncio.wait_for(a.link.connected.wait(), 10)

        async def row():
            async with c.db.read() as conn:
                return (await store.presence(conn, ["court-1"])).get("court-1")
        got = await eventually(lambda: _with_health(row), timeout=10)
        assert got["online"] and got["controller_id"] == "ctl-a" and got["agent_version"] == "0.1.0"
        assert got["health"] == {"status": "ok"}
        await a.stop()
        got = await eventually(lambda: _offline(row), timeout=10)
        assert got["last_seen"] is not None and got["health"] == {"status": "ok"}
    finally:
        await c.stop()


async def _with_health(row):
    r = await row()
    return r if r and r["health"] else None


async def _offline(row):
    r = await row()
    return r if r and not r["online"] else None
