"""`vks-agent responder`: the answering side of direct test sessions.

An aiohttp endpoint that takes an offer and answers it, so that a technician can
test a link against a terminal without the controller. Every bad request gets a
JSON error and the responder keeps serving:
- 429 for the offer over `responder.offers_per_minute` from one source address (counted
  first, before anything else is looked at);
- 401 for an offer without `Authorization: Bearer <token>` or with another token (unless the
  responder was started `--open`, for a lab); nothing is read or started;
- 400 for a body that is not JSON, not an offer, oversized, or SDP aiortc rejects;
- 503 when it already serves `session.max_sessions` sessions.
Of an answered offer's candidates, only those agent/ice.py allows are ever contacted.
"""
from __future__ import annotations

import asyncio
import hmac
import json
import logging
from collections.abc import AsyncIterator

import aiojobs
from aiohttp import web

from agent import heap
from agent.metrics import AgentMetrics, SessionObserver
from agent.metrics_http import METRICS_KEY, handle_metrics
from agent.session import PeerSession, SignalingError, answer_offer
from agent.settings import AgentSettings
from contract import jobs
from contract.candidates import OfferLimiter  # shared with the controller's self-check links
from contract.reports import ReceiveSide
from contract.vocab import SessionKind, SessionRole

log = logging.getLogger(__name__)

SETTINGS_KEY = web.AppKey("settings", AgentSettings)
# The sessions being served: one job each, cancelled and awaited when the app shuts down.
SESSIONS_KEY = web.AppKey("sessions", aiojobs.Scheduler)
# The bearer token offers must carry (None: an open responder, for a lab).
TOKEN_KEY = web.AppKey("token", bytes)
# The peer label of the sessions the responder answers (their caller is not known by id).
RESPONDER_PEER = "direct"


LIMITER_KEY = web.AppKey("limiter", OfferLimiter)


def error(status: int, code: str, message: str) -> web.Response:
    """A JSON error: a stable `error` code and a human `message`."""
    return web.json_response({"error": code, "message": message}, status=status)


async def handle_offer(request: web.Request) -> web.Response:
    """POST /offer: answer a caller's offer and serve the session in the background."""
    settings = request.app[SETTINGS_KEY]
    sessions = request.app[SESSIONS_KEY]
    if not request.app[LIMITER_KEY].allow(request.remote or "unknown"):
        return error(429, "rate_limited", f"more than {settings.responder.offers_per_minute} offers "
                                          f"a minute from {request.remote}; try again later")
    token = request.app.get(TOKEN_KEY)
    if token is not None and not _bearer_matches(request, token):
        return error(401, "unauthorized", "this responder takes offers with its token only "
                                          "(Authorization: Bearer <token>; vks-agent test --token-file)")
    limit = settings.session.max_offer_bytes
    if request.content_length is not None and request.content_length > limit:
        return error(400, "offer_too_large", f"the offer is {request.content_length} bytes; the limit is {limit}")
    # Read to the end (read(n) returns what has arrived so far, which on a lossy
    # link is part of the body), stopping as soon as the limit is passed.
    body = bytearray()
    async for chunk in request.content.iter_chunked(16384):
        body += chunk
        if len(body) > limit:
            return error(400, "offer_too_large", f"the offer is over the limit of {limit} bytes")
    try:
        message = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return error(400, "bad_json", "the body is not JSON")
    if not isinstance(message, dict):
        return error(400, "bad_offer", "expected a JSON object {type: 'offer', sdp: str}")
    profile = message.get("profile")
    if profile is not None and profile not in settings.session.profiles:
        known = ", ".join(sorted(settings.session.profiles))
        return error(400, "bad_profile", f"no profile named {profile!r} (known: {known})")
    if len(sessions) >= settings.session.max_sessions:
        return error(503, "busy", f"already serving {len(sessions)} sessions (the limit)")
    try:
        answer, session = await answer_offer(settings, message, profile=profile)
    except SignalingError as exc:
        return error(400, "bad_offer", str(exc))
    metrics = request.app.get(METRICS_KEY)
    obs = metrics.session(SessionKind.TEST, SessionRole.CALLEE, RESPONDER_PEER) if metrics else None
    await sessions.spawn(_serve(session, obs), name="responder-session")
    return web.json_response(answer)


def _bearer_matches(request: web.Request, token: bytes) -> bool:
    """Does the request carry `Authorization: Bearer <token>`? Compared in constant time."""
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token)


async def _serve(session: PeerSession, obs: SessionObserver | None) -> None:
    """Serve one answered session; its outcome is logged and counted, and the memory it freed is
    given back to the system (agent/heap.py)."""
    try:
        await _serve_one(session, obs)
    finally:
        heap.release_soon()


async def _serve_one(session: PeerSession, obs: SessionObserver | None) -> None:
    try:
        side = await session.serve()
    except asyncio.CancelledError:
        if obs is not None:
            obs.end("cancelled")
        raise
    except Exception as exc:
        log.error("session failed: %s", exc)
        if obs is not None:
            obs.end("failed")
        return
    log.info("session ended: received %s packets, lost %s", side.get("packets"), side.get("lost"))
    if obs is not None:
        obs.end("not_connected" if side.get("error") else "finished", _typed_side(side))


def _typed_side(side: dict) -> ReceiveSide | None:
    """The receive side read into its typed model for the metrics (None: the contract refuses it)."""
    try:
        return ReceiveSide.model_validate(side)
    except ValueError as exc:
        log.error("receive side not counted: not what the contract allows: %s", exc)
        return None


async def handle_health(request: web.Request) -> web.Response:
    """GET /healthz: up, and how many sessions it serves."""
    return web.json_response({"status": "ok", "sessions": len(request.app[SESSIONS_KEY])})


async def _sessions_ctx(app: web.Application) -> AsyncIterator[None]:
    app[SESSIONS_KEY] = jobs.scheduler("responder")
    yield
    await app[SESSIONS_KEY].close()


def create_app(settings: AgentSettings, *, token: str | None,
               metrics: AgentMetrics | None = None) -> web.Application:
    """The responder's app: offers must carry `token` (None: open, for a lab); with `metrics`,
    also GET /metrics and every answered session counted."""
    app = web.Application(client_max_size=settings.session.max_offer_bytes + 1)
    app[SETTINGS_KEY] = settings
    app[LIMITER_KEY] = OfferLimiter(settings.responder.offers_per_minute)
    if token is not None:
        app[TOKEN_KEY] = token.encode()
    app.cleanup_ctx.append(_sessions_ctx)
    app.router.add_post("/offer", handle_offer)
    app.router.add_get("/healthz", handle_health)
    if metrics is not None:
        app[METRICS_KEY] = metrics
        app.router.add_get("/metrics", handle_metrics)

        async def load_thresholds(_: web.Application) -> None:
            await metrics.load_thresholds()
        app.on_startup.append(load_thresholds)
    return app
