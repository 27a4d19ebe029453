"""`vks-controller` as a user runs it: real processes, real databases.

The restart test kills `serve` with SIGKILL while its jobs are due and after
they ran, restarts it, and checks that nothing was lost or done twice."""
from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path

import pytest

from tests.procs import free_port

REPO = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "PYTHONPATH": str(REPO)}
ENV.pop("VKS_CONTROLLER_CONFIG", None)


def run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "controller", *args], capture_output=True, text=True,
                          env=ENV, cwd=REPO, timeout=timeout)


class Serve:
    def __init__(self, config: Path, port: int, log: Path):
        self.config, self.port, self.log = config, port, log
        self.proc: subprocess.Popen | None = None

    def start(self) -> Serve:
        with self.log.open("a") as log:          # the child keeps its own copy of the descriptor
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "controller", "serve", "--config", str(self.config),
                 "--listen", f"127.0.0.1:{self.port}", "--log-level", "WARNING"],
                stdout=log, stderr=subprocess.STDOUT, env=ENV, cwd=REPO)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log.read_text()
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=1):
                    return self
            except OSError:
                time.sleep(0.1)
        raise AssertionError("serve did not come up:\n" + self.log.read_text())

    def kill(self, sig=signal.SIGKILL) -> int:
        self.proc.send_signal(sig)
        return self.proc.wait(timeout=20)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


def api(port: int, token: str, method: str, path: str, body=None):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method,
                                 data=json.dumps(body).encode() if body is not None else None,
                                 headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


# --- exit codes and messages ----------------------------------------------------------------

def test_usage_and_config_errors_exit_2_with_a_clear_message(tmp_path):
    r = run("migrate", "--db", "mysql://x/y")
    assert r.returncode == 2 and "unsupported database 'mysql'" in r.stderr and "Traceback" not in r.stderr
    r = run("migrate", "--config", str(tmp_path / "missing.yaml"))
    assert r.returncode == 2 and "missing.yaml" in r.stderr and "not found" in r.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text("scheduler:\n  poll_s: often\n")
    r = run("migrate", "--config", str(bad))
    assert r.returncode == 2 and "scheduler.poll_s" in r.stderr and "bad.yaml" in r.stderr
    r = run("serve", "--listen", "nowhere", "--db", f"sqlite:///{tmp_path}/x.sqlite")
    assert r.returncode == 2 and "listen" in r.stderr
    r = run("user", "add", "x", "--role", "emperor", "--db", f"sqlite:///{tmp_path}/x.sqlite")
    assert r.returncode == 2 and "emperor" in r.stderr
    r = run("frobnicate")
    assert r.returncode == 2


def test_migrate_users_and_sites(tmp_path):
    db = f"sqlite:///{tmp_path}/sub/c.sqlite"
    r = run("migrate", "--db", db)
    assert r.returncode == 0 and "revision" in r.stdout
    r = run("user", "add", "aliya", "--role", "secretary", "--db", db)
    assert r.returncode == 0 and len(r.stdout.strip()) >= 40
    r2 = run("user", "add", "aliya", "--role", "viewer", "--db", db)
    assert r2.returncode == 2 and "exists" in r2.stderr
    r = run("sites", "import", str(REPO / "configs" / "sites.yaml"), "--db", db)
    assert r.returncode == 0 and "institutions_created=8" in r.stdout
    r = run("sites", "import", str(REPO / "configs" / "sites.yaml"), "--db", db)
    assert r.returncode == 0 and "institutions_created=0" in r.stdout
    broken = tmp_path / "sites.yaml"
    broken.write_text("institutions:\n  - {id: c1, kind: court, name: C, region: R}\n")
    r = run("sites", "import", str(broken), "--db", db)
    assert r.returncode == 2 and "sites.yaml" in r.stderr and "level" in r.stderr


def test_an_unreachable_database_is_a_runtime_error(tmp_path):
    r = run("migrate", "--db", f"postgresql://vks@127.0.0.1:{free_port()}/vks")
    assert r.returncode == 1 and "Traceback" not in r.stderr


# --- restart ---------------------------------------------------------------------------------

PAIRS = [("almaty-medeu-district", "Зал 1", "sizo-almaty-1"), ("almaty-medeu-district", "Зал 2", "sizo-almaty-2"),
         ("almaty-city-court", "Зал апелляционной коллегии 3", "inst-karaganda-1"),
         ("kyzylorda-district-2", "Зал 1", "sizo-kyzylorda-1")]


@pytest.mark.timeout(180)
def test_sigkill_and_restart_lose_nothing_and_double_nothing(tmp_path, db_url):
    config = tmp_path / "controller.yaml"
    config.write_text(f"db: {db_url}\nscheduler: {{poll_s: 0.2, lease_s: 2, retry_s: 1}}\n")
    assert run("sites", "import", str(REPO / "configs" / "sites.yaml"), "--config", str(config)).returncode == 0
    token = run("user", "add", "sec", "--role", "secretary", "--config", str(config)).stdout.strip()
    port = free_port()
    serve = Serve(config, port, tmp_path / "serve.log").start()
    try:
        _, rooms = api(port, token, "GET", "/api/v1/rooms")
        room_ids = {(r["institution_id"], r["name"]): r["id"] for r in rooms["items"]}
        now = dt.datetime.now(dt.UTC)
        soon_deadline = now + dt.timedelta(hours=24, seconds=4)      # test deadlines ~4 s ahead
        ids = []
        for i, (inst, room, remote) in enumerate(PAIRS):
            for start in (soon_deadline, now + dt.timedelta(hours=2)):    # and some already late
                status, h = api(port, token, "POST", "/api/v1/hearings", {
                    "case_number": f"1-{i}/{start.hour}", "room_id": room_ids[(inst, room)],
                    "start_utc": start.isoformat(), "participants": [{"terminal_id": remote}]})
                assert status == 201, h
                ids.append(h["id"])
        assert serve.kill() == -signal.SIGKILL                       # mid-schedule: jobs due / claimed
        time.sleep(max(0.0, (soon_deadline - dt.timedelta(hours=24) - dt.datetime.now(dt.UTC))
                       .total_seconds()) + 0.5)
        serve.start()                                                # came due while it was down

        def overdue_all() -> bool:
            return all(api(port, token, "GET", f"/api/v1/hearings/{hid}")[1]["test_request"]["overdue"]
                       for hid in ids)
        deadline = time.monotonic() + 60
        while not overdue_all():
            assert time.monotonic() < deadline, "overdue flags missing after restart"
            time.sleep(0.3)
        assert serve.kill() == -signal.SIGKILL                       # again, while retries are running
        serve.start()
        # No agent: every test request is still owed and flagged overdue. A check killed between
        # "running" and its outcome stays running until its job's lease (2 s) runs out and the
        # retry decides it again: wait for that, however slow the machine.
        def all_overdue_again() -> bool:
            return all(api(port, token, "GET", f"/api/v1/hearings/{hid}")[1]["test_request"]["status"] == "overdue"
                       for hid in ids)
        deadline = time.monotonic() + 60
        while not all_overdue_again():
            assert time.monotonic() < deadline, "checks left running after the second restart"
            time.sleep(0.3)
        _, listed = api(port, token, "GET", "/api/v1/hearings")
        assert sorted(h["id"] for h in listed["items"]) == sorted(ids)
        for hid in ids:
            _, ev = api(port, token, "GET", f"/api/v1/hearings/{hid}/events")
            c = Counter(e["kind"] for e in ev["items"])
            assert (c["hearing_scheduled"], c["test_request_created"], c["preconnect_scheduled"],
                    c["check_overdue"]) == (1, 1, 1, 1), (hid, c)
        assert serve.kill(signal.SIGTERM) == 0                       # a clean stop exits 0
    finally:
        serve.stop()


def test_environment_overrides_the_settings_file(tmp_path):
    target = tmp_path / "from-env.sqlite"
    r = subprocess.run([sys.executable, "-m", "controller", "migrate"], capture_output=True, text=True, cwd=REPO,
                       env={**ENV, "VKS_CONTROLLER__DB": f"sqlite:///{target}"}, timeout=60)
    assert r.returncode == 0, r.stderr
    assert target.exists()


# --- people come and go (issue 11) ----------------------------------------------------------

def test_user_tokens_expire_are_listed_revoked_one_by_one_and_remove_disables_the_user(tmp_path):
    """`user token --expires-days`, `user tokens` (never the token), `user revoke --token-id`, `user remove`,
    against a running `serve`: a revoked token and every token of a removed user get 401 at once."""
    db = f"sqlite:///{tmp_path}/c.sqlite"
    config = tmp_path / "controller.yaml"
    config.write_text(f"db: {db!r}\nauth:\n  scrypt_n: 16384\n")
    first = run("user", "add", "dana", "--role", "viewer", "--config", str(config)).stdout.strip()
    r = run("user", "token", "dana", "--expires-days", "7", "--config", str(config))
    assert r.returncode == 0, r.stderr
    second = r.stdout.strip()
    assert len(second) >= 40 and second != first
    assert run("user", "token", "dana", "--expires-days", "0", "--config", str(config)).returncode == 2
    r = run("user", "tokens", "dana", "--config", str(config))
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert len(lines) == 2 and lines[0].startswith("id=1 ") and "expires=- " in lines[0]
    assert "last_used=-" in lines[0] and "expires=-" not in lines[1] and lines[1].startswith("id=2 ")
    assert first not in r.stdout and second not in r.stdout
    port = free_port()
    srv = Serve(config, port, tmp_path / "serve.log").start()
    try:
        assert api(port, first, "GET", "/api/v1/me")[0] == 200
        assert api(port, second, "GET", "/api/v1/me")[0] == 200
        r = run("user", "tokens", "dana", "--config", str(config))
        assert "last_used=-" not in r.stdout            # both were used
        r = run("user", "revoke", "dana", "--token-id", "1", "--config", str(config))
        assert r.returncode == 0 and "revoked" in r.stdout, r.stderr
        assert api(port, first, "GET", "/api/v1/me")[0] == 401
        assert api(port, second, "GET", "/api/v1/me")[0] == 200
        assert run("user", "revoke", "dana", "--token-id", "99", "--config", str(config)).returncode == 2
        r = run("user", "remove", "dana", "--config", str(config))
        assert r.returncode == 0 and "removed" in r.stdout, r.stderr
        assert api(port, second, "GET", "/api/v1/me")[0] == 401
        assert run("user", "token", "dana", "--config", str(config)).returncode == 2     # disabled
        assert run("user", "add", "dana", "--role", "viewer", "--config", str(config)).returncode == 2
        assert run("user", "remove", "ghost", "--config", str(config)).returncode == 2
    finally:
        srv.stop()
    r = run("user", "tokens", "dana", "--config", str(config))
    assert r.stdout.count("revoked=") == 2
