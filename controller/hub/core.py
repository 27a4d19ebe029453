"""The hub itself: its lifecycle, the WebSocket endpoint (authentication, hello, the messages of a
connection), delivery to a terminal here or through the relay, and the sessions it commands
(controller.gateway.AgentGateway)."""
from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections import OrderedDict
from typing import Any

from aiohttp import WSMsgType, web

from contract import wire
from contract.jobs import scheduler
from contract.reports import SessionBody
from contract.vocab import AgentDrop, SessionKind, SessionRole
from controller.agent_writes import Drops, refusal
from controller.gateway import AgentUnavailable, SessionResults
from controller.hub.base import (
    CLOSE_GOING_AWAY,
    CLOSE_POLICY,
    CLOSE_REPLACED,
    AgentConn,
    HubMetrics,
    HubOptions,
    HubStats,
    LiveListener,
    close_ws,
    json_error,
)
from controller.hub.presence import Presence
from controller.hub.writer import ReportWriter
from controller.relay import NoRelay, Relay, make_relay
from controller.store import agents as store
from controller.store.db import Database

log = logging.getLogger("controller.hub")

# Sessions named by reports, kept for who calls whom (which never changes): the resent intervals
# of an ended session cost no query each.
# Bounded: the oldest are forgotten (and read again). Above the agents' count (10,000 reporting at
# once, issue 15): a cache smaller than the sessions being reported would cost a query per report.
KNOWN_SESSIONS_MAX = 50_000


class Hub:
    """The agents' hub; implements controller.gateway.AgentGateway and Messenger.

    Built with all it tells: `results` (a caller's final session report, or a failed session),
    `live` (every stored batch of reports, ended sessions), `metrics`, and `drops` (what a
    terminal sent and may not write, controller.agent_writes)."""

    def __init__(self, db: Database, *, instance_id: str, results: SessionResults | None = None,
                 relay: Relay | None = None, live: LiveListener | None = None, metrics: HubMetrics | None = None,
                 options: HubOptions | None = None, drops: Drops | None = None):
        self.db = db
        self.instance_id = instance_id
        self.results = results
        self.live = live
        self.metrics = metrics
        self.options = options or HubOptions()
        self.drops = drops or Drops()
        # PostgreSQL: relay through LISTEN/NOTIFY to the other controllers; SQLite: none.
        self.relay: Relay = relay if relay is not None else make_relay(db, instance_id)
        self.stats = HubStats()
        self._conns: dict[str, AgentConn] = {}
        self._sessions: dict[str, store.SessionRow] = {}
        self._known: OrderedDict[str, store.SessionRow] = OrderedDict()
        self.writer = ReportWriter(db, self.options, self.stats, session_report=self._final_report,
                                   live=live, metrics=metrics)
        # SQLite (one writer at a time): presence writes go through the report writer's connection.
        self.presence = Presence(db, instance_id, self.options, self.relay, self._conns,
                                 write=None if db.is_postgres else self.writer.write)
        self._process: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
        self._loops = scheduler("hub")                      # writer, processor, leases, tokens
        self._work = scheduler("hub")                       # work started from agents' messages
        self._handlers: set[asyncio.Task] = set()           # aiohttp's tasks serving our sockets
        self._handshakes = 0                                # connections not yet registered
        self._closing = False
        self._closed = False

    # ---- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        """Take over from a previous run, start the relay and the loops."""
        # A previous run of this instance (crash) may have left leases behind.
        await self.presence.release_all()
        async with self.db.read() as conn:
            pending = await store.unprocessed_session_reports(conn)
        for row in pending:
            self._final_report(row["terminal_id"], row["report_id"])
        await self.relay.start(self._on_relayed)
        await self._loops.spawn(self.writer.run(), name="hub-writer")
        if not self.db.is_postgres:
            await self._loops.spawn(self.writer.checkpoints(), name="hub-checkpoints")
        await self._loops.spawn(self._processor(), name="hub-results")
        await self._loops.spawn(self.presence.lease_loop(), name="hub-leases")
        await self._loops.spawn(self.presence.token_loop(), name="hub-tokens")
        await self.presence.refresh_online()

    async def close_connections(self) -> None:
        """Stop taking agents and close every agent socket (the app's on_shutdown: aiohttp
        waits for open handlers before cleanup, so sockets must be closed first)."""
        self._closing = True
        conns = list(self._conns.values())
        await asyncio.gather(*(close_ws(c.ws, CLOSE_GOING_AWAY, b"controller shutting down") for c in conns),
                             return_exceptions=True)

    async def close(self) -> None:
        """Idempotent. Close every agent socket (agents reconnect elsewhere or later)."""
        if self._closed:
            return
        self._closed = True
        await self.close_connections()
        for t in list(self._handlers):
            t.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        await self._work.close()
        # Let the writer store (and ack) what was already received.
        await self.writer.drain(5.0)
        await self._loops.close()
        await self.relay.close()
        await self.presence.batches.close()
        try:
            await self.presence.release_all()
        except Exception as exc:
            log.warning("releasing the agents' presence failed: %s", exc)

    # ---- the WebSocket endpoint ------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """GET /api/v1/agent/ws."""
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
            return json_error(503, "unavailable", "controller is shutting down")
        # A reconnect storm (issue 15): past `max_handshakes` connections between their request
        # and their registration, a new one is refused at once - cheap, before any query - and
        # its agent retries after its (doubling, jittered) backoff instead of timing out here.
        if self._handshakes >= self.options.max_handshakes:
            self.stats.busy_refusals_total += 1
            return json_error(503, "busy", "controller is busy with other agents' connections; retry later")
        self._handshakes += 1
        c: AgentConn | None = None
        try:
            c, response = await self._handshake(request)
        finally:
            self._handshakes -= 1
        if c is None:
            return response
        try:
            await self._serve(c)
        finally:
            await self._unregister(c)
        return response

    async def _handshake(self, request: web.Request) -> tuple[AgentConn | None, web.StreamResponse]:
        """Token, upgrade, hello, welcome, registration: the connection to serve, or None with
        the response already given."""
        auth = request.headers.get("Authorization", "")
        scheme, _, token = auth.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            self.stats.auth_failures_total += 1
            log.warning("agent connection from %s refused: no bearer token", request.remote)
            return None, json_error(401, "unauthorized", "a terminal token is required (Authorization: Bearer)")
        try:
            terminal_id = await self.presence.batches.authenticate(token.strip())
        except Exception as exc:
            log.error("agent connection from %s: cannot check its token: %s", request.remote, exc)
            return None, json_error(503, "unavailable", "controller database unavailable; retry later")
        if terminal_id is None:
            self.stats.auth_failures_total += 1
            log.warning("agent connection from %s refused: unknown, revoked or expired token", request.remote)
            return None, json_error(401, "unauthorized", "unknown, revoked or expired terminal token")

        ws = web.WebSocketResponse(max_msg_size=self.options.max_message_bytes,
                                   heartbeat=max(10.0, 3 * self.options.heartbeat_s))
        try:
            await ws.prepare(request)
        except (ConnectionError, RuntimeError) as exc:     # the agent left (gave up waiting)
            log.info("terminal %s from %s left before the upgrade: %s", terminal_id, request.remote, exc)
            return None, ws
        hello = await self._read_hello(ws, terminal_id, request.remote)
        if hello is None:
            return None, ws
        c = AgentConn(terminal_id, ws, request.remote, hello.agent_version,
                      token_sha256=store.token_hash(token.strip()), capabilities=frozenset(hello.capabilities))
        # Welcome first: nothing (a command) may reach the agent before it.
        await c.send(wire.Welcome(terminal_id=terminal_id, controller_id=self.instance_id,
                                  heartbeat_s=self.options.heartbeat_s))
        try:
            await self._register(c)
        except Exception as exc:
            log.error("terminal %s: cannot register (%s); closing", terminal_id, exc)
            if self._conns.get(terminal_id) is c:
                del self._conns[terminal_id]
                self.presence.disconnected(terminal_id)
            await close_ws(ws, 1011, b"controller database unavailable")
            return None, ws
        return c, ws

    async def _read_hello(self, ws: web.WebSocketResponse, terminal_id: str, remote) -> wire.Hello | None:
        async def refuse(code: str, message: str, ref: str | None = None) -> None:
            self.stats.rejected_messages_total += 1
            log.warning("agent %s from %s refused: %s", terminal_id, remote, message)
            try:
                await ws.send_str(wire.encode(wire.Error(code=code, message=message, ref=ref, fatal=True)))
                await ws.close(code=CLOSE_POLICY, message=code.encode())
            except Exception as exc:
                log.debug("agent %s: refusal not delivered: %s", terminal_id, exc)

        timeout = self.options.hello_timeout_s
        try:
            raw = await ws.receive(timeout=timeout)
        except TimeoutError:
            await refuse("unexpected", f"no hello within {timeout:g} s")
            return None
        if raw.type != WSMsgType.TEXT:
            if not ws.closed:
                await refuse("unexpected", "expected a hello text message")
            return None
        try:
            m = wire.parse_agent_message(raw.data, max_bytes=self.options.max_message_bytes)
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
        self.presence.connected(c.terminal_id)
        self.stats.connections_total += 1
        if old is not None:
            log.info("terminal %s reconnected: replacing its previous connection", c.terminal_id)
            await close_ws(old.ws, CLOSE_REPLACED, b"replaced by a new connection")
        previous = await self.presence.claim(c)
        # (SQLite: one controller - a holder before it is a previous run of this one, gone.)
        if previous is not None and not isinstance(self.relay, NoRelay):
            try:
                await self.relay.send(previous, c.terminal_id, {"op": "kick", "terminal": c.terminal_id})
            except Exception as exc:
                log.warning("terminal %s: controller %s not told to let go: %s", c.terminal_id, previous, exc)
        log.info("terminal %s connected from %s (agent %s)", c.terminal_id, c.remote, c.agent_version)

    async def _unregister(self, c: AgentConn) -> None:
        if self._conns.get(c.terminal_id) is not c:
            return                      # replaced: the new connection owns the presence row
        del self._conns[c.terminal_id]
        self.presence.disconnected(c.terminal_id)
        log.info("terminal %s disconnected", c.terminal_id)
        try:
            await self.presence.release(c.terminal_id)
        except Exception as exc:
            log.warning("terminal %s: presence not released (its lease runs out): %s", c.terminal_id, exc)

    async def _serve(self, c: AgentConn) -> None:
        bad = 0
        async for raw in c.ws:
            if raw.type != WSMsgType.TEXT:
                if raw.type == WSMsgType.BINARY:
                    await self._reject(c, "bad_json", "binary frames are not part of the protocol")
                    bad += 1
                continue
            try:
                m = wire.parse_agent_message(raw.data, max_bytes=self.options.max_message_bytes)
                await self._on_message(c, m)
            except wire.WireError as exc:
                bad += 1
                await self._reject(c, exc.code, exc.message, exc.ref)
            except asyncio.CancelledError:
                raise
            except Exception as exc:        # e.g. the database is away: say so, keep the socket
                log.exception("terminal %s: handling a message failed", c.terminal_id)
                await self._reject(c, "internal", f"controller could not handle the message: {exc}")
            if bad >= self.options.max_bad_messages:
                await self._reject(c, "too_many_errors", f"{bad} bad messages: closing", fatal=True)
                await c.ws.close(code=CLOSE_POLICY, message=b"too many bad messages")
                return

    async def _reject(self, c: AgentConn, code: str, message: str, ref: str | None = None,
                      fatal: bool = False) -> None:
        self.stats.rejected_messages_total += 1
        log.warning("terminal %s: refused a message: %s: %s", c.terminal_id, code, message)
        await c.send(wire.Error(code=code, message=message[:4000], ref=ref, fatal=fatal))

    async def _on_message(self, c: AgentConn, m: Any) -> None:
        named = getattr(m, "terminal_id", None)
        if named is not None and named != c.terminal_id and not isinstance(m, wire.Hello):
            raise wire.WireError("forbidden", f"this connection is terminal {c.terminal_id!r}; "
                                              f"it cannot speak for {named!r}", ref=m.id)
        c.last_seen = store.utcnow()
        if isinstance(m, wire.Heartbeat):
            health = m.health.dump() if hasattr(m.health, "dump") else m.health
            if health != c.health:
                c.health = health           # written with the next lease refresh
            c.sessions = list(m.sessions)
            if not c.sessions_checked:
                c.sessions_checked = True
                await self._work.spawn(self._orphaned_sessions(c), name=f"orphans-{c.terminal_id}")
        elif isinstance(m, wire.Report):
            s = await self._named_session(m.session_id) if m.session_id is not None else None
            reason = refusal(s, c.terminal_id, m)
            if reason is not None:
                await self._refuse_report(c, m, reason)
                return
            await self.writer.put(c, m)
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

    async def _refuse_report(self, c: AgentConn, m: wire.Report, reason: AgentDrop) -> None:
        """Not written (issue 11): answered `forbidden`, then acked so that the agent lets it go -
        unacked it would be resent after every reconnect and hold a place in the agent's window
        for ever. Counted and logged once a minute (Drops), not one warning each; not a bad
        message either (an honest agent facing a restored database is not cut off in a loop)."""
        self.stats.rejected_messages_total += 1
        self.drops.drop(c.terminal_id, reason, f"report {m.report_id!r} naming session {m.session_id!r}")
        await c.send(wire.Error(code="forbidden", ref=m.id,
                                message=f"terminal {c.terminal_id!r} may not write report {m.report_id!r} "
                                        f"for session {m.session_id!r} ({reason}); it was not stored"))
        await c.send(wire.encode_ack(m.report_id))

    async def _orphaned_sessions(self, c: AgentConn) -> None:
        """First heartbeat of a connection: a session this terminal was commanded to call before
        it connected, and that it does not say it is running, was lost with the agent (killed,
        restarted). Fail it now so the check is retried, instead of waiting for its timeout.
        (A mere reconnect keeps the agent's sessions running; they are in its heartbeat.)"""
        # Give the agent time to deliver what its outbox holds (a final report ends the session).
        await asyncio.sleep(self.options.orphan_grace_s)
        if self._conns.get(c.terminal_id) is not c:
            return
        connected_at = dt.datetime.fromtimestamp(c.connected_at, dt.UTC)
        open_ = await self.presence.batches.started_sessions(c.terminal_id, connected_at)
        for session_id in open_:
            if session_id not in c.sessions:        # its latest heartbeat
                log.warning("session %s: caller %s reconnected without it; failed", session_id, c.terminal_id)
                await self._session_failed(session_id, "the caller's agent restarted during the session")

    # ---- a session's end -------------------------------------------------------------------

    def _final_report(self, terminal_id: str, report_id: str) -> None:
        self._process.put_nowait((terminal_id, report_id))

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
        body = SessionBody.model_validate(row["body"])      # stored as received: read through the model
        s = await self._session(session_id)
        if s is None:
            # Stored before issue 11 (then a report naming any session was taken): linked to nothing.
            self.drops.drop(terminal_id, AgentDrop.UNKNOWN_SESSION, f"stored session report {report_id!r}")
        elif s.caller == terminal_id and self.results is not None and await self._first_result(s, report_id):
            report = body.caller_report()
            async with self.db.transaction() as conn:
                first = await store.finish_session(conn, session_id, "finished")
            if first and self.metrics is not None:
                self.metrics.session_ended(s.kind, "finished")
            self._sessions.pop(session_id, None)
            if self.live is not None:
                self.live.on_session_ended(session_id, "finished", report.error)
            await self.results.on_session_result(session_id, report)
        async with self.db.transaction() as conn:
            await store.mark_processed(conn, terminal_id, report_id)

    async def _first_result(self, s: store.SessionRow, report_id: str) -> bool:
        """Whether this is the caller's first final report of the session: an honest agent sends
        one (a resend has the same id and is stored once); another id is not taken again - each
        would record a result, or an ignored one, in the hearing's record."""
        async with self.db.read() as conn:
            first = await store.first_session_report(conn, s.caller, s.session_id)
        if first is None or first == report_id:
            return True
        self.drops.drop(s.caller, AgentDrop.REPEATED_RESULT,
                        f"session {s.session_id!r}: report {report_id!r} after {first!r}")
        return False

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

    # ---- presence --------------------------------------------------------------------------

    def online(self) -> set[str]:
        """Terminals connected to this controller or (PostgreSQL) to another with a live lease."""
        return self.presence.online()

    def local(self) -> set[str]:
        """Terminals connected to this controller."""
        return set(self._conns)

    def connection_info(self, terminal_id: str) -> dict[str, Any] | None:
        """What this controller knows of a terminal's connection (None: not connected here)."""
        c = self._conns.get(terminal_id)
        if c is None:
            return None
        return {"terminal_id": c.terminal_id, "remote": c.remote, "agent_version": c.agent_version,
                "connected_at": c.connected_at, "last_seen": c.last_seen.isoformat(),
                "health": c.health, "sessions": c.sessions}

    async def disconnect(self, terminal_id: str, reason: str) -> bool:
        """Close the terminal's connection here now (its tokens were revoked: it was removed);
        True when it had one. A connection held by another controller is closed there by its
        token check within `token_check_s`."""
        c = self._conns.get(terminal_id)
        if c is None:
            return False
        log.warning("terminal %s: %s: closing its connection", terminal_id, reason)
        await c.send(wire.Error(code="unauthorized", message=reason, fatal=True))
        await close_ws(c.ws, CLOSE_POLICY, b"token revoked")
        return True

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
            if c is not None and isinstance(terminal_id, str):
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

    async def _named_session(self, session_id: str) -> store.SessionRow | None:
        """The commanded session a report names, or None (see KNOWN_SESSIONS_MAX)."""
        s = self._known.get(session_id)
        if s is not None:
            self._known.move_to_end(session_id)
            return s
        s = await self._session(session_id)
        if s is not None:
            self._known[session_id] = s
            if len(self._known) > KNOWN_SESSIONS_MAX:
                self._known.popitem(last=False)
        return s

    async def _session(self, session_id: str) -> store.SessionRow | None:
        s = self._sessions.get(session_id)
        if s is None:
            # Read with the other sessions asked at the same moment (thousands of agents' first
            # reports after a start: one query each emptied PostgreSQL's pool, issue 15).
            s = await self.presence.batches.session(session_id)
            if s is not None and s.state == "started":
                if len(self._sessions) > KNOWN_SESSIONS_MAX:
                    self._sessions.clear()
                self._sessions[session_id] = s
        return s

    async def start_session(self, *, session_id: str, caller: str, callee: str, kind: str,
                            profile: str | None, duration_s: float, capacity: bool = False) -> None:
        """Command `caller` to run a session with `callee` (callee first). Raises AgentUnavailable.

        `capacity` (issue 12): the caller ramps each direction after the media - asked only of a
        caller connected here whose hello announced "capacity" (an older agent would refuse the
        field: its report simply lacks `capacity`); ValueError for a monitoring session."""
        if caller == callee:
            raise ValueError("a session needs two different terminals")
        if capacity and kind == SessionKind.MONITOR:
            raise ValueError("capacity is never measured during monitoring (a live hearing)")
        here = self._conns.get(caller)
        capacity = capacity and here is not None and "capacity" in here.capabilities
        if not isinstance(self.relay, NoRelay):
            await self.presence.refresh_online()
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
        common: dict[str, Any] = dict(session_id=session_id, kind=kind, profile=profile, duration_s=float(duration_s))
        for terminal, role, peer in ((callee, SessionRole.CALLEE, caller), (caller, SessionRole.CALLER, callee)):
            await self.deliver(terminal, wire.Command(command=wire.StartSession(
                role=role, peer=peer, capacity=capacity and role is SessionRole.CALLER, **common)))
        if self.metrics is not None:
            self.metrics.session_commanded(kind, "started")
        log.info("session %s (%s) started: %s -> %s", session_id, kind, caller, callee)

    async def stop_session(self, session_id: str) -> None:
        """Tell both ends to stop the session; it ends as stopped."""
        s = await self._session(session_id)
        if s is None:
            return
        for t in (s.caller, s.callee):
            try:
                await self.deliver(t, wire.Command(command=wire.StopSession(session_id=session_id,
                                                                            reason="stopped by the controller")))
            except AgentUnavailable:
                pass
        async with self.db.transaction() as conn:
            first = await store.finish_session(conn, session_id, "stopped")
        if first and self.metrics is not None:
            self.metrics.session_ended(s.kind, "stopped")
        self._sessions.pop(session_id, None)
