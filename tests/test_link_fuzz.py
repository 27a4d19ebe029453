"""Fuzzing the live WebSocket endpoint (issue 7): whatever an authenticated agent sends -
garbage, message-shaped junk, valid messages forged for other terminals or unknown sessions,
oversized frames - the hub answers with typed errors or acks, never crashes, stores only what
was valid, and keeps serving."""
from __future__ import annotations

import asyncio
import json
import logging

import aiohttp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contract import wire
from tests import strategies as valid
from tests.test_link_hub import Controller, _raw, count
from tests.test_wire import message_like

# Valid messages are built only from what the contract allows (tests/strategies.py); the junk is
# invalid on purpose.
valid_reports = valid.reports("interval", "health", report_id=st.integers(0, 10**9).map(lambda n: f"ok-{n}")
                              ).map(wire.encode)
forged = st.builds(
    lambda other, rid: wire.encode(wire.Report(report_id=f"forged-{rid}", kind="health", body={},
                                               terminal_id=other)),
    st.sampled_from(["sizo-1", "court-2"]), st.integers(0, 10**9))
signals = st.builds(
    lambda sid, to, sdp: wire.encode(wire.Signal(session_id=sid, to=to,
                                                 description=wire.Description(type="offer", sdp=sdp))),
    valid.text(1, 10), st.sampled_from(["sizo-1", "court-1"]), st.text(max_size=50))
junk = st.text(max_size=200) | message_like.map(json.dumps) | st.just("{" * 100) | st.just("[]")
frames = st.lists(st.one_of(valid_reports, forged, signals, junk), min_size=50, max_size=150)


def _valid_report_id(frame: str) -> str | None:
    """The report id of a frame that is a valid report of the connection's own terminal."""
    try:
        m = wire.parse_agent_message(frame)
    except wire.WireError:
        return None
    return m.report_id if isinstance(m, wire.Report) and m.terminal_id is None else None


@settings(max_examples=4, deadline=None, suppress_health_check=list(HealthCheck))
@given(frames=frames)
def test_fuzzed_frames_get_typed_answers_and_only_valid_reports_are_stored(frames, tmp_path_factory, caplog):
    caplog.set_level(logging.ERROR, logger="controller.hub")
    tmp = tmp_path_factory.mktemp("fuzz")

    async def scenario():
        c = await Controller(f"sqlite:///{tmp}/c.sqlite", max_bad_messages=100_000,
                             max_message_bytes=64 * 1024).start()
        try:
            async with aiohttp.ClientSession() as http:
                ws = await _raw(c, http, "court-1")
                assert wire.parse_controller_message((await ws.receive()).data).type == "welcome"
                for f in frames:
                    await ws.send_str(f)
                await ws.send_bytes(b"\x00\x01binary")
                marker = wire.Report(report_id="final-marker", kind="health", body={})
                await ws.send_str(wire.encode(marker))
                acks, errors = set(), 0
                while True:
                    raw = await asyncio.wait_for(ws.receive(), 20)
                    assert raw.type == aiohttp.WSMsgType.TEXT, raw
                    m = wire.parse_controller_message(raw.data)     # every answer is valid wire
                    if m.type == "ack":
                        acks.add(m.report_id)
                        if m.report_id == "final-marker":
                            break
                    else:
                        assert m.type == "error" and not m.fatal
                        errors += 1
                # An oversized frame closes the socket (1009), and the hub keeps serving others.
                await ws.send_str("x" * (65 * 1024))
                raw = await asyncio.wait_for(ws.receive(), 20)
                assert raw.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
                ws2 = await _raw(c, http, "court-1")
                assert wire.parse_controller_message((await ws2.receive()).data).type == "welcome"
                await ws2.close()
            good = {r for f in frames if (r := _valid_report_id(f)) is not None and r.startswith("ok-")}
            assert good | {"final-marker"} <= acks
            assert not any(r.startswith("forged-") for r in acks)
            assert await count(c) == len(good | {"final-marker"})
        finally:
            await c.stop()
    asyncio.run(scenario())
    assert "Traceback" not in caplog.text and "failed" not in caplog.text
