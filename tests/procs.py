"""Real processes for tests and benchmarks: free ports, `vks-agent` subprocesses, waiting for them
(`wait_for` in plain code, `eventually` on an event loop). The pytest side - fixtures that start a
controller and agents - is tests/harness.py."""
from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PYTHON = sys.executable


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on now (the kernel's pick)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def rss_mb(pid: int) -> float:
    """Resident memory of a process in MiB (NaN once it is gone)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def pct(values: list[float], p: float) -> float:
    """The p-th percentile (linear rank, nearest sample) for benchmark figures; NaN when empty."""
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))]


def agent_argv(*args: str) -> list[str]:
    return [PYTHON, "-m", "agent.cli", *args]


def wait_for(predicate, timeout: float, step: float = 0.2, what: str = "condition"):
    """Poll `predicate()` until it returns something true; return it (AssertionError after `timeout` s)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what} not met within {timeout} s")
        time.sleep(step)


def wait_http(url: str, timeout: float = 15.0, proc: subprocess.Popen | None = None,
              ssl_ctx: ssl.SSLContext | None = None, any_status: bool = False) -> None:
    """Until `url` answers 200 (or any HTTP status with `any_status`); RuntimeError if `proc` exits first."""
    def answers() -> bool:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before {url} answered")
        try:
            with urllib.request.urlopen(url, timeout=1, context=ssl_ctx):
                return True
        except urllib.error.HTTPError:
            return any_status                # e.g. a controller's 503 while its database is away
        except OSError:
            return False
    try:
        wait_for(answers, timeout, step=0.1, what=f"{url} answering")
    except AssertionError as exc:
        raise TimeoutError(str(exc)) from None


def write_config(tmp_path: Path, text: str, name: str = "agent.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def env_with(config: Path | None = None, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO)
    if config is not None:
        env["VKS_AGENT_CONFIG"] = str(config)
    env.update(extra)
    return env


def token_file(directory: Path) -> Path:
    """A responder's token for a test: `directory`/responder.token, a random token made once
    (the responder takes it with --token-file, `vks-agent test` gives it with --token-file)."""
    path = directory / "responder.token"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(24) + "\n", encoding="utf-8")
    return path


@contextlib.contextmanager
def responder(config: Path, host: str = "127.0.0.1", port: int | None = None):
    """A real `vks-agent responder` process taking offers with `token_file(config.parent)`;
    yields its base URL."""
    port = port or free_port(host)
    argv = agent_argv("responder", "--listen", f"{host}:{port}", "--token-file", str(token_file(config.parent)))
    proc = subprocess.Popen(argv,
                            env=env_with(config), cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = f"http://{host}:{port}"
        wait_http(url + "/healthz", proc=proc)
        yield url
    finally:
        stop(proc)


def stop(proc: subprocess.Popen, timeout: float = 30.0) -> int:
    """SIGTERM, then SIGKILL after `timeout` s; the exit code. Its pipes are closed (read what you
    need from them before)."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    for pipe in (proc.stdin, proc.stdout, proc.stderr):
        if pipe is not None:
            pipe.close()
    return proc.returncode


class LoopTicks:
    """`async with LoopTicks() as t:` counts in `t.ticks` how often the event loop came round to a
    10 ms sleep while the body ran: a body that blocks the loop leaves it near zero."""

    def __init__(self) -> None:
        self.ticks = 0
        self._task: asyncio.Task | None = None

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(0.01)
            self.ticks += 1

    async def __aenter__(self) -> LoopTicks:
        self._task = asyncio.create_task(self._tick())
        return self

    async def __aexit__(self, *exc) -> None:
        assert self._task is not None
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)


async def eventually(predicate, timeout: float = 10.0, step: float = 0.02, what: str = "condition"):
    """Wait until `predicate()` (sync or async) returns something true; return it."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"{what} not met within {timeout} s")
        await asyncio.sleep(step)
