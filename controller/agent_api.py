"""The agents' door into the controller: the WebSocket route, the hub's lifecycle, and the
`vks-controller terminal ...` commands that issue and revoke terminal tokens.

    GET /api/v1/agent/ws          Authorization: Bearer <terminal token>   (see controller.hub)

    vks-controller terminal token TERMINAL_ID [--expires-days N] [--revoke-others]
        issue a token (printed once, stored as sha256). Without --revoke-others the terminal's
        older tokens stay valid (rotation: issue, install on the terminal, then revoke the old).
    vks-controller terminal revoke TERMINAL_ID [--token-id N]
        revoke one token, or all of the terminal's tokens.
    vks-controller terminal tokens TERMINAL_ID
        list the terminal's tokens (id, created, expires, revoked) - never the tokens themselves.
"""
from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import sys

from aiohttp import web

from contract import wire
from controller.hub import Hub
from controller.keys import HUB_KEY
from controller.store import agents as store
from controller.store.db import Database
from controller.store.migrate import migrate

__all__ = ["HUB_KEY", "add_terminal_parser", "agent_ws", "run_terminal_command", "setup_agent_api"]


async def agent_ws(request: web.Request) -> web.StreamResponse:
    """GET /api/v1/agent/ws: the hub takes the connection (503 while it is not running)."""
    hub = request.app.get(HUB_KEY)
    if hub is None:
        return web.json_response({"error": "unavailable", "message": "agent hub is not running"}, status=503)
    return await hub.handle(request)


def setup_agent_api(app: web.Application, hub: Hub) -> None:
    """Serve `hub` in `app`: the route, a cleanup_ctx that starts and closes it (append this after
    the context that opens the database), and the closing of its sockets at shutdown."""
    app[HUB_KEY] = hub

    async def hub_ctx(app: web.Application):
        await hub.start()
        try:
            yield
        finally:
            await hub.close()

    async def on_shutdown(app: web.Application) -> None:
        await hub.close_connections()

    app.cleanup_ctx.append(hub_ctx)
    app.on_shutdown.append(on_shutdown)
    app.router.add_get(wire.WS_PATH, agent_ws)


# ---- command line ----------------------------------------------------------------------------

def add_terminal_parser(subparsers, *, parents=()):
    """`vks-controller terminal token|revoke|tokens ...` (`parents`: the CLI's --config/--db);
    run the parsed command with `run_terminal_command(db_url, args)`."""
    p = subparsers.add_parser("terminal", help="terminal (agent) tokens")
    sub = p.add_subparsers(dest="terminal_command", required=True, metavar="ACTION")

    tok = sub.add_parser("token", parents=parents, help="issue a token for a terminal (printed once)")
    tok.add_argument("terminal_id")
    tok.add_argument("--expires-days", type=float, default=None, help="valid for this many days")
    tok.add_argument("--revoke-others", action="store_true",
                     help="revoke the terminal's other tokens at once")
    tok.set_defaults(terminal_func=_cmd_token)

    rev = sub.add_parser("revoke", parents=parents, help="revoke a terminal's tokens")
    rev.add_argument("terminal_id")
    rev.add_argument("--token-id", type=int, default=None, help="only this token (see `tokens`)")
    rev.set_defaults(terminal_func=_cmd_revoke)

    ls = sub.add_parser("tokens", parents=parents, help="list a terminal's tokens (not the secrets)")
    ls.add_argument("terminal_id")
    ls.set_defaults(terminal_func=_cmd_tokens)

    return p


def run_terminal_command(db_url: str, args: argparse.Namespace) -> int:
    """Run a parsed `terminal ...` command against `db_url` (migrated first if needed)."""
    async def run() -> int:
        db = Database(db_url)
        try:
            await migrate(db)
        finally:
            await db.close()
        return await args.terminal_func(db_url, args)
    return asyncio.run(run())


async def _cmd_token(db_url: str, args) -> int:
    if not args.terminal_id or len(args.terminal_id) > 64:
        print("vks-controller: TERMINAL_ID must be 1..64 characters", file=sys.stderr)
        return 2
    expires = None
    if args.expires_days is not None:
        expires = store.utcnow() + dt.timedelta(days=args.expires_days)
    db = Database(db_url)
    try:
        async with db.transaction() as conn:
            token_id, token = await store.issue_token(conn, args.terminal_id, expires_at=expires)
            revoked = 0
            if args.revoke_others:
                revoked = await store.revoke_tokens(conn, args.terminal_id, except_id=token_id)
    finally:
        await db.close()
    print(token)
    note = f"token {token_id} for terminal {args.terminal_id}"
    if expires:
        note += f", expires {expires.isoformat(timespec='seconds')}"
    if revoked:
        note += f"; revoked {revoked} older token(s)"
    print(note + ". Shown once: put it in the agent's controller.token_file.", file=sys.stderr)
    return 0


async def _cmd_revoke(db_url: str, args) -> int:
    db = Database(db_url)
    try:
        async with db.transaction() as conn:
            n = await store.revoke_tokens(conn, args.terminal_id, token_id=args.token_id)
    finally:
        await db.close()
    print(f"revoked {n} token(s) of terminal {args.terminal_id}", file=sys.stderr)
    return 0 if n else 1


async def _cmd_tokens(db_url: str, args) -> int:
    db = Database(db_url)
    try:
        async with db.read() as conn:
            rows = await store.list_tokens(conn, args.terminal_id)
    finally:
        await db.close()
    for r in rows:
        print(json.dumps({"id": r.id, "terminal_id": r.terminal_id,
                          "created_at": r.created_at.isoformat(),
                          "expires_at": r.expires_at.isoformat() if r.expires_at else None,
                          "revoked_at": r.revoked_at.isoformat() if r.revoked_at else None}))
    return 0
