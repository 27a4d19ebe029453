"""The controller's side of the agent link: one WebSocket per terminal (`GET /api/v1/agent/ws`).

- Authentication: `Authorization: Bearer <terminal token>` checked against `terminal_tokens`
  (sha256) before the upgrade; a bad token gets 401 JSON and a log line (never the token).
- The first message must be `hello` naming the token's own terminal and speaking `vks.wire/1`;
  the hub answers `welcome`. One connection per terminal: a new one replaces the old (closed with
  code 4000), on this controller or - through the relay - on another.
- Heartbeats update last seen and health (kept in memory, written in batches with the lease).
- Reports are stored by one writer task in batches (INSERT ... ON CONFLICT DO NOTHING on
  (terminal_id, report_id)); the `ack` of each is sent only after its batch committed, so a
  duplicate is stored once and acked again. A caller's final session report is then handed to
  `results.on_session_result(session_id, report)` once (`processed_at`).
- An agent may only speak for itself: a message naming another terminal, a signal for a session
  it is not part of, or to a terminal that is not its peer, is refused with an `error`
  ("forbidden") and not acted on.
- `AgentGateway`: `start_session` commands both agents (callee first), `stop_session`,
  `online()` (terminals with a live lease on any controller, refreshed every few seconds, plus
  the ones connected here).
"""
from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

from contract import wire
from controller.gateway import AgentUnavailable, SessionResults
from controller.relay import NoRelay, Relay, make_relay
from controller.store import agents as store
from controller.store.db import Database

log = logging.getLogger(__name__)

CLOSE_REPLACED = 4000
CLOSE_POLICY = 1008
CLOSE_GOING_AWAY = 1001
# Database work slower than this is logged (it delays acks).
SLOW_S = 0.5


@dataclass
class HubStats:
    connections_total: int = 0
    auth_failures_total: int = 0
    rejected_messages_total: int = 0
    reports_stored_total: int = 0
    report_batches_total: int = 0
    store_errors_total: int = 0
    relayed_out_total: int = 0
    relayed_in_total: int = 0


@dataclass(eq=False)
class AgentConn:
    terminal_id: str
    ws: web.WebSocketResponse
    remote: str | None
    agent_version: str
    connected_at: float = field(default_factory=time.time)
    last_seen: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))
    health: dict | None = None
    health_written: dict | None = None
    sessions_checked: bool = False
    sessions: list[str] = field(default_factory=list)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    token_sha256: str | None = None      # the token it authenticated with (revocation closes it)

    async def send(self, msg: wire._Msg | str) -> bool:
        text = msg if isinstance(msg, str) else wire.encode(msg)
        if self.ws.closed:
            return False
        async with self.lock:
            try:
                await self.ws.send_str(text)
                return True
            except (ConnectionError, RuntimeError):
                return False


class Hub:
    """Implements controller.gateway.AgentGateway."""

    def __init__(self, db: Database, *, instance_id: str, results: SessionResults | None = None,
                 relay: Relay | None = None, heartbeat_s: float = 5.0, lease_s: float = 30.0,
                 hello_timeout_s: float = 10.0, batch_max: int = 500, max_bad_messages: int = 20,
                 max_message_bytes: int = wire.MAX_MESSAGE_BYTES, orphan_grace_s: float = 10.0,
                 token_check_s: float = 5.0, batch_wait_s: float = 0.01):
        self.db = db
        # Open connections whose token was revoked (or expired) since are closed within this long.
        self.token_check_s = token_check_s
        self.instance_id = instance_id
        self.results = results
        # PostgreSQL: relay through LISTEN/NOTIFY to the other controllers; SQLite: none.
        self.relay: Relay = relay if relay is not None else make_relay(db, instance_id)
        self.heartbeat_s = heartbeat_s
        self.lease_s = lease_s
        self.hello_timeout_s = hello_timeout_s
        self.batch_max = batch_max
        self.max_bad_messages = max_bad_messages
        self.max_message_bytes = max_message_bytes
        self.orphan_grace_s = orphan_grace_s
        self.batch_wait_s = batch_wait_s
        self.stats = HubStats()
        self._conns: dict[str, AgentConn] = {}
        self._online_cache: set[str] = set()
        self._sessions: dict[str, store.SessionRow] = {}
        self._reports: asyncio.Queue = asyncio.Queue()
        self._process: asyncio.Queue = asyncio.Queue()
        self._tasks: list[asyncio.Task] = []
        self._handlers: set[asyncio.Task] = set()
        self._bg: set[asyncio.Task] = set()
        self._closing = False
        self._writer_conn = None
        # controller.metrics.HubObserver, set by controller.metrics when the app starts.
        self.metrics = None
        # controller.live.LiveService (rule 22), set by controller.live when the app starts: it is
        # handed each committed batch of reports (the monitoring sessions' intervals) at once.
        self.live = None

    # ---- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        async with self.db.transaction() as conn:
            # A previous run of this instance (crash) may have left leases behind.
            await store.release_all(conn, self.instance_id)
            pending = await store.unprocessed_session_reports(conn)
        for row in pending:
            self._process.put_nowait((row["terminal_id"], row["report_id"]))
        await self.relay.start(self._on_relayed)
        self._tasks = [asyncio.create_task(self._writer(), name="hub-writer"),
                       asyncio.create_task(self._processor(), name="hub-results"),
                       asyncio.create_task(self._lease_loop(), name="hub-leases"),
                       asyncio.create_task(self._token_loop(), name="hub-tokens")]
        await self._refresh_online()

    async def close_connections(self) -> None:
        """Stop taking agents and close every agent socket (the app's on_shutdown: aiohttp
        waits for open handlers before cleanup, so sockets must be closed first)."""
        self._closing = True
        conns = list(self._conns.values())
        await asyncio.gather(*(self._close_ws(c.ws, CLOSE_GOING_AWAY, b"controller shutting down")
                               for c in conns), return_exceptions=True)

    @staticmethod
    async def _close_ws(ws: web.WebSocketResponse, code: int, message: bytes) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(ws.close(code=code, message=message), 2.0)

    async def close(self) -> None:
        """Idempotent. Close every agent socket (agents reconnect elsewhere or later)."""
        if self._tasks == [] and self._closing:
            return
        await self.close_connections()
        for t in list(self._handlers) + list(self._bg):
            t.cancel()
        await asyncio.gather(*self._handlers, *self._bg, return_exceptions=True)
        # Let the writer store (and ack) what was already received.
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._reports.join(), 5.0)
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        await self.relay.close()
        with contextlib.suppress(Exception):
            async with self.db.transaction() as conn:
                await store.release_all(conn, self.instance_id)

    # ---- the WebSocket endpoint ------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.StreamResponse:
        task = asyncio.current_task()
        if task is not None:
            self._handlers.add(task)
        try:
            return await self._handle(request)
        finally:
            if task is not None:
                self._handlers.discard(task)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if self._closing:
            return _json_error(503, "unavailable", "controller is shutting down")
        auth = request.headers.get("Authorization", "")
        scheme, _, token = auth.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            self.stats.auth_failures_total += 1
            log.warning("agent connection from %s refused: no bearer token", request.remote)
            return _json_error(401, "unauthorized", "a terminal token is required (Authorization: Bearer)")
        try:
            async with self.db.read() as conn:
                terminal_id = await store.authenticate(conn, token.strip())
        except Exception as exc:
            log.error("agent connection from %s: cannot check its token: %s", request.remote, exc)
            return _json_error(503, "unavailable", "controller database unavailable; retry later")
        if terminal_id is None:
            self.stats.auth_failures_total += 1
            log.warning("agent connection from %s refused: unknown, revoked or expired token", request.remote)
            return _json_error(401, "unauthorized", "unknown, revoked or expired terminal token")

        ws = web.WebSocketResponse(max_msg_size=self.max_message_bytes,
                                   heartbeat=max(10.0, 3 * self.heartbeat_s))
        await ws.prepare(request)
        hello = await self._read_hello(ws, terminal_id, request.remote)
        if hello is None:
            return ws
        c = AgentConn(terminal_id, ws, request.remote, hello.agent_version,
                      token_sha256=store.token_hash(token.strip()))
        # Welcome first: nothing (a command) may reach the agent before it.
        await c.send(wire.Welcome(terminal_id=terminal_id, controller_id=self.instance_id,
                                  heartbeat_s=self.heartbeat_s))
        try:
            await self._register(c)
        except Exception as exc:
            log.error("terminal %s: cannot register (%s); closing", terminal_id, exc)
            if self._conns.get(terminal_id) is c:
                del self._conns[terminal_id]
                self._online_cache.discard(terminal_id)
            await self._close_ws(ws, 1011, b"controller database unavailable")
            return ws
        try:
            await self._serve(c)
        finally:
            await self._unregister(c)
        return ws

    async def _read_hello(self, ws: web.WebSocketResponse, terminal_id: str, remote) -> wire.Hello | None:
        async def refuse(code: str, message: str, ref: str | None = None) -> None:
            self.stats.rejected_messages_total += 1
            log.warning("agent %s from %s refused: %s", terminal_id, remote, message)
            with contextlib.suppress(Exception):
                await ws.send_str(wire.encode(wire.Error(code=code, message=message, ref=ref, fatal=True)))
                await ws.close(code=CLOSE_POLICY, message=code.encode())

        try:
            raw = await ws.receive(timeout=self.hello_timeout_s)
        except TimeoutError:
            await refuse("unexpected", f"no hello within {self.hello_timeout_s:g} s")
            return None
        if raw.type != WSMsgType.TEXT:
            if not ws.closed:
                await refuse("unexpected", "expected a hello text message")
            return None
        try:
            m = wire.parse_agent_message(raw.data, max_bytes=self.max_message_bytes)
        except wire.WireError as exc:
            await refuse(exc.code, exc.message, exc.ref)
            return None
        if not isinstance(m, wire.Hello):
            await refuse("unexpected", f"first message must be hello, got {m.type}", m.id)
            return None
        if m.terminal_id != terminal_id:
            await refuse("forbidden", f"this token belongs to terminal {terminal_id!r}, "
                                      f"not {m.terminal_id!r}", m.id)
            return None
        if m.protocol != wire.PROTOCOL:
            await refuse("bad_protocol", f"controller speaks {wire.PROTOCOL}, agent {m.protocol}", m.id)
            return None
        return m

    async def _register(self, c: AgentConn) -> None:
        old = self._conns.get(c.terminal_id)
        self._conns[c.terminal_id] = c
        self._online_cache.add(c.terminal_id)
        self.stats.connections_total += 1
        if old is not None:
            log.info("terminal %s reconnected: replacing its previous connection", c.terminal_id)
            await self._close_ws(old.ws, CLOSE_REPLACED, b"replaced by a new connection")
        lease_until = store.utcnow() + dt.timedelta(seconds=self.lease_s)
        async with self.db.transaction() as conn:
            previous = await store.claim_presence(conn, c.terminal_id, self.instance_id,
                                                  lease_until=lease_until, agent_version=c.agent_version)
        if previous is not None:
            with contextlib.suppress(Exception):
                await self.relay.send(previous, c.terminal_id, {"op": "kick", "terminal": c.terminal_id})
        log.info("terminal %s connected from %s (agent %s)", c.terminal_id, c.remote, c.agent_version)

    async def _unregister(self, c: AgentConn) -> None:
        if self._conns.get(c.terminal_id) is not c:
            return                      # replaced: the new connection owns the presence row
        del self._conns[c.terminal_id]
        self._online_cache.discard(c.terminal_id)
        log.info("terminal %s disconnected", c.terminal_id)
        with contextlib.suppress(Exception):
            async with self.db.transaction() as conn:
                await store.release_presence(conn, c.terminal_id, self.instance_id)

    async def _serve(self, c: AgentConn) -> None:
        bad = 0
        async for raw in c.ws:
            if raw.type != WSMsgType.TEXT:
                if raw.type == WSMsgType.BINARY:
                    await self._reject(c, "bad_json", "binary frames are not part of the protocol")
                    bad += 1
                continue
            try:
                m = wire.parse_agent_message(raw.data, max_bytes=self.max_message_bytes)
                await self._on_message(c, m)
            except wire.WireError as exc:
                bad += 1
                await self._reject(c, exc.code, exc.message, exc.ref)
            except asyncio.CancelledError:
                raise
            except Exception as exc:        # e.g. the database is away: say so, keep the socket
                log.exception("terminal %s: handling a message failed", c.terminal_id)
                await self._reject(c, "internal", f"controller could not handle the message: {exc}")
            if bad >= self.max_bad_messages:
                await self._reject(c, "too_many_errors", f"{bad} bad messages: closing", fatal=True)
                await c.ws.close(code=CLOSE_POLICY, message=b"too many bad messages")
                return

    async def _reject(self, c: AgentConn, code: str, message: str, ref: str | None = None,
                      fatal: bool = False) -> None:
        self.stats.rejected_messages_total += 1
        log.warning("terminal %s: refused a message: %s: %s", c.terminal_id, code, message)
        await c.send(wire.Error(code=code, message=message[:4000], ref=ref, fatal=fatal))

    async def _on_message(self, c: AgentConn, m) -> None:
        named = getattr(m, "terminal_id", None)
        if named is not None and named != c.terminal_id and not isinstance(m, wire.Hello):
            raise wire.WireError("forbidden", f"this connection is terminal {c.terminal_id!r}; "
                                              f"it cannot speak for {named!r}", ref=m.id)
        c.last_seen = store.utcnow()
        if isinstance(m, wire.Heartbeat):
            if m.health != c.health:
                c.health = m.health          # written with the next lease refresh
            c.sessions = list(m.sessions)
            if not c.sessions_checked:
                c.sessions_checked = True
                self._background(self._orphaned_sessions(c), f"orphans-{c.terminal_id}")
        elif isinstance(m, wire.Report):
            if m.session_id is not None and m.kind == "session":
                s = await self._session(m.session_id)
                if s is not None and s.peer_of(c.terminal_id) is None:
                    raise wire.WireError("forbidden", f"terminal {c.terminal_id!r} is not part of "
                                                      f"session {m.session_id!r}", ref=m.id)
            self._reports.put_nowait((c, m))
        elif isinstance(m, wire.Signal):
            s = await self._session(m.session_id)
            if s is None:
                raise wire.WireError("forbidden", f"unknown session {m.session_id!r}", ref=m.id)
            peer = s.peer_of(c.terminal_id)
            if peer is None or peer != m.to:
                raise wire.WireError("forbidden", f"terminal {c.terminal_id!r} may not signal {m.to!r} "
                                                  f"in session {m.session_id!r}", ref=m.id)
            try:
                await self.deliver(m.to, wire.relay(m, c.terminal_id))
            except AgentUnavailable as exc:
                await self._reject(c, "peer_unavailable", str(exc), m.id)
        elif isinstance(m, wire.SessionState):
            s = await self._session(m.session_id)
            if s is None or s.peer_of(c.terminal_id) is None:
                raise wire.WireError("forbidden", f"terminal {c.terminal_id!r} is not part of "
                                                  f"session {m.session_id!r}", ref=m.id)
            log.info("session %s: %s is %s%s", m.session_id, c.terminal_id, m.state,
                     f" ({m.error})" if m.error else "")
            if m.state in ("failed", "rejected") and c.terminal_id == s.caller:
                await self._session_failed(m.session_id, m.error or f"caller {m.state}")
        elif isinstance(m, wire.Hello):
            raise wire.WireError("unexpected", "hello was already received", ref=m.id)

    def _background(self, coro, name: str) -> None:
        """Work started from a message, tracked and cancelled on close."""
        t = asyncio.create_task(coro, name=name)
        self._bg.add(t)

        def done(task: asyncio.Task) -> None:
            self._bg.discard(task)
            if not task.cancelled() and task.exception() is not None:
                log.error("%s failed: %s", name, task.exception())
        t.add_done_callback(done)

    async def _orphaned_sessions(self, c: AgentConn) -> None:
        """First heartbeat of a connection: a session this terminal was commanded to call before
        it connected, and that it does not say it is running, was lost with the agent (killed,
        restarted). Fail it now so the check is retried, instead of waiting for its timeout.
        (A mere reconnect keeps the agent's sessions running; they are in its heartbeat.)"""
        # Give the agent time to deliver what its outbox holds (a final report ends the session).
        await asyncio.sleep(self.orphan_grace_s)
        if self._conns.get(c.terminal_id) is not c:
            return
        connected_at = dt.datetime.fromtimestamp(c.connected_at, dt.UTC)
        async with self.db.read() as conn:
            open_ = await store.started_sessions_of_caller(conn, c.terminal_id, connected_at)
        for session_id in open_:
            if session_id not in c.sessions:        # its latest heartbeat
                log.warning("session %s: caller %s reconnected without it; failed", session_id, c.terminal_id)
                await self._session_failed(session_id, "the caller's agent restarted during the session")

    # ---- reports ---------------------------------------------------------------------------

    async def _writer(self) -> None:
        """Store reports in batches; ack each only after its batch committed."""
        self._writer_conn = None
        try:
            await self._write_loop()
        finally:
            if self._writer_conn is not None:
                with contextlib.suppress(Exception):
                    await asyncio.shield(self._writer_conn.close())
                self._writer_conn = None

    async def _write_loop(self) -> None:
        delay = 0.2
        while True:
            first = await self._reports.get()
            batch = [first]
            if self.batch_wait_s > 0 and self._reports.empty():
                # Gather a few milliseconds' worth: one transaction for many reports costs far
                # less than one each (thousands of agents each sending one a second).
                await asyncio.sleep(self.batch_wait_s)
            while len(batch) < self.batch_max:
                try:
                    batch.append(self._reports.get_nowait())
                except asyncio.QueueEmpty:
                    break
            rows = [store.NewReport(c.terminal_id, m.report_id, m.kind, m.session_id, m.body, m.created_at)
                    for c, m in batch]
            while True:
                try:
                    # The writer keeps its own connection: reports never queue behind the
                    # pool (agent handshakes, API requests) - one round of BEGIN/INSERT/COMMIT.
                    t0 = time.monotonic()
                    if self._writer_conn is None:
                        self._writer_conn = await self.db.engine.connect()
                    async with self._writer_conn.begin():
                        inserted = await store.store_reports(self._writer_conn, rows)
                    took = time.monotonic() - t0
                    if took > SLOW_S:
                        log.warning("storing %d reports took %.2f s", len(rows), took)
                    delay = 0.2
                    break
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    # Database away: keep the batch, no acks; the agents keep their outboxes.
                    self.stats.store_errors_total += 1
                    log.error("storing %d reports failed (%s); retrying in %.1f s", len(rows), exc, delay)
                    if self._writer_conn is not None:
                        with contextlib.suppress(Exception):
                            await self._writer_conn.close()
                        self._writer_conn = None
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 10.0)
            self.stats.reports_stored_total += len(rows)
            self.stats.report_batches_total += 1
            if self.metrics is not None:
                self.metrics.reports_stored([(c.terminal_id, m) for c, m in batch],
                                            len(rows) - inserted if isinstance(inserted, int) else None)
            for c, m in batch:
                await c.send(wire.encode_ack(m.report_id))
                if m.kind == "session" and m.session_id:
                    self._process.put_nowait((c.terminal_id, m.report_id))
                self._reports.task_done()
            if self.live is not None:
                try:
                    self.live.on_reports([(c.terminal_id, m) for c, m in batch])
                except Exception:
                    log.exception("live monitoring could not take %d reports", len(batch))

    async def _processor(self) -> None:
        """Hand the caller's final session report to the results, once."""
        while True:
            terminal_id, report_id = await self._process.get()
            try:
                await self._process_report(terminal_id, report_id)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("processing session report %s of %s failed", report_id, terminal_id)

    async def _process_report(self, terminal_id: str, report_id: str) -> None:
        async with self.db.read() as conn:
            row = await store.get_report(conn, terminal_id, report_id)
        if row is None or row["processed_at"] is not None or not row["session_id"]:
            return
        session_id = row["session_id"]
        body = row["body"]
        s = await self._session(session_id)
        is_caller = (s.caller == terminal_id) if s is not None else body.get("role") == "caller"
        if is_caller and self.results is not None:
            report = body.get("report") if isinstance(body.get("report"), dict) else body
            async with self.db.transaction() as conn:
                first = await store.finish_session(conn, session_id, "finished")
            if first and self.metrics is not None:
                self.metrics.session_ended(s.kind if s is not None else None, "finished")
            self._sessions.pop(session_id, None)
            if self.live is not None:
                self.live.on_session_ended(session_id, "finished", report.get("error"))
            await self.results.on_session_result(session_id, report)
        async with self.db.transaction() as conn:
            await store.mark_processed(conn, terminal_id, report_id)

    async def _session_failed(self, session_id: str, error: str) -> None:
        async with self.db.transaction() as conn:
            first = await store.finish_session(conn, session_id, "failed", error)
        if first and self.metrics is not None:
            self.metrics.session_ended(getattr(self._sessions.get(session_id), "kind", None), "failed")
        self._sessions.pop(session_id, None)
        if self.live is not None:
            self.live.on_session_ended(session_id, "failed", error)
        if first and self.results is not None:
            await self.results.on_session_failed(session_id, error)

    # ---- presence and leases ---------------------------------------------------------------

    async def _token_loop(self) -> None:
        """Close connections whose token was revoked or expired since they connected (issue 7)."""
        while True:
            await asyncio.sleep(self.token_check_s)
            conns = [c for c in self._conns.values() if c.token_sha256]
            if not conns:
                continue
            try:
                async with self.db.read() as conn:
                    valid = await store.valid_token_hashes(conn, {c.token_sha256 for c in conns})
            except asyncio.CancelledError:
                raise
            except Exception as exc:           # database away: keep the sockets, check again later
                log.warning("checking agent tokens failed: %s", exc)
                continue
            for c in conns:
                if c.token_sha256 not in valid and self._conns.get(c.terminal_id) is c:
                    log.warning("terminal %s: its token was revoked or expired: closing its connection",
                                c.terminal_id)
                    await c.send(wire.Error(code="unauthorized", message="terminal token revoked or expired",
                                            fatal=True))
                    await self._close_ws(c.ws, CLOSE_POLICY, b"token revoked")

    async def _lease_loop(self) -> None:
        period = max(1.0, self.lease_s / 3)
        while True:
            await asyncio.sleep(period)
            try:
                t0 = time.monotonic()
                changed = {t: c.health for t, c in self._conns.items()
                           if c.health is not None and c.health is not c.health_written}
                lease_until = store.utcnow() + dt.timedelta(seconds=self.lease_s)
                async with self.db.transaction() as conn:
                    await store.refresh_presence(conn, self.instance_id, lease_until=lease_until,
                                                 health=changed)
                for t, h in changed.items():
                    c = self._conns.get(t)
                    if c is not None:
                        c.health_written = h
                await self._refresh_online()
                took = time.monotonic() - t0
                if took > SLOW_S:
                    log.warning("refreshing %d agent leases took %.2f s", len(self._conns), took)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("refreshing agent leases failed: %s", exc)

    async def _refresh_online(self) -> None:
        async with self.db.read() as conn:
            remote = await store.online_terminals(conn)
        self._online_cache = remote | set(self._conns)

    def online(self) -> set[str]:
        """Terminals connected to this controller or (PostgreSQL) to another with a live lease."""
        if isinstance(self.relay, NoRelay):
            return set(self._conns)
        return set(self._online_cache) | set(self._conns)

    def local(self) -> set[str]:
        return set(self._conns)

    def connection_info(self, terminal_id: str) -> dict[str, Any] | None:
        c = self._conns.get(terminal_id)
        if c is None:
            return None
        return {"terminal_id": c.terminal_id, "remote": c.remote, "agent_version": c.agent_version,
                "connected_at": c.connected_at, "last_seen": c.last_seen.isoformat(),
                "health": c.health, "sessions": c.sessions}

    # ---- delivery --------------------------------------------------------------------------

    async def deliver(self, terminal_id: str, msg: wire._Msg) -> None:
        """Send a message to a terminal here or through the relay. Raises AgentUnavailable."""
        text = wire.encode(msg)
        c = self._conns.get(terminal_id)
        if c is not None:
            if await c.send(text):
                return
            raise AgentUnavailable(f"terminal {terminal_id!r}: connection closed")
        async with self.db.read() as conn:
            holder = await store.holder(conn, terminal_id)
        if holder is None or holder == self.instance_id:
            raise AgentUnavailable(f"terminal {terminal_id!r} is not connected")
        await self.relay.send(holder, terminal_id, {"op": "deliver", "terminal": terminal_id, "msg": text})
        self.stats.relayed_out_total += 1

    async def _on_relayed(self, payload: dict) -> None:
        terminal_id = payload.get("terminal")
        c = self._conns.get(terminal_id) if isinstance(terminal_id, str) else None
        if payload.get("op") == "kick":
            if c is not None:
                log.info("terminal %s connected to another controller: closing here", terminal_id)
                self._conns.pop(terminal_id, None)
                await c.ws.close(code=CLOSE_REPLACED, message=b"connected elsewhere")
            return
        if payload.get("op") == "deliver" and isinstance(payload.get("msg"), str):
            self.stats.relayed_in_total += 1
            try:
                # Keep local state in step with what passes through (session announcements).
                m = wire.parse_controller_message(payload["msg"])
                if isinstance(m, wire.Command) and isinstance(m.command, wire.StartSession):
                    await self._session(m.command.session_id)
            except wire.WireError as exc:
                log.error("relay: refusing a bad message for %s: %s", terminal_id, exc)
                return
            if c is None or not await c.send(payload["msg"]):
                log.warning("relay: terminal %s is no longer connected here; message dropped", terminal_id)

    # ---- sessions (AgentGateway) -----------------------------------------------------------

    async def _session(self, session_id: str) -> store.SessionRow | None:
        s = self._sessions.get(session_id)
        if s is None:
            async with self.db.read() as conn:
                s = await store.get_session(conn, session_id)
            if s is not None and s.state == "started":
                if len(self._sessions) > 10_000:
                    self._sessions.clear()
                self._sessions[session_id] = s
        return s

    async def start_session(self, *, session_id: str, caller: str, callee: str, kind: str,
                            profile: str | None, duration_s: float) -> None:
        if caller == callee:
            raise ValueError("a session needs two different terminals")
        if not isinstance(self.relay, NoRelay):
            await self._refresh_online()
        online = self.online()
        missing = [t for t in (caller, callee) if t not in online]
        if missing:
            if self.metrics is not None:
                self.metrics.session_commanded(kind, "unavailable")
            raise AgentUnavailable(f"terminal {', '.join(repr(t) for t in missing)} not connected")
        s = store.SessionRow(session_id, caller, callee, kind, profile, float(duration_s), "started")
        async with self.db.transaction() as conn:
            await store.save_session(conn, s)
        self._sessions[session_id] = s
        common = dict(session_id=session_id, kind=kind, profile=profile, duration_s=float(duration_s))
        await self.deliver(callee, wire.Command(command=wire.StartSession(role="callee", peer=caller, **common)))
        await self.deliver(caller, wire.Command(command=wire.StartSession(role="caller", peer=callee, **common)))
        if self.metrics is not None:
            self.metrics.session_commanded(kind, "started")
        log.info("session %s (%s) started: %s -> %s", session_id, kind, caller, callee)

    async def stop_session(self, session_id: str) -> None:
        s = await self._session(session_id)
        if s is None:
            return
        for t in (s.caller, s.callee):
            with contextlib.suppress(AgentUnavailable):
                await self.deliver(t, wire.Command(command=wire.StopSession(session_id=session_id,
                                                                            reason="stopped by the controller")))
        async with self.db.transaction() as conn:
            first = await store.finish_session(conn, session_id, "stopped")
        if first and self.metrics is not None:
            self.metrics.session_ended(s.kind, "stopped")
        self._sessions.pop(session_id, None)


def _json_error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": code, "message": message}, status=status)

