"""Fresh results (issue 12 part 5; rules 13, 14, 16) on SQLite and PostgreSQL with a fake clock: a
hearing booked far ahead is tested again in the 48-24 h window before it (rule 13's deadline kept
from the first request); nightly pair tests are planned in each court's local night window, spread
across it, and skipped or deferred when they should be; a failed test is retried with backoff
before it escalates; a terminal offline or unhealthy with a hearing within 48 h opens one
escalation per hearing and terminal, resolved when it is back. Only the clock and the agents'
gateway are fake (tests.controller_kit)."""
from __future__ import annotations

import collections
import datetime as dt
import json
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError
from sqlalchemy import insert, update

from controller import freshness as fr
from controller.settings import ControllerSettings, load_settings, parse_window
from controller.store import history as history_repo
from controller.store import jobs as jobs_repo
from controller.store.schema import agent_presence, hearings, institutions
from tests.conftest import FakeClock
from tests.controller_kit import Controller, report

H = dt.timedelta(hours=1)
MIN = dt.timedelta(minutes=1)
FRESH = {"retest_window_h": [48, 24], "nightly_window": "01:00-05:00", "retry_delays_min": [10, 30, 90],
         "watch_s": 60, "offline_after_s": 300, "watch_horizon_h": 48}


def fresh(**kw):
    return {"freshness": {**FRESH, **kw}}


async def events(c: Controller, hid: int, kind: str) -> list[dict]:
    return [e for e in await c.events(hid) if e["kind"] == kind]


async def escalations(c: Controller, state: str = "open") -> list[dict]:
    items = (await c.call("GET", f"/api/v1/escalations?state={'open' if state == 'open' else 'all'}",
                          role="viewer", expect=200))[1]["items"]
    return [e for e in items if state == "open" or e["state"] == state]


async def run_for(c: Controller, span: dt.timedelta, *, verdict: str | None = "good", step=10 * MIN) -> None:
    """Move the clock on in steps, running what falls due; every nightly test that starts reports
    `verdict` at once (None: never)."""
    end = c.clock() + span
    while c.clock() < end:
        c.clock.advance(step)
        n = len(c.gw.started)
        await c.scheduler.run_until_idle()
        for s in c.gw.started[n:]:
            if verdict and s["session_id"].startswith("nightly-"):
                await c.checks.on_session_result(s["session_id"], report(verdict, loss=0.2 * (verdict != "good")))


def nightly(c: Controller) -> list[dict]:
    return [s for s in c.gw.started if s["session_id"].startswith("nightly-")]


async def job(c: Controller, key: str) -> dict | None:
    async with c.db.read() as conn:
        return await jobs_repo.get(conn, key)


async def jobs_of(c: Controller, prefix: str) -> list[dict]:
    async with c.db.read() as conn:
        return await jobs_repo.list_jobs(conn, prefix=prefix)


# --- pure: when ---------------------------------------------------------------------------------

def test_the_retest_minute_is_inside_the_window_and_spread():
    start = dt.datetime(2026, 12, 20, 10, 0, tzinfo=dt.UTC)
    at = [fr.retest_at(i, start, [48, 24]) for i in range(10_000)]
    assert all(start - 48 * H <= t < start - 24 * H and t.second == 0 for t in at)
    assert fr.retest_at(7, start, [48, 24]) == at[7]                       # the same hearing, the same minute
    per_minute = collections.Counter(at)
    assert len(per_minute) > 1400 and max(per_minute.values()) <= 20       # 1,440 minutes, ~7 each


@pytest.mark.parametrize("tz", ["Asia/Almaty", "Europe/Moscow", "America/New_York", "Asia/Tokyo"])
@pytest.mark.parametrize("window", ["01:00-05:00", "23:00-03:00"])
def test_the_nightly_slot_is_in_the_courts_local_window(tz, window):
    a, b = parse_window(window)
    length = (b - a) % 1440
    now = dt.datetime(2026, 3, 7, 12, 0, tzinfo=dt.UTC)      # New York moves its clocks on 8 March
    for day in range(5):
        t = now + day * 24 * H
        night, at = fr.next_night("court-1", "sizo-1", t, tz, window)
        assert at > t and at - t <= 48 * H
        local = at.astimezone(ZoneInfo(tz))
        minutes = (local.hour * 60 + local.minute - a) % 1440
        assert minutes < length, (local, window)
        opens, closes = fr.night_window(night, tz, window)
        assert opens <= at < closes and opens.astimezone(ZoneInfo(tz)).date() == night


def test_two_thousand_pairs_spread_over_a_four_hour_night():
    night = dt.date(2026, 12, 10)
    at = [fr.pair_slot(f"court-{i % 300}", f"sizo-{i}", night, "Asia/Almaty", "01:00-05:00") for i in range(2000)]
    per_minute = collections.Counter(t.replace(second=0) for t in at)
    assert len(per_minute) == 240 and max(per_minute.values()) <= 20      # 8.3 a minute on average


@pytest.mark.parametrize("bad", [{"nightly_window": "25:00-01:00"}, {"nightly_window": "01:00-01:00"},
                                 {"nightly_window": "1am"}, {"retest_window_h": [24, 48]},
                                 {"retry_delays_min": [10, 0]}])
def test_freshness_settings_are_checked(bad):
    with pytest.raises(ValidationError, match="freshness"):
        ControllerSettings(freshness=bad)


def test_the_example_config_has_the_defaults():
    cfg = load_settings(Path(__file__).resolve().parent.parent / "configs" / "controller.yaml").freshness
    assert cfg == ControllerSettings().freshness
    assert (cfg.retest_window_h, cfg.nightly_window, cfg.retry_delays_min, cfg.watch_s, cfg.offline_after_s) == \
        ([48, 24], "01:00-05:00", [10, 30, 90], 60, 300)


# --- the re-test in the 48-24 h window -----------------------------------------------------------

async def test_a_hearing_booked_far_ahead_is_tested_again_in_the_48_24_h_window(db_url, fake_clock):
    async with Controller(db_url, fake_clock, **fresh(nightly_window=None, watch_s=0)) as c:
        start = fake_clock() + 10 * 24 * H
        _, h = await c.schedule(start=start)
        _, near = await c.schedule(start=fake_clock() + 30 * H, room=("almaty-medeu-district", "Зал 2"),
                                   participants=("sizo-almaty-2",), case="2-2/2026")
        await c.scheduler.run_until_idle()
        assert len(c.gw.started) == 2                   # both rule-13 tests at once
        for s in c.gw.started:
            await c.checks.on_session_result(s["session_id"], report("good"))
        first = (await c.hearing(h["id"]))["test_request"]["items"][0]
        assert first["status"] == "passed"
        [retest] = await jobs_of(c, "freshness:retest:")  # the one booked 30 h ahead is inside the window
        at = retest["due_at"]
        assert start - 48 * H <= at < start - 24 * H and at == fr.retest_at(h["id"], start, [48, 24])

        def mine():
            return [x for x in c.gw.started if x["callee"] == "sizo-almaty-1" and x["kind"] == "test"]
        fake_clock.set(at - MIN)
        await c.scheduler.run_until_idle()
        assert len(mine()) == 1
        fake_clock.set(at)
        await c.scheduler.run_until_idle()
        assert len(mine()) == 2
        [ev] = await events(c, h["id"], "test_retest")
        assert ev["detail"]["deadline"] == first["deadline"]        # rule 13's deadline: the first request's
        again = (await c.hearing(h["id"]))["test_request"]["items"][0]
        assert again["status"] == "running" and again["deadline"] == first["deadline"]
        await c.checks.on_session_result(mine()[-1]["session_id"], report("good"))
        assert (await c.hearing(h["id"]))["test_request"]["items"][0]["status"] == "passed"
        fake_clock.advance(hours=1)
        await c.scheduler.run_until_idle()
        assert len(mine()) == 2                          # once


async def test_a_moved_hearing_is_retested_before_its_new_start_only(db_url, fake_clock):
    async with Controller(db_url, fake_clock, **fresh(nightly_window=None, watch_s=0)) as c:
        _, h = await c.schedule(start=fake_clock() + 10 * 24 * H)
        await c.scheduler.run_until_idle()
        await c.checks.on_session_result(c.gw.started[-1]["session_id"], report("good"))
        new_start = fake_clock() + 20 * 24 * H
        await c.call("PATCH", f"/api/v1/hearings/{h['id']}", role="secretary",
                     json={"start_utc": new_start.isoformat()}, expect=200)
        fake_clock.advance(days=9)
        await c.scheduler.run_until_idle()
        assert await events(c, h["id"], "test_retest") == []    # the old start's job saw the move
        fake_clock.set(new_start - 24 * H)
        await c.scheduler.run_until_idle()
        assert len(await events(c, h["id"], "test_retest")) == 1


async def test_a_hearing_at_the_calendars_edge_plans_no_retest_and_no_error(db_url, fake_clock):
    """Year 1 in +01:00 (the fuzzer's find: its conversion to UTC overflowed into a 500) is a 400
    naming the field; year 1 in UTC is taken as before, with no re-test planned (the window's start
    would overflow)."""
    async with Controller(db_url, fake_clock, **fresh(nightly_window=None, watch_s=0)) as c:
        room = await c.room_id("almaty-medeu-district")
        status, _ = await c.call("POST", "/api/v1/hearings", role="secretary", json={
            "case_number": "2-1/2026", "room_id": room, "start_utc": "0001-01-01T00:01:01+01:00",
            "participants": [{"terminal_id": "sizo-almaty-1"}]})
        assert status == 400
        status, _ = await c.call("POST", "/api/v1/hearings", role="secretary", json={
            "case_number": "2-1/2026", "room_id": room, "start_utc": "0001-01-01T00:01:01Z",
            "participants": [{"terminal_id": "sizo-almaty-1"}]})
        assert status < 500
        assert await jobs_of(c, "freshness:retest:") == []


# --- retries, then the escalation ---------------------------------------------------------------

async def test_a_failed_test_is_retried_10_30_90_min_then_escalates_once(db_url, fake_clock):
    async with Controller(db_url, fake_clock, **fresh(nightly_window=None, watch_s=0)) as c:
        _, h = await c.schedule(start=fake_clock() + 3 * 24 * H)
        await c.scheduler.run_until_idle()
        for n, delay in enumerate((10, 30, 90), 1):
            await c.checks.on_session_result(c.gw.started[-1]["session_id"], report("unusable", connected=n != 2))
            assert await escalations(c) == []
            planned = await events(c, h["id"], "test_retry_planned")
            assert len(planned) == n and planned[-1]["detail"]["attempt"] == n
            assert (await c.hearing(h["id"]))["test_request"]["items"][0]["status"] == "failed"
            fake_clock.advance(minutes=delay - 1)
            await c.scheduler.run_until_idle()
            assert len(c.gw.started) == n
            fake_clock.advance(minutes=1)
            await c.scheduler.run_until_idle()
            assert len(c.gw.started) == n + 1
        await c.checks.on_session_result(c.gw.started[-1]["session_id"], report("unusable"))
        [e] = await escalations(c)
        assert (e["cause"], e["hearing_id"], e["detail"]["retries"], e["detail"]["terminal_id"]) == \
            ("test_retries_failed", h["id"], 3, "sizo-almaty-1")
        fake_clock.advance(hours=5)
        await c.scheduler.run_until_idle()
        assert len(c.gw.started) == 4                  # no more retries
        # A technician runs it again and it passes: resolved by the system.
        await c.call("POST", f"/api/v1/hearings/{h['id']}/checks", role="technician", json={"kind": "test"},
                     expect=202)
        await c.scheduler.run_until_idle()
        await c.checks.on_session_result(c.gw.started[-1]["session_id"], report("good"))
        assert await escalations(c) == []
        [r] = await escalations(c, "resolved")
        assert r["resolved_by"] == "system"


async def test_a_test_that_could_not_run_is_retried_too(db_url, fake_clock):
    """A session that failed without a report (an agent dropped mid-session) is a failed test like one
    that failed its thresholds: retried 10 min later, not escalated at once."""
    async with Controller(db_url, fake_clock, **fresh(nightly_window=None, watch_s=0),
                          scheduler={"max_attempts": 1}) as c:
        _, h = await c.schedule(start=fake_clock() + 3 * 24 * H)
        await c.scheduler.run_until_idle()
        await c.checks.on_session_failed(c.gw.started[-1]["session_id"], "the callee's agent dropped")
        assert await escalations(c) == []
        [planned] = await events(c, h["id"], "test_retry_planned")
        assert planned["detail"]["attempt"] == 1
        fake_clock.advance(minutes=10)
        await c.scheduler.run_until_idle()
        assert len(c.gw.started) == 2


async def test_no_time_for_a_retry_or_a_preconnect_check_escalates_at_once(db_url, fake_clock):
    async with Controller(db_url, fake_clock, **fresh(nightly_window=None, watch_s=0)) as c:
        _, h = await c.schedule(start=fake_clock() + 25 * MIN)      # pre-connect window open: both at once
        await c.scheduler.run_until_idle()
        for s in c.gw.started:
            await c.checks.on_session_result(s["session_id"], report("unusable"))
        assert sorted(e["cause"] for e in await escalations(c)) == ["preconnect_failed", "test_failed"]
        assert await events(c, h["id"], "test_retry_planned") == []


# --- nightly pair tests --------------------------------------------------------------------------

async def test_nightly_pair_tests_in_each_courts_local_night_skipping_pairs_tested_lately(db_url):
    clock = FakeClock(dt.datetime(2026, 12, 1, 9, 0, tzinfo=dt.UTC))      # 14:00 in Almaty
    async with Controller(db_url, clock, **fresh(watch_s=0, retest_window_h=[])) as c:
        async with c.db.transaction() as conn:      # a court two hours west of Almaty
            await conn.execute(update(institutions).where(institutions.c.id == "kyzylorda-district-2")
                               .values(timezone="Europe/Moscow"))
        _, h1 = await c.schedule(start=clock() + 3 * 24 * H)
        _, h2 = await c.schedule(start=clock() + 5 * 24 * H, room=("kyzylorda-district-2", "Зал 1"),
                                 participants=("sizo-kyzylorda-1",), case="2-3/2026")
        _, far = await c.schedule(start=clock() + 9 * 24 * H, room=("almaty-medeu-district", "Зал 2"),
                                  participants=("sizo-almaty-2",), case="2-4/2026")
        await c.scheduler.run_until_idle()
        for s in c.gw.started:                      # the rule-13 tests, now
            await c.checks.on_session_result(s["session_id"], report("good"))
        pairs = {(j["payload"]["caller"], j["payload"]["callee"]): j for j in await jobs_of(c, "freshness:pair:")}
        assert set(pairs) == {("court-almaty-1", "sizo-almaty-1"), ("court-kyzylorda-1", "sizo-kyzylorda-1")}
        for (caller, _), j in pairs.items():
            tz = ZoneInfo("Asia/Almaty" if caller == "court-almaty-1" else "Europe/Moscow")
            local = j["due_at"].astimezone(tz)
            assert 1 <= local.hour < 5 and local.date().isoformat() == j["payload"]["night"], local
        # Tonight both pairs are skipped: tested at 09:00 UTC, under 20 h before. The planner runs
        # every hour; the next night each pair is tested once.
        await run_for(c, 20 * H)
        assert nightly(c) == []
        await run_for(c, 24 * H)
        assert sorted((s["caller"], s["callee"]) for s in nightly(c)) == sorted(pairs)
        assert all(s["capacity"] for s in nightly(c))      # the night measures what the link carries
        for s in nightly(c):
            tz = ZoneInfo("Asia/Almaty" if s["caller"] == "court-almaty-1" else "Europe/Moscow")
        [ev] = await events(c, h1["id"], "pair_test_result")
        assert ev["detail"]["status"] == "passed" and ev["detail"]["caller"] == "court-almaty-1"
        assert len(await events(c, h2["id"], "pair_test_result")) == 1
        assert await events(c, far["id"], "pair_test_result") == []   # 9 days ahead: not yet
        async with c.db.transaction() as conn:      # each kept in the history, the nightly one too
            rows = await history_repo.rows_of_pair(conn, "sizo-almaty-1", "court-almaty-1", dt.datetime(2000, 1, 1,
                                                                                                   tzinfo=dt.UTC))
        assert [(r["kind"], r["test_id"] is not None) for r in rows] == [("test", False), ("nightly", True)]
        # Its job ran at its planned second, in the court's night.
        for j in await jobs_of(c, "freshness:pair:"):
            tz = ZoneInfo("Asia/Almaty" if j["payload"]["caller"] == "court-almaty-1" else "Europe/Moscow")
            assert 1 <= j["due_at"].astimezone(tz).hour < 5


async def test_a_live_hearing_defers_and_a_suspension_skips_the_nightly_test(db_url):
    clock = FakeClock(dt.datetime(2026, 12, 1, 9, 0, tzinfo=dt.UTC))
    # Live monitoring off: its loop (in real time) would monitor the live hearing past its end.
    async with Controller(db_url, clock, **fresh(watch_s=0, retest_window_h=[], defer_s=600),
                          live={"enabled": False}) as c:
        await c.schedule(start=clock() + 5 * 24 * H)
        await c.scheduler.run_until_idle()
        for s in c.gw.started:
            await c.checks.on_session_result(s["session_id"], report("good"))
        await run_for(c, 20 * H)          # tonight: skipped (tested this morning); the next night planned
        [j] = [x for x in await jobs_of(c, "freshness:pair:") if x["state"] == "pending"]
        # Another hearing on the courtroom terminal is in progress at that time.
        _, live = await c.schedule(start=j["due_at"] - 10 * MIN, room=("almaty-medeu-district", "Зал 1"),
                                   participants=("sizo-almaty-2",), case="2-9/2026", duration_min=30)
        async with c.db.transaction() as conn:
            await conn.execute(update(hearings).where(hearings.c.id == live["id"]).values(status="in_progress"))
        clock.set(j["due_at"])
        await c.scheduler.run_until_idle()
        assert nightly(c) == [] and (await job(c, j["key"]))["due_at"] == j["due_at"] + 10 * MIN
        clock.set(j["due_at"] + 25 * MIN)       # that hearing is over (30 min)
        await c.scheduler.run_until_idle()
        assert [s["callee"] for s in nightly(c)] == ["sizo-almaty-1"]
        await c.checks.on_session_result(nightly(c)[0]["session_id"], report("good"))
        # VKS suspended at the SIZO: the next night's test is not run.
        await c.call("POST", "/api/v1/suspensions", json={"institution_id": "sizo-almaty-70-1", "reason": "riot"},
                     expect=201)
        await run_for(c, 26 * H)
        assert len(nightly(c)) == 1


async def test_a_check_running_on_a_terminal_defers_the_nightly_test(db_url):
    clock = FakeClock(dt.datetime(2026, 12, 1, 9, 0, tzinfo=dt.UTC))
    async with Controller(db_url, clock, **fresh(watch_s=0, retest_window_h=[], defer_s=600)) as c:
        await c.schedule(start=clock() + 5 * 24 * H)
        await c.scheduler.run_until_idle()
        for s in c.gw.started:
            await c.checks.on_session_result(s["session_id"], report("good"))
        await run_for(c, 20 * H)
        [j] = [x for x in await jobs_of(c, "freshness:pair:") if x["state"] == "pending"]
        clock.set(j["due_at"] - MIN)             # a hearing booked now: its rule-13 test runs on the SIZO
        await c.schedule(start=clock() + 3 * 24 * H, room=("almaty-medeu-district", "Зал 2"),
                         participants=("sizo-almaty-1",), case="2-8/2026")
        await c.scheduler.run_until_idle()
        running = c.gw.started[-1]
        assert running["callee"] == "sizo-almaty-1" and running["kind"] == "test"
        clock.set(j["due_at"])
        await c.scheduler.run_until_idle()
        assert nightly(c) == [] and (await job(c, j["key"]))["due_at"] == j["due_at"] + 10 * MIN
        await c.checks.on_session_result(running["session_id"], report("good"))
        clock.set(j["due_at"] + 10 * MIN)       # that pair is fresh now, this one is not: it runs
        await c.scheduler.run_until_idle()
        assert [(s["caller"], s["callee"]) for s in nightly(c)] == [("court-almaty-1", "sizo-almaty-1")]


async def test_a_failed_nightly_test_is_retried_then_escalates_on_the_next_hearing(db_url):
    clock = FakeClock(dt.datetime(2026, 12, 1, 9, 0, tzinfo=dt.UTC))
    async with Controller(db_url, clock, **fresh(watch_s=0, retest_window_h=[], retry_delays_min=[10, 30])) as c:
        _, h = await c.schedule(start=clock() + 4 * 24 * H)
        _, later = await c.schedule(start=clock() + 6 * 24 * H, case="2-5/2026")
        await c.scheduler.run_until_idle()
        for s in c.gw.started:
            await c.checks.on_session_result(s["session_id"], report("good"))
        await run_for(c, 44 * H, verdict="unusable")
        assert len(nightly(c)) == 3                  # the test and its two retries, 10 and 30 min later
        gaps = [(b_["session_id"], a_["session_id"]) for a_, b_ in zip(nightly(c), nightly(c)[1:], strict=False)]
        assert len(gaps) == 2
        [e] = await escalations(c)
        assert (e["cause"], e["hearing_id"], e["detail"]["retries"]) == ("test_retries_failed", h["id"], 2)
        assert len(await events(c, later["id"], "pair_test_result")) == 3
        assert [x["detail"]["attempt"] for x in await events(c, h["id"], "test_retry_planned")] == [1, 2]
        await c.checks.on_session_result(nightly(c)[-1]["session_id"], report("good"))    # a duplicate: ignored
        assert len(await events(c, h["id"], "pair_test_result")) == 3
        # The next night it passes: resolved by the system.
        await run_for(c, 24 * H)
        assert await escalations(c) == []
        assert [x["resolved_by"] for x in await escalations(c, "resolved")] == ["system"]


async def test_a_pair_test_that_never_reports_fails(db_url):
    clock = FakeClock(dt.datetime(2026, 12, 1, 9, 0, tzinfo=dt.UTC))
    async with Controller(db_url, clock, **fresh(watch_s=0, retest_window_h=[], retry_delays_min=[])) as c:
        _, h = await c.schedule(start=clock() + 4 * 24 * H)
        await c.scheduler.run_until_idle()
        for s in c.gw.started:
            await c.checks.on_session_result(s["session_id"], report("good"))
        await run_for(c, 44 * H, verdict=None)
        [s] = nightly(c)
        assert s["session_id"] in c.gw.stopped
        [ev] = await events(c, h["id"], "pair_test_result")
        assert ev["detail"]["status"] == "failed" and "in time" in ev["detail"]["error"]
        [e] = await escalations(c)
        assert e["cause"] == "test_retries_failed"
        await c.checks.on_session_result(s["session_id"], report("good"))        # too late: ignored
        assert len(await events(c, h["id"], "pair_test_result")) == 1


# --- the terminal watch --------------------------------------------------------------------------

async def set_presence(c: Controller, terminal_id: str, *, online: bool, last_seen: dt.datetime,
                       health: dict | None = None) -> None:
    values = {"controller_id": "c1" if online else None,
              "lease_until": c.clock() + H if online else None, "last_seen": last_seen,
              "connected_at": last_seen, "health": json.dumps(health) if health else None}
    async with c.db.transaction() as conn:
        res = await conn.execute(update(agent_presence).where(agent_presence.c.terminal_id == terminal_id)
                                 .values(**values))
        if res.rowcount == 0:
            await conn.execute(insert(agent_presence).values(terminal_id=terminal_id, **values))


async def test_the_watch_opens_one_escalation_per_offline_terminal_and_hearing_and_resolves_it(db_url, fake_clock):
    async with Controller(db_url, fake_clock, **fresh(nightly_window=None, retest_window_h=[])) as c:
        _, h = await c.schedule(start=fake_clock() + 30 * H)
        _, h2 = await c.schedule(start=fake_clock() + 40 * H, case="2-6/2026")
        _, far = await c.schedule(start=fake_clock() + 60 * H, case="2-7/2026")
        for s in c.gw.started:
            await c.checks.on_session_result(s["session_id"], report("good"))
        await set_presence(c, "court-almaty-1", online=True, last_seen=fake_clock())
        await set_presence(c, "sizo-almaty-1", online=False, last_seen=fake_clock())
        await c.scheduler.run_until_idle()
        assert await escalations(c) == []            # offline for less than 300 s
        for _ in range(6):
            fake_clock.advance(minutes=1)
            await c.scheduler.run_until_idle()
        open_ = await escalations(c)
        assert sorted((e["hearing_id"], e["cause"], e["detail"]["terminal_id"], e["detail"]["reason"])
                      for e in open_) == [(h["id"], "agent_offline", "sizo-almaty-1", "terminal_offline"),
                                          (h2["id"], "agent_offline", "sizo-almaty-1", "terminal_offline")]
        for _ in range(5):                           # once, not every minute
            fake_clock.advance(minutes=1)
            await c.scheduler.run_until_idle()
        assert len(await escalations(c)) == 2
        assert len(await events(c, h["id"], "escalation_opened")) == 1
        assert far["id"] not in {e["hearing_id"] for e in open_}
        # Seen within scope, as every escalation: the SIZO's technician yes, another court's no.
        for name, inst, seen in (("tech-sizo", "sizo-almaty-70-1", 2), ("tech-kyz", "kyzylorda-district-2", 0)):
            _, u = await c.call("POST", "/api/v1/users", expect=201,
                                json={"name": name, "role": "technician", "institutions": [inst]})
            _, out = await c.call("GET", "/api/v1/escalations", token=u["token"], expect=200)
            assert len(out["items"]) == seen, name
        # Back online: resolved by the system.
        await set_presence(c, "sizo-almaty-1", online=True, last_seen=fake_clock())
        fake_clock.advance(minutes=1)
        await c.scheduler.run_until_idle()
        assert await escalations(c) == []
        assert {e["resolved_by"] for e in await escalations(c, "resolved")} == {"system"}


async def test_the_watch_opens_terminal_unhealthy_while_the_health_check_fails(db_url, fake_clock):
    async with Controller(db_url, fake_clock, **fresh(nightly_window=None, retest_window_h=[])) as c:
        _, h = await c.schedule(start=fake_clock() + 20 * H)
        await set_presence(c, "court-almaty-1", online=True, last_seen=fake_clock(),
                           health={"status": "fail", "problems": ["camera: no device"], "checked_at": "x"})
        await set_presence(c, "sizo-almaty-1", online=True, last_seen=fake_clock(), health={"status": "warn"})
        for _ in range(3):
            fake_clock.advance(minutes=1)
            await c.scheduler.run_until_idle()
        [e] = await escalations(c)
        assert (e["cause"], e["hearing_id"], e["detail"]["terminal_id"], e["detail"]["problems"]) == \
            ("terminal_unhealthy", h["id"], "court-almaty-1", ["camera: no device"])
        # A person resolves it: the watch does not reopen it for the same fault.
        await c.call("POST", f"/api/v1/escalations/{e['id']}/resolve", role="technician", json={}, expect=200)
        fake_clock.advance(minutes=2)
        await c.scheduler.run_until_idle()
        assert await escalations(c) == []
        # The other terminal's health fails now: its own escalation, resolved once it is healthy again.
        await set_presence(c, "sizo-almaty-1", online=True, last_seen=fake_clock(),
                           health={"status": "fail", "problems": ["clock: not synchronized"]})
        fake_clock.advance(minutes=1)
        await c.scheduler.run_until_idle()
        [e2] = await escalations(c)
        assert (e2["cause"], e2["detail"]["terminal_id"]) == ("terminal_unhealthy", "sizo-almaty-1")
        await set_presence(c, "sizo-almaty-1", online=True, last_seen=fake_clock(), health={"status": "ok"})
        fake_clock.advance(minutes=1)
        await c.scheduler.run_until_idle()
        assert await escalations(c) == []
        resolved = {x["id"]: x["resolved_by"] for x in await escalations(c, "resolved")}
        assert resolved == {e["id"]: "technician-1", e2["id"]: "system"}
