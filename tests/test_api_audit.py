"""The audit trail the REST API writes (rules 5, 6), on SQLite and PostgreSQL: every change through
the API leaves exactly one row naming who did what to which target, with the same words as
always; a change and its audit row are committed together or not at all; and the hearings list
filters by verdict before it takes a page."""
from __future__ import annotations

import datetime as dt

import pytest

from controller.api.audit import AuditEntry
from controller.store import users as users_repo
from tests.conftest import FakeClock
from tests.controller_kit import Controller, report

H = dt.timedelta(hours=1)


@pytest.fixture
async def ctl(db_url, fake_clock):
    async with Controller(db_url, fake_clock) as c:
        yield c


async def trail(ctl: Controller) -> list[tuple]:
    """(who, action, target, detail) of every audit row, oldest first."""
    _, audit = await ctl.call("GET", "/api/v1/audit?limit=10000", expect=200)
    return [(a["who"], a["action"], a["target"], a["detail"]) for a in reversed(audit["items"])]


async def test_every_change_writes_one_audit_row_with_the_usual_words(ctl):
    start = ctl.clock() + 48 * H
    s = start.isoformat().replace("+00:00", "Z")
    inst = {"id": "sizo-pavlodar-1", "kind": "sizo", "name": "СИЗО Павлодар", "region": "Pavlodar"}
    await ctl.call("POST", "/api/v1/institutions", json=inst, expect=201)
    await ctl.call("PATCH", "/api/v1/institutions/sizo-pavlodar-1", json={"name": "СИЗО-1"}, expect=200)
    _, room = await ctl.call("POST", "/api/v1/rooms", json={"institution_id": "sizo-pavlodar-1", "name": "A"},
                             expect=201)
    rid = room["id"]
    await ctl.call("PATCH", f"/api/v1/rooms/{rid}", json={"name": "B"}, expect=200)
    await ctl.call("DELETE", f"/api/v1/rooms/{rid}", expect=204)
    await ctl.call("POST", "/api/v1/terminals", json={"id": "pv-t1", "institution_id": "sizo-pavlodar-1",
                                                      "name": "ВКС"}, expect=201)
    await ctl.call("PATCH", "/api/v1/terminals/pv-t1", json={"name": "ВКС 2"}, expect=200)
    await ctl.call("DELETE", "/api/v1/terminals/pv-t1", expect=204)
    _, contact = await ctl.call("POST", "/api/v1/institutions/sizo-pavlodar-1/contacts",
                                json={"kind": "technician", "name": "Асан", "email": "a@example.kz"}, expect=201)
    await ctl.call("DELETE", f"/api/v1/contacts/{contact['id']}", expect=204)
    await ctl.call("DELETE", "/api/v1/institutions/sizo-pavlodar-1", expect=204)

    _, h = await ctl.schedule(start=start)
    hid = h["id"]
    await ctl.call("PATCH", f"/api/v1/hearings/{hid}", role="secretary", json={"duration_min": 90}, expect=200)
    await ctl.call("PATCH", f"/api/v1/hearings/{hid}", role="secretary", json={"duration_min": 90}, expect=200)
    await ctl.call("PATCH", f"/api/v1/hearings/{hid}", role="secretary", json={}, expect=200)
    await ctl.call("POST", f"/api/v1/hearings/{hid}/agreement", json={"note": "ok"}, expect=200)
    await ctl.call("POST", f"/api/v1/hearings/{hid}/checks", role="technician", json={"kind": "test"}, expect=202)
    _, susp = await ctl.call("POST", "/api/v1/suspensions", role="coordinator",
                             json={"institution_id": "sizo-almaty-70-1", "reason": "riot"}, expect=201)
    await ctl.call("DELETE", f"/api/v1/suspensions/{susp['id']}", role="coordinator", expect=200)
    await ctl.call("DELETE", f"/api/v1/hearings/{hid}", role="secretary", expect=200)
    await ctl.call("DELETE", f"/api/v1/hearings/{hid}", role="secretary", expect=200)    # cancelled already
    await ctl.call("POST", "/api/v1/users", json={"name": "aigerim", "role": "viewer"}, expect=201)
    await ctl.call("DELETE", "/api/v1/users/aigerim/tokens", expect=200)
    _, test = await ctl.call("POST", "/api/v1/tests", role="technician", expect=202,
                             json={"caller": "court-almaty-1", "callee": "sizo-almaty-1", "duration_s": 5})
    t = f"hearing:{hid}"
    assert await trail(ctl) == [
        ("admin-1", "institution.create", "institution:sizo-pavlodar-1",
         {**inst, "level": None, "timezone": "Asia/Almaty"}),
        ("admin-1", "institution.update", "institution:sizo-pavlodar-1", {"name": "СИЗО-1"}),
        ("admin-1", "room.create", f"room:{rid}", {"institution_id": "sizo-pavlodar-1", "name": "A"}),
        ("admin-1", "room.update", f"room:{rid}", {"name": "B"}),
        ("admin-1", "room.delete", f"room:{rid}", {}),
        ("admin-1", "terminal.create", "terminal:pv-t1", {"id": "pv-t1", "institution_id": "sizo-pavlodar-1",
                                                          "room_id": None, "role": "institution", "name": "ВКС"}),
        ("admin-1", "terminal.update", "terminal:pv-t1", {"name": "ВКС 2"}),
        ("admin-1", "terminal.delete", "terminal:pv-t1", {"tokens_revoked": 0}),      # issue 11
        ("admin-1", "contact.create", "institution:sizo-pavlodar-1",
         {"contact_id": contact["id"], "kind": "technician", "name": "Асан"}),
        ("admin-1", "contact.delete", "institution:sizo-pavlodar-1", {"contact_id": contact["id"]}),
        ("admin-1", "institution.delete", "institution:sizo-pavlodar-1", {}),
        ("secretary-1", "hearing.create", t, {"case_number": "2-1234/2026", "start_utc": s}),
        ("secretary-1", "hearing.update", t, {"duration_min": 90}),        # the same again, or nothing: no row
        ("admin-1", "hearing.agree", t, {"note": "ok"}),
        ("technician-1", "check.run", t, {"kind": "test"}),
        ("coordinator-1", "suspension.create", f"suspension:{susp['id']}",
         {"institution_id": "sizo-almaty-70-1", "region": None, "reason": "riot",
          "from_utc": ctl.clock().isoformat().replace("+00:00", "Z"), "until_utc": None,
          "affected_hearings": [hid]}),
        ("coordinator-1", "suspension.lift", f"suspension:{susp['id']}", {"affected_hearings": [hid]}),
        ("secretary-1", "hearing.cancel", t, {}),                           # once: the second cancel writes none
        ("admin-1", "user.create", "user:aigerim", {"role": "viewer", "scope": None,
                                                                 "institutions": [], "regions": []}),
        ("admin-1", "user.revoke_tokens", "user:aigerim", {"revoked": 1}),
        ("technician-1", "test.run", f"test:{test['id']}",
         {"caller": "court-almaty-1", "callee": "sizo-almaty-1", "profile": ctl.settings.checks.test_profile,
          "duration_s": 5.0, "capacity": True}),
    ]


async def test_a_change_and_its_audit_row_commit_together_or_not_at_all(ctl, monkeypatch):
    """When the audit row cannot be written, the change it records is not written either."""
    before = await trail(ctl)

    async def broken(*args, **kwargs):
        raise RuntimeError("audit table unavailable")
    monkeypatch.setattr(users_repo, "record", broken)
    status, _ = await ctl.call("POST", "/api/v1/rooms", json={"institution_id": "almaty-city-court",
                                                              "name": "Зал 77"})
    assert status == 500
    status, _ = await ctl.schedule(start=ctl.clock() + 48 * H, expect=None)
    assert status == 500
    monkeypatch.undo()
    _, rooms = await ctl.call("GET", "/api/v1/rooms?institution_id=almaty-city-court", expect=200)
    assert "Зал 77" not in {r["name"] for r in rooms["items"]}
    _, listed = await ctl.call("GET", "/api/v1/hearings", expect=200)
    assert listed["items"] == []
    assert await trail(ctl) == before


async def test_a_route_that_forgets_its_audit_row_changes_nothing(ctl, monkeypatch):
    """A declared row not written by the time the request's transaction ends fails that transaction:
    the change rolls back before the 500, so a client that retries does not make it twice."""
    before = await trail(ctl)

    async def forgotten(self, conn):        # a handler bug: the row is neither written nor skipped
        return None
    monkeypatch.setattr(AuditEntry, "write", forgotten)
    status, body = await ctl.call("POST", "/api/v1/rooms", json={"institution_id": "almaty-city-court",
                                                                 "name": "Зал 78"})
    assert (status, body["error"]) == (500, "internal")
    monkeypatch.undo()
    _, rooms = await ctl.call("GET", "/api/v1/rooms?institution_id=almaty-city-court", expect=200)
    assert "Зал 78" not in {r["name"] for r in rooms["items"]}
    assert await trail(ctl) == before


class TickingClock(FakeClock):
    """A clock that moves a second at every reading: times read at different moments differ."""

    def __call__(self) -> dt.datetime:
        return self.advance(seconds=1)


async def test_an_audit_row_carries_the_time_of_its_change_not_of_the_request(db_url):
    """The row's time is the one its change was made with (read once the body is in, which may take a
    while), not the time the request arrived: with a clock that moves at every reading they differ."""
    clock = TickingClock()
    async with Controller(db_url, clock) as ctl:
        _, h = await ctl.schedule(start=clock() + 48 * H)
        _, test = await ctl.call("POST", "/api/v1/tests", role="technician", expect=202,
                                 json={"caller": "court-almaty-1", "callee": "sizo-almaty-1", "duration_s": 5})
        _, susp = await ctl.call("POST", "/api/v1/suspensions", role="coordinator",
                                 json={"institution_id": "sizo-almaty-70-1", "reason": "riot"}, expect=201)
        _, audit = await ctl.call("GET", "/api/v1/audit", expect=200)
        at = {a["action"]: dt.datetime.fromisoformat(a["at"]) for a in audit["items"]}
        scheduled = next(e for e in await ctl.events(h["id"]) if e["kind"] == "hearing_scheduled")
        assert at["hearing.create"] == dt.datetime.fromisoformat(scheduled["at"])
        assert at["suspension.create"] == dt.datetime.fromisoformat(susp["from_utc"])
        assert at["test.run"] == dt.datetime.fromisoformat(test["requested_at"])
        _, got = await ctl.call("GET", f"/api/v1/tests/{test['id']}", expect=200)
        assert got["requested_at"] == test["requested_at"]


async def test_hearings_verdict_filter_applies_before_the_page(ctl):
    """A page of hearings with a verdict holds the first `limit` hearings with that verdict, not the
    matching part of the first `limit` hearings (issue 10: the filter ran after limit/offset)."""
    start = ctl.clock() + 48 * H
    ids = []
    for i, remote in enumerate(["sizo-almaty-1", "sizo-almaty-2", "inst-karaganda-1", "sizo-kyzylorda-1"]):
        _, h = await ctl.schedule(start=start + i * 3 * H, participants=(remote,))
        ids.append(h["id"])
    await ctl.scheduler.run_until_idle()
    by_callee = {s["callee"]: s["session_id"] for s in ctl.gw.started}
    await ctl.checks.on_session_result(by_callee["inst-karaganda-1"], report("good"))
    await ctl.checks.on_session_result(by_callee["sizo-kyzylorda-1"], report("good"))
    _, page = await ctl.call("GET", "/api/v1/hearings?verdict=good&limit=1", expect=200)
    assert [h["id"] for h in page["items"]] == [ids[2]]
    _, page = await ctl.call("GET", "/api/v1/hearings?verdict=good&limit=1&offset=1", expect=200)
    assert [h["id"] for h in page["items"]] == [ids[3]]
    _, page = await ctl.call("GET", "/api/v1/hearings?verdict=unknown&limit=5&offset=1", expect=200)
    assert [h["id"] for h in page["items"]] == [ids[1]]
    _, page = await ctl.call("GET", "/api/v1/hearings?verdict=good", expect=200)
    assert [h["id"] for h in page["items"]] == ids[2:]
    # the verdict filtered on is the one shown: a suspension that begins later already shows as
    # "suspended" on the hearings it will cover (before any stored verdict is refreshed)
    await ctl.call("POST", "/api/v1/suspensions", role="coordinator", json={
        "institution_id": "sizo-almaty-70-1", "reason": "escape", "from_utc": (ctl.clock() + H).isoformat()},
        expect=201)
    _, page = await ctl.call("GET", "/api/v1/hearings?verdict=suspended&limit=1", expect=200)
    assert [h["id"] for h in page["items"]] == [ids[0]] and page["items"][0]["verdict"] == "suspended"
    _, page = await ctl.call("GET", "/api/v1/hearings?verdict=suspended&offset=1", expect=200)
    assert [h["id"] for h in page["items"]] == [ids[1]]
