"""Test requests and pre-connect checks: planning, running, results.

`CheckService` is the `results` object the agent hub reports to
(`on_session_result`, `on_session_failed`), and it owns the scheduler's job
handlers for checks and suspensions:

| job kind          | key                              | does                                          |
|-------------------|----------------------------------|-----------------------------------------------|
| check.run         | check:{id}:run                   | start the session (or block / defer / retry)  |
| check.deadline    | check:{id}:deadline              | flag the check overdue if it has no result    |
| check.timeout     | check:{id}:timeout:{session_id}  | a started session that never reported failed  |
| suspension.start  | suspension:{id}:start            | block checks when a future suspension begins  |
| suspension.end    | suspension:{id}:end              | unblock when a suspension expires             |

Every state change of a check appends an event to its hearing's record and
refreshes the hearing's stored verdict, in the same transaction. A failed check,
or a terminal out of reach when its check should run, opens an escalation
(rules 16, 17: controller.escalation) in that transaction too; a check that
passes later resolves it.
"""
from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from contract import quality
from contract.reports import SessionReport
from contract.vocab import CheckKind
from contract.wire import session_span_s
from controller import rules
from controller.escalation import CHECK_CAUSE, EscalationService
from controller.gateway import AgentGateway, AgentUnavailable
from controller.scheduler import Clock, JobContext, Scheduler
from controller.settings import ControllerSettings
from controller.store import checks as checks_repo
from controller.store import events as events_repo
from controller.store import hearings as hearings_repo
from controller.store import history as history_repo
from controller.store import jobs as jobs_repo
from controller.store import live as live_repo
from controller.store import suspensions as susp_repo
from controller.store.db import Database

log = logging.getLogger(__name__)

# A judge gives the verdict, the reasons (English text and codes, contract.reasons) and the MOS of
# a report of a session run with the named media profile (None: the default one).
Judge = Callable[[SessionReport, str | None], quality.Judgement]


def quality_judge(profiles: Mapping[str, quality.Thresholds], default: quality.Thresholds) -> Judge:
    """The shared quality model (contract.quality) with the thresholds the app loaded: the
    controller judges every report itself, not trusting the agent's verdict, by the threshold
    profile of the media profile the controller asked the session to run with (a 'monitor' test
    is held to 'monitor', as its agents held it; a media profile without thresholds of its own
    name is held to the default)."""
    def judge(report: SessionReport, profile: str | None) -> quality.Judgement:
        return quality.judge_report(report, profiles.get(profile or "", default))
    return judge


def judged_report(report: SessionReport, j: quality.Judgement) -> dict[str, Any]:
    """The report as the controller judged it: the agent's figures with the controller's verdict,
    reasons, reason codes and MOS (what a check keeps and shows; the agent's own words stay in
    its stored report)."""
    return {**report.dump(), "verdict": j.verdict, "reasons": list(j.reasons),
            "reason_codes": list(j.reason_codes), "mos": j.mos}


def connected_of(report: SessionReport) -> bool:
    """Whether the session connected: a report without the key did (older agents leave it out);
    a report that says null or false did not."""
    if "connected" not in report.model_fields_set:
        return True
    return bool(report.connected)


def run_key(check_id: int) -> str:
    """The scheduler key of a check's run job."""
    return f"check:{check_id}:run"


def deadline_key(check_id: int) -> str:
    """The scheduler key of a check's deadline job."""
    return f"check:{check_id}:deadline"


def timeout_key(check_id: int, session_id: str) -> str:
    """The scheduler key of the job that fails a session that never reported."""
    return f"check:{check_id}:timeout:{session_id}"


async def lock_check(conn: AsyncConnection, check_id: int) -> tuple[dict, dict]:
    """(hearing, check) with their rows locked in the one order every writer
    uses - hearing, then check, then job rows - so that concurrent writers on
    PostgreSQL never deadlock."""
    c = await checks_repo.get_check(conn, check_id)
    h = await hearings_repo.get_hearing(conn, c["hearing_id"], for_update=True)
    return h, await checks_repo.get_check(conn, check_id, for_update=True)


async def lock_session_check(conn: AsyncConnection, session_id: str) -> tuple[dict | None, dict | None]:
    """`lock_check` for the check a session runs: (None, None) for an unknown
    session, (hearing, None) when the check moved on to another session."""
    c = await checks_repo.check_by_session(conn, session_id)
    if c is None:
        return None, None
    h, c = await lock_check(conn, c["id"])
    if c["session_id"] != session_id:
        return h, None          # superseded between the two reads
    return h, c


class CheckService:
    """Plans, runs and records the checks of rules 13 and 15 (see the module's table)."""
    def __init__(self, db: Database, settings: ControllerSettings, clock: Clock,
                 gateway_ref: Callable[[], AgentGateway], judge: Judge | None = None, *,
                 escalations: EscalationService | None = None, wake: Callable[[], None] = lambda: None):
        self.db = db
        self.settings = settings
        self.clock = clock
        self._gateway_ref = gateway_ref   # read at call time: the hub is built after this service
        # The quality model: given, or loaded by the app before it serves (`use_judge`). Until then
        # no result can be judged - never by the agent's own verdict.
        self._judge = judge
        self.wake = wake
        self.escalations = escalations    # rules 16, 17; None: failed checks escalate nothing
        # controller.freshness.FreshnessService (which imports this module): re-tests, retries, nightly tests
        self.fresh: Any = None
        self.diagnosis: Any = None        # controller.diagnosis.DiagnosisService (issue 12: which side)

    def use_judge(self, judge: Judge) -> None:
        """Judge results with `judge` (the quality model, once the app has loaded it)."""
        self._judge = judge

    def profile_of(self, kind: str) -> str:
        """The media profile a check of `kind` runs with (and is judged by)."""
        cs = self.settings.checks
        return cs.test_profile if kind == "test" else cs.preconnect_profile

    def capacity_of(self, kind: str) -> bool:
        """Whether a check of `kind` ramps each direction after its media (the rule-13 test does)."""
        return kind == "test" and self.settings.checks.test_capacity

    @property
    def judge(self) -> Judge:
        """The quality model every result is judged by."""
        if self._judge is None:
            raise RuntimeError("the quality model is not loaded: no result can be judged")
        return self._judge

    @property
    def gateway(self) -> AgentGateway:
        return self._gateway_ref()

    def register(self, scheduler: Scheduler) -> None:
        scheduler.register("check.run", self.job_run)
        scheduler.register("check.deadline", self.job_deadline)
        scheduler.register("check.timeout", self.job_timeout)
        scheduler.register("suspension.start", self.job_suspension_start)
        scheduler.register("suspension.end", self.job_suspension_end)
        self.wake = scheduler.wake

    # --- planning (called inside the transaction that schedules a hearing) --------------

    async def create_checks(self, conn: AsyncConnection, hearing: dict, callees: list[str],
                            now: dt.datetime) -> None:
        """Rule 13 and 15: the test request (created now, run at once, deadline
        T-24 h) and the pre-connect check (in [T-30, T-20 min]) for each remote
        terminal, with their jobs."""
        existing = {(c["kind"], c["callee"]): c for c in await checks_repo.checks_for(conn, [hearing["id"]])}
        for kind in ("test", "preconnect"):
            p = rules.plan(kind, hearing["start_utc"], now)
            for callee in callees:
                values = {"caller": hearing["court_terminal_id"], "created_at": p.created_at,
                          "due_from": p.due_from, "deadline": p.deadline, "late": p.late, "status": p.status}
                old = existing.get((kind, callee))
                if old is None:
                    cid = await checks_repo.insert_check(conn, {"hearing_id": hearing["id"], "kind": kind,
                                                                "callee": callee, **values})
                else:    # a participant removed earlier and added again: a fresh request
                    cid = old["id"]
                    await checks_repo.update_check(conn, cid, **values, overdue_at=None, attempts=0,
                                                   session_id=None, started_at=None, finished_at=None,
                                                   result=None, verdict=None, error=None)
                await jobs_repo.enqueue(conn, "check.run", run_key(cid), p.run_at, now, {"check_id": cid},
                                        reschedule=True)
                await jobs_repo.enqueue(conn, "check.deadline", deadline_key(cid), p.deadline, now,
                                        {"check_id": cid}, reschedule=True)
            await events_repo.append(conn, hearing["id"],
                                     "test_request_created" if kind == "test" else "preconnect_scheduled", now,
                                     {"deadline": hearings_repo.iso(p.deadline),
                                      "due_from": hearings_repo.iso(p.due_from), "late": p.late,
                                      "terminals": callees})
        if self.fresh is not None:
            await self.fresh.plan_retest(conn, hearing, now)
        await self._block_if_suspended(conn, hearing["id"], now)

    async def replan(self, conn: AsyncConnection, hearing: dict, now: dt.datetime) -> None:
        """The start moved: re-plan every check that has not finished."""
        for c in await checks_repo.checks_for(conn, [hearing["id"]]):
            if c["status"] in rules.FINISHED:
                continue
            p = rules.plan(c["kind"], hearing["start_utc"], now)
            status = c["status"]
            if status in ("pending", "scheduled", "overdue"):
                status = p.status
            await checks_repo.update_check(conn, c["id"], due_from=p.due_from, deadline=p.deadline,
                                           late=p.late, status=status, overdue_at=None)
            if c["status"] != "running":
                await jobs_repo.enqueue(conn, "check.run", run_key(c["id"]), p.run_at, now,
                                        {"check_id": c["id"]}, reschedule=True)
            await jobs_repo.enqueue(conn, "check.deadline", deadline_key(c["id"]), p.deadline, now,
                                    {"check_id": c["id"]}, reschedule=True)
        if self.fresh is not None:
            await self.fresh.plan_retest(conn, hearing, now)
        await self._block_if_suspended(conn, hearing["id"], now)
        await self.refresh_verdict(conn, hearing["id"], now)

    async def cancel_checks(self, conn: AsyncConnection, hearing_id: int, now: dt.datetime,
                            callees: set[str] | None = None) -> list[str]:
        """Cancel the hearing's open checks (only those with `callees` when
        given) and their jobs. Returns session ids still running (to stop after
        commit)."""
        running = []
        for c in await checks_repo.checks_for(conn, [hearing_id]):
            if c["status"] in rules.FINISHED or (callees is not None and c["callee"] not in callees):
                continue
            if c["status"] == "running" and c["session_id"]:
                running.append(c["session_id"])
            await checks_repo.update_check(conn, c["id"], status="cancelled", finished_at=now)
            keys = [run_key(c["id"]), deadline_key(c["id"])]
            if c["session_id"]:
                keys.append(timeout_key(c["id"], c["session_id"]))
            await jobs_repo.cancel(conn, keys, now)
        return running

    async def refresh_verdict(self, conn: AsyncConnection, hearing_id: int, now: dt.datetime) -> str:
        view = (await hearings_repo.views(conn, [hearing_id], now))[0]
        await hearings_repo.update_hearing(conn, hearing_id, verdict=view["verdict"])
        return view["verdict"]

    # --- suspensions (rule 24) -----------------------------------------------------------

    async def _blocking(self, conn: AsyncConnection, hearing_id: int, now: dt.datetime) -> list[rules.Suspension]:
        sites = await hearings_repo.sites_of(conn, hearing_id)
        return rules.blocking_suspensions(await susp_repo.not_ended(conn, now), sites, now)

    async def _block_if_suspended(self, conn: AsyncConnection, hearing_id: int, now: dt.datetime) -> list[str]:
        blocking = await self._blocking(conn, hearing_id, now)
        if not blocking:
            return []
        stop = []
        for c in await checks_repo.checks_for(conn, [hearing_id]):
            if c["status"] in rules.FINISHED or c["status"] == "blocked":
                continue
            if c["status"] == "running" and c["session_id"]:
                stop.append(c["session_id"])
            await checks_repo.update_check(conn, c["id"], status="blocked", session_id=None)
            await events_repo.append(conn, hearing_id, "check_blocked", now, {
                "check_id": c["id"], "kind": c["kind"], "callee": c["callee"],
                "suspension_ids": [s.id for s in blocking]})
        return stop

    async def block_hearings(self, conn: AsyncConnection, hearing_ids: list[int], now: dt.datetime,
                             suspension: dict) -> list[str]:
        stop = []
        for hid in hearing_ids:
            await hearings_repo.get_hearing(conn, hid, for_update=True)
            await events_repo.append(conn, hid, "suspended", now, {
                "suspension_id": suspension["id"], "reason": suspension["reason"],
                "institution_id": suspension["institution_id"], "region": suspension["region"]})
            stop += await self._block_if_suspended(conn, hid, now)
            await self.refresh_verdict(conn, hid, now)
        return stop

    async def unblock_hearings(self, conn: AsyncConnection, hearing_ids: list[int], now: dt.datetime,
                               suspension: dict) -> None:
        for hid in hearing_ids:
            await hearings_repo.get_hearing(conn, hid, for_update=True)
            await events_repo.append(conn, hid, "suspension_lifted", now, {"suspension_id": suspension["id"]})
            if await self._blocking(conn, hid, now):
                await self.refresh_verdict(conn, hid, now)
                continue
            for c in await checks_repo.checks_for(conn, [hid]):
                if c["status"] != "blocked":
                    continue
                status = "overdue" if c["overdue_at"] else ("scheduled" if now < c["due_from"] else "pending")
                await checks_repo.update_check(conn, c["id"], status=status)
                await jobs_repo.enqueue(conn, "check.run", run_key(c["id"]), max(now, c["due_from"]), now,
                                        {"check_id": c["id"]}, reschedule=True)
                await events_repo.append(conn, hid, "check_unblocked", now, {
                    "check_id": c["id"], "kind": c["kind"], "callee": c["callee"]})
            await self.refresh_verdict(conn, hid, now)
        self.wake()

    async def stop_sessions(self, session_ids: list[str]) -> None:
        for sid in session_ids:
            try:
                await self.gateway.stop_session(sid)
            except Exception as exc:  # best effort: the session ends by itself anyway
                log.warning("stop_session %s: %s", sid, exc)

    # --- escalation (rules 16, 17) -------------------------------------------------------

    async def _escalate(self, conn: AsyncConnection, c: dict, now: dt.datetime, detail: dict) -> None:
        """A failed check (or a terminal out of reach for it) tells the
        technicians of both sides at once, in this same transaction."""
        if self.escalations is not None:
            await self.escalations.open_in(conn, hearing_id=c["hearing_id"], cause=CHECK_CAUSE[CheckKind(c["kind"])],
                                           detail={"check_id": c["id"], "kind": c["kind"], "caller": c["caller"],
                                                   "callee": c["callee"], **detail}, now=now)

    async def _fault_gone(self, conn: AsyncConnection, c: dict, now: dt.datetime) -> None:
        """The check passed: its escalation is resolved unless another terminal's
        check of the same kind still fails."""
        if self.escalations is None:
            return
        others = [x for x in await checks_repo.checks_for(conn, [c["hearing_id"]])
                  if x["kind"] == c["kind"] and x["id"] != c["id"] and x["status"] == "failed"]
        if not others:
            await self.escalations.auto_resolve(conn, c["hearing_id"], CHECK_CAUSE[CheckKind(c["kind"])], now,
                                                f"{c['kind']} check {c['id']} passed")
        if self.fresh is not None:
            await self.fresh.on_passed(conn, c, now)

    # --- jobs ----------------------------------------------------------------------------

    async def job_run(self, ctx: JobContext) -> None:
        now = ctx.now
        cid = ctx.payload["check_id"]
        cs = self.settings.checks
        busy: dict[str, int] = {}
        async with ctx.transaction() as conn:
            h, c = await lock_check(conn, cid)
            if c["status"] in rules.FINISHED or h["status"] not in hearings_repo.ACTIVE_STATUSES:
                skip = True
            elif c["status"] == "blocked" or await self._blocking(conn, h["id"], now):
                await self._block_if_suspended(conn, h["id"], now)
                await self.refresh_verdict(conn, h["id"], now)
                skip = True
            elif now < c["due_from"]:
                skip = True   # replanned to later; its job was rescheduled
            elif busy := await live_repo.live_hearings_of(conn, [x for x in (c["caller"], c["callee"]) if x], now,
                                                          other_than=h["id"]):
                skip = True   # deferred below: the session would take a terminal from a live hearing
            else:
                skip = False
                session_id = uuid.uuid4().hex
                attempt = c["attempts"] + 1
                await checks_repo.update_check(conn, cid, status="running", session_id=session_id,
                                               attempts=attempt, started_at=now, error=None)
                duration = cs.test_duration_s if c["kind"] == "test" else cs.preconnect_duration_s
                profile = self.profile_of(c["kind"])
                await jobs_repo.enqueue(conn, "check.timeout", timeout_key(cid, session_id),
                                        now + dt.timedelta(seconds=session_span_s(duration, self.capacity_of(c["kind"]))
                                                           + self.settings.scheduler.result_grace_s),
                                        now, {"check_id": cid, "session_id": session_id})
        if busy:
            await self._defer(ctx, cid, busy, now)
            return
        if skip:
            return   # the scheduler marks the job done
        try:
            await self.gateway.start_session(session_id=session_id, caller=c["caller"], callee=c["callee"],
                                             kind=c["kind"], profile=profile, duration_s=duration,
                                             capacity=self.capacity_of(c["kind"]))
        except Exception as exc:
            unavailable = isinstance(exc, AgentUnavailable)
            error = str(exc) if unavailable else f"{type(exc).__name__}: {exc}"
            retry_at = now + dt.timedelta(seconds=self.settings.scheduler.retry_s)
            give_up = retry_at >= h["start_utc"]
            async with ctx.complete(retry_at=None if give_up else retry_at) as conn:
                # While an agent stays away the check is retried quietly: the record
                # shows the first failure and any change of the error, not every retry.
                await self._attempt_failed(conn, cid, session_id, now, error, give_up=give_up,
                                           reschedule=False, count_attempt=not unavailable,
                                           quiet=unavailable and c["error"] == error, unreachable=unavailable)
            return
        async with ctx.complete() as conn:
            await events_repo.append(conn, h["id"], "check_started", now, {
                "check_id": cid, "kind": c["kind"], "caller": c["caller"], "callee": c["callee"],
                "session_id": session_id, "attempt": attempt, "late": now > c["deadline"]})

    async def _defer(self, ctx: JobContext, cid: int, busy: dict[str, int], now: dt.datetime) -> None:
        """A terminal of the check is in another hearing live now: no session (it would take the
        terminal's camera and link from that hearing); the job runs again later and asks again. The
        check's record says why once, not at every retry, and does not name the other hearing (its
        readers may not see it); the log does."""
        retry_at = now + dt.timedelta(seconds=self.settings.scheduler.retry_s)
        terminal = sorted(busy)[0]
        error = f"terminal {terminal!r} is in another hearing live now: the check waits until it is over"
        log.info("check %s deferred to %s: terminal %s is in hearing %s, live now", cid, retry_at.isoformat(),
                 terminal, busy[terminal])
        async with ctx.complete(retry_at=retry_at, error=error) as conn:
            _, c = await lock_check(conn, cid)
            if c["status"] in rules.FINISHED or c["status"] in ("running", "blocked") or c["error"] == error:
                return
            await checks_repo.update_check(conn, cid, error=error)
            await events_repo.append(conn, c["hearing_id"], "check_retry", now, {
                "check_id": cid, "kind": c["kind"], "callee": c["callee"], "error": error, "terminal_id": terminal,
                "reason": "in_live_hearing", "retry_at": hearings_repo.iso(retry_at)})
            await self.refresh_verdict(conn, c["hearing_id"], now)

    async def _attempt_failed(self, conn: AsyncConnection, cid: int, session_id: str, now: dt.datetime,
                              error: str, *, give_up: bool, reschedule: bool, count_attempt: bool = True,
                              quiet: bool = False, unreachable: bool = False) -> None:
        _, c = await lock_check(conn, cid)
        if c["session_id"] != session_id or c["status"] != "running":
            return   # stale: a newer attempt or a result already decided the check
        await jobs_repo.cancel(conn, [timeout_key(cid, session_id)], now)
        attempts = c["attempts"] if count_attempt else max(0, c["attempts"] - 1)
        if give_up:
            await checks_repo.update_check(conn, cid, status="failed", finished_at=now, error=error,
                                           verdict="unusable", session_id=session_id, attempts=attempts)
            await events_repo.append(conn, c["hearing_id"], "check_failed", now, {
                "check_id": cid, "kind": c["kind"], "callee": c["callee"], "error": error})
            # A test that could not run is retried like one that failed its thresholds (issue 12),
            # unless an agent could not be reached at all: that is escalated at once (rule 16).
            if unreachable or self.fresh is None or not await self.fresh.after_failure(conn, c, now,
                                                                                        {"error": error}):
                await self._escalate(conn, c, now, {"error": error})
            if self.diagnosis is not None:
                self.diagnosis.after_check(c, None, "unusable", error)
        else:
            status = "overdue" if c["overdue_at"] else "pending"
            await checks_repo.update_check(conn, cid, status=status, error=error, attempts=attempts)
            retry_at = now + dt.timedelta(seconds=self.settings.scheduler.retry_s)
            if reschedule:
                await jobs_repo.enqueue(conn, "check.run", run_key(cid), retry_at, now, {"check_id": cid},
                                        reschedule=True)
            if not quiet:
                await events_repo.append(conn, c["hearing_id"], "check_retry", now, {
                    "check_id": cid, "kind": c["kind"], "callee": c["callee"], "error": error,
                    "retry_at": hearings_repo.iso(retry_at)})
            if unreachable:     # rule 16: no connection with the other side - tell the technicians now
                await self._escalate(conn, c, now, {"error": error, "retrying": True})
        await self.refresh_verdict(conn, c["hearing_id"], now)

    async def job_deadline(self, ctx: JobContext) -> None:
        now = ctx.now
        async with ctx.complete() as conn:
            _, c = await lock_check(conn, ctx.payload["check_id"])
            if c["status"] in rules.FINISHED or c["overdue_at"] is not None:
                return
            if not rules.is_overdue(c["status"], c["deadline"], now):
                return   # replanned later; its deadline job was rescheduled
            status = "overdue" if c["status"] in ("pending", "scheduled") else c["status"]
            await checks_repo.update_check(conn, c["id"], overdue_at=now, status=status)
            await events_repo.append(conn, c["hearing_id"], "check_overdue", now, {
                "check_id": c["id"], "kind": c["kind"], "callee": c["callee"],
                "deadline": hearings_repo.iso(c["deadline"]), "status": c["status"]})
            await self.refresh_verdict(conn, c["hearing_id"], now)

    async def job_timeout(self, ctx: JobContext) -> None:
        now = ctx.now
        cid, sid = ctx.payload["check_id"], ctx.payload["session_id"]
        async with ctx.complete() as conn:
            h, c = await lock_check(conn, cid)
            give_up = c["attempts"] >= self.settings.scheduler.max_attempts or now >= h["start_utc"]
            await self._attempt_failed(conn, cid, sid, now, "no result from the agents in time",
                                       give_up=give_up, reschedule=True)
        await self.stop_sessions([sid])
        self.wake()

    async def job_suspension_start(self, ctx: JobContext) -> None:
        stop: list[str] = []
        async with ctx.complete() as conn:
            s = await susp_repo.get(conn, ctx.payload["suspension_id"])
            if s["lifted_at"] is None:
                ids = await hearings_repo.hearings_affected(conn, institution_id=s["institution_id"],
                                                            region=s["region"], after=ctx.now)
                stop = await self.block_hearings(conn, ids, ctx.now, s)
        await self.stop_sessions(stop)

    async def job_suspension_end(self, ctx: JobContext) -> None:
        async with ctx.complete() as conn:
            s = await susp_repo.get(conn, ctx.payload["suspension_id"])
            if s["lifted_at"] is None:
                ids = await hearings_repo.hearings_affected(conn, institution_id=s["institution_id"],
                                                            region=s["region"], after=ctx.now)
                await self.unblock_hearings(conn, ids, ctx.now, s)

    # --- results from the hub ------------------------------------------------------------

    async def on_session_result(self, session_id: str, report: SessionReport | Mapping[str, Any]) -> None:
        """Store an agent's `vks.test-report/1` on its check, judge it, update the
        hearing's verdict and record the event. A duplicate is stored once; a
        report for an unknown or superseded session is ignored (logged). A report
        given as its JSON is read through the model first."""
        if self.fresh is not None and self.fresh.owns(session_id):
            return await self.fresh.on_pair_result(session_id, report)
        report = SessionReport.model_validate(report)
        connected = connected_of(report)
        now = self.clock()
        async with self.db.transaction() as conn:
            _, c = await lock_session_check(conn, session_id)
            if c is None:
                if not await history_repo.record_session(conn, session_id, report, self.judge, now) and not (
                        self.diagnosis is not None and self.diagnosis.owns(session_id)):  # a diagnosis reads its own
                    log.warning("result for unknown or superseded session %s ignored", session_id)
                return
            j = self.judge(report, self.profile_of(c["kind"]))   # pure and quick: no thread needed
            verdict, reasons, codes, mos = j.verdict, list(j.reasons), list(j.reason_codes), j.mos
            if c["status"] != "running":
                # Already decided (a duplicate report), or cancelled/blocked meanwhile.
                if c["result"] is None and c["status"] in ("cancelled", "blocked"):
                    await events_repo.append(conn, c["hearing_id"], "check_result_ignored", now, {
                        "check_id": c["id"], "session_id": session_id, "status": c["status"]})
                return
            status = rules.check_status_for(verdict, connected)
            await checks_repo.update_check(conn, c["id"], status=status, result=judged_report(report, j),
                                           verdict=verdict,
                                           finished_at=now, error=report.error)
            await history_repo.record_check(conn, c, report, verdict, now)       # kept for the history
            await jobs_repo.cancel(conn, [timeout_key(c["id"], session_id)], now)
            await events_repo.append(conn, c["hearing_id"], "check_result", now, {
                "check_id": c["id"], "kind": c["kind"], "caller": c["caller"], "callee": c["callee"],
                "session_id": session_id, "status": status, "verdict": verdict, "reasons": reasons,
                "reason_codes": codes, "mos": mos, "late": now > c["deadline"]})
            if status == "failed":
                detail = {"verdict": verdict, "reasons": reasons, "reason_codes": codes, "mos": mos,
                          "connected": connected, "error": report.error, "session_id": session_id}
                if self.fresh is None or not await self.fresh.after_failure(conn, c, now, detail):
                    await self._escalate(conn, c, now, detail)
            else:
                await self._fault_gone(conn, {**c, "status": status}, now)
            await self.refresh_verdict(conn, c["hearing_id"], now)
        if self.diagnosis is not None:
            self.diagnosis.after_check(c, judged_report(report, j), verdict, report.error)

    async def on_session_failed(self, session_id: str, error: str) -> None:
        """The session could not run (e.g. an agent dropped mid-session): retry
        while there is time and attempts are left, else the check failed."""
        if self.fresh is not None and self.fresh.owns(session_id):
            return await self.fresh.on_pair_failed(session_id, error)
        now = self.clock()
        async with self.db.transaction() as conn:
            h, c = await lock_session_check(conn, session_id)
            if h is None or c is None:
                log.warning("failure of unknown or superseded session %s ignored: %s", session_id, error)
                return
            give_up = c["attempts"] >= self.settings.scheduler.max_attempts or now >= h["start_utc"]
            await self._attempt_failed(conn, c["id"], session_id, now, error, give_up=give_up, reschedule=True)
        self.wake()

    async def run_now(self, conn: AsyncConnection, hearing_id: int, kind: str, now: dt.datetime,
                      only: set[int] | None = None) -> list[int]:
        """A technician asks to run the hearing's test (or pre-connect) now: the
        checks of that kind (those of `only`, when given) are (re)opened and their run jobs made due now."""
        ids = []
        for c in await checks_repo.checks_for(conn, [hearing_id]):
            if c["kind"] != kind or c["status"] in ("running", "cancelled", "blocked") or \
                    (only is not None and c["id"] not in only):
                continue
            status = "overdue" if c["overdue_at"] and c["status"] != "passed" else "pending"
            await checks_repo.update_check(conn, c["id"], status=status, due_from=min(c["due_from"], now),
                                           finished_at=None)
            await jobs_repo.enqueue(conn, "check.run", run_key(c["id"]), now, now, {"check_id": c["id"]},
                                    reschedule=True)
            ids.append(c["id"])
        return ids
