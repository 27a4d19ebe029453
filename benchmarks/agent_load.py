#!/usr/bin/env python3
"""Load on the controller's agent hub: many simulated agents over real WebSockets.

Starts a real `vks-controller serve` (SQLite by default, `--db postgresql://...`, or `--db pg` for a
throw-away PostgreSQL cluster as the tests start one), issues one terminal token per simulated agent,
and runs the agents in a few client processes: each agent connects with its token, says hello, then
makes one `interval` report a second (and a heartbeat every 5 s), as a terminal in a session does.
Like the real agent (agent/link.py, agent/outbox.py) a simulated agent keeps every report until its
`ack` arrives, resends the unacknowledged ones oldest first after a reconnect, and reconnects after
any failure with the agent's own backoff (contract.backoff, full jitter, agent.link's
RECONNECT_INITIAL_S / RECONNECT_MAX_S). One agent's failure is counted, never the end of the others.

Latency is measured from the moment a report is (last) sent to the moment its `ack` arrives - the
hub acks only after the report is committed, so this is an upper bound of "sent to stored".
Printed: agents connected (at the end of the steady state) and failed (never connected), reports/s
held, latency p50 / p99 / max, reports made vs stored (nothing dropped, nothing doubled), controller
RSS and CPU over the steady state; then the connections lost and their causes.

    --json            print only {"agents", "connected", "reports_per_s", "p50_ms", "p99_ms", "max_ms",
                      "dropped", "doubled", "controller_cores", "controller_rss_mb"} on stdout
                      (controller_cores: all controllers together; controller_rss_mb: the largest one's peak)
    --storm           `--storm-after` s into the steady state, SIGKILL the controller(s) and start them
                      again at once on the same port: how long until every agent is back and reporting
                      (its first ack after the restart)
    --controllers 2   two controllers on one PostgreSQL, the agents shared between them (relay, presence)
    --db pg           a throw-away PostgreSQL cluster (tests/pg.py)

The client processes run at nice 10 and build their messages cheaply: on one machine they stand
for thousands of other machines and must not starve the controller they measure.

Targets (issue 15): 10,000 agents connected, p99 under 100 ms on a quiet machine, the controller
under half a core and 500 MB; the storm back within 60 s. The final figures, one command each:

    .venv/bin/python benchmarks/agent_load.py --agents 10000                       # SQLite
    .venv/bin/python benchmarks/agent_load.py --agents 10000 --db pg               # PostgreSQL
    .venv/bin/python benchmarks/agent_load.py --agents 10000 --db pg --controllers 2
    .venv/bin/python benchmarks/agent_load.py --agents 10000 --storm               # reconnect storm
"""
from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import random
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.procs import free_port, pct, rss_mb  # noqa: E402

JSON_KEYS = ("agents", "connected", "reports_per_s", "p50_ms", "p99_ms", "max_ms", "dropped", "doubled",
             "controller_cores", "controller_rss_mb")
# After the steady state, how long the agents wait for their last acks.
DRAIN_S = 15.0


def raise_fd_limit() -> int:
    """Soft limit of open files up to the hard limit (each agent and each accepted socket is one)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = hard if hard != resource.RLIM_INFINITY else 1 << 20
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return soft


def cpu_s(pid: int) -> float:
    return sum(cpu_split(pid))


def cpu_split(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of a process - the system part is mostly its sockets' work."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        tick = os.sysconf("SC_CLK_TCK")
        return int(fields[11]) / tick, int(fields[12]) / tick
    except OSError:
        return float("nan"), float("nan")


# ---- the simulated agents (one client process runs many) -------------------------------------

class SimAgent:
    """One simulated terminal: its unacknowledged reports (its outbox) and its connection."""

    def __init__(self, terminal_id: str, token: str, url: str):
        self.terminal_id, self.token, self.url = terminal_id, token, url
        self.pending: dict[str, list[Any]] = {}      # report_id -> [text, sent_at, epoch]
        self.ws: Any = None
        self.epoch = 0                               # connections so far
        self.made = 0
        self.welcomes: list[float] = []              # wall clock of each welcome
        self.first_acks: list[float] = []            # wall clock of the first ack of each connection
        self.lost = 0                                # connections lost after a welcome
        self.done = False


async def run_clients(spec: dict) -> dict:
    import aiohttp

    from agent.link import RECONNECT_INITIAL_S, RECONNECT_MAX_S
    from contract import wire
    from contract.backoff import Backoff

    loop_t = time.monotonic() - time.time()          # wall -> monotonic
    start_at = spec["start_wall"] + loop_t
    stop_at = start_at + spec["seconds"]
    first_at = spec["first_wall"] + loop_t
    ramp_s = spec["ramp_s"]
    latencies: list[float] = []
    errors: collections.Counter[str] = collections.Counter()
    closes: collections.Counter[str] = collections.Counter()
    acked_steady = 0
    sims = [SimAgent(t, tok, url) for t, tok, url in spec["creds"]]

    async def flush(a: SimAgent) -> None:
        """Send what this connection has not sent yet, oldest first (mark, then send)."""
        ws, epoch = a.ws, a.epoch
        for entry in list(a.pending.values()):
            if a.ws is not ws or ws is None:
                return
            if entry[2] == epoch:
                continue
            entry[1], entry[2] = time.monotonic(), epoch
            await ws.send_str(entry[0])

    def heartbeat(session: str) -> str:
        return json.dumps({"id": wire.new_id(), "type": "heartbeat", "health": {"status": "ok"},
                           "sessions": [session]})

    async def produce(a: SimAgent) -> None:
        session = f"load-{a.terminal_id}"
        begin = start_at + random.random()
        # Until the steady state: heartbeats only, every 5 s - a real agent beats from its welcome on,
        # and the hub closes a connection it hears nothing from for 15 s (HubOptions.silence_s).
        await asyncio.sleep(random.random() * 5.0)
        while time.monotonic() < begin - 5.0:
            ws = a.ws
            try:
                if ws is not None:
                    await ws.send_str(heartbeat(session))
            except Exception as exc:                # the connection's task sees it too
                errors[f"send: {type(exc).__name__}"] += 1
            await asyncio.sleep(5.0)
        await asyncio.sleep(max(0.0, begin - time.monotonic()))
        beat_phase = random.randrange(5)
        while time.monotonic() < stop_at:
            a.made += 1
            n = a.made
            rid = f"{session}:caller:i{n}"
            body = {"role": "caller", "peer": f"{a.terminal_id}-peer", "session_kind": "monitor",
                    "interval": {"t": float(n), "rtt_ms": 21.5,
                                 "inbound": {"packets": 50, "lost": 0, "loss_ratio": 0.0, "jitter_ms": 1.2,
                                             "bitrate_kbps": 250.0},
                                 "outbound": {"packets": 50, "lost": 0, "loss_ratio": 0.0, "jitter_ms": 1.1,
                                              "bitrate_kbps": 250.0}}}
            # The same JSON as wire.encode(wire.Report(...)), built cheaply.
            text = json.dumps({"id": wire.new_id(), "type": "report", "report_id": rid, "kind": "interval",
                               "session_id": session, "body": body, "created_at": time.time(),
                               "terminal_id": None})
            a.pending[rid] = [text, 0.0, -1]
            ws = a.ws
            try:
                if ws is not None:
                    await flush(a)
                    if n % 5 == beat_phase:         # real agents' heartbeats are not in step
                        await ws.send_str(heartbeat(session))
            except Exception as exc:                # the connection's task sees it too
                errors[f"send: {type(exc).__name__}"] += 1
            await asyncio.sleep(1.0)

    async def connection(a: SimAgent, http: aiohttp.ClientSession) -> None:
        nonlocal acked_steady
        ws = await http.ws_connect(a.url, headers={"Authorization": f"Bearer {a.token}"},
                                   max_msg_size=wire.MAX_MESSAGE_BYTES, heartbeat=15.0,
                                   timeout=aiohttp.ClientWSTimeout(ws_close=5))
        try:
            await ws.send_str(wire.encode(wire.Hello(terminal_id=a.terminal_id, agent_version="load")))
            msg = await ws.receive(timeout=15)
            if msg.type != aiohttp.WSMsgType.TEXT:
                raise ConnectionError(f"closed before welcome ({ws.close_code})")
            if wire.parse_controller_message(msg.data).type != "welcome":
                raise ConnectionError("no welcome")
            a.welcomes.append(time.time())
            a.epoch += 1
            a.ws = ws
            first = True
            await flush(a)
            async for raw in ws:
                if raw.type != aiohttp.WSMsgType.TEXT:
                    continue
                m = json.loads(raw.data)          # cheap: the clients stand for other machines
                if m.get("type") == "ack":
                    entry = a.pending.pop(m.get("report_id"), None)
                    if entry is not None:
                        now = time.monotonic()
                        if first:
                            a.first_acks.append(time.time())
                            first = False
                        if entry[1] and start_at <= entry[1] <= stop_at:
                            latencies.append(now - entry[1])
                            acked_steady += 1
                    if a.done and not a.pending:
                        break
            if not a.done:
                a.lost += 1
                closes[f"closed {ws.close_code}"] += 1
        finally:
            a.ws = None
            await ws.close()

    async def agent(a: SimAgent, delay: float, http: aiohttp.ClientSession) -> None:
        await asyncio.sleep(max(0.0, first_at + delay - time.monotonic()))
        producer = asyncio.create_task(produce(a))
        retry = Backoff(RECONNECT_INITIAL_S, RECONNECT_MAX_S)
        end = stop_at + DRAIN_S
        while time.monotonic() < end and not (a.done and not a.pending):
            welcomes = len(a.welcomes)
            try:
                await asyncio.wait_for(connection(a, http), max(0.1, end - time.monotonic()))
            except Exception as exc:            # one agent's failure is counted, never fatal
                errors[f"{type(exc).__name__}: {str(exc)[:60]}"] += 1
                if len(a.welcomes) > welcomes:
                    a.lost += 1
            if len(a.welcomes) > welcomes:
                retry.reset()
            if a.done and not a.pending:
                break
            await asyncio.sleep(min(retry.next(), max(0.0, end - time.monotonic())))
        producer.cancel()

    async def stopper() -> None:
        await asyncio.sleep(max(0.0, stop_at - time.monotonic()))
        connected_at_stop = sum(1 for a in sims if a.ws is not None)
        for a in sims:
            a.done = True
            if not a.pending and a.ws is not None:
                await a.ws.close()
        return connected_at_stop

    conn = aiohttp.TCPConnector(limit=0, force_close=True)
    async with aiohttp.ClientSession(connector=conn) as http:
        n = max(1, len(sims))
        tasks = [asyncio.create_task(agent(a, ramp_s * i / n, http)) for i, a in enumerate(sims)]
        connected = await stopper()
        await asyncio.gather(*tasks, return_exceptions=True)
    return {"connected": connected, "failed": sum(1 for a in sims if not a.welcomes),
            "made": sum(a.made for a in sims), "unacked": sum(len(a.pending) for a in sims),
            "acked_steady": acked_steady, "latencies": latencies, "lost": sum(a.lost for a in sims),
            "errors": dict(errors), "closes": dict(closes),
            "back": {a.terminal_id: [a.welcomes, a.first_acks] for a in sims}}


def client_main() -> None:
    # The simulated agents stand for other machines: they yield the CPU to the controller.
    os.nice(10)
    raise_fd_limit()
    spec = json.loads(sys.stdin.read())
    out: dict = {"error": "client did not finish"}
    try:
        out = asyncio.run(run_clients(spec))
    finally:
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
                # Its reports name a session the controller commanded (issue 11 refuses others).
                await store.save_session(conn, store.SessionRow(f"load-{tid}", tid, f"{tid}-peer", "monitor",
                                                                None, 3600.0, "started"))
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


class Controller:
    """One `vks-controller serve` on a fixed port; restartable (the storm)."""

    def __init__(self, index: int, db_url: str, tmp: Path, env: dict, profile: str | None, pyspy: str | None):
        self.index, self.db_url, self.tmp, self.env = index, db_url, tmp, env
        self.port = free_port()
        self.profile, self.pyspy = profile, pyspy
        self.proc: subprocess.Popen | None = None
        self.spy: subprocess.Popen | None = None
        self.cpu_done = 0.0                         # CPU seconds of the processes killed so far
        self.peak_rss = 0.0
        self.starts = 0
        self.agents = 0                             # agents that talk to it
        self.cpu0 = 0.0
        self.cpu_steady: float | None = None
        self.sys0 = 0.0
        self.sys_steady: float | None = None       # kernel share (meaningless across a storm's restart)

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/api/v1/agent/ws"

    def start(self) -> float:
        """Start it and wait until it listens; returns how long that took."""
        self.starts += 1
        t0 = time.monotonic()
        prof = ["-m", "cProfile", "-o", f"{self.profile}.{self.index}.{self.starts}"] if self.profile else []
        log = open(self.tmp / f"controller{self.index}.{self.starts}.log", "wb")
        self.proc = subprocess.Popen([sys.executable, *prof, "-m", "controller.cli", "serve", "--listen",
                                      f"127.0.0.1:{self.port}", "--db", self.db_url, "--log-level", "WARNING"],
                                     env=self.env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"controller {self.index} exited ({self.proc.returncode}); "
                                   f"see {self.tmp}/controller{self.index}.{self.starts}.log")
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    break
            time.sleep(0.05)
        if self.pyspy and self.starts == 1:
            spy = Path(sys.executable).with_name("py-spy")
            self.spy = subprocess.Popen([str(spy), "record", "--nonblocking", "-r", "50", "-f", "raw",
                                         "-o", f"{self.pyspy}.{self.index}", "--pid", str(self.proc.pid)],
                                        stdout=subprocess.DEVNULL, stderr=open(self.tmp / "py-spy.log", "wb"))
        return time.monotonic() - t0

    def cpu(self) -> float:
        return self.cpu_done + (cpu_s(self.proc.pid) if self.proc else 0.0)

    def sample(self) -> None:
        if self.proc is not None:
            r = rss_mb(self.proc.pid)
            if r == r:
                self.peak_rss = max(self.peak_rss, r)

    def kill(self) -> None:
        assert self.proc is not None
        self.cpu_done += cpu_s(self.proc.pid)
        self.proc.kill()
        self.proc.wait()

    def stop(self) -> None:
        if self.spy is not None and self.spy.poll() is None:
            self.spy.send_signal(signal.SIGINT)
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        if self.spy is not None:
            try:
                self.spy.wait(30)
            except subprocess.TimeoutExpired:
                self.spy.kill()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--agents", type=int, default=2000)
    ap.add_argument("--seconds", type=float, default=None,
                    help="steady state measured (default 60; with --storm, storm-after + 90)")
    ap.add_argument("--procs", type=int, default=None, help="client processes (default: one per 2,000 agents, "
                                                              "at least 3)")
    ap.add_argument("--ramp", type=float, default=None,
                    help="seconds over which agents first connect (default: 250 agents a second, at least 10)")
    ap.add_argument("--db", help="database URL (default: a fresh SQLite file); `pg`: a throw-away PostgreSQL")
    ap.add_argument("--controllers", type=int, default=1, help="controllers sharing the agents (PostgreSQL)")
    ap.add_argument("--storm", action="store_true", help="kill and restart the controller(s) mid-run")
    ap.add_argument("--storm-after", type=float, default=10.0, help="seconds into the steady state")
    ap.add_argument("--json", action="store_true", help="print only the summary as JSON on stdout")
    ap.add_argument("--timeline", action="store_true", help="(kept for compatibility; ignored)")
    ap.add_argument("--profile", help="write the controller's cProfile statistics to FILE.<n>.<start>")
    ap.add_argument("--py-spy", dest="pyspy", help="record the controller with py-spy (raw) to FILE.<n>")
    args = ap.parse_args()
    seconds = args.seconds if args.seconds is not None else (args.storm_after + 90 if args.storm else 60.0)
    procs = args.procs or max(3, -(-args.agents // 2000))
    ramp = args.ramp if args.ramp is not None else max(10.0, args.agents / 250)
    fds = raise_fd_limit()

    def note(text: str) -> None:
        print(f"[{time.monotonic() - t_start:.0f}s] {text}", file=sys.stderr, flush=True)

    t_start = time.monotonic()
    if fds < args.agents // args.controllers + 200:
        note(f"warning: {fds} open files allowed (ulimit -n), fewer than a controller's share of the agents "
             "needs: connections will fail with EMFILE (raise the hard limit)")
    tmp = Path(tempfile.mkdtemp(prefix="vks-load-"))
    print(f"work directory {tmp}", file=sys.stderr, flush=True)
    cluster = None
    db_url = args.db or f"sqlite:///{tmp}/controller.sqlite"
    if db_url == "pg":
        from tests.pg import PgCluster
        cluster = PgCluster().start()
        db_url = cluster.create_database("load")
    if args.controllers > 1 and not db_url.startswith("postgres"):
        ap.error("--controllers > 1 needs PostgreSQL (--db pg or a postgresql:// URL)")
    ctls: list[Controller] = []
    clients: list[subprocess.Popen] = []
    storm: dict[str, float] = {}
    try:
        creds = asyncio.run(issue_tokens(db_url, args.agents))
        note(f"{len(creds)} tokens issued")
        env = dict(os.environ, PYTHONPATH=str(REPO), VKS_CONTROLLER_CONFIG=str(tmp / "controller.yaml"))
        (tmp / "controller.yaml").write_text("sites_file: null\n")
        ctls = [Controller(i, db_url, tmp, env, args.profile, args.pyspy) for i in range(args.controllers)]
        for c in ctls:
            c.start()
        # Agent i talks to controller i mod n; the clients start connecting in 3 s.
        creds3 = [(t, tok, ctls[i % len(ctls)].url) for i, (t, tok) in enumerate(creds)]
        for i in range(len(creds)):
            ctls[i % len(ctls)].agents += 1
        first_wall = time.time() + 3.0
        start_wall = first_wall + ramp + 5.0
        for i in range(procs):
            p = subprocess.Popen([sys.executable, __file__, "--client"], env=env, cwd=REPO, stdin=subprocess.PIPE)
            assert p.stdin is not None
            p.stdin.write(json.dumps({"creds": creds3[i::procs], "seconds": seconds, "ramp_s": ramp,
                                      "first_wall": first_wall, "start_wall": start_wall,
                                      "out": str(tmp / f"client{i}.json")}).encode())
            p.stdin.close()
            clients.append(p)
        cpu0: float | None = None
        cpu1: float | None = None
        last_note = 0.0
        while any(c.poll() is None for c in clients):
            now = time.time()
            for c in ctls:
                c.sample()
            if cpu0 is None and now >= start_wall:
                for c in ctls:
                    c.cpu0 = c.cpu()
                    c.sys0 = cpu_split(c.proc.pid)[1] if c.proc else 0.0
                cpu0 = sum(c.cpu0 for c in ctls)
            if cpu1 is None and now >= start_wall + seconds:
                for c in ctls:
                    c.cpu_steady = c.cpu() - c.cpu0
                    c.sys_steady = (cpu_split(c.proc.pid)[1] if c.proc else 0.0) - c.sys0
                cpu1 = sum(c.cpu() for c in ctls)
            if args.storm and not storm and now >= start_wall + args.storm_after:
                storm["killed"] = time.time()
                for c in ctls:
                    c.kill()
                note("storm: controller(s) killed (SIGKILL); starting again")
                storm["restart_s"] = max(c.start() for c in ctls)
                note(f"storm: listening again after {storm['restart_s']:.1f} s")
            if time.monotonic() - last_note >= 10:
                last_note = time.monotonic()
                note(f"controller RSS {', '.join(f'{rss_mb(c.proc.pid):.0f}' for c in ctls if c.proc)} MB, "
                     f"{sum(c.poll() is None for c in clients)} client processes running")
            time.sleep(0.5)
        if cpu1 is None:
            cpu1 = sum(c.cpu() for c in ctls)
        ctl_cpu = cpu1 - (cpu0 if cpu0 is not None else 0.0)
        server_p99 = scrape_delay_p99(ctls[0].port)
        results = []
        for i in range(len(clients)):
            f = tmp / f"client{i}.json"
            results.append(json.loads(f.read_text()) if f.exists() else {"error": "no result file"})
    finally:
        for c in ctls:
            c.stop()
        for p in clients:
            if p.poll() is None:
                p.kill()
    total, distinct = asyncio.run(count_stored(db_url))
    if cluster is not None:
        cluster.stop()

    lat = [x for r in results for x in r.get("latencies", [])]
    made = sum(r.get("made", 0) for r in results)
    acked = sum(r.get("acked_steady", 0) for r in results)
    connected = sum(r.get("connected", 0) for r in results)
    failed = sum(r.get("failed", 0) for r in results)
    dropped = made - distinct
    doubled = total - distinct
    peak_rss = max((c.peak_rss for c in ctls), default=0.0)
    cores = ctl_cpu / seconds

    def ms(x: float) -> float | None:
        return round(x * 1000, 1) if x == x else None

    summary = {"agents": args.agents, "connected": connected, "reports_per_s": round(acked / seconds, 1),
               "p50_ms": ms(pct(lat, 50)), "p99_ms": ms(pct(lat, 99)),
               "max_ms": ms(max(lat, default=float("nan"))), "dropped": dropped,
               "doubled": doubled, "controller_cores": round(cores, 3), "controller_rss_mb": round(peak_rss, 1)}
    assert tuple(summary) == JSON_KEYS

    extra: list[str] = []
    lost = sum(r.get("lost", 0) for r in results)
    causes: collections.Counter[str] = collections.Counter()
    for r in results:
        causes.update(r.get("errors", {}))
        causes.update(r.get("closes", {}))
    broken = [r["error"] for r in results if "error" in r]
    extra.append(f"  connections lost       {lost}   unacked at the end {sum(r.get('unacked', 0) for r in results)}"
                 f"   client processes broken {len(broken)} {broken[:1]}")
    for cause, n in causes.most_common(6):
        extra.append(f"    {n:7d} x {cause}")
    if not args.storm and all(c.sys_steady is not None for c in ctls):
        system = sum(c.sys_steady or 0.0 for c in ctls)
        extra.append(f"  controller CPU split   user {ctl_cpu - system:.1f} s, system {system:.1f} s "
                     f"(the kernel's socket work); {1e6 * ctl_cpu / max(1, acked):.0f} us per report held")
    extra.append(f"  client processes       {procs}, ramp {ramp:.0f} s, steady state {seconds:.0f} s, "
                 f"controllers {len(ctls)}")
    if len(ctls) > 1:
        extra.append("  per controller         " + "; ".join(
            f"#{c.index}: {c.agents} agents, RSS peak {c.peak_rss:.0f} MB, "
            f"{(c.cpu_steady or 0.0) / seconds:.2f} cores" for c in ctls))
    if args.storm and storm:
        killed = storm["killed"]
        back: list[float] = []
        for r in results:
            for _t, (_welcomes, first_acks) in r.get("back", {}).items():
                after = [t for t in first_acks if t > killed]
                if after:
                    back.append(after[0] - killed)
        extra.append(f"  storm: restart took    {storm['restart_s']:.1f} s; back and reporting {len(back)} / "
                     f"{args.agents} agents, all after {max(back, default=float('nan')):.1f} s "
                     f"(p50 {pct(back, 50):.1f} s, p99 {pct(back, 99):.1f} s) from the kill")

    if args.json:
        print(json.dumps(summary))
        for line in extra:
            print(line, file=sys.stderr)
        return 0
    backend = "PostgreSQL" if db_url.startswith("postgres") else "SQLite"
    print(f"agent hub load ({backend}, {os.cpu_count()} cores, load average at the end "
          f"{os.getloadavg()[0]:.1f}: other work on the machine skews these figures)")
    print(f"  agents connected       {connected} / {args.agents}   (failed {failed})")
    print(f"  reports sent / acked   {made} / {acked}   over {seconds:.0f} s "
          f"-> {acked / seconds:.0f} reports/s held")
    print(f"  stored rows / distinct {total} / {distinct}   (dropped {dropped}, doubled {doubled})")
    print(f"  sent->acked(stored) ms p50 {pct(lat, 50) * 1000:.1f}  p99 {pct(lat, 99) * 1000:.1f}  "
          f"max {max(lat, default=float('nan')) * 1000:.1f}   (target p99 < 100)")
    print(f"  controller-side p99    {server_p99}   (its own histogram: created_at -> committed)")
    print(f"  controller RSS peak    {peak_rss:.0f} MB   (target < 500)")
    print(f"  controller CPU         {ctl_cpu:.0f} s over {seconds:.0f} s steady state -> {cores:.2f} cores "
          f"(the simulated agents share the same {os.cpu_count()} cores)")
    for line in extra:
        print(line)
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--client":
        client_main()
    else:
        sys.exit(main())
