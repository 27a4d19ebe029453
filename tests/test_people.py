"""People come and go, and sign-in cannot be raced or turned against the user (issue 11, items 2
and 3): against the app on a real socket (aiohttp's TestServer), on SQLite and PostgreSQL.

No timing is asserted: "slowed" is the delay the server decided (the audit row's delay_s, from
AuthSettings.name_delay), "few at once" is the most password checks seen running together."""
from __future__ import annotations

import asyncio
import datetime as dt
import logging
import threading

import pytest

from controller import auth
from controller.store import users as users_repo
from controller.web import LIMITER_KEY
from tests.controller_kit import Controller

PASSWORD = "correct horse battery"
LOW_N = 2 ** 14
AUTH = {"scrypt_n": LOW_N, "name_delay_s": 0.01, "name_max_delay_s": 0.04}


async def _with_passwords(c: Controller, clock, *names: str) -> Controller:
    hashed = await users_repo.password_hash(PASSWORD, LOW_N)
    async with c.db.transaction() as conn:
        for name in names:
            await users_repo.set_password(conn, name, hashed, clock())
    return c


@pytest.fixture
async def ctl(db_url, fake_clock):
    async with Controller(db_url, fake_clock, auth=AUTH, trusted_proxies=["127.0.0.1"]) as c:
        yield await _with_passwords(c, fake_clock, "viewer-1", "admin-1", "secretary-1")


async def login(ctl, via: str | None = None, **body):
    headers = {"X-Forwarded-For": via} if via else {}
    resp = await ctl.client.post("/api/v1/login", json=body, headers=headers)
    return resp, await resp.json()


async def audit_of(ctl, name: str) -> list[dict]:
    async with ctl.db.read() as conn:
        return await users_repo.list_audit(conn, target=f"user:{name}")


# --- people come and go -----------------------------------------------------------------------

async def test_removing_a_user_ends_every_token_and_session_and_refuses_the_password(ctl):
    token = ctl.tokens["viewer"]
    resp, _ = await login(ctl, username="viewer-1", password=PASSWORD)
    session = resp.cookies[auth.SESSION_COOKIE].value
    assert (await ctl.call("GET", "/api/v1/me", token=session))[0] == 200
    assert (await ctl.call("DELETE", "/api/v1/users/viewer-1", role="secretary"))[0] == 403
    assert (await ctl.call("DELETE", "/api/v1/users/ghost"))[0] == 404
    status, out = await ctl.call("DELETE", "/api/v1/users/viewer-1", expect=200)
    assert out["name"] == "viewer-1" and out["disabled_at"]
    assert (await ctl.call("GET", "/api/v1/me", token=token))[0] == 401
    assert (await ctl.call("GET", "/api/v1/me", token=session))[0] == 401
    resp, body = await login(ctl, username="viewer-1", password=PASSWORD)
    assert resp.status == 401 and auth.SESSION_COOKIE not in resp.cookies
    assert (await login(ctl, token=token))[0].status == 401
    await ctl.call("DELETE", "/api/v1/users/viewer-1", expect=200)           # again: no change, no row
    actions = [a["action"] for a in await audit_of(ctl, "viewer-1")]
    assert actions.count("user.remove") == 1 and actions[0] == "login.failed"
    _, users = await ctl.call("GET", "/api/v1/users", expect=200)
    listed = {u["name"]: u for u in users["items"]}
    assert listed["viewer-1"]["disabled_at"] and listed["admin-1"]["disabled_at"] is None
    assert (await ctl.call("POST", "/api/v1/users", json={"name": "viewer-1", "role": "viewer"}))[0] == 409


async def test_tokens_expire_are_listed_and_revoked_one_by_one(ctl, fake_clock):
    async with ctl.db.transaction() as conn:
        u = await users_repo.get_user(conn, "secretary-1")
        short = await users_repo.issue_token(conn, u["id"], fake_clock(), fake_clock() + dt.timedelta(hours=1))
    keep = ctl.tokens["secretary"]
    assert (await ctl.call("GET", "/api/v1/me", token=short))[0] == 200
    status, listed = await ctl.call("GET", "/api/v1/users/secretary-1/tokens", expect=200)
    assert [t["id"] for t in listed["items"]] == sorted(t["id"] for t in listed["items"]) and len(listed["items"]) == 2
    assert short not in str(listed) and keep not in str(listed)
    assert set(listed["items"][0]) == {"id", "created_at", "expires_at", "last_used_at", "revoked_at"}
    short_id = next(t["id"] for t in listed["items"] if t["expires_at"])
    assert next(t for t in listed["items"] if t["id"] == short_id)["last_used_at"]     # used above
    fake_clock.advance(dt.timedelta(hours=1, seconds=1))
    assert (await ctl.call("GET", "/api/v1/me", token=short))[0] == 401                 # expired
    assert (await login(ctl, token=short))[0].status == 401
    # A token sign-in's page session ends with its token.
    resp, _ = await login(ctl, token=keep)
    session = resp.cookies[auth.SESSION_COOKIE].value
    keep_id = next(t["id"] for t in listed["items"] if t["id"] != short_id)
    assert (await ctl.call("DELETE", f"/api/v1/users/admin-1/tokens/{keep_id}"))[0] == 404    # not admin's
    assert (await ctl.call("DELETE", "/api/v1/users/secretary-1/tokens/99999"))[0] == 404
    _, out = await ctl.call("DELETE", f"/api/v1/users/secretary-1/tokens/{keep_id}", expect=200)
    assert out == {"revoked": 1}
    assert (await ctl.call("GET", "/api/v1/me", token=keep))[0] == 401
    assert (await ctl.call("GET", "/api/v1/me", token=session))[0] == 401
    assert (await ctl.call("GET", "/api/v1/me", role="admin"))[0] == 200                  # others untouched
    assert "user.revoke_token" in [a["action"] for a in await audit_of(ctl, "secretary-1")]


async def test_a_token_sign_in_puts_a_session_not_the_token_in_the_cookie_and_logout_ends_it(ctl):
    token = ctl.tokens["technician"]
    resp, me = await login(ctl, token=token)
    assert resp.status == 200 and me["role"] == "technician"
    cookie = resp.cookies[auth.SESSION_COOKIE].value
    assert cookie != token and cookie.startswith(users_repo.SESSION_PREFIX) and token not in resp.headers["Set-Cookie"]
    assert (await ctl.call("GET", "/api/v1/me", token=cookie))[0] == 200
    assert (await ctl.client.post("/api/v1/logout")).status == 204
    assert (await ctl.call("GET", "/api/v1/me", token=cookie))[0] == 401
    assert (await ctl.call("GET", "/api/v1/me", token=token))[0] == 200        # the API token is not the session


async def test_the_cookie_is_secure_behind_a_trusted_proxy_only(db_url, fake_clock):
    async with Controller(db_url, fake_clock, auth=AUTH, trusted_proxies=["10.0.0.0/8"]) as c:
        await _with_passwords(c, fake_clock, "viewer-1")
        resp = await c.client.post("/api/v1/login", json={"username": "viewer-1", "password": PASSWORD},
                                   headers={"X-Forwarded-Proto": "https"})
        assert resp.status == 200 and "Secure" not in resp.headers["Set-Cookie"]     # 127.0.0.1 is not trusted
    async with Controller(db_url, fake_clock, auth=AUTH, trusted_proxies=["127.0.0.1"], seed=False) as c:
        name = f"viewer-{id(c)}"                    # the kit's unseeded user names
        await _with_passwords(c, fake_clock, name)
        resp = await c.client.post("/api/v1/login", json={"username": name, "password": PASSWORD},
                                   headers={"X-Forwarded-Proto": "https"})
        assert resp.status == 200 and "Secure" in resp.headers["Set-Cookie"]
        resp = await c.client.post("/api/v1/login", json={"username": name, "password": PASSWORD})
        assert resp.status == 200 and "Secure" not in resp.headers["Set-Cookie"]


# --- sign-in that cannot be raced -------------------------------------------------------------

class Checks:
    """Counts the password checks and the most seen running at once."""

    def __init__(self, monkeypatch):
        self.lock = threading.Lock()
        self.now = self.most = self.total = 0
        real = users_repo.verify_password

        def spy(*args):
            with self.lock:
                self.now += 1
                self.total += 1
                self.most = max(self.most, self.now)
            try:
                return real(*args)
            finally:
                with self.lock:
                    self.now -= 1
        monkeypatch.setattr(users_repo, "verify_password", spy)


async def test_forty_concurrent_guesses_from_one_address_check_at_most_the_limit(ctl, monkeypatch, caplog):
    checks = Checks(monkeypatch)
    limit = ctl.app[LIMITER_KEY].limit
    with caplog.at_level(logging.INFO, logger="controller.web"):
        results = await asyncio.gather(*(login(ctl, via="203.0.113.7", username="admin-1", password=f"guess-{i:03d}")
                                         for i in range(40)))
    statuses = sorted(r.status for r, _ in results)
    assert statuses == [401] * limit + [429] * (40 - limit)
    assert checks.total == limit
    assert all(b["retry_after_s"] > 0 for r, b in results if r.status == 429)
    # The header says the same in whole seconds, for clients that read headers, not bodies.
    assert all(int(r.headers["Retry-After"]) >= b["retry_after_s"] for r, b in results if r.status == 429)
    assert all("WWW-Authenticate" in r.headers for r, _ in results if r.status == 401)
    failed = [a for a in await audit_of(ctl, "admin-1") if a["action"] == "login.failed"]
    assert len(failed) == limit and all(a["detail"]["address"] == "203.0.113.7" for a in failed)
    logged = [r.getMessage() for r in caplog.records if "sign-in failed" in r.getMessage()]
    assert len(logged) == limit and all("admin-1" in m and "203.0.113.7" in m for m in logged)
    assert "guess-" not in caplog.text


async def test_few_checks_run_at_once(ctl, monkeypatch):
    checks = Checks(monkeypatch)
    await asyncio.gather(*(login(ctl, via=f"198.51.100.{i}", username="viewer-1", password=f"guess-{i:03d}")
                           for i in range(12)))
    assert checks.total == 12 and 1 <= checks.most <= ctl.settings.auth.max_checks == 2


async def test_a_name_under_attack_is_slowed_not_locked_against_its_owner(ctl):
    settings = ctl.settings.auth
    for i in range(settings.name_free + 3):              # from many addresses, each under its limit
        resp, _ = await login(ctl, via=f"192.0.2.{i}", username="admin-1", password=f"guess-{i:03d}")
        assert resp.status == 401
    failed = [a["detail"]["delay_s"] for a in reversed(await audit_of(ctl, "admin-1"))]
    assert failed == [settings.name_delay(n) for n in range(settings.name_free + 3)]
    assert failed[-1] > 0 and failed[: settings.name_free + 1] == [0.0] * (settings.name_free + 1)
    resp, me = await login(ctl, via="100.64.0.1", username="admin-1", password=PASSWORD)      # the owner
    assert resp.status == 200 and me["name"] == "admin-1"
    row = (await audit_of(ctl, "admin-1"))[0]
    assert row["action"] == "user.login" and row["detail"]["delay_s"] == settings.name_delay(settings.name_free + 3) > 0


async def test_x_forwarded_for_is_believed_only_from_a_trusted_proxy(db_url, fake_clock):
    async with Controller(db_url, fake_clock, auth=AUTH) as c:            # no trusted proxies
        await _with_passwords(c, fake_clock, "viewer-1")
        statuses = []
        for i in range(7):
            resp = await c.client.post("/api/v1/login", json={"username": "viewer-1", "password": f"guess-{i:03d}"},
                                       headers={"X-Forwarded-For": f"192.0.2.{i}"})
            statuses.append(resp.status)
        assert statuses == [401] * 5 + [429] * 2
        assert all(a["detail"]["address"] == "127.0.0.1" for a in await audit_of(c, "viewer-1"))


async def test_controllers_on_one_database_share_the_counts(db_url, fake_clock):
    async with Controller(db_url, fake_clock, auth=AUTH) as a, \
            Controller(db_url, fake_clock, auth=AUTH, seed=False) as b:
        statuses = []
        for i in range(6):
            c = a if i % 2 else b
            resp = await c.client.post("/api/v1/login", json={"username": "nobody", "password": f"guess-{i:03d}"})
            statuses.append(resp.status)
        assert statuses == [401] * 5 + [429]


async def test_password_hashes_are_owasp_strength_and_old_ones_still_verify(ctl, fake_clock):
    assert auth.AuthSettings().scrypt_n == users_repo.SCRYPT_N == 2 ** 17
    hashed = await users_repo.password_hash(PASSWORD)
    assert hashed.startswith("scrypt$131072$8$1$")
    assert users_repo.verify_password(PASSWORD, hashed) and not users_repo.verify_password(PASSWORD + "x", hashed)
    old = users_repo.hash_password(PASSWORD, 2 ** 14)          # stored before the change: still signs in
    async with ctl.db.transaction() as conn:
        await users_repo.set_password(conn, "viewer-1", old, fake_clock())
    assert (await login(ctl, username="viewer-1", password=PASSWORD))[0].status == 200
    with pytest.raises(ValueError, match="power of two"):
        auth.AuthSettings(scrypt_n=100_000)
