"""Issue 15, the hub at scale - behaviour, not speed: the batched token checks, presence claims and
releases answer each asker as its own query did; the writer's driver-level insert stores a report
once and counts only new rows; the hub refuses a connection `busy` past its handshake limit; the
benchmark prints exactly its JSON keys, and a storm of agents reconnecting after the controller was
killed all come back with nothing lost or doubled (SQLite and PostgreSQL where a database is used)."""
from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import re
import subprocess
import sys

import aiohttp
import pytest

from controller.hub.batch import Batcher, HelloBatches
from controller.store import agents as store
from controller.store.db import Database
from controller.store.migrate import migrate
from tests.procs import REPO
from tests.test_link_hub import Controller

BENCH = str(REPO / "benchmarks" / "agent_load.py")
JSON_KEYS = ["agents", "connected", "reports_per_s", "p50_ms", "p99_ms", "max_ms", "dropped", "doubled",
             "controller_cores", "controller_rss_mb"]


@pytest.fixture
async def db(db_url):
    d = Database(db_url)
    await migrate(d)
    try:
        yield d
    finally:
        await d.close()


async def test_batcher_answers_each_asker_in_order_and_a_failure_is_everyones():
    calls: list[list[int]] = []

    async def double(items: list[int]) -> list[int]:
        calls.append(items)
        return [2 * i for i in items]

    b: Batcher[int, int] = Batcher(double, wait_s=0.01)
    assert await asyncio.gather(*(b.submit(i) for i in range(7))) == [0, 2, 4, 6, 8, 10, 12]
    assert calls == [list(range(7))]                # asked together: one call

    async def broken(items: list[int]) -> list[int]:
        raise ConnectionError("database away")

    bad: Batcher[int, int] = Batcher(broken, wait_s=0.01)
    results = await asyncio.gather(*(bad.submit(i) for i in range(3)), return_exceptions=True)
    assert [type(r) for r in results] == [ConnectionError] * 3


async def test_batched_tokens_and_presence_match_the_single_queries(db):
    async with db.transaction() as conn:
        _, tok_a = await store.issue_token(conn, "t-a")
        _, tok_b = await store.issue_token(conn, "t-b")
        rid, tok_revoked = await store.issue_token(conn, "t-c")
        await store.revoke_tokens(conn, "t-c", token_id=rid)
    hb = HelloBatches(db, "ctl-1", lease_s=30)
    try:
        got = await asyncio.gather(hb.authenticate(tok_a), hb.authenticate(tok_b), hb.authenticate(tok_revoked),
                                   hb.authenticate("vkst_unknown"), hb.authenticate(tok_a))
        assert got == ["t-a", "t-b", None, None, "t-a"]
        assert hb.tokens.batches == 1

        # Another controller holds t-b with a live lease: the claim names it (to be told to let go).
        async with db.transaction() as conn:
            await store.claim_presence(conn, "t-b", "ctl-2", agent_version="1",
                                       lease_until=store.utcnow() + dt.timedelta(seconds=30))
        previous = await asyncio.gather(hb.claim("t-a", "1"), hb.claim("t-b", "1"))
        assert previous == [None, "ctl-2"]
        async with db.read() as conn:
            assert await store.online_terminals(conn) == {"t-a", "t-b"}
            assert await store.holder(conn, "t-b") == "ctl-1"

        # Asked together, a release and the next claim of one terminal are written in that order ...
        await asyncio.gather(hb.release("t-a"), hb.claim("t-a", "2"))
        async with db.read() as conn:
            assert await store.holder(conn, "t-a") == "ctl-1"
        # ... and a claim then a release leave it released.
        await asyncio.gather(hb.claim("t-a", "3"), hb.release("t-a"))
        async with db.read() as conn:
            assert await store.holder(conn, "t-a") is None
    finally:
        await hb.close()


async def test_batched_orphan_query_filters_by_each_connection_start(db):
    t0 = store.utcnow()
    async with db.transaction() as conn:
        await store.save_session(conn, store.SessionRow("s-1", "t-a", "t-b", "test", None, 10.0, "started"))
    t1 = store.utcnow() + dt.timedelta(seconds=1)
    hb = HelloBatches(db, "ctl-1", lease_s=30)
    try:
        before, after, other = await asyncio.gather(hb.started_sessions("t-a", t0 - dt.timedelta(seconds=5)),
                                                    hb.started_sessions("t-a", t1),
                                                    hb.started_sessions("t-b", t1))
        assert (before, after, other) == ([], ["s-1"], [])
    finally:
        await hb.close()


async def test_driver_level_insert_stores_once_and_counts_new_rows(db):
    rows = [("t-a", f"r{i}", "interval", None, json.dumps({"interval": {"t": float(i)}}, separators=(",", ":")),
             1700000000.5 + i) for i in range(3)]
    async with db.transaction() as conn:
        first = await store.store_report_rows(conn, rows)
    async with db.transaction() as conn:
        again = await store.store_report_rows(conn, rows[1:] + [("t-a", "r9", "interval", None, "{}", None)])
    if db.is_postgres:
        assert first in (3, None) and again in (1, None)    # what the driver says
    else:
        assert (first, again) == (3, 1)
    async with db.read() as conn:
        assert await store.count_reports(conn, "t-a") == 4
        got = await store.get_report(conn, "t-a", "r2")
    assert got is not None and got["body"] == {"interval": {"t": 2.0}} and got["created_at"] == 1700000002.5
    assert got["received_at"].tzinfo is not None


async def test_a_batch_larger_than_one_insert_is_stored_whole_and_once(db, monkeypatch):
    # SQLite takes a batch in multi-row INSERTs of SQLITE_ROWS_PER_INSERT rows (7 here: 3 statements).
    monkeypatch.setattr(store, "SQLITE_ROWS_PER_INSERT", 7)
    rows = [("t-b", f"r{i}", "interval", None, "{}", None) for i in range(20)]
    async with db.transaction() as conn:
        first = await store.store_report_rows(conn, rows)
    more = [("t-b", f"r{i}", "interval", None, "{}", None) for i in range(15, 25)]
    async with db.transaction() as conn:
        again = await store.store_report_rows(conn, more)
    if not db.is_postgres:
        assert (first, again) == (20, 5)
    async with db.read() as conn:
        assert await store.count_reports(conn, "t-b") == 25


class _Conn:
    """What the writer needs of a connection: its terminal and a send that keeps what was sent."""

    def __init__(self, terminal_id: str) -> None:
        self.terminal_id = terminal_id
        self.sent: list[str] = []

    async def send(self, text: str) -> bool:
        self.sent.append(text)
        return True


async def test_the_writer_holds_back_a_reader_while_queue_max_reports_wait(db):
    from contract import wire
    from controller.hub.base import HubOptions, HubStats
    from controller.hub.writer import ReportWriter

    stats = HubStats()
    writer = ReportWriter(db, HubOptions(queue_max=2), stats, session_report=lambda t, r: None)
    c = _Conn("t-q")
    reports = [wire.Report(report_id=f"q{i}", kind="health", body={"status": "ok"}) for i in range(3)]
    await writer.put(c, reports[0])         # type: ignore[arg-type]
    await writer.put(c, reports[1])         # type: ignore[arg-type]
    third = asyncio.ensure_future(writer.put(c, reports[2]))     # type: ignore[arg-type]
    # Nothing stores while the writer does not run: the third waits, however long.
    done, _ = await asyncio.wait([third], timeout=0.3)
    assert not done and stats.backpressure_waits_total == 1
    run = asyncio.ensure_future(writer.run())
    try:
        await asyncio.wait_for(third, 30)
        await writer.drain(30)
        acked = [json.loads(t)["report_id"] for t in c.sent]
        assert acked == ["q0", "q1", "q2"]
    finally:
        run.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await run
    async with db.read() as conn:
        assert await store.count_reports(conn, "t-q") == 3


async def test_connections_past_the_handshake_limit_are_refused_busy(tmp_path):
    ctl = Controller(f"sqlite:///{tmp_path / 'c.sqlite'}", max_handshakes=0)
    await ctl.start()
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{ctl.port}/api/v1/agent/ws",
                                headers={"Authorization": "Bearer vkst_x"}) as resp:
                assert resp.status == 503
                assert (await resp.json())["error"] == "busy"
        assert ctl.hub.stats.busy_refusals_total == 1
    finally:
        await ctl.stop()


def _bench(*args: str, timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, BENCH, "--json", "--procs", "1", "--ramp", "1", *args],
                          capture_output=True, text=True, timeout=timeout, cwd=REPO)


def test_benchmark_json_has_exactly_its_keys_and_holds_a_small_load():
    out = _bench("--agents", "20", "--seconds", "5", timeout=240)
    assert out.returncode == 0, out.stderr[-3000:]
    summary = json.loads(out.stdout)
    assert list(summary) == JSON_KEYS
    assert (summary["agents"], summary["connected"], summary["dropped"], summary["doubled"]) == (20, 20, 0, 0)


def test_benchmark_storm_agents_all_come_back_nothing_lost_or_doubled():
    """The controller SIGKILLed and restarted under 30 agents: each comes back (its first ack after
    the kill), every report made is stored once. 17 s after the kill plus the agents' 15 s to
    deliver: room for the whole backoff ladder (2 + 4 + 8 + 16 s) behind a slow restart."""
    out = _bench("--agents", "30", "--seconds", "20", "--storm", "--storm-after", "3", timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    summary = json.loads(out.stdout)
    assert (summary["connected"], summary["dropped"], summary["doubled"]) == (30, 0, 0), out.stderr[-3000:]
    back = re.search(r"back and reporting (\d+) / (\d+) agents", out.stderr)
    assert back is not None and back.group(1) == back.group(2) == "30", out.stderr[-3000:]


def test_fast_ack_is_an_ack_with_a_uuid4_id_and_any_report_id_escaped():
    import uuid

    from contract import wire
    ids = set()
    for rid in ("r-1", 'q"uo\\te', "é-ünï", "tab\tand\nline", "s:caller:i33"):
        text = wire.encode_ack(rid)
        assert text.isascii()
        m = wire.parse_controller_message(text)
        assert isinstance(m, wire.Ack) and m.report_id == rid
        u = uuid.UUID(m.id)
        assert (u.version, u.variant, str(u)) == (4, uuid.RFC_4122, m.id)
        ids.add(m.id)
    assert len(ids) == 5
