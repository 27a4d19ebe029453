"""Which side (issue 12, part 2): when a pair's check or an on-demand test ends degraded or failed,
each side is tested against a reference terminal in the data centre at once, and the result carries
a `finding` (controller.findings says which; this module runs the sessions and keeps the rows).

    request(subject, caller, callee, pair, hearing_id)     a system action: no user asks for it
      -> diagnoses row (status running)                   controller.store.diagnoses
      -> the reference: settings.diagnosis.reference_terminal, else the first terminal (by id) of a
         datacentre institution online (never one of the pair)
      -> waits its turn: at most diagnosis.max_concurrent diagnoses per reference at once, so a bad
         morning of failing checks does not flood the reference
      -> two sessions at once, caller <-> reference and callee <-> reference (the hub's sessions;
         each side calls, the reference answers), judged by the quality model like any check
      -> finding, status done; for a check, a `check_finding` event in its hearing's record

The side sessions' outcome is read from the database (the hub stores every session and report,
whichever controller the agents are connected to), so any controller sharing the database sees it.
A side that is in a live hearing now, or whose agent is away, is not tested (`side_untested`).

Its results are shown only where the check or test is shown (GET /tests/{id}, the hearing's view):
the diagnosis has no route of its own.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import logging
import secrets
from collections.abc import Callable
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from contract.reports import SessionReport
from contract.vocab import DiagnosisStatus, InstitutionKind, SessionKind
from contract.wire import session_span_s
from controller import findings
from controller.gateway import AgentGateway, AgentUnavailable
from controller.settings import ControllerSettings
from controller.store import agents as agents_repo
from controller.store import diagnoses as diag_repo
from controller.store import events as events_repo
from controller.store import live as live_repo
from controller.store.db import Database
from controller.store.schema import hearings, institutions, terminals

log = logging.getLogger(__name__)
PREFIX = "diag-"          # the side sessions' ids
POLL_S = 1.0


async def caller_outcome(conn: AsyncConnection, session_id: str, caller: str) -> tuple[dict | None, dict | None]:
    """(the caller's final report of the session or None, the hub's session row or None)."""
    srow = (await conn.execute(select(agents_repo.agent_sessions)
                               .where(agents_repo.agent_sessions.c.session_id == session_id))).first()
    session = dict(srow._mapping) if srow is not None else None
    for r in await agents_repo.reports_for_session(conn, session_id, kind="session"):
        if r["terminal_id"] == caller:
            b = r["body"]
            return (b.get("report") if isinstance(b.get("report"), dict) else b), {**(session or {}),
                                                                                     "received_at": r["received_at"]}
    return None, session


def pair_leg(report: dict | None, verdict: str | None, error: str | None = None) -> findings.Leg:
    """The diagnosed result as a leg: a judged report, or a pair that gave no report (failed)."""
    if report is None:
        return findings.Leg(verdict=verdict or "unusable", connected=False, error=error)
    return findings.leg_of(report, verdict, error=error)


class DiagnosisService:
    """Runs the diagnoses (see the module); `request` is the hook checks and tests call."""

    def __init__(self, db: Database, settings: ControllerSettings, clock: Callable[[], dt.datetime],
                 gateway_ref: Callable[[], AgentGateway],
                 judge_ref: Callable[[], Callable[[SessionReport, str | None], Any]],
                 count: Callable[[str], None] = lambda finding: None):
        self.db = db
        self.settings = settings
        self.clock = clock
        self._gateway_ref = gateway_ref
        self._judge_ref = judge_ref
        self.count = count        # vks_controller_diagnoses_total{finding}
        self._slots: dict[str, asyncio.Semaphore] = {}
        self._tasks: set[asyncio.Task] = set()
        self.waiting = 0          # diagnoses waiting for their reference (for tests and the log)

    @staticmethod
    def owns(session_id: str) -> bool:
        """Whether the session is a diagnosis's side session (its outcome is read from the store)."""
        return session_id.startswith(PREFIX)

    @property
    def profile(self) -> str:
        """The side sessions' media profile (and the thresholds they are judged by)."""
        return self.settings.diagnosis.profile or self.settings.checks.test_profile

    @property
    def enabled(self) -> bool:
        return self.settings.diagnosis.enabled

    def request(self, subject: str, *, caller: str, callee: str, pair: findings.Leg,
                hearing_id: int | None = None, check: dict | None = None) -> None:
        """Diagnose `subject` (diag_repo.check_subject / test_subject) in the background; nothing
        when diagnosis is off or the pair is clean."""
        if not self.enabled or pair.clean:
            return
        self._spawn(self._run(subject, caller=caller, callee=callee, pair=pair, hearing_id=hearing_id, check=check),
                    f"diagnosis {subject}")

    def after_check(self, check: dict, report: dict | None, verdict: str | None, error: str | None) -> None:
        """The hook of controller.checks: a check's session ended (its judged report, or none when
        it failed without one)."""
        self.request(diag_repo.check_subject(check["id"]), caller=check["caller"], callee=check["callee"],
                     pair=pair_leg(report, verdict, error), hearing_id=check["hearing_id"], check=check)

    def watch_test(self, session_id: str, *, caller: str, callee: str, duration_s: float, profile: str) -> None:
        """The hook of POST /tests: once the test's report is in (or it failed), diagnose it when it
        is degraded or failed (judged by the profile it ran with)."""
        if not self.enabled:
            return
        self._spawn(self._watch(session_id, caller, callee, duration_s, profile), f"diagnosis watch {session_id}")

    async def _watch(self, sid: str, caller: str, callee: str, duration_s: float, profile: str) -> None:
        deadline = self.clock() + dt.timedelta(seconds=duration_s + self.settings.scheduler.result_grace_s)
        while True:
            async with self.db.read() as conn:
                report, session = await caller_outcome(conn, sid, caller)
            if report is not None:
                try:
                    verdict: str | None = str(self._judge_ref()(SessionReport.model_validate(report), profile).verdict)
                except Exception as exc:       # not judged: nothing to diagnose by
                    log.warning("test %s: its report could not be judged, not diagnosed: %s", sid, exc)
                    return
                pair = findings.leg_of(report, verdict)
                break
            if session is not None and session["state"] in ("failed", "stopped"):
                if session["state"] == "stopped":
                    return                      # stopped by the controller: nothing was measured
                pair = pair_leg(None, "unusable", session.get("error"))
                break
            if self.clock() >= deadline:
                pair = pair_leg(None, "unusable", "no report from the caller in time")
                break
            await asyncio.sleep(POLL_S)
        self.request(diag_repo.test_subject(sid), caller=caller, callee=callee, pair=pair)

    def _spawn(self, coro: Any, name: str) -> None:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("diagnosis failed", exc_info=task.exception())

    async def idle(self) -> None:
        """Wait for every diagnosis under way (tests)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def sweep(self) -> int:
        """At start: close the diagnoses left running by a controller that stopped (older than the
        longest a diagnosis can take: two session windows and the graces)."""
        cfg = self.settings.diagnosis
        longest = 2 * (session_span_s(float(cfg.duration_s or self.settings.checks.test_duration_s),
                                      self.settings.checks.test_capacity) + cfg.result_grace_s) \
            + self.settings.scheduler.result_grace_s
        now = self.clock()
        async with self.db.transaction() as conn:
            n = await diag_repo.sweep(conn, now - dt.timedelta(seconds=longest), now)
        if n:
            log.warning("%d diagnoses left running by a stopped controller closed without a finding", n)
        return n

    async def close(self) -> None:
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*list(self._tasks), return_exceptions=True)

    # --- one diagnosis --------------------------------------------------------------------

    async def reference(self, exclude: set[str]) -> str | None:
        """The reference terminal: the configured one, else the first datacentre terminal online."""
        online = self._gateway_ref().online()
        chosen = self.settings.diagnosis.reference_terminal
        if chosen is not None:
            return chosen if chosen in online and chosen not in exclude else None
        async with self.db.read() as conn:
            rows = (await conn.execute(
                select(terminals.c.id).join(institutions, institutions.c.id == terminals.c.institution_id)
                .where(institutions.c.kind == InstitutionKind.DATACENTRE.value).order_by(terminals.c.id))).all()
        return next((tid for (tid,) in rows if tid in online and tid not in exclude), None)

    async def _run(self, subject: str, *, caller: str, callee: str, pair: findings.Leg,
                   hearing_id: int | None, check: dict | None) -> None:
        now = self.clock()
        ref = await self.reference({caller, callee})
        async with self.db.transaction() as conn:
            did = await diag_repo.start(conn, subject, {
                "hearing_id": hearing_id, "caller": caller, "callee": callee, "reference": ref,
                "pair": pair.figures()}, now)
        sides: dict[str, findings.Leg | None] = {"a": None, "b": None}
        errors: dict[str, str] = {}
        slot = self._slots.setdefault(ref, asyncio.Semaphore(self.settings.diagnosis.max_concurrent)) if ref else None
        if slot is not None and slot.locked() and self.waiting >= self.settings.diagnosis.max_waiting:
            # A bad morning: the queue at the reference is full; this one is not run at all.
            log.warning("diagnosis of %s not run: %d already wait for the reference %s", subject, self.waiting, ref)
            ref = slot = None
        if ref is not None and slot is not None and hearing_id is not None and await self._too_late(hearing_id):
            errors = {k: "the hearing starts before the side tests would end" for k in ("a", "b")}
            slot = None      # two sessions through the SIZO's link as the hearing opens: not run
        if ref is not None and slot is not None:
            self.waiting += 1
            async with slot:
                self.waiting -= 1
                try:
                    sides, errors = await self._test_sides(did, caller, callee, ref)
                except Exception as exc:   # the database or the hub failed us: finish, never stay running
                    log.exception("diagnosis of %s: the side tests failed", subject)
                    sides, errors = {"a": None, "b": None}, {"a": str(exc), "b": str(exc)}
        await self._finish(did, subject, caller=caller, callee=callee, pair=pair, ref=ref, sides=sides,
                           errors=errors, hearing_id=hearing_id, check=check)

    async def _too_late(self, hearing_id: int) -> bool:
        """Whether the hearing starts before side sessions begun now would end (their media, the
        capacity ramp's at most 2 x 12 s, and the grace)."""
        cfg = self.settings.diagnosis
        longest = session_span_s(float(cfg.duration_s or self.settings.checks.test_duration_s),
                                 self.settings.checks.test_capacity) + cfg.result_grace_s
        async with self.db.read() as conn:
            start = (await conn.execute(select(hearings.c.start_utc).where(hearings.c.id == hearing_id))).scalar()
        return start is not None and start - self.clock() < dt.timedelta(seconds=longest)

    async def _test_sides(self, did: int, caller: str, callee: str,
                          ref: str) -> tuple[dict[str, findings.Leg | None], dict[str, str]]:
        """Both sessions at once; each side's leg (None: that side could not be tested)."""
        cfg, checks = self.settings.diagnosis, self.settings.checks
        profile = self.profile
        duration = float(cfg.duration_s or checks.test_duration_s)
        started: dict[str, str] = {}
        errors: dict[str, str] = {}
        deadline = self.clock() + dt.timedelta(seconds=session_span_s(duration, checks.test_capacity)
                                               + cfg.result_grace_s)
        async with self.db.read() as conn:
            busy = await live_repo.live_hearings_of(conn, [caller, callee, ref], self.clock())
        for side, terminal in (("a", caller), ("b", callee)):
            if terminal in busy or ref in busy:
                errors[side] = "in a hearing live now"
                continue
            sid = PREFIX + secrets.token_hex(8)
            try:
                await self._gateway_ref().start_session(session_id=sid, caller=terminal, callee=ref,
                                                        kind=SessionKind.TEST.value, profile=profile,
                                                        duration_s=duration,
                                                        # what each side carries: a thin uplink is found
                                                        capacity=checks.test_capacity)
            except AgentUnavailable as exc:
                errors[side] = str(exc)
                continue
            started[side] = sid
        async with self.db.transaction() as conn:
            await diag_repo.update_diagnosis(conn, did, session_a=started.get("a"), session_b=started.get("b"))
        legs: dict[str, findings.Leg | None] = {"a": None, "b": None}
        pending = dict(started)
        while pending:
            async with self.db.read() as conn:
                for side, sid in list(pending.items()):
                    report, session = await caller_outcome(conn, sid, caller if side == "a" else callee)
                    if report is not None:
                        legs[side] = self._leg(report)
                    elif session is not None and session["state"] in ("failed", "stopped"):
                        errors[side] = session.get("error") or f"the session {session['state']}"
                    else:
                        continue
                    del pending[side]
            if pending and self.clock() >= deadline:
                for side, sid in pending.items():
                    errors[side] = "no result from the agents in time"
                    try:
                        await self._gateway_ref().stop_session(sid)
                    except Exception as exc:  # best effort: the session ends by itself anyway
                        log.warning("stop_session %s: %s", sid, exc)
                break
            if pending:
                await asyncio.sleep(POLL_S)
        return legs, errors

    def _leg(self, report: dict) -> findings.Leg:
        try:
            j = self._judge_ref()(SessionReport.model_validate(report), self.profile)
            verdict = str(j.verdict)
        except Exception as exc:      # not judged: the side counts as untested, the reason kept
            log.warning("a diagnosis side report could not be judged: %s", exc)
            return findings.Leg(verdict=None, connected=True, error=f"not judged: {exc}")
        return findings.leg_of(report, verdict, reason_codes=list(j.reason_codes))

    async def _names(self, conn: AsyncConnection, caller: str, callee: str) -> findings.Names:
        """Each side by its institution's name (the terminal's id when it is gone)."""
        rows = {r.id: r.name for r in await conn.execute(
            select(terminals.c.id, institutions.c.name)
            .join(institutions, institutions.c.id == terminals.c.institution_id)
            .where(terminals.c.id.in_([caller, callee])))}
        return findings.Names(rows.get(caller, caller), rows.get(callee, callee))

    async def _finish(self, did: int, subject: str, *, caller: str, callee: str, pair: findings.Leg,
                      ref: str | None, sides: dict[str, findings.Leg | None], errors: dict[str, str],
                      hearing_id: int | None, check: dict | None) -> None:
        now = self.clock()
        async with self.db.transaction() as conn:
            names = await self._names(conn, caller, callee)
            f = findings.finding(caller=caller, callee=callee, pair=pair, side_a=sides["a"], side_b=sides["b"],
                                 reference=ref, names=names, errors=errors)
            await diag_repo.update_diagnosis(conn, did, status=DiagnosisStatus.DONE.value, finding=f,
                                             sides={k: (v.figures() if v else {"error": errors.get(k)})
                                                    for k, v in sides.items()},
                                             finished_at=now)
            if hearing_id is not None and check is not None and f is not None:
                await events_repo.append(conn, hearing_id, "check_finding", now, {
                    "check_id": check["id"], "kind": check["kind"], "caller": caller, "callee": callee,
                    "reference": ref, "code": f["code"], "side": f["side"], "segment": f["segment"],
                    "params": f["params"], "text": f["text"]})
        if f is not None:
            self.count(f["code"])
        log.info("diagnosis of %s (%s <-> %s, reference %s): %s", subject, caller, callee, ref,
                 f["text"] if f else "clean")
