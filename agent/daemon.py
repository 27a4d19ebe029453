"""`vks-agent run`: the terminal's service.

Holds the link to the controller (agent.link), runs the sessions the controller commands with the
session engine (agent.session: `run_caller` as caller, `answer_offer` as callee), and puts every
figure in the durable outbox (agent.outbox) before it is sent:

- per-second intervals while a session runs: kind "interval",
  report_id "<session>:<role>:i<n>", body {"role", "peer", "session_kind", "interval"}
- the final report: kind "session", report_id "<session>:<role>:final",
  body {"role", "peer", "session_kind", "report"}; for the caller `report` is the
  vks.test-report/1 dict (both directions); for the callee its own receive-side summary.
  A final report the contract refuses is not queued: the session is reported failed at once
  ("report refused by the contract: ..."), so the controller does not wait for it.

Every task it starts is tracked (contract.jobs): the link and the report writer, each session, each
hook. SIGTERM (or SIGINT): stop taking commands, let running sessions finish for up to
`stop_timeout_s` (default 10 s), cancel the rest (telling the controller, best effort), store what
is queued, close, exit 0. `close()` does the same and is idempotent.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
import time
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

import aiojobs
from pydantic import ValidationError

from agent import heap
from agent import metrics as agent_metrics
from agent.hooks import Hooks
from agent.link import Link, LinkError, LinkRefused
from agent.monitor import Monitor
from agent.outbox import Outbox, OutboxStorageError
from agent.settings import AgentSettings
from contract import jobs, wire
from contract.reports import BODIES, IntervalBody, ReportBody, SessionBody

if TYPE_CHECKING:
    from agent.session import PeerSession
from contract.vocab import ReportKind, SessionKind, SessionMedia, SessionRole

log = logging.getLogger(__name__)

# A session or hook that was cancelled gets this long to clean up (tell the controller, close
# its peer connection) before it is left behind.
CANCEL_TIMEOUT_S = 5.0
# On shutdown, what is measured gets this long to reach the outbox.
FLUSH_TIMEOUT_S = 5.0

QueuedReport = tuple[str, ReportKind, dict[str, Any], "str | None", float]


def _media(kind: SessionKind | str) -> SessionMedia | None:
    """What a commanded session sends: `session.media` (None), except monitoring during a hearing,
    which never takes the hearing's camera and microphone."""
    return SessionMedia.SYNTHETIC if kind == SessionKind.MONITOR else None


class ReportRefused(ValueError):
    """A report whose body the contract (contract.reports) refuses: it is not queued."""

    def __init__(self, report_id: str, exc: ValidationError):
        self.report_id = report_id
        # What is wrong, in one line: where and why, for each error.
        self.errors = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}"
                                for e in exc.errors(include_url=False))
        super().__init__(f"report {report_id} not queued: its body is not what the contract allows: "
                         f"{self.errors}")


class Daemon:
    """`vks-agent run`: the controller link, the commanded sessions, the outbox, the monitor."""

    def __init__(self, settings: AgentSettings, *, stop_timeout_s: float = 10.0,
                 offer_wait_s: float = 3.0, link_options: dict[str, Any] | None = None):
        self.settings = settings
        self.stop_timeout_s = stop_timeout_s
        self.offer_wait_s = offer_wait_s
        self.link_options = link_options or {}
        self.outbox = Outbox(settings.controller.outbox_path)
        self.link: Link | None = None
        self._stop = asyncio.Event()
        self._accepting = True
        self._closed = False
        # The daemon's own loops (link, report writer); the sessions; other work (hooks, stops).
        self._loops = jobs.scheduler("daemon loops", close_timeout=CANCEL_TIMEOUT_S)
        self._session_jobs = jobs.scheduler("sessions", close_timeout=CANCEL_TIMEOUT_S)
        self.jobs = jobs.scheduler("daemon", close_timeout=CANCEL_TIMEOUT_S)
        self._link_job: aiojobs.Job[None] | None = None
        self._writer_job: aiojobs.Job[None] | None = None
        self._sessions: dict[str, aiojobs.Job[None]] = {}
        self._commands: dict[str, wire.StartSession] = {}
        self._command_arrived = asyncio.Event()
        self._interval_seq: dict[tuple[str, str], int] = {}
        self._reports: asyncio.Queue[QueuedReport] = asyncio.Queue()
        # Prometheus metrics (agent/metrics.py); health checks, /metrics and systemd notify
        # (agent/monitor.py).
        self.metrics = agent_metrics.for_settings(settings)
        self.monitor: Monitor | None = None
        # Endpoint hooks fired on the controller's break / reconnect / resume (rule 22).
        self.hooks = Hooks(settings.hooks, terminal_id=settings.terminal_id)
        self._hook_order = asyncio.Lock()     # one hook at a time, in the order the commands came

    # ---- lifecycle ----

    def request_stop(self) -> None:
        """Stop (SIGTERM): `run()` shuts down and returns 0."""
        self._stop.set()

    def _loops_alive(self) -> bool:
        return all(j is not None and not j.closed for j in (self._link_job, self._writer_job))

    async def run(self) -> int:
        """Run until `request_stop()`, then shut down in order; 0."""
        await self.outbox.open()
        self.monitor = Monitor(self.settings, self.metrics, main_alive=self._loops_alive,
                               devices_in_use=self._devices_in_use)
        self.link = Link(self.settings, self.outbox, self, **{"health": self.monitor.health, **self.link_options})
        try:
            await self.link.open()
            self._link_job = await self._loops.spawn(self.link.run(), name="link")
            self._writer_job = await self._loops.spawn(self._report_writer(), name="report-writer")
            self.metrics.bind_outbox(self.outbox)
            self.metrics.bind_link(self.link)
            await self.monitor.start()
            log.info("vks-agent %s running: controller %s, outbox %s", self.settings.terminal_id,
                     self.link.url, self.settings.controller.outbox_path)
            await self._stop.wait()
        finally:
            await self.close()
        return 0

    async def close(self) -> None:
        """Stop taking work, let sessions finish within `stop_timeout_s`, cancel the rest, store
        what is queued, close the link and the outbox. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._accepting = False
        if self.monitor is not None:
            await self.monitor.stop()
        running = self.running_sessions()
        if running:
            log.info("stopping: waiting up to %.0f s for %d session(s)", self.stop_timeout_s, len(running))
        await self._session_jobs.wait_and_close(timeout=self.stop_timeout_s)
        await self.jobs.close()
        await self.hooks.close()
        # Everything measured is written to the outbox before we go.
        if self._writer_job is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._reports.join(), FLUSH_TIMEOUT_S)
            await jobs.stop(self._writer_job, CANCEL_TIMEOUT_S)
        if self.link is not None:
            await self.link.close()
        await self._loops.close()
        await self.outbox.close()
        log.info("vks-agent stopped")

    async def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        """Track other work (hooks, stops) until it ends or the daemon closes."""
        if self.jobs.closed:
            coro.close()
            return
        await self.jobs.spawn(coro, name=name)

    async def _start_session(self, session_id: str, coro: Coroutine[Any, Any, None], name: str) -> None:
        self._sessions = {sid: j for sid, j in self._sessions.items() if not j.closed}
        self._sessions[session_id] = await self._session_jobs.spawn(self._then_release(coro), name=name)

    @staticmethod
    async def _then_release(coro: Coroutine[Any, Any, None]) -> None:
        """The session, then the memory it freed back to the system (agent/heap.py)."""
        await coro
        heap.release_soon()

    # ---- reports ----

    def queue_report(self, kind: ReportKind, report_id: str, body: dict[str, Any],
                     session_id: str | None) -> ReportBody | None:
        """Hand a report to the writer, which puts it in the outbox (the link sends it from there).
        The body is read into its typed model first (contract.reports): what the contract refuses
        never reaches the outbox. Returns the typed body (the metrics read it), None if refused."""
        try:
            return self._queue_typed(kind, report_id, body, session_id)
        except ReportRefused as exc:
            log.error("%s", exc)
            return None

    def _queue_typed(self, kind: ReportKind, report_id: str, body: dict[str, Any],
                     session_id: str | None) -> ReportBody:
        """`queue_report`, raising ReportRefused when the contract refuses the body."""
        try:
            typed = BODIES[ReportKind(kind)].model_validate(body)
        except ValidationError as exc:
            raise ReportRefused(report_id, exc) from None
        self._reports.put_nowait((report_id, kind, typed.dump(), session_id, time.time()))
        return typed

    async def _finish(self, link: Link, session_id: str, role: SessionRole, peer: str, kind: SessionKind,
                      report: dict[str, Any], obs: agent_metrics.SessionObserver, outcome: str,
                      error: str | None = None) -> None:
        """Queue a side's final report and tell the controller the session finished. A report the
        contract refuses is not queued: the session failed, and the controller hears why at once
        (it would otherwise wait for a result that never comes)."""
        try:
            body = self._queue_typed(ReportKind.SESSION, f"{session_id}:{role}:final",
                                     {"role": role, "peer": peer, "session_kind": kind, "report": report},
                                     session_id)
        except ReportRefused as exc:
            log.error("session %s: %s", session_id, exc)
            obs.end("failed")
            await link.session_state(session_id, "failed", f"report refused by the contract: {exc.errors}")
            return
        obs.end(outcome, body.report if isinstance(body, SessionBody) else None)
        await link.session_state(session_id, "finished", error)

    async def _report_writer(self) -> None:
        # systemd's watchdog hears from this loop each time it comes round (idle or not); a
        # write that hangs silences it (contract/sdnotify.py).
        progress = self.monitor.watchdog.heartbeat("report-writer", 120.0) if self.monitor else None
        while True:
            if progress is not None:
                progress.beat()
            try:
                report_id, kind, body, session_id, created = await asyncio.wait_for(self._reports.get(), 5.0)
            except TimeoutError:
                continue
            try:
                await self.outbox.put(report_id, kind, body, session_id=session_id, created_at=created)
            except OutboxStorageError as exc:
                log.error("report %s not durable (kept in memory): %s", report_id, exc)
            except Exception:
                log.exception("could not queue report %s", report_id)
            finally:
                self._reports.task_done()

    def _interval_cb(self, session_id: str, role: SessionRole, peer: str, kind: str,
                     observer: agent_metrics.SessionObserver | None = None) -> Callable[[dict], None]:
        def on_interval(interval: dict) -> None:
            key = (session_id, role)
            n = self._interval_seq.get(key, 0) + 1
            self._interval_seq[key] = n
            body = self.queue_report(ReportKind.INTERVAL, f"{session_id}:{role}:i{n}",
                                     {"role": role, "peer": peer, "session_kind": kind, "interval": interval},
                                     session_id)
            if observer is not None and isinstance(body, IntervalBody) and body.interval is not None:
                observer.interval(body.interval)
        return on_interval

    # ---- link handler ----

    def _devices_in_use(self) -> bool:
        """Do this agent's sessions hold the camera and microphone now (`session.media: devices`)?"""
        return self.settings.session.media == SessionMedia.DEVICES and bool(self.running_sessions())

    def running_sessions(self) -> list[str]:
        """The sessions running now (the heartbeat carries them)."""
        return [sid for sid, job in self._sessions.items() if not job.closed]

    def _running(self, session_id: str) -> aiojobs.Job[None] | None:
        job = self._sessions.get(session_id)
        return job if job is not None and not job.closed else None

    @property
    def _link(self) -> Link:
        if self.link is None:
            raise LinkError("the daemon is not running (no controller link)")
        return self.link

    async def on_command(self, cmd: wire.StartSession | wire.StopSession | wire.LiveEvent) -> None:
        """A command from the controller: a hook to fire, a session to start or stop."""
        if isinstance(cmd, wire.LiveEvent):
            await self._spawn(self._fire_hook(cmd), f"hook-{cmd.name}")
            return
        if isinstance(cmd, wire.StopSession):
            job = self._running(cmd.session_id)
            if job is not None:
                log.info("session %s: stop requested (%s)", cmd.session_id, cmd.reason)
                await self._spawn(jobs.stop(job, CANCEL_TIMEOUT_S), f"stop-{cmd.session_id}")
            self._commands.pop(cmd.session_id, None)
            return
        if not self._accepting:
            await self._link.session_state(cmd.session_id, "rejected", "agent is shutting down")
            return
        if self._running(cmd.session_id) is not None:
            return      # the same command again (e.g. relayed twice): already on it
        if cmd.role == SessionRole.CALLER:
            await self._start_session(cmd.session_id, self._run_caller(cmd), f"caller-{cmd.session_id}")
        else:
            self._commands[cmd.session_id] = cmd
            self._command_arrived.set()
            self._command_arrived = asyncio.Event()
            await self._link.session_state(cmd.session_id, "starting")

    async def on_signal(self, msg: wire.RelayedSignal) -> None:
        """A peer's offer relayed by the controller: answer it in a session of our own."""
        if msg.description.type != "offer":
            log.warning("session %s: unexpected %s from %s ignored", msg.session_id,
                        msg.description.type, msg.from_)
            return
        if not self._accepting:
            await self._link.session_state(msg.session_id, "rejected", "agent is shutting down")
            return
        old = self._running(msg.session_id)
        if old is not None:       # a fresh offer for the same session: renegotiation after a break
            await self._spawn(jobs.stop(old, CANCEL_TIMEOUT_S), f"stop-{msg.session_id}")
        await self._start_session(msg.session_id, self._run_callee(msg), f"callee-{msg.session_id}")

    async def _fire_hook(self, cmd: wire.LiveEvent) -> None:
        """Run the endpoint hook of a break / reconnect / resume; a configured hook's outcome
        is reported (kind "health", body {"hook": {...}}) so that failures reach the record."""
        async with self._hook_order:
            result = await self.hooks.fire(cmd.name, cmd.hearing_id, cause=cmd.cause, attempt=cmd.attempt,
                                           message_kk=cmd.message_kk, message_ru=cmd.message_ru)
        if result.configured:
            self.queue_report(ReportKind.HEALTH, f"hook:{cmd.name}:{cmd.hearing_id}:{wire.new_id()}",
                              {"hook": result.to_dict()}, None)

    # ---- sessions ----

    async def _run_caller(self, cmd: wire.StartSession) -> None:
        from agent import session as engine
        sid = cmd.session_id
        link = self._link

        async def signal(offer: dict) -> dict:
            try:
                return await link.signal(sid, cmd.peer, offer,
                                         timeout=self.settings.session.connect_timeout_s)
            except (TimeoutError, LinkError) as exc:
                raise engine.SignalingError(f"signalling through the controller failed: {exc}") from None

        await link.session_state(sid, "connecting")
        obs = self.metrics.session(cmd.kind, SessionRole.CALLER, cmd.peer, cmd.profile)
        try:
            report = await engine.run_caller(
                self.settings, signal=signal, duration_s=cmd.duration_s, profile=cmd.profile,
                on_interval=self._interval_cb(sid, SessionRole.CALLER, cmd.peer, cmd.kind, obs),
                with_capacity=cmd.capacity and cmd.kind != SessionKind.MONITOR, media=_media(cmd.kind))
        except asyncio.CancelledError:
            obs.end("cancelled")
            await link.session_state(sid, "cancelled", self._cancel_reason())
            raise
        except Exception as exc:
            log.exception("session %s failed", sid)
            obs.end("failed")
            await link.session_state(sid, "failed", f"{type(exc).__name__}: {exc}")
            return
        finally:
            self._interval_seq.pop((sid, SessionRole.CALLER), None)
        await self._finish(link, sid, SessionRole.CALLER, cmd.peer, cmd.kind, report, obs,
                           "finished" if report.get("connected") else "not_connected", report.get("error"))

    def _cancel_reason(self) -> str:
        return "stopped" if self._accepting else "agent shutting down"

    async def _callee_cancelled(self, sid: str, session: PeerSession, obs: agent_metrics.SessionObserver) -> None:
        obs.end("cancelled")
        await session.close()
        await self._link.session_state(sid, "cancelled", self._cancel_reason())

    async def _wait_command(self, session_id: str) -> wire.StartSession | None:
        deadline = time.monotonic() + self.offer_wait_s
        while session_id not in self._commands:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._command_arrived.wait(), left)
        return self._commands[session_id]

    async def _run_callee(self, msg: wire.RelayedSignal) -> None:
        from agent import session as engine
        sid = msg.session_id
        cmd = await self._wait_command(sid)
        kind = cmd.kind if cmd else SessionKind.TEST
        profile = cmd.profile if cmd else None
        link = self._link
        obs = self.metrics.session(kind, SessionRole.CALLEE, msg.from_, profile)
        try:
            answer, session = await engine.answer_offer(
                self.settings, msg.description.model_dump(), profile=profile,
                on_interval=self._interval_cb(sid, SessionRole.CALLEE, msg.from_, kind, obs), media=_media(kind))
        except Exception as exc:
            obs.end("failed")
            log.warning("session %s: cannot answer the offer from %s: %s", sid, msg.from_, exc)
            await link.session_state(sid, "failed", f"cannot answer: {exc}")
            return
        try:
            try:
                await link.reply(msg, answer)
            except LinkError as exc:
                log.warning("session %s: answer not sent: %s", sid, exc)
                await self._callee_cancelled(sid, session, obs)     # nobody will call
                return
            await link.session_state(sid, "running")
            summary = await session.serve()
        except asyncio.CancelledError:
            await self._callee_cancelled(sid, session, obs)
            raise
        except Exception as exc:
            log.exception("session %s (callee) failed", sid)
            obs.end("failed")
            await session.close()
            await link.session_state(sid, "failed", f"{type(exc).__name__}: {exc}")
            return
        finally:
            self._commands.pop(sid, None)
        await self._finish(link, sid, SessionRole.CALLEE, msg.from_, kind, summary, obs,
                           "not_connected" if summary.get("error") else "finished")


# ---- command line ----

def cmd_run(settings: AgentSettings, args: argparse.Namespace) -> int:
    """`vks-agent run`: the daemon until SIGTERM; 0, or 2 for a configuration the controller refuses."""
    if not settings.controller.url:
        print("vks-agent run: controller.url is not set in the settings", file=sys.stderr)
        return 2
    try:
        return asyncio.run(_main(settings, getattr(args, "stop_timeout", 10.0)))
    except LinkRefused as exc:
        print(f"vks-agent run: {exc}", file=sys.stderr)
        return 2


async def _main(settings: AgentSettings, stop_timeout_s: float) -> int:
    daemon = Daemon(settings, stop_timeout_s=stop_timeout_s)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, daemon.request_stop)
    return await daemon.run()
