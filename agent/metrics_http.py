"""GET /metrics over HTTP: the Prometheus exposition of an `AgentMetrics` (agent/metrics.py).

Served by the daemon's own small endpoint (`metrics_app`, started by agent/monitor.py) and mounted
on the responder's app (agent/responder.py). A module of its own so that the responder, which has
no health loop, link or outbox, does not import them with agent/monitor.py (~3 MB of a process
held to 110 MB, issue 15).
"""
from __future__ import annotations

from aiohttp import web

from agent.metrics import AgentMetrics

METRICS_KEY = web.AppKey("vks_agent_metrics", AgentMetrics)


async def handle_metrics(request: web.Request) -> web.Response:
    """GET /metrics: the Prometheus exposition of the app's `AgentMetrics`."""
    body, ctype = request.app[METRICS_KEY].render()
    return web.Response(body=body, headers={"Content-Type": ctype})


def metrics_app(metrics: AgentMetrics) -> web.Application:
    """The daemon's own small endpoint: GET /metrics."""
    app = web.Application()
    app[METRICS_KEY] = metrics
    app.router.add_get("/metrics", handle_metrics)
    return app
