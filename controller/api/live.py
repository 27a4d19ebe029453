"""Live monitoring of a hearing (rule 22): its state and breaks, the secretary's resumption, and
the start and end of the hearing (which begin and stop monitoring). The flow itself is
controller.live."""
from __future__ import annotations

from typing import Literal

from aiohttp import web
from pydantic import BaseModel, Field

from contract.vocab import BreakCause, HearingStatus, LiveState
from controller import access, auth
from controller import hearings as ops
from controller import models as m
from controller.api.audit import Audit, audit, transaction
from controller.api.hearings import HEARING, view
from controller.api.requests import API, body, now, ok, path_int, who
from controller.api.routing import Route, items
from controller.errors import Conflict
from controller.keys import DB_KEY, LIVE_KEY, RESULTS_KEY
from controller.live.machine import NoDecisionPending, NotReady
from controller.live.views import breaks_view, live_view
from controller.store import events as events_repo
from controller.store import hearings as hearings_repo


class LiveBreakOut(BaseModel):
    """A break for technical reasons."""
    id: int
    cause: BreakCause
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
    terminal_id: str | None = None        # whose link failed
    terminal_name: str | None = None
    reasons: list[dict] = []              # [{code, params}]: the recommendation, its evidence
    decision: Literal["declared", "continued"] | None = None    # the judge's, as the secretary recorded it
    decided_at: str | None = None
    decided_by: str | None = None


class LiveIntervalOut(BaseModel):
    """One second of the monitoring session, both directions."""
    t: int
    at: str
    session_id: str
    inbound: dict | None
    outbound: dict | None
    rtt_ms: float | None
    stalled: bool
    verdict: str


class LiveParticipantOut(BaseModel):
    """One remote participant's link: its own monitoring session, state, break and last 120 s."""
    terminal_id: str
    terminal_name: str
    state: LiveState
    verdict: str
    since: str | None
    session_id: str | None
    attempt: int
    break_: LiveBreakOut | None = Field(None, alias="break")
    banner: dict | None
    stats: dict
    intervals: list[LiveIntervalOut]

    model_config = {"populate_by_name": True}


class LiveOut(BaseModel):
    """The live state of a hearing: the top-level keys are its first remote participant's."""
    hearing_id: int
    state: Literal["idle"] | LiveState
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
    participants: list[LiveParticipantOut] = []

    model_config = {"populate_by_name": True}


class BreakDecisionIn(BaseModel):
    """The presiding judge's decision on the recommended break (rule 22)."""
    model_config = {"extra": "forbid"}
    decision: Literal["declared", "continued"]


class BreakDecisionOut(BaseModel):
    """The breaks the decision was recorded on, and the live state after it."""
    decided: list[dict]
    live: LiveOut


class ResumeOut(BaseModel):
    """The break that ended, and the live state after it."""
    break_id: int
    duration_s: float
    cause: str
    live: LiveOut


async def _live(request: web.Request, hid: int) -> dict:
    svc = request.app[LIVE_KEY]
    async with request.app[DB_KEY].read() as conn:
        return await live_view(conn, hid, svc.now(), svc.intake.of(hid))


async def get_live(request: web.Request) -> web.Response:
    """GET /hearings/{id}/live."""
    return ok(await _live(request, path_int(request, "id")))


async def get_breaks(request: web.Request) -> web.Response:
    """GET /hearings/{id}/breaks."""
    hid = path_int(request, "id")
    async with request.app[DB_KEY].read() as conn:
        return ok({"items": await breaks_view(conn, hid, request.app[LIVE_KEY].now())})


async def post_resume(request: web.Request) -> web.Response:
    """POST /hearings/{id}/resume: 409 unless ready to resume."""
    hid = path_int(request, "id")
    try:
        out = await request.app[LIVE_KEY].resume(hid, who(request))
    except NotReady as exc:
        raise Conflict(str(exc), code="not_ready") from None
    return ok({**out, "live": await _live(request, hid)})


async def post_break_decision(request: web.Request) -> web.Response:
    """POST /hearings/{id}/break-decision: 409 unless a break waits for the judge's decision."""
    hid = path_int(request, "id")
    req = await body(request, BreakDecisionIn)
    async with request.app[DB_KEY].read() as conn:
        await hearings_repo.get_hearing(conn, hid)
    try:
        decided = await request.app[LIVE_KEY].decide(hid, req.decision, who(request))
    except NoDecisionPending as exc:
        raise Conflict(str(exc), code="no_decision_pending") from None
    return ok({"decided": decided, "live": await _live(request, hid)})


async def _set_status(request: web.Request, status: HearingStatus, event: str) -> web.Response:
    svc = request.app[LIVE_KEY]
    hid = path_int(request, "id")
    t = now(request)
    entry = audit(request)
    entry.skip()                        # unless the hearing changes (ops.change notes what did)
    async with transaction(request, t) as conn:
        h = await hearings_repo.get_hearing(conn, hid, for_update=True)
        starting = status == HearingStatus.IN_PROGRESS
        allowed = (HearingStatus.SCHEDULED, HearingStatus.POSTPONED) if starting else \
            (HearingStatus.IN_PROGRESS, HearingStatus.SCHEDULED)
        if h["status"] not in allowed:
            raise Conflict(f"hearing {hid} is {h['status']}: it cannot be {'started' if starting else 'ended'}")
        patch = m.HearingPatch.model_validate({"status": status.value})
        stop = await ops.change(conn, request.app[RESULTS_KEY], hid, patch, who(request), t, noted=entry.note)
        await events_repo.append(conn, hid, event, t, {"by": who(request)})
    await request.app[RESULTS_KEY].stop_sessions(stop)
    async with svc.lock:
        if status == HearingStatus.IN_PROGRESS:
            if svc.s.enabled:
                await svc.begin(hid, "hearing_started")
        else:
            await svc.stop(hid, "hearing_held", state=LiveState.ENDED)
    async with request.app[DB_KEY].read() as conn:
        return ok(await view(conn, hid, now(request)))


async def post_start(request: web.Request) -> web.Response:
    """POST /hearings/{id}/start."""
    return await _set_status(request, HearingStatus.IN_PROGRESS, "hearing_started")


async def post_end(request: web.Request) -> web.Response:
    """POST /hearings/{id}/end."""
    return await _set_status(request, HearingStatus.HELD, "hearing_ended")


ROUTES: list[Route] = [
    Route("GET", f"{API}/hearings/{{id}}/live", get_live, auth.READ,
          "Live monitoring of a hearing (rule 22): state, verdict, the open break, the last 120 s",
          response=LiveOut, scoped=access.HEARING),
    Route("GET", f"{API}/hearings/{{id}}/breaks", get_breaks, auth.READ,
          "The hearing's breaks for technical reasons, oldest first", response=items(LiveBreakOut),
          scoped=access.HEARING),
    Route("POST", f"{API}/hearings/{{id}}/resume", post_resume, auth.HEARINGS_WRITE,
          "The secretary confirms the resumption after a break (only when ready to resume)",
          response=ResumeOut, extra_responses={409: "not ready to resume"}, scoped=access.HEARING),
    Route("POST", f"{API}/hearings/{{id}}/break-decision", post_break_decision, auth.HEARINGS_WRITE,
          "The secretary records the presiding judge's decision on the recommended break: declared "
          "(event break_declared) or continued (event break_continued: a false alarm)",
          body=BreakDecisionIn, response=BreakDecisionOut,
          extra_responses={409: "no break waits for a decision"}, scoped=access.HEARING),
    Route("POST", f"{API}/hearings/{{id}}/start", post_start, auth.HEARINGS_WRITE,
          "The hearing starts (status in_progress, event hearing_started, monitoring begins)",
          response=m.HearingOut, extra_responses={409: "the hearing is not scheduled"},
          audit=Audit("hearing.update", HEARING), scoped=access.HEARING),
    Route("POST", f"{API}/hearings/{{id}}/end", post_end, auth.HEARINGS_WRITE,
          "The hearing ends (status held, event hearing_ended, monitoring stops)",
          response=m.HearingOut, extra_responses={409: "the hearing is not in progress"},
          audit=Audit("hearing.update", HEARING), scoped=access.HEARING),
]
