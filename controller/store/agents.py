"""The agent link's tables and queries (migration 0002): terminal tokens, presence (which
controller holds which terminal, with a lease), reports stored once, sessions, and the
cross-controller relay queue.

Like the rest of `controller.store`, every function takes an open `AsyncConnection` first; the
caller owns the transaction.

Token model (rules 5, 6; issue 7): a terminal token is 32 random bytes (url-safe base64, prefix
"vkst_"), shown once when issued and stored only as its sha256. A terminal may hold several
valid tokens at once, so rotation is: issue a new one, install it on the terminal, then revoke
the old ones (`revoke_tokens(..., except_id=new_id)`). A token may carry an expiry; an expired
or revoked token is refused like an unknown one.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    Table,
    bindparam,
    delete,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from contract.vocab import ReportKind
from controller.store.schema import agent_presence, agent_reports, agent_sessions, relay_messages, terminal_tokens

TOKEN_PREFIX = "vkst_"

def utcnow() -> dt.datetime:
    """Now, aware UTC."""
    return dt.datetime.now(dt.UTC)


def _insert(conn: AsyncConnection, table: Table):
    return (postgresql.insert(table) if conn.dialect.name == "postgresql" else sqlite.insert(table))


def dumps(obj: Any) -> str:
    """Compact ASCII JSON text (as the report bodies and health are stored)."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=True, allow_nan=False)


# ---- tokens ----------------------------------------------------------------------------------

def token_hash(token: str) -> str:
    """The sha256 (hex) a token is stored and looked up as."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class TokenInfo:
    """A terminal token's record (never the token itself)."""
    id: int
    terminal_id: str
    created_at: dt.datetime
    expires_at: dt.datetime | None
    revoked_at: dt.datetime | None


async def issue_token(conn: AsyncConnection, terminal_id: str, *,
                      expires_at: dt.datetime | None = None) -> tuple[int, str]:
    """A new token for the terminal: (token id, the token). The token is not stored, only its hash."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    res = await conn.execute(terminal_tokens.insert().values(
        terminal_id=terminal_id, token_sha256=token_hash(token), created_at=utcnow(),
        expires_at=expires_at).returning(terminal_tokens.c.id))
    return res.scalar_one(), token


async def authenticate(conn: AsyncConnection, token: str, *, now: dt.datetime | None = None) -> str | None:
    """The terminal a token belongs to, or None (unknown, revoked or expired)."""
    now = now or utcnow()
    t = terminal_tokens.c
    res = await conn.execute(select(t.terminal_id).where(
        t.token_sha256 == token_hash(token), t.revoked_at.is_(None),
        or_(t.expires_at.is_(None), t.expires_at > now)))
    return res.scalar_one_or_none()


async def authenticate_many(conn: AsyncConnection, tokens: Iterable[str], *,
                            now: dt.datetime | None = None) -> dict[str, str]:
    """`authenticate` for many tokens in one query: {token sha256: terminal} of the valid ones."""
    now = now or utcnow()
    t = terminal_tokens.c
    hashes = sorted({token_hash(tok) for tok in tokens})
    found: dict[str, str] = {}
    for i in range(0, len(hashes), 500):
        res = await conn.execute(select(t.token_sha256, t.terminal_id).where(
            t.token_sha256.in_(hashes[i:i + 500]), t.revoked_at.is_(None),
            or_(t.expires_at.is_(None), t.expires_at > now)))
        found.update((h, terminal) for h, terminal in res)
    return found


async def valid_token_hashes(conn: AsyncConnection, hashes: Iterable[str], *,
                             now: dt.datetime | None = None) -> set[str]:
    """Which of these token hashes are still valid (not revoked, not expired)."""
    now = now or utcnow()
    t = terminal_tokens.c
    hashes = list(hashes)
    valid: set[str] = set()
    for i in range(0, len(hashes), 500):
        res = await conn.execute(select(t.token_sha256).where(
            t.token_sha256.in_(hashes[i:i + 500]), t.revoked_at.is_(None),
            or_(t.expires_at.is_(None), t.expires_at > now)))
        valid.update(r[0] for r in res)
    return valid


async def revoke_tokens(conn: AsyncConnection, terminal_id: str, *, token_id: int | None = None,
                        except_id: int | None = None) -> int:
    """Revoke one token (`token_id`) or all of a terminal's (but `except_id`). Returns how many."""
    t = terminal_tokens.c
    cond = [t.terminal_id == terminal_id, t.revoked_at.is_(None)]
    if token_id is not None:
        cond.append(t.id == token_id)
    if except_id is not None:
        cond.append(t.id != except_id)
    res = await conn.execute(update(terminal_tokens).where(*cond).values(revoked_at=utcnow()))
    return res.rowcount


async def list_tokens(conn: AsyncConnection, terminal_id: str) -> list[TokenInfo]:
    """A terminal's tokens, oldest first (revoked and expired ones included)."""
    t = terminal_tokens.c
    res = await conn.execute(select(t.id, t.terminal_id, t.created_at, t.expires_at, t.revoked_at)
                             .where(t.terminal_id == terminal_id).order_by(t.id))
    return [TokenInfo(*row) for row in res]


# ---- presence --------------------------------------------------------------------------------

async def claim_presence(conn: AsyncConnection, terminal_id: str, controller_id: str, *,
                         lease_until: dt.datetime, agent_version: str | None) -> str | None:
    """This controller now holds the terminal. Returns the controller that held it before
    (if another one with a live lease), so that it can be told to drop its connection."""
    now = utcnow()
    p = agent_presence.c
    prev = (await conn.execute(select(p.controller_id, p.lease_until)
                               .where(p.terminal_id == terminal_id))).first()
    values = dict(controller_id=controller_id, lease_until=lease_until, connected_at=now, last_seen=now,
                  agent_version=agent_version)
    stmt = _insert(conn, agent_presence).values(terminal_id=terminal_id, **values)
    await conn.execute(stmt.on_conflict_do_update(index_elements=["terminal_id"], set_=values))
    if prev and prev.controller_id and prev.controller_id != controller_id and \
            prev.lease_until and prev.lease_until > now:
        return prev.controller_id
    return None


async def claim_presences(conn: AsyncConnection, claims: list[tuple[str, str | None]], controller_id: str, *,
                          lease_until: dt.datetime) -> dict[str, str]:
    """`claim_presence` for many terminals [(terminal_id, agent_version)] in one round: returns
    {terminal: the other controller that held it with a live lease} for those it applies to."""
    if not claims:
        return {}
    now = utcnow()
    p = agent_presence.c
    ids = sorted({t for t, _ in claims})
    previous: dict[str, str] = {}
    for i in range(0, len(ids), 500):
        res = await conn.execute(select(p.terminal_id, p.controller_id, p.lease_until)
                                 .where(p.terminal_id.in_(ids[i:i + 500])))
        for terminal_id, holder_id, lease in res:
            if holder_id and holder_id != controller_id and lease and lease > now:
                previous[terminal_id] = holder_id
    stmt = _insert(conn, agent_presence)
    stmt = stmt.on_conflict_do_update(index_elements=["terminal_id"], set_={
        "controller_id": stmt.excluded.controller_id, "lease_until": stmt.excluded.lease_until,
        "connected_at": stmt.excluded.connected_at, "last_seen": stmt.excluded.last_seen,
        "agent_version": stmt.excluded.agent_version})
    await conn.execute(stmt, [dict(terminal_id=t, controller_id=controller_id, lease_until=lease_until,
                                   connected_at=now, last_seen=now, agent_version=v) for t, v in claims])
    return previous


async def release_presences(conn: AsyncConnection, terminal_ids: list[str], controller_id: str) -> None:
    """`release_presence` for many terminals in one statement (executemany)."""
    if not terminal_ids:
        return
    p = agent_presence.c
    stmt = (update(agent_presence).where(p.terminal_id == bindparam("t_id"), p.controller_id == controller_id)
            .values(controller_id=None, lease_until=None, last_seen=utcnow()))
    await conn.execute(stmt, [{"t_id": t} for t in terminal_ids])


async def release_presence(conn: AsyncConnection, terminal_id: str, controller_id: str) -> None:
    """The terminal disconnected from this controller (no-op if another one holds it now)."""
    p = agent_presence.c
    await conn.execute(update(agent_presence).where(p.terminal_id == terminal_id,
                                                    p.controller_id == controller_id)
                       .values(controller_id=None, lease_until=None, last_seen=utcnow()))


async def refresh_presence(conn: AsyncConnection, controller_id: str, *, lease_until: dt.datetime,
                           health: dict[str, dict] | None = None) -> None:
    """Extend this controller's leases (one set-based UPDATE for all the terminals it holds:
    they are connected, so last seen is now) and write the health that changed."""
    p = agent_presence.c
    await conn.execute(update(agent_presence).where(p.controller_id == controller_id)
                       .values(lease_until=lease_until, last_seen=utcnow()))
    if health:
        stmt = (update(agent_presence)
                .where(p.terminal_id == bindparam("t_id"), p.controller_id == controller_id)
                .values(health=bindparam("t_health")))
        await conn.execute(stmt, [{"t_id": t, "t_health": dumps(h)} for t, h in health.items()])


async def release_all(conn: AsyncConnection, controller_id: str) -> None:
    """This controller holds no terminal any more (at its shutdown)."""
    p = agent_presence.c
    await conn.execute(update(agent_presence).where(p.controller_id == controller_id)
                       .values(controller_id=None, lease_until=None))


async def holder(conn: AsyncConnection, terminal_id: str, *, now: dt.datetime | None = None) -> str | None:
    """The controller holding the terminal's connection now (live lease), or None."""
    p = agent_presence.c
    res = await conn.execute(select(p.controller_id).where(
        p.terminal_id == terminal_id, p.controller_id.is_not(None), p.lease_until > (now or utcnow())))
    return res.scalar_one_or_none()


async def online_terminals(conn: AsyncConnection, *, now: dt.datetime | None = None) -> set[str]:
    """The terminals connected now (a live lease on any controller)."""
    p = agent_presence.c
    res = await conn.execute(select(p.terminal_id).where(p.controller_id.is_not(None),
                                                         p.lease_until > (now or utcnow())))
    return set(res.scalars())


async def presence(conn: AsyncConnection, terminal_ids: Iterable[str] | None = None) -> dict[str, dict]:
    """Last seen, health, version and holder per terminal (for the API's terminal list)."""
    p = agent_presence.c
    q = select(agent_presence)
    if terminal_ids is not None:
        q = q.where(p.terminal_id.in_(list(terminal_ids)))
    now = utcnow()
    out = {}
    for row in (await conn.execute(q)).mappings():
        out[row["terminal_id"]] = {
            "online": bool(row["controller_id"] and row["lease_until"] and row["lease_until"] > now),
            "controller_id": row["controller_id"], "last_seen": row["last_seen"],
            "connected_at": row["connected_at"], "agent_version": row["agent_version"],
            "health": json.loads(row["health"]) if row["health"] else None,
        }
    return out


# ---- reports ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class NewReport:
    """A report as received from an agent, to store once."""
    terminal_id: str
    report_id: str
    kind: str
    session_id: str | None
    body: dict[str, Any]
    created_at: float | None


async def store_reports(conn: AsyncConnection, reports: list[NewReport]) -> int | None:
    """Insert reports; one already stored (same terminal and report_id) is left as it is.
    Returns how many were new when the driver says (None when it does not)."""
    if not reports:
        return 0
    now = utcnow()
    rows = [dict(terminal_id=r.terminal_id, report_id=r.report_id, kind=r.kind, session_id=r.session_id,
                 body=dumps(r.body), created_at=r.created_at, received_at=now) for r in reports]
    stmt = _insert(conn, agent_reports).on_conflict_do_nothing(index_elements=["terminal_id", "report_id"])
    res = await conn.execute(stmt, rows)
    n = res.rowcount
    return n if isinstance(n, int) and 0 <= n <= len(rows) else None


# (terminal_id, report_id, kind, session_id, body as JSON text, created_at): what the hub's writer stores.
ReportRow = tuple[str, str, str, str | None, str, float | None]
_REPORT_COLUMNS = ("terminal_id", "report_id", "kind", "session_id", "body", "created_at", "received_at")


# SQLite: rows a single INSERT carries (7 parameters each: 28,000, under SQLite's 32,766).
SQLITE_ROWS_PER_INSERT = 4000


async def store_report_rows(conn: AsyncConnection, rows: list[ReportRow]) -> int | None:
    """`store_reports` for the hub's writer, cheaper per row (issue 15: thousands a second): the
    bodies come as JSON text already, the INSERT ... ON CONFLICT DO NOTHING goes to the driver as it
    is (no per-row parameter compilation) and the batch shares one received_at.

    On SQLite the rows go in one multi-row INSERT, not an executemany: Python's sqlite3 gives up the
    GIL around every statement step, and under load each step then waited up to the interpreter's
    switch interval (5 ms) to get it back from the busy event loop - a 500-row executemany took
    seconds and the writer fell behind (10,000 agents). One statement is one step. PostgreSQL's
    asyncpg runs on the event loop and pipelines its executemany: it stays."""
    if not rows:
        return 0
    dialect = conn.dialect
    process = agent_reports.c.received_at.type.bind_processor(dialect)
    now = utcnow()
    received = process(now) if process is not None else now
    head = f"INSERT INTO {agent_reports.name} ({', '.join(_REPORT_COLUMNS)}) VALUES "
    tail = " ON CONFLICT (terminal_id, report_id) DO NOTHING"
    if dialect.paramstyle == "qmark":
        one = "(" + ", ".join("?" for _ in _REPORT_COLUMNS) + ")"
        inserted = 0
        for i in range(0, len(rows), SQLITE_ROWS_PER_INSERT):
            chunk = rows[i:i + SQLITE_ROWS_PER_INSERT]
            params = tuple(v for r in chunk for v in (*r, received))
            res = await conn.exec_driver_sql(head + ", ".join([one] * len(chunk)) + tail, params)
            n = res.rowcount
            if not (isinstance(n, int) and 0 <= n <= len(chunk)):
                return None
            inserted += n
        return inserted
    if dialect.paramstyle == "numeric_dollar":
        marks = ", ".join(f"${i}" for i in range(1, len(_REPORT_COLUMNS) + 1))
        res = await conn.exec_driver_sql(head + f"({marks})" + tail, [(*r, received) for r in rows])
        n = res.rowcount
        return n if isinstance(n, int) and 0 <= n <= len(rows) else None
    raise NotImplementedError(f"parameter style {dialect.paramstyle}")   # pragma: no cover - SQLite, asyncpg only


async def get_report(conn: AsyncConnection, terminal_id: str, report_id: str) -> dict | None:
    """A stored report (its body parsed), or None."""
    r = agent_reports.c
    row = (await conn.execute(select(agent_reports).where(r.terminal_id == terminal_id,
                                                          r.report_id == report_id))).mappings().first()
    if row is None:
        return None
    out = dict(row)
    out["body"] = json.loads(out["body"])
    return out


async def mark_processed(conn: AsyncConnection, terminal_id: str, report_id: str) -> None:
    """The controller acted on this report (it is not taken up again after a restart)."""
    r = agent_reports.c
    await conn.execute(update(agent_reports).where(r.terminal_id == terminal_id, r.report_id == report_id)
                       .values(processed_at=utcnow()))


async def unprocessed_session_reports(conn: AsyncConnection, limit: int = 100) -> list[dict]:
    """Session reports stored but not yet acted on (e.g. the controller died in between)."""
    r = agent_reports.c
    res = await conn.execute(select(agent_reports).where(r.kind == ReportKind.SESSION, r.processed_at.is_(None))
                             .order_by(r.id).limit(limit))
    out = []
    for row in res.mappings():
        d = dict(row)
        d["body"] = json.loads(d["body"])
        out.append(d)
    return out


async def first_session_report(conn: AsyncConnection, terminal_id: str, session_id: str) -> str | None:
    """The id of the terminal's first stored final (kind session) report of the session, or None."""
    r = agent_reports.c
    res = await conn.execute(select(r.report_id).where(r.terminal_id == terminal_id, r.session_id == session_id,
                                                       r.kind == ReportKind.SESSION).order_by(r.id).limit(1))
    return res.scalar_one_or_none()


async def count_reports(conn: AsyncConnection, terminal_id: str | None = None, kind: str | None = None) -> int:
    """How many reports are stored (of a terminal, of a kind)."""
    r = agent_reports.c
    q = select(func.count()).select_from(agent_reports)
    if terminal_id is not None:
        q = q.where(r.terminal_id == terminal_id)
    if kind is not None:
        q = q.where(r.kind == kind)
    return (await conn.execute(q)).scalar_one()


async def reports_for_session(conn: AsyncConnection, session_id: str, kind: str | None = None) -> list[dict]:
    """A session's stored reports (of a kind), in arrival order, bodies parsed."""
    r = agent_reports.c
    q = select(agent_reports).where(r.session_id == session_id)
    if kind:
        q = q.where(r.kind == kind)
    out = []
    for row in (await conn.execute(q.order_by(r.id))).mappings():
        d = dict(row)
        d["body"] = json.loads(d["body"])
        out.append(d)
    return out


# ---- sessions --------------------------------------------------------------------------------

@dataclass(frozen=True)
class SessionRow:
    """A session the controller commanded: who calls whom, why, and where it stands."""
    session_id: str
    caller: str
    callee: str
    kind: str
    profile: str | None
    duration_s: float
    state: str

    def peer_of(self, terminal_id: str) -> str | None:
        if terminal_id == self.caller:
            return self.callee
        if terminal_id == self.callee:
            return self.caller
        return None


async def save_session(conn: AsyncConnection, s: SessionRow) -> None:
    """Record a commanded session (once: a second save of the same id is ignored)."""
    stmt = _insert(conn, agent_sessions).values(
        session_id=s.session_id, caller=s.caller, callee=s.callee, kind=s.kind, profile=s.profile,
        duration_s=s.duration_s, state=s.state, created_at=utcnow())
    await conn.execute(stmt.on_conflict_do_nothing(index_elements=["session_id"]))


async def get_session(conn: AsyncConnection, session_id: str) -> SessionRow | None:
    """A commanded session, or None."""
    c = agent_sessions.c
    row = (await conn.execute(select(c.session_id, c.caller, c.callee, c.kind, c.profile, c.duration_s,
                                     c.state).where(c.session_id == session_id))).first()
    return SessionRow(*row) if row else None


async def get_sessions(conn: AsyncConnection, session_ids: Iterable[str]) -> dict[str, SessionRow]:
    """`get_session` for many ids, one query a 500: {session_id: row} of those commanded."""
    c = agent_sessions.c
    ids = sorted(set(session_ids))
    found: dict[str, SessionRow] = {}
    for i in range(0, len(ids), 500):
        res = await conn.execute(select(c.session_id, c.caller, c.callee, c.kind, c.profile, c.duration_s,
                                        c.state).where(c.session_id.in_(ids[i:i + 500])))
        found.update((row[0], SessionRow(*row)) for row in res)
    return found


async def started_sessions_of_caller(conn: AsyncConnection, caller: str,
                                     created_before: dt.datetime) -> list[str]:
    """Sessions this terminal was commanded to call, still open, commanded before `created_before`."""
    c = agent_sessions.c
    res = await conn.execute(select(c.session_id).where(c.caller == caller, c.state == "started",
                                                        c.created_at < created_before))
    return list(res.scalars())


async def started_sessions_of_callers(conn: AsyncConnection,
                                      callers: Iterable[str]) -> dict[str, list[tuple[str, dt.datetime]]]:
    """The open sessions these terminals were commanded to call, {caller: [(session_id, created_at)]},
    in one query a 500 (the hub filters each by when its connection began)."""
    c = agent_sessions.c
    ids = sorted(set(callers))
    found: dict[str, list[tuple[str, dt.datetime]]] = {t: [] for t in ids}
    for i in range(0, len(ids), 500):
        res = await conn.execute(select(c.caller, c.session_id, c.created_at).where(
            c.caller.in_(ids[i:i + 500]), c.state == "started"))
        for caller, session_id, created_at in res:
            found[caller].append((session_id, created_at))
    return found


async def finish_session(conn: AsyncConnection, session_id: str, state: str, error: str | None = None) -> bool:
    """Mark a started session finished/failed/stopped; False if it was already over."""
    c = agent_sessions.c
    res = await conn.execute(update(agent_sessions).where(c.session_id == session_id, c.state == "started")
                             .values(state=state, error=error, finished_at=utcnow()))
    return res.rowcount > 0


# ---- relay queue (several controllers on one PostgreSQL) -------------------------------------

async def enqueue_relay(conn: AsyncConnection, target: str, terminal_id: str, payload: str) -> int:
    """Queue a message for the terminal held by another controller `target`; its id."""
    res = await conn.execute(relay_messages.insert().values(
        target=target, terminal_id=terminal_id, payload=payload, created_at=utcnow())
        .returning(relay_messages.c.id))
    return res.scalar_one()


async def take_relay(conn: AsyncConnection, target: str, *, message_id: int | None = None,
                     limit: int = 100) -> list[tuple[int, str, str]]:
    """Remove and return (id, terminal_id, payload) queued for `target`, oldest first."""
    m = relay_messages.c
    q = select(m.id, m.terminal_id, m.payload).where(m.target == target)
    if message_id is not None:
        q = q.where(m.id == message_id)
    q = q.order_by(m.id).limit(limit)
    if conn.dialect.name == "postgresql":
        q = q.with_for_update(skip_locked=True)
    rows = [tuple(r) for r in await conn.execute(q)]
    if rows:
        await conn.execute(delete(relay_messages).where(m.id.in_([r[0] for r in rows])))
    return rows


async def purge_relay(conn: AsyncConnection, older_than: dt.datetime) -> int:
    """Delete relay messages queued before `older_than` (nobody took them); how many."""
    res = await conn.execute(delete(relay_messages).where(relay_messages.c.created_at < older_than))
    return res.rowcount


