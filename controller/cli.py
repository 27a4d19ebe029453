"""vks-controller: serve, migrate, user add|token|tokens|revoke|remove|passwd, sites import, terminal token,
contact add|list|remove (who is told of escalations).

Exit status: 0 ok; 1 a runtime failure (e.g. the database cannot be reached);
2 a usage or configuration error, with a message naming what is wrong.
Settings come from --config, else $VKS_CONTROLLER_CONFIG, else the built-in defaults
(configs/controller.yaml is the example to copy); --listen and --db override them.
"""
from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import gc
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from contract import configfile
from contract.vocab import Coordinator, Role, words
from controller.settings import ControllerSettings, load_settings, parse_listen
from controller.store.db import DatabaseUrlError

# Connections the kernel may queue before accept (aiohttp's default is 128): a reconnect storm.
ACCEPT_BACKLOG = 4096

# The cyclic garbage collector's thresholds while serving (Python's default: 700, 10, 10). With
# thousands of agents connected the heap holds millions of objects, and each full collection walked
# them all while nothing else ran: the p99 of "sent -> stored" was 505 ms at 4,000 agents, 65 ms with
# these (issue 15). Young objects are still collected often (every 100,000 allocations); a full
# collection waits for 1,000 collections of the middle generation (under full load about hourly).
GC_THRESHOLDS = (100_000, 50, 1_000)


def tune_gc() -> None:
    """For a long-running server: what exists once it is set up (imports, schemas, the app) is
    never collected again, so no collection walks it (`gc.freeze`), and the thresholds above."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)

if TYPE_CHECKING:
    from controller.models import SitesFile


class UsageError(Exception):
    """The command line asks for something that cannot be done (exit 2, with the reason)."""


def build_parser() -> argparse.ArgumentParser:
    """The command line: serve, migrate, user, sites, terminal, contact."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", metavar="PATH", help="settings file (default: $VKS_CONTROLLER_CONFIG, else none)")
    common.add_argument("--db", metavar="URL", help="sqlite:///path or postgresql://user@host/db")
    p = argparse.ArgumentParser(prog="vks-controller",
                                description="VKS controller: registry, hearings and the clock of the rules")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    s = sub.add_parser("serve", parents=[common], help="run the controller (API, scheduler)")
    s.add_argument("--listen", metavar="HOST:PORT")
    s.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    sub.add_parser("migrate", parents=[common], help="bring the database schema up to date")
    u = sub.add_parser("user", help="users and tokens")
    usub = u.add_subparsers(dest="user_command", required=True, metavar="ACTION")
    ua = usub.add_parser("add", parents=[common], help="add a user and print a new API token")
    ua.add_argument("name")
    ua.add_argument("--role", required=True, choices=words(Role))
    ua.add_argument("--scope", choices=words(Coordinator),
                    help="for a coordinator: whose agreements they give (rules 11, 12); regional needs --region")
    ua.add_argument("--institution", action="append", default=[], metavar="ID", dest="institutions",
                    help="an institution the user's post covers (repeatable)")
    ua.add_argument("--region", action="append", default=[], metavar="NAME", dest="regions",
                    help="a region the user's post covers (repeatable); with neither option: national")
    ut = usub.add_parser("token", parents=[common], help="print a new API token for an existing user")
    ut.add_argument("name")
    ut.add_argument("--expires-days", type=_positive_days, metavar="N", help="the token expires after N days")
    uts = usub.add_parser("tokens", parents=[common],
                          help="list a user's API tokens: id, created, expires, last used (never the token)")
    uts.add_argument("name")
    ur = usub.add_parser("revoke", parents=[common], help="revoke one of a user's API tokens")
    ur.add_argument("name")
    ur.add_argument("--token-id", type=int, required=True, metavar="ID", help="from `user tokens NAME`")
    urm = usub.add_parser("remove", parents=[common],
                          help="disable a user at once: every token and web session ends, the password no "
                               "longer signs in; the name stays in the audit trail")
    urm.add_argument("name")
    up = usub.add_parser("passwd", parents=[common],
                         help="set a user's password for the web page (asked twice; their web sessions end)")
    up.add_argument("name")
    up.add_argument("--password-stdin", action="store_true", help="read the password from the first line of stdin")
    st = sub.add_parser("sites", help="the registry of institutions, rooms and terminals")
    ssub = st.add_subparsers(dest="sites_command", required=True, metavar="ACTION")
    si = ssub.add_parser("import", parents=[common], help="import (upsert) a sites file")
    si.add_argument("file", type=Path, nargs="?", help="default: sites_file from the settings")
    from controller.agent_api import add_terminal_parser
    add_terminal_parser(sub, parents=[common])
    from controller.contacts import add_contact_parser
    add_contact_parser(sub, parents=[common])
    return p


def _positive_days(text: str) -> float:
    try:
        days = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of days: {text!r}") from None
    if not 0 < days <= 3650:
        raise argparse.ArgumentTypeError("--expires-days: more than 0, at most 3650")
    return days


def settings_from(args) -> ControllerSettings:
    """The settings file (--config or the default) with --db and --listen applied over it."""
    settings = load_settings(args.config)
    updates = {}
    if getattr(args, "db", None):
        updates["db"] = args.db
    if getattr(args, "listen", None):
        updates["listen"] = args.listen
    if updates:
        settings = configfile.validate(ControllerSettings, {**settings.model_dump(), **updates},
                                       "command line")
    return settings


async def _migrate(settings: ControllerSettings) -> str | None:
    from controller.store.db import Database
    from controller.store.migrate import migrate
    db = Database(settings.db)
    _mkdir(db)
    try:
        return await migrate(db)
    finally:
        await db.close()


def _mkdir(db) -> None:
    if db.dialect == "sqlite":
        Path(db.engine.url.database).parent.mkdir(parents=True, exist_ok=True)


async def _user_add(settings: ControllerSettings, name: str, role: str | None, scope: str | None,
                    new: bool, expires_days: float | None = None, institutions: list[str] | None = None,
                    regions: list[str] | None = None) -> str:
    from controller import access
    from controller.store import users
    from controller.store.db import Database, utcnow
    from controller.store.migrate import migrate
    db = Database(settings.db)
    _mkdir(db)
    try:
        await migrate(db)
        now = utcnow()
        async with db.transaction() as conn:
            if new:
                if role is None:
                    raise UsageError("user add: give --role")
                access.check_combination(role, scope, institutions or [], regions or [])
                user = await users.create_user(conn, name, role, now, scope)
                await access.set_scope(conn, user["id"], institutions or [], regions or [])
            else:
                user = await users.get_user(conn, name, active=True)
            expires = now + dt.timedelta(days=expires_days) if expires_days else None
            token = await users.issue_token(conn, user["id"], now, expires)
            await users.record(conn, "cli", "user.create" if new else "user.token", f"user:{name}", now,
                               {"role": user["role"], "scope": user.get("scope"),
                                **({"institutions": sorted(set(institutions or [])),
                                    "regions": sorted(set(regions or []))} if new else {}),
                                **({"expires_at": expires.isoformat()} if expires else {})})
        return token
    finally:
        await db.close()


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    import getpass
    first = getpass.getpass("new password: ")
    if getpass.getpass("again: ") != first:
        raise UsageError("the two passwords differ")
    return first


async def _user_passwd(settings: ControllerSettings, name: str, password: str) -> None:
    from controller.store import users
    from controller.store.db import Database, utcnow
    from controller.store.migrate import migrate
    db = Database(settings.db)
    _mkdir(db)
    try:
        await migrate(db)
        now = utcnow()
        hashed = await users.password_hash(password, settings.auth.scrypt_n)
        async with db.transaction() as conn:
            await users.set_password(conn, name, hashed, now)
            await users.record(conn, "cli", "user.password", f"user:{name}", now, {})
    finally:
        await db.close()


async def _user_manage(settings: ControllerSettings, args) -> str:
    """`user tokens|revoke|remove NAME`: what to print."""
    from controller.store import users
    from controller.store.db import Database, utcnow
    from controller.store.migrate import migrate
    db = Database(settings.db)
    _mkdir(db)
    try:
        await migrate(db)
        now = utcnow()
        async with db.transaction() as conn:
            user = await users.get_user(conn, args.name)
            if args.user_command == "tokens":
                return "\n".join(_token_line(t) for t in await users.list_tokens(conn, user["id"]))
            if args.user_command == "revoke":
                live = await users.revoke_token(conn, user["id"], args.token_id, now)
                await users.record(conn, "cli", "user.revoke_token", f"user:{args.name}", now,
                                   {"token_id": args.token_id, "revoked": int(live)})
                return f"token {args.token_id} of {args.name} revoked" + ("" if live else " (already)")
            _, changed = await users.disable_user(conn, args.name, now)
            if changed:
                await users.record(conn, "cli", "user.remove", f"user:{args.name}", now, {})
            return f"user {args.name} removed" + ("" if changed else " (already)")
    finally:
        await db.close()


def _token_line(t: dict) -> str:
    def when(v) -> str:
        return v.isoformat(timespec="seconds") if v is not None else "-"
    state = f" revoked={when(t['revoked_at'])}" if t["revoked_at"] is not None else ""
    return (f"id={t['id']} created={when(t['created_at'])} expires={when(t['expires_at'])} "
            f"last_used={when(t['last_used_at'])}{state}")


def read_sites(path: Path) -> SitesFile:
    """The sites file, validated (a ConfigError names the file and the key)."""
    from controller.models import SitesFile
    return configfile.validate(SitesFile, configfile.read_yaml(path), path)


async def _sites_import(settings: ControllerSettings, path: Path, sites: SitesFile) -> dict:
    from controller import access
    from controller.store import registry, users
    from controller.store.db import Database, utcnow
    from controller.store.migrate import migrate
    db = Database(settings.db)
    _mkdir(db)
    try:
        await migrate(db)
        now = utcnow()
        async with db.transaction() as conn:
            counts = await registry.import_sites(conn, sites.model_dump()["institutions"], now)
            await access.require_regions_held(conn)     # a region renamed in the file: users' scopes
            await users.record(conn, "cli", "sites.import", f"file:{path}", now, counts)
        return counts
    finally:
        await db.close()


def serve(settings: ControllerSettings, log_level: str) -> int:
    """Run the controller until SIGINT/SIGTERM (systemd READY=1 once it listens)."""
    from aiohttp import web

    from controller.app import create_app
    logging.basicConfig(level=log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from contract import sdnotify
    from controller import metrics
    host, port = parse_listen(settings.listen)
    notifier = sdnotify.Notifier.from_env()     # systemd Type=notify; silent without NOTIFY_SOCKET
    app = create_app(settings)
    metrics.attach_systemd(app, notifier)

    ssl_ctx = tls_context(settings)
    scheme = "https" if ssl_ctx is not None else "http"

    def listening(_msg: str) -> None:          # run_app calls this once the sockets listen
        print(f"vks-controller: listening on {scheme}://{settings.listen}", flush=True)
        notifier.ready(f"listening on {settings.listen}")

    tune_gc()
    # backlog: connections the kernel queues before they are accepted - after a restart thousands of
    # agents reconnect within seconds (issue 15; the kernel caps it at net.core.somaxconn).
    web.run_app(app, host=host, port=port, print=listening, access_log=None, shutdown_timeout=10,
                backlog=ACCEPT_BACKLOG,
                ssl_context=ssl_ctx, keepalive_timeout=settings.idle_timeout_s)
    return 0


def tls_context(settings: ControllerSettings):
    """The server's SSLContext from `tls.cert_file` / `tls.key_file` (TLS 1.2 or later), or None.
    A key that does not match or cannot be read is a configuration error (exit 2)."""
    if not settings.tls.enabled:
        return None
    import ssl
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(str(settings.tls.cert_file), str(settings.tls.key_file))
    except (ssl.SSLError, OSError) as exc:
        raise configfile.ConfigError(settings.tls.cert_file, "tls", f"cannot load the certificate and key "
                                     f"{settings.tls.cert_file}, {settings.tls.key_file}: {exc}") from None
    return ctx


def main(argv: list[str] | None = None) -> int:
    """vks-controller's entry point: the exit status (0 ok, 1 runtime failure, 2 usage or configuration)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = settings_from(args)
        if args.command == "serve":
            return serve(settings, args.log_level)
        if args.command == "migrate":
            rev = asyncio.run(_migrate(settings))
            print(f"database at revision {rev}")
            return 0
        if args.command == "user" and args.user_command == "passwd":
            from controller.errors import ControllerError
            try:
                asyncio.run(_user_passwd(settings, args.name, _read_password(args.password_stdin)))
            except ControllerError as exc:
                raise UsageError(exc.message) from None
            print(f"password set for {args.name}")
            return 0
        if args.command == "user" and args.user_command in ("tokens", "revoke", "remove"):
            from controller.errors import ControllerError
            try:
                out = asyncio.run(_user_manage(settings, args))
            except ControllerError as exc:
                raise UsageError(exc.message) from None
            if out:
                print(out)
            return 0
        if args.command == "user":
            from controller.errors import ControllerError
            try:
                token = asyncio.run(_user_add(settings, args.name, getattr(args, "role", None),
                                              getattr(args, "scope", None), args.user_command == "add",
                                              getattr(args, "expires_days", None),
                                              getattr(args, "institutions", None), getattr(args, "regions", None)))
            except ControllerError as exc:
                raise UsageError(exc.message) from None
            print(token)
            return 0
        if args.command == "terminal":
            from controller.agent_api import run_terminal_command
            return run_terminal_command(settings.db, args)
        if args.command == "contact":
            from controller.contacts import run_contact_command
            return run_contact_command(settings, args)
        if args.command == "sites":
            path = args.file or settings.sites_file
            if path is None:
                raise UsageError("sites import: give FILE (or set sites_file in the settings)")
            sites = read_sites(path)        # read before the event loop starts
            from controller.errors import ControllerError
            try:
                counts = asyncio.run(_sites_import(settings, path, sites))
            except ControllerError as exc:      # e.g. a region users are scoped to left empty
                raise UsageError(exc.message) from None
            print(" ".join(f"{k}={v}" for k, v in counts.items()))
            return 0
    except (configfile.ConfigError, DatabaseUrlError, UsageError) as exc:
        print(f"vks-controller: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except OSError as exc:
        print(f"vks-controller: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # e.g. the database refused the connection
        print(f"vks-controller: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    parser.error("unknown command")
    return 2


if __name__ == "__main__":
    sys.exit(main())
