"""Bad input on the agent WebSocket (issue 7), against a real hub on a real socket: hypothesis
sends sequences of random text and binary frames, garbled JSON, protocol messages with random
fields, replayed reports, messages naming another terminal, signals with malformed SDP, and
messages before `hello`. After each sequence:

- the controller is up: a well-behaved agent connects and its report is acknowledged;
- every report the hub acknowledged is stored exactly once, nothing it did not acknowledge is
  stored, and nothing is ever stored for the terminal a forged message named - nor against a
  session (none was commanded: a report naming one is answered `forbidden`, acked and dropped,
  issue 11);
- no handler failed with an unexpected exception (the hub's `internal` path).

The wire parser alone is fuzzed in test_wire.py; the single cases (forged, duplicate, too many
bad messages) are in test_link_hub.py."""
from __future__ import annotations

import asyncio
import json
import logging
import threading

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contract import wire
from controller.store import agents as store
from tests.test_link_hub import Controller

ME, OTHER = "court-1", "sizo-1"


class Background:
    """The controller on its own event loop in a thread; `run(coro)` runs a client coroutine there."""

    def __init__(self, db_url: str):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.controller = self.run(Controller(db_url).start())
        self.token = self.run(self.controller.token(ME))
        self.run(self.controller.token(OTHER))

    def run(self, coro, timeout: float = 60):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self):
        self.run(self.controller.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


class Errors(logging.Handler):
    def __init__(self):
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record):
        self.records.append(record)


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def bg(request, tmp_path_factory):
    """The hub on SQLite and on PostgreSQL (stricter: NUL in text, integer widths)."""
    tmp = tmp_path_factory.mktemp("wsfuzz")
    errors = Errors()
    logging.getLogger("controller").addHandler(errors)
    if request.param == "sqlite":
        url = f"sqlite:///{tmp / 'controller.sqlite'}"
    else:
        import uuid
        url = request.getfixturevalue("pg_cluster").create_database(f"wsfuzz_{uuid.uuid4().hex[:8]}")
    b = Background(url)
    b.errors = errors
    b.acked = set()            # report ids the hub acknowledged, over all examples
    b.named = set()            # ... of reports naming a session (acked, never stored)
    yield b
    b.close()
    logging.getLogger("controller").removeHandler(errors)


# ---- strategies ----------------------------------------------------------------------------

ids = st.sampled_from(["r1", "r2", "r3", "s1", "x" * 128]) | st.text(min_size=1, max_size=12)
json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
                           | st.text(max_size=20),
                           lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c, max_size=4),
                           max_leaves=12)
malformed_sdp = st.sampled_from(["", "v=0", "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n", "\x00" * 10,
                                 "a=candidate:" + "9" * 500]) | st.text(max_size=300)


@st.composite
def protocol_message(draw) -> dict:
    kind = draw(st.sampled_from(["report", "report", "heartbeat", "signal", "session_state", "hello"]))
    terminal = draw(st.sampled_from([None, None, ME, OTHER]))
    m: dict = {"type": kind, "id": draw(ids)}
    if kind == "report":
        m.update(report_id=draw(ids), kind=draw(st.sampled_from(["session", "interval", "health", "bogus"])),
                 body=draw(st.dictionaries(st.text(max_size=8), json_values, max_size=4)))
        if draw(st.booleans()):
            m["session_id"] = draw(ids)
    elif kind == "heartbeat":
        m.update(health=draw(st.dictionaries(st.text(max_size=8), json_values, max_size=4)),
                 sessions=draw(st.lists(ids, max_size=3)))
    elif kind == "signal":
        m.update(session_id=draw(ids), to=draw(st.sampled_from([ME, OTHER, "nobody"])),
                 description={"type": draw(st.sampled_from(["offer", "answer", "pranswer"])),
                              "sdp": draw(malformed_sdp)})
    elif kind == "session_state":
        m.update(session_id=draw(ids), state=draw(st.sampled_from(["running", "failed", "nonsense"])))
    else:
        m.update(terminal_id=draw(st.sampled_from([ME, OTHER])), agent_version="f")
    if terminal is not None and kind != "hello":
        m["terminal_id"] = terminal
    if draw(st.integers(0, 9)) == 0:          # an extra or a missing field
        if draw(st.booleans()):
            m["extra"] = 1
        else:
            m.pop(draw(st.sampled_from(sorted(m))), None)
    return m


frame = st.one_of(
    st.tuples(st.just("text"), st.text(max_size=200)),
    st.tuples(st.just("binary"), st.binary(max_size=200)),
    st.tuples(st.just("text"), json_values.map(json.dumps)),
    st.tuples(st.just("text"), protocol_message().map(json.dumps)),
    st.tuples(st.just("text"), protocol_message().map(json.dumps)),
    st.tuples(st.just("garbled"), protocol_message().map(json.dumps)),
)


def naming_a_session(frames: list[tuple[str, object]]) -> set[str]:
    """The report ids of the frames that are reports of ME naming a session."""
    out = set()
    for kind, data in frames:
        try:
            m = wire.parse_agent_message(data) if kind == "text" else None
        except wire.WireError:
            continue
        if isinstance(m, wire.Report) and m.session_id is not None and m.terminal_id in (None, ME):
            out.add(m.report_id)
    return out


async def exchange(bg: Background, hello: bool, frames: list[tuple[str, object]]) -> tuple[set[str], bool]:
    """Send the frames (after a hello when `hello`) and a final probe report; the report ids
    acknowledged and whether the connection was still open at the end."""
    acked: set[str] = set()
    probe = wire.Report(report_id=f"probe-{wire.new_id()}", kind="health", body={})
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(bg.controller.url + wire.WS_PATH,
                                   headers={"Authorization": f"Bearer {bg.token}"}, max_msg_size=0)
        if hello:
            await ws.send_str(wire.encode(wire.Hello(terminal_id=ME, agent_version="fuzz")))
        try:
            for kind, data in frames:
                if kind == "binary":
                    await ws.send_bytes(data)
                elif kind == "garbled":
                    cut = len(data) // 2
                    await ws.send_str(data[:cut] + "\x00" + data[cut + 1:])
                else:
                    await ws.send_str(data)
            await ws.send_str(wire.encode(probe))
        except (ConnectionError, RuntimeError):
            pass
        open_at_end = False
        while True:
            try:
                raw = await asyncio.wait_for(ws.receive(), 10)
            except TimeoutError:
                raise AssertionError("the hub neither answered the probe nor closed the connection") from None
            if raw.type != aiohttp.WSMsgType.TEXT:
                break                                   # closed by the hub
            m = wire.parse_controller_message(raw.data)   # whatever the hub sends parses
            if isinstance(m, wire.Ack):
                acked.add(m.report_id)
                if m.report_id == probe.report_id:
                    open_at_end = True
                    break
        await ws.close()
    return acked, open_at_end


async def stored(bg: Background, terminal_id: str, with_session: bool = False) -> list[str]:
    async with bg.controller.db.read() as conn:
        from sqlalchemy import select
        t = store.agent_reports
        q = select(t.c.report_id).where(t.c.terminal_id == terminal_id)
        if with_session:
            q = q.where(t.c.session_id.is_not(None))
        rows = (await conn.execute(q)).all()
    return [r[0] for r in rows]


@given(hello=st.booleans() | st.just(True), frames=st.lists(frame, min_size=0, max_size=8))
@settings(max_examples=300, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.data_too_large])
def test_random_frames_leave_the_hub_consistent_and_serving(bg, hello, frames):
    acked, open_at_end = bg.run(exchange(bg, hello, frames))
    bg.acked |= acked
    bg.named |= naming_a_session(frames)
    first_is_hello = False
    if frames and frames[0][0] == "text":
        try:
            first_is_hello = isinstance(wire.parse_agent_message(frames[0][1]), wire.Hello)
        except wire.WireError:
            pass
    if not hello and not first_is_hello:
        assert not acked, "nothing may be taken before hello"
    mine = bg.run(stored(bg, ME))
    assert len(mine) == len(set(mine)), "a report stored twice"
    assert set(mine) <= bg.acked, "a report stored and not acknowledged"
    assert bg.acked - set(mine) <= bg.named, "a report acknowledged and not stored"
    assert bg.run(stored(bg, ME, with_session=True)) == [], "a report stored against a session never commanded"
    assert bg.run(stored(bg, OTHER)) == [], "a forged message was stored for another terminal"
    assert bg.controller.hub.stats.store_errors_total == 0, "a batch of reports could not be stored"
    internal = [r for r in bg.errors.records if r.exc_info]
    assert not internal, logging.Formatter().format(internal[0])


def test_a_well_behaved_agent_is_served_after_the_fuzzing(bg):
    acked, open_at_end = bg.run(exchange(bg, True, []))
    assert open_at_end and len(acked) == 1


def test_an_oversized_frame_closes_only_that_connection(bg):
    """A frame past the hub's limit (4 MiB) closes that socket with 1009; others are served."""
    async def go():
        async with aiohttp.ClientSession() as http:
            ws = await http.ws_connect(bg.controller.url + wire.WS_PATH,
                                       headers={"Authorization": f"Bearer {bg.token}"})
            await ws.send_str(wire.encode(wire.Hello(terminal_id=ME, agent_version="fuzz")))
            await ws.receive()                                  # welcome
            await ws.send_str("x" * (wire.MAX_MESSAGE_BYTES + 1))
            while True:
                raw = await asyncio.wait_for(ws.receive(), 10)
                if raw.type != aiohttp.WSMsgType.TEXT:
                    break
            return ws.close_code
    assert bg.run(go()) == aiohttp.WSCloseCode.MESSAGE_TOO_BIG
    acked, open_at_end = bg.run(exchange(bg, True, []))
    assert open_at_end



async def test_a_nul_in_an_id_is_refused_and_does_not_block_the_writer(db_url):
    """Regression (contract/wire.py): on PostgreSQL a report id with a NUL made every batch insert
    fail; the hub's one writer retried it for ever and no agent's report was stored any more.
    Ids, terminal ids, versions and session errors may not hold NUL now (refused as invalid)."""
    c = await Controller(db_url).start()
    try:
        token = await c.token(ME)
        async with aiohttp.ClientSession() as http:
            ws = await http.ws_connect(c.url + wire.WS_PATH, headers={"Authorization": f"Bearer {token}"})
            await ws.send_str(wire.encode(wire.Hello(terminal_id=ME, agent_version="x")))
            assert json.loads((await ws.receive()).data)["type"] == "welcome"
            for bad in ({"report_id": "b\x00d", "kind": "interval"}, {"report_id": "ok-0", "kind": "session",
                                                                     "session_id": "s\x00"}):
                await ws.send_str(json.dumps({"type": "report", "id": wire.new_id(), "body": {"x": "\x00"}, **bad}))
                reply = json.loads((await asyncio.wait_for(ws.receive(), 10)).data)
                assert reply["type"] == "error" and reply["code"] == "invalid", reply
            await ws.send_str(wire.encode(wire.Report(report_id="good", kind="interval", body={"x": "a\x00b"})))
            reply = json.loads((await asyncio.wait_for(ws.receive(), 10)).data)
            assert reply == {**reply, "type": "ack", "report_id": "good"}
            await ws.close()
        assert c.hub.stats.store_errors_total == 0
    finally:
        await c.stop()
