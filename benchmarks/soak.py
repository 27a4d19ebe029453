#!/usr/bin/env python3
"""Long runs for issue 7 (the short versions are tests/test_faults_*.py). Two scenarios, each
against a real `vks-controller serve` (SQLite by default, --db postgresql://... for PostgreSQL):

outbox - the controller away for a long time while agents keep testing.
    --agents agents (in this process: the real agent.link.Link and agent.outbox.Outbox, each
    with its own SQLite outbox) produce one interval report a second each (plus a session report
    every 60) for --seconds. The controller is SIGKILLed at --down-at seconds and restarted
    --down seconds later. Printed: reports produced, stored, duplicates, the largest outbox
    backlog, time from restart to every outbox empty, controller RSS. Nothing may be lost or
    doubled.

        .venv/bin/python benchmarks/soak.py outbox [--agents 50] [--seconds 600] [--down-at 60] [--down 300]

day - a hearing day's schedule with simulated agents.
    --hearings hearings are scheduled through the API, each in its own courtroom with its own
    SIZO terminal, with starts spread so that their pre-connect checks (rule 15: 30 to 20
    minutes before) fall due over the run, and their test requests (rule 13) at once. 2 x
    hearings simulated agents (no media: they answer the controller's session commands with one
    interval report a second and, as the caller, a final vks.test-report/1) plus --idle agents
    sending one interval a second. Printed: checks expected / finished / overdue, reports/s held,
    report ack latency (sent to stored) p50 / p99 / max, reports stored vs sent, controller RSS.

        .venv/bin/python benchmarks/soak.py day [--hearings 300] [--idle 1000] [--seconds 900]
"""
from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.procs import free_port, pct, rss_mb  # noqa: E402


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class Serve:
    def __init__(self, tmp: Path, db_url: str, config: dict):
        self.port = free_port()
        self.cfg = tmp / "controller.yaml"
        self.cfg.write_text(json.dumps({"listen": f"127.0.0.1:{self.port}", "db": db_url, "sites_file": None,
                                        **config}))
        self.env = dict(os.environ, PYTHONPATH=str(REPO), VKS_CONTROLLER_CONFIG=str(self.cfg))
        self.log = open(tmp / "controller.log", "ab")
        self.proc: subprocess.Popen | None = None
        self.peak_rss = 0.0

    def cli(self, *args: str) -> str:
        out = subprocess.run([sys.executable, "-m", "controller.cli", *args], env=self.env, cwd=REPO,
                             capture_output=True, text=True, timeout=600)
        if out.returncode != 0:
            raise SystemExit(f"vks-controller {' '.join(args)}: {out.stderr}")
        return out.stdout.strip()

    def start(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "controller.cli", "serve", "--log-level", "WARNING"],
                                     env=self.env, cwd=REPO, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=1)
                return
            except OSError:
                time.sleep(0.2)
        raise SystemExit("the controller did not start")

    def sample(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.peak_rss = max(self.peak_rss, rss_mb(self.proc.pid))

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.log.close()


async def issue_tokens(db_url: str, terminals: list[str]) -> dict[str, str]:
    from controller.store import agents as store
    from controller.store.db import Database
    db = Database(db_url)
    try:
        async with db.transaction() as conn:
            return {t: (await store.issue_token(conn, t))[1] for t in terminals}
    finally:
        await db.close()


async def stored_reports(db_url: str) -> tuple[int, int]:
    """(rows, distinct (terminal, report id))."""
    from sqlalchemy import func, select

    from controller.store import agents as store
    from controller.store.db import Database
    db = Database(db_url)
    try:
        t = store.agent_reports
        async with db.read() as conn:
            rows = (await conn.execute(select(func.count()).select_from(t))).scalar_one()
            distinct = (await conn.execute(select(func.count()).select_from(
                select(t.c.terminal_id, t.c.report_id).distinct().subquery()))).scalar_one()
        return rows, distinct
    finally:
        await db.close()


# ---- outbox soak --------------------------------------------------------------------------

async def outbox_soak(args, tmp: Path, db_url: str) -> int:
    from agent.link import Link
    from agent.outbox import Outbox
    from agent.settings import AgentSettings

    serve = Serve(tmp, db_url, {})
    serve.cli("migrate")
    terminals = [f"soak-{i:04d}" for i in range(args.agents)]
    tokens = await issue_tokens(db_url, terminals)
    serve.start()

    class Quiet:
        async def on_command(self, command): ...
        async def on_signal(self, message): ...
        def running_sessions(self): return []

    async def health():
        return {"status": "ok"}

    agents = []
    for t in terminals:
        s = AgentSettings.model_validate({"terminal_id": t, "controller": {
            "url": f"ws://127.0.0.1:{serve.port}", "token": tokens[t], "outbox_path": str(tmp / f"{t}.outbox"),
            "heartbeat_s": 5}})
        box = await Outbox(s.controller.outbox_path).open()
        link = Link(s, box, Quiet(), health=health, backoff_initial=1.0, backoff_max=30.0)
        agents.append((t, box, link, asyncio.create_task(link.run())))
    produced = 0
    peak_backlog = 0
    t0 = time.monotonic()
    killed = restarted = None
    tick = 0
    while time.monotonic() - t0 < args.seconds:
        tick += 1
        for t, box, _, _ in agents:
            kind = "session" if tick % 60 == 0 else "interval"
            # No session id: the controller takes a report naming a session only for one it
            # commanded, from its caller or callee (issue 11); none is commanded here.
            await box.put(f"{t}-{tick}", kind, {"t": tick, "role": "caller"})
            produced += 1
        peak_backlog = max(peak_backlog, sum(len(b) for _, b, _, _ in agents))
        elapsed = time.monotonic() - t0
        if killed is None and elapsed >= args.down_at:
            serve.sample()
            serve.kill()
            killed = time.monotonic()
            log(f"controller SIGKILLed; backlog {peak_backlog}")
        elif killed is not None and restarted is None and time.monotonic() - killed >= args.down:
            serve.start()
            restarted = time.monotonic()
            log("controller restarted")
        serve.sample()
        await asyncio.sleep(max(0.0, t0 + tick - time.monotonic()))
    if restarted is None:
        serve.start()
        restarted = time.monotonic()
    t_end = time.monotonic()
    while sum(len(b) for _, b, _, _ in agents) > 0 and time.monotonic() - t_end < 600:
        serve.sample()
        await asyncio.sleep(0.5)
    drained = time.monotonic() - t_end
    left = sum(len(b) for _, b, _, _ in agents)
    for _, box, link, task in agents:
        await link.close()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await box.close()
    rss = serve.peak_rss
    serve.stop()
    rows, distinct = await stored_reports(db_url)
    print(f"outbox soak: {args.agents} agents, {args.seconds:.0f} s, controller down {args.down:.0f} s")
    print(f"  reports produced        {produced}")
    print(f"  reports stored          {rows} ({distinct} distinct; duplicates {rows - distinct})")
    print(f"  left in outboxes        {left}")
    print(f"  largest backlog         {peak_backlog} reports")
    print(f"  end -> all drained      {drained:.1f} s")
    print(f"  controller peak RSS     {rss:.0f} MB")
    ok = rows == produced == distinct and left == 0
    print("  RESULT                  " + ("nothing lost, nothing doubled" if ok else "MISMATCH"))
    return 0 if ok else 1


# ---- hearing day --------------------------------------------------------------------------

def sites(hearings: int) -> dict:
    courts = [{"id": f"day-court-{i:04d}", "kind": "court", "level": "district", "name": f"Court {i}",
               "region": f"R{i % 17}", "timezone": "Asia/Almaty",
               "rooms": [{"name": "Room 1", "terminals": [{"id": f"day-ct-{i:04d}", "name": f"Court {i} room 1"}]}]}
              for i in range(hearings)]
    sizos = [{"id": f"day-sizo-{i:04d}", "kind": "sizo", "name": f"SIZO {i}", "region": f"R{i % 17}",
              "timezone": "Asia/Almaty",
              "rooms": [{"name": "VKS", "terminals": [{"id": f"day-st-{i:04d}", "name": f"SIZO {i} VKS"}]}]}
             for i in range(hearings)]
    return {"institutions": courts + sizos}


def fake_report(duration_s: float) -> dict:
    side = {"packets": int(50 * duration_s), "lost": 0, "loss_ratio": 0.0, "jitter_ms": 2.0, "bitrate_kbps": 600.0}
    return {"schema": "vks.test-report/1", "started_at": dt.datetime.now(dt.UTC).isoformat(),
            "duration_s": duration_s, "connected": True, "connect_ms": 150.0, "error": None,
            "rtt_ms": {"mean": 20.0, "p50": 19.0, "p95": 25.0, "max": 30.0}, "outbound": side, "inbound": side,
            "streams": [], "mos": 4.3, "verdict": "good", "reasons": [], "intervals": []}


async def sim_agents(url: str, creds: dict[str, str], idle: set[str], seconds: float, stats: dict) -> None:
    import aiohttp

    from contract import wire
    stop_at = time.monotonic() + seconds

    async def one(tid: str, token: str, delay: float, http):
        await asyncio.sleep(delay)
        sent: dict[str, float] = {}
        seq = 0
        while time.monotonic() < stop_at:
            try:
                ws = await http.ws_connect(url, headers={"Authorization": f"Bearer {token}"}, heartbeat=30)
            except Exception:
                await asyncio.sleep(2)
                continue
            await ws.send_str(wire.encode(wire.Hello(terminal_id=tid, agent_version="soak")))
            stats["connected"] += 1

            async def send_report(kind: str, body: dict, session_id: str | None = None, ws=ws):
                nonlocal seq
                seq += 1
                rid = f"{tid}-{seq}"
                sent[rid] = time.monotonic()
                stats["sent"] += 1
                await ws.send_str(wire.encode(wire.Report(report_id=rid, kind=kind, session_id=session_id, body=body)))

            async def session(cmd):
                for i in range(int(cmd.duration_s)):
                    await asyncio.sleep(1)
                    await send_report("interval", {"role": cmd.role, "interval": {"t": i}}, cmd.session_id)
                if cmd.role == "caller":
                    stats["sessions"] += 1
                    await send_report("session", {"role": "caller", "report": fake_report(cmd.duration_s)},
                                      cmd.session_id)

            async def idle_loop():
                while True:
                    await asyncio.sleep(1)
                    await send_report("interval", {"role": "idle"})

            tasks = [asyncio.create_task(idle_loop())] if tid in idle else []
            try:
                while time.monotonic() < stop_at:
                    try:
                        raw = await ws.receive(timeout=1.0)
                    except TimeoutError:
                        continue
                    if raw.type != aiohttp.WSMsgType.TEXT:
                        break
                    m = wire.parse_controller_message(raw.data)
                    if isinstance(m, wire.Ack):
                        t = sent.pop(m.report_id, None)
                        if t is not None:
                            stats["latency"].append(time.monotonic() - t)
                            stats["acked"] += 1
                    elif isinstance(m, wire.Command) and isinstance(m.command, wire.StartSession):
                        tasks.append(asyncio.create_task(session(m.command)))
            except Exception as exc:
                stats["errors"] = stats.get("errors", 0) + 1
                stats["last_error"] = repr(exc)
            finally:
                for t in tasks:
                    t.cancel()
                await ws.close()

    # No connection limit: each simulated agent holds its own socket (aiohttp's default is 100).
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        await asyncio.gather(*(one(t, tok, i * 0.005, http) for i, (t, tok) in enumerate(creds.items())))


def http_json(method: str, url: str, token: str, body=None):
    req = urllib.request.Request(url, data=json.dumps(body).encode() if body is not None else None, method=method,
                                 headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


async def day(args, tmp: Path, db_url: str) -> int:
    serve = Serve(tmp, db_url, {"scheduler": {"poll_s": 0.5, "batch": 100},
                                "checks": {"test_duration_s": 5, "preconnect_duration_s": 5},
                                "live": {"enabled": False}})
    serve.cli("migrate")
    (tmp / "sites.json").write_text(json.dumps(sites(args.hearings)))
    serve.cli("sites", "import", str(tmp / "sites.json"))
    admin = serve.cli("user", "add", "soak-admin", "--role", "admin")
    terminals = [f"day-ct-{i:04d}" for i in range(args.hearings)] + [f"day-st-{i:04d}" for i in range(args.hearings)]
    idle = [f"idle-{i:05d}" for i in range(args.idle)]
    creds = await issue_tokens(db_url, terminals + idle)
    serve.start()
    base = f"http://127.0.0.1:{serve.port}"
    stats = {"connected": 0, "sent": 0, "acked": 0, "sessions": 0, "latency": []}
    agents = asyncio.create_task(sim_agents(f"ws://127.0.0.1:{serve.port}/api/v1/agent/ws", creds, set(idle),
                                            args.seconds, stats))
    await asyncio.sleep(min(30.0, 5 + len(creds) * 0.006))
    _, rooms = await asyncio.to_thread(http_json, "GET", f"{base}/api/v1/rooms?limit=1000", admin)
    room_of = {r["institution_id"]: r["id"] for r in rooms.get("items", [])}
    now = dt.datetime.now(dt.UTC)
    spread = max(1.0, args.seconds - 120)
    ids = []
    t_sched = time.monotonic()
    for i in range(args.hearings):
        start = now + dt.timedelta(minutes=30, seconds=30 + spread * i / args.hearings)
        status, h = await asyncio.to_thread(http_json, "POST", f"{base}/api/v1/hearings", admin, {
            "case_number": f"2-{i:05d}/2026", "room_id": room_of[f"day-court-{i:04d}"],
            "start_utc": start.isoformat(), "duration_min": 60,
            "participants": [{"terminal_id": f"day-st-{i:04d}"}]})
        if status == 201:
            ids.append(h["id"])
        else:
            log(f"hearing {i}: {status} {h}")
    log(f"{len(ids)} hearings scheduled in {time.monotonic() - t_sched:.1f} s")
    t0 = time.monotonic()
    sent0 = stats["sent"]
    while not agents.done():
        serve.sample()
        await asyncio.sleep(5)
        log(f"connected {stats['connected']} sent {stats['sent']} acked {stats['acked']} sessions {stats['sessions']} "
            f"errors {stats.get('errors', 0)} {stats.get('last_error', '')} rss {rss_mb(serve.proc.pid):.0f} MB")
    held = (stats["sent"] - sent0) / max(1e-9, time.monotonic() - t0)
    finished = overdue = expected = 0
    for hid in ids:
        _, h = await asyncio.to_thread(http_json, "GET", f"{base}/api/v1/hearings/{hid}", admin)
        for c in h["test_request"]["items"] + h["preconnect"]["items"]:
            expected += 1
            finished += c["status"] in ("passed", "failed")
            overdue += c["overdue_at"] is not None
    rss = serve.peak_rss
    serve.stop()
    rows, distinct = await stored_reports(db_url)
    lat = [x * 1000 for x in stats["latency"]]
    print(f"hearing day: {len(ids)} hearings, {len(creds)} simulated agents, {args.seconds:.0f} s")
    print(f"  checks                 {finished}/{expected} finished; {overdue} flagged overdue (a test request "
          f"of a hearing scheduled less than 24 h ahead is late by rule 13 and flagged even when it then passes)")
    print(f"  sessions reported      {stats['sessions']}")
    print(f"  reports/s held         {held:.0f}")
    print(f"  ack latency ms         p50 {pct(lat, 50):.1f}  p99 {pct(lat, 99):.1f}  "
          f"max {max(lat, default=float('nan')):.1f}")
    print(f"  reports sent / acked / stored   {stats['sent']} / {stats['acked']} / {rows} ({rows - distinct} doubled)")
    print(f"  controller peak RSS    {rss:.0f} MB")
    return 0 if rows == distinct and stats["acked"] <= rows else 1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="scenario", required=True)
    o = sub.add_parser("outbox")
    o.add_argument("--agents", type=int, default=50)
    o.add_argument("--seconds", type=float, default=600)
    o.add_argument("--down-at", type=float, default=60)
    o.add_argument("--down", type=float, default=300)
    d = sub.add_parser("day")
    d.add_argument("--hearings", type=int, default=300)
    d.add_argument("--idle", type=int, default=1000)
    d.add_argument("--seconds", type=float, default=900)
    for p in (o, d):
        p.add_argument("--db", help="postgresql://... (default: a fresh SQLite file)")
    args = ap.parse_args()
    import logging
    logging.basicConfig(level=logging.ERROR)
    with tempfile.TemporaryDirectory(prefix="vks-soak-") as tmp:
        db_url = args.db or f"sqlite:///{tmp}/controller.sqlite"
        if args.scenario == "outbox":
            return asyncio.run(outbox_soak(args, Path(tmp), db_url))
        return asyncio.run(day(args, Path(tmp), db_url))


if __name__ == "__main__":
    sys.exit(main())
