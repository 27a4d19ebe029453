"""The wire protocol: round trips, and nothing but WireError out of any input."""
from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contract import wire
from contract.wire import (
    Ack,
    Command,
    Description,
    Error,
    Heartbeat,
    Hello,
    Report,
    SessionState,
    Signal,
    StartSession,
    StopSession,
    Welcome,
    WireError,
    parse_agent_message,
    parse_controller_message,
)
from tests import strategies as valid

AGENT_SAMPLES = [
    Hello(terminal_id="court-1", agent_version="0.1.0", capabilities=["session", "monitor"]),
    Heartbeat(health={"cpu_ratio": 0.2, "ok": True, "checks": [{"name": "disk", "ok": True}]},
              sessions=["s1"]),
    Report(report_id="s1:caller:final", kind="session", session_id="s1",
           body={"report": {"schema": "vks.test-report/1", "connected": True, "mos": 4.2}},
           created_at=1700000000.5),
    Report(report_id="h-1", kind="health", body={}),
    Signal(session_id="s1", to="sizo-1", description=Description(type="offer", sdp="v=0\r\n")),
    SessionState(session_id="s1", state="failed", error="could not connect"),
]
CONTROLLER_SAMPLES = [
    Welcome(terminal_id="court-1", controller_id="ctl-a", heartbeat_s=5.0),
    Ack(report_id="s1:caller:final"),
    Command(command=StartSession(session_id="s1", role="caller", peer="sizo-1", kind="test",
                                 profile="hearing", duration_s=30)),
    Command(command=StopSession(session_id="s1", reason="hearing cancelled")),
    wire.relay(Signal(session_id="s1", to="sizo-1", description=Description(type="answer", sdp="v=0"),
                      reply_to="abc"), "court-1"),
    Error(code="forbidden", message="no", ref="x", fatal=True),
]


@pytest.mark.parametrize("msg", AGENT_SAMPLES, ids=lambda m: m.type)
def test_agent_messages_round_trip(msg):
    text = wire.encode(msg)
    assert parse_agent_message(text) == msg
    assert parse_agent_message(text.encode()) == msg


@pytest.mark.parametrize("msg", CONTROLLER_SAMPLES, ids=lambda m: m.type)
def test_controller_messages_round_trip(msg):
    text = wire.encode(msg)
    assert parse_controller_message(text) == msg


def test_relayed_signal_keeps_the_id_and_names_the_sender():
    sig = Signal(session_id="s1", to="sizo-1", description=Description(type="offer", sdp="v=0"))
    out = json.loads(wire.encode(wire.relay(sig, "court-1")))
    assert out["id"] == sig.id and out["from"] == "court-1" and "to" not in out


def test_fast_ack_encoding_parses_as_an_ack():
    m = parse_controller_message(wire.encode_ack("r-1"))
    assert isinstance(m, Ack) and m.report_id == "r-1"


def test_hello_carries_the_protocol_version():
    assert json.loads(wire.encode(AGENT_SAMPLES[0]))["protocol"] == wire.PROTOCOL == "vks.wire/1"


@pytest.mark.parametrize("text, code, words", [
    ("", "bad_json", "not valid JSON"),
    ("[1]", "not_object", "JSON object"),
    ('{"type": "launch"}', "unknown_type", "unknown message type 'launch'"),
    ('{"id": "x"}', "unknown_type", "unknown message type none"),
    ('{"type": "hello"}', "invalid", "terminal_id: Field required"),
    ('{"type": "hello", "terminal_id": 7, "agent_version": "1"}', "invalid",
     "terminal_id: Input should be a valid string"),
    ('{"type": "report", "report_id": "r", "kind": "weekly", "body": {}}', "invalid", "kind"),
    ('{"type": "report", "report_id": "r", "kind": "health", "body": {}, "admin": true}', "invalid",
     "admin: Extra inputs"),
    ('{"type": "report", "report_id": "r", "kind": "interval", "body": {"interval": {"inbound": {"packets": "3"}}}}',
     "invalid", "body.interval.inbound.packets: Input should be a valid integer"),
    ('{"type": "report", "report_id": "r", "kind": "session", "body": {"role": "caller", "report": '
     '{"outbound": {"loss_ratio": 1.5}}}}', "invalid", "body.report.outbound.loss_ratio"),
    ('{"type": "report", "report_id": "r", "kind": "session", "body": {"role": "caller", "report": '
     '{"verdict": "fine"}}}', "invalid", "body.report.verdict"),
    ('{"type": "report", "report_id": "r", "kind": "health", "body": {"hook": {"ok": "yes"}}}', "invalid",
     "body.hook.ok"),
    ('{"type": "heartbeat", "health": {"status": "splendid"}}', "invalid", "health.status"),
    ('{"type": "heartbeat", "health": {"x": NaN}}', "bad_json", "NaN"),
    ('{"type": "heartbeat", "health": {"x": 1e999}}', "bad_json", "out of range"),
    ('{"type": "welcome"}', "unknown_type", "from agent"),
])
def test_bad_agent_messages_give_a_typed_error(text, code, words):
    with pytest.raises(WireError) as info:
        parse_agent_message(text)
    assert info.value.code == code
    assert words in info.value.message


def test_oversize_is_refused_before_parsing():
    big = json.dumps({"type": "report", "report_id": "r", "kind": "health",
                      "body": {"x": "a" * 2000}})
    with pytest.raises(WireError) as info:
        parse_agent_message(big, max_bytes=1000)
    assert info.value.code == "too_large"
    with pytest.raises(WireError):
        parse_agent_message(big.encode(), max_bytes=1000)


def test_invalid_message_reports_its_id_for_the_error_reply():
    with pytest.raises(WireError) as info:
        parse_agent_message('{"type": "signal", "id": "m-7", "session_id": "s"}')
    assert info.value.ref == "m-7"


def test_deep_nesting_is_refused():
    deep = '{"type":"heartbeat","health":' + "[" * 5000 + "]" * 5000 + "}"
    with pytest.raises(WireError):
        parse_agent_message(deep)


# ---- fuzz: any input yields a message or a WireError, never another exception ----------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20)

TYPES = sorted(set(wire.AGENT_TYPES) | set(wire.CONTROLLER_TYPES))
FIELDS = ["id", "terminal_id", "agent_version", "protocol", "capabilities", "health",
          "sessions", "report_id", "kind", "session_id", "body", "to", "from", "description",
          "reply_to", "state", "error", "command", "code", "message", "ref", "fatal",
          "heartbeat_s", "controller_id", "created_at"]

message_like = st.fixed_dictionaries(
    {"type": st.sampled_from(TYPES) | st.text(max_size=8)},
    optional={f: json_values for f in FIELDS})


def _mutations():
    samples = [wire.encode(m) for m in AGENT_SAMPLES + CONTROLLER_SAMPLES]
    return st.builds(lambda s, i, j, junk: s[:i % (len(s) + 1)] + junk + s[j % (len(s) + 1):],
                     st.sampled_from(samples), st.integers(0, 400), st.integers(0, 400),
                     st.text(max_size=6))


def _only_wire_errors(data):
    for parse in (parse_agent_message, parse_controller_message):
        try:
            parse(data)
        except WireError:
            pass


fuzz = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@fuzz
@given(st.binary(max_size=300))
def test_fuzz_random_bytes(data):
    _only_wire_errors(data)


@fuzz
@given(st.text(max_size=300))
def test_fuzz_random_text(data):
    _only_wire_errors(data)


@fuzz
@given(message_like)
def test_fuzz_message_shaped_objects(obj):
    _only_wire_errors(json.dumps(obj))


@fuzz
@given(_mutations())
def test_fuzz_garbled_real_messages(data):
    _only_wire_errors(data)


# ---- valid input (tests/strategies.py): what the contract allows always parses, as it was sent ----

@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(valid.reports(), valid.signals, valid.heartbeats))
def test_valid_messages_round_trip_as_sent(msg):
    text = wire.encode(msg)
    assert parse_agent_message(text) == msg


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(valid.report_bodies())
def test_report_bodies_keep_every_key_and_value(kind_body):
    kind, body = kind_body
    sent = json.dumps({"type": "report", "id": "m", "report_id": "r", "kind": kind, "body": body})
    m = parse_agent_message(sent)
    assert m.body.dump() == body
    assert json.loads(wire.encode(m))["body"] == body
