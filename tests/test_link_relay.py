"""Two controllers on one PostgreSQL: commands and signals for a terminal connected to the other
controller go through the database (LISTEN/NOTIFY + relay table), SDP larger than NOTIFY's
8000-byte limit included; a terminal that moves to the other controller is dropped here."""
from __future__ import annotations

import asyncio
import uuid

import aiohttp
import pytest

from contract import wire
from controller.relay import NoRelay, PgRelay
from tests.test_link_hub import Controller, Recorder, _next, _raw, eventually


@pytest.fixture
async def two_controllers(pg_cluster):
    url = pg_cluster.create_database(f"relay_{uuid.uuid4().hex[:10]}")
    a = await Controller(url, instance_id="ctl-a", lease_s=3.0).start()
    b = await Controller(url, instance_id="ctl-b", lease_s=3.0).start()
    yield a, b
    await b.stop()
    await a.stop()


@pytest.mark.postgres
async def test_signal_and_commands_cross_between_controllers(two_controllers, agents):
    a, b = two_controllers
    assert isinstance(a.hub.relay, PgRelay)
    caller = await agents(a, "court-1")
    callee = await agents(b, "sizo-1")
    await asyncio.wait_for(caller.link.connected.wait(), 10)
    await asyncio.wait_for(callee.link.connected.wait(), 10)
    assert caller.link.controller_id == "ctl-a" and callee.link.controller_id == "ctl-b"
    assert a.hub.local() == {"court-1"} and b.hub.local() == {"sizo-1"}
    # Each controller knows the other's terminals are online (leases in the database).
    await eventually(lambda: a.hub.online() == {"court-1", "sizo-1"}, timeout=10)

    await a.hub.start_session(session_id="x1", caller="court-1", callee="sizo-1", kind="test",
                              profile="hearing", duration_s=5)
    await eventually(lambda: callee.handler.commands and caller.handler.commands, timeout=10)
    assert callee.handler.commands[0].role == "callee"

    big_sdp = "v=0\r\n" + "a=candidate:" + "x" * 20_000 + "\r\n"       # > 8000 bytes
    answer = await caller.link.signal("x1", "sizo-1", {"type": "offer", "sdp": big_sdp}, timeout=10)
    assert answer == {"type": "answer", "sdp": f"answer-to:{big_sdp}"}
    assert callee.handler.offers[0].from_ == "court-1"
    assert a.hub.stats.relayed_out_total >= 2 and b.hub.stats.relayed_out_total >= 1

    # The caller's report reaches the results on its own controller, once.
    await caller.outbox.put("x1:caller:final", "session",
                            {"role": "caller", "report": {"connected": True, "verdict": "good"}},
                            session_id="x1")
    await eventually(lambda: "x1" in a.results.results, timeout=10)
    assert "x1" not in b.results.results

    # Stop from the controller that does not hold the caller: relayed too.
    await b.hub.stop_session("x1")
    await eventually(lambda: any(isinstance(c, wire.StopSession) for c in caller.handler.commands), timeout=10)


@pytest.mark.postgres
async def test_terminal_moving_to_the_other_controller_is_dropped_by_the_first(two_controllers):
    a, b = two_controllers
    async with aiohttp.ClientSession() as http:
        first = await _raw(a, http, "court-1")
        await _next(first, "welcome")
        second = await _raw(b, http, "court-1")
        await _next(second, "welcome")
        raw = await asyncio.wait_for(first.receive(), 15)
        assert raw.type == aiohttp.WSMsgType.CLOSE and raw.data == 4000
        await eventually(lambda: a.hub.local() == set() and b.hub.local() == {"court-1"}, timeout=10)
        # Commands from A now reach the terminal through B.
        await eventually(lambda: "court-1" in a.hub.online(), timeout=10)
        await a.hub.deliver("court-1", wire.Command(command=wire.StopSession(session_id="zz")))
        assert (await _next(second, "command")).command.session_id == "zz"
        await second.close()


async def test_sqlite_has_no_relay(tmp_path):
    c = await Controller(f"sqlite:///{tmp_path}/c.sqlite").start()
    try:
        assert isinstance(c.hub.relay, NoRelay)
    finally:
        await c.stop()


@pytest.fixture
async def agents(tmp_path):
    from tests.test_link_hub import Agent, agent_settings
    started = []

    async def make(controller, terminal_id):
        token = await controller.token(terminal_id)
        ag = await Agent(agent_settings(tmp_path, terminal_id, controller.url, token), Recorder()).start()
        started.append(ag)
        return ag
    yield make
    for ag in started:
        await ag.stop()
