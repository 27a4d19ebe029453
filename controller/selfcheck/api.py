"""The hearing's self-checks (issue 14), signed in and in scope:

    POST /api/v1/hearings/{id}/self-checks  {"name": ..., "mode": "mobile"[, "expires_at": ...]}
         -> 201 {"id", "url", "expires_at"}       (secretary, head of office, admin)
    GET  /api/v1/hearings/{id}/self-checks
         -> {"items": [{id, name, mode, status, verdict, camera, microphone, rtt_ms,
                        inbound: {loss_ratio, jitter_ms, bitrate_kbps}, outbound: {...},
                        browser, path_type, finished_at}]}

The link's secret is shown once, in the creation's answer (only its hash is kept): the page shows it
to copy and as a QR code (the link's own /self-check/{secret}/qr.svg) right then. A hearing out of the
user's scope is a 404 (Route.scoped), another role a 403.
"""
from __future__ import annotations

import datetime as dt
from typing import Literal

from aiohttp import web
from pydantic import BaseModel, Field, field_validator

from contract.vocab import DeviceStatus, ParticipationMode, SelfCheckStatus, Verdict, words
from controller import access, auth
from controller.api.audit import Audit, audit, transaction
from controller.api.requests import API, body, now, ok, path_int, who
from controller.api.routing import Route, items
from controller.keys import DB_KEY, SETTINGS_KEY
from controller.models import In, OneLine, _utc
from controller.selfcheck.service import SELFCHECKS_KEY, url_for
from controller.store import hearings as hearings_repo
from controller.store import selfchecks as repo


class SelfCheckIn(In):
    """A self-check link for one remote person."""
    name: OneLine = Field(min_length=1, max_length=200, description="the person, as the secretary names them")
    mode: ParticipationMode = Field(description="how they take part (contract.vocab.ParticipationMode)")
    expires_at: dt.datetime | None = Field(None, description="default: the hearing's end (not later)")

    _utc = field_validator("expires_at")(lambda cls, v: _utc(v))


class SelfCheckCreated(BaseModel):
    """The new link: its id, the URL with its secret (shown this once) and its expiry."""

    id: int
    url: str = Field(description="the link with its secret (shown once)")
    expires_at: str


class DirectionOut(BaseModel):
    """One direction's figures as received (null: not measured)."""

    loss_ratio: float | None
    jitter_ms: float | None
    bitrate_kbps: float | None


class SelfCheckOut(BaseModel):
    """A self-check of the hearing: `inbound` is what the browser received, `outbound` what it sent
    and the controller received."""
    id: int
    name: str
    mode: ParticipationMode
    status: SelfCheckStatus
    verdict: Verdict | None
    camera: DeviceStatus | None
    microphone: DeviceStatus | None
    rtt_ms: float | None
    inbound: DirectionOut
    outbound: DirectionOut
    browser: str | None
    path_type: Literal["host", "srflx", "prflx", "relay"] | None
    finished_at: str | None


def base_url(request: web.Request) -> str:
    """Where the links point: `selfcheck.public_url`, else the scheme and host of the request."""
    return request.app[SETTINGS_KEY].selfcheck.public_url or f"{request.scheme}://{request.host}"


async def create(request: web.Request) -> web.Response:
    """POST /hearings/{id}/self-checks."""
    data = await body(request, SelfCheckIn)
    hid = path_int(request, "id")
    t = now(request)
    async with transaction(request, t) as conn:
        sid, secret, expires = await request.app[SELFCHECKS_KEY].create(
            conn, hearing_id=hid, name=data.name, mode=str(data.mode), expires_at=data.expires_at, now=t,
            by=who(request))
        audit(request).note({"self_check_id": sid, "name": data.name, "mode": str(data.mode)})
    return ok({"id": sid, "url": url_for(base_url(request), secret), "expires_at": hearings_repo.iso(expires)}, 201)


async def list_(request: web.Request) -> web.Response:
    """GET /hearings/{id}/self-checks."""
    hid = path_int(request, "id")
    async with request.app[DB_KEY].read() as conn:
        await hearings_repo.get_hearing(conn, hid)
        rows = await repo.list_for(conn, [hid])
    t = now(request)
    return ok({"items": [repo.view(r, t) for r in rows]})


HEARING = "hearing:{id}"
MODES = words(ParticipationMode)

ROUTES: list[Route] = [
    Route("POST", f"{API}/hearings/{{id}}/self-checks", create, auth.HEARINGS_WRITE,
          "A self-check link for one remote person (mobile VKS, rule 20): bound to this hearing, expiring at "
          "its end (or expires_at); its secret opens only the self-check page", body=SelfCheckIn,
          response=SelfCheckCreated, status=201,
          extra_responses={409: "the hearing is cancelled, held or over"},
          audit=Audit("self_check.create", HEARING), scoped=access.HEARING),
    Route("GET", f"{API}/hearings/{{id}}/self-checks", list_, auth.READ,
          "The hearing's self-checks with their figures and verdicts", response=items(SelfCheckOut),
          scoped=access.HEARING),
]
