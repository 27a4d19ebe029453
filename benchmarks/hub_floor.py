#!/usr/bin/env python3
"""The least one agent report costs on this machine: a bare aiohttp WebSocket ingest, no project code.

The controller's hub receives a report on an agent's WebSocket, parses and validates it, stores it
in a batch, acks it once the batch committed, and hands it to the metrics and live monitoring
(controller/hub/). `benchmarks/agent_load.py` measures all of that; this measures only the steps no
hub can skip, with the same libraries (aiohttp, SQLite) and the same load (N agents, one report a
second each, simulated in client processes at nice 10), so that the hub's CPU per report can be read
against a floor - and a target against what the floor allows. Stages, each with the ones before:

    recv    aiohttp's WebSocketResponse, a task per connection reading each message (heartbeat 15 s)
    json    + json.loads of each message
    store   + stored every 10 ms in one multi-row INSERT ... ON CONFLICT DO NOTHING per batch, into a
            table shaped as agent_reports (unique terminal_id + report_id, an index on session_id),
            SQLite in WAL with synchronous=NORMAL, in a thread of its own
    ack     + an ack sent for each report after its batch committed

Prints, per stage: reports/s received, the server's cores (user + system) and CPU per report over
the steady state, its RSS. One command:

    .venv/bin/python benchmarks/hub_floor.py --agents 10000
"""
from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.procs import free_port  # noqa: E402

STAGES = ("recv", "json", "store", "ack")
WINDOW_S = 5.0                   # the server reports its CPU and count every WINDOW_S
BATCH_S = 0.01                   # as the hub's writer (HubOptions.batch_wait_s)
ROWS_PER_INSERT = 4000           # as controller.store.agents.SQLITE_ROWS_PER_INSERT
BODY = {"interval_s": 1.0,
        "inbound": {"packets": 50, "lost": 0, "loss_ratio": 0.0, "jitter_ms": 1.1, "bitrate_kbps": 250.0},
        "outbound": {"packets": 50, "lost": 0, "loss_ratio": 0.0, "jitter_ms": 1.1, "bitrate_kbps": 250.0}}


def _files_limit() -> None:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


# --- the server (one stage) ---

def serve(stage: str, port: int, db_path: str) -> None:
    import sqlite3
    from concurrent.futures import ThreadPoolExecutor

    import psutil
    from aiohttp import web

    level = STAGES.index(stage)
    received = 0
    waiting: list[tuple[str, dict, web.WebSocketResponse]] = []
    db = None
    if level >= STAGES.index("store"):
        db = sqlite3.connect(db_path, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("CREATE TABLE agent_reports (id INTEGER PRIMARY KEY, terminal_id TEXT NOT NULL, "
                   "report_id TEXT NOT NULL, kind TEXT NOT NULL, session_id TEXT, body TEXT NOT NULL, "
                   "created_at REAL, received_at TEXT NOT NULL, UNIQUE (terminal_id, report_id))")
        db.execute("CREATE INDEX ix_session ON agent_reports (session_id)")
    store_thread = ThreadPoolExecutor(1)

    def store(rows: list[tuple]) -> None:
        assert db is not None
        db.execute("BEGIN")
        for i in range(0, len(rows), ROWS_PER_INSERT):
            chunk = rows[i:i + ROWS_PER_INSERT]
            db.execute("INSERT INTO agent_reports (terminal_id, report_id, kind, session_id, body, created_at, "
                       "received_at) VALUES " + ", ".join(["(?, ?, ?, ?, ?, ?, ?)"] * len(chunk))
                       + " ON CONFLICT (terminal_id, report_id) DO NOTHING", [v for r in chunk for v in r])
        db.execute("COMMIT")

    async def writer() -> None:
        nonlocal waiting
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(BATCH_S)
            if not waiting:
                continue
            batch, waiting = waiting, []
            now = time.strftime("%Y-%m-%d %H:%M:%S")
            rows = [(tid, m["report_id"], m["kind"], m["session_id"], json.dumps(m["body"]), m["created_at"], now)
                    for tid, m, _ in batch]
            await loop.run_in_executor(store_thread, store, rows)
            if level >= STAGES.index("ack"):
                for _, m, ws in batch:
                    if not ws.closed:
                        await ws.send_str(json.dumps({"type": "ack", "report_id": m["report_id"]}))

    async def agent_ws(request: web.Request) -> web.WebSocketResponse:
        nonlocal received
        ws = web.WebSocketResponse(heartbeat=15.0)
        await ws.prepare(request)
        terminal = request.query.get("t", "")
        async for msg in ws:
            received += 1
            if level >= STAGES.index("json"):
                m = json.loads(msg.data)
                if level >= STAGES.index("store"):
                    waiting.append((terminal, m, ws))
        return ws

    async def main() -> None:
        app = web.Application()
        app.router.add_get("/ws", agent_ws)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port, backlog=4096).start()
        if db is not None:
            asyncio.ensure_future(writer())
        gc.freeze()                  # as the controller (controller.cli.tune_gc)
        proc = psutil.Process()
        print(json.dumps({"ready": True}), flush=True)
        while True:
            await asyncio.sleep(WINDOW_S)
            cpu = proc.cpu_times()
            print(json.dumps({"t": time.monotonic(), "n": received, "user": cpu.user, "system": cpu.system,
                              "rss_mb": proc.memory_info().rss / 2**20}), flush=True)

    _files_limit()
    asyncio.run(main())


# --- a client process: `count` agents ---

def client(port: int, count: int, first: int, ramp_s: float, seconds: float) -> None:
    import aiohttp

    async def agent(session: aiohttp.ClientSession, i: int, end: float) -> None:
        await asyncio.sleep(random.random() * ramp_s)
        tid, sid = f"t{first + i}", f"s{first + i}"
        async with session.ws_connect(f"http://127.0.0.1:{port}/ws?t={tid}", heartbeat=None) as ws:
            async def read() -> None:
                async for _ in ws:
                    pass
            reader = asyncio.ensure_future(read())
            n, due = 0, time.monotonic() + random.random()
            while time.monotonic() < end:
                await asyncio.sleep(max(0.0, due - time.monotonic()))
                due += 1.0
                n += 1
                await ws.send_str(json.dumps({"id": f"{tid}-{n}", "type": "report", "report_id": f"{sid}:caller:i{n}",
                                              "kind": "interval", "session_id": sid, "body": BODY,
                                              "created_at": time.time()}))
            reader.cancel()

    async def main() -> None:
        end = time.monotonic() + ramp_s + seconds
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
            results = await asyncio.gather(*(agent(session, i, end) for i in range(count)), return_exceptions=True)
        failed = [r for r in results if isinstance(r, BaseException)]
        if failed:
            print(f"client {first}: {len(failed)} agents failed, e.g. {failed[0]!r}", file=sys.stderr)

    _files_limit()
    asyncio.run(main())


# --- the driver ---

def run_stage(stage: str, agents: int, procs: int, ramp_s: float, seconds: float) -> dict:
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="vks-floor-") as tmp:
        server = subprocess.Popen([sys.executable, __file__, "--serve", stage, str(port), f"{tmp}/floor.sqlite"],
                                  stdout=subprocess.PIPE, text=True)
        assert server.stdout is not None
        if json.loads(server.stdout.readline()).get("ready") is not True:
            raise SystemExit(f"the {stage} server did not start")
        share = [agents // procs + (1 if k < agents % procs else 0) for k in range(procs)]
        clients = [subprocess.Popen(["nice", "-n", "10", sys.executable, __file__, "--client", str(port), str(n),
                                     str(sum(share[:k])), str(ramp_s), str(seconds + WINDOW_S)])
                   for k, n in enumerate(share)]
        start = time.monotonic() + ramp_s + 2.0
        windows = []
        while True:
            w = json.loads(server.stdout.readline())
            if w["t"] >= start:
                windows.append(w)
            if len(windows) > int(seconds / WINDOW_S):
                break
        for c in clients:
            c.wait()
        server.terminate()
        server.wait()
    first, last = windows[0], windows[-1]
    took = last["t"] - first["t"]
    n = last["n"] - first["n"]
    user, system = last["user"] - first["user"], last["system"] - first["system"]
    return {"stage": stage, "reports_per_s": n / took, "cores": (user + system) / took,
            "us_per_report": 1e6 * (user + system) / max(n, 1), "user_us": 1e6 * user / max(n, 1),
            "system_us": 1e6 * system / max(n, 1), "rss_mb": max(w["rss_mb"] for w in windows)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--agents", type=int, default=10000)
    p.add_argument("--seconds", type=float, default=30.0, help="steady state measured per stage")
    p.add_argument("--procs", type=int, default=None,
                   help="client processes (default: one per 2,500 agents, at least 2)")
    p.add_argument("--stages", default=",".join(STAGES), help=f"comma-separated, of {', '.join(STAGES)}")
    p.add_argument("--serve", nargs=3, metavar=("STAGE", "PORT", "DB"), help=argparse.SUPPRESS)
    p.add_argument("--client", nargs=5, metavar=("PORT", "COUNT", "FIRST", "RAMP", "SECONDS"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.serve:
        serve(args.serve[0], int(args.serve[1]), args.serve[2])
        return 0
    if args.client:
        port, count, first, ramp, seconds = args.client
        client(int(port), int(count), int(first), float(ramp), float(seconds))
        return 0
    stages = [s.strip() for s in args.stages.split(",") if s.strip()]
    unknown = [s for s in stages if s not in STAGES]
    if unknown:
        p.error(f"unknown stage(s) {', '.join(unknown)}: choose from {', '.join(STAGES)}")
    _files_limit()
    procs = args.procs or max(2, -(-args.agents // 2500))
    ramp_s = max(10.0, args.agents / 500)
    print(f"bare aiohttp ingest: {args.agents} agents, one report a second each, {procs} client processes "
          f"(nice 10), {os.cpu_count()} cores, steady state {args.seconds:.0f} s per stage", flush=True)
    for stage in stages:
        r = run_stage(stage, args.agents, procs, ramp_s, args.seconds)
        print(f"  {r['stage']:<6} {r['reports_per_s']:8.0f} reports/s   {r['cores']:.2f} cores   "
              f"{r['us_per_report']:5.0f} us a report (user {r['user_us']:.0f}, system {r['system_us']:.0f})   "
              f"RSS {r['rss_mb']:.0f} MB", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
