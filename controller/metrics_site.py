"""Who may read /metrics (issue 11): open on the main address by default; with `metrics.token_file`
a scrape must carry `Authorization: Bearer <token>` (401 otherwise); with `metrics.listen` /metrics is
served by a second site on that address only (the main address answers 404).

`ctx` (in the app's cleanup_ctx) reads the token once, in a thread (a missing or empty file: a
ConfigError naming it, and the controller does not start), and starts the second site.
"""
from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import AsyncIterator
from pathlib import Path

from aiohttp import web

from contract import configfile
from controller import metrics
from controller.credentials import read_secret
from controller.errors import NotFound, Unauthorized
from controller.keys import SETTINGS_KEY
from controller.settings import parse_listen

log = logging.getLogger(__name__)

TOKEN_KEY: web.AppKey[str | None] = web.AppKey("metrics_token")
MAIN_APP_KEY = web.AppKey("metrics_main_app", web.Application)


def read_token(path: Path) -> str:
    """The token: the file's first line, trimmed (a ConfigError naming the file when unreadable or empty)."""
    try:
        return read_secret(path, "metrics.token_file")
    except ValueError as exc:
        raise configfile.ConfigError(path, "metrics.token_file", str(exc)) from None


def authorize(request: web.Request, app: web.Application) -> None:
    """Unauthorized unless the app needs no token or the request carries it as a bearer token."""
    token = app.get(TOKEN_KEY)
    if token is None:
        return
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
        raise Unauthorized("/metrics needs the bearer token of metrics.token_file")


async def serve_main(request: web.Request) -> web.Response:
    """GET /metrics on the main address: 404 when metrics.listen moved it, else the metrics (token checked)."""
    app = request.app
    if app[SETTINGS_KEY].metrics.listen:
        raise NotFound("/metrics is served on metrics.listen")
    return await _render(request, app)


async def _serve_own(request: web.Request) -> web.Response:
    """GET /metrics on metrics.listen: the main app's metrics (token checked)."""
    return await _render(request, request.app[MAIN_APP_KEY])


async def _render(request: web.Request, app: web.Application) -> web.Response:
    try:
        authorize(request, app)
    except Unauthorized as exc:
        return web.json_response(exc.body(), status=exc.status, headers={"WWW-Authenticate": "Bearer"})
    body, ctype = await metrics.render(app)
    return web.Response(body=body, headers={"Content-Type": ctype})


async def ctx(app: web.Application) -> AsyncIterator[None]:
    """Read the token (in a thread) and start the site of metrics.listen; stop it at shutdown."""
    settings = app[SETTINGS_KEY].metrics
    path = settings.token_file
    app[TOKEN_KEY] = await asyncio.to_thread(read_token, path) if path is not None else None
    runner: web.AppRunner | None = None
    if settings.listen:
        own = web.Application()
        own[MAIN_APP_KEY] = app
        own.router.add_get("/metrics", _serve_own)
        runner = web.AppRunner(own, access_log=None)
        await runner.setup()
        host, port = parse_listen(settings.listen)
        await web.TCPSite(runner, host, port).start()
        log.info("metrics: serving /metrics on %s%s", settings.listen, " (bearer token)" if path else "")
    try:
        yield
    finally:
        if runner is not None:
            await runner.cleanup()
