"""Issue 13, parts 2 and 6 through the API: each party's way of taking part (rules 21, 23) recorded,
asked again after a break or a postponement, exported and named in the act; the hearing started at
any time before its start and ended; the coordinator's list of agreements (rules 11, 12), the
coordinators told when an agreement is needed, and an agreement reset by a new date - not by
another change."""
from __future__ import annotations

import csv
import datetime as dt
import io

import pytest

from controller.acts import build_content
from controller.store import events as events_repo
from tests.controller_kit import Controller
from tests.escalation_kit import SmtpServer, WebhookServer
from tests.test_scope_lists import MEDEU
from tests.test_scope_lists import world as world  # noqa: F401,F811  (the scoped world fixture)

H = dt.timedelta(hours=1)


@pytest.fixture
async def ctl(db_url, fake_clock):
    async with Controller(db_url, fake_clock) as c:
        yield c


def kinds(events):
    return [e["kind"] for e in events]


async def test_modes_of_a_terminal_and_a_named_person_recorded_exported_and_in_the_act(ctl):
    _, h = await ctl.schedule(start=ctl.clock() + 48 * H)
    hid = h["id"]
    _, m = await ctl.call("GET", f"/api/v1/hearings/{hid}/modes", role="viewer", expect=200)
    assert [(p["terminal_id"], p["mode"]) for p in m["parties"]] == [("sizo-almaty-1", None)] and m["ask"] is None
    body = {"items": [{"terminal_id": "sizo-almaty-1", "mode": "vks"},
                      {"name": "Иванов И. И.", "kind": "lawyer", "mode": "mobile"}]}
    _, m = await ctl.call("PUT", f"/api/v1/hearings/{hid}/modes", role="secretary", json=body, expect=200)
    assert [(p["terminal_id"], p["name"], p["kind"], p["mode"], p["recorded_by"]) for p in m["parties"]] == [
        ("sizo-almaty-1", None, None, "vks", "secretary-1"), (None, "Иванов И. И.", "lawyer", "mobile", "secretary-1")]
    assert all(p["recorded_at"] == ctl.clock().isoformat().replace("+00:00", "Z") for p in m["parties"])
    ctl.clock.advance(minutes=5)
    _, m = await ctl.call("PUT", f"/api/v1/hearings/{hid}/modes", role="secretary", expect=200,
                          json={"items": [{"name": "Иванов И. И.", "kind": "lawyer", "mode": "in_person"}]})
    assert [p["mode"] for p in m["parties"]] == ["vks", "in_person"] and len(m["history"]) == 3
    [ev] = [e for e in await ctl.events(hid) if e["kind"] == "mode_recorded"][-1:]
    assert ev["detail"]["parties"] == [{"name": "Иванов И. И.", "kind": "lawyer", "mode": "in_person"}]
    assert ev["detail"]["by"] == "secretary-1"
    # Rule 21: the export names every party's mode.
    _, j = await ctl.call("GET", "/api/v1/exports/hearings?format=json", role="viewer", expect=200)
    row = next(r for r in j["hearings"] if r["id"] == hid)
    assert [(x["terminal_id"], x["name"], x["mode"]) for x in row["modes"]] == [
        ("sizo-almaty-1", None, "vks"), (None, "Иванов И. И.", "in_person")]
    _, text = await ctl.call("GET", "/api/v1/exports/hearings?format=csv", role="viewer", expect=200)
    row = next(r for r in csv.DictReader(io.StringIO(text)) if r["id"] == str(hid))
    assert row["modes"] == "sizo-almaty-1:vks;Иванов И. И. (lawyer):in_person"
    # ... and the act's evidence.
    async with ctl.db.read() as conn:
        content = await build_content(conn, hid, trigger="requested", now=ctl.clock())
    assert [(x["party"], x["mode_text"][1]) for x in content["modes"]] == [
        ("СИЗО ДС-70/1 г. Алматы (sizo-almaty-1)", "посредством ВКС"), ("Иванов И. И. (lawyer)", "лично в зале суда")]
    assert "mode_recorded" in [e["kind"] for e in content["timeline"]]
    await ctl.call("POST", f"/api/v1/hearings/{hid}/act", role="secretary", json={"note": "modes"}, expect=201)
    _, html = await ctl.call("GET", f"/api/v1/hearings/{hid}/act.html?lang=ru", role="viewer", expect=200)
    assert "Способ участия сторон (пп. 21, 23)" in html and "Тараптардың қатысу тәсілі" in html
    assert "Иванов И. И. (lawyer)" in html and "лично в зале суда" in html and "ВКС арқылы" in html
    resp = await ctl.client.get(f"/api/v1/hearings/{hid}/act.pdf?lang=kk",
                                headers={"Authorization": f"Bearer {ctl.tokens['viewer']}"})
    assert resp.status == 200 and (await resp.read()).startswith(b"%PDF")


@pytest.mark.parametrize("item, field", [
    ({"terminal_id": "sizo-almaty-1", "mode": "video"}, "items.0.mode"),
    ({"terminal_id": "sizo-almaty-1"}, "items.0.mode"),
    ({"terminal_id": "sizo-kyzylorda-1", "mode": "vks"}, "items.0.terminal_id"),
    ({"terminal_id": "sizo-almaty-1", "name": "X", "mode": "vks"}, "items.0.terminal_id"),
    ({"mode": "vks"}, "items.0.terminal_id"),
    ({"name": "A\nB", "mode": "vks"}, "items.0.name"),
])
async def test_a_bad_mode_or_party_is_400_naming_the_field(ctl, item, field):
    _, h = await ctl.schedule(start=ctl.clock() + 48 * H)
    _, err = await ctl.call("PUT", f"/api/v1/hearings/{h['id']}/modes", role="secretary", json={"items": [item]},
                            expect=400)
    assert err["field"] == field, err
    assert "mode_recorded" not in kinds(await ctl.events(h["id"]))


async def test_modes_are_recorded_by_the_hearing_s_people_only(world):  # noqa: F811
    w = world
    body = {"items": [{"terminal_id": "sizo-almaty-1", "mode": "vks"}]}
    for who in ("tech-almaty", "coord-almaty"):
        await w.call(who, "PUT", f"/api/v1/hearings/{w.h_almaty}/modes", json=body, expect=403)
    await w.ctl.call("PUT", f"/api/v1/hearings/{w.h_almaty}/modes", role="viewer", json=body, expect=403)
    await w.call("sec-kyz", "PUT", f"/api/v1/hearings/{w.h_almaty}/modes", json=body, expect=404)
    await w.call("sec-kyz", "GET", f"/api/v1/hearings/{w.h_almaty}/modes", expect=404)
    await w.call("sec-medeu", "PUT", f"/api/v1/hearings/{w.h_almaty}/modes", json=body, expect=200)
    for role in ("head_of_office", "admin"):
        await w.ctl.call("PUT", f"/api/v1/hearings/{w.h_almaty}/modes", role=role, json=body, expect=200)


async def test_after_a_postponement_or_a_break_the_modes_are_asked_again(ctl):
    _, h = await ctl.schedule(start=ctl.clock() + 48 * H)
    hid = h["id"]
    body = {"items": [{"terminal_id": "sizo-almaty-1", "mode": "vks"}]}
    await ctl.call("PUT", f"/api/v1/hearings/{hid}/modes", role="secretary", json=body, expect=200)
    ctl.clock.advance(minutes=1)
    await ctl.call("PATCH", f"/api/v1/hearings/{hid}", role="secretary", json={"status": "postponed"}, expect=200)
    _, m = await ctl.call("GET", f"/api/v1/hearings/{hid}/modes", role="viewer", expect=200)
    assert m["ask"]["because"] == "postponement"
    ctl.clock.advance(minutes=1)
    _, m = await ctl.call("PUT", f"/api/v1/hearings/{hid}/modes", role="secretary", expect=200,
                          json={"items": [{"terminal_id": "sizo-almaty-1", "mode": "mobile"}]})
    assert m["ask"] is None and m["parties"][0]["occasion"] == "postponement"
    ctl.clock.advance(minutes=1)
    async with ctl.db.transaction() as conn:       # the live flow's resumption after a break
        await events_repo.append(conn, hid, "resume", ctl.clock(), {"break_id": 1, "duration_s": 40, "by": "x"})
    _, m = await ctl.call("GET", f"/api/v1/hearings/{hid}/modes", role="viewer", expect=200)
    assert m["ask"]["because"] == "break"


async def test_a_break_the_judge_called_off_does_not_ask_for_the_modes_again(ctl):
    """Since the judge is in the loop (rule 22) the `break` event is the detector's recommendation:
    "Continue" (break_continued) says there was no break, so rule 23 asks nothing for it - while
    a postponement before it, or another participant's break, still asks."""
    _, h = await ctl.schedule(start=ctl.clock() + 48 * H)
    hid = h["id"]
    body = {"items": [{"terminal_id": "sizo-almaty-1", "mode": "vks"}]}
    await ctl.call("PUT", f"/api/v1/hearings/{hid}/modes", role="secretary", json=body, expect=200)

    async def append(kind, detail):
        ctl.clock.advance(minutes=1)
        async with ctl.db.transaction() as conn:
            await events_repo.append(conn, hid, kind, ctl.clock(), detail)
        _, m = await ctl.call("GET", f"/api/v1/hearings/{hid}/modes", role="viewer", expect=200)
        return m["ask"] and m["ask"]["because"]

    assert await append("break", {"break_id": 7, "cause": "link_lost"}) == "break"
    assert await append("break_continued", {"break_id": 7}) is None
    assert await append("break", {"break_id": 8, "cause": "link_lost"}) == "break"
    assert await append("break", {"break_id": 9, "cause": "link_lost"}) == "break"
    assert await append("break_continued", {"break_id": 9}) == "break"          # 8 still stands
    assert await append("break_declared", {"break_id": 8}) == "break"
    await ctl.call("PUT", f"/api/v1/hearings/{hid}/modes", role="secretary", json=body, expect=200)
    await ctl.call("PATCH", f"/api/v1/hearings/{hid}", role="secretary", json={"status": "postponed"}, expect=200)
    assert await append("break", {"break_id": 10, "cause": "link_lost"}) == "break"
    assert await append("break_continued", {"break_id": 10}) == "postponement"


async def test_a_scheduled_hearing_starts_any_time_before_its_start_and_ends(ctl):
    _, h = await ctl.schedule(start=ctl.clock() + 48 * H)
    _, out = await ctl.call("POST", f"/api/v1/hearings/{h['id']}/start", role="secretary", expect=200)
    assert out["status"] == "in_progress"
    _, out = await ctl.call("POST", f"/api/v1/hearings/{h['id']}/end", role="secretary", expect=200)
    assert out["status"] == "held"
    ev = kinds(await ctl.events(h["id"]))
    assert ev.index("hearing_started") < ev.index("hearing_ended")
    await ctl.call("POST", f"/api/v1/hearings/{h['id']}/start", role="viewer", expect=403)


async def test_the_agreements_waiting_for_a_coordinator_in_scope(world):  # noqa: F811
    w = world
    assert await w.ids("coord-almaty", "/api/v1/agreements") == {w.h_almaty}
    assert await w.ids("coord-almaty", "/api/v1/agreements?state=given") == set()
    _, out = await w.ctl.call("GET", "/api/v1/agreements", role="admin", expect=200)
    assert {x["id"] for x in out["items"]} == {w.h_almaty, w.h_kyz, w.h_mixed}
    # The Department's coordinator agrees the Supreme Court's hearings only.
    assert await w.ids("coord-sizo", "/api/v1/agreements") == set()
    _, out = await w.ctl.call("GET", "/api/v1/agreements", role="coordinator", expect=200)
    assert out["items"] == []
    await w.call("sec-medeu", "GET", "/api/v1/agreements", expect=403)
    await w.call("coord-almaty", "GET", "/api/v1/agreements?state=maybe", expect=400)
    await w.call("coord-almaty", "POST", f"/api/v1/hearings/{w.h_almaty}/agreement", json={}, expect=200)
    assert await w.ids("coord-almaty", "/api/v1/agreements") == set()
    assert await w.ids("coord-almaty", "/api/v1/agreements?state=given") == {w.h_almaty}


async def test_a_new_date_resets_the_agreement_and_tells_the_coordinator_another_change_does_not(
        db_url, fake_clock):
    hook = await WebhookServer().start()
    smtp = SmtpServer().start()
    try:
        async with Controller(db_url, fake_clock, smtp={"host": "127.0.0.1", "port": smtp.port, "security": "none",
                                                        "from_addr": "vks@court.kz"}) as c:
            await c.call("POST", f"/api/v1/institutions/{MEDEU}/contacts", expect=201, json={
                "kind": "coordinator", "name": "Координатор областного суда", "email": "coord@court.kz",
                "webhook_url": hook.url})
            start = c.clock() + 48 * H
            _, h = await c.schedule(start=start)
            hid = h["id"]
            await c.scheduler.run_until_idle()
            [p] = hook.received
            assert (p["schema"], p["why"], p["hearing"]["id"], p["agreement"]["state"]) == \
                ("vks.agreement/1", "scheduled", hid, "pending")
            assert smtp.to() == ["coord@court.kz"] and "2-1234/2026" in str(smtp.messages[0]["Subject"])
            await c.call("POST", f"/api/v1/hearings/{hid}/agreement", role="admin", json={}, expect=200)
            await c.call("PATCH", f"/api/v1/hearings/{hid}", role="secretary", json={"case_number": "2-99/2026"},
                         expect=200)
            await c.scheduler.run_until_idle()
            assert len(hook.received) == 1 and len(smtp.messages) == 1
            assert (await c.hearing(hid))["agreement"]["state"] == "given"
            assert "agreement_reset" not in kinds(await c.events(hid))
            _, out = await c.call("PATCH", f"/api/v1/hearings/{hid}", role="secretary", expect=200,
                                  json={"start_utc": (start + H).isoformat()})
            assert out["agreement"] == {"coordinator": "regional", "state": "pending", "by": None, "at": None}
            [reset] = [e for e in await c.events(hid) if e["kind"] == "agreement_reset"]
            assert reset["detail"]["given_by"] == "admin-1" and reset["detail"]["by"] == "secretary-1"
            await c.scheduler.run_until_idle()
            assert [x["why"] for x in hook.received] == ["scheduled", "reset"]
            assert hook.received[1]["hearing"]["start_utc"] == (start + H).isoformat().replace("+00:00", "Z")
            assert len(smtp.messages) == 2 and "снято" in smtp.messages[1].get_content()
            # A new date while still pending asks again.
            await c.call("PATCH", f"/api/v1/hearings/{hid}", role="secretary", expect=200,
                         json={"start_utc": (start + 2 * H).isoformat()})
            await c.scheduler.run_until_idle()
            assert [x["why"] for x in hook.received] == ["scheduled", "reset", "date_changed"]
    finally:
        await hook.stop()
        smtp.stop()
