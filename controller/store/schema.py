"""Every table of the controller (SQLAlchemy Core), read in one place. Migrations in
`migrations/versions` create them; this module is what the code queries. Keep the two in step: a
change here is a new migration revision (tests/test_controller_store.py compares the migrated
database with this metadata, CHECK constraints included).

The enumerations are text columns with CHECK constraints built from `contract.vocab` (portable,
and a new word is a small migration): the database, the API models and the web page share one
list.

Issue 12's history declares its table in this metadata in `controller.store.history`: whatever
reads the whole metadata (migrations' env.py, the tests comparing it) imports that module too.

All timestamps are UTC (`UTCDateTime`: aware datetimes in, aware UTC out, on both databases).
"""
from __future__ import annotations

import datetime as dt
from enum import StrEnum

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.types import TypeDecorator

from contract.vocab import (
    ActStatus,
    AgreementState,
    CheckKind,
    CheckStatus,
    ContactKind,
    Coordinator,
    CourtLevel,
    DeliveryState,
    EscalationAction,
    EscalationState,
    HearingStatus,
    HearingVerdict,
    Initiative,
    InstitutionKind,
    JobState,
    LiveState,
    NotificationChannel,
    Role,
    SignerRole,
    SuspensionReason,
    TerminalRole,
    words,
)

metadata = MetaData(naming_convention={
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
})


class UTCDateTime(TypeDecorator):
    """Timestamps stored in UTC. Naive datetimes are refused (no guessing)."""
    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: store aware UTC datetimes only")
        value = value.astimezone(dt.UTC)
        if dialect.name == "sqlite":
            # SQLite keeps text; one fixed UTC form keeps comparisons correct.
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC)


JSONType = JSON().with_variant(JSONB(), "postgresql")

# The word lists controller.metrics labels its series with (from the vocabularies).
CHECK_KINDS = words(CheckKind)
CHECK_STATUSES = words(CheckStatus)
VERDICTS = words(HearingVerdict)


def _in(col: str, vocabulary: type[StrEnum]) -> str:
    """A CHECK constraint's text: `col` is one of the vocabulary's words."""
    return f"{col} IN ({', '.join(repr(w) for w in words(vocabulary))})"


# --- registry, hearings, checks, events, suspensions (0001) -----------------------------------

institutions = Table(
    "institutions", metadata,
    Column("id", String(64), primary_key=True),
    Column("kind", String(16), nullable=False),
    Column("level", String(16), nullable=True),          # courts only
    Column("name", Text, nullable=False),
    Column("region", Text, nullable=False),              # the area (oblast / city of republican significance)
    Column("timezone", String(64), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    CheckConstraint(_in("kind", InstitutionKind), name="kind"),
    CheckConstraint(f"(kind = 'court' AND {_in('level', CourtLevel)}) OR (kind <> 'court' AND level IS NULL)",
                    name="level"),
)

rooms = Table(
    "rooms", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("institution_id", String(64), ForeignKey("institutions.id", ondelete="RESTRICT"), nullable=False),
    Column("name", Text, nullable=False),
    UniqueConstraint("institution_id", "name", name="uq_rooms_institution_name"),
)

terminals = Table(
    "terminals", metadata,
    Column("id", String(64), primary_key=True),
    Column("institution_id", String(64), ForeignKey("institutions.id", ondelete="RESTRICT"), nullable=False),
    Column("room_id", Integer, ForeignKey("rooms.id", ondelete="SET NULL"), nullable=True),
    Column("role", String(16), nullable=False),
    Column("name", Text, nullable=False),
    CheckConstraint(_in("role", TerminalRole), name="role"),
)

hearings = Table(
    "hearings", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("case_number", Text, nullable=False),
    Column("court_id", String(64), ForeignKey("institutions.id", ondelete="RESTRICT"), nullable=False),
    Column("room_id", Integer, ForeignKey("rooms.id", ondelete="RESTRICT"), nullable=False),
    Column("court_terminal_id", String(64), ForeignKey("terminals.id", ondelete="RESTRICT"), nullable=False),
    Column("start_utc", UTCDateTime, nullable=False),
    Column("end_utc", UTCDateTime, nullable=False),        # start + duration, for overlap queries
    Column("duration_min", Integer, nullable=False),
    Column("initiative", String(16), nullable=False),
    Column("status", String(16), nullable=False),
    Column("verdict", String(16), nullable=False),
    Column("agreement_coordinator", String(16), nullable=False),
    Column("agreement_state", String(16), nullable=False),
    Column("agreement_by", Text, nullable=True),
    Column("agreement_at", UTCDateTime, nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("created_by", Text, nullable=True),
    CheckConstraint(_in("status", HearingStatus), name="status"),
    CheckConstraint(_in("initiative", Initiative), name="initiative"),
    CheckConstraint(_in("verdict", HearingVerdict), name="verdict"),
    CheckConstraint(_in("agreement_coordinator", Coordinator), name="agreement_coordinator"),
    CheckConstraint(_in("agreement_state", AgreementState), name="agreement_state"),
    CheckConstraint("duration_min > 0", name="duration"),
    Index("ix_hearings_start_utc", "start_utc"),
    Index("ix_hearings_room_id", "room_id"),
)

hearing_participants = Table(
    "hearing_participants", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("hearing_id", Integer, ForeignKey("hearings.id", ondelete="CASCADE"), nullable=False),
    Column("institution_id", String(64), ForeignKey("institutions.id", ondelete="RESTRICT"), nullable=False),
    Column("terminal_id", String(64), ForeignKey("terminals.id", ondelete="RESTRICT"), nullable=False),
    UniqueConstraint("hearing_id", "terminal_id", name="uq_hearing_participants_terminal"),
    Index("ix_hearing_participants_terminal_id", "terminal_id"),
)

checks = Table(
    "checks", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("hearing_id", Integer, ForeignKey("hearings.id", ondelete="CASCADE"), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("caller", String(64), ForeignKey("terminals.id", ondelete="RESTRICT"), nullable=False),
    Column("callee", String(64), ForeignKey("terminals.id", ondelete="RESTRICT"), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("due_from", UTCDateTime, nullable=False),
    Column("deadline", UTCDateTime, nullable=False),
    Column("late", Boolean, nullable=False, default=False),    # created when the deadline had passed
    Column("status", String(16), nullable=False),
    Column("overdue_at", UTCDateTime, nullable=True),          # flagged overdue at (kept once set)
    Column("attempts", Integer, nullable=False, default=0),
    Column("session_id", String(64), nullable=True, unique=True),
    Column("started_at", UTCDateTime, nullable=True),
    Column("finished_at", UTCDateTime, nullable=True),
    Column("result", JSONType, nullable=True),
    Column("verdict", String(16), nullable=True),
    Column("error", Text, nullable=True),
    CheckConstraint(_in("kind", CheckKind), name="kind"),
    CheckConstraint(_in("status", CheckStatus), name="status"),
    UniqueConstraint("hearing_id", "kind", "callee", name="uq_checks_hearing_kind_callee"),
)

events = Table(
    "events", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("hearing_id", Integer, ForeignKey("hearings.id", ondelete="CASCADE"), nullable=False),
    Column("at", UTCDateTime, nullable=False),
    Column("kind", String(64), nullable=False),
    Column("detail", JSONType, nullable=False),
    Index("ix_events_hearing_id", "hearing_id", "id"),
)

suspensions = Table(
    "suspensions", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("institution_id", String(64), ForeignKey("institutions.id", ondelete="RESTRICT"), nullable=True),
    Column("region", Text, nullable=True),
    Column("reason", String(32), nullable=False),
    Column("note", Text, nullable=True),
    Column("from_utc", UTCDateTime, nullable=False),
    Column("until_utc", UTCDateTime, nullable=True),
    Column("lifted_at", UTCDateTime, nullable=True),
    Column("created_by", Text, nullable=True),
    Column("lifted_by", Text, nullable=True),
    CheckConstraint(_in("reason", SuspensionReason), name="reason"),
    CheckConstraint("(institution_id IS NULL) <> (region IS NULL)", name="target"),
)


# --- users, tokens, audit (0001); passwords and web sessions (0005); disabling, token expiry
# and the shared sign-in counters (0006) ---------------------------------------------------------

users = Table(
    "users", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(128), nullable=False, unique=True),
    Column("role", String(16), nullable=False),
    # For coordinators: which agreements they give ("regional" or "department"); NULL = any.
    # Where a user acts is another thing: user_institutions and user_regions (none: national).
    Column("scope", String(16), nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    # Set when the user is removed: no token, session or password works; the name stays (audit).
    Column("disabled_at", UTCDateTime, nullable=True),
    CheckConstraint(_in("role", Role), name="role"),
)

# A user's scope (0007): the institutions and regions their post covers. A user with neither row is
# national. An institution cannot be removed while a user is scoped to it (RESTRICT): removing the
# last one would silently make that user national.
user_institutions = Table(
    "user_institutions", metadata,
    Column("user_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    Column("institution_id", String(64), ForeignKey("institutions.id", ondelete="RESTRICT"), primary_key=True),
    Index("ix_user_institutions_institution_id", "institution_id"),
)

user_regions = Table(
    "user_regions", metadata,
    Column("user_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    Column("region", Text, primary_key=True),
)

api_tokens = Table(
    "api_tokens", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("user_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("token_sha256", String(64), nullable=False, unique=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("revoked_at", UTCDateTime, nullable=True),
    Column("expires_at", UTCDateTime, nullable=True),        # NULL: does not expire
    Column("last_used_at", UTCDateTime, nullable=True),      # to the minute
)

audit = Table(
    "audit", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", UTCDateTime, nullable=False),
    Column("who", Text, nullable=False),
    Column("action", String(64), nullable=False),
    Column("target", Text, nullable=False),
    Column("detail", JSONType, nullable=False),
)


user_passwords = Table(
    "user_passwords", metadata,
    Column("user_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    Column("scrypt", Text, nullable=False),          # scrypt$N$r$p$salt$hash (base64)
    Column("updated_at", UTCDateTime, nullable=False),
)


web_sessions = Table(
    "web_sessions", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("user_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("token_sha256", String(64), nullable=False, unique=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
    Column("ended_at", UTCDateTime, nullable=True),
    # The API token a token sign-in was made with (its revocation ends the session); NULL: password.
    Column("api_token_id", Integer, nullable=True),
    Index("ix_web_sessions_user_id", "user_id"),
)


# Sign-in attempts per key ("ip:ADDRESS", "user:NAME") in the current window, shared by every
# controller on the database: incremented before a password is checked (controller.web.signin).
login_counters = Table(
    "login_counters", metadata,
    Column("key", String(200), primary_key=True),
    Column("window_start", UTCDateTime, nullable=False),
    Column("count", Integer, nullable=False),
)


# --- the scheduler's durable jobs (0001) ------------------------------------------------------

jobs = Table(
    "jobs", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("kind", String(32), nullable=False),
    Column("key", String(128), nullable=False, unique=True),
    Column("payload", JSONType, nullable=False),
    Column("due_at", UTCDateTime, nullable=False),
    Column("state", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("locked_by", Text, nullable=True),
    Column("locked_until", UTCDateTime, nullable=True),
    Column("last_error", Text, nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("finished_at", UTCDateTime, nullable=True),
    CheckConstraint(_in("state", JobState), name="state"),
    Index("ix_jobs_state_due_at", "state", "due_at"),
)


# --- the agent link (0002): terminal tokens, presence, reports, sessions, relay queue ---------

terminal_tokens = Table(
    "terminal_tokens", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("terminal_id", String(64), nullable=False),
    Column("token_sha256", String(64), nullable=False, unique=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=True),
    Column("revoked_at", UTCDateTime, nullable=True),
    Index("ix_terminal_tokens_terminal_id", "terminal_id"),
)


agent_presence = Table(
    "agent_presence", metadata,
    Column("terminal_id", String(64), primary_key=True),
    # The controller instance holding the terminal's WebSocket; NULL once it disconnected.
    Column("controller_id", String(128), nullable=True),
    Column("lease_until", UTCDateTime, nullable=True),
    Column("connected_at", UTCDateTime, nullable=True),
    Column("last_seen", UTCDateTime, nullable=True),
    Column("agent_version", String(64), nullable=True),
    Column("health", Text, nullable=True),            # JSON text of the last heartbeat's health
)


agent_reports = Table(
    "agent_reports", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("terminal_id", String(64), nullable=False),
    Column("report_id", String(128), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("session_id", String(128), nullable=True),
    Column("body", Text, nullable=False),             # JSON text, ASCII (stored as received)
    Column("created_at", Float, nullable=True),       # agent's clock, epoch seconds
    Column("received_at", UTCDateTime, nullable=False),
    # Set once the controller acted on it (a caller's session report -> the check's result).
    Column("processed_at", UTCDateTime, nullable=True),
    UniqueConstraint("terminal_id", "report_id", name="uq_agent_reports_terminal_report"),
    Index("ix_agent_reports_session_id", "session_id"),
)


agent_sessions = Table(
    "agent_sessions", metadata,
    Column("session_id", String(128), primary_key=True),
    Column("caller", String(64), nullable=False),
    Column("callee", String(64), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("profile", String(64), nullable=True),
    Column("duration_s", Float, nullable=False),
    Column("state", String(16), nullable=False),      # started | finished | failed | stopped
    Column("error", Text, nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("finished_at", UTCDateTime, nullable=True),
)


relay_messages = Table(
    "relay_messages", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("target", String(128), nullable=False),    # controller instance id
    Column("terminal_id", String(64), nullable=False),
    Column("payload", Text, nullable=False),          # a wire message (JSON text)
    Column("created_at", UTCDateTime, nullable=False),
    Index("ix_relay_messages_target", "target", "id"),
)


# --- live monitoring (0003) -------------------------------------------------------------------

live_state = Table(
    "live_state", metadata,
    Column("hearing_id", Integer, ForeignKey("hearings.id", ondelete="CASCADE"), primary_key=True),
    Column("state", String(24), nullable=False),
    Column("verdict", String(16), nullable=False),          # the hearing's live verdict (rule 3)
    Column("since", UTCDateTime, nullable=False),           # in this state since
    Column("caller", String(64), nullable=True),
    Column("callee", String(64), nullable=True),
    Column("session_id", String(128), nullable=True),       # the current monitoring session
    Column("session_started_at", UTCDateTime, nullable=True),
    Column("break_id", Integer, nullable=True),             # the open break, if any
    Column("attempt", Integer, nullable=False, default=0),  # reconnect attempts in this break
    Column("next_at", UTCDateTime, nullable=True),          # next reconnect attempt / session renewal
    Column("detector", JSONType, nullable=True),            # controller.detector.Detector snapshot
    Column("stats", JSONType, nullable=False),              # seconds per verdict, breaks
    Column("owner", String(128), nullable=True),            # controller instance driving the flow
    Column("lease_until", UTCDateTime, nullable=True),
    Column("started_at", UTCDateTime, nullable=False),
    Column("ended_at", UTCDateTime, nullable=True),
    Column("updated_at", UTCDateTime, nullable=False),
    CheckConstraint(_in("state", LiveState), name="state"),
    Index("ix_live_state_session_id", "session_id"),
)


live_breaks = Table(
    "live_breaks", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("hearing_id", Integer, ForeignKey("hearings.id", ondelete="CASCADE"), nullable=False),
    Column("cause", String(32), nullable=False),            # stall | silent | unusable
    Column("evidence", JSONType, nullable=False),
    Column("started_at", UTCDateTime, nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("ready_at", UTCDateTime, nullable=True),
    Column("resumed_at", UTCDateTime, nullable=True),
    Column("resumed_by", Text, nullable=True),
    Column("escalated_at", UTCDateTime, nullable=True),
    Column("ended_at", UTCDateTime, nullable=True),
    Column("outcome", String(24), nullable=True),           # resumed | hearing_ended | suspended | escalated
    Column("duration_s", Float, nullable=True),
    Index("ix_live_breaks_hearing_id", "hearing_id", "id"),
)


live_intervals = Table(
    "live_intervals", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("hearing_id", Integer, ForeignKey("hearings.id", ondelete="CASCADE"), nullable=False),
    Column("session_id", String(128), nullable=False),
    Column("terminal_id", String(64), nullable=False),
    Column("callee", String(64), nullable=True),            # whose link: the session's callee (0011)
    Column("t", Integer, nullable=False),
    Column("at", UTCDateTime, nullable=False),
    Column("inbound", JSONType, nullable=True),
    Column("outbound", JSONType, nullable=True),
    Column("rtt_ms", Float, nullable=True),
    Column("stalled", Boolean, nullable=False),
    Column("verdict", String(16), nullable=False),
    UniqueConstraint("session_id", "terminal_id", "t", name="uq_live_intervals_session_terminal_t"),
    Index("ix_live_intervals_hearing_at", "hearing_id", "at"),
)


# --- escalation (0004) ------------------------------------------------------------------------

contacts = Table(
    "contacts", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("institution_id", String(64), ForeignKey("institutions.id", ondelete="CASCADE"), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("name", Text, nullable=False),
    Column("email", Text, nullable=True),
    Column("webhook_url", Text, nullable=True),
    Column("user_id", Integer, ForeignKey("users.id", ondelete="SET NULL"), nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    CheckConstraint(_in("kind", ContactKind), name="kind"),
    CheckConstraint("email IS NOT NULL OR webhook_url IS NOT NULL OR user_id IS NOT NULL", name="reachable"),
    Index("ix_contacts_institution_id", "institution_id"),
)


escalations = Table(
    "escalations", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("hearing_id", Integer, ForeignKey("hearings.id", ondelete="CASCADE"), nullable=False),
    Column("cause", String(32), nullable=False),
    Column("detail", JSONType, nullable=False),
    Column("state", String(16), nullable=False),
    Column("step", Integer, nullable=False),
    Column("open_key", String(128), nullable=True, unique=True),
    Column("opened_at", UTCDateTime, nullable=False),
    Column("step2_at", UTCDateTime, nullable=True),
    Column("step2_reason", String(16), nullable=True),      # not_fixed | cannot_fix
    Column("acked_at", UTCDateTime, nullable=True),          # the first acknowledgement
    Column("acked_by", Text, nullable=True),
    Column("cannot_fix_at", UTCDateTime, nullable=True),
    Column("cannot_fix_by", Text, nullable=True),
    Column("resolved_at", UTCDateTime, nullable=True),
    Column("resolved_by", Text, nullable=True),
    Column("updated_at", UTCDateTime, nullable=False),
    CheckConstraint(_in("state", EscalationState), name="state"),
    CheckConstraint("step IN (1, 2)", name="step"),
    Index("ix_escalations_hearing_id", "hearing_id"),
    Index("ix_escalations_state", "state"),
)


escalation_actions = Table(
    "escalation_actions", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("escalation_id", Integer, ForeignKey("escalations.id", ondelete="CASCADE"), nullable=False),
    Column("action", String(16), nullable=False),
    Column("by", Text, nullable=False),
    Column("role", String(16), nullable=True),
    Column("at", UTCDateTime, nullable=False),
    Column("note", Text, nullable=True),
    CheckConstraint(_in("action", EscalationAction), name="action"),
    Index("ix_escalation_actions_escalation_id", "escalation_id", "id"),
)


notifications = Table(
    "notifications", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("escalation_id", Integer, ForeignKey("escalations.id", ondelete="CASCADE"), nullable=False),
    Column("step", Integer, nullable=False),
    Column("channel", String(16), nullable=False),
    Column("target", Text, nullable=False),
    Column("institution_id", String(64), nullable=True),
    Column("state", String(16), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("last_error", Text, nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("sent_at", UTCDateTime, nullable=True),
    CheckConstraint(_in("channel", NotificationChannel), name="channel"),
    CheckConstraint(_in("state", DeliveryState), name="state"),
    Index("ix_notifications_escalation_id", "escalation_id"),
)


# --- acts of technical impossibility (0004) ---------------------------------------------------

acts = Table(
    "acts", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("hearing_id", Integer, ForeignKey("hearings.id", ondelete="CASCADE"), nullable=False, unique=True),
    Column("status", String(16), nullable=False),
    Column("trigger", String(16), nullable=False),           # not_fixed | cannot_fix | requested
    Column("content", JSONType, nullable=False),
    Column("content_sha256", String(64), nullable=False),
    Column("final_sha256", String(64), nullable=True),
    Column("documents", JSONType, nullable=True),            # sha256 of the final HTML and PDF per language
    Column("created_at", UTCDateTime, nullable=False),
    Column("created_by", Text, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("finalized_at", UTCDateTime, nullable=True),
    CheckConstraint(_in("status", ActStatus), name="status"),
)


act_signatures = Table(
    "act_signatures", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("act_id", Integer, ForeignKey("acts.id", ondelete="CASCADE"), nullable=False),
    Column("role", String(16), nullable=False),
    Column("name", Text, nullable=False),
    Column("recorded_by", Text, nullable=False),            # who entered it
    Column("signed_at", UTCDateTime, nullable=False),
    # The signer's account (0007); NULL for a signer with no account, entered by `recorded_by`.
    Column("user_name", Text, nullable=True),
    CheckConstraint(_in("role", SignerRole), name="role"),
    UniqueConstraint("act_id", "role", name="uq_act_signatures_act_role"),
    # One account gives at most one of an act's signatures (NULLs are distinct).
    UniqueConstraint("act_id", "user_name", name="uq_act_signatures_act_user"),
)
