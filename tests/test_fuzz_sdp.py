"""Malformed SDP through the controller's relay (issue 7): a caller (a raw client holding a real
terminal token) sends garbage offers in a session the controller commanded; the callee is a real
agent daemon. The daemon refuses each offer without crashing, and then runs a real WebRTC session
with a proper caller as if nothing had happened."""
from __future__ import annotations

import asyncio

import aiohttp
import pytest

from contract import wire
from tests.procs import eventually
from tests.test_link_daemon import start_daemon
from tests.test_link_hub import Controller

BAD_OFFERS = ["", "v=0", "garbage\r\n" * 50, "v=0\r\no=- 0 0 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n",
              "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=fingerprint:sha-256 ZZ\r\n",
              "v=0\r\n" + "a=candidate:1 1 udp 1 999.1.1.1 99999 typ host\r\n" * 100, "\x00\x01\x02",
              "v=0\r\nm=video 9 RTP/AVP 96\r\na=rtpmap:96 VP8/90000\r\n" * 30]


@pytest.fixture
async def hub(tmp_path):
    c = await Controller(f"sqlite:///{tmp_path}/controller.sqlite").start()
    yield c
    await c.stop()


async def test_garbage_offers_are_refused_and_the_callee_daemon_carries_on(hub, tmp_path):
    controller = hub
    callee, callee_task = await start_daemon(controller, tmp_path, "sizo-1")
    caller, caller_task = None, None
    try:
        token = await controller.token("court-2")
        async with aiohttp.ClientSession() as http:
            ws = await http.ws_connect(controller.url + wire.WS_PATH, headers={"Authorization": f"Bearer {token}"})
            await ws.send_str(wire.encode(wire.Hello(terminal_id="court-2", agent_version="raw")))
            await eventually(lambda: controller.hub.online() >= {"court-2", "sizo-1"}, timeout=15)
            for i, sdp in enumerate(BAD_OFFERS):
                sid = f"bad-{i}"
                await controller.hub.start_session(session_id=sid, caller="court-2", callee="sizo-1",
                                                   kind="test", profile="monitor", duration_s=2)
                await ws.send_str(wire.encode(wire.Signal(session_id=sid, to="sizo-1",
                                                          description=wire.Description(type="offer", sdp=sdp))))
            # Whatever comes back parses; no answer carries a usable description for garbage.
            deadline = asyncio.get_running_loop().time() + 5
            while asyncio.get_running_loop().time() < deadline:
                try:
                    raw = await asyncio.wait_for(ws.receive(), 0.5)
                except TimeoutError:
                    continue
                if raw.type != aiohttp.WSMsgType.TEXT:
                    break
                wire.parse_controller_message(raw.data)
            await ws.close()
        assert not callee_task.done(), "the callee daemon died on a malformed offer"

        # A real session now works.
        caller, caller_task = await start_daemon(controller, tmp_path, "court-1")
        await eventually(lambda: controller.hub.online() >= {"court-1", "sizo-1"}, timeout=15)
        await controller.hub.start_session(session_id="s-good", caller="court-1", callee="sizo-1",
                                           kind="test", profile="monitor", duration_s=2)
        await eventually(lambda: "s-good" in controller.results.results, timeout=60, step=0.1)
        report = controller.results.results["s-good"][0]
        assert report["connected"] is True, report.get("error")
    finally:
        callee.request_stop()
        assert await asyncio.wait_for(callee_task, 30) == 0
        if caller is not None:
            caller.request_stop()
            assert await asyncio.wait_for(caller_task, 30) == 0
