"""Per-terminal tokens (rules 5, 6; issue 7): rotation and revocation while agents are connected.

A new connection with a revoked token is refused at once (test_link_hub.py); here: an OPEN
connection whose token is revoked is closed by the hub within `token_check_s`, and the agent,
which re-reads `controller.token_file` at every connect, comes back with the rotated token."""
from __future__ import annotations

import aiohttp

from contract import wire
from controller.store import agents as store
from tests.test_link_hub import Agent, Controller, agent_settings, eventually


async def test_rotation_then_revocation_closes_the_open_connection(db_url, tmp_path, caplog):
    import logging
    caplog.set_level(logging.DEBUG)
    c = await Controller(db_url, token_check_s=0.2).start()
    try:
        async with c.db.transaction() as conn:
            old_id, old = await store.issue_token(conn, "court-1")
        token_file = tmp_path / "token"
        token_file.write_text(old + "\n")
        settings = agent_settings(tmp_path, "court-1", c.url, "", token_file=str(token_file))
        settings.controller.token = None
        a = await Agent(settings).start()
        try:
            await eventually(lambda: "court-1" in c.hub.online())
            first = c.hub._conns["court-1"]

            # Rotation: a new token; the old one keeps working until revoked.
            async with c.db.transaction() as conn:
                new_id, new = await store.issue_token(conn, "court-1")
            async with c.db.read() as conn:
                assert await store.authenticate(conn, old) == "court-1"
                assert await store.authenticate(conn, new) == "court-1"
            token_file.write_text(new + "\n")                  # installed on the terminal
            await eventually(lambda: a.link.connects == 1)
            assert c.hub._conns.get("court-1") is first         # nothing happened to the connection

            # Revoke the old token: the open connection is closed; the agent reconnects with the new.
            async with c.db.transaction() as conn:
                assert await store.revoke_tokens(conn, "court-1", token_id=old_id) == 1
            await eventually(lambda: a.link.connects == 2, timeout=15)
            second = c.hub._conns["court-1"]
            assert second is not first and second.token_sha256 == store.token_hash(new)
            await a.outbox.put("rot-1", "health", {"status": "ok"})
            await eventually(lambda: c.hub.stats.reports_stored_total >= 1)

            # Revoke the new one too: closed, and every reconnect is refused (401).
            async with c.db.transaction() as conn:
                await store.revoke_tokens(conn, "court-1")
            await eventually(lambda: "court-1" not in c.hub.online(), timeout=15)
            await eventually(lambda: a.link.last_error and "refused the token (401)" in a.link.last_error,
                             timeout=15)
            assert a.link.connects == 2
        finally:
            await a.stop()
        # And a raw client holding a revoked token gets 401 before any upgrade.
        async with aiohttp.ClientSession() as http:
            async with http.get(c.url.replace("ws://", "http://") + wire.WS_PATH,
                                headers={"Authorization": f"Bearer {new}"}) as resp:
                assert resp.status == 401
                assert (await resp.json())["error"] == "unauthorized"
        # Secrets never logged (agent and controller, at DEBUG): neither token appears.
        assert "revoked or expired" in caplog.text
        assert old not in caplog.text and new not in caplog.text
    finally:
        await c.stop()


async def test_an_expired_token_closes_the_connection(tmp_path):
    import datetime as dt
    c = await Controller(f"sqlite:///{tmp_path}/c.sqlite", token_check_s=0.2).start()
    try:
        token = await c.token("court-1", expires_at=store.utcnow() + dt.timedelta(seconds=2))
        a = await Agent(agent_settings(tmp_path, "court-1", c.url, token)).start()
        try:
            await eventually(lambda: "court-1" in c.hub.online())
            await eventually(lambda: "court-1" not in c.hub.online(), timeout=15)
            await eventually(lambda: a.link.last_error and "401" in a.link.last_error, timeout=15)
        finally:
            await a.stop()
    finally:
        await c.stop()
