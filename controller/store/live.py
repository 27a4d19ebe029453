"""Live monitoring during a hearing (rule 22; migration 0003): the flow's state per hearing,
the breaks, and the per-second intervals of the monitoring sessions.

Like the rest of `controller.store`, every function takes an open `AsyncConnection` first; the
caller owns the transaction. Lock order: the hearing row, then `live_state` (see
`controller.store`).
"""
from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (Boolean, CheckConstraint, Column, Float, ForeignKey, Index, Integer, String, Table, Text,
                        UniqueConstraint, delete, insert, select, update)
from sqlalchemy.ext.asyncio import AsyncConnection

from controller.store.schema import JSONType, UTCDateTime, _in, metadata

LIVE_STATES = ("monitoring", "break", "reconnecting", "ready_to_resume", "escalated", "stopped", "ended")

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
    CheckConstraint(_in("state", LIVE_STATES), name="state"),
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


def _d(row) -> dict[str, Any]:
    return dict(row._mapping)
