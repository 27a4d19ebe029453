"""`vks-agent run`: the terminal's service.

Holds the link to the controller (agent.link), runs the sessions the controller commands with the
session engine (agent.session: `run_caller` as caller, `answer_offer` as callee), and puts every
figure in the durable outbox (agent.outbox) before it is sent:

- per-second intervals while a session runs: kind "interval",
  report_id "<session>:<role>:i<n>", body {"role", "peer", "session_kind", "interval"}
- the final report: kind "session", report_id "<session>:<role>:final",
  body {"role", "peer", "session_kind", "report"}; for the caller `report` is the
  vks.test-report/1 dict (both directions); for the callee its own receive-side summary.

SIGTERM (or SIGINT): stop taking commands, let running sessions finish for up to
`stop_timeout_s` (default 10 s), cancel the rest (telling the controller, best effort), store what
is queued, close, exit 0.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
import time
from typing import Any

from agent import metrics as agent_metrics
from agent.hooks import Hooks
from agent.link import Link, LinkError, LinkRefused
from agent.outbox import Outbox, OutboxStorageError
from agent.settings import AgentSettings
from contract import wire

log = logging.getLogger(__name__)


class Daemon:
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
        self._sessions: dict[str, asyncio.Task] = {}
        self._tasks: set[asyncio.Task] = set()
        self._commands: dict[str, wire.StartSession] = {}
        self._command_arrived = asyncio.Event()
        self._interval_seq: dict[tuple[str, str], int] = {}
        self._reports: asyncio.Queue = asyncio.Queue()
        # Prometheus metrics, health checks, systemd notify (agent/metrics.py).
        self.metrics = agent_metrics.for_settings(settings)
        self.monitor: agent_metrics.Monitor | None = None
        # Endpoint hooks fired on the controller's break / reconnect / resume (rule 22).
        self.hooks = Hooks(settings.hooks, terminal_id=settings.terminal_id)
        self._hook_order = asyncio.Lock()     # one hook at a time, in the order the commands came

    # ---- lifecycle ----

    def request_stop(self) -> None:
        self._stop.set()

    async def run(self) -> int:
        await self.outbox.open()
        self.monitor = agent_metrics.Monitor(
            self.settings, self.metrics, main_alive=lambda: not (link_task.done() or writer.done()))
        self.link = Link(self.settings, self.outbox, self, **{"health": self.monitor.health, **self.link_options})
        link_task = asyncio.create_task(self.link.run(), name="link")
        writer = asyncio.create_task(self._report_writer(), name="report-writer")
        self.metrics.bind_outbox(self.outbox)
        self.metrics.bind_link(self.link)
        await self.monitor.start()
        log.info("vks-agent %s running: controller %s, outbox %s", self.settings.terminal_id,
                 self.link.url, self.settings.controller.outbox_path)
        try:
            await self._stop.wait()
        finally:
            await self._shutdown(link_task, writer)
        return 0

    async def _shutdown(self, link_task: asyncio.Task, writer: asyncio.Task) -> None:
        self._accepting = False
        if self.monitor is not None:
            await self.monitor.stop()
        running = [t for t in self._sessions.values() if not t.done()]
        if running:
            log.info("stopping: waiting up to %.0f s for %d session(s)", self.stop_timeout_s, len(running))
            _, pending = await asyncio.wait(running, timeout=self.stop_timeout_s)
            for t in pending:
                t.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.hooks.close()
        # Everything measured is written to the outbox before we go.
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._reports.join(), 5.0)
        writer.cancel()
        await asyncio.gather(writer, return_exceptions=True)
        if self.link is not None:
            await self.link.close()
        link_task.cancel()
        await asyncio.gather(link_task, return_exceptions=True)
        await self.outbox.close()
        log.info("vks-agent stopped")

    def _spawn(self, coro, name: str) -> asyncio.Task:
        t = asyncio.create_task(coro, name=name)
        self._tasks.add(t)
        t.add_done_callback(self._tasks.discard)
        return t

    # ---- reports ----

    def queue_report(self, kind: str, report_id: str, body: dict, session_id: str | None) -> None:
        self._reports.put_nowait((report_id, kind, body, session_id, time.time()))

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

    def _interval_cb(self, session_id: str, role: str, peer: str, kind: str,
                     observer: agent_metrics.SessionObserver | None = None):
        def on_interval(interval: dict) -> None:
            if observer is not None:
                observer.interval(interval)
            key = (session_id, role)
            n = self._interval_seq.get(key, 0) + 1
            self._interval_seq[key] = n
            self.queue_report("interval", f"{session_id}:{role}:i{n}",
                              {"role": role, "peer": peer, "session_kind": kind, "interval": interval},
                              session_id)
        return on_interval

    # ---- link handler ----

    def running_sessions(self) -> list[str]:
        return [sid for sid, t in self._sessions.items() if not t.done()]

    async def on_command(self, cmd) -> None:
        if isinstance(cmd, wire.LiveEvent):
            self._spawn(self._fire_hook(cmd), f"hook-{cmd.name}")
            return
        if isinstance(cmd, wire.StopSession):
            t = self._sessions.get(cmd.session_id)
            if t is not None and not t.done():
                log.info("session %s: stop requested (%s)", cmd.session_id, cmd.reason)
                t.cancel()
            self._commands.pop(cmd.session_id, None)
            return
        if not self._accepting:
            await self.link.session_state(cmd.session_id, "rejected", "agent is shutting down")
            return
        running = self._sessions.get(cmd.session_id)
        if running is not None and not running.done():
            return      # the same command again (e.g. relayed twice): already on it
        if cmd.role == "caller":
            self._sessions[cmd.session_id] = self._spawn(self._run_caller(cmd), f"caller-{cmd.session_id}")
        else:
            self._commands[cmd.session_id] = cmd
            self._command_arrived.set()
            self._command_arrived = asyncio.Event()
            await self.link.session_state(cmd.session_id, "starting")

    async def on_signal(self, msg: wire.RelayedSignal) -> None:
        if msg.description.type != "offer":
            log.warning("session %s: unexpected %s from %s ignored", msg.session_id,
                        msg.description.type, msg.from_)
            return
        if not self._accepting:
            await self.link.session_state(msg.session_id, "rejected", "agent is shutting down")
            return
        old = self._sessions.get(msg.session_id)
        if old is not None and not old.done():
            old.cancel()      # a fresh offer for the same session: renegotiation after a break
        self._sessions[msg.session_id] = self._spawn(self._run_callee(msg), f"callee-{msg.session_id}")

    async def _fire_hook(self, cmd: wire.LiveEvent) -> None:
        """Run the endpoint hook of a break / reconnect / resume; a configured hook's outcome
        is reported (kind "health", body {"hook": {...}}) so that failures reach the record."""
        async with self._hook_order:
            result = await self.hooks.fire(cmd.name, cmd.hearing_id, cause=cmd.cause, attempt=cmd.attempt,
                                           message_kk=cmd.message_kk, message_ru=cmd.message_ru)
        if result.configured:
            self.queue_report("health", f"hook:{cmd.name}:{cmd.hearing_id}:{wire.new_id()}",
                              {"hook": result.to_dict()}, None)

    # ---- sessions ----

    async def _run_caller(self, cmd: wire.StartSession) -> None:
        from agent import session as engine
        sid = cmd.session_id
        link = self.link

        async def signal(offer: dict) -> dict:
            try:
                return await link.signal(sid, cmd.peer, offer,
                                         timeout=self.settings.session.connect_timeout_s)
            except (TimeoutError, LinkError) as exc:
                raise engine.SignalingError(f"signalling through the controller failed: {exc}") from None

        await link.session_state(sid, "connecting")
        obs = self.metrics.session(cmd.kind, "caller", cmd.peer, cmd.profile)
        try:
            report = await engine.run_caller(
                self.settings, signal=signal, duration_s=cmd.duration_s, profile=cmd.profile,
                on_interval=self._interval_cb(sid, "caller", cmd.peer, cmd.kind, obs))
        except asyncio.CancelledError:
            obs.end("cancelled")
            await link.session_state(sid, "cancelled", "stopped" if self._accepting else "agent shutting down")
            raise
        except Exception as exc:
            log.exception("session %s failed", sid)
            obs.end("failed")
            await link.session_state(sid, "failed", f"{type(exc).__name__}: {exc}")
            return
        finally:
            self._interval_seq.pop((sid, "caller"), None)
        obs.end("finished" if report.get("connected") else "not_connected", report)
        self.queue_report("session", f"{sid}:caller:final",
                          {"role": "caller", "peer": cmd.peer, "session_kind": cmd.kind, "report": report},
                          sid)
        await link.session_state(sid, "finished", report.get("error"))

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
        kind = cmd.kind if cmd else "test"
        link = self.link
        obs = self.metrics.session(kind, "callee", msg.from_, cmd.profile if cmd else None)
        try:
            answer, task = await engine.answer_offer(
                self.settings, msg.description.model_dump(), profile=cmd.profile if cmd else None,
                on_interval=self._interval_cb(sid, "callee", msg.from_, kind, obs))
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
                task.cancel()
            await link.session_state(sid, "running")
            summary = await task
        except asyncio.CancelledError:
            obs.end("cancelled")
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await link.session_state(sid, "cancelled", "stopped" if self._accepting else "agent shutting down")
            raise
        except Exception as exc:
            log.exception("session %s (callee) failed", sid)
            obs.end("failed")
            await link.session_state(sid, "failed", f"{type(exc).__name__}: {exc}")
            return
        finally:
            self._commands.pop(sid, None)
        obs.end("not_connected" if isinstance(summary, dict) and summary.get("error") else "finished",
                summary if isinstance(summary, dict) else None)
        self.queue_report("session", f"{sid}:callee:final",
                          {"role": "callee", "peer": msg.from_, "session_kind": kind,
                           "report": summary if isinstance(summary, dict) else {"summary": summary}},
                          sid)
        await link.session_state(sid, "finished")


# ---- command line ----

def add_run_parser(subparsers) -> argparse.ArgumentParser:
    """`vks-agent run [--config FILE]`, added to agent/cli.py's subcommands."""
    p = subparsers.add_parser("run", help="the terminal's service: connect to the controller and "
                                          "run the sessions it commands")
    p.add_argument("--config", default=argparse.SUPPRESS,
                   help="agent settings (YAML); default $VKS_AGENT_CONFIG or built-in")
    p.add_argument("--stop-timeout", type=float, default=10.0,
                   help="on SIGTERM, seconds to let running sessions finish (default 10)")
    p.set_defaults(func=cmd_run)
    return p


def cmd_run(settings: AgentSettings, args: argparse.Namespace) -> int:
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
