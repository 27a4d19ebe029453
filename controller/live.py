"""Live monitoring during a hearing and the break -> reconnect -> resume flow (rule 22).

From the passed pre-connect check (or the secretary's `POST /api/v1/hearings/{id}/start`) until
the hearing ends, the courtroom terminal (caller) and the remote terminal (callee) keep a
monitoring session (kind "monitor", the agents' `monitor` profile) whose per-second intervals
the hub hands over as it stores them (`LiveService.on_reports`). `controller.detector` judges
them; this module acts:

    monitoring --lost--> reconnecting --quality holds resume_good_s--> ready_to_resume
        ^                 |    ^   (attempt n: stop the old session, start a new one,          |
        |                 |    |    backoff + jitter between attempts; still not ready after    |
        |                 |    |    reconnect_timeout_s: escalation, attempts go on)           |
        |                 |    +---------------- lost again ("ready_withdrawn") ---------------+
        +---- the secretary confirms: POST /api/v1/hearings/{id}/resume -----------------------+
    any state --hearing held / cancelled / postponed, planned end + end_margin_s--> ended
    any state --suspension (rule 24)--> stopped (monitoring restarts when lifted)

Every step appends an event to the hearing's record (rule 21): monitoring_started, break (cause,
detector evidence), reconnect (per attempt), reconnect_attempt_failed, ready_to_resume,
ready_withdrawn, resume (duration and cause), reconnect_timeout, monitoring_renewed,
monitoring_stopped, hook_failed, hearing_started, hearing_ended. The agents at both ends get the
`break` / `reconnect` / `resume` commands (contract.wire.LiveEvent) and fire their endpoint hooks.

State per hearing is kept in `live_state` / `live_breaks` / `live_intervals` (migration 0003)
and reloaded at start, so a restarted controller carries on (the agents keep their monitoring
session and resend what they measured meanwhile).

Limits: one pair per hearing (the courtroom terminal and the first remote participant); the flow
runs in the controller whose hub receives the intervals (one controller, or agents of a hearing
on the same controller).
"""
from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import importlib
import importlib.util
import logging
import random
import uuid
from dataclasses import dataclass, field
from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel, Field
from sqlalchemy import and_, exists, select

from contract import quality, wire
from controller import auth, rules
from controller.detector import ROLES, Detector, DetectorParams, Lost, classify
from controller.errors import Conflict, NotFound
from controller.gateway import AgentUnavailable
from controller.keys import CLOCK_KEY, DB_KEY, GATEWAY_KEY, RESULTS_KEY, SETTINGS_KEY
from controller.settings import LiveSettings
from controller.store import events as events_repo
from controller.store import hearings as hearings_repo
from controller.store import live as store
from controller.store import suspensions as susp_repo
from controller.store.hearings import iso
from controller.store.schema import checks, hearings

log = logging.getLogger(__name__)

ACTIVE = ("monitoring", "reconnecting", "ready_to_resume")
INTERVALS_SHOWN_S = 120
BANNER = {"kk": "Техникалық ақауларға байланысты үзіліс", "ru": "Перерыв по техническим причинам"}


def _ts(d: dt.datetime | None) -> float | None:
    return d.timestamp() if d is not None else None


def _dt(t: float | None) -> dt.datetime | None:
    return dt.datetime.fromtimestamp(t, dt.UTC) if t is not None else None


def backoff_s(attempt: int, s: LiveSettings, rng: random.Random) -> float:
    """Delay before attempt `attempt + 1`: initial * 2^(attempt-1), capped, +- jitter."""
    base = min(s.backoff_max_s, s.backoff_initial_s * (2 ** max(0, attempt - 1)))
    return max(0.0, base * (1 + rng.uniform(-s.backoff_jitter, s.backoff_jitter)))


def detector_params(s: LiveSettings) -> DetectorParams:
    return DetectorParams(stall_s=s.stall_s, window_s=s.window_s, unusable_n=s.unusable_n,
                          resume_good_s=s.resume_good_s, silent_s=s.silent_s, freeze_break_s=s.freeze_break_s,
                          keep_s=max(30, s.window_s, s.resume_good_s, s.freeze_break_s) + 2)


def final_verdict(stats: dict, breaks_open: bool) -> str:
    """The hearing's live verdict once monitoring ended (rule 3)."""
    if breaks_open or stats.get("unresumed", 0):
        return "unusable"
    seconds = sum(stats.get(k, 0) for k in ("good", "degraded", "unusable"))
    if stats.get("breaks", 0) or (seconds and stats.get("degraded", 0) + stats.get("unusable", 0) > 0.2 * seconds):
        return "degraded"
    return "good" if seconds else "unknown"


@dataclass
class Flow:
    """One hearing's flow in memory (mirrors its live_state row)."""
    hearing_id: int
    state: str
    since: float
    caller: str
    callee: str
    detector: Detector
    session_id: str | None = None
    session_end: float | None = None
    break_id: int | None = None
    break_started: float | None = None
    break_cause: str | None = None
    escalated: bool = False
    attempt: int = 0
    next_at: float | None = None
    end_at: float = 0.0
    verdict: str = "unknown"
    stats: dict[str, Any] = field(default_factory=dict)
    counted_t: int = -1
    started_at: float = 0.0


class LiveService:
    def __init__(self, app: web.Application, *, rng: random.Random | None = None):
        self.app = app
        self.s: LiveSettings = app[SETTINGS_KEY].live
        self.params = detector_params(self.s)
        self.thresholds: quality.Thresholds | None = None
        self.flows: dict[int, Flow] = {}
        self.sessions: dict[str, int] = {}
        self.rng = rng or random.Random()
        self._rows: list[dict] = []
        self._hook_reports: list[tuple[str, dict]] = []
        self._ended: list[str] = []
        self._kick = asyncio.Event()
        self._lock = asyncio.Lock()
        self._task: asyncio.Task | None = None
        self._escalation = _escalation_module()

    # ---- wiring ------------------------------------------------------------------------------
    @property
    def db(self):
        return self.app[DB_KEY]

    def now(self) -> float:
        return self.app[CLOCK_KEY]().timestamp()

    def _hub(self):
        from controller.agent_api import HUB_KEY  # the agent side may be absent (tests)
        return self.app.get(HUB_KEY)

    def _metrics(self):
        from controller.metrics import LIVE_METRICS_KEY
        return self.app.get(LIVE_METRICS_KEY)

    async def start(self) -> None:
        self.thresholds = await asyncio.to_thread(
            lambda: quality.select(quality.load_thresholds(), self.s.thresholds_profile))
        now = self.now()
        async with self.db.read() as conn:
            rows = await store.active_states(conn)
            for r in rows:
                f = Flow(r["hearing_id"], r["state"], _ts(r["since"]), r["caller"], r["callee"],
                         Detector.restore(self.params, r["detector"]), session_id=r["session_id"],
                         break_id=r["break_id"], attempt=r["attempt"], next_at=_ts(r["next_at"]),
                         verdict=r["verdict"], stats=dict(r["stats"] or {}), started_at=_ts(r["started_at"]))
                h = await hearings_repo.get_hearing(conn, f.hearing_id)
                f.end_at = h["end_utc"].timestamp() + self.s.end_margin_s
                if f.break_id is not None:
                    b = await store.get_break(conn, f.break_id)
                    f.break_started, f.break_cause = _ts(b["started_at"]), b["cause"]
                    f.escalated = b["escalated_at"] is not None
                # Times in the snapshot were this clock's; give the sessions time to be heard again.
                for side in f.detector.sides.values():
                    side.last_at = None
                f.detector.expect(now + self.s.start_grace_s)
                f.session_end = None if f.session_id is None else f.end_at + 60
                self.flows[f.hearing_id] = f
                if f.session_id:
                    self.sessions[f.session_id] = f.hearing_id
        if rows:
            log.info("live: carrying on with %d hearing(s) after a restart", len(rows))
        self._task = asyncio.create_task(self._loop(), name="live")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        with contextlib.suppress(Exception):
            await self._flush()

    # ---- hand-off from the hub (synchronous, quick) -------------------------------------------
    def on_reports(self, items: list[tuple[str, Any]]) -> None:
        """Reports of a committed batch [(terminal_id, wire.Report)]: intervals of the monitoring
        sessions feed the detector; hook outcomes reach the record."""
        kick = False
        for terminal_id, m in items:
            try:
                body = m.body if isinstance(m.body, dict) else {}
                if m.kind == "interval" and m.session_id in self.sessions:
                    kick |= self._interval(terminal_id, m.session_id, body)
                elif m.kind == "health" and isinstance(body.get("hook"), dict):
                    self._hook_reports.append((terminal_id, body["hook"]))
                    kick = True
            except Exception:        # a malformed body must not stop the batch
                log.exception("live: interval from %s not taken", terminal_id)
        if kick:
            self._kick.set()

    def on_session_ended(self, session_id: str, outcome: str, error: str | None = None) -> None:
        """The hub saw a session finish or fail: a current monitoring session is then lost."""
        if session_id in self.sessions:
            self._ended.append(session_id)
            self._kick.set()

    def _interval(self, terminal_id: str, session_id: str, body: dict) -> bool:
        f = self.flows.get(self.sessions[session_id])
        iv = body.get("interval")
        role = body.get("role")
        if f is None or f.session_id != session_id or role not in ROLES or not isinstance(iv, dict):
            return False
        if terminal_id != (f.caller if role == "caller" else f.callee):
            return False
        t = int(iv.get("t", -1))
        if t < 0 or self.thresholds is None:
            return False
        second = classify(iv, self.thresholds)
        now = self.now()
        f.detector.observe(role, t, second, now)
        if role == "caller" and t > f.counted_t:
            f.counted_t = t
            key = "stalled" if second.stalled else second.verdict
            f.stats[key] = f.stats.get(key, 0) + 1
            if key == "stalled":
                f.stats["unusable"] = f.stats.get("unusable", 0) + 1
        self._rows.append({"hearing_id": f.hearing_id, "session_id": session_id, "terminal_id": terminal_id,
                           "t": t, "at": _dt(now), "inbound": iv.get("inbound"), "outbound": iv.get("outbound"),
                           "rtt_ms": iv.get("rtt_ms") if isinstance(iv.get("rtt_ms"), (int, float)) else None,
                           "stalled": second.stalled, "verdict": second.verdict})
        return True

    # ---- the loop ------------------------------------------------------------------------------
    async def _loop(self) -> None:
        next_reconcile = 0.0
        while True:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._kick.wait(), self.s.tick_s)
            self._kick.clear()
            try:
                async with self._lock:
                    now = self.now()
                    if now >= next_reconcile:
                        next_reconcile = now + self.s.reconcile_s
                        await self._reconcile(now)
                    await self._take_hook_reports(now)
                    ended, self._ended = self._ended, []
                    for f in list(self.flows.values()):
                        if f.session_id in ended:
                            f.detector.expect(min(f.detector.expect_from or now, now - self.s.silent_s))
                            for side in f.detector.sides.values():
                                side.last_at = min(side.last_at or now, now - self.s.silent_s)
                        await self._step(f, now)
                    await self._flush()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("live: step failed")
                await asyncio.sleep(1.0)

    async def _flush(self) -> None:
        rows, self._rows = self._rows, []
        dirty = [f for f in self.flows.values() if f.stats.get("_dirty")]
        if not rows and not dirty:
            return
        try:
            async with self.db.transaction() as conn:
                await store.insert_intervals(conn, rows)
                for f in dirty:
                    f.stats.pop("_dirty", None)
                    await store.update_state(conn, f.hearing_id, stats=f.stats, detector=f.detector.snapshot(),
                                             verdict=f.verdict, updated_at=_dt(self.now()))
        except Exception:
            self._rows = rows + self._rows
            raise

    async def _step(self, f: Flow, now: float) -> None:
        if f.state == "monitoring":
            if f.session_id is None:
                await self._start_session(f, now, self.s.start_grace_s)
                return
            lost = f.detector.lost(now)
            if lost is not None:
                await self._declare_break(f, lost, now)
                return
            if f.session_end is not None and now >= f.session_end - self.s.renew_before_s and now < f.end_at:
                await self._renew(f, now)
            self._set_verdict(f, f.detector.verdict(now))
        elif f.state == "reconnecting":
            if f.session_id is not None:
                if f.detector.ready(now):
                    await self._ready(f, now)
                else:
                    lost = f.detector.lost(now)
                    if lost is not None:
                        await self._attempt_failed(f, lost, now, "reconnect_attempt_failed")
            elif f.next_at is None or now >= f.next_at:
                await self._attempt(f, now)
            if (not f.escalated and f.break_started is not None
                    and now - f.break_started >= self.s.reconnect_timeout_s):
                await self._escalate(f, now)
        elif f.state == "ready_to_resume":
            lost = f.detector.lost(now)
            if lost is not None:
                async with self.db.transaction() as conn:
                    await store.update_break(conn, f.break_id, ready_at=None)
                await self._attempt_failed(f, lost, now, "ready_withdrawn")

    def _set_verdict(self, f: Flow, verdict: str) -> None:
        if verdict != f.verdict and verdict != "unknown":
            f.verdict = verdict
            f.stats["_dirty"] = True
        elif f.counted_t >= 0 and f.counted_t % 5 == 0:
            f.stats["_dirty"] = True        # stats and detector saved every few seconds

    # ---- transitions ------------------------------------------------------------------------------
    async def _event(self, conn, f: Flow, kind: str, now: float, detail: dict) -> None:
        await events_repo.append(conn, f.hearing_id, kind, _dt(now), detail)

    async def _save(self, conn, f: Flow, now: float, refresh: bool = False) -> None:
        f.stats.pop("_dirty", None)
        await store.update_state(conn, f.hearing_id, state=f.state, since=_dt(f.since), verdict=f.verdict,
                                 session_id=f.session_id, session_started_at=_dt(now) if f.session_id else None,
                                 break_id=f.break_id, attempt=f.attempt, next_at=_dt(f.next_at),
                                 detector=f.detector.snapshot(), stats=f.stats, updated_at=_dt(now))
        if refresh:
            with contextlib.suppress(Exception):
                await self.app[RESULTS_KEY].refresh_verdict(conn, f.hearing_id, _dt(now))

    async def _command(self, f: Flow, name: str, **kw) -> None:
        hub = self._hub()
        if hub is None:
            return
        msg = wire.Command(command=wire.LiveEvent(name=name, hearing_id=f.hearing_id,
                                                  message_kk=BANNER["kk"] if name == "break" else None,
                                                  message_ru=BANNER["ru"] if name == "break" else None, **kw))
        for t in (f.caller, f.callee):
            try:
                await hub.deliver(t, msg)
            except AgentUnavailable as exc:
                log.info("live: %s not told of %s: %s", t, name, exc)
            except Exception as exc:
                log.warning("live: telling %s of %s failed: %s", t, name, exc)

    async def _stop_session(self, session_id: str | None) -> None:
        if session_id is None:
            return
        self.sessions.pop(session_id, None)
        try:
            await self.app[GATEWAY_KEY].stop_session(session_id)
        except Exception as exc:
            log.warning("live: stop_session %s: %s", session_id, exc)

    async def _start_session(self, f: Flow, now: float, grace: float) -> str:
        sid = uuid.uuid4().hex
        duration = max(60.0, min(24 * 3600.0, f.end_at - now + 60.0))
        f.session_id, f.session_end, f.counted_t = sid, now + duration, -1
        # Silent (lost) when the first second has not arrived `grace` seconds from now.
        f.detector = Detector(self.params, expect_from=now + grace - self.s.silent_s)
        self.sessions[sid] = f.hearing_id
        try:
            await self.app[GATEWAY_KEY].start_session(session_id=sid, caller=f.caller, callee=f.callee,
                                                      kind="monitor", profile=self.s.profile, duration_s=duration)
        except Exception as exc:
            # Not started (an agent away): silent at once, judged by the next step.
            log.warning("live: hearing %s: monitoring session not started: %s", f.hearing_id, exc)
            f.detector.expect(now - self.s.silent_s)
        return sid

    async def begin(self, hearing_id: int, trigger: str, now: float | None = None) -> Flow | None:
        """Start monitoring a hearing (idempotent). None when it has no remote participant."""
        now = self.now() if now is None else now
        if hearing_id in self.flows:
            return self.flows[hearing_id]
        async with self.db.transaction() as conn:
            h = await hearings_repo.get_hearing(conn, hearing_id, for_update=True)
            parts = (await hearings_repo.participants_of(conn, [hearing_id]))[hearing_id]
            remote = [p["terminal_id"] for p in parts if p["terminal_id"] != h["court_terminal_id"]]
            if not remote:
                return None
            old = await store.get_state(conn, hearing_id, for_update=True)
            if old is not None and old["state"] in ACTIVE:
                return None     # another controller drives it
            f = Flow(hearing_id, "monitoring", now, h["court_terminal_id"], remote[0], Detector(self.params),
                     end_at=h["end_utc"].timestamp() + self.s.end_margin_s, started_at=now,
                     stats=dict(old["stats"] or {}) if old else {})
            values = dict(state="monitoring", verdict="unknown", since=_dt(now), caller=f.caller, callee=f.callee,
                          attempt=0, stats=f.stats, started_at=_dt(now), updated_at=_dt(now), ended_at=None,
                          break_id=None, session_id=None, next_at=None)
            if old is None:
                await store.insert_state(conn, {"hearing_id": hearing_id, **values})
            else:
                await store.update_state(conn, hearing_id, **values)
        sid = await self._start_session(f, now, self.s.start_grace_s)
        self.flows[hearing_id] = f
        async with self.db.transaction() as conn:
            await self._save(conn, f, now)
            await self._event(conn, f, "monitoring_started", now, {
                "trigger": trigger, "caller": f.caller, "callee": f.callee, "session_id": sid,
                "profile": self.s.profile})
        log.info("live: hearing %s monitored (%s): %s <-> %s", hearing_id, trigger, f.caller, f.callee)
        return f

    async def _declare_break(self, f: Flow, lost: Lost, now: float) -> None:
        old = f.session_id
        evidence = {"kind": lost.kind, "role": lost.role, "session_id": old, **lost.evidence}
        f.state, f.since, f.attempt, f.next_at = "reconnecting", now, 0, now
        f.break_started, f.break_cause, f.escalated = now, lost.cause, False
        f.session_id = None
        f.verdict = "unusable"
        f.stats["breaks"] = f.stats.get("breaks", 0) + 1
        f.stats["unresumed"] = f.stats.get("unresumed", 0) + 1
        async with self.db.transaction() as conn:
            await hearings_repo.get_hearing(conn, f.hearing_id, for_update=True)
            f.break_id = await store.insert_break(conn, {"hearing_id": f.hearing_id, "cause": lost.cause,
                                                         "evidence": evidence, "started_at": _dt(now)})
            await self._event(conn, f, "break", now, {"break_id": f.break_id, "cause": lost.cause, **evidence})
            await self._save(conn, f, now, refresh=True)
        log.warning("live: hearing %s: break (%s: %s by the %s)", f.hearing_id, lost.cause, lost.kind, lost.role)
        m = self._metrics()
        if m is not None:
            with contextlib.suppress(Exception):
                m.count_break(lost.cause)
        await self._command(f, "break", cause=lost.cause)
        await self._stop_session(old)
        await self._attempt(f, self.now())

    async def _attempt(self, f: Flow, now: float) -> None:
        f.attempt += 1
        f.next_at = None
        sid = await self._start_session(f, now, self.s.attempt_grace_s)
        async with self.db.transaction() as conn:
            await store.update_break(conn, f.break_id, attempts=f.attempt)
            await self._event(conn, f, "reconnect", now, {"break_id": f.break_id, "attempt": f.attempt,
                                                          "session_id": sid})
            await self._save(conn, f, now)
        await self._command(f, "reconnect", attempt=f.attempt, cause=f.break_cause)

    async def _attempt_failed(self, f: Flow, lost: Lost, now: float, kind: str) -> None:
        old = f.session_id
        delay = backoff_s(f.attempt, self.s, self.rng)
        f.state, f.session_id, f.next_at = "reconnecting", None, now + delay
        if kind == "ready_withdrawn":
            f.since = now
        f.verdict = "unusable"
        async with self.db.transaction() as conn:
            await self._event(conn, f, kind, now, {"break_id": f.break_id, "attempt": f.attempt,
                                                   "kind": lost.kind, "session_id": old,
                                                   "retry_in_s": round(delay, 2), **lost.evidence})
            await self._save(conn, f, now, refresh=kind == "ready_withdrawn")
        await self._stop_session(old)

    async def _ready(self, f: Flow, now: float) -> None:
        f.state, f.since = "ready_to_resume", now
        f.verdict = f.detector.verdict(now)
        async with self.db.transaction() as conn:
            await store.update_break(conn, f.break_id, ready_at=_dt(now))
            await self._event(conn, f, "ready_to_resume", now, {
                "break_id": f.break_id, "attempt": f.attempt, "session_id": f.session_id,
                "good_s": f.detector.good_run(), "since_break_s": round(now - (f.break_started or now), 1)})
            await self._save(conn, f, now, refresh=True)
        log.info("live: hearing %s ready to resume (attempt %d)", f.hearing_id, f.attempt)

    async def _escalate(self, f: Flow, now: float) -> None:
        f.escalated = True
        detail = {"break_id": f.break_id, "cause": f.break_cause, "attempts": f.attempt,
                  "since_break_s": round(now - (f.break_started or now), 1),
                  "caller": f.caller, "callee": f.callee}
        async with self.db.transaction() as conn:
            await store.update_break(conn, f.break_id, escalated_at=_dt(now))
            await self._event(conn, f, "reconnect_timeout", now, detail)
        if self._escalation is None:
            # TODO(lead): controller/escalation.py (issue 5 part 2) was not there when this was written.
            log.error("live: hearing %s: reconnect failed and no escalation module is installed", f.hearing_id)
            return
        try:
            await self._escalation.open(self.app, hearing_id=f.hearing_id, cause="reconnect_failed", detail=detail)
        except Exception:
            log.exception("live: hearing %s: escalation failed", f.hearing_id)

    async def _renew(self, f: Flow, now: float) -> None:
        old = f.session_id
        sid = await self._start_session(f, now, self.s.start_grace_s)
        async with self.db.transaction() as conn:
            await self._event(conn, f, "monitoring_renewed", now, {"old_session_id": old, "session_id": sid})
            await self._save(conn, f, now)
        await self._stop_session(old)

    async def resume(self, hearing_id: int, who: str) -> dict:
        """The secretary confirms the resumption (only when ready to resume)."""
        async with self._lock:
            f = self.flows.get(hearing_id)
            if f is None or f.state != "ready_to_resume":
                state = f.state if f else "not monitored"
                raise Conflict(f"hearing {hearing_id} is not ready to resume ({state})", code="not_ready")
            now = self.now()
            duration = round(now - (f.break_started or now), 1)
            f.state, f.since = "monitoring", now
            f.stats["unresumed"] = max(0, f.stats.get("unresumed", 0) - 1)
            break_id, cause = f.break_id, f.break_cause
            async with self.db.transaction() as conn:
                await hearings_repo.get_hearing(conn, hearing_id, for_update=True)
                b = await store.get_break(conn, break_id)
                await store.update_break(conn, break_id, resumed_at=_dt(now), resumed_by=who, ended_at=_dt(now),
                                         outcome="resumed", duration_s=duration)
                await self._event(conn, f, "resume", now, {
                    "break_id": break_id, "cause": cause, "duration_s": duration, "by": who,
                    "break_started_at": iso(b["started_at"]), "ready_at": iso(b["ready_at"]),
                    "attempts": f.attempt, "session_id": f.session_id})
                f.break_id, f.break_started, f.break_cause, f.attempt = None, None, None, 0
                f.verdict = f.detector.verdict(now)
                await self._save(conn, f, now, refresh=True)
            m = self._metrics()
            if m is not None:
                with contextlib.suppress(Exception):
                    m.count_resume()
            await self._command(f, "resume", cause=cause)
            return {"break_id": break_id, "duration_s": duration, "cause": cause}

    async def stop(self, hearing_id: int, reason: str, *, state: str = "ended", now: float | None = None,
                   detail: dict | None = None, conn=None) -> None:
        """Stop monitoring (hearing over, suspension); an open break is closed with `reason`."""
        f = self.flows.pop(hearing_id, None)
        if f is None:
            return
        now = self.now() if now is None else now
        old = f.session_id
        f.session_id = None
        f.state, f.since = state, now
        open_break = f.break_id
        f.verdict = final_verdict(f.stats, False) if state == "ended" else f.verdict

        async def write(conn) -> None:
            if open_break is not None:
                b = await store.get_break(conn, open_break)
                await store.update_break(conn, open_break, ended_at=_dt(now), outcome=reason,
                                         duration_s=round(now - b["started_at"].timestamp(), 1))
            f.break_id = None
            await self._event(conn, f, "monitoring_stopped", now, {"reason": reason, "open_break_id": open_break,
                                                                   "verdict": f.verdict, **(detail or {})})
            await self._save(conn, f, now, refresh=True)
            await store.update_state(conn, hearing_id, ended_at=_dt(now))

        if conn is not None:
            await write(conn)
        else:
            async with self.db.transaction() as c:
                await write(c)
        await self._stop_session(old)
        log.info("live: hearing %s no longer monitored (%s)", hearing_id, reason)

    # ---- the database view: hearings to start, end, suspend ------------------------------------
    async def _reconcile(self, now: float) -> None:
        at = _dt(now)
        stop: list[tuple[int, str, str, dict]] = []
        async with self.db.read() as conn:
            susps = await susp_repo.not_ended(conn, at)
            for hid, f in list(self.flows.items()):
                try:
                    h = await hearings_repo.get_hearing(conn, hid)
                except NotFound:
                    stop.append((hid, "hearing_deleted", "ended", {}))
                    continue
                f.end_at = h["end_utc"].timestamp() + self.s.end_margin_s
                blocking = rules.blocking_suspensions(susps, await hearings_repo.sites_of(conn, hid), at)
                if h["status"] not in ("scheduled", "in_progress"):
                    stop.append((hid, f"hearing_{h['status']}", "ended", {}))
                elif blocking:
                    stop.append((hid, "suspended", "stopped", {"suspension_ids": [s.id for s in blocking]}))
                elif now >= f.end_at:
                    stop.append((hid, "planned_end_passed", "ended", {}))
            candidates = await self._candidates(conn, at)
            start = []
            for hid in candidates:
                if hid in self.flows:
                    continue
                if rules.blocking_suspensions(susps, await hearings_repo.sites_of(conn, hid), at):
                    continue
                start.append(hid)
        for hid, reason, state, detail in stop:
            await self.stop(hid, reason, state=state, now=now, detail=detail)
        for hid in start:
            try:
                await self.begin(hid, "preconnect_passed", now)
            except Exception:
                log.exception("live: cannot start monitoring hearing %s", hid)

    async def _candidates(self, conn, at: dt.datetime) -> list[int]:
        """Hearings to monitor: active, not past their end (+ margin), in progress or (when
        configured) with a passed pre-connect check, and not monitored or stopped by a
        suspension since lifted."""
        if not self.s.enabled:
            return []
        lv = store.live_state.c
        h = hearings.c
        margin = dt.timedelta(seconds=self.s.end_margin_s)
        cond = h.status == "in_progress"
        if self.s.start_after_preconnect:
            passed = exists().where(checks.c.hearing_id == h.id, checks.c.kind == "preconnect",
                                    checks.c.status == "passed")
            cond = cond | and_(h.status == "scheduled", passed)
        not_monitored = ~exists().where(lv.hearing_id == h.id, lv.state != "stopped")
        q = select(h.id).where(cond, h.end_utc > at - margin, not_monitored).order_by(h.id).limit(200)
        return [r for (r,) in await conn.execute(q)]

    async def _take_hook_reports(self, now: float) -> None:
        reports, self._hook_reports = self._hook_reports, []
        failed = [(t, r) for t, r in reports if not r.get("ok") and isinstance(r.get("hearing_id"), int)]
        if not failed:
            return
        async with self.db.transaction() as conn:
            for terminal_id, r in failed:
                with contextlib.suppress(NotFound):
                    await hearings_repo.get_hearing(conn, r["hearing_id"])
                    await events_repo.append(conn, r["hearing_id"], "hook_failed", _dt(now), {
                        "terminal_id": terminal_id, "event": r.get("event"), "kind": r.get("kind"),
                        "error": r.get("error")})

    # ---- views -----------------------------------------------------------------------------------
    async def view(self, hearing_id: int) -> dict:
        """What the API shows, from the database: each transition writes its state row, break and
        event in one transaction, so the view is consistent (and any controller can give it)."""
        now = self.now()
        async with self.db.read() as conn:
            await hearings_repo.get_hearing(conn, hearing_id)
            st = await store.get_state(conn, hearing_id)
            b = await store.get_break(conn, st["break_id"]) if st and st["break_id"] else None
            rows = await store.recent_intervals(conn, hearing_id, _dt(now - INTERVALS_SHOWN_S))
        f = self.flows.get(hearing_id)
        stats = (f.stats if f is not None else (st["stats"] if st else None)) or {}
        state = st["state"] if st else "idle"
        return {
            "hearing_id": hearing_id,
            "state": state,
            "verdict": st["verdict"] if st else "unknown",
            "since": iso(st["since"]) if st else None,
            "caller": st["caller"] if st else None, "callee": st["callee"] if st else None,
            "session_id": st["session_id"] if st else None,
            "attempt": st["attempt"] if st else 0,
            "break": break_out(b, now) if b else None,
            "banner": BANNER if state in ("reconnecting", "ready_to_resume") else None,
            "stats": {k: v for k, v in stats.items() if not k.startswith("_")},
            "intervals": merge_intervals(rows, st["caller"] if st else None),
        }

    async def breaks(self, hearing_id: int) -> list[dict]:
        now = self.now()
        async with self.db.read() as conn:
            await hearings_repo.get_hearing(conn, hearing_id)
            return [break_out(b, now) for b in await store.breaks_for(conn, hearing_id)]


def break_out(b: dict, now: float) -> dict:
    ended = b["ended_at"] or b["resumed_at"]
    return {"id": b["id"], "cause": b["cause"], "evidence": b["evidence"], "started_at": iso(b["started_at"]),
            "attempts": b["attempts"], "ready_at": iso(b["ready_at"]), "resumed_at": iso(b["resumed_at"]),
            "resumed_by": b["resumed_by"], "escalated_at": iso(b["escalated_at"]), "ended_at": iso(b["ended_at"]),
            "outcome": b["outcome"],
            "duration_s": b["duration_s"] if ended else round(now - b["started_at"].timestamp(), 1)}


def merge_intervals(rows: list[dict], caller: str | None) -> list[dict]:
    """One entry per second of the caller's view (both directions); the callee's own receive
    figures fill an outbound the caller did not get."""
    callee_in = {(r["session_id"], r["t"]): r for r in rows if r["terminal_id"] != caller}
    out = []
    for r in rows:
        if r["terminal_id"] != caller:
            continue
        outbound = r["outbound"]
        other = callee_in.get((r["session_id"], r["t"]))
        if outbound is None and other is not None:
            outbound = other["inbound"]
        verdict = r["verdict"]
        if other is not None and rules.worst([verdict, other["verdict"]]):
            verdict = rules.worst([verdict, other["verdict"]])
        out.append({"t": r["t"], "at": iso(r["at"]), "session_id": r["session_id"], "inbound": r["inbound"],
                    "outbound": outbound, "rtt_ms": r["rtt_ms"], "stalled": r["stalled"], "verdict": verdict})
    return out


def _escalation_module():
    """controller.escalation (issue 5 part 2) when installed, else None."""
    if importlib.util.find_spec("controller.escalation") is None:
        return None
    return importlib.import_module("controller.escalation")


# ---- the API ---------------------------------------------------------------------------------------

LIVE_KEY = web.AppKey("vks_live", LiveService)


class LiveBreakOut(BaseModel):
    id: int
    cause: Literal["connection_lost", "quality"]
    evidence: dict
    started_at: str
    attempts: int
    ready_at: str | None
    resumed_at: str | None
    resumed_by: str | None
    escalated_at: str | None
    ended_at: str | None
    outcome: str | None
    duration_s: float | None


class LiveIntervalOut(BaseModel):
    t: int
    at: str
    session_id: str
    inbound: dict | None
    outbound: dict | None
    rtt_ms: float | None
    stalled: bool
    verdict: str


class LiveOut(BaseModel):
    hearing_id: int
    state: Literal["idle", "monitoring", "reconnecting", "ready_to_resume", "escalated", "stopped", "ended"]
    verdict: str
    since: str | None
    caller: str | None
    callee: str | None
    session_id: str | None
    attempt: int
    break_: LiveBreakOut | None = Field(None, alias="break")
    banner: dict | None
    stats: dict
    intervals: list[LiveIntervalOut]

    model_config = {"populate_by_name": True}


class ResumeOut(BaseModel):
    break_id: int
    duration_s: float
    cause: str
    live: LiveOut


def _service(request: web.Request) -> LiveService:
    s = request.app.get(LIVE_KEY)
    if s is None:
        raise web.HTTPServiceUnavailable(reason="live monitoring is not running")
    return s


async def get_live(request: web.Request) -> web.Response:
    from controller.api import ok, path_int
    return ok(await _service(request).view(path_int(request, "id")))


async def get_breaks(request: web.Request) -> web.Response:
    from controller.api import ok, path_int
    return ok({"items": await _service(request).breaks(path_int(request, "id"))})


async def post_resume(request: web.Request) -> web.Response:
    from controller.api import ok, path_int, who
    svc = _service(request)
    hid = path_int(request, "id")
    out = await svc.resume(hid, who(request))
    return ok({**out, "live": await svc.view(hid)})


async def _set_status(request: web.Request, status: str, event: str) -> web.Response:
    from controller import hearings as ops
    from controller.api import _view, ok, path_int, who
    from controller.api import now as req_now
    from controller.models import HearingPatch
    svc = _service(request)
    hid = path_int(request, "id")
    t = req_now(request)
    async with request.app[DB_KEY].transaction() as conn:
        h = await hearings_repo.get_hearing(conn, hid, for_update=True)
        allowed = ("scheduled", "postponed") if status == "in_progress" else ("in_progress", "scheduled")
        if h["status"] not in allowed:
            raise Conflict(f"hearing {hid} is {h['status']}: it cannot be {'started' if status == 'in_progress' else 'ended'}")
        stop = await ops.change(conn, request.app[RESULTS_KEY], hid, HearingPatch(status=status), who(request), t)
        await events_repo.append(conn, hid, event, t, {"by": who(request)})
    await request.app[RESULTS_KEY].stop_sessions(stop or [])
    async with svc._lock:
        if status == "in_progress":
            if svc.s.enabled:
                await svc.begin(hid, "hearing_started")
        else:
            await svc.stop(hid, "hearing_held", state="ended")
    async with request.app[DB_KEY].read() as conn:
        return ok(await _view(conn, hid, req_now(request)))


async def post_start(request: web.Request) -> web.Response:
    return await _set_status(request, "in_progress", "hearing_started")


async def post_end(request: web.Request) -> web.Response:
    return await _set_status(request, "held", "hearing_ended")


def routes() -> list:
    from controller import models as m
    from controller.api import API, Route
    return [
        Route("GET", f"{API}/hearings/{{id}}/live", get_live, auth.READ,
              "Live monitoring of a hearing (rule 22): state, verdict, the open break, the last 120 s",
              response=LiveOut),
        Route("GET", f"{API}/hearings/{{id}}/breaks", get_breaks, auth.READ,
              "The hearing's breaks for technical reasons, oldest first", response=("items", LiveBreakOut)),
        Route("POST", f"{API}/hearings/{{id}}/resume", post_resume, auth.HEARINGS_WRITE,
              "The secretary confirms the resumption after a break (only when ready to resume)",
              response=ResumeOut, extra_responses={409: "not ready to resume"}),
        Route("POST", f"{API}/hearings/{{id}}/start", post_start, auth.HEARINGS_WRITE,
              "The hearing starts (status in_progress, event hearing_started, monitoring begins)",
              response=m.HearingOut, extra_responses={409: "the hearing is not scheduled"}),
        Route("POST", f"{API}/hearings/{{id}}/end", post_end, auth.HEARINGS_WRITE,
              "The hearing ends (status held, event hearing_ended, monitoring stops)",
              response=m.HearingOut, extra_responses={409: "the hearing is not in progress"}),
    ]


def setup(app: web.Application) -> None:
    """Make the service when the app starts (after the database, the scheduler and the hub),
    hand it the hub's stored reports, close it first at shutdown."""

    async def ctx(app: web.Application):
        svc = LiveService(app)
        app[LIVE_KEY] = svc
        hub = svc._hub()
        if hub is not None:
            hub.live = svc
        await svc.start()
        try:
            yield
        finally:
            if hub is not None:
                hub.live = None
            await svc.close()

    app.cleanup_ctx.append(ctx)
