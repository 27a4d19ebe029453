"""What the hub's parts share: an agent's connection, the hub's options and counters, and the
listeners it tells what happened (live monitoring, the metrics)."""
from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from aiohttp import web

from contract import wire

CLOSE_REPLACED = 4000
CLOSE_POLICY = 1008
CLOSE_GOING_AWAY = 1001
# Database work slower than this is logged (it delays acks).
SLOW_S = 0.5


@dataclass(frozen=True)
class HubOptions:
    """The hub's timings and limits."""
    heartbeat_s: float = 5.0
    lease_s: float = 30.0               # presence lease, refreshed every lease_s / 3
    hello_timeout_s: float = 10.0
    # Reports stored in one transaction. A batch is what arrived while the previous one was stored:
    # under a heavy load it grows, and its cost per report shrinks (issue 15: at 500 the writer, one
    # task among thousands of connections' tasks, fell behind 10,000 agents and the queue grew by
    # gigabytes).
    batch_max: int = 5000
    # Reports received but not yet stored and acked, at most. Past it a connection's next message is
    # not read until the writer catches up: the agents' reports wait in their outboxes and the TCP
    # buffers (their acks come later), instead of in the controller's memory. Two batches' worth: at
    # 10,000 agents on SQLite 20,000 held 681 MB and 10,000 628 MB for the same throughput, with no
    # connection lost.
    queue_max: int = 10000
    batch_wait_s: float = 0.01          # gather a batch this long when the queue is empty
    max_bad_messages: int = 20          # then the connection is closed
    max_message_bytes: int = wire.MAX_MESSAGE_BYTES
    orphan_grace_s: float = 10.0        # a reconnected caller's lost sessions fail after this
    token_check_s: float = 5.0          # revoked or expired tokens close their connection within this
    max_handshakes: int = 256           # connections between request and registration; more: 503 busy


@dataclass
class HubStats:
    """The hub's counters (exposed by controller.metrics)."""
    connections_total: int = 0
    auth_failures_total: int = 0
    rejected_messages_total: int = 0
    reports_stored_total: int = 0
    report_batches_total: int = 0
    store_errors_total: int = 0
    relayed_out_total: int = 0
    relayed_in_total: int = 0
    busy_refusals_total: int = 0        # connections refused 503 busy (max_handshakes)
    backpressure_waits_total: int = 0   # reads held back because queue_max reports were waiting


class LiveListener(Protocol):
    """Live monitoring (controller.live.intake.LiveIntake): told at once, synchronously."""

    def on_reports(self, items: list[tuple[str, Any]]) -> None:
        """The reports of a committed batch, [(terminal_id, wire.Report)]."""

    def on_session_ended(self, session_id: str, outcome: str, error: str | None = None) -> None:
        """A session finished or failed."""


class HubMetrics(Protocol):
    """The metrics the hub feeds (controller.metrics.HubObserver); its methods never raise."""

    def reports_stored(self, reports: list, duplicates: int | None = None) -> None:
        """A batch of reports committed, [(terminal_id, wire.Report)]."""

    def session_commanded(self, kind: str, outcome: str) -> None:
        """A session was commanded (started) or could not be (unavailable)."""

    def session_ended(self, kind: str | None, outcome: str) -> None:
        """A session ended: finished, failed or stopped."""


@dataclass(eq=False)
class AgentConn:
    """One agent's WebSocket, what it said last, and its send lock."""
    terminal_id: str
    ws: web.WebSocketResponse
    remote: str | None
    agent_version: str
    connected_at: float = field(default_factory=time.time)
    last_seen: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))
    health: Any = None
    health_written: Any = None
    sessions_checked: bool = False
    sessions: list[str] = field(default_factory=list)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    token_sha256: str | None = None      # the token it authenticated with (revocation closes it)
    capabilities: frozenset[str] = frozenset()   # what its hello announced (e.g. "capacity")

    async def send(self, msg: wire._Msg | str) -> bool:
        """Send a message; False when the socket is closed or breaks."""
        text = msg if isinstance(msg, str) else wire.encode(msg)
        if self.ws.closed:
            return False
        async with self.lock:
            try:
                await self.ws.send_str(text)
                return True
            except (ConnectionError, RuntimeError):
                return False


async def close_ws(ws: web.WebSocketResponse, code: int, message: bytes) -> None:
    """Close a socket, giving up after 2 s; never raises."""
    with contextlib.suppress(Exception):
        await asyncio.wait_for(ws.close(code=code, message=message), 2.0)


def json_error(status: int, code: str, message: str) -> web.Response:
    """An HTTP error before the upgrade, as JSON."""
    return web.json_response({"error": code, "message": message}, status=status)
