"""Request and response models of the REST API (pydantic), and the sites file.

The OpenAPI document (controller.openapi) is generated from these models and
the route table, so the document and the code cannot drift apart; the tests
validate real responses against the response models.
"""
from __future__ import annotations

import datetime as dt
import unicodedata
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from contract import vocab
from contract.vocab import (
    AgreementState,
    CheckKind,
    CheckStatus,
    Coordinator,
    CourtLevel,
    DiagnosisStatus,
    HealthStatus,
    HearingStatus,
    HearingVerdict,
    Initiative,
    InstitutionKind,
    Role,
    SuspensionReason,
    TerminalRole,
)

Slug = str
SLUG = r"^[a-z0-9][a-z0-9._-]{0,63}$"

# The words of the fields are contract.vocab's enums (the OpenAPI document lists each once, under
# its name); `Verdict` here is a hearing's verdict, `SessionVerdict` the quality model's.
Verdict = HearingVerdict
SessionVerdict = vocab.Verdict


class ReasonCodeOut(BaseModel):
    """A reason as a code and its parameters (contract.reasons; texts: GET /api/v1/reasons)."""
    code: str
    params: dict[str, Any] = Field(default_factory=dict)


class FindingOut(BaseModel):
    """Which side of a degraded or failed pair is at fault (issue 12; controller.findings): each side
    tested against the reference terminal in the data centre. a = the caller, b = the callee."""
    code: str = Field(description="access_link_a | access_link_b | both | between | between_no_path | "
                                  "side_untested | reference_unavailable (a reason code: GET /api/v1/reasons)")
    side: str | None = Field(description="the terminal at fault (or untested); null when neither or both")
    segment: Literal["a", "b", "between", "none"]
    figures: dict[str, Any] = Field(description="the pair's and each side's verdict, loss, jitter, round trip")
    params: dict[str, Any] = Field(default_factory=dict, description="the code's parameters")
    text: str = Field(description="in English; the page renders `code` in its language")


# The statuses a PATCH may set (a hearing is cancelled by DELETE).
PatchStatus = Literal["scheduled", "in_progress", "held", "postponed"]


def _one_line(v: str) -> str:
    """Refuse text with a control character (CR, LF, tab, NUL...) or a Unicode line or paragraph
    separator: names and case numbers reach e-mail headers and lines (issue 11)."""
    for c in v:
        if unicodedata.category(c) in ("Cc", "Zl", "Zp"):
            raise ValueError(f"must be one line of text, without control characters (found U+{ord(c):04X})")
    return v


# Text that may reach an e-mail's header or a line of its body (controller.notify): one line.
OneLine = Annotated[str, AfterValidator(_one_line)]


class In(BaseModel):
    """A request body: unknown fields refused, strings stripped, enum fields as their plain words."""
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, use_enum_values=True)


def _not_null(*names: str):
    """A PATCH may leave these fields out but not set them to null (their columns are NOT NULL):
    400 naming the field rather than a database error (issue 7: found by fuzzing)."""
    def check(self):
        for name in names:
            if name in self.model_fields_set and getattr(self, name) is None:
                raise ValueError(f"{name}: may not be null")
        return self
    return model_validator(mode="after")(check)


def _tz(v: str | None) -> str | None:
    if v is None:
        return v
    try:
        ZoneInfo(v)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {v!r} (e.g. Asia/Almaty)") from None
    return v


def _utc(v: dt.datetime | None) -> dt.datetime | None:
    if v is None:
        return v
    if v.tzinfo is None:
        raise ValueError("must carry a time zone (e.g. 2026-12-01T09:00:00Z or +05:00)")
    try:
        return v.astimezone(dt.UTC)
    except OverflowError:       # 0001-01-01T00:30+01:00 is before the calendar's first day in UTC
        raise ValueError("out of range: before 0001-01-01 or after 9999-12-31 in UTC") from None


# --- registry ---------------------------------------------------------------------------------

class InstitutionIn(In):
    """A new institution of the registry: a court (with its level), a SIZO or a correctional institution."""
    id: Slug = Field(pattern=SLUG)
    kind: InstitutionKind
    level: CourtLevel | None = None
    name: OneLine = Field(min_length=1, max_length=300)
    region: OneLine = Field(min_length=1, max_length=200)
    timezone: str = "Asia/Almaty"

    _tz = field_validator("timezone")(lambda cls, v: _tz(v))

    @model_validator(mode="after")
    def _level(self):
        if self.kind == "court" and self.level is None:
            raise ValueError("level: a court needs a level (district, regional or supreme)")
        if self.kind != "court" and self.level is not None:
            raise ValueError("level: only courts have a level")
        return self


class InstitutionPatch(In):
    """A change to an institution: the fields given are set."""
    kind: InstitutionKind | None = None
    level: CourtLevel | None = None
    name: OneLine | None = Field(None, min_length=1, max_length=300)
    region: OneLine | None = Field(None, min_length=1, max_length=200)
    timezone: str | None = None

    _tz = field_validator("timezone")(lambda cls, v: _tz(v))
    _nn = _not_null("kind", "name", "region", "timezone")


class InstitutionOut(BaseModel):
    """An institution as the API gives it."""
    id: str
    kind: InstitutionKind
    level: CourtLevel | None
    name: str
    region: str
    timezone: str
    created_at: str


class RoomIn(In):
    """A new room of an institution."""
    institution_id: Slug
    name: OneLine = Field(min_length=1, max_length=200)


class RoomPatch(In):
    """A room's new name."""
    name: OneLine = Field(min_length=1, max_length=200)


class RoomOut(BaseModel):
    """A room as the API gives it."""
    id: int
    institution_id: str
    name: str


class TerminalIn(In):
    """A new terminal: where it stands (institution, room) and its role."""
    id: Slug = Field(pattern=SLUG)
    institution_id: Slug
    room_id: int | None = None
    role: TerminalRole | None = None     # default: courtroom at a court, institution elsewhere
    name: OneLine = Field(min_length=1, max_length=200)


class TerminalPatch(In):
    """A change to a terminal: the fields given are set."""
    institution_id: Slug | None = None
    room_id: int | None = None
    role: TerminalRole | None = None
    name: OneLine | None = Field(None, min_length=1, max_length=200)

    _nn = _not_null("institution_id", "role", "name")


class LastCheck(BaseModel):
    """A terminal's latest finished test or pre-connect check."""
    hearing_id: int
    kind: CheckKind
    status: CheckStatus
    verdict: SessionVerdict | None
    finished_at: str | None
    peer: str
    caller: str | None = None
    callee: str | None = None
    reasons: list[str] = Field(default_factory=list, description="why the verdict, in English")
    reason_codes: list[ReasonCodeOut] = Field(default_factory=list, description="the same reasons as codes")


class TerminalHealth(BaseModel):
    """A terminal's health from its agent's heartbeats (rule 14)."""
    status: HealthStatus | None = Field(None, description="the agent's last health summary (rule 14)")
    problems: list[str] = Field(default_factory=list)
    checked_at: str | None = None
    last_seen: str | None = Field(None, description="the agent's last heartbeat")
    agent_version: str | None = None


class TerminalOut(BaseModel):
    """A terminal as the API gives it: registry data, presence, last check and health."""
    id: str
    institution_id: str
    room_id: int | None
    role: TerminalRole
    name: str
    online: bool | None = Field(description="connected now (to this or another controller); null when the "
                                            "terminal's institution is outside the user's scope")
    last_check: LastCheck | None = Field(None, description="its latest finished test or pre-connect check")
    health: TerminalHealth | None = Field(None, description="from the agent's heartbeats; null if never connected")


# --- hearings ---------------------------------------------------------------------------------

class ParticipantIn(In):
    """A remote participant of a hearing: its terminal (and institution)."""
    terminal_id: Slug
    institution_id: Slug | None = Field(None, description="default: the terminal's institution")


class HearingIn(In):
    """A hearing to schedule (rules 10-13): case, room, start, duration and the remote participants."""
    case_number: OneLine = Field(min_length=1, max_length=100)
    room_id: int
    court_terminal_id: Slug | None = Field(None, description="default: the room's terminal")
    start_utc: dt.datetime = Field(description="start with a time zone; stored in UTC")
    duration_min: int = Field(60, ge=1, le=24 * 60)
    initiative: Initiative = Initiative.COURT
    participants: list[ParticipantIn] = Field(min_length=1, max_length=20)

    _utc = field_validator("start_utc")(lambda cls, v: _utc(v))


class HearingPatch(In):
    """A change to a hearing: the fields given are set (the checks are planned again)."""
    case_number: OneLine | None = Field(None, min_length=1, max_length=100)
    room_id: int | None = None
    court_terminal_id: Slug | None = None
    start_utc: dt.datetime | None = None
    duration_min: int | None = Field(None, ge=1, le=24 * 60)
    initiative: Initiative | None = None
    status: PatchStatus | None = None
    participants: list[ParticipantIn] | None = Field(
        None, min_length=1, max_length=20,
        description="the new list: removed terminals' checks are cancelled, added ones get theirs")

    _utc = field_validator("start_utc")(lambda cls, v: _utc(v))
    _nn = _not_null("case_number", "room_id", "court_terminal_id", "start_utc", "duration_min", "initiative",
                    "status", "participants")


class AgreementIn(In):
    """A coordinator's agreement to a hearing's date and time (rules 11, 12)."""
    note: str | None = Field(None, max_length=1000)


class RunCheckIn(In):
    """Run a hearing's test or pre-connect check now."""
    kind: CheckKind = CheckKind.TEST


class CourtOut(BaseModel):
    """The court of a hearing."""
    id: str
    name: str
    level: CourtLevel | None
    region: str
    timezone: str


class RoomRef(BaseModel):
    """The room of a hearing."""
    id: int
    name: str


class ParticipantOut(BaseModel):
    """A remote participant of a hearing, with the start in its own time zone."""
    institution_id: str
    institution_name: str
    institution_kind: InstitutionKind
    region: str
    terminal_id: str
    timezone: str
    start_local: str = Field(description="the start in the institution's time zone")


class AgreementOut(BaseModel):
    """Whose agreement a hearing needs, and whether it is in."""
    coordinator: Coordinator = Field(description="regional (rule 11) or department (rule 12)")
    state: AgreementState
    by: str | None
    at: str | None


class CheckItemOut(BaseModel):
    """One remote terminal's check of a hearing."""
    id: int
    caller: str
    callee: str
    status: CheckStatus
    session_id: str | None
    attempts: int
    deadline: str
    late: bool
    overdue_at: str | None
    started_at: str | None
    finished_at: str | None
    verdict: SessionVerdict | None
    error: str | None
    reasons: list[str] = Field(default_factory=list, description="why the verdict, in English")
    reason_codes: list[ReasonCodeOut] = Field(default_factory=list, description="the same reasons as codes")
    result: dict[str, Any] | None = Field(description="the agents' vks.test-report/1, judged by the controller")
    diagnosis: DiagnosisStatus | None = Field(None, description="degraded or failed: each side tested against "
                                              "the reference (running, then done); null: not diagnosed")
    finding: FindingOut | None = Field(None, description="which side is at fault; null for a clean result")


class Window(BaseModel):
    """The pre-connect check's window (rule 15)."""
    opens: str
    closes: str


class CheckOut(BaseModel):
    """A hearing's test request (rule 13) or pre-connect check (rule 15), over its participants."""
    created_at: str
    due_from: str
    deadline: str
    status: CheckStatus
    late: bool = Field(description="created when its deadline had already passed")
    overdue: bool
    verdict: SessionVerdict | None
    result: dict[str, Any] | None = Field(description="the deciding (worst) report")
    items: list[CheckItemOut]
    window: Window | None = None


class HearingOut(BaseModel):
    """A hearing as the API and the exports give it, with its operability verdict (rule 3)."""
    id: int
    case_number: str
    court: CourtOut
    room: RoomRef
    court_terminal: str
    start_utc: str
    start_local: str = Field(description="the start in the court's time zone")
    end_utc: str
    duration_min: int
    initiative: Initiative
    status: HearingStatus
    participants: list[ParticipantOut]
    agreement: AgreementOut
    test_request: CheckOut | None
    preconnect: CheckOut | None
    verdict: Verdict = Field(description="operability of the VKS for this hearing (rule 3)")
    suspended: bool
    suspension_ids: list[int]
    created_at: str
    updated_at: str
    created_by: str | None


class EventOut(BaseModel):
    """An entry of a hearing's event record (rule 21)."""
    id: int
    hearing_id: int
    at: str
    kind: str
    detail: dict[str, Any]


# --- suspensions, users ---------------------------------------------------------------------

class SuspensionIn(In):
    """A suspension of an institution or of an area (rule 24)."""
    institution_id: Slug | None = None
    region: OneLine | None = Field(None, min_length=1, max_length=200)
    reason: SuspensionReason
    note: str | None = Field(None, max_length=2000)
    from_utc: dt.datetime | None = Field(None, description="default: now")
    until_utc: dt.datetime | None = Field(None, description="default: until lifted")

    _utc = field_validator("from_utc", "until_utc")(lambda cls, v: _utc(v))

    @model_validator(mode="after")
    def _target(self):
        if (self.institution_id is None) == (self.region is None):
            raise ValueError("institution_id: give exactly one of institution_id and region")
        return self


class SuspensionOut(BaseModel):
    """A suspension as the API gives it."""
    id: int
    institution_id: str | None
    region: str | None
    reason: SuspensionReason
    note: str | None
    from_utc: str
    until_utc: str | None
    lifted_at: str | None
    created_by: str | None
    lifted_by: str | None
    active: bool
    affected_hearings: list[int] | None = None


InstitutionRef = Annotated[str, Field(min_length=1, max_length=64)]
RegionName = Annotated[OneLine, Field(min_length=1, max_length=200)]


class UserIn(In):
    """A new user: name, role, for a coordinator whose agreements they give (`scope`), and where
    their post covers: `institutions` and/or `regions` (neither: national; an admin is national)."""
    name: str = Field(min_length=1, max_length=128, pattern=r"^[\w.@-]+$")
    role: Role
    scope: Coordinator | None = None
    institutions: list[InstitutionRef] = Field(default_factory=list, max_length=1000)
    regions: list[RegionName] = Field(default_factory=list, max_length=100)


class UserPatch(In):
    """A change of a user: role, coordinator level, institutions, regions (a field left out stays;
    both lists empty: national). It takes effect at the user's next request."""
    role: Role | None = None
    scope: Coordinator | None = None
    institutions: list[InstitutionRef] | None = Field(None, max_length=1000)
    regions: list[RegionName] | None = Field(None, max_length=100)
    _nn = _not_null("role", "institutions", "regions")


class UserOut(BaseModel):
    """A user as the API gives it (the token only when created)."""
    id: int
    name: str
    role: Role
    scope: Coordinator | None
    institutions: list[str] = Field(default_factory=list, description="institutions the post covers")
    regions: list[str] = Field(default_factory=list, description="regions the post covers (neither: national)")
    created_at: str
    disabled_at: str | None = Field(None, description="set when the user was removed (DELETE /users/{name})")
    token: str | None = Field(None, description="shown once, when created")


class RevokedOut(BaseModel):
    """How many tokens were revoked."""
    revoked: int


class AuditOut(BaseModel):
    """An entry of the audit trail: who did what to which target, when."""
    id: int
    at: str
    who: str
    action: str
    target: str
    detail: dict[str, Any]


class ErrorOut(BaseModel):
    """An error answer: a stable code, a message for people and the field at fault."""
    error: str = Field(description="stable code: invalid, unauthorized, forbidden, not_found, conflict, "
                                   "too_large, internal")
    message: str
    field: str | None = None


class HealthOut(BaseModel):
    """The controller's own health: database and scheduler."""
    status: Literal["ok", "degraded"]
    database: Literal["ok", "error"]
    scheduler: Literal["ok", "stalled", "off"]
    version: str


class ImportOut(BaseModel):
    """What a sites import created and updated."""
    institutions_created: int
    institutions_updated: int
    rooms_created: int
    terminals_created: int
    terminals_updated: int


# --- sites file (configs/sites.yaml) ---------------------------------------------------------

class SiteTerminal(In):
    """A terminal in the sites file."""
    id: Slug = Field(pattern=SLUG)
    name: OneLine
    role: TerminalRole | None = None


class SiteRoom(In):
    """A room in the sites file, with its terminals."""
    name: OneLine
    terminals: list[SiteTerminal] = Field(default_factory=list)


class SiteInstitution(InstitutionIn):
    """An institution in the sites file, with its rooms and terminals."""
    rooms: list[SiteRoom] = Field(default_factory=list)
    terminals: list[SiteTerminal] = Field(default_factory=list)


class SitesFile(In):
    """The sites file (configs/sites.yaml): the registry to import."""
    institutions: list[SiteInstitution]

    @model_validator(mode="after")
    def _unique(self):
        seen: set[str] = set()
        for inst in self.institutions:
            for t in inst.terminals + [t for r in inst.rooms for t in r.terminals]:
                if t.id in seen:
                    raise ValueError(f"terminal id {t.id!r} appears twice")
                seen.add(t.id)
        ids = [i.id for i in self.institutions]
        if len(ids) != len(set(ids)):
            raise ValueError("an institution id appears twice")
        return self
