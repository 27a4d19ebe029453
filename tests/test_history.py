"""The history of checks and tests (issue 12, part 4): every result kept - each check, each re-run,
each test on demand - in the transaction that stores it; GET /api/v1/terminals/{id}/history and
GET /api/v1/pairs/{a}/{b}/history per local day in the court's time zone; `days` bounded by the
retention; scoped users see only what is in their scope (404 as for what does not exist); the daily
prune; the last check per pair on /metrics, bounded. On SQLite and PostgreSQL (`db_url`).

The world (configs/sites.yaml): every institution keeps UTC+5 (Asia/Almaty, Asia/Qyzylorda), so a
result at 19:30 UTC is the next local day.
"""
from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from contract.quality import Judgement
from contract.reports import SessionReport
from contract.vocab import CheckKind, MeasurementKind, Verdict, words
from controller.store import agents as agents_repo
from controller.store import history
from tests.controller_kit import Controller, report

API = "/api/v1"
ALMATY = ZoneInfo("Asia/Almaty")
KEYS = ["day", "checks", "loss_ratio_p50", "loss_ratio_p95", "jitter_ms_p50", "jitter_ms_p95",
        "rtt_ms_p50", "rtt_ms_p95", "capacity_kbps_p50"]


def sample(loss: float = 0.0, jitter: float = 2.0, rtt_p95: float = 25.0, *, inbound_loss: float | None = None,
           capacity: dict | None = None) -> SessionReport:
    r = report("good", loss=loss)
    r["outbound"] = {**r["outbound"], "jitter_ms": jitter}
    r["inbound"] = {**r["inbound"], "loss_ratio": loss if inbound_loss is None else inbound_loss}
    r["rtt_ms"] = {**r["rtt_ms"], "p95": rtt_p95}
    if capacity is not None:
        r["capacity"] = capacity
    return SessionReport.model_validate(r)


def test_every_check_kind_is_a_measurement_kind():
    assert set(words(CheckKind)) <= set(words(MeasurementKind))


def test_figures_are_the_worse_direction_and_the_lower_capacity():
    f = history.figures(sample(0.01, jitter=7.5, rtt_p95=40.0, inbound_loss=0.04,
                               capacity={"outbound": {"kbps": 1800, "limited_by": "loss"},
                                         "inbound": {"kbps": 950.5, "limited_by": "delay"}}))
    assert f == {"loss_ratio": 0.04, "jitter_ms": 7.5, "rtt_ms": 40.0, "capacity_kbps": 950.5}
    assert history.figures(sample())["capacity_kbps"] is None                  # not measured: not judged
    assert history.capacity_kbps({"outbound": {"kbps": 700}}) == 700.0         # one direction given
    assert history.capacity_kbps({"outbound": {"kbps": None}, "inbound": {}}) is None
    bare = SessionReport.model_validate({"connected": False, "error": "ICE failed"})
    assert history.figures(bare) == {"loss_ratio": None, "jitter_ms": None, "rtt_ms": None, "capacity_kbps": None}


def test_daily_percentiles_per_local_day_across_midnight():
    base = dt.datetime(2026, 11, 30, 18, 0, tzinfo=dt.UTC)       # 23:00 in Almaty
    rows = []
    for i, loss in enumerate([0.0, 0.01, 0.02, 0.03, 0.10]):   # 18:00 .. 18:40 UTC: 23:00 .. 23:40 local
        rows.append({"at": base + dt.timedelta(minutes=10 * i), "loss_ratio": loss, "jitter_ms": float(i),
                     "rtt_ms": 20.0 + i, "capacity_kbps": None})
    for i in range(3):                                          # 19:10 .. 19:30 UTC: after local midnight
        rows.append({"at": base + dt.timedelta(hours=1, minutes=10 + 10 * i), "loss_ratio": None,
                     "jitter_ms": 1.0, "rtt_ms": 30.0, "capacity_kbps": 1000.0 * (i + 1)})
    local = history.daily(rows, ALMATY)
    assert [list(d) for d in local] == [KEYS, KEYS]
    first, second = local
    assert (first["day"], first["checks"]) == ("2026-11-30", 5)
    # Nearest rank: p50 of 5 values is the 3rd, p95 the 5th.
    assert (first["loss_ratio_p50"], first["loss_ratio_p95"]) == (0.02, 0.10)
    assert (first["jitter_ms_p50"], first["jitter_ms_p95"], first["rtt_ms_p50"]) == (2.0, 4.0, 22.0)
    assert first["capacity_kbps_p50"] is None
    assert (second["day"], second["checks"]) == ("2026-12-01", 3)
    assert second["loss_ratio_p50"] is None and second["capacity_kbps_p50"] == 2000.0
    # In UTC all eight are one day.
    assert [(d["day"], d["checks"]) for d in history.daily(rows, ZoneInfo("UTC"))] == [("2026-11-30", 8)]


def test_the_window_starts_at_local_midnight():
    now = dt.datetime(2026, 12, 1, 4, 0, tzinfo=dt.UTC)          # 09:00 on 1 December in Almaty
    assert history.since_local(now, 1, ALMATY) == dt.datetime(2026, 11, 30, 19, 0, tzinfo=dt.UTC)
    assert history.since_local(now, 30, ALMATY) == dt.datetime(2026, 11, 1, 19, 0, tzinfo=dt.UTC)


@pytest.fixture
async def ctl(db_url, fake_clock):
    async with Controller(db_url, fake_clock, history={"keep_days": 60, "metrics_days": 14,
                                                       "metrics_max_pairs": 2}) as c:
        yield c


async def rows(c) -> list[dict]:
    async with c.db.read() as conn:
        return [dict(r._mapping) for r in await conn.execute(select(history.measurements)
                                                             .order_by(history.measurements.c.id))]


async def test_every_check_every_rerun_and_every_test_on_demand_is_kept(ctl, fake_clock):
    c = ctl
    _, h = await c.schedule(start=fake_clock() + dt.timedelta(hours=72))
    await c.scheduler.run_until_idle()
    first = c.gw.started[-1]["session_id"]
    fake_clock.advance(minutes=1)
    await c.checks.on_session_result(first, report("degraded", loss=0.04))
    await c.checks.on_session_result(first, report("degraded", loss=0.04))    # a duplicate: kept once
    # A re-run of the same check is another result, kept too.
    await c.call("POST", f"{API}/hearings/{h['id']}/checks", role="technician", json={"kind": "test"}, expect=202)
    await c.scheduler.run_until_idle()
    second = c.gw.started[-1]["session_id"]
    assert second != first
    fake_clock.advance(minutes=1)
    await c.checks.on_session_result(second, report("good", loss=0.0))
    # A test on demand: its session is the hub's row; its result reaches the same results object.
    _, t = await c.call("POST", f"{API}/tests", role="technician", expect=202,
                        json={"caller": "court-almaty-1", "callee": "sizo-almaty-1"})
    async with c.db.transaction() as conn:
        await agents_repo.save_session(conn, agents_repo.SessionRow(t["id"], "court-almaty-1", "sizo-almaty-1",
                                                                    "test", "hearing", 30.0, "started"))
    fake_clock.advance(minutes=1)
    adhoc = sample(0.02, capacity={"outbound": {"kbps": 2400}, "inbound": {"kbps": 480}})
    await c.checks.on_session_result(t["id"], adhoc)
    await c.checks.on_session_result(t["id"], adhoc)                           # once per session
    await c.checks.on_session_result("adhoc-unknown", adhoc)                   # no such session: nothing
    got = await rows(c)
    assert [(r["kind"], r["caller"], r["callee"], r["verdict"], r["loss_ratio"]) for r in got] == [
        ("test", "court-almaty-1", "sizo-almaty-1", "degraded", 0.04),
        ("test", "court-almaty-1", "sizo-almaty-1", "good", 0.0),
        ("adhoc", "court-almaty-1", "sizo-almaty-1", "good", 0.02)]
    assert got[0]["check_id"] == got[1]["check_id"] is not None and got[2]["test_id"] == t["id"]
    assert got[2]["capacity_kbps"] == 480.0 and got[0]["capacity_kbps"] is None
    assert got[0]["rtt_ms"] == 25.0 and got[0]["jitter_ms"] == 2.0
    _, out = await c.call("GET", f"{API}/terminals/sizo-almaty-1/history", role="viewer", expect=200)
    assert out == {"items": [{"day": "2026-12-01", "checks": 3, "loss_ratio_p50": 0.02, "loss_ratio_p95": 0.04,
                              "jitter_ms_p50": 2.0, "jitter_ms_p95": 2.0, "rtt_ms_p50": 25.0, "rtt_ms_p95": 25.0,
                              "capacity_kbps_p50": 480.0}]}


async def put(c, at: dt.datetime, caller: str, callee: str, loss: float, kind: str = "test") -> None:
    async with c.db.transaction() as conn:
        await history.record(conn, at=at, caller=caller, callee=callee, kind=kind, report=sample(loss),
                             verdict="good")


async def test_history_api_days_pairs_timezones_and_bounds(ctl, fake_clock):
    c, now = ctl, fake_clock()                                  # 2026-12-01 04:00 UTC, 09:00 local
    await put(c, now - dt.timedelta(hours=8, minutes=30), "court-almaty-1", "sizo-almaty-1", 0.01)  # 19:30 UTC
    await put(c, now - dt.timedelta(hours=9, minutes=30), "sizo-almaty-1", "court-almaty-1", 0.03)  # 18:30 UTC
    await put(c, now - dt.timedelta(days=10), "court-almaty-1", "sizo-almaty-2", 0.05)
    await put(c, now - dt.timedelta(days=45), "court-almaty-1", "sizo-almaty-1", 0.07)
    await put(c, now - dt.timedelta(minutes=5), "court-kyzylorda-1", "sizo-kyzylorda-1", 0.09)

    async def days(path: str) -> list[tuple[str, int]]:
        _, out = await c.call("GET", path, role="viewer", expect=200)
        assert all(list(d) == KEYS for d in out["items"])
        return [(d["day"], d["checks"]) for d in out["items"]]

    # Default 30 days, local days (UTC+5): 19:30 UTC is 1 December, 18:30 UTC still 30 November.
    assert await days(f"{API}/terminals/sizo-almaty-1/history") == [("2026-11-30", 1), ("2026-12-01", 1)]
    assert await days(f"{API}/terminals/sizo-almaty-1/history?timezone=UTC") == [("2026-11-30", 2)]
    assert await days(f"{API}/terminals/court-almaty-1/history") == [("2026-11-21", 1), ("2026-11-30", 1),
                                                                      ("2026-12-01", 1)]
    assert await days(f"{API}/terminals/court-almaty-1/history?days=60") == [
        ("2026-10-17", 1), ("2026-11-21", 1), ("2026-11-30", 1), ("2026-12-01", 1)]
    assert await days(f"{API}/terminals/court-almaty-1/history?days=1") == [("2026-12-01", 1)]
    # The pair is unordered: either way round, both directions of calling.
    ab = await days(f"{API}/pairs/court-almaty-1/sizo-almaty-1/history")
    assert ab == await days(f"{API}/pairs/sizo-almaty-1/court-almaty-1/history") == [("2026-11-30", 1),
                                                                                      ("2026-12-01", 1)]
    assert await days(f"{API}/pairs/court-almaty-1/sizo-almaty-2/history") == [("2026-11-21", 1)]
    assert await days(f"{API}/pairs/court-almaty-2/sizo-almaty-1/history") == []
    assert await days(f"{API}/terminals/sizo-almaty-2/history?days=5") == []
    # Out of range: a clear 400 naming the field and the range (keep_days is 60 here).
    for bad in ("0", "61", "-1", "x"):
        status, out = await c.call("GET", f"{API}/terminals/sizo-almaty-1/history?days={bad}", role="viewer")
        assert status == 400 and out["field"] == "days", (bad, out)
    assert "between 1 and 60" in (await c.call("GET", f"{API}/pairs/court-almaty-1/sizo-almaty-1/history?days=61",
                                               role="viewer", expect=400))[1]["message"]
    _, out = await c.call("GET", f"{API}/terminals/sizo-almaty-1/history?timezone=Mars/Olympus", expect=400)
    assert out["field"] == "timezone" and "Mars/Olympus" in out["message"]
    await c.call("GET", f"{API}/pairs/sizo-almaty-1/sizo-almaty-1/history", expect=400)
    await c.call("GET", f"{API}/terminals/no-such-terminal/history", expect=404)
    await c.call("GET", f"{API}/pairs/no-such-terminal/sizo-almaty-1/history", expect=404)
    await c.call("GET", f"{API}/terminals/sizo-almaty-1/history", role=None, expect=401)


async def test_a_scoped_user_sees_only_the_history_in_scope(ctl, fake_clock):
    c, now = ctl, fake_clock()
    await put(c, now, "court-almaty-1", "sizo-almaty-1", 0.01)
    await put(c, now, "court-kyzylorda-1", "sizo-kyzylorda-1", 0.02)
    _, u = await c.call("POST", f"{API}/users", expect=201,
                        json={"name": "tech-kyz", "role": "technician", "regions": ["Kyzylorda"]})
    tok = u["token"]
    status, mine = await c.call("GET", f"{API}/terminals/sizo-kyzylorda-1/history", token=tok)
    assert status == 200 and [d["checks"] for d in mine["items"]] == [1]
    await c.call("GET", f"{API}/pairs/sizo-kyzylorda-1/court-kyzylorda-1/history", token=tok, expect=200)
    # Out of scope: exactly the answer for a terminal or a pair that does not exist.
    _, out = await c.call("GET", f"{API}/terminals/sizo-almaty-1/history", token=tok, expect=404)
    _, missing = await c.call("GET", f"{API}/terminals/no-such-1/history", token=tok, expect=404)
    assert out["message"].replace("sizo-almaty-1", "X") == missing["message"].replace("no-such-1", "X")
    _, out = await c.call("GET", f"{API}/pairs/court-almaty-1/sizo-almaty-1/history", token=tok, expect=404)
    _, missing = await c.call("GET", f"{API}/pairs/no-such-1/no-such-2/history", token=tok, expect=404)
    assert out["message"].replace("court-almaty-1/sizo-almaty-1", "X") == \
        missing["message"].replace("no-such-1/no-such-2", "X")
    # A pair with one terminal in scope is theirs.
    await c.call("GET", f"{API}/pairs/court-almaty-1/sizo-kyzylorda-1/history", token=tok, expect=200)


async def test_the_daily_prune_keeps_keep_days(ctl, fake_clock):
    c, now = ctl, fake_clock()
    for age in (0, 59, 61, 400):
        await put(c, now - dt.timedelta(days=age), "court-almaty-1", "sizo-almaty-1", age / 1000)
    await c.scheduler.schedule_daily(history.PRUNE_KIND, now)
    assert history.PRUNE_KIND in c.scheduler.daily
    await c.scheduler.run_until_idle()
    assert sorted(r["loss_ratio"] for r in await rows(c)) == [0.0, 0.059]
    # The job is there again tomorrow.
    async with c.db.read() as conn:
        from controller.store.schema import jobs
        due = (await conn.execute(select(jobs.c.due_at).where(jobs.c.kind == history.PRUNE_KIND,
                                                              jobs.c.state == "pending"))).scalar_one()
    assert due == now + dt.timedelta(days=1)


async def test_last_per_pair_is_bounded_and_counts_the_rest(ctl, fake_clock):
    c, now = ctl, fake_clock()
    await put(c, now - dt.timedelta(days=20), "court-almaty-2", "sizo-almaty-2", 0.5)    # too old for metrics
    await put(c, now - dt.timedelta(hours=3), "court-almaty-1", "sizo-almaty-1", 0.01)
    await put(c, now - dt.timedelta(hours=2), "sizo-almaty-1", "court-almaty-1", 0.02)   # the same pair, later
    await put(c, now - dt.timedelta(hours=1), "court-kyzylorda-1", "sizo-kyzylorda-1", 0.03)
    await put(c, now - dt.timedelta(hours=4), "court-almaty-1", "sizo-almaty-2", 0.04)
    async with c.db.read() as conn:
        kept, omitted = await history.last_per_pair(conn, now - dt.timedelta(days=14), 2)
        n = (await conn.execute(select(func.count()).select_from(history.measurements))).scalar_one()
    assert n == 5
    assert [(r["a"], r["b"], r["loss_ratio"]) for r in kept] == [
        ("court-kyzylorda-1", "sizo-kyzylorda-1", 0.03), ("court-almaty-1", "sizo-almaty-1", 0.02)]
    assert omitted == 1


async def test_metrics_show_the_last_check_of_each_recent_pair_bounded(ctl, fake_clock):
    from prometheus_client.parser import text_string_to_metric_families
    c, now = ctl, fake_clock()
    await put(c, now - dt.timedelta(days=20), "court-almaty-2", "sizo-almaty-2", 0.5)    # beyond metrics_days
    await put(c, now - dt.timedelta(hours=3), "court-almaty-1", "sizo-almaty-1", 0.01)
    await put(c, now - dt.timedelta(hours=2), "sizo-almaty-1", "court-almaty-1", 0.02)
    await put(c, now - dt.timedelta(hours=4), "court-almaty-1", "sizo-almaty-2", 0.04)
    async with c.db.transaction() as conn:
        await history.record(conn, at=now - dt.timedelta(hours=1), caller="sizo-kyzylorda-1",
                             callee="court-kyzylorda-1", kind="adhoc", verdict="good",
                             report=sample(0.03, jitter=12.0, rtt_p95=80.0,
                                           capacity={"outbound": {"kbps": 900}, "inbound": {"kbps": 1500}}))
    _, text = await c.call("GET", "/metrics", role=None, expect=200)
    got: dict[str, dict[tuple[str, str], float]] = {}
    for fam in text_string_to_metric_families(text):
        if fam.name.startswith("vks_pair_last_check"):
            got[fam.name] = {(s.labels.get("a", ""), s.labels.get("b", "")): s.value for s in fam.samples}
    kyz, alm = ("court-kyzylorda-1", "sizo-kyzylorda-1"), ("court-almaty-1", "sizo-almaty-1")
    # metrics_max_pairs is 2: the two most recently checked pairs; the third counted, the old one not.
    assert got["vks_pair_last_check_loss_ratio"] == {kyz: 0.03, alm: 0.02}
    assert got["vks_pair_last_check_jitter_seconds"] == {kyz: pytest.approx(0.012), alm: pytest.approx(0.002)}
    assert got["vks_pair_last_check_rtt_seconds"] == {kyz: pytest.approx(0.08), alm: pytest.approx(0.025)}
    assert got["vks_pair_last_check_capacity_bits_per_second"] == {kyz: 900_000.0}
    assert got["vks_pair_last_check_timestamp_seconds"] == {
        kyz: (now - dt.timedelta(hours=1)).timestamp(), alm: (now - dt.timedelta(hours=2)).timestamp()}
    assert got["vks_pair_last_check_pairs_omitted"] == {("", ""): 1}


async def test_a_test_on_demand_is_judged_by_the_profile_it_ran_with(db_url, fake_clock):
    seen = []

    def judge(r: SessionReport, profile: str | None) -> Judgement:
        seen.append(profile)
        return Judgement(Verdict.GOOD if profile == "monitor" else Verdict.DEGRADED, [], None, [])

    async with Controller(db_url, fake_clock, judge=judge) as c:
        _, t = await c.call("POST", f"{API}/tests", role="technician", expect=202,
                            json={"caller": "court-almaty-1", "callee": "sizo-almaty-1", "profile": "monitor"})
        async with c.db.transaction() as conn:
            await agents_repo.save_session(conn, agents_repo.SessionRow(t["id"], "court-almaty-1", "sizo-almaty-1",
                                                                        "test", "monitor", 30.0, "started"))
        await c.checks.on_session_result(t["id"], report("degraded"))
        assert seen == ["monitor"]
        assert [(r["kind"], r["verdict"]) for r in await rows(c)] == [("adhoc", "good")]
