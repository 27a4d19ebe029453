"""A test session between two terminals on demand ("run a test now").

    POST /api/v1/tests {"caller", "callee", "profile", "duration_s", "capacity"} -> 202 {"id", "status": "running", ...}
    GET  /api/v1/tests/{id}  -> the request, its status and, when done, the caller's vks.test-report/1

No table of its own: the request is its audit row (who, when, the pair, the
profile), the session is the hub's `agent_sessions` row, and the result is the
caller's session report in `agent_reports` (controller.store.agents). So the
result can be read from any controller sharing the database. The session is
commanded through the app's gateway (`app[GATEWAY_KEY].start_session`), like
the scheduled checks; rule 24 applies: no session where VKS is suspended.
The report is judged with the app's quality model (`app[RESULTS_KEY].judge`).

A scoped user (controller.access) runs and reads the tests where the caller or the callee is at an
institution in their scope. No one, national users included, tests a terminal that is in a live
hearing now (409): the test would take the terminal's camera and link from the hearing. The check is
a read, so it is asked again once the session is commanded: one that went live meanwhile stops it.
"""
from __future__ import annotations

import datetime as dt
import logging
import secrets
from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from contract import reasons
from contract.reasons import Reason, ReasonCode
from contract.reports import SessionReport
from contract.vocab import DiagnosisStatus
from contract.wire import session_span_s
from controller import access, auth, rules
from controller.api.audit import Audit, audit, transaction
from controller.api.requests import API, body, now, ok, who
from controller.api.routing import Route
from controller.diagnosis import caller_outcome
from controller.errors import Conflict, Forbidden, Invalid, NotFound
from controller.gateway import AgentUnavailable
from controller.keys import DB_KEY, DIAGNOSIS_KEY, GATEWAY_KEY, RESULTS_KEY, SETTINGS_KEY
from controller.models import SLUG, FindingOut, In, ReasonCodeOut, SessionVerdict
from controller.store import diagnoses as diag_repo
from controller.store import live as live_repo
from controller.store import registry
from controller.store import suspensions as susp_repo
from controller.store.hearings import iso
from controller.store.schema import audit as audit_rows

ACTION = "test.run"
TARGET = "test:{id}"             # the audit row of a request: who asked, when, for which pair
PREFIX = "adhoc-"
log = logging.getLogger("controller.api")
TestStatus = Literal["running", "done", "failed", "stopped"]


class AdhocTestIn(In):
    """A test session to run now between two terminals."""

    caller: str = Field(pattern=SLUG, description="the terminal that calls (e.g. the courtroom)")
    callee: str = Field(pattern=SLUG, description="the terminal that answers")
    profile: str | None = Field(None, pattern=r"^[a-z0-9_-]{1,32}$",
                                description="agent media profile (default: checks.test_profile)")
    duration_s: float | None = Field(None, gt=0, le=600, description="default: checks.test_duration_s")
    capacity: bool = Field(True, description="also ramp each direction to what it carries after the media "
                                             "(the report's `capacity`; ~30 s more; an agent too old for it "
                                             "sends a report without it)")


class AdhocTestOut(BaseModel):
    """A test run on demand: its request, status and, when done, the caller's report."""

    id: str
    caller: str
    callee: str
    profile: str
    duration_s: float
    capacity: bool = Field(False, description="capacity was asked for")
    requested_by: str
    requested_at: str
    status: TestStatus = Field(description="running until the caller's report is stored")
    finished_at: str | None = None
    error: str | None = None
    verdict: SessionVerdict | None = None
    reasons: list[str] = Field(default_factory=list, description="the reasons in English")
    reason_codes: list[ReasonCodeOut] = Field(default_factory=list,
                                              description="the same reasons as codes (GET /api/v1/reasons)")
    mos: float | None = None
    report: dict[str, Any] | None = Field(None, description="the caller's vks.test-report/1")
    diagnosis: DiagnosisStatus | None = Field(None, description="degraded or failed: each side tested against "
                                              "the reference terminal (running, then done); null: not diagnosed")
    finding: FindingOut | None = Field(None, description="which side is at fault; null for a clean result")


def judged(app: web.Application, report: dict, profile: str | None) -> dict[str, Any]:
    """{verdict, reasons, reason_codes, mos} of a report of a session run with media `profile`, by
    the app's quality model; when the model cannot judge it, no verdict and the reason why - never
    the agent's own verdict (issue 10)."""
    try:
        j = app[RESULTS_KEY].judge(SessionReport.model_validate(report), profile)
    except Exception as exc:
        why = (str(exc).splitlines() or [type(exc).__name__])[0]
        log.warning("a test report could not be judged: %s", exc)
        why_not = Reason(ReasonCode.NOT_JUDGED, {"why": why})
        return {"verdict": None, "reasons": [reasons.text(why_not)], "reason_codes": [why_not.to_dict()], "mos": None}
    return {"verdict": j.verdict, "reasons": list(j.reasons), "reason_codes": list(j.reason_codes), "mos": j.mos}


def status_of(request_row: dict, session: dict | None, caller_report: dict | None, at: dt.datetime,
              grace_s: float) -> tuple[str, str | None]:
    """(status, error) from what is stored. Pure."""
    if caller_report is not None:
        return "done", caller_report.get("error")
    state = session["state"] if session is not None else None
    if session is not None and state == "failed":
        return "failed", session["error"] or "the session failed"
    if state == "stopped":
        return "stopped", "stopped by the controller"
    d = request_row["detail"]
    if at > request_row["at"] + dt.timedelta(seconds=session_span_s(d["duration_s"], bool(d.get("capacity")))
                                             + grace_s):
        return "failed", "no report from the caller in time"
    return "running", None


async def _blocked_by_suspension(conn, terminals: list[dict], at: dt.datetime) -> list[rules.Suspension]:
    sites = {}
    for t in terminals:
        inst = await registry.get_institution(conn, t["institution_id"])
        sites[inst["id"]] = inst["region"]
    return rules.blocking_suspensions(await susp_repo.not_ended(conn, at), sites, at)


async def not_in_live_hearing(conn: AsyncConnection, scope: access.Scope, terminal_ids: list[str], at: dt.datetime,
                              *, other_than: int | None = None, what: str = "test") -> None:
    """Conflict when a terminal is in a live hearing now (other than `other_than`), naming the hearing
    only when the user may see it: a session would take the terminal's camera and link from it.
    Shared by POST /tests and POST /hearings/{id}/checks."""
    busy = await live_repo.live_hearings_of(conn, terminal_ids, at, other_than=other_than)
    for tid in terminal_ids:
        hid = busy.get(tid)
        if hid is None:
            continue
        if await access.hearing_in_scope(conn, scope, hid):
            raise Conflict(f"terminal {tid!r} is in hearing {hid}, live now: {what} it after the hearing",
                           detail={"hearing_id": hid, "terminal_id": tid})
        raise Conflict(f"terminal {tid!r} is in a hearing live now: {what} it after the hearing",
                       detail={"terminal_id": tid})


async def start_test(request: web.Request) -> web.Response:
    """POST /tests: command the session through the gateway; the audit row is the request's record."""
    data = await body(request, AdhocTestIn)
    app = request.app
    checks = app[SETTINGS_KEY].checks
    if data.caller == data.callee:
        raise Invalid("callee: must differ from the caller", field="callee")
    profile = data.profile or checks.test_profile
    duration = float(data.duration_s or checks.test_duration_s)
    t = now(request)
    scope = access.of(request)
    async with app[DB_KEY].read() as conn:
        terminals = []
        for name in ("caller", "callee"):
            try:
                terminals.append(await registry.get_terminal(conn, getattr(data, name)))
            except NotFound as exc:
                raise Invalid(f"{name}: {exc.message}", field=name) from None
        # The registry is public: a terminal out of scope is named, the request refused (not hidden).
        if not scope.covers_any(x["institution_id"] for x in terminals):
            raise Forbidden(f"terminals {data.caller!r} and {data.callee!r} are both outside your scope: "
                            "the caller or the callee must be at an institution in your scope", field="caller")
        await not_in_live_hearing(conn, scope, [data.caller, data.callee], t)
        blocking = await _blocked_by_suspension(conn, terminals, t)
    if blocking:
        # Named only when it concerns the user (a suspension out of scope is not revealed).
        shown = [str(s.id) for s in blocking if access.suspension_visible(scope, s.institution_id, s.region)]
        which = f": suspension {', '.join(shown)}" if shown else ""
        raise Conflict(f"VKS is suspended there (rule 24){which}", code="suspended")
    sid = PREFIX + secrets.token_hex(8)
    detail = {"caller": data.caller, "callee": data.callee, "profile": profile, "duration_s": duration,
              "capacity": data.capacity}
    try:
        await app[GATEWAY_KEY].start_session(session_id=sid, caller=data.caller, callee=data.callee, kind="test",
                                             profile=profile, duration_s=duration, capacity=data.capacity)
    except AgentUnavailable as exc:
        raise Conflict(str(exc), code="unavailable") from None
    # Asked again once the session is commanded: a hearing that went live since the check above
    # (a read, not a lock) is seen here, and the session is stopped before it takes the terminal.
    try:
        async with app[DB_KEY].read() as conn:
            await not_in_live_hearing(conn, scope, [data.caller, data.callee], now(request))
    except Conflict:
        log.warning("test %s stopped at once: a terminal went live in a hearing meanwhile", sid)
        try:
            await app[GATEWAY_KEY].stop_session(sid)
        except Exception as exc:     # best effort: the session ends by itself anyway
            log.warning("stop_session %s: %s", sid, exc)
        raise
    async with transaction(request, t):
        audit(request).note(detail, id=sid)        # the request's record: the audit row itself
    # Issue 12: degraded or failed, each side is tested against the reference (a system action).
    app[DIAGNOSIS_KEY].watch_test(sid, caller=data.caller, callee=data.callee,
                                  duration_s=session_span_s(duration, data.capacity), profile=profile)
    return ok(AdhocTestOut.model_validate({"id": sid, "requested_by": who(request), "requested_at": iso(t),
                                           "status": "running", **detail}).model_dump(mode="json"), 202)


async def _require_test(conn: AsyncConnection, scope: access.Scope, sid: str, detail: dict) -> None:
    """NotFound - as for a test that does not exist - unless the caller or the callee is in scope
    (a terminal removed since is in no one's scope but a national user's)."""
    if scope.national:
        return
    found = [await registry.find_terminal(conn, detail.get(k) or "") for k in ("caller", "callee")]
    if not scope.covers_any(x["institution_id"] for x in found if x is not None):
        raise NotFound(f"no test {sid!r}")


async def get_test(request: web.Request) -> web.Response:
    """GET /tests/{id}: the request, its status and the caller's report when there is one."""
    sid = request.match_info["id"]
    app = request.app
    async with app[DB_KEY].read() as conn:
        row = (await conn.execute(select(audit_rows).where(audit_rows.c.action == ACTION,
                                                           audit_rows.c.target == TARGET.format(id=sid)))).first()
        if row is None:
            raise NotFound(f"no test {sid!r}")
        req = dict(row._mapping)
        await _require_test(conn, access.of(request), sid, req["detail"])
        d = req["detail"]
        caller_report, session = await caller_outcome(conn, sid, d["caller"])
        diag = diag_repo.view(await diag_repo.by_subject(conn, diag_repo.test_subject(sid)))
    finished_at = session and (session.get("finished_at") or session.get("received_at"))
    status, error = status_of(req, session, caller_report, now(request), app[SETTINGS_KEY].scheduler.result_grace_s)
    result: dict[str, Any] = {}
    if caller_report is not None:
        result = {**judged(app, caller_report, d.get("profile")), "report": caller_report}
    out = AdhocTestOut.model_validate({
        "id": sid, "requested_by": req["who"], "requested_at": iso(req["at"]), "status": status, "error": error,
        "finished_at": iso(finished_at) if finished_at and status != "running" else None, **d, **result,
        **diag})
    return ok(out.model_dump(mode="json"))


ROUTES: list[Route] = [
    Route("POST", f"{API}/tests", start_test, auth.TESTS_RUN,
          "Run a test session between two terminals now (202; poll GET /tests/{id})", body=AdhocTestIn,
          response=AdhocTestOut, status=202,
          audit=Audit(ACTION, TARGET),
          extra_responses={403: "neither terminal is in the user's scope",
                           409: "a terminal is not connected, is in a live hearing now, or VKS is suspended "
                                "there (rule 24)"}),
    Route("GET", f"{API}/tests/{{id}}", get_test, auth.READ, "A test run on demand: status and report",
          response=AdhocTestOut),
]
