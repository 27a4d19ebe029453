"""The history of a terminal and of a pair (issue 12): every check and test, day by day.

    GET /api/v1/terminals/{id}/history?days=30[&timezone=Asia/Almaty]
    GET /api/v1/pairs/{a}/{b}/history?days=30[&timezone=...]      (the pair unordered: a/b = b/a)
    -> {"items": [{day, checks, loss_ratio_p50, loss_ratio_p95, jitter_ms_p50, jitter_ms_p95,
                   rtt_ms_p50, rtt_ms_p95, capacity_kbps_p50}]}

The results (controller.store.history) of the last `days` local days, today included, grouped by
the local day in the court's time zone - the terminal's institution's for a terminal, the court
terminal's institution's for a pair (else the first terminal's by id) - unless `timezone` names
another (an IANA name). A day without a result is absent; a figure no result of the day measured is
null. `days` is 1..`history.keep_days` (default 30): what is kept.

Scope (controller.access): a scoped user reads the history of a terminal at an institution in
their scope, and of a pair with either terminal in it; anything else is a 404, as for a terminal
that does not exist.
"""
from __future__ import annotations

from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from aiohttp import web
from pydantic import BaseModel, Field

from contract.vocab import InstitutionKind
from controller import access, auth
from controller.api.requests import API, now, ok, q_int
from controller.api.routing import Query, Route, items
from controller.errors import Invalid, NotFound
from controller.keys import DB_KEY, SETTINGS_KEY
from controller.store import history, registry

DEFAULT_DAYS = 30


class HistoryDayOut(BaseModel):
    """One local day of a terminal's or a pair's results: how many, and the figures' nearest-rank
    percentiles (the worse direction of each result; null when no result of the day measured it)."""

    day: str = Field(description="the local day, YYYY-MM-DD, in the court's time zone")
    checks: int = Field(description="checks and tests with a result that day")
    loss_ratio_p50: float | None = None
    loss_ratio_p95: float | None = None
    jitter_ms_p50: float | None = None
    jitter_ms_p95: float | None = None
    rtt_ms_p50: float | None = None
    rtt_ms_p95: float | None = None
    capacity_kbps_p50: float | None = Field(None, description="the lower direction's capacity, when measured")


def _zone(name: str, field: str = "timezone") -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise Invalid(f"{field}: unknown time zone {name!r} (an IANA name such as Asia/Almaty)",
                      field=field) from None


def _params(request: web.Request) -> int:
    keep = request.app[SETTINGS_KEY].history.keep_days
    return q_int(request, "days", min(DEFAULT_DAYS, keep), 1, keep)


async def _terminal(conn, scope: access.Scope, terminal_id: str) -> dict:
    """The terminal with its institution, or a 404 - also when it is out of scope."""
    t = await registry.find_terminal(conn, terminal_id)
    if t is None or not scope.covers(t["institution_id"]):
        raise NotFound(f"no terminal {terminal_id!r}")
    return {**t, "institution": await registry.get_institution(conn, t["institution_id"])}


def _answer(rows: list[dict], tz: ZoneInfo) -> web.Response:
    out = [HistoryDayOut.model_validate(d).model_dump(mode="json") for d in history.daily(rows, tz)]
    return ok({"items": out})


async def terminal_history(request: web.Request) -> web.Response:
    """GET /terminals/{id}/history."""
    days = _params(request)
    scope = access.of(request)
    async with request.app[DB_KEY].read() as conn:
        t = await _terminal(conn, scope, request.match_info["id"])
        tz = _zone(request.query.get("timezone") or t["institution"]["timezone"])
        rows = await history.rows_of_terminal(conn, t["id"], history.since_local(now(request), days, tz))
    return _answer(rows, tz)


async def pair_history(request: web.Request) -> web.Response:
    """GET /pairs/{a}/{b}/history: the pair either way round."""
    days = _params(request)
    given = f"{request.match_info['a']}/{request.match_info['b']}"
    a, b = sorted((request.match_info["a"], request.match_info["b"]))
    if a == b:
        raise Invalid("b: a pair is two different terminals", field="b")
    scope = access.of(request)
    async with request.app[DB_KEY].read() as conn:
        try:
            pair = [await _terminal(conn, access.Scope(), tid) for tid in (a, b)]
        except NotFound:
            pair = []
        # The same answer for a pair out of scope as for one that does not exist.
        if not pair or not scope.covers_any(t["institution_id"] for t in pair):
            raise NotFound(f"no pair {given}")
        court = next((t for t in pair if t["institution"]["kind"] == InstitutionKind.COURT), pair[0])
        tz = _zone(request.query.get("timezone") or court["institution"]["timezone"])
        rows = await history.rows_of_pair(conn, a, b, history.since_local(now(request), days, tz))
    return _answer(rows, tz)


QUERY = [Query("days", {"type": "integer", "minimum": 1, "default": DEFAULT_DAYS},
               "the last N local days, today included (1..history.keep_days)"),
         Query("timezone", {"type": "string"}, "an IANA time zone (default: the court's)")]

ROUTES: list[Route] = [
    Route("GET", f"{API}/terminals/{{id}}/history", terminal_history, auth.READ,
          "A terminal's checks and tests per local day", response=items(HistoryDayOut), query=QUERY,
          extra_responses={400: "days out of range or an unknown time zone"}),
    Route("GET", f"{API}/pairs/{{a}}/{{b}}/history", pair_history, auth.READ,
          "A pair's checks and tests per local day (either order)", response=items(HistoryDayOut), query=QUERY,
          extra_responses={400: "days out of range, the same terminal twice, or an unknown time zone"}),
]
