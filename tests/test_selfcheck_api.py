"""Self-check links (issue 14, part 1) through the API, without a browser: who may create and list
them and where, the link's secret refused by every /api/v1 route, expiry, the verdict by the `mobile`
profile (contract.quality), the hearing's record and the escalation of a failed one. The browser and
the real WebRTC session: tests/test_selfcheck_web.py."""
from __future__ import annotations

import datetime as dt
import re

import pytest

from contract import quality
from contract.candidates import OfferLimiter
from contract.vocab import DeviceStatus, EscalationCause
from controller.api import ROUTES_KEY
from controller.selfcheck import judge
from controller.selfcheck.service import SELFCHECKS_KEY
from controller.store import selfchecks as repo
from tests.conftest import FakeClock
from tests.controller_kit import Controller

API = "/api/v1"
KEYS = {"id", "name", "mode", "status", "verdict", "camera", "microphone", "rtt_ms", "inbound", "outbound",
        "browser", "path_type", "finished_at"}
MOBILE = quality.load_thresholds()["mobile"]


@pytest.fixture
async def ctl(tmp_path):
    clock = FakeClock(dt.datetime(2026, 12, 1, 4, 0, tzinfo=dt.UTC))
    async with Controller(f"sqlite:///{tmp_path / 'c.sqlite'}", clock) as c:
        _, h = await c.schedule(start=clock() + dt.timedelta(days=2))
        c.hid = h["id"]
        yield c


def secret_of(url: str) -> str:
    m = re.fullmatch(r"http://[^/]+/self-check/([A-Za-z0-9_-]{40,})", url)
    assert m, url
    return m.group(1)


async def make(ctl, role="secretary", **body):
    return await ctl.call("POST", f"{API}/hearings/{ctl.hid}/self-checks", role=role,
                          json={"name": "Айгерим Нурланова", "mode": "mobile", **body})


async def test_a_secretary_creates_a_link_bound_to_the_hearing_expiring_at_its_end(ctl):
    status, out = await make(ctl)
    assert status == 201, out
    assert set(out) == {"id", "url", "expires_at"}
    h = await ctl.hearing(ctl.hid)
    start = dt.datetime.fromisoformat(h["start_utc"].replace("Z", "+00:00"))
    assert out["expires_at"] == (start + dt.timedelta(minutes=60)).isoformat().replace("+00:00", "Z")
    secret = secret_of(out["url"])
    async with ctl.db.read() as conn:
        row = await repo.get(conn, out["id"])
    assert secret not in str(row) and row["secret_hash"] == repo.secret_hash(secret)   # stored hashed only
    _, listed = await ctl.call("GET", f"{API}/hearings/{ctl.hid}/self-checks", role="viewer", expect=200)
    [item] = listed["items"]
    assert set(item) == KEYS
    assert item["status"] == "pending" and item["mode"] == "mobile" and item["name"] == "Айгерим Нурланова"
    assert item["inbound"] == item["outbound"] == {"loss_ratio": None, "jitter_ms": None, "bitrate_kbps": None}
    kinds = [e["kind"] for e in await ctl.events(ctl.hid)]
    assert "self_check_created" in kinds
    # The page's own endpoints answer for the link.
    resp = await ctl.client.get(f"/self-check/{secret}/info")
    assert resp.status == 200
    info = await resp.json()
    assert info["name"] == "Айгерим Нурланова" and set(info["words"]) == {"kk", "ru", "en"}
    qr = await ctl.client.get(f"/self-check/{secret}/qr.svg")
    assert qr.status == 200 and qr.content_type == "image/svg+xml" and b"<svg" in await qr.read()
    page = await ctl.client.get(f"/self-check/{secret}")
    assert page.status == 200 and page.headers["Referrer-Policy"] == "no-referrer"
    assert page.headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize("role,expect", [("secretary", 201), ("head_of_office", 201), ("admin", 201),
                                         ("technician", 403), ("coordinator", 403), ("viewer", 403)])
async def test_who_may_create(ctl, role, expect):
    status, out = await make(ctl, role=role)
    assert status == expect, out


async def test_a_hearing_out_of_scope_is_not_found(ctl):
    """A secretary scoped to another region sees neither the hearing nor its self-checks."""
    from controller import access
    from controller.store import users
    async with ctl.db.transaction() as conn:
        u = await users.create_user(conn, "sec-kyz", "secretary", ctl.clock(), None)
        await access.set_scope(conn, u["id"], [], ["Kyzylorda"])
        tok = await users.issue_token(conn, u["id"], ctl.clock())
    await ctl.call("POST", f"{API}/hearings/{ctl.hid}/self-checks", token=tok,
                   json={"name": "X", "mode": "mobile"}, expect=404)
    await ctl.call("GET", f"{API}/hearings/{ctl.hid}/self-checks", token=tok, expect=404)
    await ctl.call("GET", f"{API}/hearings/999999/self-checks", role="admin", expect=404)


async def test_the_body_is_checked(ctl):
    assert (await make(ctl, mode="phone"))[0] == 400
    assert (await make(ctl, name=""))[0] == 400
    past = (ctl.clock() - dt.timedelta(hours=1)).isoformat()
    assert (await make(ctl, expires_at=past))[0] == 400
    late = (ctl.clock() + dt.timedelta(days=30)).isoformat()
    assert (await make(ctl, expires_at=late))[0] == 400


def fill(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "1", path)


async def test_the_secret_opens_nothing_of_the_api(ctl):
    """The link's secret, as a bearer token or as the page's session cookie, on every route of the
    route table: refused (401) wherever a token is needed, and where none is, the answer is the same
    as without it."""
    _, out = await make(ctl)
    secret = secret_of(out["url"])
    routes = ctl.app[ROUTES_KEY]
    assert len(routes) > 50
    tried = 0
    for r in routes:
        path = fill(r.path)
        for headers, cookies in (({"Authorization": f"Bearer {secret}"}, None), ({}, {"vks_session": secret})):
            ctl.client.session.cookie_jar.clear()
            if cookies:
                ctl.client.session.cookie_jar.update_cookies(cookies)
            hdrs = {**headers, "X-Requested-With": "vks-web"} if cookies else headers
            resp = await ctl.client.request(r.method, path, headers=hdrs, json={} if r.method != "GET" else None)
            if r.permission is None:
                ctl.client.session.cookie_jar.clear()
                plain = await ctl.client.request(r.method, path, json={} if r.method != "GET" else None)
                assert resp.status == plain.status or resp.status in (401, 404), (r.method, r.path, resp.status)
            else:
                assert resp.status in (401, 404), (r.method, r.path, resp.status, await resp.text())
            tried += 1
    ctl.client.session.cookie_jar.clear()
    assert tried == 2 * len(routes)
    # ... and another hearing's self-check page is not reachable with it either: each secret is its own.
    other = await ctl.client.get(f"/self-check/{secret[:-2]}xx/info")
    assert other.status == 404


async def test_an_expired_link_is_gone_and_listed_expired(ctl):
    _, out = await make(ctl, expires_at=(ctl.clock() + dt.timedelta(hours=1)).isoformat())
    secret = secret_of(out["url"])
    ctl.clock.advance(hours=2)
    for method, path in (("GET", "/info"), ("POST", "/offer"), ("POST", "/result"), ("GET", "/qr.svg")):
        body = {"sdp": "v=0 x" * 3, "type": "offer"} if path == "/offer" else (
            {"connected": False, "camera": "ok", "microphone": "ok"} if path == "/result" else None)
        resp = await ctl.client.request(method, f"/self-check/{secret}{path}", json=body)
        assert resp.status == 410, (path, resp.status)
    _, listed = await ctl.call("GET", f"{API}/hearings/{ctl.hid}/self-checks", expect=200)
    assert listed["items"][0]["status"] == "expired"


async def test_a_link_follows_its_hearing_postponed_and_closes_with_it_cancelled(ctl):
    _, out = await make(ctl)                                        # expires with the hearing's end
    _, short = await make(ctl, expires_at=(ctl.clock() + dt.timedelta(hours=1)).isoformat())
    h = await ctl.hearing(ctl.hid)
    later = dt.datetime.fromisoformat(h["start_utc"].replace("Z", "+00:00")) + dt.timedelta(days=3)
    await ctl.call("PATCH", f"{API}/hearings/{ctl.hid}", role="secretary", expect=200,
                   json={"start_utc": later.isoformat(), "status": "postponed"})
    async with ctl.db.read() as conn:
        moved, kept = await repo.get(conn, out["id"]), await repo.get(conn, short["id"])
    assert moved["expires_at"] == later + dt.timedelta(minutes=60)  # the new end, not the old one
    assert kept["expires_at"] == ctl.clock() + dt.timedelta(hours=1)  # an earlier expiry given stays
    ctl.clock.advance(days=2, hours=1)                              # past the old end: still open
    assert (await ctl.client.get(f"/self-check/{secret_of(out['url'])}/info")).status == 200
    await ctl.call("DELETE", f"{API}/hearings/{ctl.hid}", role="secretary")
    resp = await ctl.client.get(f"/self-check/{secret_of(out['url'])}/info")
    assert resp.status == 410 and "cancelled" in (await resp.text())


async def test_a_result_without_a_session_is_a_conflict_and_a_bad_offer_a_400(ctl):
    """A connected result needs the controller's own session; a bad offer is refused."""
    _, out = await make(ctl)
    secret = secret_of(out["url"])
    resp = await ctl.client.post(f"/self-check/{secret}/result",
                                 json={"connected": True, "camera": "ok", "microphone": "ok"})
    assert resp.status == 409
    resp = await ctl.client.post(f"/self-check/{secret}/offer", json={"sdp": "not an sdp at all", "type": "offer"})
    assert resp.status == 400
    resp = await ctl.client.post(f"/self-check/{secret}/result", json={"connected": True, "camera": "silent",
                                                                        "microphone": "ok"})
    assert resp.status == 400      # a camera is not "silent"
    assert not ctl.app[SELFCHECKS_KEY].running


GOOD = {"loss_ratio": 0.0, "jitter_ms": 4.0, "bitrate_kbps": 900.0}


def test_the_verdict_by_the_mobile_profile():
    ok = judge.judge(camera="ok", microphone="ok", inbound=GOOD, outbound=GOOD, rtt_ms=40, thresholds=MOBILE)
    assert ok.verdict == "good" and [r["code"] for r in ok.reason_codes] == ["self_check_ok"]
    lossy = judge.judge(camera="ok", microphone="ok", inbound={**GOOD, "loss_ratio": 0.08}, outbound=GOOD,
                        rtt_ms=40, thresholds=MOBILE)
    codes = [r["code"] for r in lossy.reason_codes]
    assert lossy.verdict == "unusable" and "loss_high" in codes and codes[-1] == "advice_move_closer"
    slow = judge.judge(camera="ok", microphone="ok", inbound=GOOD, outbound=GOOD, rtt_ms=500, thresholds=MOBILE)
    assert slow.verdict == "degraded" and "advice_close_apps" in [r["code"] for r in slow.reason_codes]
    # the delay is judged once, not for each direction
    assert [r["code"] for r in slow.reason_codes].count("delay_rtt_high") == 1
    for cam, code in (("denied", "camera_denied"), ("black", "camera_black"), ("frozen", "camera_frozen"),
                      ("missing", "camera_missing")):
        j = judge.judge(camera=cam, microphone="ok", inbound=GOOD, outbound=GOOD, rtt_ms=40, thresholds=MOBILE)
        assert j.verdict == "unusable" and j.reason_codes[0]["code"] == code
    j = judge.judge(camera="ok", microphone="silent", inbound=GOOD, outbound=GOOD, rtt_ms=40, thresholds=MOBILE)
    assert j.reason_codes[0]["code"] == "microphone_silent"
    none = judge.judge(camera="ok", microphone="ok", inbound=None, outbound=None, rtt_ms=None, thresholds=MOBILE,
                       connected=False, error="ICE failed")
    assert none.verdict == "unusable" and none.reason_codes[0] == {"code": "self_check_no_connection",
                                                                   "params": {"error": "ICE failed"}}
    # The page's words are the shared vocabulary's (the terminals' health check adds `error`).
    assert {"ok", "denied", "missing", "black", "frozen", "silent"} <= set(DeviceStatus)


async def test_a_failed_self_check_before_the_hearing_escalates_and_is_in_the_record(ctl):
    """The page's session that never connects: failed, unusable, an escalation `self_check_failed`
    opened (one per self-check), both events in the record as the page shows them."""
    _, out = await make(ctl)
    svc = ctl.app[SELFCHECKS_KEY]
    from controller.selfcheck.peer import SelfCheckPeer
    peer = SelfCheckPeer(svc.cfg)           # a session that never connected
    from controller.selfcheck.service import Running
    svc.running[out["id"]] = Running(peer)
    resp = await ctl.client.post(f"/self-check/{secret_of(out['url'])}/result", json={
        "connected": False, "error": "ICE failed", "camera": "ok", "microphone": "ok", "lang": "ru"})
    assert resp.status == 200
    got = await resp.json()
    assert got["status"] == "failed" and got["verdict"] == "unusable"
    assert got["reasons"][0].startswith("Не удалось соединиться с сервером суда (ICE failed)")
    _, esc = await ctl.call("GET", f"{API}/escalations?state=all", expect=200)
    [e] = [x for x in esc["items"] if x["hearing_id"] == ctl.hid]
    assert e["cause"] == EscalationCause.SELF_CHECK_FAILED
    kinds = [ev["kind"] for ev in await ctl.events(ctl.hid)]
    assert kinds.count("self_check_finished") == 1 and "escalation_opened" in kinds
    _, listed = await ctl.call("GET", f"{API}/hearings/{ctl.hid}/self-checks", expect=200)
    assert listed["items"][0]["status"] == "failed" and listed["items"][0]["verdict"] == "unusable"
    # The person runs it again (a session that connected) and it holds: the escalation is resolved.
    peer = SelfCheckPeer(svc.cfg)
    peer.connected.set()
    svc.running[out["id"]] = Running(peer)
    resp = await ctl.client.post(f"/self-check/{secret_of(out['url'])}/result", json={
        "connected": True, "camera": "ok", "microphone": "ok", "rtt_ms": 30,
        "inbound": {"loss_ratio": 0.0, "jitter_ms": 3.0, "bitrate_kbps": 800}})
    assert (await resp.json())["status"] == "done"
    _, esc = await ctl.call("GET", f"{API}/escalations?state=all", expect=200)
    [e] = [x for x in esc["items"] if x["hearing_id"] == ctl.hid]
    assert e["state"] == "resolved"


async def test_self_checks_in_the_export_and_the_act(ctl):
    """Part 3: the export lists each hearing's self-checks (JSON, and one appended CSV column), and
    the act's evidence has them with devices, figures and reasons in kk and ru."""
    _, out = await make(ctl)
    secret = secret_of(out["url"])
    await make(ctl, name="=HYPERLINK(1)", mode="vks")        # a name a spreadsheet would run: quoted
    async with ctl.db.transaction() as conn:
        await repo.start(conn, out["id"], ctl.clock(), "Mozilla/5.0 (Android 14) Chrome/131")
        await repo.finish(conn, out["id"], status="done", now=ctl.clock(), verdict="unusable", camera="black",
                          microphone="ok", rtt_ms=48.0,
                          inbound={"loss_ratio": 0.01, "jitter_ms": 5.0, "bitrate_kbps": 820.0},
                          outbound={"loss_ratio": 0.0, "jitter_ms": 3.0, "bitrate_kbps": 610.0}, path_type="srflx",
                          reason_codes=[{"code": "camera_black", "params": {}}])
    assert secret
    _, exp = await ctl.call("GET", f"{API}/exports/hearings", expect=200)
    [h] = [x for x in exp["hearings"] if x["id"] == ctl.hid]
    assert [(s["name"], s["mode"], s["status"], s["verdict"], s["camera"]) for s in h["self_checks"]] == [
        ("Айгерим Нурланова", "mobile", "done", "unusable", "black"), ("=HYPERLINK(1)", "vks", "pending", None, None)]
    _, text = await ctl.call("GET", f"{API}/exports/hearings?format=csv", expect=200)
    header, *lines = text.split("\r\n")
    assert header.endswith(",agreement_state,modes,self_checks")
    row = next(x for x in lines if x.startswith(f"{ctl.hid},"))
    assert row.endswith(",Айгерим Нурланова (mobile): done unusable; =HYPERLINK(1) (vks): pending"), row
    await ctl.call("POST", f"{API}/hearings/{ctl.hid}/act", role="secretary", json={"note": "mobile"}, expect=201)
    _, act = await ctl.call("GET", f"{API}/hearings/{ctl.hid}/act", expect=200)
    [sc, pending] = act["content"]["self_checks"]
    assert sc["name"] == "Айгерим Нурланова" and sc["devices"] == ["қара бейне / жұмыс істейді",
                                                                 "чёрное изображение / работает"]
    assert sc["figures"][1] == "RTT 48 мс; вх. 1,0 %, 820 кбит/с; исх. 0,0 %, 610 кбит/с"
    assert sc["reason_text"]["ru"][0].startswith("Камера показывает только чёрный экран")
    assert pending["status_text"] == ["сілтеме ашылмады", "ссылка не открыта"]
    _, html = await ctl.call("GET", f"{API}/hearings/{ctl.hid}/act.html?lang=ru", expect=200)
    assert "Самопроверки участников мобильной ВКС (п. 20)" in html and "Мобильді ВКС қатысушыларының" in html
    pdf = await ctl.client.get(f"{API}/hearings/{ctl.hid}/act.pdf?lang=kk",
                               headers={"Authorization": f"Bearer {ctl.tokens['viewer']}"})
    assert pdf.status == 200 and (await pdf.read()).startswith(b"%PDF")


async def test_offers_per_address_are_limited_like_the_responders(tmp_path):
    """The agents' limit on a media peer (issue 11) holds for the controller's: offers per source
    address in a minute, 429 above it (contract.candidates.OfferLimiter)."""
    clock = FakeClock(dt.datetime(2026, 12, 1, 4, 0, tzinfo=dt.UTC))
    async with Controller(f"sqlite:///{tmp_path / 'c.sqlite'}", clock, selfcheck={"offers_per_minute": 2}) as c:
        _, h = await c.schedule(start=clock() + dt.timedelta(days=2))
        _, out = await c.call("POST", f"{API}/hearings/{h['id']}/self-checks", role="secretary",
                              json={"name": "X", "mode": "mobile"}, expect=201)
        url = f"/self-check/{secret_of(out['url'])}/offer"
        statuses = [(await c.client.post(url, json={"sdp": "not an sdp at all", "type": "offer"})).status
                    for _ in range(3)]
        assert statuses == [400, 400, 429]
        # A result without a session (the page could not start one) stores a failed check, an event
        # and an escalation each time: the same limit bounds them.
        c.app[SELFCHECKS_KEY].offers = OfferLimiter(2)           # a new minute
        failed = {"connected": False, "camera": "ok", "microphone": "ok"}
        result = f"/self-check/{secret_of(out['url'])}/result"
        statuses = [(await c.client.post(result, json=failed)).status for _ in range(3)]
        assert statuses == [200, 200, 429]
        _, ev = await c.call("GET", f"{API}/hearings/{h['id']}/events", expect=200)
        assert [e["kind"] for e in ev["items"]].count("self_check_finished") == 2
