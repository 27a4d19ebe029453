"""Diagnoses (issue 12, part 2: which side): when a pair's check or an on-demand test ends degraded
or failed, each side is tested against a reference terminal in the data centre, and the result's
`finding` (controller.findings) is kept here. Migration 0008.

One row per diagnosed result: `subject` is `check:{id}` or `test:{session id}` (at most one
diagnosis per subject: a check run again replaces its row). `session_a` / `session_b` are the
sessions caller<->reference and callee<->reference; their reports are stored as the hub stores
every report (`agent_reports`), and the judged figures of each side are copied into `sides` when
both are in. The table is declared on the schema module's metadata (one schema, one migration
chain), in a module of its own because the schema module is near its size limit.
"""
from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import CheckConstraint, Column, Index, Integer, String, Table, Text, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from contract.vocab import DiagnosisStatus
from controller.store.schema import JSONType, UTCDateTime, _in, metadata

diagnoses = Table(
    "diagnoses", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("subject", String(80), nullable=False, unique=True),   # check:{id} | test:{session id}
    Column("hearing_id", Integer, nullable=True),                  # a check's hearing (scope, events)
    Column("caller", String(64), nullable=False),
    Column("callee", String(64), nullable=False),
    Column("reference", String(64), nullable=True),                # null: no reference was available
    Column("status", String(16), nullable=False),
    Column("session_a", String(64), nullable=True),                # caller <-> reference
    Column("session_b", String(64), nullable=True),                # callee <-> reference
    Column("pair", JSONType, nullable=False),                      # the diagnosed result's figures
    Column("sides", JSONType, nullable=True),                      # {a: {...}, b: {...}} when done
    Column("finding", JSONType, nullable=True),                    # controller.findings.Finding
    Column("error", Text, nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("finished_at", UTCDateTime, nullable=True),
    CheckConstraint(_in("status", DiagnosisStatus), name="status"),
    Index("ix_diagnoses_session_a", "session_a"),
    Index("ix_diagnoses_session_b", "session_b"),
    Index("ix_diagnoses_hearing_id", "hearing_id"),
)


def check_subject(check_id: int) -> str:
    """The subject of a check's diagnosis."""
    return f"check:{check_id}"


def test_subject(session_id: str) -> str:
    """The subject of an on-demand test's diagnosis (its session id)."""
    return f"test:{session_id}"


async def start(conn: AsyncConnection, subject: str, values: dict[str, Any], now: dt.datetime) -> int:
    """Open (or reopen: a check run again) the diagnosis of `subject`; its id."""
    row = (await conn.execute(select(diagnoses.c.id).where(diagnoses.c.subject == subject))).first()
    fresh = {"status": DiagnosisStatus.RUNNING.value, "session_a": None, "session_b": None, "sides": None,
             "finding": None, "error": None, "finished_at": None, "created_at": now, "reference": None,
             "hearing_id": None, **values}
    if row is None:
        res = await conn.execute(insert(diagnoses).values(subject=subject, **fresh).returning(diagnoses.c.id))
        return int(res.scalar_one())
    await conn.execute(update(diagnoses).where(diagnoses.c.id == row.id).values(**fresh))
    return int(row.id)


async def update_diagnosis(conn: AsyncConnection, diagnosis_id: int, **values: Any) -> None:
    """Change a diagnosis's columns."""
    await conn.execute(update(diagnoses).where(diagnoses.c.id == diagnosis_id).values(**values))


async def by_subject(conn: AsyncConnection, subject: str) -> dict | None:
    """The diagnosis of `subject`, or None."""
    row = (await conn.execute(select(diagnoses).where(diagnoses.c.subject == subject))).first()
    return dict(row._mapping) if row is not None else None


async def by_subjects(conn: AsyncConnection, subjects: list[str]) -> dict[str, dict]:
    """{subject: diagnosis} of those of `subjects` that have one."""
    if not subjects:
        return {}
    rows = (await conn.execute(select(diagnoses).where(diagnoses.c.subject.in_(subjects)))).all()
    return {r.subject: dict(r._mapping) for r in rows}


async def by_session(conn: AsyncConnection, session_id: str) -> tuple[dict, str] | None:
    """(diagnosis, 'a' | 'b') whose side session `session_id` is; None for any other session."""
    for side, col in (("a", diagnoses.c.session_a), ("b", diagnoses.c.session_b)):
        row = (await conn.execute(select(diagnoses).where(col == session_id))).first()
        if row is not None:
            return dict(row._mapping), side
    return None


def of_run(row: dict | None, started_at: dt.datetime | None) -> dict | None:
    """The diagnosis if it is of the run that started at `started_at` (a check run again, or passed
    since, shows none of an earlier run's)."""
    if row is None or started_at is None or row["created_at"] < started_at:
        return None
    return row


async def sweep(conn: AsyncConnection, older_than: dt.datetime, now: dt.datetime) -> int:
    """Close the diagnoses still running that began before `older_than` (their controller stopped
    meanwhile): done, without a finding, the reason in `error`. How many."""
    res = await conn.execute(update(diagnoses).where(diagnoses.c.status == DiagnosisStatus.RUNNING.value,
                                                     diagnoses.c.created_at < older_than)
                             .values(status=DiagnosisStatus.DONE.value, finished_at=now,
                                     error="not finished: the controller running it stopped"))
    return int(res.rowcount or 0)


def view(row: dict | None) -> dict[str, Any]:
    """What a check or a test shows of its diagnosis: {diagnosis, finding}."""
    if row is None:
        return {"diagnosis": None, "finding": None}
    return {"diagnosis": row["status"], "finding": row["finding"]}
