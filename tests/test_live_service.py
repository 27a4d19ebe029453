"""Live monitoring's I/O service against a real database (SQLite and PostgreSQL), driven through
the real API with a fake clock and a recording gateway (no agents):

- a transition is written whole even when the hearing's verdict refresh inside its transaction
  fails (on PostgreSQL a failed statement aborts the whole transaction unless it ran in a
  savepoint);
- the reconcile pass (hearings to start, end, suspend) costs the same number of statements for
  one monitored hearing as for twenty.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import uuid

import pytest
from sqlalchemy import event, text

from controller.keys import LIVE_KEY
from controller.settings import LiveSettings
from tests.controller_kit import Controller

H = dt.timedelta(hours=1)
pytestmark = pytest.mark.timeout(120)


class FailingRefresh:
    """A verdict refresh whose statement fails inside the caller's transaction."""

    def __init__(self):
        self.calls = 0

    async def refresh_verdict(self, conn, hearing_id, now):
        self.calls += 1
        await conn.execute(text("SELECT 1 / 0"))


async def monitored(ctl: Controller, n: int) -> list[int]:
    """`n` hearings started (in progress, monitored), two hours apart."""
    ids = []
    for k in range(n):
        _, h = await ctl.schedule(start=ctl.clock() + (2 + 2 * k) * H, case=f"2-{k}/2026")
        await ctl.call("POST", f"/api/v1/hearings/{h['id']}/start", role="secretary", expect=200)
        ids.append(h["id"])
    return ids


async def kinds(ctl: Controller, hid: int) -> list[str]:
    return [e["kind"] for e in await ctl.events(hid)]


async def test_a_failing_verdict_refresh_does_not_undo_a_transition(db_url, fake_clock):
    async with Controller(db_url, fake_clock) as ctl:
        svc = ctl.app[LIVE_KEY]
        (hid,) = await monitored(ctl, 1)
        failing = svc.results = FailingRefresh()

        # The session never reports: a break once the start grace is over (the loop's next tick).
        fake_clock.advance(seconds=LiveSettings().start_grace_s + 1)
        for _ in range(100):
            if "reconnect" in await kinds(ctl, hid):
                break
            await asyncio.sleep(0.05)
        assert failing.calls >= 1
        _, breaks = await ctl.call("GET", f"/api/v1/hearings/{hid}/breaks", expect=200)
        assert [b["cause"] for b in breaks["items"]] == ["connection_lost"]
        _, live = await ctl.call("GET", f"/api/v1/hearings/{hid}/live", expect=200)
        assert live["state"] == "reconnecting" and live["break"]["id"] == breaks["items"][0]["id"]

        # Ending the hearing: the state row, the closed break and the event, all of them.
        await ctl.call("POST", f"/api/v1/hearings/{hid}/end", role="secretary", expect=200)
        _, live = await ctl.call("GET", f"/api/v1/hearings/{hid}/live", expect=200)
        assert live["state"] == "ended"
        _, breaks = await ctl.call("GET", f"/api/v1/hearings/{hid}/breaks", expect=200)
        assert breaks["items"][0]["outcome"] == "hearing_held"
        assert (await kinds(ctl, hid))[-1] == "monitoring_stopped"


async def statements_of_a_reconcile(db_url, fake_clock, n: int) -> int:
    async with Controller(db_url, fake_clock) as ctl:
        svc = ctl.app[LIVE_KEY]
        await monitored(ctl, n)
        # A suspension in force elsewhere: the participants' sites are looked at, nothing is blocked.
        await ctl.call("POST", "/api/v1/suspensions", json={"region": "Karaganda", "reason": "riot"}, expect=201)
        seen: list[str] = []

        def count(conn, cursor, statement, parameters, context, executemany):
            seen.append(statement)

        engine = ctl.db.engine.sync_engine
        async with svc.lock:                       # the loop waits meanwhile
            event.listen(engine, "before_cursor_execute", count)
            try:
                await svc.reconcile(svc.now())
            finally:
                event.remove(engine, "before_cursor_execute", count)
        assert len(svc.flows) == n                 # nothing ended, nothing started
        return len(seen)


async def test_a_reconcile_pass_costs_the_same_for_one_hearing_as_for_twenty(db_url, fake_clock, request, tmp_path):
    if db_url.startswith("sqlite"):
        other = f"sqlite:///{tmp_path / 'twenty.sqlite'}"
    else:
        other = request.getfixturevalue("pg_cluster").create_database(f"t_{uuid.uuid4().hex[:12]}")
    one = await statements_of_a_reconcile(db_url, fake_clock, 1)
    twenty = await statements_of_a_reconcile(other, fake_clock, 20)
    assert one <= 6 and twenty == one


async def test_starting_and_ending_a_hearing_are_audited_as_its_update(db_url, fake_clock):
    async with Controller(db_url, fake_clock) as ctl:
        (hid,) = await monitored(ctl, 1)
        await ctl.call("POST", f"/api/v1/hearings/{hid}/end", role="secretary", expect=200)
        await ctl.call("POST", f"/api/v1/hearings/{hid}/end", role="secretary", expect=409)
        _, audit = await ctl.call("GET", "/api/v1/audit?limit=100", expect=200)
        rows = [(a["who"], a["action"], a["target"], a["detail"]) for a in reversed(audit["items"])
                if a["action"] == "hearing.update"]
        assert rows == [("secretary-1", "hearing.update", f"hearing:{hid}", {"status": "in_progress"}),
                        ("secretary-1", "hearing.update", f"hearing:{hid}", {"status": "held"})]


async def test_a_longer_hearing_lengthens_every_participant_s_monitoring(db_url, fake_clock):
    """Every remote participant has a flow of its own (issue 13, part 5): a hearing made longer
    while monitored moves the end of all of them - the others' sessions too are sized and renewed to
    it, so none ends (and is taken for a lost link) before the hearing does."""
    async with Controller(db_url, fake_clock) as ctl:
        svc = ctl.app[LIVE_KEY]
        _, h = await ctl.schedule(start=ctl.clock() + 2 * H, participants=("sizo-almaty-1", "inst-karaganda-1"))
        hid = h["id"]
        await ctl.call("POST", f"/api/v1/hearings/{hid}/start", role="secretary", expect=200)
        flows = svc.intake.of(hid)
        assert [f.callee for f in flows] == ["sizo-almaty-1", "inst-karaganda-1"]
        before = [f.end_at for f in flows]
        await ctl.call("PATCH", f"/api/v1/hearings/{hid}", role="secretary", json={"duration_min": 180}, expect=200)
        async with svc.lock:                       # the loop waits meanwhile
            await svc.reconcile(svc.now())
        assert [f.end_at for f in svc.intake.of(hid)] == [b + 2 * 3600 for b in before]


async def test_a_hearing_started_late_is_monitored_for_its_duration(db_url, fake_clock):
    """"Start the hearing" is there at any time (issue 13, part 2): a hearing started 90 min after
    its planned start - past its planned end - is monitored from then for its duration (every
    reconcile pass reads that end from the record, as a restarted controller does), and stops once
    that is over."""
    async with Controller(db_url, fake_clock) as ctl:
        svc = ctl.app[LIVE_KEY]
        _, h = await ctl.schedule(start=ctl.clock() + H)
        hid = h["id"]
        fake_clock.advance(hours=2, minutes=30)
        await ctl.call("POST", f"/api/v1/hearings/{hid}/start", role="secretary", expect=200)
        end = svc.now() + 3600 + LiveSettings().end_margin_s
        async with svc.lock:
            await svc.reconcile(svc.now())
        assert [f.end_at for f in svc.intake.of(hid)] == [end]
        assert "monitoring_stopped" not in await kinds(ctl, hid)
        fake_clock.advance(hours=1, seconds=LiveSettings().end_margin_s + 1)
        async with svc.lock:
            await svc.reconcile(svc.now())
        assert svc.intake.of(hid) == []
        assert (await ctl.events(hid))[-1]["detail"]["reason"] == "planned_end_passed"
