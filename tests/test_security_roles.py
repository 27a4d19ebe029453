"""Least privilege (rules 5, 6; issue 7), table-driven over every operation of the OpenAPI document
the controller serves: for each operation and each role, a role without the operation's
permission gets 403 and nothing is written (the audit trail does not move); a role with it is let
through (whatever the handler then says about the empty request, it is not 401/403). A terminal
(agent) token is no key to the people's API; a person's token does not open the agent WebSocket;
no token gets 401."""
from __future__ import annotations

import re

import pytest

from controller import auth
from controller.api import ROUTES_KEY
from controller.store import agents as agents_store
from tests.controller_kit import ROLES, Controller


def concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "1", path)


@pytest.fixture
async def ctl(fake_clock, tmp_path):
    async with Controller(f"sqlite:///{tmp_path / 'c.sqlite'}", fake_clock) as c:
        yield c


async def operations(c: Controller) -> list[tuple[str, str, str | None]]:
    """(method, path, permission) for every operation in the served OpenAPI document."""
    _, doc = await c.call("GET", "/api/v1/openapi.json", role=None, expect=200)
    perms = {(r.method, r.path): r.permission for r in c.app[ROUTES_KEY]}
    ops = []
    for path, methods in doc["paths"].items():
        for method in methods:
            if method.upper() in ("GET", "POST", "PUT", "PATCH", "DELETE"):
                assert (method.upper(), path) in perms, f"{method} {path} is documented but not in the route table"
                ops.append((method.upper(), path, perms[(method.upper(), path)]))
    assert len(ops) > 40
    return ops


async def audit_count(c: Controller) -> int:
    from sqlalchemy import text
    async with c.db.read() as conn:
        return (await conn.execute(text("SELECT count(*) FROM audit"))).scalar_one()


async def test_every_role_gets_exactly_its_permissions_on_every_operation(ctl):
    ops = await operations(ctl)
    denied = allowed = 0
    for method, path, perm in ops:
        if perm is None:
            continue
        body_in = {} if method != "GET" else None
        before = await audit_count(ctl)
        for role in [r for r in ROLES if not auth.allowed(r, perm)]:
            denied += 1
            status, body = await ctl.call(method, concrete(path), role=role, json=body_in)
            assert status == 403 and body["error"] == "forbidden", (role, method, path, status, body)
        assert await audit_count(ctl) == before, f"a refused {method} {path} wrote to the audit trail"
        for role in [r for r in ROLES if auth.allowed(r, perm)]:
            allowed += 1
            status, body = await ctl.call(method, concrete(path), role=role, json=body_in)
            msg = body.get("message", "") if isinstance(body, dict) else ""
            assert status != 401 and not (status == 403 and msg.startswith(f"role {role!r} may not")), \
                (role, method, path, status, body)
    assert denied > 50 and allowed > 50


@pytest.mark.parametrize("role,may_change", [
    ("viewer", set()),
    ("technician", {auth.TESTS_RUN}),
    ("secretary", {auth.HEARINGS_WRITE}),
])
async def test_named_rules(ctl, role, may_change):
    """A viewer cannot change anything; a technician cannot edit hearings; a secretary cannot touch
    the registry, the users or suspensions."""
    for method, path, perm in await operations(ctl):
        if perm is None or method == "GET":
            continue
        status, _ = await ctl.call(method, concrete(path), role=role, json={})
        if perm not in may_change and perm != auth.READ:
            assert status == 403, (role, method, path, status)
    assert (await ctl.call("PATCH", "/api/v1/hearings/1", role="technician", json={"duration_min": 30}))[0] == 403
    assert (await ctl.call("DELETE", "/api/v1/hearings/1", role="technician"))[0] == 403


async def test_terminal_tokens_do_not_open_the_peoples_api_and_no_token_is_401(ctl):
    async with ctl.db.transaction() as conn:
        _, terminal_token = await agents_store.issue_token(conn, "court-almaty-1")
    for method, path, perm in await operations(ctl):
        if perm is None:
            continue
        status, body = await ctl.call(method, concrete(path), token=terminal_token,
                                      json={} if method != "GET" else None)
        assert status == 401 and body["error"] == "unauthorized", (method, path, status)
        status, body = await ctl.call(method, concrete(path), role=None, json={} if method != "GET" else None)
        assert status == 401, (method, path, status)


async def test_a_persons_token_does_not_open_the_agent_websocket(tmp_path):
    """Against the real hub: an admin's API token is not a terminal token (401 before the upgrade)."""
    import aiohttp

    from contract import wire
    from controller.store import users
    from tests.test_link_hub import Controller as HubController
    c = await HubController(f"sqlite:///{tmp_path / 'hub.sqlite'}").start()
    try:
        async with c.db.transaction() as conn:
            import datetime as dt
            now = dt.datetime.now(dt.UTC)
            u = await users.create_user(conn, "boss", "admin", now)
            person_token = await users.issue_token(conn, u["id"], now)
        async with aiohttp.ClientSession() as http:
            for token in (person_token, "vks_" + "x" * 43, ""):
                async with http.get(f"http://127.0.0.1:{c.port}{wire.WS_PATH}",
                                    headers={"Authorization": f"Bearer {token}"}) as resp:
                    assert resp.status == 401
        assert c.hub.online() == set()
    finally:
        await c.stop()
