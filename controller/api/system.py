"""The service's own resources: health, the OpenAPI document, Prometheus metrics and the
vocabularies (every word list the web page shows, from contract.vocab)."""
from __future__ import annotations

import logging
from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel, create_model
from sqlalchemy import text

from contract import reasons
from contract.vocab import PUBLISHED, words
from controller import __version__, auth, metrics_site, openapi
from controller import models as m
from controller.api.requests import API, ok
from controller.api.routing import ROUTES_KEY, Route
from controller.keys import DB_KEY, SCHEDULER_KEY

log = logging.getLogger("controller.api")


async def healthz(request: web.Request) -> web.Response:
    """Healthy when the database answers and the scheduler loop completes its
    rounds (or is not running in this process)."""
    database = "ok"
    try:
        async with request.app[DB_KEY].read() as conn:
            await conn.execute(text("SELECT 1"))
    except Exception as exc:
        log.warning("health: database: %s", exc)
        database = "error"
    scheduler = request.app[SCHEDULER_KEY].state()
    healthy = database == "ok" and scheduler != "stalled"
    return ok({"status": "ok" if healthy else "degraded", "database": database, "scheduler": scheduler,
               "version": __version__}, 200 if healthy else 503)


async def openapi_json(request: web.Request) -> web.Response:
    """GET /api/v1/openapi.json: the document of every route this app serves."""
    routes: list[Route] = request.app[ROUTES_KEY]
    return ok(openapi.document(routes))


async def metrics(request: web.Request) -> web.Response:
    """GET /metrics in the Prometheus text format (with the bearer token of metrics.token_file when set;
    404 when metrics.listen serves it elsewhere: controller.metrics_site)."""
    return await metrics_site.serve_main(request)


def _vocabularies_model() -> type[BaseModel]:
    one_of: Any = Literal       # list[Literal[words]] is built at run time from each vocabulary
    seq: Any = list
    fields: dict[str, Any] = {name: (seq[one_of[words(vocab)]], ...) for name, vocab in PUBLISHED.items()}
    return create_model("VocabulariesOut", **fields)


VocabulariesOut = _vocabularies_model()
VOCABULARIES = {name: list(words(vocab)) for name, vocab in PUBLISHED.items()}


async def vocabularies(request: web.Request) -> web.Response:
    """GET /api/v1/vocabularies: {name: [word, ...]} for every published vocabulary, in order."""
    return ok(VOCABULARIES)


async def reason_catalog(request: web.Request) -> web.Response:
    """GET /api/v1/reasons: the reason codes' texts in kk, ru and en, their parameters' kinds and how
    each kind is written (contract/reasons.yaml) - the page renders a report's `reason_codes` with it -
    and each event kind's sentence (`events`) with its parameters' kinds (`event_params`): the hearing's
    record in words."""
    return ok(REASONS)


REASONS = reasons.served()


ROUTES: list[Route] = [
    Route("GET", "/healthz", healthz, None, "Liveness and database reachability", response=m.HealthOut,
          extra_responses={503: "database unreachable"}),
    Route("GET", "/metrics", metrics, None, "Prometheus metrics", content_type="text/plain",
          extra_responses={401: "metrics.token_file is set and the bearer token is missing or wrong",
                           404: "metrics.listen serves /metrics on another address"}),
    Route("GET", f"{API}/openapi.json", openapi_json, None, "This document"),
    Route("GET", f"{API}/vocabularies", vocabularies, auth.READ,
          "Every word list the API and the page use (directions, verdicts, statuses, reasons, roles), "
          "each in its order", response=VocabulariesOut),
    Route("GET", f"{API}/reasons", reason_catalog, auth.READ,
          "The catalog of words: each reason code's and each event kind's text in kk, ru and en and their parameters"),
]
