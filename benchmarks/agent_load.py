#!/usr/bin/env python3
"""Load on the controller's agent hub: many simulated agents over real WebSockets.

Starts a real `vks-controller serve` (SQLite by default, or --db postgresql://...), issues one
terminal token per simulated agent, and runs the agents in a few client processes: each agent
connects with its token, says hello, then sends one `interval` report a second (and a heartbeat
every 5 s), as a terminal in a session does. Latency is measured from the moment a report is
sent to the moment its `ack` arrives - the hub acks only after the report is committed, so this
is an upper bound of "sent to stored". Printed: agents connected, reports/s held, latency p50 /
p99 / max, reports stored vs sent (nothing dropped, nothing doubled), controller RSS.

The client processes run at nice 10 and build their messages cheaply: on one 2-core machine they
stand for thousands of other machines and must not starve the controller they measure.

Targets (issue 4) on a 2-core machine: 2,000 agents connected, p99 under 250 ms, RSS under 500 MB.

    .venv/bin/python benchmarks/agent_load.py [--agents 2000] [--seconds 60] [--procs 3]
                                              [--db postgresql://...]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.procs import free_port, pct, rss_mb  # noqa: E402


def cpu_s(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except OSError:
        return float("nan")


# ---- the simulated agents (one client process runs many) -------------------------------------

async def run_clients(url: str, creds: list[tuple[str, str]], seconds: float, ramp_s: float) -> dict:
    import aiohttp

    from contract import wire

    latencies: list[float] = []
    timeline: list[tuple[float, float]] = []
    sent = acked = connected = failed = 0
    start_at = time.monotonic() + ramp_s
    stop_at = start_at + seconds

    async def one(terminal_id: str, token: str, delay: float, http: aiohttp.ClientSession):
        nonlocal sent, acked, connected, failed
        await asyncio.sleep(delay)
        try:
            ws = await http.ws_connect(url, headers={"Authorization": f"Bearer {token}"},
                                       max_msg_size=wire.MAX_MESSAGE_BYTES, heartbeat=30)
        except Exception:
            failed += 1
            return
        pending: dict[str, float] = {}
        try:
            await ws.send_str(wire.encode(wire.Hello(terminal_id=terminal_id, agent_version="load")))
            msg = await ws.receive(timeout=60)
            if wire.parse_controller_message(msg.data).type != "welcome":
                failed += 1
                return
            connected += 1

            async def reader():
                nonlocal acked
                async for raw in ws:
                    if raw.type != aiohttp.WSMsgType.TEXT:
                        continue
                    m = json.loads(raw.data)          # cheap: the clients stand for other machines
                    if m.get("type") == "ack":
                        t = pending.pop(m.get("report_id"), None)
                        if t is not None:
                            latencies.append(time.monotonic() - t)
                            timeline.append((round(t - start_at, 1), latencies[-1]))
                            acked += 1

            rt = asyncio.create_task(reader())
            await asyncio.sleep(max(0.0, start_at - time.monotonic()) + random.random())
            n = 0
            session = f"load-{terminal_id}"
            beat_phase = random.randrange(5)
            while time.monotonic() < stop_at:
                n += 1
                rid = f"{session}:caller:i{n}"
                body = {"role": "caller", "peer": "load", "session_kind": "monitor",
                        "interval": {"t": float(n), "rtt_ms": 21.5,
                                     "inbound": {"packets": 50, "lost": 0, "loss_ratio": 0.0, "jitter_ms": 1.2,
                                                 "bitrate_kbps": 250.0},
                                     "outbound": {"packets": 50, "lost": 0, "loss_ratio": 0.0, "jitter_ms": 1.1,
                                                  "bitrate_kbps": 250.0}}}
                pending[rid] = time.monotonic()
                # The same JSON as wire.encode(wire.Report(...)), built cheaply.
                await ws.send_str(json.dumps({"id": wire.new_id(), "type": "report", "report_id": rid,
                                              "kind": "interval", "session_id": session, "body": body,
                                              "created_at": time.time(), "terminal_id": None}))
                sent += 1
                if n % 5 == beat_phase:         # real agents' heartbeats are not in step
                    await ws.send_str(json.dumps({"id": wire.new_id(), "type": "heartbeat",
                                                  "health": {"status": "ok"}, "sessions": []}))
                await asyncio.sleep(1.0)
            # Wait for the last acks.
            deadline = time.monotonic() + 10
            while pending and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            rt.cancel()
        finally:
            await ws.close()

    conn = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=conn) as http:
        await asyncio.gather(*(one(t, tok, ramp_s * i / max(1, len(creds)), http)
                               for i, (t, tok) in enumerate(creds)))
    return {"sent": sent, "acked": acked, "connected": connected, "failed": failed, "latencies": latencies,
            "timeline": timeline}


def client_main() -> None:
    # The simulated agents stand for other machines: they yield the CPU to the controller.
    os.nice(10)
    spec = json.loads(sys.stdin.read())
    out = asyncio.run(run_clients(spec["url"], spec["creds"], spec["seconds"], spec["ramp_s"]))
    Path(spec["out"]).write_text(json.dumps(out))


# ---- the driver ------------------------------------------------------------------------------

async def issue_tokens(db_url: str, n: int) -> list[tuple[str, str]]:
    from controller.store import agents as store
    from controller.store.db import Database
    from controller.store.migrate import migrate
    db = Database(db_url)
    try:
        await migrate(db)
        creds = []
        async with db.transaction() as conn:
            for i in range(n):
                tid = f"load-{i:05d}"
                creds.append((tid, (await store.issue_token(conn, tid))[1]))
        return creds
    finally:
        await db.close()


async def count_stored(db_url: str) -> tuple[int, int]:
    from sqlalchemy import func, select

    from controller.store import agents as store
    from controller.store.db import Database
    db = Database(db_url)
    try:
        async with db.read() as conn:
            r = store.agent_reports.c
            total = (await conn.execute(select(func.count()).select_from(store.agent_reports))).scalar_one()
            distinct = (await conn.execute(select(func.count(func.distinct(r.report_id))))).scalar_one()
        return total, distinct
    finally:
        await db.close()


def scrape_delay_p99(port: int) -> str:
    """The controller's own histogram of report delay (agent's created_at -> committed), p99
    as the bucket bound it falls under."""
    import urllib.request
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
            text = resp.read().decode()
    except OSError as exc:
        return f"n/a ({exc})"
    buckets = []
    for line in text.splitlines():
        if line.startswith('vks_controller_report_delay_seconds_bucket{') and 'kind="interval"' in line:
            le = line.split('le="', 1)[1].split('"', 1)[0]
            buckets.append((float("inf") if le == "+Inf" else float(le), float(line.rsplit(" ", 1)[1])))
    if not buckets or buckets[-1][1] == 0:
        return "n/a"
    total = buckets[-1][1]
    for le, count in sorted(buckets):
        if count >= 0.99 * total:
            return f"<= {le * 1000:.0f} ms" if le != float("inf") else "> largest bucket"
    return "n/a"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--agents", type=int, default=2000)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--procs", type=int, default=3, help="client processes")
    ap.add_argument("--ramp", type=float, default=20.0, help="seconds over which agents connect")
    ap.add_argument("--db", help="database URL (default: a fresh SQLite file)")
    ap.add_argument("--timeline", action="store_true", help="print p99 per second of sending (stderr)")
    ap.add_argument("--profile", help="write the controller's cProfile statistics to this file")
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="vks-load-"))
    print(f"work directory {tmp}", file=sys.stderr, flush=True)
    db_url = args.db or f"sqlite:///{tmp}/controller.sqlite"
    t_start = time.monotonic()
    creds = asyncio.run(issue_tokens(db_url, args.agents))
    print(f"[{time.monotonic() - t_start:.0f}s] {len(creds)} tokens issued", file=sys.stderr, flush=True)
    port = free_port()
    env = dict(os.environ, PYTHONPATH=str(REPO), VKS_CONTROLLER_CONFIG=str(tmp / "controller.yaml"))
    (tmp / "controller.yaml").write_text("sites_file: null\n")
    prof = ["-m", "cProfile", "-o", args.profile] if args.profile else []
    ctl = subprocess.Popen([sys.executable, *prof, "-m", "controller.cli", "serve", "--listen", f"127.0.0.1:{port}",
                            "--db", db_url, "--log-level", "WARNING"], env=env, cwd=REPO,
                           stdout=open(tmp / "controller.log", "wb"), stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.2)
        url = f"ws://127.0.0.1:{port}/api/v1/agent/ws"
        shares = [creds[i::args.procs] for i in range(args.procs)]
        clients = []
        for i, share in enumerate(shares):
            p = subprocess.Popen([sys.executable, __file__, "--client"], env=env, cwd=REPO,
                                 stdin=subprocess.PIPE)
            p.stdin.write(json.dumps({"url": url, "creds": share, "seconds": args.seconds,
                                      "ramp_s": args.ramp, "out": str(tmp / f"client{i}.json")}).encode())
            p.stdin.close()
            clients.append(p)
        peak_rss = 0.0
        t0 = time.monotonic()
        cpu0 = cpu_s(ctl.pid)
        while any(c.poll() is None for c in clients):
            peak_rss = max(peak_rss, rss_mb(ctl.pid))
            time.sleep(1.0)
            if int(time.monotonic() - t0) % 10 == 0:
                print(f"[{time.monotonic() - t_start:.0f}s] controller RSS {rss_mb(ctl.pid):.0f} MB, "
                      f"{sum(c.poll() is None for c in clients)} client processes running",
                      file=sys.stderr, flush=True)
        wall = time.monotonic() - t0
        ctl_cpu = cpu_s(ctl.pid) - cpu0
        server_p99 = scrape_delay_p99(port)
        results = [json.loads((tmp / f"client{i}.json").read_text()) if (tmp / f"client{i}.json").exists()
                   else {} for i in range(len(clients))]
    finally:
        ctl.send_signal(signal.SIGTERM)
        try:
            ctl.wait(30)
        except subprocess.TimeoutExpired:
            ctl.kill()
    lat = [x for r in results for x in r.get("latencies", [])]
    if args.timeline:
        per_s: dict[int, list[float]] = {}
        for r in results:
            for t, x in r.get("timeline", []):
                per_s.setdefault(int(t), []).append(x)
        for sec in sorted(per_s):
            print(f"  t={sec:4d}s  n={len(per_s[sec]):5d}  p99 {pct(per_s[sec], 99) * 1000:7.1f} ms", file=sys.stderr)
    sent = sum(r.get("sent", 0) for r in results)
    acked = sum(r.get("acked", 0) for r in results)
    connected = sum(r.get("connected", 0) for r in results)
    failed = sum(r.get("failed", 0) for r in results)
    total, distinct = asyncio.run(count_stored(db_url))
    backend = "PostgreSQL" if db_url.startswith("postgres") else "SQLite"
    print(f"agent hub load ({backend}, {os.cpu_count()} cores, load average at the end "
          f"{os.getloadavg()[0]:.1f}: other work on the machine skews these figures)")
    print(f"  agents connected       {connected} / {args.agents}   (failed {failed})")
    print(f"  reports sent / acked   {sent} / {acked}   over {args.seconds:.0f} s "
          f"-> {acked / args.seconds:.0f} reports/s held")
    print(f"  stored rows / distinct {total} / {distinct}   (dropped {sent - distinct}, doubled {total - distinct})")
    print(f"  sent->acked(stored) ms p50 {pct(lat, 50) * 1000:.1f}  p99 {pct(lat, 99) * 1000:.1f}  "
          f"max {max(lat, default=float('nan')) * 1000:.1f}   (target p99 < 250)")
    print(f"  controller-side p99    {server_p99}   (its own histogram: created_at -> committed)")
    print(f"  controller RSS peak    {peak_rss:.0f} MB   (target < 500)")
    print(f"  controller CPU         {ctl_cpu:.0f} s over {wall:.0f} s wall -> {ctl_cpu / wall:.2f} cores "
          f"(the simulated agents share the same {os.cpu_count()} cores)")
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--client":
        client_main()
    else:
        sys.exit(main())
