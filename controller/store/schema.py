"""Tables (SQLAlchemy Core). Migrations in `migrations/versions` create them;
this module is what the code queries. Keep the two in step: a change here is
a new migration revision.

All timestamps are UTC (`UTCDateTime`: aware datetimes in, aware UTC out, on
both databases).
"""
from __future__ import annotations

import datetime as dt

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
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

# Enumerations are kept as text with CHECK constraints (portable, and a new
# value is a small migration).
INSTITUTION_KINDS = ("court", "sizo", "correctional")
COURT_LEVELS = ("district", "regional", "supreme")
TERMINAL_ROLES = ("courtroom", "institution")
HEARING_STATUSES = ("scheduled", "in_progress", "held", "postponed", "cancelled")
INITIATIVES = ("court", "motion")
COORDINATORS = ("regional", "department")
AGREEMENT_STATES = ("pending", "given")
CHECK_KINDS = ("test", "preconnect")
CHECK_STATUSES = ("pending", "scheduled", "running", "passed", "failed", "overdue", "blocked",
                  "cancelled")
VERDICTS = ("unknown", "good", "degraded", "unusable", "suspended")
SUSPENSION_REASONS = ("riot", "group_disobedience", "escape", "hostage_taking", "natural_disaster",
                      "state_of_emergency", "special_regime", "martial_law")
ROLES = ("admin", "coordinator", "secretary", "technician", "viewer")
JOB_STATES = ("pending", "running", "done", "failed", "cancelled")


def _in(col: str, values: tuple[str, ...]) -> str:
    return f"{col} IN ({', '.join(repr(v) for v in values)})"


institutions = Table(
    "institutions", metadata,
    Column("id", String(64), primary_key=True),
    Column("kind", String(16), nullable=False),
    Column("level", String(16), nullable=True),          # courts only
    Column("name", Text, nullable=False),
    Column("region", Text, nullable=False),              # the area (oblast / city of republican significance)
    Column("timezone", String(64), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    CheckConstraint(_in("kind", INSTITUTION_KINDS), name="kind"),
    CheckConstraint(f"(kind = 'court' AND {_in('level', COURT_LEVELS)}) OR (kind <> 'court' AND level IS NULL)",
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
    CheckConstraint(_in("role", TERMINAL_ROLES), name="role"),
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
    CheckConstraint(_in("status", HEARING_STATUSES), name="status"),
    CheckConstraint(_in("initiative", INITIATIVES), name="initiative"),
    CheckConstraint(_in("verdict", VERDICTS), name="verdict"),
    CheckConstraint(_in("agreement_coordinator", COORDINATORS), name="agreement_coordinator"),
    CheckConstraint(_in("agreement_state", AGREEMENT_STATES), name="agreement_state"),
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
    CheckConstraint(_in("kind", CHECK_KINDS), name="kind"),
    CheckConstraint(_in("status", CHECK_STATUSES), name="status"),
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
    CheckConstraint(_in("reason", SUSPENSION_REASONS), name="reason"),
    CheckConstraint("(institution_id IS NULL) <> (region IS NULL)", name="target"),
)

users = Table(
    "users", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(128), nullable=False, unique=True),
    Column("role", String(16), nullable=False),
    # For coordinators: which agreements they give ("regional" or "department"); NULL = any.
    Column("scope", String(16), nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    CheckConstraint(_in("role", ROLES), name="role"),
)

api_tokens = Table(
    "api_tokens", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("user_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("token_sha256", String(64), nullable=False, unique=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("revoked_at", UTCDateTime, nullable=True),
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
    CheckConstraint(_in("state", JOB_STATES), name="state"),
    Index("ix_jobs_state_due_at", "state", "due_at"),
)
