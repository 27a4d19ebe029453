"""sd_notify (contract/sdnotify.py) over a real AF_UNIX datagram socket standing in for systemd's,
with the real `vks-agent run` and `vks-controller serve` processes: READY=1 once they listen,
WATCHDOG=1 only while their loops make progress, STOPPING=1 on SIGTERM, exit 0; nothing at all
without NOTIFY_SOCKET."""
from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

from contract import sdnotify
from tests import procs

REPO = Path(__file__).resolve().parent.parent


class FakeSystemd:
    """The receiving end of NOTIFY_SOCKET: a real datagram socket (path or abstract)."""

    def __init__(self, tmp_path: Path | None = None):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        if tmp_path is None:
            name = f"vks-test-{uuid.uuid4().hex}"
            self.sock.bind("\0" + name)
            self.env = "@" + name
        else:
            path = tmp_path / "notify.sock"
            self.sock.bind(str(path))
            self.env = str(path)

    def recv(self, timeout: float = 30.0) -> dict[str, str]:
        self.sock.settimeout(timeout)
        data = self.sock.recv(4096).decode()
        return dict(line.split("=", 1) for line in data.splitlines())

    def wait_for(self, key: str, timeout: float = 60.0) -> tuple[dict[str, str], list[dict[str, str]]]:
        deadline = time.monotonic() + timeout
        seen = []
        while True:
            msg = self.recv(max(0.1, deadline - time.monotonic()))
            seen.append(msg)
            if key in msg:
                return msg, seen

    def drain(self, seconds: float) -> list[dict[str, str]]:
        out = []
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            try:
                out.append(self.recv(left))
            except TimeoutError:
                break
        return out

    def close(self) -> None:
        self.sock.close()


# ---- the protocol -----------------------------------------------------------------------------

def test_silent_without_notify_socket():
    n = sdnotify.Notifier.from_env({})
    assert not n.enabled
    assert n.ready() is False and n.watchdog() is False and n.stopping() is False
    assert sdnotify.Watchdog(n, 1.0).enabled is False


@pytest.mark.parametrize("abstract", [True, False])
def test_datagrams_reach_a_path_or_abstract_socket(abstract, tmp_path):
    systemd = FakeSystemd(None if abstract else tmp_path)
    try:
        n = sdnotify.Notifier.from_env({"NOTIFY_SOCKET": systemd.env})
        assert n.ready("listening on 127.0.0.1:9101")
        assert systemd.recv(5) == {"READY": "1", "STATUS": "listening on 127.0.0.1:9101"}
        assert n.watchdog()
        assert systemd.recv(5) == {"WATCHDOG": "1"}
        assert n.stopping()
        assert systemd.recv(5) == {"STOPPING": "1"}
        n.close()
    finally:
        systemd.close()


def test_a_vanished_socket_is_not_an_error(tmp_path):
    n = sdnotify.Notifier.from_env({"NOTIFY_SOCKET": str(tmp_path / "gone.sock")})
    try:
        assert n.ready() is False          # logged once, never raised
    finally:
        n.close()


def test_watchdog_period_follows_systemd_environment():
    assert sdnotify.watchdog_period_s({"WATCHDOG_USEC": "30000000"}) == 30.0
    assert sdnotify.watchdog_period_s({}) is None
    assert sdnotify.watchdog_period_s({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid() + 1)}) is None
    assert sdnotify.watchdog_period_s({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}) == 30.0


def test_watchdog_pings_only_while_every_loop_makes_progress():
    systemd = FakeSystemd()
    now = [100.0]
    notifier = sdnotify.Notifier.from_env({"NOTIFY_SOCKET": systemd.env})
    try:
        wd = sdnotify.Watchdog(notifier, 10.0, clock=lambda: now[0])
        fast = wd.heartbeat("reports", 5.0)
        slow = wd.heartbeat("health", 60.0)
        assert wd.check_and_ping()
        assert systemd.recv(5) == {"WATCHDOG": "1"}
        now[0] += 6                       # the reports loop is stuck
        assert wd.stale() == ["reports"]
        assert not wd.check_and_ping()
        fast.beat()                       # it moves again
        assert wd.check_and_ping()
        now[0] += 61
        fast.beat()
        assert wd.stale() == ["health"] and not wd.check_and_ping()
        slow.beat()
        assert wd.check_and_ping()
        assert systemd.drain(0.3) == [{"WATCHDOG": "1"}, {"WATCHDOG": "1"}]
    finally:
        notifier.close()
        systemd.close()


async def test_watchdog_loop_stops_pinging_when_a_loop_stops_beating():
    systemd = FakeSystemd()
    notifier = sdnotify.Notifier.from_env({"NOTIFY_SOCKET": systemd.env})
    try:
        wd = sdnotify.Watchdog(notifier, 0.2)
        hb = wd.heartbeat("main", 0.5)
        beating = True

        async def main_loop():
            while True:
                if beating:
                    hb.beat()
                await asyncio.sleep(0.05)

        tasks = [asyncio.create_task(main_loop()), asyncio.create_task(wd.run())]
        await asyncio.sleep(1.0)
        assert len(await asyncio.to_thread(systemd.drain, 0.05)) >= 2       # alive: pings
        beating = False
        await asyncio.sleep(1.0)                                           # > max silence
        await asyncio.to_thread(systemd.drain, 0.05)                       # pings sent before it went stale
        await asyncio.sleep(1.0)
        assert await asyncio.to_thread(systemd.drain, 0.05) == []          # stuck: silence
        beating = True
        await asyncio.sleep(0.6)
        assert await asyncio.to_thread(systemd.drain, 0.05)                # moving again: pings
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        notifier.close()
        systemd.close()


# ---- the real services --------------------------------------------------------------------------

def _can_connect(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_agent_run_notifies_ready_watchdog_and_stopping(tmp_path):
    systemd = FakeSystemd()
    mport = procs.free_port()
    config = procs.write_config(tmp_path, f"""terminal_id: court-test-1
controller:
  url: ws://127.0.0.1:{procs.free_port()}/api/v1/agent/ws
  token: not-needed-here
  outbox_path: {tmp_path / 'outbox.sqlite'}
metrics:
  listen: 127.0.0.1:{mport}
health:
  interval_s: 1
""")
    proc = subprocess.Popen(procs.agent_argv("run"), cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env=procs.env_with(config, NOTIFY_SOCKET=systemd.env, WATCHDOG_USEC="2000000"))
    try:
        ready, _ = systemd.wait_for("READY")
        assert _can_connect(mport), "READY=1 came before the metrics endpoint listened"
        assert f"127.0.0.1:{mport}" in ready.get("STATUS", "")
        with urllib.request.urlopen(f"http://127.0.0.1:{mport}/metrics", timeout=5) as resp:
            assert b"vks_agent_build_info" in resp.read()
        later = systemd.drain(3.0)
        assert sum(1 for m in later if m == {"WATCHDOG": "1"}) >= 2
        assert all(set(m) <= {"WATCHDOG", "STATUS"} for m in later), later   # e.g. no ERRNO= from children
        proc.send_signal(signal.SIGTERM)
        systemd.wait_for("STOPPING", 30)
        assert proc.wait(30) == 0
    finally:
        procs.stop(proc)
        systemd.close()


def test_controller_serve_notifies_ready_once_listening_and_stopping(tmp_path):
    systemd = FakeSystemd(tmp_path)
    port = procs.free_port()
    env = dict(os.environ, PYTHONPATH=str(REPO), NOTIFY_SOCKET=systemd.env, WATCHDOG_USEC="2000000",
               VKS_CONTROLLER_CONFIG=str(procs.write_config(tmp_path, "sites_file: null\n", "controller.yaml")))
    proc = subprocess.Popen([sys.executable, "-m", "controller.cli", "serve", "--listen", f"127.0.0.1:{port}",
                             "--db", f"sqlite:///{tmp_path / 'c.sqlite'}"], env=env, cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        ready, _ = systemd.wait_for("READY")
        assert _can_connect(port), "READY=1 came before the API listened"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as resp:
            assert resp.status == 200
        assert sum(1 for m in systemd.drain(3.0) if m == {"WATCHDOG": "1"}) >= 2
        proc.send_signal(signal.SIGTERM)
        systemd.wait_for("STOPPING", 30)
        assert proc.wait(30) == 0
    finally:
        procs.stop(proc)
        systemd.close()
