"""End to end with real processes: `vks-controller serve` and two `vks-agent run` terminals on
loopback. A secretary schedules a hearing through the REST API; the controller's scheduler
commands the test session (rule 13); the agents run it over real WebRTC, signalled through the
controller; the caller's report comes back through the outbox and lands on the hearing."""
from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from tests.test_link_hub import free_port

REPO = Path(__file__).resolve().parent.parent


def run_cli(*args: str, env: dict) -> str:
    out = subprocess.run([sys.executable, "-m", "controller.cli", *args], env=env, cwd=REPO,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def http(method: str, url: str, token: str, body: dict | None = None) -> tuple[int, dict]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={
        "Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def wait_for(predicate, timeout: float, step: float = 0.2, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    raise AssertionError(f"{what} not met within {timeout} s")


def stop(proc: subprocess.Popen) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def test_hearing_test_session_runs_between_real_agent_processes(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    db = f"sqlite:///{tmp_path}/controller.sqlite"
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    cfg = tmp_path / "controller.yaml"
    cfg.write_text("sites_file: null\nscheduler: {poll_s: 0.2}\n"
                   "checks: {test_profile: monitor, test_duration_s: 3}\n")
    env["VKS_CONTROLLER_CONFIG"] = str(cfg)
    run_cli("migrate", "--db", db, env=env)
    run_cli("sites", "import", str(REPO / "configs" / "sites.yaml"), "--db", db, env=env)
    secretary = run_cli("user", "add", "sec-1", "--role", "secretary", "--db", db, env=env)
    procs: list[subprocess.Popen] = []
    logs = []
    try:
        log = open(tmp_path / "controller.log", "wb")
        logs.append(log)
        procs.append(subprocess.Popen([sys.executable, "-m", "controller.cli", "serve", "--listen",
                                       f"127.0.0.1:{port}", "--db", db], env=env, cwd=REPO,
                                      stdout=log, stderr=subprocess.STDOUT))
        for terminal in ("court-almaty-1", "sizo-almaty-1"):
            token = run_cli("terminal", "token", terminal, "--db", db, env=env)
            (tmp_path / f"{terminal}.token").write_text(token + "\n")
            (tmp_path / f"{terminal}.yaml").write_text(
                f"terminal_id: {terminal}\n"
                f"session: {{host_addresses: [127.0.0.1]}}\n"
                f"controller:\n  url: ws://127.0.0.1:{port}\n"
                f"  token_file: {tmp_path / f'{terminal}.token'}\n"
                f"  outbox_path: {tmp_path / f'{terminal}.outbox'}\n  heartbeat_s: 1\n")
            log = open(tmp_path / f"{terminal}.log", "wb")
            logs.append(log)
            procs.append(subprocess.Popen([sys.executable, "-m", "agent.cli", "-v", "run", "--config",
                                           str(tmp_path / f"{terminal}.yaml")], env=env, cwd=REPO,
                                          stdout=log, stderr=subprocess.STDOUT))

        def room():
            try:
                status, rooms = http("GET", f"{base}/api/v1/rooms?institution_id=almaty-medeu-district", secretary)
            except OSError:
                return None
            return status == 200 and next(r["id"] for r in rooms["items"] if r["name"] == "Зал 1")
        room_id = wait_for(room, 60, what="controller up")

        def both_online():
            status, terms = http("GET", f"{base}/api/v1/terminals", secretary)
            online = {t["id"] for t in terms.get("items", []) if t.get("online")} if status == 200 else set()
            return {"court-almaty-1", "sizo-almaty-1"} <= online
        wait_for(both_online, 60, what="both agents online")

        start = dt.datetime.now(dt.UTC) + dt.timedelta(days=3)
        status, h = http("POST", f"{base}/api/v1/hearings", secretary, {
            "case_number": "2-0001/2026", "room_id": room_id, "start_utc": start.isoformat(),
            "duration_min": 60, "participants": [{"terminal_id": "sizo-almaty-1"}]})
        assert status == 201, h

        def finished():
            _, got = http("GET", f"{base}/api/v1/hearings/{h['id']}", secretary)
            tr = got["test_request"]
            return got if tr["result"] is not None else None
        got = wait_for(finished, 90, step=0.5, what="test result on the hearing")
        result = got["test_request"]["result"]
        assert result["schema"] == "vks.test-report/1"
        assert result["connected"] is True, result.get("error")
        assert got["test_request"]["status"] in ("passed", "failed")
        assert got["verdict"] in ("good", "degraded", "unusable")
    finally:
        codes = [stop(p) for p in reversed(procs)]
        for f in logs:
            f.close()
    assert codes == [0] * len(codes), [(p.args[3:5], p.returncode) for p in procs]
