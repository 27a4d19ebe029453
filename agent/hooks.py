"""Endpoint hooks (rule 22): what the terminal does when the controller recommends a break for
technical reasons, announces a reconnect attempt, or the resumption - e.g. show or speak
"Connection to <terminal> lost - break recommended" and why, in Kazakh and Russian, on the room's
screen (the presiding judge declares the break; the controller's words name whose link failed and
give the detector's evidence; without them the terminal says it without the name).

Settings (`hooks:` in the agent's YAML): `on_break`, `on_reconnect`, `on_resume`, each either
- a command line, split like a shell would (shlex) but run WITHOUT a shell (argv), with the
  environment variables VKS_HEARING, VKS_EVENT (break | reconnect | resume), VKS_CAUSE,
  VKS_ATTEMPT, VKS_MESSAGE_KK and VKS_MESSAGE_RU added to the agent's own; or
- an http:// or https:// URL, POSTed the JSON {"event", "hearing_id", "cause", "attempt",
  "terminal_id", "message": {"kk", "ru"}, "at"}; any 2xx is success;
and `timeout_s` (default 10): a command still running then is killed, an HTTP call abandoned.

`Hooks.fire(...)` never blocks the event loop (a subprocess / an aiohttp call in a task) and
never raises: the outcome is a `HookResult` (logged; the daemon reports failures to the
controller).
"""
from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import os
import shlex
import time
from dataclasses import asdict, dataclass
from typing import Any, get_args

import aiohttp

from agent.settings import HookSettings
from contract import wire

log = logging.getLogger(__name__)

# The events the controller announces (wire `live_event` names).
EVENTS: tuple[str, ...] = get_args(wire.LiveEventName)

# What the room is told, in Kazakh and Russian.
MESSAGES: dict[str, tuple[str, str]] = {
    "break": ("Байланыс үзілді — үзіліс жариялау ұсынылады", "Связь потеряна — рекомендуется объявить перерыв"),
    "reconnect": ("Байланыс қалпына келтірілуде", "Восстановление связи"),
    "resume": ("Сот отырысы жалғасады", "Судебное заседание продолжается"),
}
# Output of a command kept in the result (the rest is dropped).
MAX_OUTPUT = 2000


@dataclass
class HookResult:
    """What a hook did: run or not, its kind, success, and what it said."""
    event: str
    hearing_id: int | None
    configured: bool                 # False: no hook set for this event (nothing done)
    kind: str | None = None          # command | http
    ok: bool = True
    error: str | None = None
    exit_code: int | None = None
    http_status: int | None = None
    duration_ms: float | None = None
    output: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def is_url(spec: str) -> bool:
    """Is the hook an HTTP call (else a command line)?"""
    return spec.startswith(("http://", "https://"))


def messages(event: str) -> tuple[str, str]:
    """The (Kazakh, Russian) words the room is shown for `event`."""
    return MESSAGES.get(event, MESSAGES["break"])


class Hooks:
    """The terminal's endpoint hooks; `fire()` runs one, `close()` releases the HTTP client."""

    def __init__(self, settings: HookSettings, *, terminal_id: str | None = None):
        self.settings = settings
        self.terminal_id = terminal_id
        self._http: aiohttp.ClientSession | None = None

    def spec(self, event: str) -> str | None:
        """The configured hook of `event` (None: none); ValueError for an unknown event."""
        if event not in EVENTS:
            raise ValueError(f"unknown hook event {event!r} (known: {', '.join(EVENTS)})")
        value = getattr(self.settings, f"on_{event}")
        return value.strip() if isinstance(value, str) and value.strip() else None

    async def fire(self, event: str, hearing_id: int | None, *, cause: str | None = None,
                   attempt: int | None = None, message_kk: str | None = None,
                   message_ru: str | None = None) -> HookResult:
        """Run the hook of `event`; never raises (but is cancellable)."""
        try:
            spec = self.spec(event)
        except ValueError as exc:
            return HookResult(event, hearing_id, False, ok=False, error=str(exc))
        if spec is None:
            return HookResult(event, hearing_id, False)
        kk, ru = messages(event)
        kk, ru = message_kk or kk, message_ru or ru
        started = time.monotonic()
        if is_url(spec):
            result = await self._http_call(spec, event, hearing_id, cause, attempt, kk, ru)
        else:
            result = await self._command(spec, event, hearing_id, cause, attempt, kk, ru)
        result.duration_ms = round((time.monotonic() - started) * 1000, 1)
        if result.ok:
            log.info("hook %s (hearing %s): %s ok in %.0f ms", event, hearing_id, result.kind, result.duration_ms)
        else:
            log.warning("hook %s (hearing %s) failed: %s", event, hearing_id, result.error)
        return result

    async def _command(self, spec: str, event: str, hearing_id, cause, attempt, kk: str, ru: str) -> HookResult:
        result = HookResult(event, hearing_id, True, kind="command")
        try:
            argv = shlex.split(spec)
        except ValueError as exc:
            result.ok, result.error = False, f"bad command line: {exc}"
            return result
        if not argv:
            result.ok, result.error = False, "empty command"
            return result
        env = dict(os.environ, VKS_HEARING="" if hearing_id is None else str(hearing_id), VKS_EVENT=event,
                   VKS_CAUSE=cause or "", VKS_ATTEMPT="" if attempt is None else str(attempt),
                   VKS_MESSAGE_KK=kk, VKS_MESSAGE_RU=ru)
        if self.terminal_id:
            env["VKS_TERMINAL"] = self.terminal_id
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv, env=env, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT, start_new_session=True)
        except OSError as exc:
            result.ok, result.error = False, f"cannot run {argv[0]!r}: {exc.strerror or exc}"
            return result
        try:
            out, _ = await asyncio.wait_for(proc.communicate(), self.settings.timeout_s)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, 9)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(proc.wait(), 5.0)
            result.ok, result.error = False, f"{argv[0]} did not finish within {self.settings.timeout_s:g} s (killed)"
            return result
        except asyncio.CancelledError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, 9)
            raise
        result.exit_code = proc.returncode
        result.output = (out or b"").decode("utf-8", "replace")[-MAX_OUTPUT:] or None
        if proc.returncode != 0:
            result.ok, result.error = False, f"{argv[0]} exited with {proc.returncode}"
        return result

    async def _http_call(self, url: str, event: str, hearing_id, cause, attempt, kk: str, ru: str) -> HookResult:
        result = HookResult(event, hearing_id, True, kind="http")
        payload = {"event": event, "hearing_id": hearing_id, "cause": cause, "attempt": attempt,
                   "terminal_id": self.terminal_id, "message": {"kk": kk, "ru": ru},
                   "at": dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")}
        try:
            if self._http is None or self._http.closed:
                self._http = aiohttp.ClientSession()
            timeout = aiohttp.ClientTimeout(total=self.settings.timeout_s)
            async with self._http.post(url, data=json.dumps(payload, ensure_ascii=False).encode("utf-8"),
                                       headers={"Content-Type": "application/json; charset=utf-8"},
                                       timeout=timeout) as resp:
                result.http_status = resp.status
                body = await resp.text(errors="replace")
                result.output = body[:MAX_OUTPUT] or None
                if not 200 <= resp.status < 300:
                    result.ok, result.error = False, f"POST {url} answered {resp.status}"
        except TimeoutError:
            result.ok, result.error = False, f"POST {url}: no answer within {self.settings.timeout_s:g} s"
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            result.ok, result.error = False, f"POST {url}: {type(exc).__name__}: {exc}"
        return result

    async def close(self) -> None:
        """Close the HTTP client (idempotent)."""
        if self._http is not None:
            await self._http.close()
            self._http = None
