"""The web page's server side without a browser: password and token sign-in with the session
cookie, its limits (rate, CSRF, expiry, logout), the page and its catalogs, and "run a test
now" (POST/GET /api/v1/tests) through the app's gateway, on SQLite and PostgreSQL."""
from __future__ import annotations

import contextvars
import datetime as dt
import json
import re
from pathlib import Path

import pytest

from contract.wire import session_span_s
from controller import auth
from controller.api.tests import AdhocTestOut
from controller.models import CheckStatus, HearingStatus, Role, SuspensionReason, Verdict
from controller.store import agents as agents_repo
from controller.store import users as users_repo
from controller.web import LIMITER_KEY, MeOut
from tests.controller_kit import Controller, counting, report

WEB = Path(__file__).resolve().parent.parent / "controller" / "web"
PASSWORD = "correct horse battery"
LOW_N = 2 ** 14          # the tests' scrypt cost (auth.scrypt_n); the default is OWASP's 2^17


@pytest.fixture
async def ctl(db_url, fake_clock):
    async with Controller(db_url, fake_clock, auth={"scrypt_n": LOW_N}) as c:
        hashed = await users_repo.password_hash(PASSWORD, LOW_N)
        async with c.db.transaction() as conn:
            for role in ("secretary", "admin", "viewer"):
                await users_repo.set_password(conn, f"{role}-1", hashed, fake_clock())
        yield c


async def login(ctl, **body):
    resp = await ctl.client.post("/api/v1/login", json=body)
    return resp, await resp.json()


def cookie_of(resp) -> str:
    return resp.cookies[auth.SESSION_COOKIE].value


async def test_password_login_sets_a_strict_httponly_cookie_that_the_api_accepts(ctl):
    resp, me = await login(ctl, username="secretary-1", password=PASSWORD)
    assert resp.status == 200, me
    MeOut.model_validate(me)
    assert me["role"] == "secretary" and "hearings.write" in me["permissions"]
    header = resp.headers["Set-Cookie"]
    assert "HttpOnly" in header and "SameSite=Strict" in header and "Path=/" in header
    token = cookie_of(resp)
    assert token.startswith(users_repo.SESSION_PREFIX)
    # The cookie stays in the client's jar: reads work, and changes need the page's header.
    r = await ctl.client.get("/api/v1/me")
    assert r.status == 200 and (await r.json())["via"] == "cookie"
    r = await ctl.client.post("/api/v1/hearings", json={})
    assert r.status == 403 and (await r.json())["error"] == "csrf"
    r = await ctl.client.post("/api/v1/hearings", json={}, headers={"X-Requested-With": auth.PAGE_HEADER})
    assert r.status == 400 and (await r.json())["error"] == "invalid"       # authenticated, then validated
    # Only the hash is stored; the audit trail has the sign-in.
    async with ctl.db.read() as conn:
        audit = await users_repo.list_audit(conn, target="user:secretary-1")
    assert audit[0]["action"] == "user.login" and audit[0]["detail"]["method"] == "password"
    assert token not in json.dumps([dict(a, at=str(a["at"])) for a in audit])


async def test_wrong_passwords_are_rate_limited_then_allowed_again(ctl, fake_clock):
    limiter = ctl.app[LIMITER_KEY]
    assert (limiter.limit, limiter.window_s) == (5, 300)
    for _ in range(5):
        resp, body = await login(ctl, username="admin-1", password="wrong password!")
        assert resp.status == 401 and body["error"] == "unauthorized"
    resp, body = await login(ctl, username="admin-1", password=PASSWORD)      # even the right one now
    assert resp.status == 429 and body["error"] == "too_many_attempts" and body["retry_after_s"] > 0
    resp, _ = await login(ctl, username="nobody", password="whatever it is")  # the address is limited too
    assert resp.status == 429
    fake_clock.advance(dt.timedelta(seconds=301))
    resp, body = await login(ctl, username="admin-1", password=PASSWORD)
    assert resp.status == 200 and body["role"] == "admin"


async def test_logout_ends_the_session_and_sessions_expire(ctl, fake_clock):
    resp, _ = await login(ctl, username="viewer-1", password=PASSWORD)
    token = cookie_of(resp)
    r = await ctl.client.post("/api/v1/logout")
    assert r.status == 204
    assert ctl.client.session.cookie_jar.filter_cookies(ctl.client.make_url("/")).get(auth.SESSION_COOKIE) is None \
        or ctl.client.session.cookie_jar.filter_cookies(ctl.client.make_url("/"))[auth.SESSION_COOKIE].value == ""
    status, _ = await ctl.call("GET", "/api/v1/me", token=token)                # replayed: refused
    assert status == 401

    resp, _ = await login(ctl, username="viewer-1", password=PASSWORD)
    token = cookie_of(resp)
    assert (await ctl.call("GET", "/api/v1/me", token=token))[0] == 200
    fake_clock.advance(users_repo.SESSION_TTL + dt.timedelta(seconds=1))
    assert (await ctl.call("GET", "/api/v1/me", token=token))[0] == 401


async def test_token_login_and_bearer_tokens_keep_working(ctl):
    resp, me = await login(ctl, token=ctl.tokens["technician"])
    assert resp.status == 200 and me["role"] == "technician" and "tests.run" in me["permissions"]
    resp, body = await login(ctl, token="not-a-token")
    assert resp.status == 401
    resp, body = await login(ctl, username="viewer-1")
    assert resp.status == 400 and body["field"] == "username"
    form = await ctl.client.post("/api/v1/login", data=f'{{"token": "{ctl.tokens["admin"]}"}}',
                                 headers={"Content-Type": "text/plain"})       # what another site's form can send
    assert form.status == 400 and auth.SESSION_COOKIE not in form.cookies
    status, me = await ctl.call("GET", "/api/v1/me", role="coordinator")
    assert status == 200 and me["via"] == "bearer" and me["role"] == "coordinator"
    # Revoking a user's tokens also ends their web sessions.
    resp, _ = await login(ctl, username="secretary-1", password=PASSWORD)
    token = cookie_of(resp)
    await ctl.call("DELETE", "/api/v1/users/secretary-1/tokens", expect=200)
    assert (await ctl.call("GET", "/api/v1/me", token=token))[0] == 401


async def test_an_administrator_sets_a_password_and_the_old_sessions_end(ctl):
    resp, _ = await login(ctl, username="viewer-1", password=PASSWORD)
    old = cookie_of(resp)
    new = "a brand new passphrase"
    status, _ = await ctl.call("PUT", "/api/v1/users/viewer-1/password", role="secretary", json={"password": new})
    assert status == 403
    status, body = await ctl.call("PUT", "/api/v1/users/viewer-1/password", json={"password": "short"})
    assert status == 400 and body["field"] == "password"
    assert (await ctl.call("PUT", "/api/v1/users/nobody/password", json={"password": new}))[0] == 404
    await ctl.call("PUT", "/api/v1/users/viewer-1/password", json={"password": new}, expect=204)
    assert (await ctl.call("GET", "/api/v1/me", token=old))[0] == 401
    assert (await login(ctl, username="viewer-1", password=PASSWORD))[0].status == 401
    assert (await login(ctl, username="viewer-1", password=new))[0].status == 200


async def test_passwords_are_scrypt_hashed_and_checked(ctl, fake_clock):
    with pytest.raises(Exception, match="at least"):
        await users_repo.password_hash("short")
    async with ctl.db.transaction() as conn:
        with pytest.raises(ValueError, match="hash"):       # never the password itself
            await users_repo.set_password(conn, "admin-1", PASSWORD, fake_clock())
        row = (await conn.execute(users_repo.user_passwords.select())).first()
        assert row.scrypt.startswith("scrypt$16384$8$1$") and PASSWORD not in row.scrypt
    assert await users_repo.check_password(ctl.db, "admin-1", PASSWORD) is not None
    assert await users_repo.check_password(ctl.db, "admin-1", PASSWORD + "x") is None
    assert await users_repo.check_password(ctl.db, "ghost", PASSWORD) is None


async def test_passwords_are_hashed_and_checked_with_no_transaction_open(ctl, monkeypatch):
    """scrypt takes tens of ms: signing in and setting a password hash and compare with no transaction of
    the request open (nobody else's write waits for it); the write transaction only stores the session
    or the new hash with the audit row."""
    depth: contextvars.ContextVar[int] = contextvars.ContextVar("open_transactions", default=0)
    for name in ("transaction", "read"):
        monkeypatch.setattr(ctl.db, name, counting(getattr(ctl.db, name), depth))
    seen = []

    def spying(name):
        real = getattr(users_repo, name)

        def spy(*args):
            seen.append((name, depth.get()))
            return real(*args)
        return spy
    for name in ("hash_password", "verify_password"):
        monkeypatch.setattr(users_repo, name, spying(name))
    assert (await login(ctl, username="viewer-1", password=PASSWORD))[0].status == 200
    new = "a brand new passphrase"
    await ctl.call("PUT", "/api/v1/users/viewer-1/password", json={"password": new}, expect=204)
    assert (await login(ctl, username="viewer-1", password=PASSWORD))[0].status == 401
    assert (await login(ctl, username="viewer-1", password=new))[0].status == 200
    assert seen == [("verify_password", 0), ("hash_password", 0), ("verify_password", 0), ("verify_password", 0)]
    _, audit = await ctl.call("GET", "/api/v1/audit?target=user:viewer-1", expect=200)
    # (newest first; the wrong password is audited too, issue 11)
    assert [a["action"] for a in audit["items"]] == ["user.login", "login.failed", "user.password", "user.login"]


async def test_the_page_its_files_and_the_api_document(ctl):
    r = await ctl.client.get("/")
    html = await r.text()
    assert r.status == 200 and r.content_type == "text/html" and '<script type="module" src="/static/app.js">' in html
    assert "default-src 'self'" in r.headers["Content-Security-Policy"]
    for path in ("/static/app.js", "/static/style.css", "/i18n/kk.json"):
        assert (await ctl.client.get(path)).status == 200, path
    assert (await ctl.client.get("/i18n/de.json")).status == 404
    assert (await ctl.client.get("/static/../__init__.py")).status in (403, 404)
    _, doc = await ctl.call("GET", "/api/v1/openapi.json", role=None, expect=200)
    assert {"/api/v1/login", "/api/v1/logout", "/api/v1/me", "/api/v1/tests", "/api/v1/tests/{id}"} <= set(doc["paths"])
    assert doc["paths"]["/api/v1/tests"]["post"]["x-permission"] == auth.TESTS_RUN


def test_catalogs_have_the_same_keys_and_cover_the_page_and_the_api_values():
    cats = {lang: json.loads((WEB / "i18n" / f"{lang}.json").read_text("utf-8")) for lang in ("kk", "ru", "en")}
    assert set(cats["kk"]) == set(cats["ru"]) == set(cats["en"])
    for lang, cat in cats.items():
        for key, text in cat.items():
            assert text.strip(), (lang, key)
            assert set(re.findall(r"\{(\w+)\}", text)) == set(re.findall(r"\{(\w+)\}", cats["en"][key])), (lang, key)
    used = set()
    for js in (WEB / "static").rglob("*.js"):           # the views too (static/views/)
        used |= set(re.findall(r"""\bt\(\s*["'](\w+\.[\w.]+)["']""", js.read_text("utf-8")))
    used |= set(re.findall(r'data-i18n="([\w.]+)"', (WEB / "static" / "index.html").read_text("utf-8")))
    assert used - set(cats["en"]) == set()
    values = {"status": (*HearingStatus, *CheckStatus), "verdict": tuple(Verdict),
              "reason": tuple(SuspensionReason), "role": tuple(Role)}
    for prefix, names in values.items():
        assert {f"{prefix}.{n}" for n in names} <= set(cats["en"]), prefix


# --- run a test now -----------------------------------------------------------------------------

async def test_run_a_test_now_through_the_gateway_and_read_its_report(ctl, fake_clock):
    status, body = await ctl.call("POST", "/api/v1/tests", role="technician", expect=202, json={
        "caller": "court-almaty-1", "callee": "sizo-almaty-1", "profile": "monitor", "duration_s": 5})
    AdhocTestOut.model_validate(body)
    sid = body["id"]
    # Capacity is asked for by default (issue 12): the gateway passes it on to a capable caller.
    assert ctl.gw.started == [dict(session_id=sid, caller="court-almaty-1", callee="sizo-almaty-1", kind="test",
                                   profile="monitor", duration_s=5.0, capacity=True)]
    assert body["capacity"] is True
    _, got = await ctl.call("GET", f"/api/v1/tests/{sid}", role="viewer", expect=200)
    assert got["status"] == "running" and got["report"] is None and got["requested_by"] == "technician-1"

    # The caller's final report as the hub stores it (the callee's is not the result).
    rep = report("degraded", loss=0.03)
    async with ctl.db.transaction() as conn:
        await agents_repo.store_reports(conn, [
            agents_repo.NewReport("sizo-almaty-1", "r-callee", "session", sid,
                                  {"role": "callee", "report": report("good")}, None),
            agents_repo.NewReport("court-almaty-1", "r-caller", "session", sid,
                                  {"role": "caller", "report": rep}, None)])
    _, got = await ctl.call("GET", f"/api/v1/tests/{sid}", role="viewer", expect=200)
    AdhocTestOut.model_validate(got)
    assert got["status"] == "done" and got["verdict"] == "degraded" and got["report"]["outbound"]["loss_ratio"] == 0.03

    # Without a report past its duration and the grace: failed.
    _, other = await ctl.call("POST", "/api/v1/tests", role="admin", expect=202,
                              json={"caller": "court-almaty-2", "callee": "sizo-almaty-2", "duration_s": 5,
                                    "capacity": False})
    assert ctl.gw.started[-1]["capacity"] is False and other["capacity"] is False
    fake_clock.advance(seconds=5 + ctl.settings.scheduler.result_grace_s + 1)
    _, got = await ctl.call("GET", f"/api/v1/tests/{other['id']}", expect=200)
    assert got["status"] == "failed" and "no report" in got["error"]
    # With capacity the ramps' time is waited for too (each direction at most 12 s, contract.wire).
    _, ramped = await ctl.call("POST", "/api/v1/tests", role="admin", expect=202,
                               json={"caller": "court-almaty-2", "callee": "sizo-almaty-2", "duration_s": 5})
    assert ramped["capacity"] is True
    fake_clock.advance(seconds=5 + ctl.settings.scheduler.result_grace_s + 1)
    assert (await ctl.call("GET", f"/api/v1/tests/{ramped['id']}", expect=200))[1]["status"] == "running"
    fake_clock.advance(seconds=session_span_s(5, True) - 5)
    assert (await ctl.call("GET", f"/api/v1/tests/{ramped['id']}", expect=200))[1]["status"] == "failed"
    assert (await ctl.call("GET", "/api/v1/tests/adhoc-unknown"))[0] == 404


async def test_a_report_the_quality_model_cannot_judge_has_no_verdict_not_the_agents(db_url, fake_clock):
    """The verdict is the quality model's, never the agent's own (issue 10): a report it cannot judge
    shows no verdict and why, and the agent's words stay in the report only."""
    def broken(_report, _profile=None):
        raise RuntimeError("the quality model is unavailable")
    async with Controller(db_url, fake_clock, judge=broken) as ctl:
        _, body = await ctl.call("POST", "/api/v1/tests", role="technician", expect=202,
                                 json={"caller": "court-almaty-1", "callee": "sizo-almaty-1", "duration_s": 5})
        sid = body["id"]
        async with ctl.db.transaction() as conn:
            await agents_repo.store_reports(conn, [agents_repo.NewReport(
                "court-almaty-1", "r-caller", "session", sid, {"role": "caller", "report": report("good")}, None)])
        _, got = await ctl.call("GET", f"/api/v1/tests/{sid}", role="viewer", expect=200)
    AdhocTestOut.model_validate(got)
    assert got["status"] == "done" and got["report"]["verdict"] == "good"
    assert (got["verdict"], got["reasons"], got["mos"]) == (None, ["not judged: the quality model is unavailable"],
                                                            None)
    assert got["reason_codes"] == [{"code": "not_judged", "params": {"why": "the quality model is unavailable"}}]


async def test_run_a_test_now_refusals(ctl):
    async def post(role="technician", **body):
        body = {"caller": "court-almaty-1", "callee": "sizo-almaty-1", **body}
        return await ctl.call("POST", "/api/v1/tests", role=role, json=body)
    assert (await post(role="secretary"))[0] == 403
    assert (await post(role="viewer"))[0] == 403
    status, body = await post(caller="nowhere-1")
    assert status == 400 and body["field"] == "caller"
    status, body = await post(callee="court-almaty-1")
    assert status == 400 and body["field"] == "callee"
    status, body = await post(duration_s=601)
    assert status == 400 and body["field"] == "duration_s"
    ctl.gw.offline.add("sizo-almaty-1")
    status, body = await post()
    assert status == 409 and body["error"] == "unavailable"
    ctl.gw.offline.clear()
    await ctl.call("POST", "/api/v1/suspensions", role="coordinator", expect=201,
                   json={"institution_id": "sizo-almaty-70-1", "reason": "escape"})
    status, body = await post()
    assert status == 409 and body["error"] == "suspended"                     # rule 24
    assert ctl.gw.started == []


def test_the_real_serve_process_serves_the_page_and_a_password_set_by_the_cli(tmp_path):
    """`vks-controller serve` as installed: the page, its files, and a password set with
    `vks-controller user passwd` signs in."""
    import os
    import subprocess
    import sys
    import urllib.request

    from tests.harness import cli as run_cli
    from tests.procs import free_port, stop, wait_for
    repo = WEB.parent.parent
    env = dict(os.environ, PYTHONPATH=str(repo), VKS_CONTROLLER_CONFIG=str(tmp_path / "none.yaml"))
    (tmp_path / "none.yaml").write_text("sites_file: null\n")
    db = f"sqlite:///{tmp_path}/c.sqlite"
    run_cli("user", "add", "ops", "--role", "coordinator", "--db", db, env=env)
    out = subprocess.run([sys.executable, "-m", "controller.cli", "user", "passwd", "ops", "--password-stdin",
                          "--db", db], input=PASSWORD + "\n", env=env, cwd=repo, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen([sys.executable, "-m", "controller.cli", "serve", "--listen", f"127.0.0.1:{port}",
                             "--db", db], env=env, cwd=repo, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        def page():
            try:
                with urllib.request.urlopen(base + "/", timeout=2) as r:
                    return r.read().decode()
            except OSError:
                return None
        assert "/static/app.js" in wait_for(page, 30, what="the page")
        with urllib.request.urlopen(base + "/static/app.js", timeout=5) as r:
            assert "Capabilities" in r.read().decode()
        req = urllib.request.Request(base + "/api/v1/login", method="POST",
                                     headers={"Content-Type": "application/json"},
                                     data=json.dumps({"username": "ops", "password": PASSWORD}).encode())
        with urllib.request.urlopen(req, timeout=10) as r:
            assert json.loads(r.read())["role"] == "coordinator"
            cookie = r.headers["Set-Cookie"].split(";")[0]
        req = urllib.request.Request(base + "/api/v1/me", headers={"Cookie": cookie})
        with urllib.request.urlopen(req, timeout=10) as r:
            assert json.loads(r.read())["name"] == "ops"
    finally:
        assert stop(proc) == 0
