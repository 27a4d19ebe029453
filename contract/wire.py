"""The wire protocol between agent and controller, defined once and imported by both sides.

JSON text messages over one WebSocket per terminal (`GET /api/v1/agent/ws`, bearer token of the
terminal). Every message is one JSON object with `type` (what it is), `id` (a message id, a uuid)
and the typed fields of that type, nothing else (unknown fields are refused: a new field means a
new protocol version, or a capability announced in `hello`).

agent -> controller
    hello          terminal_id, agent_version, protocol, capabilities        (first message)
    heartbeat      health {...}, sessions [session ids running]
    report         report_id (unique per agent), kind session|interval|health, session_id?, body
    signal         session_id, to (peer terminal), description {type offer|answer, sdp}, reply_to?
    session_state  session_id, state, error?
controller -> agent
    welcome        protocol, terminal_id, controller_id, heartbeat_s, server_time
    ack            report_id                       (sent only once the report is stored)
    command        command: start_session {session_id, role, peer, kind, profile, duration_s, capacity?}
                            | stop_session {session_id, reason?}
                            | break | reconnect | resume {hearing_id, cause?, attempt?,
                              message_kk?, message_ru?}   (rule 22, added in wire 1.1: the agent
                              fires its endpoint hook; an older agent logs and ignores it)
    signal         session_id, from (peer terminal), description, reply_to?   (relayed)
    error          code, message, ref? (id of the message it is about), fatal

An answer travels as a `signal` whose `reply_to` is the `id` of the offer's signal; the controller
relays a signal keeping its `id`.

A report's `body` and a heartbeat's `health` are the typed payloads of contract.reports, validated
with the message: the body by the report's `kind` (session | interval | health). Unlike a message,
a payload keeps keys it does not know (a newer agent's figure is stored and served unchanged); a
known key of the wrong type makes the whole message invalid.

Parsing never raises anything but `WireError`: oversize, not JSON, not an object, unknown type,
missing field, wrong type, extra field. `WireError.code` is stable (see `WireError`).
"""
from __future__ import annotations

import json
import random
import time
import uuid
from json.encoder import encode_basestring_ascii as _json_str
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    ValidatorFunctionWrapHandler,
    WrapValidator,
    field_serializer,
    model_serializer,
    model_validator,
)

from contract.reports import BODIES, Health, HealthBody, IntervalBody, ReportBody, SessionBody
from contract.vocab import ReportKind, SessionKind, SessionRole

PROTOCOL = "vks.wire/1"

# Largest message either side reads (bytes of the JSON text). A session report carries its
# per-second intervals: a 30-minute session is ~1 MB; SDP is a few kB.
MAX_MESSAGE_BYTES = 4 * 1024 * 1024
# Deepest nesting of objects/arrays accepted (reports are a few levels deep).
MAX_DEPTH = 32
# Largest SDP accepted inside a signal.
MAX_SDP_BYTES = 256 * 1024

# The WebSocket path on the controller.
WS_PATH = "/api/v1/agent/ws"

# No NUL in ids and names the controller stores as text: PostgreSQL refuses it, and one report id
# with a NUL blocked the hub's report writer for every agent (issue 7, found by fuzzing).
NO_NUL = r"^[^\x00]*$"
Id = Annotated[str, Field(min_length=1, max_length=128, pattern=NO_NUL)]
TerminalId = Annotated[str, Field(min_length=1, max_length=64, pattern=NO_NUL)]


class WireError(Exception):
    """A message could not be read or was refused.

    `code` is one of: "too_large", "bad_json", "not_object", "unknown_type", "invalid"
    (missing field, wrong type, extra field), "bad_protocol", "forbidden" (the message
    speaks for another terminal or a session it is not part of), "unexpected" (a valid
    message at the wrong time).
    """

    def __init__(self, code: str, message: str, *, ref: str | None = None):
        self.code = code
        self.message = message
        self.ref = ref
        super().__init__(f"{code}: {message}")


def new_id() -> str:
    """A fresh message id (a uuid4)."""
    return str(uuid.uuid4())


class _Msg(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, populate_by_name=True)
    TYPE: ClassVar[str]
    id: Id = Field(default_factory=new_id)


# ---- agent -> controller --------------------------------------------------------------------

class Hello(_Msg):
    """agent -> controller, first: who this terminal is and what it speaks."""
    TYPE: ClassVar[str] = "hello"
    type: Literal["hello"] = "hello"
    terminal_id: TerminalId
    agent_version: Annotated[str, Field(max_length=64, pattern=NO_NUL)]
    protocol: Annotated[str, Field(max_length=64, pattern=NO_NUL)] = PROTOCOL
    capabilities: Annotated[list[Annotated[str, Field(max_length=64)]], Field(max_length=64)] = []


class Heartbeat(_Msg):
    """agent -> controller, every `heartbeat_s`: the last health check and the sessions running."""
    TYPE: ClassVar[str] = "heartbeat"
    type: Literal["heartbeat"] = "heartbeat"
    health: Health = Health()
    sessions: Annotated[list[Id], Field(max_length=64)] = []
    # Optional: when given it must be the connection's own terminal.
    terminal_id: TerminalId | None = None

    @field_serializer("health")
    def _health_as_sent(self, health: Health) -> dict[str, Any]:
        return health.dump()


def _body_of_kind(value: Any, handler: ValidatorFunctionWrapHandler, info: ValidationInfo) -> Any:
    """A report built in code (`Report(kind=..., body=...)`): its body read as the model of its kind."""
    kind = info.data.get("kind")            # absent when the kind itself was invalid
    model = BODIES.get(kind) if isinstance(kind, ReportKind) else None
    if model is None or isinstance(value, model):
        return handler(value)
    return model.model_validate(value)


class Report(_Msg):
    """agent -> controller: a report to store; `body` is the payload model of its `kind`.

    What is parsed off the wire is one of its subclasses below, one per kind: the message is then
    validated by pydantic-core alone (the kind picks the body's model as a discriminator), with no
    Python call per message - thousands of reports a second (issue 15). Built in code, a `Report`
    reads its body by its kind through `_body_of_kind`."""
    TYPE: ClassVar[str] = "report"
    type: Literal["report"] = "report"
    report_id: Id
    kind: Annotated[ReportKind, Field(strict=False)]
    session_id: Id | None = None
    body: Annotated[ReportBody, WrapValidator(_body_of_kind)]
    created_at: float | None = None          # agent's clock, epoch seconds
    terminal_id: TerminalId | None = None

    @field_serializer("body")
    def _body_as_sent(self, body: ReportBody) -> dict[str, Any]:
        return body.dump()

    def __eq__(self, other: object) -> bool:
        # A report parsed off the wire (a subclass by kind) equals the same report built in code.
        if isinstance(other, Report):
            return self.__dict__ == other.__dict__
        return NotImplemented


class SessionReport(Report):
    """A `report` of kind session, as parsed."""
    kind: Literal[ReportKind.SESSION]
    body: SessionBody


class IntervalReport(Report):
    """A `report` of kind interval, as parsed."""
    kind: Literal[ReportKind.INTERVAL]
    body: IntervalBody


class HealthReport(Report):
    """A `report` of kind health, as parsed."""
    kind: Literal[ReportKind.HEALTH]
    body: HealthBody


_KINDS = ", ".join(repr(k.value) for k in list(ReportKind)[:-1]) + f" or {list(ReportKind)[-1].value!r}"
ParsedReport = Annotated[SessionReport | IntervalReport | HealthReport, Field(discriminator="kind")]


class Description(BaseModel):
    """An RTCSessionDescription: {"type": "offer"|"answer", "sdp": str}."""
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)
    type: Literal["offer", "answer"]
    sdp: Annotated[str, Field(max_length=MAX_SDP_BYTES)]


class Signal(_Msg):
    """agent -> controller: a description for the peer of a session."""
    TYPE: ClassVar[str] = "signal"
    type: Literal["signal"] = "signal"
    session_id: Id
    to: TerminalId
    description: Description
    reply_to: Id | None = None
    terminal_id: TerminalId | None = None


SessionStateName = Literal["starting", "connecting", "running", "finished", "failed", "cancelled",
                           "rejected"]


class SessionState(_Msg):
    """agent -> controller: where a session of this terminal stands."""
    TYPE: ClassVar[str] = "session_state"
    type: Literal["session_state"] = "session_state"
    session_id: Id
    state: SessionStateName
    error: Annotated[str, Field(max_length=4096, pattern=NO_NUL)] | None = None
    terminal_id: TerminalId | None = None


AgentMessage = Annotated[Hello | Heartbeat | ParsedReport | Signal | SessionState,
                         Field(discriminator="type")]


# ---- controller -> agent --------------------------------------------------------------------

class Welcome(_Msg):
    """controller -> agent, the answer to `hello`: the protocol and the heartbeat period."""
    TYPE: ClassVar[str] = "welcome"
    type: Literal["welcome"] = "welcome"
    protocol: str = PROTOCOL
    terminal_id: TerminalId
    controller_id: Annotated[str, Field(max_length=128)]
    heartbeat_s: float
    server_time: float = Field(default_factory=time.time)


class Ack(_Msg):
    """controller -> agent: the report is stored (the agent may forget it)."""
    TYPE: ClassVar[str] = "ack"
    type: Literal["ack"] = "ack"
    report_id: Id


# The most a capacity ramp (StartSession.capacity) adds to a session: each direction at most 12 s
# (issue 12; the agent's `session.capacity.max_s` is held to it) plus the agreement over the control
# channel and the last step's report, each way. Whoever waits for a session's report adds it.
CAPACITY_MAX_S_PER_DIRECTION = 12.0
CAPACITY_OVERHEAD_S = 6.0


def session_span_s(duration_s: float, capacity: bool) -> float:
    """How long a commanded session may run before its report: its media, and the ramps if asked."""
    return float(duration_s) + (2 * CAPACITY_MAX_S_PER_DIRECTION + CAPACITY_OVERHEAD_S if capacity else 0.0)


class StartSession(BaseModel):
    """Command: run a session with `peer` in `role` for `duration_s`.

    `capacity` (issue 12): the caller ramps each direction after the media (agent/capacity.py).
    Only sent when true, and only to an agent whose hello announced the capability "capacity"
    (an older agent refuses a field it does not know); refused for a monitoring session."""
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)
    name: Literal["start_session"] = "start_session"
    session_id: Id
    role: Annotated[SessionRole, Field(strict=False)]
    peer: TerminalId
    kind: Annotated[SessionKind, Field(strict=False)]
    profile: Annotated[str, Field(max_length=64)] | None = None
    duration_s: Annotated[float, Field(gt=0, le=24 * 3600)]
    capacity: bool = False

    @model_validator(mode="after")
    def _no_capacity_while_monitoring(self) -> StartSession:
        if self.capacity and self.kind == SessionKind.MONITOR:
            raise ValueError("capacity is never measured during monitoring (a live hearing)")
        return self

    @model_serializer(mode="wrap")
    def _capacity_only_when_asked(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        out = handler(self)
        if not self.capacity:
            out.pop("capacity", None)
        return out


class StopSession(BaseModel):
    """Command: stop a running session."""
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)
    name: Literal["stop_session"] = "stop_session"
    session_id: Id
    reason: Annotated[str, Field(max_length=1024)] | None = None


LiveEventName = Literal["break", "reconnect", "resume"]


class LiveEvent(BaseModel):
    """Rule 22 (wire 1.1): the hearing's link had a break / is being reconnected / resumed.
    The agent fires its endpoint hook (agent.hooks); sessions are driven by start/stop_session."""
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)
    name: LiveEventName
    hearing_id: Annotated[int, Field(ge=1)]
    cause: Annotated[str, Field(max_length=64)] | None = None
    attempt: Annotated[int, Field(ge=0)] | None = None
    message_kk: Annotated[str, Field(max_length=1024)] | None = None
    message_ru: Annotated[str, Field(max_length=1024)] | None = None


class Command(_Msg):
    """controller -> agent: one command."""
    TYPE: ClassVar[str] = "command"
    type: Literal["command"] = "command"
    command: Annotated[StartSession | StopSession | LiveEvent, Field(discriminator="name")]


class RelayedSignal(_Msg):
    """controller -> agent: a description from the peer of a session (the sender's `id` kept)."""
    TYPE: ClassVar[str] = "signal"
    type: Literal["signal"] = "signal"
    session_id: Id
    from_: TerminalId = Field(validation_alias="from", serialization_alias="from")
    description: Description
    reply_to: Id | None = None


class Error(_Msg):
    """controller -> agent: a message was refused (`ref` names it); `fatal` closes the link."""
    TYPE: ClassVar[str] = "error"
    type: Literal["error"] = "error"
    code: Annotated[str, Field(max_length=64)]
    message: Annotated[str, Field(max_length=4096)]
    ref: Id | None = None
    fatal: bool = False


ControllerMessage = Annotated[Welcome | Ack | Command | RelayedSignal | Error,
                              Field(discriminator="type")]

AGENT_TYPES: dict[str, type[_Msg]] = {m.TYPE: m for m in (Hello, Heartbeat, Report, Signal, SessionState)}
CONTROLLER_TYPES: dict[str, type[_Msg]] = {m.TYPE: m for m in (Welcome, Ack, Command, RelayedSignal, Error)}

_agent_adapter: TypeAdapter = TypeAdapter(AgentMessage)
_controller_adapter: TypeAdapter = TypeAdapter(ControllerMessage)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _load(data: str | bytes | bytearray, max_bytes: int) -> dict[str, Any]:
    if isinstance(data, (bytes, bytearray)):
        size = len(data)
        if size > max_bytes:
            raise WireError("too_large", f"message of {size} bytes exceeds the limit of {max_bytes}")
        try:
            data = bytes(data).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise WireError("bad_json", f"message is not UTF-8: {exc.reason} at byte {exc.start}") from None
    elif isinstance(data, str):
        # A str of n characters is at least n bytes in UTF-8; count exactly only near the limit.
        if len(data) > max_bytes or (len(data) * 4 > max_bytes
                                     and len(data.encode("utf-8", "surrogatepass")) > max_bytes):
            raise WireError("too_large", f"message exceeds the limit of {max_bytes} bytes")
    else:
        raise WireError("bad_json", f"expected text, got {type(data).__name__}")
    try:
        # Floats are parsed by the C decoder (no Python hook per number: thousands of reports a
        # second, issue 15); one that overflowed to infinity is found by the walk below.
        obj = json.loads(data, parse_constant=_reject_constant)
    except RecursionError:
        raise WireError("bad_json", "message is nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError, int too long, NaN
        raise WireError("bad_json", f"message is not valid JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise WireError("not_object", f"message must be a JSON object, got {type(obj).__name__}")
    fault = _scan(obj, MAX_DEPTH)
    if fault == "deep":
        raise WireError("bad_json", f"message is nested deeper than {MAX_DEPTH} levels")
    if fault == "inf":
        raise WireError("bad_json", "message is not valid JSON: a number is out of range")
    return obj


def _scan(obj: Any, limit: int) -> str | None:
    """"deep" when nested deeper than `limit`, "inf" when a number overflowed, else None (one walk)."""
    stack = [(obj, 1)]
    pop, push = stack.pop, stack.append
    while stack:
        node, depth = pop()
        if depth > limit:
            return "deep"
        for v in (node.values() if type(node) is dict else node):
            t = type(v)
            if t is dict or t is list:
                push((v, depth + 1))
            elif t is float and v - v != 0.0:       # inf (NaN is refused by the decoder)
                return "inf"
    return None


_KIND_TAGS = {k.value for k in ReportKind}


def _describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:3]:
        path = list(err["loc"][1:])                  # [0] is the type's union tag
        if err["loc"][:1] == ("report",) and path and path[0] in _KIND_TAGS:
            path = path[1:]                          # and a report's kind
        if err["type"] == "union_tag_invalid":                 # the words of the field's own check
            path, msg = ["kind"], f"Input should be {_KINDS}"
        elif err["type"] == "union_tag_not_found":
            path, msg = ["kind"], "Field required"
        else:
            msg = err["msg"]
        parts.append(f"{'.'.join(str(p) for p in path) or 'message'}: {msg}")
    more = exc.error_count() - len(parts)
    return "; ".join(parts) + (f" (and {more} more)" if more > 0 else "")


def _parse(data, adapter: TypeAdapter, types: dict[str, type[_Msg]], side: str, max_bytes: int):
    obj = _load(data, max_bytes)
    mid = obj.get("id")
    ref = mid if isinstance(mid, str) and 0 < len(mid) <= 128 else None
    mtype = obj.get("type")
    if not isinstance(mtype, str) or mtype not in types:
        known = ", ".join(sorted(types))
        shown = repr(mtype)[:64] if mtype is not None else "none"
        raise WireError("unknown_type", f"unknown message type {shown} from {side} (known: {known})", ref=ref)
    try:
        return adapter.validate_python(obj)
    except ValidationError as exc:
        raise WireError("invalid", f"bad {mtype!r} message: {_describe(exc)}", ref=ref) from None
    except RecursionError:
        raise WireError("invalid", f"bad {mtype!r} message: nested too deeply", ref=ref) from None


def parse_agent_message(data: str | bytes, *, max_bytes: int = MAX_MESSAGE_BYTES):
    """Parse what an agent sent (controller side). Raises only WireError."""
    return _parse(data, _agent_adapter, AGENT_TYPES, "agent", max_bytes)


def parse_controller_message(data: str | bytes, *, max_bytes: int = MAX_MESSAGE_BYTES):
    """Parse what the controller sent (agent side). Raises only WireError."""
    return _parse(data, _controller_adapter, CONTROLLER_TYPES, "controller", max_bytes)


def encode(msg: _Msg) -> str:
    """The JSON text of a message (ASCII only, so any store or log takes it as is)."""
    return json.dumps(msg.model_dump(mode="json", by_alias=True, exclude_none=False),
                      separators=(",", ":"), allow_nan=False)


def _fast_id() -> str:
    """A uuid4's text from the `random` module (no system call, no UUID object): a message id needs
    to be unique, not secret - the hub makes one per ack, thousands a second (issue 15)."""
    h = f"{(_rand128() & _V4_CLEAR) | _V4_SET:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _rand128() -> int:
    return random.getrandbits(128)


_V4_CLEAR = ~((0xF000 << 64) | (0xC000 << 48))      # the version and variant bits ...
_V4_SET = (0x4000 << 64) | (0x8000 << 48)           # ... of a version 4 uuid (RFC 4122)


def encode_ack(report_id: str) -> str:
    """The same text as `encode(Ack(report_id=...))`, without the model (the hub sends one per
    report, thousands a second)."""
    return f'{{"id":"{_fast_id()}","type":"ack","report_id":{_json_str(report_id)}}}'


def relay(sig: Signal, sender: str) -> RelayedSignal:
    """What the controller forwards to `sig.to`: the same id, naming the sender."""
    return RelayedSignal(id=sig.id, session_id=sig.session_id, from_=sender,
                         description=sig.description, reply_to=sig.reply_to)
