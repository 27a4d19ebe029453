"""The self-check link itself (issue 14): what a person without an account reaches with its secret,
and nothing else.

    GET  /self-check/{secret}            the page (plain HTML/JS, kk/ru/en by the browser's language)
    GET  /self-check/{secret}/info       who it is for, the hearing's court and start, the page's words
    POST /self-check/{secret}/offer      {sdp, type: "offer"} -> the controller's peer's answer (429 over
                                         `selfcheck.offers_per_minute` from one address)
    POST /self-check/{secret}/result     the browser's findings -> {status, verdict, reasons, reason_codes}
                                         (one without a session counts against the same limit)
    GET  /self-check/{secret}/qr.svg     the link as a QR code (segno)

An unknown secret is a 404, an expired link a 410. These routes are not in the API's route table:
no token or cookie is read, and the secret is no token - every /api/v1 route refuses it
(tests/test_selfcheck_api.py). The page is served with the web page's security headers, never
cached, and sends no referrer (the secret is in its address).
"""
from __future__ import annotations

import functools
import io
import json
from typing import Any, Literal

import segno
from aiohttp import web
from pydantic import BaseModel, Field

from contract import reasons
from controller.api.requests import body, ok
from controller.errors import NotFound
from controller.models import In
from controller.selfcheck.api import base_url
from controller.selfcheck.service import PATH, SELFCHECKS_KEY, Gone, url_for
from controller.store import hearings as hearings_repo
from controller.store import registry
from controller.web import I18N, LANGS, SECURITY_HEADERS, STATIC
from controller.web.signin import GUARD_KEY

PAGE_HEADERS = {**SECURITY_HEADERS, "Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}
WORD_PREFIXES = ("selfcheck.page.", "selfcheck.device.", "verdict.")
MAX_SDP = 30_000


@functools.cache
def page_words() -> dict[str, dict[str, str]]:
    """The page's own words in each language (from the web page's i18n files)."""
    out = {}
    for lang in LANGS:
        data = json.loads((I18N / f"{lang}.json").read_text(encoding="utf-8"))
        out[lang] = {k: v for k, v in data.items() if k.startswith(WORD_PREFIXES)}
    return out


class OfferIn(In):
    """The page's offer (non-trickle: its candidates in the SDP)."""

    sdp: str = Field(min_length=10, max_length=MAX_SDP)
    type: Literal["offer"]


class DirectionIn(In):
    """What the browser received (its getStats inbound-rtp)."""

    loss_ratio: float | None = Field(None, ge=0, le=1)
    jitter_ms: float | None = Field(None, ge=0, le=100_000)
    bitrate_kbps: float | None = Field(None, ge=0, le=10_000_000)


class ResultIn(In):
    """What the browser found: its devices, what it received, the selected pair's RTT and type."""
    connected: bool
    error: str | None = Field(None, max_length=200)
    # DeviceStatus's words: a camera cannot be silent, a microphone neither black nor frozen.
    camera: Literal["ok", "denied", "missing", "black", "frozen"]
    microphone: Literal["ok", "denied", "missing", "silent"]
    rtt_ms: float | None = Field(None, ge=0, le=60_000)
    inbound: DirectionIn | None = None
    path_type: Literal["host", "srflx", "prflx", "relay"] | None = None
    lang: Literal["kk", "ru", "en"] = "en"


class ResultOut(BaseModel):
    """The verdict, its reasons in the page's language and as codes."""

    status: str
    verdict: str
    reasons: list[str]
    reason_codes: list[dict[str, Any]]


def _secret(request: web.Request) -> str:
    secret = request.match_info["secret"]
    if not 20 <= len(secret) <= 100:
        raise NotFound("no such self-check link")
    return secret


async def page(request: web.Request) -> web.StreamResponse:
    """GET /self-check/{secret}: the page; the script asks /info whether the link holds."""
    _secret(request)
    resp = web.FileResponse(STATIC / "selfcheck" / "index.html", headers=PAGE_HEADERS)
    resp.content_type = "text/html"
    return resp


async def info(request: web.Request) -> web.Response:
    """GET /self-check/{secret}/info: who the link is for, the hearing's court and start, the words
    (also with a 404 or 410, so that the page says in the person's language why it cannot go on)."""
    svc = request.app[SELFCHECKS_KEY]
    try:
        row = await svc.find(_secret(request))
    except (NotFound, Gone) as exc:
        resp = ok({"error": exc.code, "message": exc.message, "words": page_words()}, exc.status)
        resp.headers.update(PAGE_HEADERS)
        return resp
    h = row["hearing"]
    async with svc.db.read() as conn:
        court = await registry.get_institution(conn, h["court_id"])
    resp = ok({"name": row["name"], "mode": row["mode"], "status": row["status"],
               "expires_at": hearings_repo.iso(row["expires_at"]), "duration_s": svc.cfg.duration_s,
               "ice_servers": [s.model_dump(exclude_none=True) for s in svc.cfg.ice_servers],
               "hearing": {"start_utc": hearings_repo.iso(h["start_utc"]), "court": court["name"],
                           "timezone": court["timezone"]},
               "words": page_words()})
    resp.headers.update(PAGE_HEADERS)
    return resp


async def offer(request: web.Request) -> web.Response:
    """POST /self-check/{secret}/offer: the controller's peer answers."""
    secret = _secret(request)
    data = await body(request, OfferIn)
    answer = await request.app[SELFCHECKS_KEY].offer(secret, data.sdp, data.type, request.headers.get("User-Agent"),
                                                     request.app[GUARD_KEY].client(request))
    return ok(answer)


async def result(request: web.Request) -> web.Response:
    """POST /self-check/{secret}/result: judged and stored; the verdict in the page's language."""
    secret = _secret(request)
    data = await body(request, ResultIn)
    page_result = data.model_dump(exclude={"lang"})
    out = await request.app[SELFCHECKS_KEY].result(secret, page_result, request.app[GUARD_KEY].client(request))
    texts = [reasons.text(r, data.lang) for r in out["reason_codes"]]
    return ok(ResultOut(reasons=texts, **out).model_dump())


async def qr(request: web.Request) -> web.Response:
    """The link as a QR code: only for a link that holds (a QR of a dead link helps nobody)."""
    secret = _secret(request)
    await request.app[SELFCHECKS_KEY].find(secret)
    out = io.BytesIO()
    segno.make(url_for(base_url(request), secret), error="m").save(out, kind="svg", scale=4, border=2, xmldecl=False)
    return web.Response(body=out.getvalue(), content_type="image/svg+xml", headers=PAGE_HEADERS)


def setup(app: web.Application) -> None:
    """The link's routes (outside the API document: no account reaches them, the secret does)."""
    app.router.add_get(PATH + "/{secret}", page)
    app.router.add_get(PATH + "/{secret}/info", info)
    app.router.add_post(PATH + "/{secret}/offer", offer)
    app.router.add_post(PATH + "/{secret}/result", result)
    app.router.add_get(PATH + "/{secret}/qr.svg", qr)
