"""Fresh results (issue 12 part 5; rules 13, 14, 16): a result taken weeks before a hearing says
little about the link on the day. Settings: `freshness` (controller.settings.FreshnessSettings).

- **Re-test in the 48-24 h window.** A hearing booked further ahead than the window's opening has
  its rule-13 test run again inside it, at a minute picked by a hash of the hearing's id (so a
  thousand hearings do not test at the same minute). The checks keep their request time and
  deadline: rule 13's deadline is still tracked from the first request.
- **Nightly pair tests.** Every hour the plan looks at the (courtroom terminal, remote terminal)
  pairs with a hearing in the next `horizon_days`, and plans each one's test in the court's next
  night window (local time), at a second picked by a hash of the pair and the night. A pair tested
  less than `skip_tested_h` ago, or where VKS is suspended (rule 24), is skipped; a terminal in a
  live hearing, or in a hearing's check running now, defers it (by `defer_s`). The result is
  written in the record of the pair's hearings ahead (event pair_test_result). A terminal not
  connected: the test is not run (event pair_test_not_run) - the watch below tells of it.
- **Retries.** A failed test (did not connect, or failed its thresholds) - a rule-13 check or a
  nightly pair test - runs again after each of `retry_delays_min` (10, 30, 90 min) before it
  escalates (cause test_retries_failed, one per hearing and remote terminal; resolved when a test
  of the pair passes). The pre-connect check is not retried: its time is fixed (rule 15).
- **Terminal watch** (rule 14), every `watch_s`: a terminal offline longer than `offline_after_s`,
  or whose health check fails, with a hearing within `watch_horizon_h`, opens an escalation for
  that hearing and terminal (agent_offline with reason terminal_offline, or terminal_unhealthy),
  once; it is resolved by "system" when the terminal is back, or healthy again.

These are system jobs: no one asks for them, and what they open is seen as every escalation is
(within the reader's scope, controller.access).

| job kind            | key                                        | does                                  |
|---------------------|--------------------------------------------|---------------------------------------|
| freshness.retest    | freshness:retest:{hearing}:{start}         | re-opens the hearing's test checks    |
| freshness.retry     | freshness:retry:{check}                    | re-runs a failed test check           |
| freshness.plan      | freshness:plan                             | plans the nightly pair tests (hourly) |
| freshness.pair      | freshness:pair:{caller}:{callee}:{night}   | runs a nightly pair test (and retries)|
| freshness.pair_wait | freshness:pairwait:{session}               | a pair test that never reported failed|
| freshness.watch     | freshness:watch                            | offline / unhealthy terminals         |

A job's payload carries its counter (which retry this is); a test that passes starts it again.
"""
from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import itertools
import logging
import secrets
from collections.abc import Mapping
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncConnection

from contract.backoff import backoff_s
from contract.reports import SessionReport
from contract.vocab import CheckKind, CheckStatus, EscalationCause, HealthStatus, InstitutionKind, MeasurementKind
from contract.wire import session_span_s
from controller import rules
from controller.checks import CheckService, connected_of
from controller.escalation import EscalationService
from controller.gateway import AgentUnavailable
from controller.scheduler import Clock, JobContext, Scheduler
from controller.settings import ControllerSettings, parse_window
from controller.store import checks as checks_repo
from controller.store import events as events_repo
from controller.store import freshness as repo
from controller.store import hearings as hearings_repo
from controller.store import history as history_repo
from controller.store import jobs as jobs_repo
from controller.store import live as live_repo
from controller.store import registry
from controller.store import suspensions as susp_repo
from controller.store.db import Database
from controller.store.hearings import iso

log = logging.getLogger(__name__)

NIGHTLY_PREFIX = "nightly-"
PLAN_EVERY = dt.timedelta(hours=1)
OFFLINE = EscalationCause.AGENT_OFFLINE
UNHEALTHY = EscalationCause.TERMINAL_UNHEALTHY
RETRIES_FAILED = EscalationCause.TEST_RETRIES_FAILED


# --- pure: when --------------------------------------------------------------------------------

def slot(key: str, n: int) -> int:
    """A number in [0, n) picked by a hash of `key`: the same key always gets the same one, and
    many keys spread evenly."""
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") % max(1, n)


def retest_at(hearing_id: int, start: dt.datetime, window_h: list[float]) -> dt.datetime:
    """The minute of a hearing's re-test inside [start - opens_h, start - closes_h), by its id."""
    opens, closes = (dt.timedelta(hours=h) for h in window_h)
    minutes = int((opens - closes).total_seconds() // 60)
    return start - opens + dt.timedelta(minutes=slot(f"retest:{hearing_id}", minutes))


def night_window(night: dt.date, timezone: str, window: str) -> tuple[dt.datetime, dt.datetime]:
    """The night window (UTC) that opens on local date `night` in `timezone` ("01:00-05:00"; an end
    before the start is on the next day)."""
    a, b = parse_window(window)
    tz = ZoneInfo(timezone)
    opens = dt.datetime.combine(night, dt.time(a // 60, a % 60), tzinfo=tz)
    length = dt.timedelta(minutes=(b - a) % (24 * 60))
    return opens.astimezone(dt.UTC), (opens + length).astimezone(dt.UTC)


def pair_slot(caller: str, callee: str, night: dt.date, timezone: str, window: str) -> dt.datetime:
    """When the pair's test runs in that night's window: a second picked by a hash of pair and night."""
    opens, closes = night_window(night, timezone, window)
    return opens + dt.timedelta(seconds=slot(f"{caller}|{callee}|{night}", int((closes - opens).total_seconds())))


def next_night(caller: str, callee: str, now: dt.datetime, timezone: str, window: str) -> tuple[dt.date, dt.datetime]:
    """(night, when) of the pair's next test: the first local night whose slot for the pair is still ahead."""
    today = now.astimezone(ZoneInfo(timezone)).date()
    for d in range(-1, 3):
        night = today + dt.timedelta(days=d)
        at = pair_slot(caller, callee, night, timezone, window)
        if at > now:
            return night, at
    raise AssertionError("a night window opens every day")   # pragma: no cover


def retry_key(check_id: int) -> str:
    """The key of a check's retry job (its payload counts the retries)."""
    return f"freshness:retry:{check_id}"


def pair_key(caller: str, callee: str, night: str) -> str:
    """The key of a pair's test of one night (its retries too)."""
    return f"freshness:pair:{caller}:{callee}:{night}"


def wait_key(session_id: str) -> str:
    """The key of the job that fails a pair test that never reported."""
    return f"freshness:pairwait:{session_id}"


def unhealthy(health: Mapping[str, Any] | None) -> bool:
    """A health check that fails (camera, microphone, clock, disk ...; contract.reports.Health)."""
    return bool(health) and health.get("status") == HealthStatus.FAIL   # type: ignore[union-attr]


class FreshnessService:
    """Re-tests, nightly pair tests, retries and the terminal watch (see the module's table)."""

    def __init__(self, db: Database, settings: ControllerSettings, clock: Clock, checks: CheckService,
                 escalations: EscalationService):
        self.db = db
        self.settings = settings
        self.cfg = settings.freshness
        self.clock = clock
        self.checks = checks
        self.escalations = escalations
        self.started = clock()      # the watch counts nobody offline for longer than this process has run
        self.wake = checks.wake
        checks.fresh = self

    def register(self, scheduler: Scheduler) -> None:
        scheduler.register("freshness.retest", self.job_retest)
        scheduler.register("freshness.retry", self.job_retry)
        scheduler.register("freshness.plan", self.job_plan)
        scheduler.register("freshness.pair", self.job_pair)
        scheduler.register("freshness.pair_wait", self.job_pair_wait)
        scheduler.register("freshness.watch", self.job_watch)
        self.wake = scheduler.wake

    async def ensure_jobs(self) -> None:
        """The periodic jobs exist (at start: whatever was left done by a crash is made pending)."""
        now = self.clock()
        async with self.db.transaction() as conn:
            for kind, key, on in (("freshness.plan", "freshness:plan", self.cfg.nightly_window is not None),
                                  ("freshness.watch", "freshness:watch", self.cfg.watch_s > 0)):
                job = await jobs_repo.get(conn, key)
                if on and (job is None or job["state"] not in ("pending", "running")):
                    await jobs_repo.enqueue(conn, kind, key, now, now, reschedule=True)
                elif not on and job is not None:
                    await jobs_repo.cancel(conn, [key], now)
        self.wake()

    async def _again(self, kind: str, key: str, at: dt.datetime) -> None:
        async with self.db.transaction() as conn:
            await jobs_repo.enqueue(conn, kind, key, at, self.clock(), reschedule=True)

    # --- the re-test in the 48-24 h window (rule 13) -----------------------------------------------

    async def plan_retest(self, conn: AsyncConnection, hearing: dict, now: dt.datetime) -> None:
        """Called where the hearing's checks are planned: a hearing that starts after the window opens
        gets its re-test job (a moved start gets a new one; the old one finds the start changed)."""
        w = self.cfg.retest_window_h
        # Compared as "start > now + opening": a start at the calendar's edge (year 1, which the
        # API takes) must not overflow the subtraction.
        if not w or hearing["start_utc"] <= now + dt.timedelta(hours=w[0]):
            return
        start = iso(hearing["start_utc"])
        await jobs_repo.enqueue(conn, "freshness.retest", f"freshness:retest:{hearing['id']}:{start}",
                                retest_at(hearing["id"], hearing["start_utc"], w), now,
                                {"hearing_id": hearing["id"], "start": start})

    async def job_retest(self, ctx: JobContext) -> None:
        now, hid = ctx.now, ctx.payload["hearing_id"]
        async with ctx.complete() as conn:
            h = await hearings_repo.get_hearing(conn, hid, for_update=True)
            if h["status"] not in hearings_repo.ACTIVE_STATUSES or iso(h["start_utc"]) != ctx.payload["start"]:
                return
            opens = h["start_utc"] - dt.timedelta(hours=self.cfg.retest_window_h[0])
            stale = [c for c in await checks_repo.checks_for(conn, [hid])
                     if c["kind"] == CheckKind.TEST and c["status"] in (CheckStatus.PASSED, CheckStatus.FAILED)
                     and (c["started_at"] is None or c["started_at"] < opens)]
            if not stale:
                return      # tested inside the window already (or still trying): fresh enough
            await repo.forget_jobs(conn, [retry_key(c["id"]) for c in stale])
            ids = await self.checks.run_now(conn, hid, CheckKind.TEST, now, only={c["id"] for c in stale})
            await events_repo.append(conn, hid, "test_retest", now, {
                "check_ids": ids, "terminals": [c["callee"] for c in stale if c["id"] in ids],
                "requested_at": iso(min(c["created_at"] for c in stale)),
                "deadline": iso(min(c["deadline"] for c in stale))})
        self.wake()

    # --- retries of a failed test -------------------------------------------------------------------

    async def after_failure(self, conn: AsyncConnection, c: dict, now: dt.datetime, detail: dict) -> bool:
        """A rule-13 test check failed (its hearing and check rows locked): plan its next retry, or -
        its retries spent - open test_retries_failed. False: not ours (a pre-connect check, no retries
        configured, no time left for one); the caller escalates as before."""
        delays = self.cfg.retry_delays_min
        if c["kind"] != CheckKind.TEST or not delays:
            return False
        job = await jobs_repo.get(conn, retry_key(c["id"]))
        done = job["payload"].get("retry", 0) if job and job["payload"].get("created_at") == iso(c["created_at"]) else 0
        h = await hearings_repo.get_hearing(conn, c["hearing_id"])
        retry_at = now + dt.timedelta(minutes=delays[done]) if done < len(delays) else None
        latest = h["start_utc"] - rules.PRECONNECT_OPENS - dt.timedelta(seconds=self.settings.checks.test_duration_s)
        if retry_at is not None and retry_at <= latest:
            await jobs_repo.enqueue(conn, "freshness.retry", retry_key(c["id"]), retry_at, now,
                                    {"check_id": c["id"], "retry": done + 1, "created_at": iso(c["created_at"])},
                                    reschedule=True)
            await events_repo.append(conn, c["hearing_id"], "test_retry_planned", now, {
                "check_id": c["id"], "kind": c["kind"], "caller": c["caller"], "callee": c["callee"],
                "attempt": done + 1, "attempts": len(delays), "retry_at": iso(retry_at)})
            return True
        if done == 0:
            return False        # not one retry had time: a plain failed test
        await self._escalate(conn, c["hearing_id"], c["callee"], now,
                             {"check_id": c["id"], "kind": c["kind"], "caller": c["caller"], "callee": c["callee"],
                              "retries": done, **detail})
        return True

    async def on_passed(self, conn: AsyncConnection, c: dict, now: dt.datetime) -> None:
        """A test of the check's pair passed: its retries start again, test_retries_failed is resolved."""
        await repo.forget_jobs(conn, [retry_key(c["id"])])
        await self.escalations.auto_resolve(conn, c["hearing_id"], RETRIES_FAILED, now,
                                            f"{c['kind']} check {c['id']} passed", subject=c["callee"])

    async def job_retry(self, ctx: JobContext) -> None:
        cid = ctx.payload["check_id"]
        async with ctx.complete() as conn:
            c = await checks_repo.get_check(conn, cid)
            h = await hearings_repo.get_hearing(conn, c["hearing_id"], for_update=True)
            c = await checks_repo.get_check(conn, cid, for_update=True)
            if c["status"] != CheckStatus.FAILED or h["status"] not in hearings_repo.ACTIVE_STATUSES:
                return      # passed, cancelled or re-run meanwhile
            await self.checks.run_now(conn, h["id"], c["kind"], ctx.now, only={cid})
        self.wake()

    async def _escalate(self, conn: AsyncConnection, hearing_id: int, callee: str, now: dt.datetime,
                        detail: dict) -> None:
        await self.escalations.open_in(conn, hearing_id=hearing_id, cause=RETRIES_FAILED, subject=callee,
                                       detail={**detail, "terminal_id": callee}, now=now)

    # --- nightly pair tests ------------------------------------------------------------------------

    async def job_plan(self, ctx: JobContext) -> None:
        """Plan each pair's next night (a job per pair and night: planning again changes nothing)."""
        now, window = ctx.now, self.cfg.nightly_window
        planned = 0
        async with ctx.complete() as conn:
            if window is not None:
                for p in await repo.pairs_ahead(conn, now, now + dt.timedelta(days=self.cfg.horizon_days)):
                    night, at = next_night(p.caller, p.callee, now, p.timezone, window)
                    _, closes = night_window(night, p.timezone, window)
                    payload = {"caller": p.caller, "callee": p.callee, "night": night.isoformat(),
                               "closes": iso(closes), "attempt": 0}
                    await jobs_repo.enqueue(conn, "freshness.pair", pair_key(p.caller, p.callee, night.isoformat()),
                                            at, now, payload)
                    planned += 1
        log.info("nightly pair tests: %d pair(s) planned", planned)
        if window is not None:
            await self._again("freshness.plan", "freshness:plan", now + PLAN_EVERY)

    async def job_pair(self, ctx: JobContext) -> None:
        now, p = ctx.now, ctx.payload
        a, b, attempt = p["caller"], p["callee"], p["attempt"]
        cs = self.settings.checks
        async with ctx.transaction() as conn:
            pairs = await repo.pairs_ahead(conn, now, now + dt.timedelta(days=self.cfg.horizon_days), a, b)
            hids = [hid for hid, _ in pairs[0].hearings] if pairs else []
            why = await self._skip(conn, a, b, hids, now, attempt)
            busy = bool(await live_repo.live_hearings_of(conn, [a, b], now) or await repo.checking(conn, [a, b])) \
                if why is None else False
        if why is not None:
            log.info("nightly test %s -> %s skipped: %s", a, b, why)
            return
        if busy:
            later = now + dt.timedelta(seconds=self.cfg.defer_s)
            if attempt == 0 and later >= dt.datetime.fromisoformat(p["closes"]):
                log.info("nightly test %s -> %s not run tonight: a terminal is in a live hearing", a, b)
                return
            async with ctx.complete(retry_at=later, error="a terminal is in a live hearing or a check"):
                return
        sid = NIGHTLY_PREFIX + secrets.token_hex(8)
        try:
            await self.checks.gateway.start_session(session_id=sid, caller=a, callee=b, kind=CheckKind.TEST,
                                                    profile=cs.test_profile, duration_s=cs.test_duration_s,
                                                    capacity=cs.test_capacity)   # the night: the link is free
        except AgentUnavailable as exc:
            # An agent away is the watch's business (agent_offline), not a failed test's.
            async with ctx.complete() as conn:
                for hid in hids:
                    await events_repo.append(conn, hid, "pair_test_not_run", now,
                                             {"caller": a, "callee": b, "error": str(exc), "nightly": True})
            return
        due = now + dt.timedelta(seconds=session_span_s(cs.test_duration_s, cs.test_capacity)
                                 + self.settings.scheduler.result_grace_s)
        async with ctx.complete() as conn:
            await jobs_repo.enqueue(conn, "freshness.pair_wait", wait_key(sid), due, now,
                                    {**p, "session_id": sid, "started_at": iso(now)})

    async def _skip(self, conn: AsyncConnection, a: str, b: str, hids: list[int], now: dt.datetime,
                    attempt: int) -> str | None:
        if not hids:
            return "no hearing of the pair ahead any more"
        if attempt == 0:
            last = await repo.last_tested(conn, a, b, hids)
            if last is not None and now - last < dt.timedelta(hours=self.cfg.skip_tested_h):
                return f"tested at {iso(last)}"
        sites = {}
        for tid in (a, b):
            t = await registry.find_terminal(conn, tid)
            if t is None:
                return f"terminal {tid!r} is gone"
            inst = await registry.get_institution(conn, t["institution_id"])
            if inst["kind"] != InstitutionKind.COURT:      # rule 24 suspends institutions, not courts
                sites[t["institution_id"]] = inst["region"]
        if rules.blocking_suspensions(await susp_repo.not_ended(conn, now), sites, now):
            return "VKS is suspended there (rule 24)"
        return None

    def owns(self, session_id: str) -> bool:
        """Whether the session is a nightly pair test's."""
        return session_id.startswith(NIGHTLY_PREFIX)

    async def on_pair_result(self, session_id: str, report: SessionReport | Mapping[str, Any]) -> None:
        """A nightly pair test's report (through the check service, from the hub)."""
        report = SessionReport.model_validate(report)
        j = self.checks.judge(report, self.checks.settings.checks.test_profile)   # the profile it ran with
        connected = connected_of(report)
        status = rules.check_status_for(j.verdict, connected)
        await self._pair_done(session_id, status, {
            "verdict": j.verdict, "reasons": list(j.reasons), "reason_codes": list(j.reason_codes), "mos": j.mos,
            "connected": connected, "error": report.error}, report)

    async def on_pair_failed(self, session_id: str, error: str) -> None:
        await self._pair_done(session_id, CheckStatus.FAILED, {"error": error, "connected": False})

    async def _pair_done(self, session_id: str, status: str, result: dict,
                         report: SessionReport | None = None) -> None:
        """Record a pair test's outcome once: the first to take its pending wait job (this report, or
        the wait job itself when none came) records it; a report is kept in the history too."""
        now = self.clock()
        async with self.db.transaction() as conn:
            if not await jobs_repo.cancel(conn, [wait_key(session_id)], now):
                log.warning("result of unknown or decided pair test %s ignored", session_id)
                return
            job = await jobs_repo.get(conn, wait_key(session_id))
            assert job is not None
            if report is not None:
                await history_repo.record(conn, at=now, caller=job["payload"]["caller"],
                                          callee=job["payload"]["callee"], kind=MeasurementKind.NIGHTLY,
                                          report=report, verdict=result["verdict"], test_id=session_id)
            await self._record(conn, job["payload"], status, result, now)
        self.wake()

    async def job_pair_wait(self, ctx: JobContext) -> None:
        """The pair test never reported: it failed."""
        async with ctx.complete() as conn:
            await self._record(conn, ctx.payload, CheckStatus.FAILED,
                               {"error": "no result from the agents in time", "connected": None}, ctx.now)
        try:
            await self.checks.gateway.stop_session(ctx.payload["session_id"])
        except Exception as exc:   # best effort: the session ends by itself anyway
            log.warning("stop_session %s: %s", ctx.payload["session_id"], exc)
        self.wake()

    async def _record(self, conn: AsyncConnection, p: dict, status: str, result: dict, now: dt.datetime) -> None:
        """The outcome in the record of the pair's hearings ahead; then resolved, retried or escalated."""
        a, b = p["caller"], p["callee"]
        pairs = await repo.pairs_ahead(conn, now, now + dt.timedelta(days=self.cfg.horizon_days), a, b)
        hids = [hid for hid, _ in pairs[0].hearings] if pairs else []
        for hid in sorted(hids):     # locked in id order, as every writer of several hearings
            await hearings_repo.get_hearing(conn, hid, for_update=True)
        detail = {"caller": a, "callee": b, "session_id": p["session_id"], "status": status, "nightly": True,
                  "attempt": p["attempt"], **result}
        for hid in hids:
            await events_repo.append(conn, hid, "pair_test_result", now, detail)
        if status == CheckStatus.PASSED:
            for hid in hids:
                await self.escalations.auto_resolve(conn, hid, RETRIES_FAILED, now,
                                                    f"nightly test {p['session_id']} passed", subject=b)
            return
        delays = self.cfg.retry_delays_min
        if p["attempt"] < len(delays):
            retry_at = now + dt.timedelta(minutes=delays[p["attempt"]])
            await jobs_repo.enqueue(conn, "freshness.pair", pair_key(a, b, p["night"]), retry_at, now,
                                    {k: p[k] for k in ("caller", "callee", "night", "closes")}
                                    | {"attempt": p["attempt"] + 1}, reschedule=True)
            for hid in hids:
                await events_repo.append(conn, hid, "test_retry_planned", now, {
                    "caller": a, "callee": b, "attempt": p["attempt"] + 1, "attempts": len(delays),
                    "retry_at": iso(retry_at), "nightly": True})
        elif hids:
            await self._escalate(conn, hids[0], b, now, {**detail, "retries": p["attempt"]})

    # --- the terminal watch (rule 14) --------------------------------------------------------------

    async def job_watch(self, ctx: JobContext) -> None:
        now = ctx.now
        horizon = now + dt.timedelta(hours=self.cfg.watch_horizon_h)
        async with ctx.complete() as conn:
            ahead = await repo.terminals_ahead(conn, now, horizon)
            seen = await repo.presence_at(conn, ahead, now)
            for tid, hids in ahead.items():
                await self._watch_one(conn, tid, hids, seen.get(tid), now)
            await self._resolve_gone(conn, now)
        if self.cfg.watch_s > 0:
            await self._again("freshness.watch", "freshness:watch", now + dt.timedelta(seconds=self.cfg.watch_s))
        self.wake()

    async def _watch_one(self, conn: AsyncConnection, tid: str, hids: list[int], p: repo.Presence | None,
                         now: dt.datetime) -> None:
        since = max(t for t in (p.last_seen if p else None, self.started) if t is not None)
        offline_s = (now - since).total_seconds()
        cause: str | None = None
        detail: dict[str, Any] = {}
        since_fault = None
        if p is not None and p.online:
            if p.health is not None and unhealthy(p.health):
                cause, detail = UNHEALTHY, {"terminal_id": tid, "status": p.health.get("status"),
                                            "problems": list(p.health.get("problems") or [])[:10],
                                            "checked_at": p.health.get("checked_at")}
        elif offline_s > self.cfg.offline_after_s:
            cause, detail = OFFLINE, {"reason": "terminal_offline", "terminal_id": tid,
                                      "offline_since": iso(p.last_seen) if p else None,
                                      "offline_s": round(offline_s)}
            since_fault = p.last_seen if p else None
        else:
            return      # offline for a moment only: nothing opened, nothing resolved
        for hid in hids:
            if cause is None or await self._suspended(conn, hid, now):
                continue
            if await repo.resolved_by_person(conn, hid, cause, tid, since_fault):
                continue    # a person closed it for this fault: the watch does not reopen it
            await self.escalations.open_in(conn, hearing_id=hid, cause=cause, subject=tid, detail=detail, now=now)

    async def _suspended(self, conn: AsyncConnection, hid: int, now: dt.datetime) -> bool:
        sites = await hearings_repo.sites_of(conn, hid)
        return bool(rules.blocking_suspensions(await susp_repo.not_ended(conn, now), sites, now))

    async def _resolve_gone(self, conn: AsyncConnection, now: dt.datetime) -> None:
        """The watch's open escalations whose fault is gone: the terminal is back (agent_offline), or
        healthy again (terminal_unhealthy). One for a hearing that has started stays until a person
        resolves it or the hearing is over (controller.escalation)."""
        mine = [e for e in await repo.open_escalations(conn, (OFFLINE, UNHEALTHY))
                if e["open_key"] and e["detail"].get("terminal_id")
                and e["open_key"].endswith(f":{e['detail']['terminal_id']}")]   # not one a person opened
        seen = await repo.presence_at(conn, {e["detail"]["terminal_id"] for e in mine}, now)
        for e in mine:
            tid = e["detail"]["terminal_id"]
            p = seen.get(tid)
            if p is not None and p.online and (e["cause"] == OFFLINE or not unhealthy(p.health)):
                note = "terminal back online" if e["cause"] == OFFLINE else "terminal healthy again"
                await self.escalations.auto_resolve(conn, e["hearing_id"], e["cause"], now, note, subject=tid)


FRESH_KEY = web.AppKey("freshness", FreshnessService)


async def ctx(app: web.Application):
    """cleanup_ctx (after the database is migrated): the periodic jobs exist. A database away at start
    is retried with backoff in the background (cancelled at shutdown) until they are made."""
    fresh = app[FRESH_KEY]

    async def ensure() -> bool:
        try:
            await fresh.ensure_jobs()
            return True
        except Exception as exc:
            log.warning("fresh results: the periodic jobs could not be made (%s); trying again", exc)
            return False

    async def retry() -> None:
        for attempt in itertools.count():
            await asyncio.sleep(backoff_s(attempt, 1.0, 60.0))
            if await ensure():
                return
    task = None if await ensure() else asyncio.create_task(retry(), name="freshness-ensure")
    try:
        yield
    finally:
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
