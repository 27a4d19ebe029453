"""Live monitoring's I/O (rule 22): the loop that steps every flow, the database writes, the
monitoring sessions and the commands to the agents. What to do is `controller.live.machine`'s;
this module does it.

- The loop wakes every `tick_s` or when the intake has news (`LiveIntake.kick`), takes the hook
  failures and ended sessions the hub handed over, steps each flow and carries out its effects in
  order (each `Commit` is one transaction: break, events and state row together, so any reader of
  the database sees a transition whole), then writes the interval rows and the flows whose stats
  changed.
- Every `reconcile_s` it looks at the database: hearings to start monitoring (in progress, or with
  a passed pre-connect check), flows to end (hearing held, cancelled, postponed or deleted, past
  its planned end, or an institution suspended - rule 24). A constant number of queries per pass,
  however many hearings.
- State per hearing is kept in `live_state` / `live_breaks` / `live_intervals` and reloaded at
  start, so a restarted controller carries on (the agents keep their monitoring session and resend
  what they measured meanwhile).
"""
from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

from sqlalchemy import and_, exists, select
from sqlalchemy.ext.asyncio import AsyncConnection

from contract import wire
from contract.jobs import scheduler
from contract.vocab import AgentDrop, CheckKind, CheckStatus, EscalationCause, HearingStatus, LiveState, SessionKind
from controller import rules
from controller.detector import Detector
from controller.gateway import AgentGateway, AgentUnavailable, Messenger
from controller.live.intake import LiveIntake
from controller.live.machine import (
    ACTIVE,
    Again,
    Commit,
    Count,
    Decide,
    Effect,
    Escalate,
    Event,
    Flow,
    LockHearing,
    MarkEnded,
    OpenBreak,
    Save,
    StartSession,
    StopSession,
    Tell,
    UpdateBreak,
    Write,
    to_dt,
    to_ts,
)
from controller.settings import LiveSettings
from controller.store import events as events_repo
from controller.store import hearings as hearings_repo
from controller.store import live as store
from controller.store import live_participants as lp
from controller.store import suspensions as susp_repo
from controller.store.db import Database
from controller.store.schema import checks, hearings

log = logging.getLogger(__name__)

# How long after a hearing ended (held or cancelled) its terminals' failed hooks still reach its
# record: a hook fired on the break or the end that closed it is reported a little later - after
# the hook's own run (up to its timeout), the agent's report batching, or a reconnect that
# resends its outbox. Past that, a terminal cannot write into a hearing's closed record.
HOOK_GRACE_S = 15 * 60.0


class VerdictRefresher(Protocol):
    """What recomputes a hearing's stored verdict (controller.checks.CheckService)."""

    async def refresh_verdict(self, conn: AsyncConnection, hearing_id: int, now: dt.datetime) -> Any:
        """Recompute and store the hearing's verdict inside the caller's transaction."""


class LiveCounters(Protocol):
    """The metrics live monitoring counts (controller.metrics.LiveMetrics)."""

    def count_break(self, reason: str) -> None:
        """One more break, by cause."""

    def count_resume(self) -> None:
        """One more resumption."""


# Open (or find) a hearing's escalation: (hearing_id, cause, detail) -> its id.
Escalator = Callable[..., Awaitable[Any]]


class LiveService:
    """Runs the flows of `intake` against the database, the gateway and the agents."""

    def __init__(self, db: Database, settings: LiveSettings, intake: LiveIntake, *,
                 gateway: AgentGateway, messenger: Messenger | None = None,
                 results: VerdictRefresher | None = None, escalate: Escalator | None = None,
                 metrics: LiveCounters | None = None):
        self.db = db
        self.s = settings
        self.intake = intake
        self.machine = intake.machine
        self.gateway = gateway
        self.messenger = messenger
        self.results = results
        self.escalate = escalate
        self.metrics = metrics
        self.flows = intake.flows
        self.lock = asyncio.Lock()        # one transition of a flow at a time (loop and API)
        self._jobs = scheduler("live", close_timeout=5.0)

    def now(self) -> float:
        """The controller's clock in epoch seconds."""
        return self.intake.now()

    # ---- lifecycle -------------------------------------------------------------------------------
    async def start(self) -> None:
        """Reload the flows that were going on and start the loop. The intake's thresholds are the
        app's quality model (`LiveIntake.use`, given before this starts)."""
        if self.intake.thresholds is None:
            raise RuntimeError("cannot start live monitoring: no thresholds to judge a second by "
                               "(the quality model is not loaded)")
        now = self.now()
        async with self.db.read() as conn:
            rows = await store.active_states(conn)
            heads = await store.hearing_heads(conn, [r["hearing_id"] for r in rows])
            others = [r for r in await lp.active(conn) if r["hearing_id"] in heads]
            break_ids = [r["break_id"] for r in rows + others if r["break_id"]]
            open_breaks = await store.breaks_by_id(conn, break_ids)
            decided = await lp.decisions(conn, break_ids)
            names = await lp.terminal_names(conn, [r["callee"] for r in rows + others])
        for r in rows + others:
            f = Flow(r["hearing_id"], LiveState(r["state"]), to_ts(r["since"]) or now, r["caller"], r["callee"],
                     Detector.restore(self.machine.params, r["detector"]), session_id=r["session_id"],
                     break_id=r["break_id"], attempt=r["attempt"], next_at=to_ts(r["next_at"]),
                     verdict=r["verdict"], stats=dict(r["stats"] or {}), started_at=to_ts(r["started_at"]) or now,
                     end_at=self.machine.end_at(heads[r["hearing_id"]]["monitor_end"].timestamp()),
                     callee_name=names.get(r["callee"]), primary="terminal_id" not in r)
            b = open_breaks.get(f.break_id) if f.break_id is not None else None
            if b is not None:
                f.break_started, f.break_cause = to_ts(b["started_at"]), b["cause"]
                f.ready_at, f.escalated = to_ts(b["ready_at"]), b["escalated_at"] is not None
                f.decision = decided[b["id"]]["decision"] if b["id"] in decided else None
            self.machine.carry_on(f, now)
            self.intake.add(f)
        if rows:
            log.info("live: carrying on with %d hearing(s) after a restart", len(rows))
        await self._jobs.spawn(self._loop(), name="live")

    async def close(self) -> None:
        """Stop the loop (cancelled and awaited) and write what the intake still holds."""
        await self._jobs.close()
        with contextlib.suppress(Exception):
            await self._flush()

    # ---- the loop ----------------------------------------------------------------------------------
    async def _loop(self) -> None:
        next_reconcile = 0.0
        kick = self.intake.kick
        while True:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(kick.wait(), self.s.tick_s)
            kick.clear()
            try:
                async with self.lock:
                    now = self.now()
                    if now >= next_reconcile:
                        next_reconcile = now + self.s.reconcile_s
                        await self.reconcile(now)
                    await self._take_hook_reports(now)
                    ended, self.intake.ended = self.intake.ended, []
                    for f in self.intake.all():
                        if f.session_id in ended:
                            self.machine.session_lost(f, now)
                        await self._run(f, self.machine.step(f, now))
                    await self._flush()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("live: step failed")
                await asyncio.sleep(1.0)

    async def _flush(self) -> None:
        rows, self.intake.rows = self.intake.rows, []
        dirty = [f for f in self.intake.all() if f.dirty]
        if not rows and not dirty:
            return
        try:
            async with self.db.transaction() as conn:
                await store.insert_intervals(conn, rows)
                for f in dirty:
                    f.dirty = False
                    await update_state(conn, f, stats=f.stats, detector=f.detector.snapshot(),
                                       verdict=f.verdict, updated_at=to_dt(self.now()))
        except Exception:
            self.intake.rows = rows + self.intake.rows
            raise

    # ---- carrying out the machine's effects ----------------------------------------------------------
    async def _run(self, f: Flow, effects: Sequence[Effect]) -> None:
        for e in effects:
            if isinstance(e, StartSession):
                await self._start_session(f, e)
            elif isinstance(e, StopSession):
                await self._stop_session(e.session_id)
            elif isinstance(e, Commit):
                async with self.db.transaction() as conn:
                    for w in e.writes:
                        await self._write(conn, f, w, e.at)
            elif isinstance(e, Tell):
                await self._tell(f, e)
            elif isinstance(e, Escalate):
                await self._escalate(f, e)
            elif isinstance(e, Count):
                self._count(e)
            elif isinstance(e, Again):
                await self._run(f, self.machine.step(f, self.now()))

    async def _write(self, conn: AsyncConnection, f: Flow, w: Write, at: float) -> None:
        if isinstance(w, LockHearing):
            await hearings_repo.get_hearing(conn, f.hearing_id, for_update=True)
        elif isinstance(w, OpenBreak):
            f.break_id = await store.insert_break(conn, {"hearing_id": f.hearing_id, "cause": w.cause,
                                                         "evidence": w.evidence, "started_at": to_dt(at)})
            await events_repo.append(conn, f.hearing_id, "break", to_dt(at),
                                     {"break_id": f.break_id, "cause": w.cause, **w.evidence})
            log.warning("live: hearing %s: break (%s: %s by the %s)", f.hearing_id, w.cause,
                        w.evidence.get("kind"), w.evidence.get("role"))
        elif isinstance(w, UpdateBreak):
            if w.break_id is not None:
                await store.update_break(conn, w.break_id, **w.values)
        elif isinstance(w, Event):
            await events_repo.append(conn, f.hearing_id, w.kind, to_dt(at), w.detail)
        elif isinstance(w, Decide):
            await lp.decide(conn, w.break_id, f.hearing_id, w.decision, to_dt(at), w.by)
        elif isinstance(w, Save):
            await self._save(conn, f, at, refresh=w.refresh)
        elif isinstance(w, MarkEnded):
            await update_state(conn, f, ended_at=to_dt(at))

    async def _save(self, conn: AsyncConnection, f: Flow, now: float, refresh: bool = False) -> None:
        f.dirty = False
        await update_state(conn, f, state=f.state, since=to_dt(f.since), verdict=f.verdict,
                           session_id=f.session_id, session_started_at=to_dt(now) if f.session_id else None,
                           break_id=f.break_id, attempt=f.attempt, next_at=to_dt(f.next_at),
                           detector=f.detector.snapshot(), stats=f.stats, updated_at=to_dt(now))
        if refresh and self.results is not None:
            # In a savepoint: on PostgreSQL a failed statement aborts the whole transaction, and
            # the verdict is not worth losing the transition for.
            try:
                async with conn.begin_nested():
                    await self.results.refresh_verdict(conn, f.hearing_id, to_dt(now))
            except Exception:
                log.exception("live: hearing %s: verdict not refreshed", f.hearing_id)

    async def _start_session(self, f: Flow, e: StartSession) -> None:
        self.intake.sessions[e.session_id] = f
        try:
            await self.gateway.start_session(session_id=e.session_id, caller=f.caller, callee=f.callee,
                                             kind=SessionKind.MONITOR, profile=self.s.profile, duration_s=e.duration_s)
        except Exception as exc:
            log.warning("live: hearing %s: monitoring session not started: %s", f.hearing_id, exc)
            self.machine.not_started(f, e.at)

    async def _stop_session(self, session_id: str) -> None:
        self.intake.sessions.pop(session_id, None)
        try:
            await self.gateway.stop_session(session_id)
        except Exception as exc:
            log.warning("live: stop_session %s: %s", session_id, exc)

    async def _tell(self, f: Flow, e: Tell) -> None:
        if self.messenger is None:
            return
        banner = e.banner or {}
        msg = wire.Command(command=wire.LiveEvent(name=e.name, hearing_id=f.hearing_id,
                                                  message_kk=banner.get("kk"), message_ru=banner.get("ru"),
                                                  **e.fields))
        for t in (f.caller, f.callee):
            try:
                await self.messenger.deliver(t, msg)
            except AgentUnavailable as exc:
                log.info("live: %s not told of %s: %s", t, e.name, exc)
            except Exception as exc:
                log.warning("live: telling %s of %s failed: %s", t, e.name, exc)

    async def _escalate(self, f: Flow, e: Escalate) -> None:
        if self.escalate is None:
            log.error("live: hearing %s: reconnect failed and no escalation is wired in", f.hearing_id)
            return
        try:
            await self.escalate(hearing_id=f.hearing_id, cause=EscalationCause.RECONNECT_FAILED, detail=e.detail)
        except Exception:
            log.exception("live: hearing %s: escalation failed", f.hearing_id)

    def _count(self, e: Count) -> None:
        if self.metrics is None:
            return
        with contextlib.suppress(Exception):
            if e.what == "break":
                self.metrics.count_break(e.cause or "")
            else:
                self.metrics.count_resume()

    # ---- starting and ending ---------------------------------------------------------------------
    async def begin(self, hearing_id: int, trigger: str, now: float | None = None) -> Flow | None:
        """Start monitoring a hearing (idempotent): one flow per remote participant (the courtroom
        terminal calls each). Returns the first participant's flow; None when it has none."""
        now = self.now() if now is None else now
        if hearing_id in self.flows:
            return self.flows[hearing_id]
        async with self.db.transaction() as conn:
            h = await hearings_repo.get_hearing(conn, hearing_id, for_update=True)
            parts = (await hearings_repo.participants_of(conn, [hearing_id]))[hearing_id]
            remote = list(dict.fromkeys(p["terminal_id"] for p in parts
                                        if p["terminal_id"] and p["terminal_id"] != h["court_terminal_id"]))
            if not remote:
                return None
            old = await store.get_state(conn, hearing_id, for_update=True)
            if old is not None and old["state"] in ACTIVE:
                return None     # another controller drives it
            names = await lp.terminal_names(conn, remote)
            end = (await store.hearing_heads(conn, [hearing_id]))[hearing_id]["monitor_end"]   # started late: longer
            flows: list[Flow] = []
            for i, callee in enumerate(remote):
                prev = old if i == 0 else await lp.get(conn, hearing_id, callee)
                f = self.machine.begin(hearing_id, h["court_terminal_id"], callee, end.timestamp(), now,
                                       prev["stats"] if prev else None)
                f.primary, f.callee_name = i == 0, names.get(callee)
                values = dict(state=f.state, verdict=f.verdict, since=to_dt(now), caller=f.caller, callee=f.callee,
                              attempt=0, stats=f.stats, started_at=to_dt(now), updated_at=to_dt(now), ended_at=None,
                              break_id=None, session_id=None, next_at=None)
                if i > 0:
                    await lp.upsert(conn, hearing_id, callee, values)
                elif old is None:
                    await store.insert_state(conn, {"hearing_id": hearing_id, **values})
                else:
                    await store.update_state(conn, hearing_id, **values)
                flows.append(f)
        for f in flows:
            start, *rest = self.machine.started(f, now, trigger)
            await self._run(f, [start])
            self.intake.add(f)
            await self._run(f, rest)
            log.info("live: hearing %s monitored (%s): %s <-> %s", hearing_id, trigger, f.caller, f.callee)
        return flows[0]

    async def resume(self, hearing_id: int, who: str) -> dict:
        """The secretary confirms the resumption: every participant's flow of the hearing that is
        ready to resume resumes (the first one's break is the answer); raises
        controller.live.machine.NotReady when none is."""
        async with self.lock:
            flows = self.intake.of(hearing_id)
            ready = [f for f in flows if f.state == LiveState.READY_TO_RESUME]
            if not ready:
                first = flows[0] if flows else None
                self.machine.resume(first, hearing_id, self.now(), who)      # raises NotReady
            out: dict = {}
            for f in ready:
                effects, done = self.machine.resume(f, hearing_id, self.now(), who)
                await self._run(f, effects)
                out = out or {**done, "terminal_id": f.callee}
            return out

    async def decide(self, hearing_id: int, decision: str, who: str) -> list[dict]:
        """The secretary records the judge's decision on the hearing's breaks waiting for one (each
        participant's); raises controller.live.machine.NoDecisionPending when none waits."""
        async with self.lock:
            now = self.now()
            pending = [f for f in self.intake.of(hearing_id) if self.machine.pending(f)]
            if not pending:
                self.machine.decide(None, hearing_id, decision, now, who)     # raises NoDecisionPending
            out = []
            for f in pending:
                item = {"break_id": f.break_id, "terminal_id": f.callee, "decision": decision}
                await self._run(f, self.machine.decide(f, hearing_id, decision, now, who))
                out.append(item)
            return out

    async def stop(self, hearing_id: int, reason: str, *, state: LiveState = LiveState.ENDED,
                   now: float | None = None, detail: dict | None = None) -> None:
        """Stop monitoring (hearing over, suspension); an open break is closed with `reason`."""
        flows = self.intake.remove(hearing_id)
        if not flows:
            return
        now = self.now() if now is None else now
        for f in flows:
            await self._run(f, self.machine.stop(f, reason, now, state=state, detail=detail))
        log.info("live: hearing %s no longer monitored (%s)", hearing_id, reason)

    # ---- the database view: hearings to start, end, suspend ------------------------------------
    async def reconcile(self, now: float) -> None:
        """Start monitoring the hearings due, stop the flows whose hearing is over or suspended."""
        at = to_dt(now)
        assert at is not None
        stop: list[tuple[int, str, LiveState, dict]] = []
        start: list[int] = []
        async with self.db.read() as conn:
            susps = await susp_repo.not_ended(conn, at)
            monitored = list(self.flows)
            candidates = [h for h in await self._candidates(conn, at) if h not in self.flows]
            found = await store.hearing_heads(conn, monitored)
            sites = {} if not susps else {
                hid: hearings_repo.suspendable(parts)
                for hid, parts in (await hearings_repo.participants_of(conn, monitored + candidates)).items()}
        for hid in monitored:
            f = self.flows[hid]
            h = found.get(hid)
            if h is None:
                stop.append((hid, "hearing_deleted", LiveState.ENDED, {}))
                continue
            end_at = self.machine.end_at(h["monitor_end"].timestamp())
            for g in self.intake.of(hid):               # every participant's flow: their sessions
                g.end_at = end_at                       # are sized and renewed to it
            blocking = rules.blocking_suspensions(susps, sites[hid], at) if susps else []
            ending = self.machine.ending(f, h["status"], [s.id for s in blocking], now)
            if ending is not None:
                stop.append((hid, ending.reason, ending.state, ending.detail))
        for hid in candidates:
            if susps and rules.blocking_suspensions(susps, sites[hid], at):
                continue
            start.append(hid)
        for hid, reason, state, detail in stop:
            await self.stop(hid, reason, state=state, now=now, detail=detail)
        for hid in start:
            try:
                await self.begin(hid, "preconnect_passed", now)
            except Exception:
                log.exception("live: cannot start monitoring hearing %s", hid)

    async def _candidates(self, conn: AsyncConnection, at: dt.datetime) -> list[int]:
        """Hearings to monitor: active, not past their end (+ margin), in progress or (when
        configured) with a passed pre-connect check, and not monitored or stopped by a
        suspension since lifted."""
        if not self.s.enabled:
            return []
        lv = store.live_state.c
        h = hearings.c
        margin = dt.timedelta(seconds=self.s.end_margin_s)
        cond = h.status == HearingStatus.IN_PROGRESS
        if self.s.start_after_preconnect:
            passed = exists().where(checks.c.hearing_id == h.id, checks.c.kind == CheckKind.PRECONNECT,
                                    checks.c.status == CheckStatus.PASSED)
            cond = cond | and_(h.status == HearingStatus.SCHEDULED, passed)
        not_monitored = ~exists().where(lv.hearing_id == h.id, lv.state != LiveState.STOPPED)
        q = select(h.id).where(cond, h.end_utc > at - margin, not_monitored).order_by(h.id).limit(200)
        return [r for (r,) in await conn.execute(q)]

    async def _take_hook_reports(self, now: float) -> None:
        """The failed hooks the intake took become `hook_failed` events - only in the record of a
        hearing whose courtroom terminal or participant the reporting terminal is, and only while
        that hearing is active, monitored or ended less than HOOK_GRACE_S ago (issue 11): a past
        hearing's record, its act final, is not written into by a terminal it once had."""
        failed, self.intake.hook_reports = self.intake.hook_reports, []
        if not failed:
            return
        named = [r.hearing_id for _, r in failed if r.hearing_id is not None]
        async with self.db.transaction() as conn:
            taking_part = await store.hearing_terminals(conn, named)
            still_open = await hearings_repo.open_hearings(conn, named, to_dt(now - HOOK_GRACE_S))
            for terminal_id, r in failed:
                if r.hearing_id is None or terminal_id not in taking_part.get(r.hearing_id, ()):
                    reason = AgentDrop.NOT_IN_HEARING
                elif r.hearing_id not in still_open:
                    reason = AgentDrop.HEARING_OVER
                else:
                    await events_repo.append(conn, r.hearing_id, "hook_failed", to_dt(now), {
                        "terminal_id": terminal_id, "event": r.event, "kind": r.kind, "error": r.error})
                    continue
                self.intake.drops.drop(terminal_id, reason, f"hook_failed event for hearing {r.hearing_id}")


async def update_state(conn: AsyncConnection, f: Flow, **values) -> None:
    """Update the flow's state row: live_state for the hearing's first participant, else its
    live_participants row."""
    if f.primary:
        await store.update_state(conn, f.hearing_id, **values)
    else:
        await lp.update_state(conn, f.hearing_id, f.callee, **values)

