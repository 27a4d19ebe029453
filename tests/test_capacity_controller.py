"""The controller's side of capacity (issue 12, part 1): rule-13 checks ask for it, the hub passes
it only to a caller that announced the capability (an older agent gets the command it knows and
its report simply lacks `capacity`), never for monitoring; a check's result keeps the figures and
a low capacity is judged with the reason naming both figures."""
from __future__ import annotations

import datetime as dt
import json

import aiohttp
import pytest

from contract import quality, wire
from controller.checks import quality_judge
from tests.conftest import FakeClock
from tests.controller_kit import Controller, report
from tests.test_link_hub import Controller as HubController
from tests.test_link_hub import _next
from tests.test_link_hub import controller as hub_controller  # noqa: F401 (fixture)

H = dt.timedelta(hours=1)


def with_capacity(rep: dict, outbound_kbps: float) -> dict:
    side = {"kbps": outbound_kbps, "limited_by": "loss", "loss_ratio_at_limit": 0.06, "delay_growth_ms": 31.0,
            "duration_s": 4.1, "steps": []}
    return {**rep, "capacity": {"outbound": side, "inbound": {**side, "kbps": 2500.0, "limited_by": "ceiling"},
                                "ceiling_kbps": 2500.0, "error": None}}


@pytest.fixture
async def scheduled(tmp_path):
    """A controller judging with the real quality model, and a hearing whose rule-13 test started."""
    clock = FakeClock(dt.datetime.now(dt.UTC).replace(microsecond=0))
    profiles = quality.load_thresholds()
    judge = quality_judge(profiles, quality.select(profiles))
    async with Controller(f"sqlite:///{tmp_path / 'c.sqlite'}", clock, judge=judge) as c:
        _, h = await c.schedule(start=clock() + 3 * H)
        await c.scheduler.run_until_idle()
        yield c, h


async def test_rule_13_checks_ask_for_capacity_and_preconnect_checks_do_not(scheduled):
    c, h = scheduled
    test = c.gw.started[-1]
    assert test["kind"] == "test" and test["capacity"] is True
    # A thin uplink: the check's result keeps the figures and names both of them.
    await c.checks.on_session_result(test["session_id"], with_capacity(report("good"), 514.0))
    _, got = await c.call("GET", f"/api/v1/hearings/{h['id']}", expect=200)
    item = got["test_request"]["items"][0]
    assert item["verdict"] == "unusable"
    assert item["result"]["capacity"]["outbound"]["kbps"] == 514.0
    assert {"code": "capacity_low", "params": {"direction": "outbound", "value": 514.0, "limit": 700.0,
                                               "level": "unusable"}} in item["reason_codes"]
    _, pre = await c.call("POST", f"/api/v1/hearings/{h['id']}/checks", expect=202, json={"kind": "preconnect"})
    await c.scheduler.run_until_idle()
    assert c.gw.started[-1]["kind"] == "preconnect" and c.gw.started[-1]["capacity"] is False


async def test_a_report_without_capacity_is_judged_as_before(scheduled):
    c, h = scheduled
    await c.checks.on_session_result(c.gw.started[-1]["session_id"], report("good"))
    _, got = await c.call("GET", f"/api/v1/hearings/{h['id']}", expect=200)
    item = got["test_request"]["items"][0]
    assert item["verdict"] == "good" and "capacity" not in item["result"]


async def _agent(controller: HubController, http, terminal_id: str, capabilities: list[str]):
    token = await controller.token(terminal_id)
    ws = await http.ws_connect(controller.url + wire.WS_PATH, headers={"Authorization": f"Bearer {token}"})
    await ws.send_str(wire.encode(wire.Hello(terminal_id=terminal_id, agent_version="t", capabilities=capabilities)))
    await _next(ws, "welcome")
    return ws


async def _command_text(ws) -> dict:
    while True:
        raw = await ws.receive(timeout=10)
        m = json.loads(raw.data)
        if m["type"] == "command":
            wire.parse_controller_message(raw.data)          # what an agent of this version reads
            return m["command"]


async def test_the_hub_asks_only_a_capable_caller_and_never_for_monitoring(hub_controller):  # noqa: F811
    hub = hub_controller.hub
    async with aiohttp.ClientSession() as http:
        new_court = await _agent(hub_controller, http, "court-1", ["session", "capacity"])
        old_court = await _agent(hub_controller, http, "court-2", ["session"])
        sizo = await _agent(hub_controller, http, "sizo-1", ["session", "capacity"])
        await hub.start_session(session_id="c1", caller="court-1", callee="sizo-1", kind="test",
                                profile="hearing", duration_s=5, capacity=True)
        assert (await _command_text(sizo)).get("capacity") is None          # the callee is only asked to answer
        assert (await _command_text(new_court))["capacity"] is True
        # An older agent refuses fields it does not know: it gets exactly the command it knows.
        await hub.start_session(session_id="c2", caller="court-2", callee="sizo-1", kind="test",
                                profile="hearing", duration_s=5, capacity=True)
        assert "capacity" not in await _command_text(old_court)
        assert "capacity" not in await _command_text(sizo)
        with pytest.raises(ValueError, match="monitoring"):
            await hub.start_session(session_id="c3", caller="court-1", callee="sizo-1", kind="monitor",
                                    profile="monitor", duration_s=60, capacity=True)
        for ws in (new_court, old_court, sizo):
            await ws.close()
