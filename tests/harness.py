"""The one test harness, a pytest plugin (tests/conftest.py loads it through `pytest_plugins`): free
ports, waits, a real `vks-controller serve` and real `vks-agent run` processes, and the same pair
in this process - as fixtures, the way aiohttp's `aiohttp_client` hands out a started client.

    def test_x(vks_system):                   # serve + two agents, online, stopped at teardown
        s = vks_system(config={"checks": {"test_duration_s": 3}})
        status, h = s.controller.api("POST", "/api/v1/hearings", s.secretary, {...})

    async def test_y(controller_app, agent_daemon):    # in process: the app on a real socket
        c = await controller_app({"db": db_url})
        await agent_daemon(c, "court-almaty-1")

Fixtures: `unused_port` (a function, like aiohttp's `aiohttp_unused_port`), `controller_proc`,
`agent_proc`, `vks_system` (factories of started processes), `controller_app`, `agent_daemon`
(in process). The plain helpers (`wait_for`, `eventually`, `free_port`, `stop`) are in
tests/procs.py, usable from benchmarks too.

A test that needs a part of the system the Python environment does not bring (PostgreSQL, network
namespaces, chromium, promtool, ...) calls `require_or_skip(reason)` or carries the
`needs_system(reason)` mark: it is skipped with the reason on a developer's machine and FAILS under
CI (`CI=true`), so a run that silently left half the suite out cannot pass there.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.procs import REPO, eventually, free_port, stop, wait_for, wait_http

SITES = REPO / "configs" / "sites.yaml"
TERMINALS = ("court-almaty-1", "sizo-almaty-1")
COURTROOM = ("almaty-medeu-district", "Зал 1")


# ---- missing system parts: skipped here, a failure under CI ------------------------------------

def in_ci() -> bool:
    """True when the suite runs under CI (`CI=true`, as every CI service sets it)."""
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def require_or_skip(reason: str | None) -> None:
    """Nothing when `reason` is None; else skip the test with it - or fail it under CI."""
    if reason is None:
        return
    if in_ci():
        pytest.fail(f"{reason} - under CI a missing system part is a failure, not a skip", pytrace=False)
    pytest.skip(reason)


def have(command: str) -> bool:
    """Whether `command` is on PATH for an optional part of a test; under CI its absence fails."""
    if shutil.which(command) is not None:
        return True
    if in_ci():
        pytest.fail(f"{command} not found - under CI a missing system part is a failure", pytrace=False)
    return False


def needs_system(reason: str | None) -> pytest.MarkDecorator:
    """Mark: the test needs a system part; `reason` says what is missing here (None: all there)."""
    return pytest.mark.needs_system(reason)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "needs_system(reason): needs a system part; reason None when present, else "
                   "skipped with the reason - or failed under CI (tests/harness.py)")


def pytest_runtest_setup(item: pytest.Item) -> None:
    for mark in item.iter_markers("needs_system"):
        require_or_skip(mark.args[0] if mark.args else mark.kwargs.get("reason"))


# ---- plain HTTP and the CLI ---------------------------------------------------------------------

def http(method: str, url: str, token: str | None = None, body=None, *, raw: bytes | None = None,
         ssl_ctx: ssl.SSLContext | None = None, headers: dict | None = None, timeout: float = 30):
    """(status, parsed JSON or text; None for an empty body)."""
    h = dict(headers or {})
    data = raw
    if body is not None:
        data = json.dumps(body).encode()
        h["Content-Type"] = "application/json"
    if token:
        h["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(url, data=data, method=method, headers=h)
    try:
        with urllib.request.urlopen(req, timeout=timeout, context=ssl_ctx) as resp:
            status, text = resp.status, resp.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        with exc:
            status, text = exc.code, exc.read().decode("utf-8", "replace")
    try:
        return status, json.loads(text) if text else None
    except ValueError:
        return status, text


def cli(*args: str, env: dict, stdin: str | None = None) -> str:
    """Run `vks-controller ARGS`; its stdout (it must succeed)."""
    out = subprocess.run([sys.executable, "-m", "controller.cli", *args], env=env, cwd=REPO, input=stdin,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, (args, out.stdout, out.stderr)
    return out.stdout.strip()


# ---- real processes -----------------------------------------------------------------------------

class ControllerProc:
    """`vks-controller serve` with a config file written from `config` (YAML as JSON); the log
    (stdout and stderr) goes to `log`. `url` is http(s)://127.0.0.1:PORT."""

    def __init__(self, tmp: Path, db_url: str | None = None, *, config: dict | None = None,
                 port: int | None = None, name: str = "controller", log_level: str = "DEBUG"):
        self.tmp = tmp
        self.log_level = log_level
        self.port = port or free_port()
        self.db_url = db_url or f"sqlite:///{tmp / (name + '.sqlite')}"
        self.config_path = tmp / f"{name}.yaml"
        cfg = {"listen": f"127.0.0.1:{self.port}", "db": self.db_url, "sites_file": None, **(config or {})}
        self.config_path.write_text(json.dumps(cfg), encoding="utf-8")   # JSON is YAML
        self.env = dict(os.environ, PYTHONPATH=str(REPO), VKS_CONTROLLER_CONFIG=str(self.config_path))
        self.log = tmp / f"{name}.log"
        self.tls = "tls" in cfg and cfg["tls"]
        self.ssl_ctx: ssl.SSLContext | None = None
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"{'wss' if self.tls else 'ws'}://127.0.0.1:{self.port}"

    def cli(self, *args: str, stdin: str | None = None) -> str:
        return cli(*args, env=self.env, stdin=stdin)

    def prepare(self, admin: str = "root") -> str:
        """Migrate, import the sample sites, add an admin; the admin's token."""
        self.cli("migrate")
        self.cli("sites", "import", str(SITES))
        return self.cli("user", "add", admin, "--role", "admin")

    def start(self, wait: bool = True, ssl_ctx: ssl.SSLContext | None = None) -> ControllerProc:
        self.ssl_ctx = ssl_ctx or self.ssl_ctx
        with open(self.log, "ab") as log:            # the child keeps its own copy of the descriptor
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "controller.cli", "serve", "--log-level", self.log_level],
                env=self.env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
        if wait:
            self.wait_ready(ssl_ctx=self.ssl_ctx)
        return self

    def wait_ready(self, timeout: float = 30.0, ssl_ctx: ssl.SSLContext | None = None) -> None:
        """Until /healthz answers (503 too: the database may be away); the log if it exits first."""
        assert self.proc is not None
        try:
            wait_http(self.url + "/healthz", timeout, proc=self.proc, ssl_ctx=ssl_ctx, any_status=True)
        except (RuntimeError, TimeoutError) as exc:
            raise type(exc)(f"{exc}:\n{self.log_text()}") from None

    def kill(self) -> int | None:
        """SIGKILL; the exit code (-9)."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(30)
        return self.proc.returncode if self.proc else None

    def stop(self) -> int | None:
        """SIGTERM (SIGKILL after 30 s); the exit code. Safe to call again."""
        if self.proc:
            stop(self.proc)
        return self.proc.returncode if self.proc else None

    def log_text(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    # -- the API, as a user of it -----------------------------------------------------------------

    def api(self, method: str, path: str, token: str | None = None, body=None, **kw):
        """(status, JSON) of one request to this controller."""
        return http(method, self.url + path, token, body, ssl_ctx=self.ssl_ctx, **kw)

    def room_id(self, token: str, institution: str = COURTROOM[0], name: str = COURTROOM[1]) -> int:
        _, rooms = self.api("GET", f"/api/v1/rooms?institution_id={institution}", token)
        return next(r["id"] for r in rooms["items"] if r["name"] == name)

    def online(self, token: str) -> set[str]:
        """The terminals the controller has a connection from (empty while it does not answer)."""
        try:
            status, terms = self.api("GET", "/api/v1/terminals", token)
        except OSError:
            return set()
        return {t["id"] for t in terms["items"] if t.get("online")} if status == 200 else set()


class AgentProc:
    """`vks-agent -v run` for one terminal, connected to `url` with `token`. Its home (working and
    temporary directory: token file and outbox) is TMP/TERMINAL; config TMP/TERMINAL.yaml (JSON),
    log TMP/TERMINAL.log. `config` is merged over the generated settings (metrics, health, ...)."""

    def __init__(self, tmp: Path, terminal: str, url: str, token: str, *, ca: Path | None = None,
                 heartbeat_s: float = 1.0, config: dict | None = None):
        self.terminal = terminal
        self.home = tmp / terminal
        self.home.mkdir(exist_ok=True)
        (self.home / "token").write_text(token + "\n")
        link = {"url": url, "token_file": str(self.home / "token"),
                "outbox_path": str(self.home / "outbox.sqlite"), "heartbeat_s": heartbeat_s}
        if ca is not None:
            link["ca_file"] = str(ca)
        cfg = {"terminal_id": terminal, "role": "courtroom" if terminal.startswith("court") else "institution",
               "session": {"host_addresses": ["127.0.0.1"]}, "controller": link, **(config or {})}
        self.config_path = tmp / f"{terminal}.yaml"
        self.config_path.write_text(json.dumps(cfg), encoding="utf-8")
        self.log = tmp / f"{terminal}.log"
        self.env = dict(os.environ, PYTHONPATH=str(REPO), HOME=str(self.home), TMPDIR=str(self.home))
        self.proc: subprocess.Popen | None = None

    def start(self) -> AgentProc:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "agent.cli", "-v", "run", "--config",
                                          str(self.config_path)], env=self.env, cwd=self.home,
                                         stdout=log, stderr=subprocess.STDOUT)
        return self

    def stop(self) -> int | None:
        """SIGTERM (SIGKILL after 30 s); the exit code. Safe to call again."""
        if self.proc:
            stop(self.proc)
        return self.proc.returncode if self.proc else None

    def log_text(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")


class System:
    """The controller start-up a deployment does: `vks-controller migrate`, `sites import`, `user
    add` (an admin and the secretary sec-1), a terminal token each, `serve`, and `vks-agent run`
    for each terminal - started and waited for until every terminal is online."""

    def __init__(self, tmp: Path, db_url: str | None = None, *, config: dict | None = None,
                 terminals: tuple[str, ...] = TERMINALS, heartbeat_s: float = 1.0,
                 agent_config: Callable[[str], dict] | None = None):
        self.tmp = tmp
        self.controller = ControllerProc(tmp, db_url, config=config, log_level="INFO")
        self.terminals = terminals
        self.heartbeat_s = heartbeat_s
        self.agent_config = agent_config or (lambda terminal: {})
        self.agents: dict[str, AgentProc] = {}
        self.admin = self.secretary = ""

    def start(self, timeout: float = 60) -> System:
        c = self.controller
        self.admin = c.prepare()
        self.secretary = c.cli("user", "add", "sec-1", "--role", "secretary")
        tokens = {t: c.cli("terminal", "token", t) for t in self.terminals}
        c.start()
        for t in self.terminals:
            self.agents[t] = AgentProc(self.tmp, t, c.ws_url, tokens[t], heartbeat_s=self.heartbeat_s,
                                       config=self.agent_config(t)).start()
        try:
            wait_for(lambda: set(self.terminals) <= c.online(self.secretary), timeout, what="every agent online")
        except AssertionError as exc:
            logs = "\n".join(f"--- {name}:\n{proc.log_text()[-3000:]}"
                             for name, proc in [("controller", c), *self.agents.items()])
            raise AssertionError(f"{exc}\n{logs}") from None
        return self

    def stop(self) -> list[int | None]:
        """Agents first, then the controller; their exit codes in that order."""
        return [a.stop() for a in self.agents.values()] + [self.controller.stop()]


@pytest.fixture
def unused_port() -> Callable[..., int]:
    """`unused_port()`: a free TCP port on 127.0.0.1."""
    return free_port


@pytest.fixture
def controller_proc(tmp_path):
    """`controller_proc(db_url=None, config=..., name=...)`: a ControllerProc (not yet prepared or
    started); every one is stopped at teardown."""
    made: list[ControllerProc] = []

    def factory(db_url: str | None = None, **kw) -> ControllerProc:
        made.append(ControllerProc(tmp_path, db_url, **kw))
        return made[-1]
    yield factory
    for c in reversed(made):
        c.stop()


@pytest.fixture
def agent_proc(tmp_path):
    """`agent_proc(terminal, url, token, ca=..., heartbeat_s=..., config=...)`: a started AgentProc;
    every one is stopped at teardown."""
    made: list[AgentProc] = []

    def factory(terminal: str, url: str, token: str, **kw) -> AgentProc:
        made.append(AgentProc(tmp_path, terminal, url, token, **kw).start())
        return made[-1]
    yield factory
    for a in reversed(made):
        a.stop()


@pytest.fixture
def vks_system(tmp_path):
    """`vks_system(db_url=None, config=..., ...)`: a started System (see its docstring), stopped
    at teardown; a test that checks the exit codes calls `stop()` itself."""
    made: list[System] = []

    def factory(db_url: str | None = None, **kw) -> System:
        made.append(System(tmp_path, db_url, **kw))
        return made[-1].start()
    yield factory
    for s in reversed(made):
        s.stop()


# ---- the same in this process -------------------------------------------------------------------

class AppController:
    """`create_app(settings)` behind a real server on 127.0.0.1 in this process, with the sample
    sites and a secretary (`secretary` is its token); `api()` calls it as a user would."""

    def __init__(self, settings: dict):
        from aiohttp.test_utils import TestClient, TestServer

        from controller.app import create_app
        from controller.settings import ControllerSettings
        self.app = create_app(ControllerSettings.model_validate(settings))
        self.client = TestClient(TestServer(self.app, host="127.0.0.1"))
        self.secretary = ""

    async def start(self) -> AppController:
        from contract import configfile
        from controller.models import SitesFile
        from controller.store import registry, users
        await self.client.start_server()
        now = dt.datetime.now(dt.UTC)
        sites = configfile.validate(SitesFile, configfile.read_yaml(SITES), SITES)
        async with self.db.transaction() as conn:
            await registry.import_sites(conn, sites.model_dump()["institutions"], now)
            u = await users.create_user(conn, "sec", "secretary", now)
            self.secretary = await users.issue_token(conn, u["id"], now)
        return self

    async def close(self) -> None:
        await self.client.close()

    @property
    def db(self):
        from controller.keys import DB_KEY
        return self.app[DB_KEY]

    @property
    def ws_url(self) -> str:
        from contract import wire
        return f"ws://127.0.0.1:{self.client.port}{wire.WS_PATH}"

    def online(self) -> set[str]:
        from controller.keys import GATEWAY_KEY
        return self.app[GATEWAY_KEY].online()

    async def agent_token(self, terminal: str) -> str:
        from controller.store import agents as agent_store
        async with self.db.transaction() as conn:
            return (await agent_store.issue_token(conn, terminal))[1]

    async def api(self, method: str, path: str, body: Any = None, token: str | None = None) -> tuple[int, Any]:
        """(status, JSON) of one request, as the secretary unless `token` is given."""
        headers = {"Authorization": f"Bearer {token or self.secretary}"}
        async with self.client.request(method, path, json=body, headers=headers) as resp:
            return resp.status, await resp.json()

    async def room_id(self, institution: str = COURTROOM[0], name: str = COURTROOM[1]) -> int:
        _, rooms = await self.api("GET", f"/api/v1/rooms?institution_id={institution}")
        return next(r["id"] for r in rooms["items"] if r["name"] == name)


@pytest.fixture
async def controller_app():
    """`await controller_app(settings)`: a started AppController; closed at teardown."""
    made: list[AppController] = []

    async def factory(settings: dict) -> AppController:
        made.append(AppController(settings))
        return await made[-1].start()
    yield factory
    for c in reversed(made):
        await c.close()


@pytest.fixture
async def agent_daemon(controller_app, tmp_path):
    """`await agent_daemon(controller, terminal)`: the agent's Daemon running in this process,
    connected to an AppController; stopped (and awaited) at teardown, before the controller."""
    from agent.daemon import Daemon
    from agent.settings import AgentSettings
    running: list[tuple[Daemon, asyncio.Task]] = []

    async def factory(controller: AppController, terminal: str, heartbeat_s: float = 0.5,
                      extra: dict | None = None) -> Daemon:
        """`extra`: more settings, section by section (e.g. {"devices": {...}})."""
        given: dict = {
            "terminal_id": terminal, "role": "courtroom" if terminal.startswith("court") else "institution",
            "controller": {"url": controller.ws_url, "token": await controller.agent_token(terminal),
                           "outbox_path": str(tmp_path / f"{terminal}.outbox"), "heartbeat_s": heartbeat_s},
            "session": {"host_addresses": ["127.0.0.1"]}}
        for key, value in (extra or {}).items():
            given[key] = {**given[key], **value} if isinstance(given.get(key), dict) else value
        settings = AgentSettings.model_validate(given)
        daemon = Daemon(settings, stop_timeout_s=2)
        running.append((daemon, asyncio.create_task(daemon.run())))
        return daemon
    yield factory
    for daemon, _ in running:
        daemon.request_stop()
    await asyncio.gather(*(task for _, task in running), return_exceptions=True)


__all__ = ["AgentProc", "AppController", "ControllerProc", "System", "cli", "eventually", "free_port",
           "have", "http", "in_ci", "needs_system", "require_or_skip", "stop", "wait_for"]
