"""docs/metrics.md is the truth about /metrics: real processes are started, scraped over HTTP,
and what each exposes must equal the table (names, types, labels) - nothing undocumented,
nothing documented and missing. The same processes show that the figures move the way a
user expects: a test session between two real agents appears on both agents and on the
controller; an interval report gives the pair's live quality on the controller."""
from __future__ import annotations

import asyncio
import datetime as dt
import re
import subprocess
import time
import urllib.request
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from contract import wire
from tests import procs
from tests.harness import TERMINALS, System, http
from tests.procs import wait_for

REPO = Path(__file__).resolve().parent.parent
DOC = REPO / "docs" / "metrics.md"
ROW = re.compile(r"^\|\s*`(?P<name>[a-z_:]+)`\s*\|\s*(?P<type>\w+)\s*\|(?P<labels>[^|]*)\|(?P<by>[^|]*)\|")


def documented() -> dict[str, dict]:
    """{metric: {"type", "labels": set, "by": set}} from the tables of docs/metrics.md."""
    out = {}
    for line in DOC.read_text(encoding="utf-8").splitlines():
        m = ROW.match(line)
        if m:
            name = m["name"]
            assert name not in out, f"{name} is in docs/metrics.md twice"
            out[name] = {"type": m["type"], "by": {b.strip() for b in m["by"].split(",") if b.strip()},
                         "labels": {x.strip() for x in m["labels"].split(",") if x.strip()}}
    return out


def scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain")
        return resp.read().decode()


def exposed(text: str) -> dict[str, dict]:
    """{metric as documented: {"type", "labels": set of label names seen, or None without samples}}."""
    out = {}
    for fam in text_string_to_metric_families(text):
        name, kind = fam.name, fam.type
        if kind == "counter":
            name += "_total"
        if kind == "gauge" and name.endswith("_info"):
            kind = "info"
        labels = None
        if fam.samples:
            labels = set().union(*(set(s.labels) for s in fam.samples)) - {"le"}
        out[name] = {"type": kind, "labels": labels}
    return out


def value(text: str, sample: str, **labels: str) -> float | None:
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name == sample and all(s.labels.get(k) == v for k, v in labels.items()):
                return s.value
    return None


def scrape_until(url: str, predicate, what: str, timeout: float = 30) -> str:
    def attempt():
        text = scrape(url)
        return text if predicate(text) else None
    return wait_for(attempt, timeout, what=what)


def assert_matches_doc(text: str, side: str) -> None:
    doc = {n: d for n, d in documented().items() if side in d["by"]}
    got = exposed(text)
    assert sorted(set(got) - set(doc)) == [], f"{side} exposes metrics missing from docs/metrics.md"
    assert sorted(set(doc) - set(got)) == [], f"docs/metrics.md lists metrics {side} does not expose"
    for name, d in doc.items():
        assert got[name]["type"] == d["type"], f"{name}: exposed as {got[name]['type']}, documented {d['type']}"
        if got[name]["labels"] is not None:
            assert got[name]["labels"] == d["labels"], f"{name}: labels {got[name]['labels']} != doc {d['labels']}"
        assert name.startswith("vks_"), name


def test_doc_table_is_well_formed():
    doc = documented()
    assert len(doc) > 50
    for name, d in doc.items():
        assert d["type"] in ("counter", "gauge", "histogram", "info"), name
        assert (d["type"] == "counter") == name.endswith("_total"), f"{name}: _total is for counters only"
        assert (d["type"] == "info") == name.endswith("_info"), name
        assert d["by"] <= {"run", "responder", "controller"} and d["by"], name
        assert "session_id" not in d["labels"] and "session" not in d["labels"], name


# ---- the responder -------------------------------------------------------------------------------

def test_responder_exposes_documented_metrics_and_counts_the_sessions_it_answers(tmp_path):
    config = procs.write_config(tmp_path, "session:\n  host_addresses: ['127.0.0.1']\n")
    with procs.responder(config) as url:
        before = scrape(url + "/metrics")
        assert_matches_doc(before, "responder")
        assert value(before, "vks_agent_sessions_active", role="callee") == 0
        out = subprocess.run(procs.agent_argv("test", "--peer", url, "--duration", "3", "--json",
                                              "--token-file", str(procs.token_file(tmp_path))),
                             env=procs.env_with(config), cwd=procs.REPO, capture_output=True, text=True,
                             timeout=90)
        assert out.returncode in (0, 1), out.stderr

        text = scrape_until(url + "/metrics", lambda t: value(
            t, "vks_agent_sessions_ended_total", kind="test", role="callee", outcome="finished") == 1,
            "the responder's session counted as finished")
    assert_matches_doc(text, "responder")
    assert value(text, "vks_agent_sessions_started_total", kind="test", role="callee") == 1
    assert value(text, "vks_agent_sessions_active", role="callee") == 0
    received = value(text, "vks_agent_link_packets_received_total", peer="direct", direction="inbound")
    assert received is not None and received > 100          # audio + video for ~3 s
    assert value(text, "vks_agent_link_received_bytes_total", peer="direct", direction="inbound") > 10_000
    assert value(text, "vks_agent_link_seconds_total", peer="direct", verdict="good") >= 2


# ---- the whole system ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def system(tmp_path_factory):
    """`vks-controller serve` (SQLite) and two `vks-agent run` terminals with their metrics ports."""
    ports = {t: procs.free_port() for t in TERMINALS}
    s = System(tmp_path_factory.mktemp("system"),
               config={"scheduler": {"poll_s": 0.2}, "checks": {"test_profile": "monitor", "test_duration_s": 3}},
               agent_config=lambda t: {"metrics": {"listen": f"127.0.0.1:{ports[t]}"}, "health": {"interval_s": 2}})
    try:
        s.start()
        yield {"base": s.controller.url, "secretary": s.secretary, "controller": s.controller,
               "agents": {t: f"http://127.0.0.1:{port}/metrics" for t, port in ports.items()}}
    finally:
        codes = s.stop()
    assert codes == [0] * len(codes)


def test_daemon_and_controller_expose_exactly_the_documented_metrics(system):
    for url in system["agents"].values():
        text = scrape_until(url, lambda t: value(t, "vks_agent_health_checks_total"), "first health check")
        assert_matches_doc(text, "run")
        assert value(text, "vks_agent_controller_connected") == 1
        assert value(text, "vks_agent_controller_connections_total") >= 1
        assert value(text, "vks_agent_outbox_dropped_reports_total", kind="interval") == 0
        statuses = {s: value(text, "vks_agent_health_status", status=s) for s in ("ok", "warn", "fail", "unknown")}
        assert sorted(statuses.values()) == [0, 0, 0, 1], statuses
        assert 0 <= value(text, "vks_agent_health_memory_used_ratio") <= 1
        assert 0 <= value(text, "vks_agent_health_disk_used_ratio", mount="/") <= 1
    text = scrape(system["base"] + "/metrics")
    assert_matches_doc(text, "controller")
    assert value(text, "vks_controller_agents_connected") == 2
    assert value(text, "vks_terminal_up", terminal="court-almaty-1") == 1
    assert value(text, "vks_terminal_up", terminal="court-almaty-2") == 0       # registered, never connected
    assert value(text, "vks_controller_database_up") == 1
    # Route patterns, never paths: one series for every hearing id.
    for hid in (101, 102):
        http("GET", f"{system['base']}/api/v1/hearings/{hid}", system["secretary"])
    text = scrape(system["base"] + "/metrics")
    assert value(text, "vks_controller_http_requests_total", method="GET", route="/api/v1/hearings/{id}",
                 status="404") >= 2
    assert "/api/v1/hearings/101" not in text


def test_a_test_session_shows_on_both_agents_and_on_the_controller(system):
    base, secretary = system["base"], system["secretary"]
    _, rooms = http("GET", f"{base}/api/v1/rooms?institution_id=almaty-medeu-district", secretary)
    room_id = next(r["id"] for r in rooms["items"] if r["name"] == "Зал 1")
    start = dt.datetime.now(dt.UTC) + dt.timedelta(days=3)
    status, h = http("POST", f"{base}/api/v1/hearings", secretary, {
        "case_number": "2-0042/2026", "room_id": room_id, "start_utc": start.isoformat(),
        "duration_min": 60, "participants": [{"terminal_id": "sizo-almaty-1"}]})
    assert status == 201, h

    def finished():
        _, got = http("GET", f"{base}/api/v1/hearings/{h['id']}", secretary)
        return got if got["test_request"]["result"] is not None else None
    got = wait_for(finished, 90, step=0.5, what="test result on the hearing")
    verdict = got["test_request"]["result"]["verdict"]

    caller = scrape(system["agents"]["court-almaty-1"])
    assert value(caller, "vks_agent_sessions_ended_total", kind="test", role="caller", outcome="finished") == 1
    assert value(caller, "vks_agent_session_verdicts_total", kind="test", verdict=verdict) == 1
    assert value(caller, "vks_agent_session_connect_seconds_count", kind="test") == 1
    for d in ("inbound", "outbound"):
        assert value(caller, "vks_agent_link_packets_received_total", peer="sizo-almaty-1", direction=d) > 50
    assert value(caller, "vks_agent_link_loss_ratio", peer="sizo-almaty-1", direction="inbound") != \
        value(caller, "vks_agent_link_loss_ratio", peer="sizo-almaty-1", direction="inbound")   # NaN: over
    callee = scrape_until(system["agents"]["sizo-almaty-1"], lambda t: value(
        t, "vks_agent_sessions_ended_total", kind="test", role="callee", outcome="finished") == 1,
        "callee's session ended")
    assert value(callee, "vks_agent_link_packets_received_total", peer="court-almaty-1", direction="inbound") > 50

    ctl = scrape(base + "/metrics")
    assert value(ctl, "vks_controller_sessions_commanded_total", kind="test", outcome="started") == 1
    assert value(ctl, "vks_controller_sessions_ended_total", kind="test", outcome="finished") == 1
    assert value(ctl, "vks_controller_reports_stored_total", kind="session") >= 2     # caller and callee
    assert value(ctl, "vks_controller_reports_stored_total", kind="interval") >= 2
    assert value(ctl, "vks_controller_report_delay_seconds_count", kind="session") >= 2
    assert value(ctl, "vks_checks", kind="test", status=got["test_request"]["status"]) >= 1
    assert value(ctl, "vks_hearings", verdict=got["verdict"]) >= 1
    # The history (issue 12): the real check is kept; its pair's last check is on /metrics.
    pair = {"a": "court-almaty-1", "b": "sizo-almaty-1"}
    assert value(ctl, "vks_pair_last_check_timestamp_seconds", **pair) > time.time() - 120
    assert 0 <= value(ctl, "vks_pair_last_check_loss_ratio", **pair) <= 1
    _, hist = http("GET", f"{base}/api/v1/pairs/sizo-almaty-1/court-almaty-1/history", secretary)
    assert [d["checks"] for d in hist["items"]] == [1]


async def test_interval_reports_give_the_pairs_live_quality_on_the_controller(system):
    """A terminal streaming interval reports (here a scripted agent over the real WebSocket)
    shows its pair's loss, jitter, RTT, MOS and verdict per direction; the final report ends it."""
    token = await asyncio.to_thread(system["controller"].cli, "terminal", "token", "sizo-almaty-2")
    url = system["base"].replace("http", "ws") + wire.WS_PATH
    metrics_url = system["base"] + "/metrics"
    async with aiohttp.ClientSession() as http_session:
        async with http_session.ws_connect(url, headers={"Authorization": f"Bearer {token}"}) as ws:
            await ws.send_str(wire.encode(wire.Hello(terminal_id="sizo-almaty-2", agent_version="test")))
            assert wire.parse_controller_message((await ws.receive()).data).type == "welcome"

            async def report(report_id: str, kind: str, body: dict) -> None:
                await ws.send_str(wire.encode(wire.Report(report_id=report_id, kind=kind, body=body,
                                                          created_at=time.time())))
                while True:
                    m = wire.parse_controller_message((await ws.receive(timeout=10)).data)
                    if m.type == "ack" and m.report_id == report_id:
                        return

            interval = {"t": 7.0, "rtt_ms": 80.0,
                        "outbound": {"packets": 95, "lost": 5, "loss_ratio": 0.05, "jitter_ms": 4.0},
                        "inbound": {"packets": 100, "lost": 0, "loss_ratio": 0.0, "jitter_ms": 2.0}}
            await report("s1:caller:i8", "interval", {"role": "caller", "peer": "court-almaty-2",
                                                      "session_kind": "test", "interval": interval})
            text = await asyncio.to_thread(scrape, metrics_url)
            pair = {"terminal": "sizo-almaty-2", "peer": "court-almaty-2"}
            assert value(text, "vks_link_loss_ratio", direction="outbound", **pair) == pytest.approx(0.05)
            assert value(text, "vks_link_loss_ratio", direction="inbound", **pair) == 0
            assert value(text, "vks_link_jitter_seconds", direction="outbound", **pair) == pytest.approx(0.004)
            assert value(text, "vks_link_rtt_seconds", **pair) == pytest.approx(0.08)
            assert value(text, "vks_link_mos", direction="outbound", **pair) < \
                value(text, "vks_link_mos", direction="inbound", **pair) <= 4.5
            assert value(text, "vks_link_verdict", verdict="unusable", **pair) == 1     # 5 % loss > 3 % (hearing)
            assert value(text, "vks_link_verdict", verdict="good", **pair) == 0

            await report("s1:caller:final", "session", {"role": "caller", "peer": "court-almaty-2",
                                                        "session_kind": "test", "report": {}})
            text = await asyncio.to_thread(scrape, metrics_url)
            assert value(text, "vks_link_loss_ratio", **pair) is None        # the session is over
