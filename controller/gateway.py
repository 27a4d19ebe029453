"""The seam between the controller's core (scheduler, checks) and the agents.

The agent-facing side (controller.hub) implements `AgentGateway` and `Messenger`; the app
holds the one in use under `app[GATEWAY_KEY]` (controller.app). Results come
back by the hub calling `await results.on_session_result(session_id, report)`
or `await results.on_session_failed(session_id, error)` on the
`SessionResults` object in `app[RESULTS_KEY]` (controller.checks.CheckService).
"""
from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from contract import wire


class AgentUnavailable(Exception):
    """The terminal is not connected (to any controller)."""


@runtime_checkable
class AgentGateway(Protocol):
    """What commands sessions between two terminals (controller.hub.Hub, or OfflineGateway)."""

    async def start_session(self, *, session_id: str, caller: str, callee: str, kind: str,
                            profile: str, duration_s: float, capacity: bool = False) -> None:
        """Command `caller` to run a session of `kind` ("test" | "preconnect" |
        "monitor") with `callee`; `capacity`: and ramp each direction after the media (never
        with "monitor": ValueError). Returns once the command is accepted; the
        report arrives later. Raises AgentUnavailable."""
        ...

    async def stop_session(self, session_id: str) -> None: ...

    def online(self) -> set[str]:
        """Terminal ids connected to this controller."""
        ...


class Messenger(Protocol):
    """What sends a message to a terminal wherever it is connected (controller.hub.Hub)."""

    async def deliver(self, terminal_id: str, msg: wire.Command) -> None:
        """Send `msg` to the terminal. Raises AgentUnavailable."""
        ...


@runtime_checkable
class SessionResults(Protocol):
    """What the hub hands a session's outcome to (controller.checks.CheckService)."""

    async def on_session_result(self, session_id: str, report: Any) -> None:
        """The caller's final session report."""

    async def on_session_failed(self, session_id: str, error: str) -> None:
        """The session failed (an agent lost, refused, or restarted)."""


class OfflineGateway:
    """The default until a hub is wired in: every terminal is unavailable."""

    async def start_session(self, *, session_id: str, caller: str, callee: str, kind: str,
                            profile: str, duration_s: float, capacity: bool = False) -> None:
        raise AgentUnavailable(f"no agent gateway: cannot reach {caller!r} (no hub is running)")

    async def stop_session(self, session_id: str) -> None:
        return None

    def online(self) -> set[str]:
        return set()
