"""The agent's link to the controller: one WebSocket, kept up for as long as the agent runs.

- Connects to `controller.url` (ws:// or wss://; an http(s) URL or a bare host:port URL gets the
  path `/api/v1/agent/ws`) with the terminal's bearer token (`controller.token`, or the first line
  of `controller.token_file`, re-read at every connect so a rotated token needs no restart) and,
  for wss, the CA in `controller.ca_file`.
- Sends `hello`, waits for `welcome`, then: heartbeats with health every `heartbeat_s`; drains the
  outbox in order (a window of unacknowledged reports in flight; the outbox deletes a report when
  its `ack` arrives; after a reconnect everything unacknowledged is sent again).
- Reconnects after any failure with exponential backoff and full jitter (contract.backoff, the
  one retry delay), so that hundreds of agents do not come back in the same second.
- Files are read in a worker thread, never on the event loop: the token file at every connect,
  the CA file once (`open()`).
- Dispatches `command`s and peer `signal`s (offers) to the handler; replies to our own signals
  (answers, matched by `reply_to`) resolve `signal()`.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Awaitable, Callable
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

import aiohttp

from agent.health import HealthChecker
from agent.outbox import Outbox, OutboxError
from agent.settings import AgentSettings
from contract import configfile, wire
from contract.backoff import Backoff
from contract.reports import BODIES, Health
from contract.vocab import ReportKind

log = logging.getLogger(__name__)

AGENT_VERSION = "0.1.0"
# "capacity": start_session may carry `capacity: true` (agent/capacity.py; issue 12).
CAPABILITIES = ["session", "interval-reports", "health", "capacity"]
# An outbox that cannot be read is tried again after at most this long (contract.backoff,
# with half-to-full jitter: some delay always, so a broken disk is not hammered).
OUTBOX_RETRY_S = (1.0, 5.0)
# Reconnect delays (contract.backoff, full jitter): try n waits U(0, min(MAX, INITIAL * 2**(n-1))),
# windows of 2, 4, 8, 15, 15 ... s (issue 15). After a controller restart 10,000 agents spread
# their first tries over 2 s, the next over 4, 8, 15 s: the ones the controller refuses as busy
# (503, at most `max_handshakes` hellos at once) or cannot reach yet come back spread over ever wider
# windows instead of in step, and none waits more than 15 s for its next try - five tries fit in
# 44 s, six in 59. With windows up to 30 s five tries took up to 60 s, and in a storm of 10,000
# on two controllers (benchmarks/agent_load.py --storm) the last agent was back after 60.4 s;
# with 15 s, 44.7 s. A dead controller then sees a try from each agent every 7.5 s on average
# (1,300 refused connects a second from 10,000: the kernel's work, not the controller's).
# A lone agent's first try after a drop waits 1 s on average.
RECONNECT_INITIAL_S = 2.0
RECONNECT_MAX_S = 15.0


class LinkError(Exception):
    """The link to the controller failed (the caller may retry)."""


class LinkDown(LinkError):
    """Not connected to the controller now."""


class LinkRefused(LinkError):
    """The controller refused this agent (bad token, protocol) - retried with backoff all the same."""


class SignalRejected(LinkError):
    """The controller (or the peer) refused a signal."""


class Handler(Protocol):
    """What the link hands the controller's commands and the peers' offers to (the daemon)."""

    async def on_command(self, command: wire.StartSession | wire.StopSession | wire.LiveEvent) -> None: ...
    async def on_signal(self, message: wire.RelayedSignal) -> None: ...
    def running_sessions(self) -> list[str]: ...


def ws_url(url: str) -> str:
    """Normalize the configured controller URL to the agent WebSocket endpoint."""
    parts = urlsplit(url)
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    if scheme not in ("ws", "wss"):
        raise ValueError(f"controller.url must be ws://, wss://, http:// or https://, got {url!r}")
    path = parts.path
    if path in ("", "/"):
        path = wire.WS_PATH
    return urlunsplit((scheme, parts.netloc, path, parts.query, ""))


def read_token(settings: AgentSettings) -> str:
    """The bearer token: `controller.token`, else the first line of `controller.token_file`
    (blocking: the link calls it in a worker thread)."""
    c = settings.controller
    if c.token:
        return c.token.strip()
    if c.token_file:
        try:
            return configfile.read_secret(c.token_file, "controller.token_file")
        except configfile.ConfigError as exc:
            raise LinkRefused(str(exc)) from None
    raise LinkRefused("no token: set controller.token or controller.token_file")


HealthFn = Callable[[], Awaitable[dict[str, Any] | Health]]


def health_payload(result: dict[str, Any] | Health) -> Health:
    """The heartbeat's typed health (a Health as it is); a result the contract refuses goes as
    "unknown", saying why (the heartbeat itself must still go)."""
    try:
        return Health.model_validate(result)
    except ValueError as exc:
        log.warning("health result refused by the contract: %s", exc)
        return Health(status="unknown", problems=[f"health result invalid: {exc}"[:500]])


def default_health(settings: AgentSettings) -> HealthFn:
    """agent.health's checker (deltas since the last check)."""
    return HealthChecker(settings).check_or_unknown


class Link:
    """The link to the controller; `run()` keeps it up until `close()`."""

    def __init__(self, settings: AgentSettings, outbox: Outbox, handler: Handler, *,
                 health: HealthFn | None = None, version: str = AGENT_VERSION,
                 backoff_initial: float = RECONNECT_INITIAL_S, backoff_max: float = RECONNECT_MAX_S, window: int = 200,
                 welcome_timeout_s: float = 15.0):
        if not settings.controller.url:
            raise LinkRefused("controller.url is not set")
        self.settings = settings
        self.url = ws_url(settings.controller.url)
        self.outbox = outbox
        self.handler = handler
        self.health = health or default_health(settings)
        self.version = version
        self.backoff = Backoff(backoff_initial, backoff_max)
        self.window = window
        self.welcome_timeout_s = welcome_timeout_s
        self.connected = asyncio.Event()
        self.controller_id: str | None = None
        self.connects = 0                    # successful connections so far
        self.last_error: str | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._send_lock = asyncio.Lock()
        self._replies: dict[str, asyncio.Future] = {}
        self._inflight: dict[str, int] = {}
        # Acked, not yet deleted from the outbox: the drain deletes them all in one transaction
        # (one fsync for a burst of acks; the reader never waits on the disk), and keeps them
        # while the disk refuses.
        self._acked: set[str] = set()
        self._closing = False
        self._heartbeat_s = settings.controller.heartbeat_s
        self._ssl: ssl.SSLContext | bool | None = None     # loaded by open()

    async def open(self) -> ssl.SSLContext | bool:
        """The TLS context (False for ws://), loaded once in a worker thread (it reads the CA
        file). `run()` calls it; call it first to see a bad CA file at once."""
        if self._ssl is None:
            self._ssl = await asyncio.to_thread(self._ssl_context)
        return self._ssl

    def _ssl_context(self) -> ssl.SSLContext | bool:
        if not self.url.startswith("wss:"):
            return False
        ctx = ssl.create_default_context()
        if self.settings.controller.ca_file:
            ctx.load_verify_locations(cafile=str(self.settings.controller.ca_file))
        return ctx

    # ---- public API ----

    async def run(self) -> None:
        """Keep the link up until close(). Never returns early; never raises for network trouble."""
        await self.open()
        async with aiohttp.ClientSession() as http:
            while not self._closing:
                try:
                    await self._connection(http)
                except asyncio.CancelledError:
                    raise
                except (TimeoutError, LinkError, aiohttp.ClientError, OSError) as exc:
                    self._note_error(exc)
                except Exception as exc:      # a bug must not end the terminal's link for good
                    log.exception("controller link failed unexpectedly")
                    self._note_error(exc)
                finally:
                    self._drop_connection_state()
                if self._closing:
                    break
                delay = self.backoff.next()
                log.info("reconnecting to %s in %.1f s (attempt %d)", self.url, delay, self.backoff.attempt)
                await asyncio.sleep(delay)

    async def close(self) -> None:
        """Idempotent: stop reconnecting and close the socket."""
        self._closing = True
        ws = self._ws
        if ws is not None and not ws.closed:
            with contextlib.suppress(Exception):
                await ws.close()

    async def send(self, msg: wire._Msg) -> None:
        """Send one message now; LinkDown when not connected."""
        ws = self._ws
        if ws is None or ws.closed or not self.connected.is_set():
            raise LinkDown("not connected to the controller")
        text = wire.encode(msg)
        async with self._send_lock:
            try:
                await ws.send_str(text)
            except (ConnectionError, aiohttp.ClientError, RuntimeError) as exc:
                raise LinkDown(f"send failed: {exc}") from None

    async def signal(self, session_id: str, to: str, description: dict, *, timeout: float = 15.0) -> dict:
        """Send a description to the session's peer and wait for its reply (offer -> answer)."""
        msg = wire.Signal(session_id=session_id, to=to, description=wire.Description(**description))
        fut: asyncio.Future = asyncio.get_running_loop().create_future()
        self._replies[msg.id] = fut
        try:
            await self.send(msg)
            reply: wire.RelayedSignal = await asyncio.wait_for(fut, timeout)
        finally:
            self._replies.pop(msg.id, None)
        return reply.description.model_dump()

    async def reply(self, to_msg: wire.RelayedSignal, description: dict) -> None:
        """Answer a peer's signal (e.g. the answer to an offer)."""
        await self.send(wire.Signal(session_id=to_msg.session_id, to=to_msg.from_, reply_to=to_msg.id,
                                    description=wire.Description(**description)))

    async def session_state(self, session_id: str, state: wire.SessionStateName,
                            error: str | None = None) -> None:
        """Best effort: a state change is not durable (the final report is)."""
        with contextlib.suppress(LinkDown):
            await self.send(wire.SessionState(session_id=session_id, state=state,
                                              error=error[:4000] if error else None))

    # ---- one connection ----

    async def _connection(self, http: aiohttp.ClientSession) -> None:
        tls = await self.open()
        token = await asyncio.to_thread(read_token, self.settings)
        try:
            ws = await http.ws_connect(self.url, headers={"Authorization": f"Bearer {token}"},
                                       ssl=tls, heartbeat=max(10.0, 3 * self._heartbeat_s),
                                       max_msg_size=wire.MAX_MESSAGE_BYTES, timeout=aiohttp.ClientWSTimeout(ws_close=5))
        except aiohttp.WSServerHandshakeError as exc:
            if exc.status in (401, 403):
                raise LinkRefused(f"controller refused the token ({exc.status})") from None
            raise LinkError(f"handshake failed: {exc.status} {exc.message}") from None
        self._ws = ws
        try:
            await ws.send_str(wire.encode(wire.Hello(terminal_id=self.settings.terminal_id,
                                                     agent_version=self.version,
                                                     capabilities=CAPABILITIES)))
            welcome = await asyncio.wait_for(self._expect_welcome(ws), self.welcome_timeout_s)
            self.controller_id = welcome.controller_id
            self._heartbeat_s = welcome.heartbeat_s or self._heartbeat_s
            self.connects += 1
            self.backoff.reset()
            self.connected.set()
            log.info("connected to controller %s at %s", welcome.controller_id, self.url)
            try:
                # The reader ends with the socket; the heartbeats and the drain go with it. A
                # failure of any of the three ends the connection (and is the reason given).
                async with asyncio.TaskGroup() as tg:
                    beat = tg.create_task(self._heartbeats(), name="link-heartbeats")
                    drain = tg.create_task(self._drain(), name="link-drain")
                    await tg.create_task(self._reader(ws), name="link-reader")
                    beat.cancel()
                    drain.cancel()
            except BaseExceptionGroup as group:
                raise group.exceptions[0] from None
            raise LinkDown(f"connection closed ({ws.close_code})")
        finally:
            self.connected.clear()
            if not ws.closed:
                with contextlib.suppress(Exception):
                    await ws.close()

    async def _expect_welcome(self, ws) -> wire.Welcome:
        msg = await ws.receive()
        if msg.type != aiohttp.WSMsgType.TEXT:
            raise LinkDown(f"closed before welcome ({ws.close_code})")
        try:
            m = wire.parse_controller_message(msg.data)
        except wire.WireError as exc:
            raise LinkError(f"bad welcome: {exc}") from None
        if isinstance(m, wire.Error):
            raise LinkRefused(f"controller refused: {m.code}: {m.message}")
        if not isinstance(m, wire.Welcome):
            raise LinkError(f"expected welcome, got {m.type}")
        if m.protocol != wire.PROTOCOL:
            raise LinkRefused(f"controller speaks {m.protocol}, this agent {wire.PROTOCOL}")
        return m

    async def _reader(self, ws) -> None:
        async for raw in ws:
            if raw.type != aiohttp.WSMsgType.TEXT:
                if raw.type == aiohttp.WSMsgType.ERROR:
                    log.warning("link error: %s", ws.exception())
                continue
            try:
                m = wire.parse_controller_message(raw.data)
            except wire.WireError as exc:
                log.warning("ignored a bad message from the controller: %s", exc)
                continue
            await self._dispatch(m)

    async def _dispatch(self, m) -> None:
        if isinstance(m, wire.Ack):
            self._inflight.pop(m.report_id, None)
            self._acked.add(m.report_id)
            self.outbox.changed.set()     # room in the window, and a report to delete
        elif isinstance(m, wire.RelayedSignal):
            fut = self._replies.get(m.reply_to) if m.reply_to else None
            if fut is not None:
                if not fut.done():
                    fut.set_result(m)
            else:
                await self._call(self.handler.on_signal(m), "signal")
        elif isinstance(m, wire.Command):
            await self._call(self.handler.on_command(m.command), m.command.name)
        elif isinstance(m, wire.Error):
            fut = self._replies.get(m.ref) if m.ref else None
            if fut is not None and not fut.done():
                fut.set_exception(SignalRejected(f"{m.code}: {m.message}"))
            log.warning("controller error %s: %s (about %s)", m.code, m.message, m.ref)
            if m.fatal:
                ws = self._ws
                if ws is not None:
                    await ws.close()
        elif isinstance(m, wire.Welcome):
            log.warning("unexpected second welcome ignored")

    async def _call(self, coro, what: str) -> None:
        try:
            await coro
        except Exception:
            log.exception("handler failed on %s", what)

    async def _heartbeats(self) -> None:
        while True:
            try:
                health = await self.health()
            except Exception as exc:
                health = {"ok": False, "error": str(exc)}
            sessions = []
            with contextlib.suppress(Exception):
                sessions = list(self.handler.running_sessions())[:64]
            try:
                await self.send(wire.Heartbeat(health=health_payload(health), sessions=sessions))
            except (LinkDown, ValueError, TypeError) as exc:   # health not JSON-able
                log.debug("heartbeat not sent: %s", exc)
            await asyncio.sleep(self._heartbeat_s)

    async def _drain(self) -> None:
        """Send unacknowledged reports in order, at most `window` in flight."""
        last_seq = 0
        read_retry = Backoff(*OUTBOX_RETRY_S, spread=(0.5, 1.0))
        while True:
            self.outbox.changed.clear()
            await self._delete_acked()
            room = self.window - len(self._inflight)
            try:
                entries = await self.outbox.pending(after_seq=last_seq, limit=room) if room > 0 else []
            except OutboxError as exc:
                log.error("cannot read the outbox: %s", exc)
                await asyncio.sleep(read_retry.next())
                continue
            read_retry.reset()
            sent = 0
            for e in entries:
                if e.seq:
                    last_seq = max(last_seq, e.seq)
                if e.report_id in self._inflight:
                    continue
                try:
                    kind = ReportKind(e.kind)
                    msg = wire.Report(report_id=e.report_id, kind=kind, session_id=e.session_id,
                                      body=BODIES[kind].model_validate(e.body), created_at=e.created_at)
                    if len(wire.encode(msg)) > wire.MAX_MESSAGE_BYTES:
                        raise ValueError(f"larger than {wire.MAX_MESSAGE_BYTES} bytes")
                except ValueError as exc:       # the controller would never take it: drop it
                    log.error("dropping report %s that cannot be sent: %s", e.report_id, exc)
                    with contextlib.suppress(OutboxError):
                        await self.outbox.ack(e.report_id)
                    continue
                await self.send(msg)
                self._inflight[e.report_id] = e.seq
                sent += 1
            if sent and len(entries) == room:
                continue                       # more may be waiting
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.outbox.changed.wait(), 5.0)

    async def _delete_acked(self) -> None:
        if not self._acked:
            return
        batch = list(self._acked)
        try:
            await self.outbox.ack_many(batch)
        except OutboxError as exc:
            # Stored by the controller but still in the outbox (e.g. disk full): deleted on a later
            # round; if the agent dies first they are resent and acked again (stored once).
            log.error("could not delete %d acked reports: %s", len(batch), exc)
            return
        self._acked.difference_update(batch)

    def _drop_connection_state(self) -> None:
        self._ws = None
        self._inflight.clear()
        for fut in self._replies.values():
            if not fut.done():
                fut.set_exception(LinkDown("connection to the controller lost"))
        self._replies.clear()

    def _note_error(self, exc: BaseException) -> None:
        text = f"{type(exc).__name__}: {exc}" if not isinstance(exc, LinkError) else str(exc)
        if text != self.last_error:
            log.warning("controller link: %s", text)
        self.last_error = text
