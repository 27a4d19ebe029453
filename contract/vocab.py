"""Every word list the two programs, the database and the web page share, defined once.

Each vocabulary is a `StrEnum`: its members compare equal to their plain strings, so JSON, SQL and
YAML keep the words they always had (`Direction.INBOUND == "inbound"`), and the typed code still
knows the whole list. The controller's schema builds its CHECK constraints from these enums, the
API models take their `Literal`s from them, and the web page reads them from
`GET /api/v1/vocabularies` instead of keeping a copy.

Ordered vocabularies (verdicts, health statuses) are declared from best to worst; `worst()` ranks
by that order.
"""
from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum
from typing import TypeVar


class Direction(StrEnum):
    """A direction of a session, seen from the terminal that reports it."""
    OUTBOUND = "outbound"
    INBOUND = "inbound"


class Verdict(StrEnum):
    """The quality model's verdict on a session, a second or a direction (best first)."""
    GOOD = "good"
    DEGRADED = "degraded"
    UNUSABLE = "unusable"


class HearingVerdict(StrEnum):
    """A hearing's operability (rule 3): a session verdict, or why there is none."""
    UNKNOWN = "unknown"
    GOOD = "good"
    DEGRADED = "degraded"
    UNUSABLE = "unusable"
    SUSPENDED = "suspended"


class ReportKind(StrEnum):
    """What an agent's report carries."""
    SESSION = "session"
    INTERVAL = "interval"
    HEALTH = "health"


class SessionKind(StrEnum):
    """Why a WebRTC session runs: the rule-13 test, the rule-15 pre-connect check, live monitoring."""
    TEST = "test"
    PRECONNECT = "preconnect"
    MONITOR = "monitor"


class SessionRole(StrEnum):
    """A terminal's side of a session: the caller offers, the callee answers."""
    CALLER = "caller"
    CALLEE = "callee"


class HealthStatus(StrEnum):
    """A terminal's health summary (rule 14), best first."""
    OK = "ok"
    WARN = "warn"
    FAIL = "fail"


class DeviceStatus(StrEnum):
    """What a camera or a microphone was found to give (issue 14): the terminal's health check
    (agent/devices.py: the configured device opened and read for a few seconds) and a remote
    person's self-check in the browser use the same words. `ok`: frames arrive, neither black nor
    frozen, or sound that is not silent; `denied`: not allowed to open it (the browser's permission,
    the device node's); `missing`: there is none; `black`: the picture is black; `frozen`: the
    picture does not change (or no frames arrive); `silent`: the microphone gives no sound; `error`:
    it exists but could not be opened or read (busy, an I/O error) - the self-check names what
    happened with the other words."""
    OK = "ok"
    DENIED = "denied"
    MISSING = "missing"
    BLACK = "black"
    FROZEN = "frozen"
    SILENT = "silent"
    ERROR = "error"


class SessionMedia(StrEnum):
    """What a test session sends (agent/media.py): the synthetic tone and pattern, or the terminal's
    own camera and microphone (`vks-agent test --media devices`, `session.media`)."""
    SYNTHETIC = "synthetic"
    DEVICES = "devices"


class TerminalRole(StrEnum):
    """Where a terminal stands: a courtroom or a detention/correctional institution."""
    COURTROOM = "courtroom"
    INSTITUTION = "institution"


class DiagnosisStatus(StrEnum):
    """A diagnosis of a degraded or failed pair: both sides tested against the reference terminal."""
    RUNNING = "running"
    DONE = "done"


class InstitutionKind(StrEnum):
    """What an institution of the registry is."""
    COURT = "court"
    SIZO = "sizo"
    CORRECTIONAL = "correctional"
    DATACENTRE = "datacentre"      # holds reference terminals (issue 12: which side of a pair is at fault)


class HearingStatus(StrEnum):
    """Where a hearing stands."""
    SCHEDULED = "scheduled"
    IN_PROGRESS = "in_progress"
    HELD = "held"
    POSTPONED = "postponed"
    CANCELLED = "cancelled"


# The statuses of a hearing that still needs its link: checks run, the clock of the rules ticks.
ACTIVE_HEARING_STATUSES: tuple[HearingStatus, ...] = (
    HearingStatus.SCHEDULED, HearingStatus.IN_PROGRESS, HearingStatus.POSTPONED)


class LiveState(StrEnum):
    """The live monitoring of a hearing (rule 22)."""
    MONITORING = "monitoring"
    BREAK = "break"
    RECONNECTING = "reconnecting"
    READY_TO_RESUME = "ready_to_resume"
    ESCALATED = "escalated"
    STOPPED = "stopped"
    ENDED = "ended"


class BreakCause(StrEnum):
    """Why the live flow declared a break."""
    CONNECTION_LOST = "connection_lost"
    QUALITY = "quality"


class SuspensionReason(StrEnum):
    """Rule 24: the grounds on which an institution or an area is suspended."""
    RIOT = "riot"
    GROUP_DISOBEDIENCE = "group_disobedience"
    ESCAPE = "escape"
    HOSTAGE_TAKING = "hostage_taking"
    NATURAL_DISASTER = "natural_disaster"
    STATE_OF_EMERGENCY = "state_of_emergency"
    SPECIAL_REGIME = "special_regime"
    MARTIAL_LAW = "martial_law"


class Role(StrEnum):
    """A user's role: what they may do (scope says where)."""
    ADMIN = "admin"
    COORDINATOR = "coordinator"
    HEAD_OF_OFFICE = "head_of_office"   # the head of the court office: a secretary's rights, signs acts (rule 18)
    SECRETARY = "secretary"
    TECHNICIAN = "technician"
    VIEWER = "viewer"


class SignerRole(StrEnum):
    """The three signatures of an act of technical impossibility (rule 18)."""
    HEAD_OF_OFFICE = "head_of_office"
    SECRETARY = "secretary"
    TECHNICIAN = "technician"


E = TypeVar("E", bound=StrEnum)


def worst(vocabulary: type[E], words: Iterable[str], default: E) -> E:
    """The worst of `words` by the vocabulary's order (declared best first); words outside the
    vocabulary are ignored, and `default` stands when none is left."""
    order = list(vocabulary)
    ranked = [vocabulary(w) for w in words if w in order]
    return max(ranked, key=order.index, default=default)


def words(vocabulary: type[StrEnum]) -> tuple[str, ...]:
    """The vocabulary's words in declared order (for SQL CHECK constraints, Literals, the page)."""
    return tuple(m.value for m in vocabulary)


# What GET /api/v1/vocabularies serves to the web page: one source for every list it shows.
PUBLISHED: dict[str, type[StrEnum]] = {
    "directions": Direction,
    "verdicts": Verdict,
    "hearing_verdicts": HearingVerdict,
    "report_kinds": ReportKind,
    "session_kinds": SessionKind,
    "session_roles": SessionRole,
    "health_statuses": HealthStatus,
    "device_statuses": DeviceStatus,
    "terminal_roles": TerminalRole,
    "institution_kinds": InstitutionKind,
    "hearing_statuses": HearingStatus,
    "live_states": LiveState,
    "break_causes": BreakCause,
    "suspension_reasons": SuspensionReason,
    "roles": Role,
    "signer_roles": SignerRole,
}


# --- the controller's own records (the schema's CHECK constraints, the API's models) -------------

class CourtLevel(StrEnum):
    """A court's instance: whose agreement its hearings need (rules 11, 12)."""
    DISTRICT = "district"
    REGIONAL = "regional"
    SUPREME = "supreme"


class Initiative(StrEnum):
    """Who asked for the VKS: the court itself or a party's motion."""
    COURT = "court"
    MOTION = "motion"


class ParticipationMode(StrEnum):
    """How a party takes part in a hearing (rules 20, 21, 23): through a VKS terminal, through mobile
    VKS (a phone or a laptop, checked by a self-check link), or in person in the courtroom. One word
    list for a hearing's participants, the modes recorded after a break or a postponement, and the
    self-checks."""
    VKS = "vks"
    MOBILE = "mobile"
    IN_PERSON = "in_person"


class Coordinator(StrEnum):
    """Who agrees a hearing's date and time: the regional coordinator (rule 11) or the Department's (rule 12)."""
    REGIONAL = "regional"
    DEPARTMENT = "department"


class AgreementState(StrEnum):
    """Whether the coordinator's agreement is in."""
    PENDING = "pending"
    GIVEN = "given"


class CheckKind(StrEnum):
    """A hearing's checks: the rule-13 test request and the rule-15 pre-connect check."""
    TEST = "test"
    PRECONNECT = "preconnect"


class MeasurementKind(StrEnum):
    """What a row of the history (controller.store.history) measured: a hearing's check (its kind),
    a test run on demand (POST /api/v1/tests), a nightly pair test. Every CheckKind is one."""
    TEST = "test"
    PRECONNECT = "preconnect"
    ADHOC = "adhoc"
    NIGHTLY = "nightly"


class CheckStatus(StrEnum):
    """Where a check stands."""
    PENDING = "pending"
    SCHEDULED = "scheduled"
    RUNNING = "running"
    PASSED = "passed"
    FAILED = "failed"
    OVERDUE = "overdue"
    BLOCKED = "blocked"
    CANCELLED = "cancelled"


class JobState(StrEnum):
    """A durable scheduler job's state."""
    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


class EscalationCause(StrEnum):
    """Why an escalation was opened (rules 16, 17)."""
    TEST_FAILED = "test_failed"
    PRECONNECT_FAILED = "preconnect_failed"
    RECONNECT_FAILED = "reconnect_failed"
    AGENT_OFFLINE = "agent_offline"            # a terminal offline with a hearing within 48 h (rule 14)
    TERMINAL_UNHEALTHY = "terminal_unhealthy"  # its health check failing (camera, microphone, clock ...)
    TEST_RETRIES_FAILED = "test_retries_failed"  # a test failed again after every retry (controller.freshness)
    SELF_CHECK_FAILED = "self_check_failed"    # a mobile participant's self-check failed before the hearing (issue 14)
    MANUAL = "manual"


class EscalationState(StrEnum):
    """Where an escalation stands."""
    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    CANNOT_FIX = "cannot_fix"
    RESOLVED = "resolved"


class EscalationAction(StrEnum):
    """An entry of an escalation's history."""
    OPENED = "opened"
    STEP2 = "step2"
    ACK = "ack"
    CANNOT_FIX = "cannot_fix"
    RESOLVED = "resolved"


class ContactKind(StrEnum):
    """Who a contact is: a technician (step 1, rule 16), the organiser (step 2, rule 17), or the
    coordinator who agrees the date and time of the hearings of that court (rules 11, 12: told when an
    agreement is needed or reset)."""
    TECHNICIAN = "technician"
    ORGANISER = "organiser"
    COORDINATOR = "coordinator"


class NotificationChannel(StrEnum):
    """How a notification is delivered."""
    WEBHOOK = "webhook"
    EMAIL = "email"


class DeliveryState(StrEnum):
    """A notification's delivery."""
    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"


class ActStatus(StrEnum):
    """An act of technical impossibility (rule 18): a draft, or final once the three signatures are in."""
    DRAFT = "draft"
    FINAL = "final"


class SelfCheckStatus(StrEnum):
    """Where a self-check link stands (issue 14): created and not opened, its session running, a
    result stored, its session failed (no media path), or its time over unused."""
    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    EXPIRED = "expired"


class AgentDrop(StrEnum):
    """Why something a terminal sent was not written (issue 11; a label of the controller's metrics)."""
    UNKNOWN_SESSION = "unknown_session"        # a report naming a session the controller never commanded
    NOT_IN_SESSION = "not_in_session"          # ... a session of other terminals, or another's place in it
    REPEATED_RESULT = "repeated_result"        # a second final report of one side of one session
    NOT_IN_HEARING = "not_in_hearing"          # a hook outcome for a hearing the terminal takes no part in
    HEARING_OVER = "hearing_over"              # ... for one it took part in that ended a while ago (HOOK_GRACE_S)
    RATE_LIMITED = "rate_limited"              # over the terminal's budget of records (agent_link settings)


PUBLISHED.update({
    "court_levels": CourtLevel,
    "initiatives": Initiative,
    "participation_modes": ParticipationMode,
    "coordinators": Coordinator,
    "agreement_states": AgreementState,
    "check_kinds": CheckKind,
    "check_statuses": CheckStatus,
    "escalation_causes": EscalationCause,
    "escalation_states": EscalationState,
    "escalation_actions": EscalationAction,
    "contact_kinds": ContactKind,
    "notification_channels": NotificationChannel,
    "delivery_states": DeliveryState,
    "act_statuses": ActStatus,
    "self_check_statuses": SelfCheckStatus,
})
