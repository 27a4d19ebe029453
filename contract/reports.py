"""What agents report, as typed models: the session report (`vks.test-report/1`), the per-second
interval, the health check (`vks.health/1`) and the bodies of the wire's `report` messages.

Validated once at the edge (`contract.wire` parses a report's body with the model of its kind; the
agent validates what it builds before it goes to its outbox; the controller reads stored reports
back through the same models), so readers take typed figures and never re-check shapes.

The report is a published contract (issue 3): every key keeps its name and its JSON value. A model
dumps exactly the keys it was given (`dump()`: keys never given are left out, a key given as null
stays null), so a report read and dumped again is the same JSON object. The
wire's `encode` dumps a message's payload that way too.

Unknown keys: the wire's messages refuse them (a new message field is a new protocol version), but
the payloads KEEP them - a newer agent adds a figure to its report, an older controller stores and
serves it unchanged and judges what it knows. A known key with a value of the wrong type is refused:
numbers are JSON numbers (never strings or booleans, never NaN or infinite), counts are integers.
Every key is optional: a key absent is unknown, and the quality model says so.
"""
from __future__ import annotations

from typing import Annotated, Any, Literal

from annotated_types import Ge, Le
from pydantic import (
    AllowInfNan,
    BaseModel,
    ConfigDict,
    Field,
    Strict,
    ValidationInfo,
    ValidatorFunctionWrapHandler,
    field_validator,
)

from contract.vocab import DeviceStatus, Direction, HealthStatus, ReportKind, SessionKind, SessionRole, Verdict

TEST_REPORT_SCHEMA = "vks.test-report/1"
HEALTH_SCHEMA = "vks.health/1"

# A JSON number, kept as sent (an integer stays an integer): finite, never a boolean or a string.
Number = Annotated[int, Strict()] | Annotated[float, Strict(), AllowInfNan(False)]
# A figure that cannot be negative (a delay, a rate, a size).
Amount = Annotated[int, Strict(), Ge(0)] | Annotated[float, Strict(), AllowInfNan(False), Ge(0)]
# A share of a whole, 0..1.
Ratio = Annotated[int, Strict(), Ge(0), Le(1)] | Annotated[float, Strict(), AllowInfNan(False), Ge(0), Le(1)]
# A number of things (packets, frames, seconds counted).
Count = Annotated[int, Strict(), Ge(0)]
Flag = Annotated[bool, Strict()]
Text = Annotated[str, Strict()]


class Payload(BaseModel):
    """A payload an agent sends: typed keys, unknown keys kept, dumped exactly as given."""
    model_config = ConfigDict(extra="allow", frozen=True, populate_by_name=True, serialize_by_alias=True)

    def dump(self) -> dict[str, Any]:
        """The JSON object, exactly the keys given (a key never given stays out, at every level)."""
        return self.model_dump(mode="json", exclude_unset=True)


class Summary(Payload):
    """Mean, median, 95th percentile and maximum of a figure over a session (None: no samples)."""
    mean: Number | None = None
    p50: Number | None = None
    p95: Number | None = None
    max: Number | None = None
    samples: Count | None = None
    total_s: Amount | None = None
    max_s: Amount | None = None

    def pick(self, *keys: str) -> float | None:
        """The first of `keys` that has a value."""
        for key in keys:
            value = getattr(self, key, None)
            if value is not None:
                return float(value)
        return None


# A figure given as one number or as a Summary.
Figure = Number | Summary


def figure(value: Figure | None, *keys: str) -> float | None:
    """A number as it is, a summary by the first of `keys` it has; None when unknown."""
    if isinstance(value, Summary):
        return value.pick(*keys)
    return None if value is None else float(value)


class SideSecond(Payload):
    """One second of one direction as received: all its streams together."""
    t: Amount | None = None
    packets: Count | None = None
    lost: Count | None = None
    loss_ratio: Ratio | None = None
    jitter_ms: Amount | None = None
    bitrate_kbps: Amount | None = None
    fps: Amount | None = None                 # frames decoded in the second (video)
    frame_rate: Amount | None = None
    stalled: Flag | None = None               # no packet in a second while media was flowing
    one_way_delay_ms: Amount | None = None
    freeze_s: Amount | None = None


class Interval(Payload):
    """One second of a session: the round trip and each direction (None: no figures)."""
    t: Amount | None = None
    rtt_ms: Amount | None = None
    duration_s: Amount | None = None          # shorter than 1 for the last second of a session
    inbound: SideSecond | None = None
    outbound: SideSecond | None = None

    def side(self, direction: Direction) -> SideSecond | None:
        """The figures of `direction` this second."""
        return self.inbound if direction is Direction.INBOUND else self.outbound


class DirectionSummary(Payload):
    """Per-second figures of a direction summarised over the session."""
    loss_ratio: Summary | None = None
    jitter_ms: Summary | None = None
    bitrate_kbps: Summary | None = None


class DirectionFigures(Payload):
    """What one direction received over a session (`outbound`: the peer received it).

    What the counts count (issue 12): `packets`, `lost` and `loss_ratio` are of EVERY RTP packet
    sent that way - audio, video and the retransmissions (RTX) - so they say what the link lost,
    not what the decoder missed in the end (a packet lost and then repaired by a retransmission is
    one loss, and the retransmission, if the link drops it too, another). `bitrate_kbps` is every
    RTP stream's received bitrate together (RTP header and payload, no IP/UDP/SRTP overhead).
    `rtx_packets` and `rtx_share` are the retransmissions received and their share of the bytes
    received. `estimate_kbps` is the sender's last bandwidth estimate from the receiver's
    congestion feedback (REMB, for the video stream and its retransmissions): what the
    congestion controller found this direction to carry."""
    packets: Count | None = None
    lost: Count | None = None
    loss_ratio: Ratio | None = None
    rtx_packets: Count | None = None
    rtx_share: Ratio | None = None
    estimate_kbps: Amount | None = None
    jitter_ms: Figure | None = None
    bitrate_kbps: Amount | None = None
    stall_s: Count | None = None
    longest_stall_s: Count | None = None
    summary: DirectionSummary | None = None
    fps: Figure | None = None
    frame_rate: Figure | None = None
    freezes: Count | None = None
    freeze_s: Figure | None = None
    freeze_max_s: Figure | None = None
    one_way_delay_ms: Figure | None = None
    burst_r: Amount | None = None


class Stream(Payload):
    """One received RTP stream (one SSRC) over a session, retransmission streams included.

    `packets` are the unique packets received, `expected` the sequence numbers the sender used
    (the finish handshake gives the first and the last), `lost` = expected - packets: what the
    link dropped of this stream. `bitrate_share` is this stream's share of the bytes received that
    way. A retransmission stream (RFC 4588 RTX) has `rtx: true` and `repairs`, the SSRC whose
    packets it resends; its `kind` is the media's; it has no jitter, stalls or frames (resent
    packets keep no regular spacing), and its `bitrate_kbps` is over the whole session, not its
    own bursts. Media streams come before retransmission streams in the list."""
    kind: Text | None = None                  # audio | video
    direction: Direction | None = None        # in a session report; a side's own list has none
    ssrc: Count | None = None
    rtx: Flag | None = None
    repairs: Count | None = None
    bitrate_share: Ratio | None = None
    packets: Count | None = None
    lost: Count | None = None
    expected: Count | None = None
    loss_ratio: Ratio | None = None
    jitter_ms: Figure | None = None
    jitter_ms_p95: Amount | None = None
    jitter_ms_max: Amount | None = None
    jitter_ms_last: Amount | None = None
    bitrate_kbps: Amount | None = None
    duplicates: Count | None = None
    reordered: Count | None = None
    early: Count | None = None
    stall_s: Count | None = None
    frames: Count | None = None
    fps: Amount | None = None
    freezes: Count | None = None
    freeze_s: Amount | None = None


class ReceiveSide(DirectionFigures):
    """One side's own receive figures: what the callee sends back, and its final report body."""
    streams: list[Stream] = []
    intervals: list[SideSecond] = []
    error: Text | None = None


class ReasonItem(Payload):
    """One reason as a code with its parameters (contract.reasons); `reasons` holds its English text."""
    code: Text | None = None
    params: dict[str, Any] = {}


class CapacityStep(Payload):
    """One step of a capacity ramp: its rate (IP kb/s), datagrams sent and received, the queueing
    delay growth within it, and its verdict (clean | loss | delay)."""
    kbps: Amount | None = None
    sent: Count | None = None
    received: Count | None = None
    loss_ratio: Ratio | None = None
    delay_growth_ms: Number | None = None
    verdict: Text | None = None


class CapacityDirection(Payload):
    """What one direction carries (agent/capacity.py): `kbps` the highest rate carried cleanly in
    IP kb/s; `limited_by` loss | delay | ceiling (null: the time ran out first, `kbps` a lower
    bound); the figures of the step that set the limit; the ramp's time and steps."""
    kbps: Amount | None = None
    limited_by: Literal["loss", "delay", "ceiling"] | None = None
    loss_ratio_at_limit: Ratio | None = None
    delay_growth_ms: Number | None = None
    duration_s: Amount | None = None
    steps: list[CapacityStep] = []


class Capacity(Payload):
    """The report's `capacity` (issue 12): each direction from the tester's side, the ceiling,
    and what stopped the ramp (`error`; a direction not measured is null)."""
    outbound: CapacityDirection | None = None
    inbound: CapacityDirection | None = None
    ceiling_kbps: Amount | None = None
    error: Text | None = None

    def direction(self, direction: Direction) -> CapacityDirection | None:
        """The figures of `direction`."""
        return self.inbound if direction is Direction.INBOUND else self.outbound


class SessionReport(Payload):
    """`vks.test-report/1`: both directions of a session, its intervals and the verdict."""
    schema_: Text | None = Field(default=None, alias="schema")
    started_at: Text | None = None
    duration_s: Amount | None = None
    connected: Flag | None = None
    connect_ms: Amount | None = None
    error: Text | None = None
    profile: Text | None = None
    rtt_ms: Figure | None = None
    outbound: DirectionFigures | None = None
    inbound: DirectionFigures | None = None
    streams: list[Stream] = []
    mos: Number | None = None
    verdict: Verdict | None = None
    reasons: list[Text] = []
    reason_codes: list[ReasonItem] = []      # the reasons as codes, beside their English `reasons`
    intervals: list[Interval] = []
    aiortc_stats: dict[str, Any] | None = None   # aiortc's own view, for comparison only
    rtx_received: Count | None = None
    # What each side's senders did (agent/sender.py): `packets`, `rtx_packets` and, for video,
    # `retransmission` (NACKs received, packets asked for, resent and refused by rule, keyframes,
    # the last estimate). `sent` is the caller's (outbound), `peer_sent` the callee's (inbound).
    sent: dict[str, Any] | None = None
    peer_sent: dict[str, Any] | None = None
    capacity: Capacity | None = None          # asked for only (agent/capacity.py)
    # Issue 12: the type of the local candidate of the ICE pair the media used (a relay: TURN in the
    # path), and for a stall, which direction stopped first (the other may only have followed).
    path_type: Literal["host", "srflx", "prflx", "relay"] | None = None
    stalled_first: Direction | None = None

    def direction(self, direction: Direction) -> DirectionFigures | None:
        """The figures of `direction`."""
        return self.inbound if direction is Direction.INBOUND else self.outbound

    def audio(self, direction: Direction) -> Stream | None:
        """The audio stream of `direction`, when the report lists streams."""
        return next((s for s in self.streams if s.kind == "audio" and s.direction is direction), None)


# ---- health (rule 14) ------------------------------------------------------------------------

class Cpu(Payload):
    """CPU busy share, count and load averages."""
    percent: Amount | None = None
    count: Count | None = None
    load: list[Number] = []
    load_per_cpu: Amount | None = None


class Memory(Payload):
    """Memory in use."""
    total_bytes: Count | None = None
    used_bytes: Count | None = None
    available_bytes: Count | None = None
    used_ratio: Ratio | None = None


class Disk(Payload):
    """Usage of one mount, with what the agent keeps there."""
    mount: Text | None = None
    purposes: list[Text] = []
    total_bytes: Count | None = None
    used_bytes: Count | None = None
    free_bytes: Count | None = None
    used_ratio: Ratio | None = None
    error: Text | None = None


class Device(Payload):
    """A camera or a microphone: present, and (issue 14) what it was found to give - `status` and,
    when it was opened and read (`method` "probe"), the figures it was judged by (agent/devices.py)."""
    present: Flag | None = None
    status: DeviceStatus | None = None
    method: Text | None = None                # "probe": opened and read; "presence": device nodes only
    error: Text | None = None


class Clock(Payload):
    """The system clock against the time daemon."""
    synchronized: Flag | None = None
    offset_s: Number | None = None
    max_error_s: Number | None = None
    source: Text | None = None
    reason: Text | None = None


class Health(Payload):
    """`vks.health/1`: one health check of a terminal (the heartbeat's `health`)."""
    schema_: Text | None = Field(default=None, alias="schema")
    terminal_id: Text | None = None
    checked_at: Text | None = None
    status: HealthStatus | Literal["unknown"] | None = None   # "unknown": the check itself failed
    problems: list[Text] = []
    cpu: Cpu | None = None
    memory: Memory | None = None
    disk: list[Disk] = []
    network: dict[str, Any] | None = None
    camera: Device | None = None
    microphone: Device | None = None
    clock: Clock | None = None
    agent: dict[str, Any] | None = None


class HookOutcome(Payload):
    """What an endpoint hook did on a break, reconnect or resume (rule 22)."""
    event: Text | None = None
    hearing_id: Annotated[int, Strict()] | None = None
    configured: Flag | None = None
    kind: Text | None = None                  # command | http
    ok: Flag | None = None
    error: Text | None = None
    exit_code: Annotated[int, Strict()] | None = None
    http_status: Annotated[int, Strict()] | None = None
    duration_ms: Amount | None = None
    output: Text | None = None


# ---- the bodies of the wire's `report` messages --------------------------------------------

class _SessionPart(Payload):
    role: SessionRole | None = None
    peer: Text | None = None
    session_kind: SessionKind | None = None


class SessionBody(_SessionPart):
    """kind "session": a side's final figures; the caller's `report` is the session report, the
    callee's its own receive side."""
    report: SessionReport | ReceiveSide | None = None

    @field_validator("report", mode="wrap")
    @classmethod
    def _by_role(cls, value: Any, handler: ValidatorFunctionWrapHandler, info: ValidationInfo) -> Any:
        model = ReceiveSide if info.data.get("role") == SessionRole.CALLEE else SessionReport
        if value is None or isinstance(value, model):
            return handler(value)
        return model.model_validate(value)

    def caller_report(self) -> SessionReport:
        """The session report (empty when this body carries none)."""
        return self.report if isinstance(self.report, SessionReport) else SessionReport()


class IntervalBody(_SessionPart):
    """kind "interval": one second of a running session, from one side."""
    interval: Interval | None = None


class HealthBody(Health):
    """kind "health": a health payload, or the outcome of an endpoint hook."""
    hook: HookOutcome | None = None


ReportBody = SessionBody | IntervalBody | HealthBody

BODIES: dict[ReportKind, type[SessionBody] | type[IntervalBody] | type[HealthBody]] = {
    ReportKind.SESSION: SessionBody,
    ReportKind.INTERVAL: IntervalBody,
    ReportKind.HEALTH: HealthBody,
}
