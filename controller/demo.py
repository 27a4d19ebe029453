"""`make run`: the whole system on one machine, on the embedded defaults.

A controller on SQLite, two agents on loopback (the Medeu district court's room 1 and
SIZO DS-70/1 in Almaty), the sample registry, and a hearing 31 minutes ahead: its
test session (rule 13) runs at once, its pre-connect check (rule 15) a minute later,
and the page whose address is printed shows it all happen. Ctrl-C stops everything.

    .venv/bin/python -m controller.demo [--port 8080] [--minutes-ahead 31] [--dir var/demo]

Runs from an installed package as from the checkout: the sample registry travels as package
data (controller/sample_sites.yaml; configs/sites.yaml links to it), the working directory
defaults to var/demo under the current directory.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from importlib import resources
from pathlib import Path

# Where the `controller` package is imported from (the checkout, or site-packages): the agents and
# the controller started below import the same copy.
IMPORT_ROOT = Path(__file__).resolve().parent.parent
SITES = Path(str(resources.files("controller") / "sample_sites.yaml"))
PY = sys.executable
COURT, SIZO = "court-almaty-1", "sizo-almaty-1"
COURT_INST = "almaty-medeu-district"
# Who signs in to the page: the court's secretary (her court only: schedules and runs its hearings)
# and the administrator (everything, everywhere; the API token printed is also theirs).
SECRETARY, ADMIN = "demo-secretary", "demo-admin"


def run(argv: list[str], **kw) -> str:
    """Run a command to its end; its output, or exit the demo with its error."""
    r = subprocess.run(argv, capture_output=True, text=True, **kw)
    if r.returncode != 0:
        sys.exit(f"demo: {' '.join(argv[2:5])} failed: {r.stderr.strip() or r.stdout.strip()}")
    return r.stdout.strip()


def api(base: str, token: str, method: str, path: str, body: dict | None = None) -> dict:
    """One call of the controller's API as the demo's administrator."""
    req = urllib.request.Request(base + path, method=method,
                                 data=None if body is None else json.dumps(body).encode(),
                                 headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as exc:
        sys.exit(f"demo: {method} {path} -> HTTP {exc.code}: {exc.read().decode(errors='replace')}")


def wait_up(url: str, proc: subprocess.Popen, seconds: float = 30) -> None:
    """Wait until `url` answers (exit the demo if the process ends or time runs out)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"demo: the controller exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            time.sleep(0.2)
    sys.exit(f"demo: {url} did not answer in {seconds:g} s")


def agent_config(directory: Path, terminal: str, role: str, port: int, token: str, metrics_port: int) -> Path:
    """Write the settings of one demo agent (loopback only); their path."""
    path = directory / f"agent-{terminal}.yaml"
    path.write_text(
        f"terminal_id: {terminal}\n"
        f"role: {role}\n"
        "session:\n  host_addresses: ['127.0.0.1']\n"
        "controller:\n"
        f"  url: ws://127.0.0.1:{port}/api/v1/agent/ws\n"
        f"  token: {token}\n"
        f"  outbox_path: {directory / f'outbox-{terminal}.sqlite'}\n"
        f"metrics:\n  listen: 127.0.0.1:{metrics_port}\n", encoding="utf-8")
    return path


def main(argv: list[str] | None = None) -> int:
    """Run the demo until Ctrl-C (or --for-seconds, --until-checked)."""
    ap = argparse.ArgumentParser(prog="python -m controller.demo", description=__doc__.split("\n\n")[0])
    ap.add_argument("--port", type=int, default=8080)
    ap.add_argument("--minutes-ahead", type=float, default=31.0)
    ap.add_argument("--dir", type=Path, default=Path("var") / "demo")
    ap.add_argument("--for-seconds", type=float, default=None, help="stop by itself after this long")
    ap.add_argument("--until-checked", action="store_true",
                    help="stop once the test session and the pre-connect check have results")
    args = ap.parse_args(argv)

    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)   # as the server will
        try:
            probe.bind(("127.0.0.1", args.port))
        except OSError:
            sys.exit(f"demo: port {args.port} is in use; choose another with --port")
    work: Path = args.dir.resolve()
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    db = f"sqlite:///{work / 'controller.sqlite'}"
    ctl = [PY, "-m", "controller.cli"]
    run(ctl + ["migrate", "--db", db])
    run(ctl + ["sites", "import", str(SITES), "--db", db])
    admin = run(ctl + ["user", "add", ADMIN, "--role", "admin", "--db", db]).splitlines()[-1]
    run(ctl + ["user", "add", SECRETARY, "--role", "secretary", "--institution", COURT_INST, "--db", db])
    passwords = {name: secrets.token_urlsafe(9) for name in (SECRETARY, ADMIN)}
    for name, password in passwords.items():
        run(ctl + ["user", "passwd", name, "--password-stdin", "--db", db], input=password + "\n")
    tokens = {t: run(ctl + ["terminal", "token", t, "--db", db]).splitlines()[-1] for t in (COURT, SIZO)}

    env = dict(os.environ, PYTHONPATH=str(IMPORT_ROOT))
    log = open(work / "demo.log", "w")
    procs = [subprocess.Popen(ctl + ["serve", "--listen", f"127.0.0.1:{args.port}", "--db", db],
                              env=env, stdout=log, stderr=subprocess.STDOUT)]
    base = f"http://127.0.0.1:{args.port}"
    try:
        wait_up(base + "/healthz", procs[0])
        for n, (terminal, role) in enumerate(((COURT, "courtroom"), (SIZO, "institution"))):
            cfg = agent_config(work, terminal, role, args.port, tokens[terminal], 9101 + n)
            procs.append(subprocess.Popen([PY, "-m", "agent.cli", "--config", str(cfg), "run"],
                                          env=env, stdout=log, stderr=subprocess.STDOUT))

        # The hearing is scheduled once both terminals are connected, so its test runs at once.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            terminals = api(base, admin, "GET", "/api/v1/terminals")
            rows = terminals["items"] if isinstance(terminals, dict) else terminals
            if {COURT, SIZO} <= {t["id"] for t in rows if t.get("online")}:
                break
            time.sleep(0.5)
        else:
            sys.exit(f"demo: the agents did not connect; see {work / 'demo.log'}")
        rooms = api(base, admin, "GET", f"/api/v1/rooms?institution_id={COURT_INST}")["items"]
        room = next(r for r in rooms if COURT in [t.get("id") for t in r.get("terminals", [])] or r["name"] == "Зал 1")
        start = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=args.minutes_ahead)
        hearing = api(base, admin, "POST", "/api/v1/hearings", {
            "case_number": "DEMO-2-1234/2026", "room_id": room["id"], "court_terminal_id": COURT,
            "start_utc": start.isoformat(timespec="seconds"), "duration_min": 60,
            "participants": [{"terminal_id": SIZO}]})
        print(f"\nVKS connectivity demo is running ({work}):")
        print(f"  web page:     {base}/   (sign in with a user name and password below)")
        print(f"    secretary:  user {SECRETARY}  password {passwords[SECRETARY]}   (the Medeu district court: "
              "schedules and runs its hearings)")
        print(f"    admin:      user {ADMIN}  password {passwords[ADMIN]}   (everything, every court)")
        print(f"  API:          {base}/api/v1/openapi.json")
        print(f"  admin token:  {admin}   (the admin's, for the API: Authorization: Bearer ...; the page's "
              "\"or with an API token\" takes it too)")
        print(f"  hearing {hearing['id']} ({hearing['case_number']}) starts at {start:%H:%M} UTC: "
              f"test session now, pre-connect check at {start - dt.timedelta(minutes=30):%H:%M} UTC")
        print("  Ctrl-C stops the controller and both agents.\n")
        shown: dict[str, str] = {}
        stop_at = None if args.for_seconds is None else time.monotonic() + args.for_seconds
        while stop_at is None or time.monotonic() < stop_at:
            for p in procs:
                if p.poll() is not None:
                    print(f"demo: a process exited with {p.returncode}; see {work / 'demo.log'}", file=sys.stderr)
                    return 1
            h = api(base, admin, "GET", f"/api/v1/hearings/{hearing['id']}")
            for key in ("test_request", "preconnect"):
                c = h.get(key) or {}
                line = f"{c.get('status')} {((c.get('result') or {}).get('verdict') or '')}".strip()
                if shown.get(key) != line:
                    shown[key] = line
                    print(f"  {dt.datetime.now():%H:%M:%S}  {key}: {line}  (hearing verdict: {h.get('verdict')})",
                          flush=True)
            finished = ("passed", "failed", "cancelled", "blocked")
            if args.until_checked and all((h.get(k) or {}).get("status") in finished
                                          for k in ("test_request", "preconnect")):
                break
            time.sleep(2)
    except KeyboardInterrupt:
        pass
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
        log.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
