"""`vks-agent responder`: the answering side of direct test sessions.

An aiohttp endpoint that takes an offer and answers it, so that a technician can
test a link against a terminal without the controller. Every bad request gets a
JSON error and the responder keeps serving:
- 400 for a body that is not JSON, not an offer, oversized, or SDP aiortc rejects;
- 503 when it already serves `session.max_sessions` sessions.
"""
from __future__ import annotations

import asyncio
import json
import logging

from aiohttp import web

from agent.session import SignalingError, answer_offer
from agent.settings import AgentSettings

log = logging.getLogger(__name__)

SETTINGS_KEY = web.AppKey("settings", AgentSettings)
SESSIONS_KEY = web.AppKey("sessions", set)


def error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": code, "message": message}, status=status)


async def handle_offer(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS_KEY]
    sessions: set[asyncio.Task] = request.app[SESSIONS_KEY]
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
        answer, task = await answer_offer(settings, message, profile=profile)
    except SignalingError as exc:
        return error(400, "bad_offer", str(exc))
    sessions.add(task)
    task.add_done_callback(sessions.discard)
    task.add_done_callback(_log_outcome)
    return web.json_response(answer)


def _log_outcome(task: asyncio.Task) -> None:
    if task.cancelled():
        return
    exc = task.exception()
    if exc is not None:
        log.error("session failed: %s", exc)
    else:
        side = task.result()
        log.info("session ended: received %s packets, lost %s", side.get("packets"), side.get("lost"))


async def handle_health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok", "sessions": len(request.app[SESSIONS_KEY])})


async def _sessions_ctx(app: web.Application):
    app[SESSIONS_KEY] = set()
    yield
    tasks = list(app[SESSIONS_KEY])
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def create_app(settings: AgentSettings) -> web.Application:
    app = web.Application(client_max_size=settings.session.max_offer_bytes + 1)
    app[SETTINGS_KEY] = settings
    app.cleanup_ctx.append(_sessions_ctx)
    app.router.add_post("/offer", handle_offer)
    app.router.add_get("/healthz", handle_health)
    return app
