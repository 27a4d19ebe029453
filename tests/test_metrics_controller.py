"""controller/metrics.py in a real app on a real socket: figures of the rules from the
database (a fake clock moves a hearing's deadline past), HTTP requests by route pattern, the
issue-5 counters' bounded labels, and a database that goes away: /metrics still answers and
says so (vks_controller_database_up 0)."""
from __future__ import annotations

import asyncio
import datetime as dt

import aiohttp
import pytest
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from controller import metrics
from controller.app import create_app
from controller.settings import ControllerSettings
from tests import procs
from tests.harness import require_or_skip
from tests.pg import PgCluster, PgUnavailable


def value(text: str, name: str, **labels: str) -> float | None:
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return s.value
    return None


class Running:
    def __init__(self, app: web.Application):
        self.app = app
        self.port = procs.free_port()
        self.base = f"http://127.0.0.1:{self.port}"

    async def __aenter__(self):
        self.runner = web.AppRunner(self.app)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()
        self.http = aiohttp.ClientSession()
        return self

    async def scrape(self) -> str:
        async with self.http.get(self.base + "/metrics") as resp:
            assert resp.status == 200
            return await resp.text()

    async def __aexit__(self, *exc):
        await self.http.close()
        await self.runner.cleanup()


def settings(db: str) -> ControllerSettings:
    return ControllerSettings(db=db, sites_file=None, scheduler={"poll_s": 0.2})


async def test_routes_are_counted_by_pattern_and_errors_by_status(tmp_path):
    app = create_app(settings(f"sqlite:///{tmp_path / 'c.sqlite'}"), agents=False, run_scheduler=False)
    async with Running(app) as c:
        for path in ("/api/v1/hearings/1", "/api/v1/hearings/2", "/no/such/page"):
            async with c.http.get(c.base + path) as resp:
                assert resp.status in (401, 404)
        text = await c.scrape()
    assert value(text, "vks_controller_http_requests_total", method="GET", route="/api/v1/hearings/{id}",
                 status="401") == 2
    assert value(text, "vks_controller_http_requests_total", route="unmatched", status="404") == 1
    assert value(text, "vks_controller_http_request_duration_seconds_count") >= 3
    assert value(text, "vks_controller_database_up") == 1
    assert value(text, "vks_checks", kind="test", status="overdue") == 0


def test_issue_5_counters_take_only_their_bounded_labels(tmp_path):
    app = create_app(settings(f"sqlite:///{tmp_path / 'c.sqlite'}"), agents=False, run_scheduler=False)
    live = app[metrics.LIVE_METRICS_KEY]
    live.count_break("connection_lost")
    live.count_escalation("technicians", "preconnect_failed")
    live.count_resume()
    with pytest.raises(ValueError):
        live.count_break("hearing-42")                  # never an id as a label value
    with pytest.raises(ValueError):
        live.count_escalation("judge", "test_failed")
    from prometheus_client import generate_latest
    text = generate_latest(app[metrics.METRICS_KEY]).decode()
    assert value(text, "vks_breaks_total", reason="connection_lost") == 1
    assert value(text, "vks_breaks_total", reason="quality") == 0
    assert value(text, "vks_escalations_total", level="technicians", trigger="preconnect_failed") == 1
    assert value(text, "vks_resumes_total") == 1


@pytest.mark.postgres
async def test_metrics_keep_answering_when_the_database_goes_away():
    try:
        cluster = PgCluster().start()
    except PgUnavailable as exc:
        require_or_skip(f"PostgreSQL not available: {exc}")
    try:
        url = cluster.create_database("metrics_db_down")
        app = create_app(settings(url), agents=False, run_scheduler=False)
        async with Running(app) as c:
            assert value(await c.scrape(), "vks_controller_database_up") == 1
            await asyncio.to_thread(cluster.stop)
            text = await c.scrape()                     # the database figures cannot be refreshed
            assert value(text, "vks_controller_database_up") == 0
            assert value(text, "vks_controller_database_errors_total") >= 1
            assert value(text, "vks_controller_build_info") == 1
    finally:
        cluster.stop()


async def test_rule_13_overdue_test_request_shows_in_metrics(tmp_path, fake_clock):
    """A hearing whose remote terminal is away: its test request passes the T-24 h deadline
    without a result; /metrics says so (what VksTestDeadlineOverdue alerts on)."""
    from tests.controller_kit import Controller
    async with Controller(f"sqlite:///{tmp_path / 'c.sqlite'}", fake_clock) as c:
        c.gw.offline.add("sizo-almaty-1")
        start = fake_clock() + dt.timedelta(days=2)
        _, h = await c.schedule(start=start)
        text = await (await c.client.get("/metrics")).text()
        assert value(text, "vks_checks_overdue", kind="test") == 0
        assert value(text, "vks_hearings", verdict=h["verdict"]) == 1
        fake_clock.set(start - dt.timedelta(hours=23))          # past the rule-13 deadline
        await c.scheduler.run_until_idle()
        text = await (await c.client.get("/metrics")).text()
        assert value(text, "vks_checks_overdue", kind="test") == 1
        assert value(text, "vks_checks", kind="test", status="overdue") == 1
        assert value(text, "vks_checks_overdue", kind="preconnect") == 0
