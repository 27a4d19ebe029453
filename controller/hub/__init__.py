"""The controller's side of the agent link: one WebSocket per terminal (`GET /api/v1/agent/ws`).

- Authentication: `Authorization: Bearer <terminal token>` checked against `terminal_tokens`
  (sha256) before the upgrade; a bad token gets 401 JSON and a log line (never the token).
- The first message must be `hello` naming the token's own terminal and speaking `vks.wire/1`;
  the hub answers `welcome`. One connection per terminal: a new one replaces the old (closed with
  code 4000), on this controller or - through the relay - on another.
- Heartbeats update last seen and health (kept in memory, written in batches with the lease).
- Reports are stored by one writer task in batches; the `ack` of each is sent only after its batch
  committed (`writer`). A caller's final session report is then handed to
  `results.on_session_result(session_id, report)` once (`processed_at`).
- An agent may only speak for itself: a message naming another terminal, a signal for a session
  it is not part of, or to a terminal that is not its peer, is refused with an `error`
  ("forbidden") and not acted on. A report naming a session is stored only from that session's
  caller or callee, in its own place; another gets "forbidden" and an ack (never stored: the
  agent lets it go), counted and logged once a minute (controller.agent_writes, issue 11).
- `Hub` (`core`) implements controller.gateway's `AgentGateway` (`start_session` commands both
  agents, callee first; `stop_session`; `online()`: terminals with a live lease on any controller,
  refreshed every few seconds (`presence`), plus the ones connected here) and `Messenger`
  (`deliver`). It is built with everything it tells: the results, live monitoring, the metrics.
"""
from controller.hub.base import AgentConn, HubMetrics, HubOptions, HubStats, LiveListener
from controller.hub.core import Hub

__all__ = ["AgentConn", "Hub", "HubMetrics", "HubOptions", "HubStats", "LiveListener"]
