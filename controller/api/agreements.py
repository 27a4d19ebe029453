"""The coordinator's list (rules 11, 12): GET /agreements - the hearings whose date and time wait
for (or have) this coordinator's agreement, each with its checks' results (the hearing view).

Whose: a hearing's agreement is given where its court lies (POST /hearings/{id}/agreement), so the
list holds the hearings whose court is in the user's scope (not those seen only through a
participant institution), and of a coordinator with a level (users.scope regional | department)
only the hearings that need that level's agreement (controller.rules.coordinator_for). Pending
ones are those not cancelled, held or over; soonest first."""
from __future__ import annotations

from aiohttp import web
from sqlalchemy import and_, false

from contract.vocab import ACTIVE_HEARING_STATUSES, AgreementState, Role
from controller import access, auth
from controller import models as m
from controller.api.requests import API, now, ok, q_choice, q_int
from controller.api.routing import Query, Route, items
from controller.keys import DB_KEY, USER_KEY
from controller.store import hearings as hearings_repo
from controller.store.schema import hearings


async def list_agreements(request: web.Request) -> web.Response:
    """GET /agreements?state=pending|given (pending by default)."""
    state = q_choice(request, "state", AgreementState) or AgreementState.PENDING
    t = now(request)
    scope = access.of(request)
    user = request[USER_KEY]
    cond = [hearings.c.agreement_state == state, hearings.c.status.in_(list(ACTIVE_HEARING_STATUSES))]
    if state == AgreementState.PENDING:
        cond.append(hearings.c.end_utc > t)
    if not scope.national:
        covered = sorted(scope.covered or ())
        cond.append(hearings.c.court_id.in_(covered) if covered else false())
    if user["role"] == Role.COORDINATOR and user.get("scope"):
        cond.append(hearings.c.agreement_coordinator == user["scope"])
    async with request.app[DB_KEY].read() as conn:
        ids = await hearings_repo.list_ids(conn, where=and_(*cond), limit=q_int(request, "limit", 500, 1, 5000),
                                           offset=q_int(request, "offset", 0, 0, 10**9))
        found = await hearings_repo.views(conn, ids, t)
    return ok({"items": found})


ROUTES: list[Route] = [
    Route("GET", f"{API}/agreements", list_agreements, auth.AGREEMENTS,
          "The hearings waiting for this coordinator's agreement (rules 11, 12), with their checks' results",
          response=items(m.HearingOut),
          query=[Query("state", {"type": "string", "enum": ["pending", "given"]}),
                 Query("limit", {"type": "integer"}), Query("offset", {"type": "integer"})]),
]
