"""Issue 11, item 4: agents write only their own. The real controller app (hub, live monitoring,
metrics) on a loopback port, terminals speaking over real WebSockets with their own tokens:

- a terminal's failed endpoint hook becomes a `hook_failed` event only in the record of a hearing
  whose courtroom terminal or participant it is; for another hearing nothing is written, and the
  drop is counted (`vks_controller_agent_writes_dropped_total{reason="not_in_hearing"}`); nor in a
  hearing of its that ended longer than HOOK_GRACE_S ago (`hearing_over`);
- a report naming a session is taken only from its caller or callee, in its own place, once;
- the records a terminal's reports create are limited per terminal (`agent_link` settings): the
  excess is dropped and counted, the reports themselves are still stored and acked;
- removing a terminal revokes its tokens in the same transaction: its open connection is closed,
  its token is refused at connect (401), also after the terminal is added again with the same id.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import itertools
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from contract import configfile, wire
from controller.agent_writes import EventBudget
from controller.app import create_app
from controller.keys import DB_KEY, HUB_KEY
from controller.live.service import HOOK_GRACE_S
from controller.models import SitesFile
from controller.settings import ControllerSettings
from controller.store import agents as agent_store
from controller.store import hearings as hearings_repo
from controller.store import registry, users
from tests.procs import eventually, free_port

pytestmark = pytest.mark.timeout(120)

_SETTLES = itertools.count()
SITES = Path(__file__).resolve().parent.parent / "configs" / "sites.yaml"
COURT, SIZO, OTHER = "court-almaty-1", "sizo-almaty-1", "court-kyzylorda-1"


class Rig:
    """The controller app on 127.0.0.1 (no scheduler loop: no check commands sessions meanwhile),
    the sample sites, an admin, and one hearing: COURT's room with SIZO taking part."""

    def __init__(self, db_url: str, **settings: Any):
        self.settings = ControllerSettings.model_validate({"db": db_url, **settings})
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.runner: web.AppRunner | None = None
        self.http: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Rig:
        try:
            await self._start()
        except BaseException:
            await self.__aexit__(None, None, None)
            raise
        return self

    async def _start(self) -> None:
        self.app = create_app(self.settings, run_scheduler=False)
        self.runner = web.AppRunner(self.app)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()
        now = dt.datetime.now(dt.UTC)
        sites = configfile.validate(SitesFile, configfile.read_yaml(SITES), SITES)
        async with self.app[DB_KEY].transaction() as conn:
            await registry.import_sites(conn, sites.model_dump()["institutions"], now)
            admin = await users.create_user(conn, "admin-w", "admin", now)
            token = await users.issue_token(conn, admin["id"], now)
        self.http = aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"})
        _, rooms = await self.api("GET", "/api/v1/rooms?institution_id=almaty-medeu-district")
        room = next(r["id"] for r in rooms["items"] if r["name"] == "Зал 1")
        status, h = await self.api("POST", "/api/v1/hearings", {
            "case_number": "1-11/2026", "room_id": room, "duration_min": 60,
            "start_utc": (now + dt.timedelta(days=3)).isoformat(), "participants": [{"terminal_id": SIZO}]})
        assert status == 201, h
        assert h["court_terminal"] == COURT
        self.hid = h["id"]

    async def __aexit__(self, *exc) -> None:
        if self.http is not None:
            await self.http.close()
        if self.runner is not None:
            await self.runner.cleanup()

    async def api(self, method: str, path: str, body: dict | None = None) -> tuple[int, Any]:
        assert self.http is not None
        async with self.http.request(method, self.base + path, json=body) as resp:
            ctype = resp.headers.get("Content-Type", "")
            return resp.status, (await resp.json() if ctype.startswith("application/json") else await resp.text())

    async def token(self, terminal_id: str) -> str:
        async with self.app[DB_KEY].transaction() as conn:
            return (await agent_store.issue_token(conn, terminal_id))[1]

    async def hook_events(self) -> list[dict]:
        status, ev = await self.api("GET", f"/api/v1/hearings/{self.hid}/events")
        assert status == 200, ev
        return [e for e in ev["items"] if e["kind"] == "hook_failed"]

    async def dropped(self, reason: str) -> float:
        async with aiohttp.ClientSession() as http, http.get(self.base + "/metrics") as resp:
            text = await resp.text()
        for fam in text_string_to_metric_families(text):
            if fam.name == "vks_controller_agent_writes_dropped":
                return next(s.value for s in fam.samples if s.labels.get("reason") == reason)
        raise AssertionError("vks_controller_agent_writes_dropped_total is not exposed")

    async def stored(self, terminal_id: str) -> int:
        async with self.app[DB_KEY].read() as conn:
            return await agent_store.count_reports(conn, terminal_id)


class Terminal:
    """A terminal's agent link, spoken by hand over a real WebSocket with the terminal's token."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse):
        self.ws = ws

    @classmethod
    async def connect(cls, rig: Rig, http: aiohttp.ClientSession, terminal_id: str, token: str) -> Terminal:
        ws = await http.ws_connect(rig.base.replace("http", "ws") + wire.WS_PATH,
                                   headers={"Authorization": f"Bearer {token}"})
        await ws.send_str(wire.encode(wire.Hello(terminal_id=terminal_id, agent_version="test")))
        t = cls(ws)
        await t.next("welcome")
        return t

    async def next(self, type_: str) -> Any:
        """The next message of this type (others - commands, errors - passed over)."""
        while True:
            raw = await asyncio.wait_for(self.ws.receive(), 10)
            assert raw.type == aiohttp.WSMsgType.TEXT, raw
            m = wire.parse_controller_message(raw.data)
            if m.type == type_:
                return m

    async def report(self, report: wire.Report) -> list[Any]:
        """Send a report; what came back up to and including its ack."""
        await self.ws.send_str(wire.encode(report))
        seen = []
        while True:
            raw = await asyncio.wait_for(self.ws.receive(), 10)
            assert raw.type == aiohttp.WSMsgType.TEXT, raw
            m = wire.parse_controller_message(raw.data)
            seen.append(m)
            if isinstance(m, wire.Ack) and m.report_id == report.report_id:
                return seen

    async def settled(self) -> None:
        """Once this returns, every report acked before has been handed to live monitoring (where
        failed hooks are counted against the budget): the hub's writer acks a batch, hands it
        over, and only then takes the next - this report, sent after those acks, is in a later one."""
        await self.report(wire.Report(report_id=f"settle-{id(self)}-{next(_SETTLES)}", kind="health", body={}))

    async def hook_failed(self, report_id: str, hearing_id: int) -> None:
        await self.report(wire.Report(report_id=report_id, kind="health", body={"hook": {
            "event": "break", "hearing_id": hearing_id, "configured": True, "kind": "command", "ok": False,
            "error": "exit 1"}}))


async def test_a_hook_failure_is_written_only_into_the_hearings_the_terminal_takes_part_in(tmp_path):
    async with Rig(f"sqlite:///{tmp_path}/c.sqlite") as rig, aiohttp.ClientSession() as http:
        other = await Terminal.connect(rig, http, OTHER, await rig.token(OTHER))
        await other.hook_failed("hook-other", rig.hid)             # a Kyzylorda terminal, not in it
        court = await Terminal.connect(rig, http, COURT, await rig.token(COURT))
        await court.hook_failed("hook-court", rig.hid)             # the hearing's courtroom terminal
        sizo = await Terminal.connect(rig, http, SIZO, await rig.token(SIZO))
        await sizo.hook_failed("hook-sizo", rig.hid)               # a participant

        # The other terminal's report came first: once both own events are written, it was judged.
        events = await eventually(lambda: _at_least(rig.hook_events(), 2), 15, 0.05, "two hook_failed events")
        assert sorted(e["detail"]["terminal_id"] for e in events) == [COURT, SIZO]
        assert await rig.dropped("not_in_hearing") == 1
        # Its report is its own record (stored and acked: nothing lost), just not the hearing's.
        assert await rig.stored(OTHER) == 1


async def test_a_report_is_taken_only_from_its_sessions_caller_or_callee_in_its_own_place_and_once(tmp_path):
    async with Rig(f"sqlite:///{tmp_path}/c.sqlite") as rig, aiohttp.ClientSession() as http:
        court = await Terminal.connect(rig, http, COURT, await rig.token(COURT))
        sizo = await Terminal.connect(rig, http, SIZO, await rig.token(SIZO))
        other = await Terminal.connect(rig, http, OTHER, await rig.token(OTHER))
        await eventually(lambda: {COURT, SIZO} <= rig.app[HUB_KEY].online(), 10, 0.05, "both online")
        await rig.app[HUB_KEY].start_session(session_id="s-11", caller=COURT, callee=SIZO, kind="test",
                                             profile=None, duration_s=5)
        await court.next("command")
        await sizo.next("command")
        final = {"role": "caller", "peer": SIZO, "session_kind": "test",
                 "report": {"schema": "vks.test-report/1", "connected": True, "verdict": "good"}}
        interval = {"role": "callee", "peer": COURT, "session_kind": "test", "interval": {"t": 1}}

        refused = [
            (other, wire.Report(report_id="x1", kind="session", session_id="s-11", body=final)),   # not in it
            (other, wire.Report(report_id="x2", kind="interval", session_id="s-nope", body=interval)),  # unknown
            (sizo, wire.Report(report_id="x3", kind="session", session_id="s-11", body=final)),    # caller's place
            (sizo, wire.Report(report_id="x4", kind="interval", session_id="s-11",
                               body={**interval, "peer": OTHER})),                                  # a made-up peer
        ]
        for t, r in refused:
            answers = await t.report(r)          # answered forbidden, then acked: the agent lets it go
            assert [m.type for m in answers][-2:] == ["error", "ack"]
            assert answers[-2].code == "forbidden" and answers[-2].ref == r.id
        assert await rig.dropped("not_in_session") == 3 and await rig.dropped("unknown_session") == 1
        assert await rig.stored(OTHER) == 0 and await rig.stored(SIZO) == 0

        # What is theirs is taken: the callee's interval, the caller's final report - once.
        assert [m.type for m in await sizo.report(wire.Report(report_id="s-11:callee:i1", kind="interval",
                                                              session_id="s-11", body=interval))] == ["ack"]
        await court.report(wire.Report(report_id="s-11:caller:final", kind="session", session_id="s-11", body=final))
        await court.report(wire.Report(report_id="s-11:caller:again", kind="session", session_id="s-11",
                                       body=final))
        assert await rig.stored(SIZO) == 1 and await rig.stored(COURT) == 2
        await eventually(lambda: _equals(rig.dropped("repeated_result"), 1), 10, 0.05, "the second result refused")


async def test_the_records_a_terminal_creates_are_rate_limited_and_its_reports_still_stored(tmp_path):
    # A budget of 3 that practically never refills: the 4th and 5th failures are over it.
    limits = {"events_per_minute": 0.001, "events_burst": 3}
    async with Rig(f"sqlite:///{tmp_path}/c.sqlite", agent_link=limits) as rig, aiohttp.ClientSession() as http:
        court = await Terminal.connect(rig, http, COURT, await rig.token(COURT))
        for i in range(5):
            await court.hook_failed(f"hook-{i}", rig.hid)
        assert await rig.stored(COURT) == 5                     # every report stored and acked
        await court.settled()                                   # ... and handed to live monitoring
        assert await rig.dropped("rate_limited") == 2           # counted there, as it took them
        events = await eventually(lambda: _at_least(rig.hook_events(), 3), 15, 0.05, "three hook_failed events")
        assert len(events) == 3


async def test_a_hook_failure_reaches_a_hearing_only_until_a_grace_period_after_it_ended(tmp_path):
    async with Rig(f"sqlite:///{tmp_path}/c.sqlite") as rig, aiohttp.ClientSession() as http:
        court = await Terminal.connect(rig, http, COURT, await rig.token(COURT))
        sizo = await Terminal.connect(rig, http, SIZO, await rig.token(SIZO))
        status, h = await rig.api("PATCH", f"/api/v1/hearings/{rig.hid}", {"status": "held"})
        assert status == 200 and h["status"] == "held", h
        # The hook fired as the hearing ended, reported a little later: still its record.
        await court.hook_failed("hook-at-the-end", rig.hid)
        await eventually(lambda: _at_least(rig.hook_events(), 1), 15, 0.05, "the late hook_failed event")

        # Ended longer ago than the grace period (its act final by then): a terminal it once had
        # writes nothing into it any more; the report itself is the terminal's own, stored.
        long_ago = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=HOOK_GRACE_S + 60)
        async with rig.app[DB_KEY].transaction() as conn:
            await hearings_repo.update_hearing(conn, rig.hid, updated_at=long_ago)
        await sizo.hook_failed("hook-long-after", rig.hid)
        # The drop and the event not written are one step of live monitoring: once counted, decided.
        await eventually(lambda: _equals(rig.dropped("hearing_over"), 1), 15, 0.05, "the drop counted")
        assert [e["detail"]["terminal_id"] for e in await rig.hook_events()] == [COURT]
        assert await rig.stored(SIZO) == 1
        assert await rig.dropped("not_in_hearing") == 0


def test_the_event_budget_refills_at_its_rate_up_to_its_burst():
    now = [0.0]
    budget = EventBudget(per_minute=60, burst=2, clock=lambda: now[0])
    assert [budget.take("t") for _ in range(3)] == [True, True, False]
    assert budget.take("u")                     # per terminal
    now[0] += 1.0                               # one a second
    assert budget.take("t") and not budget.take("t")
    now[0] += 3600
    assert [budget.take("t") for _ in range(3)] == [True, True, False]     # never above the burst


async def test_removing_a_terminal_revokes_its_tokens_and_closes_its_connection(db_url):
    async with Rig(db_url) as rig, aiohttp.ClientSession() as http:
        status, _ = await rig.api("POST", "/api/v1/terminals", {
            "id": "court-almaty-9", "institution_id": "almaty-medeu-district", "name": "Зал 9"})
        assert status == 201
        old = await rig.token("court-almaty-9")
        t = await Terminal.connect(rig, http, "court-almaty-9", old)

        status, _ = await rig.api("DELETE", "/api/v1/terminals/court-almaty-9")
        assert status == 204
        # The open connection is told and closed (not left until it reconnects).
        err = await t.next("error")
        assert err.code == "unauthorized" and err.fatal
        raw = await asyncio.wait_for(t.ws.receive(), 10)
        assert raw.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
        async with rig.app[DB_KEY].read() as conn:
            tokens = await agent_store.list_tokens(conn, "court-almaty-9")
        assert tokens and all(tok.revoked_at is not None for tok in tokens)

        # Its token is refused at connect - also once a terminal with the same id is added again.
        for _ in range(2):
            with pytest.raises(aiohttp.WSServerHandshakeError) as info:
                await Terminal.connect(rig, http, "court-almaty-9", old)
            assert info.value.status == 401
            status, _ = await rig.api("POST", "/api/v1/terminals", {
                "id": "court-almaty-9", "institution_id": "almaty-medeu-district", "name": "Зал 9"})
            assert status in (201, 409)
        new = await Terminal.connect(rig, http, "court-almaty-9", await rig.token("court-almaty-9"))
        await new.ws.close()
        status, audit = await rig.api("GET", "/api/v1/audit?target=terminal:court-almaty-9")
        assert status == 200
        assert [a["detail"] for a in audit["items"] if a["action"] == "terminal.delete"] == [{"tokens_revoked": 1}]


async def _at_least(items, n: int):
    got = await items
    return got if len(got) >= n else None


async def _equals(value, expected) -> bool:
    return await value == expected
