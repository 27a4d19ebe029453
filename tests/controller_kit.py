"""Helpers for the controller tests: an in-process controller on a real
database (SQLite or PostgreSQL) with a fake clock, driven through its real
HTTP API; a recording agent gateway standing in for the hub (the agent side is
tested on its own in test_link_hub.py); sample vks.test-report/1 reports."""
from __future__ import annotations

import contextvars
import datetime as dt
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from contract import configfile
from contract.quality import Judgement
from contract.reports import SessionReport
from contract.vocab import Verdict
from controller.app import create_app
from controller.gateway import AgentUnavailable
from controller.keys import DB_KEY, RESULTS_KEY, SCHEDULER_KEY
from controller.models import SitesFile
from controller.settings import ControllerSettings
from controller.store import registry, users

REPO = Path(__file__).resolve().parent.parent
SITES = REPO / "configs" / "sites.yaml"
ROLES = ("admin", "coordinator", "head_of_office", "secretary", "technician", "viewer")


def report_verdict(report: SessionReport, profile: str | None = None) -> Judgement:
    """A test judge: the sample report's own verdict, reasons and reason codes (none, or not connected:
    unusable), so a test states the verdict it needs. The controller itself always judges with the
    quality model."""
    verdict = report.verdict if report.verdict is not None and report.connected is not False else Verdict.UNUSABLE
    return Judgement(verdict, list(report.reasons), None if report.mos is None else float(report.mos),
                     [r.dump() for r in report.reason_codes])


def counting(opener, depth: contextvars.ContextVar[int]):
    """`db.transaction` / `db.read` that count, in the calling task's context, the transactions it holds open
    (asyncio.to_thread carries that context into a worker thread: a render, a password hash)."""
    @asynccontextmanager
    async def wrapped(*a, **kw):
        token = depth.set(depth.get() + 1)
        try:
            async with opener(*a, **kw) as conn:
                yield conn
        finally:
            depth.reset(token)
    return wrapped


class RecordingGateway:
    """Accepts start_session for online terminals and records it."""

    def __init__(self):
        self.started: list[dict] = []
        self.stopped: list[str] = []
        self.offline: set[str] = set()

    async def start_session(self, *, session_id, caller, callee, kind, profile, duration_s,
                            capacity=False) -> None:
        for t in (caller, callee):
            if t in self.offline:
                raise AgentUnavailable(f"terminal {t!r} is not connected")
        self.started.append(dict(session_id=session_id, caller=caller, callee=callee, kind=kind,
                                 profile=profile, duration_s=duration_s, capacity=capacity))

    async def stop_session(self, session_id: str) -> None:
        self.stopped.append(session_id)

    def online(self) -> set[str]:
        return {"court-almaty-1", "sizo-almaty-1"} - self.offline


def report(verdict: str = "good", *, connected: bool = True, loss: float = 0.0) -> dict[str, Any]:
    side = {"packets": 1000, "lost": int(loss * 1000), "loss_ratio": loss, "jitter_ms": 2.0, "bitrate_kbps": 600.0}
    return {"schema": "vks.test-report/1", "started_at": "2026-12-01T04:00:00Z", "duration_s": 30.0,
            "connected": connected, "connect_ms": 180.0 if connected else None,
            "error": None if connected else "ICE failed",
            "rtt_ms": {"mean": 20.0, "p50": 19.0, "p95": 25.0, "max": 30.0},
            "outbound": side, "inbound": side, "streams": [], "mos": 4.3 if verdict == "good" else 2.0,
            "verdict": verdict, "reasons": [] if verdict == "good" else ["loss"], "intervals": []}


# Fresh results (controller.freshness) off unless a test asks: no re-tests, nightly tests, retries or
# terminal watch - the other tests count every session and escalation they cause.
FRESHNESS_OFF = {"retest_window_h": [], "nightly_window": None, "retry_delays_min": [], "watch_s": 0}


class Controller:
    def __init__(self, db_url: str, clock, gateway=None, judge=report_verdict, seed: bool = True, **settings):
        self.seed = seed
        settings["freshness"] = {**FRESHNESS_OFF, **settings.get("freshness", {})}
        # Which side (issue 12) needs agents that run the side sessions: off unless a test asks for it
        # (tests/test_diagnosis_api.py), so the other tests' hearings keep the records they expect.
        settings.setdefault("diagnosis", {"enabled": False})
        self.settings = ControllerSettings(db=db_url, **settings)
        self.clock = clock
        self.gw = gateway or RecordingGateway()
        self.app = create_app(self.settings, clock=clock, gateway=self.gw, judge=judge, run_scheduler=False,
                              agents=False)
        self.client: TestClient | None = None
        self.tokens: dict[str, str] = {}

    async def __aenter__(self) -> Controller:
        self.client = TestClient(TestServer(self.app))
        await self.client.start_server()
        sites = configfile.validate(SitesFile, configfile.read_yaml(SITES), SITES)
        async with self.db.transaction() as conn:
            if self.seed:
                await registry.import_sites(conn, sites.model_dump()["institutions"], self.clock())
            for role in ROLES:
                name = f"{role}-1" if self.seed else f"{role}-{id(self)}"
                u = await users.create_user(conn, name, role, self.clock(),
                                            "department" if role == "coordinator" else None)
                self.tokens[role] = await users.issue_token(conn, u["id"], self.clock())
        return self

    async def __aexit__(self, *exc) -> None:
        await self.client.close()

    @property
    def db(self):
        return self.app[DB_KEY]

    @property
    def scheduler(self):
        return self.app[SCHEDULER_KEY]

    @property
    def checks(self):
        return self.app[RESULTS_KEY]

    async def call(self, method: str, path: str, *, role: str | None = "admin", json: Any = None,
                   data: Any = None, token: str | None = None, expect: int | None = None):
        headers = {}
        tok = token if token is not None else (self.tokens[role] if role else None)
        if tok is not None:
            headers["Authorization"] = f"Bearer {tok}"
        resp = await self.client.request(method, path, json=json, data=data, headers=headers)
        ctype = resp.headers.get("Content-Type", "")
        body = await resp.json() if ctype.startswith("application/json") else await resp.text()
        if expect is not None:
            assert resp.status == expect, (resp.status, body)
        return resp.status, body

    async def room_id(self, institution_id: str, name: str = "Зал 1") -> int:
        _, rooms = await self.call("GET", f"/api/v1/rooms?institution_id={institution_id}", expect=200)
        return next(r["id"] for r in rooms["items"] if r["name"] == name)

    async def schedule(self, *, start: dt.datetime, room: tuple[str, str] = ("almaty-medeu-district", "Зал 1"),
                       participants=("sizo-almaty-1",), duration_min: int = 60, expect: int | None = 201,
                       case: str = "2-1234/2026", role: str = "secretary"):
        body = {"case_number": case, "room_id": await self.room_id(*room),
                "start_utc": start.isoformat(), "duration_min": duration_min,
                "participants": [{"terminal_id": t} for t in participants]}
        return await self.call("POST", "/api/v1/hearings", role=role, json=body, expect=expect)

    async def hearing(self, hid: int) -> dict:
        return (await self.call("GET", f"/api/v1/hearings/{hid}", expect=200))[1]

    async def events(self, hid: int) -> list[dict]:
        return (await self.call("GET", f"/api/v1/hearings/{hid}/events", expect=200))[1]["items"]
