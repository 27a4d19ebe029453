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
from tests.test_link_hub import Controller, _raw, count
from tests.test_wire import message_like

valid_reports = st.builds(
    lambda rid, kind, body: wire.encode(wire.Report(report_id=f"ok-{rid}", kind=kind, body=body)),
    st.integers(0, 10**9), st.sampled_from(["interval", "health"]),
    st.dictionaries(st.text(max_size=5), st.integers() | st.text(max_size=10), max_size=3))
forged = st.builds(
    lambda other, rid: wire.encode(wire.Report(report_id=f"forged-{rid}", kind="health", body={},
                                               terminal_id=other)),
    st.sampled_from(["sizo-1", "court-2"]), st.integers(0, 10**9))
signals = st.builds(
    lambda sid, to, sdp: wire.encode(wire.Signal(session_id=sid, to=to,
                                                 description=wire.Description(type="offer", sdp=sdp))),
    st.text(min_size=1, max_size=10), st.sampled_from(["sizo-1", "court-1"]), st.text(max_size=50))
junk = st.text(max_size=200) | message_like.map(json.dumps) | st.just("{" * 100) | st.just("[]")
frames = st.lists(st.one_of(valid_reports, forged, signals, junk), min_size=50, max_size=150)


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
            valid = {json.loads(f)["report_id"] for f in frames if f.startswith('{"id"') and '"ok-' in f}
            assert valid | {"final-marker"} <= acks
            assert not any(r.startswith("forged-") for r in acks)
            assert await count(c) == len(valid | {"final-marker"})
        finally:
            await c.stop()
    asyncio.run(scenario())
    assert "Traceback" not in caplog.text and "failed" not in caplog.text
