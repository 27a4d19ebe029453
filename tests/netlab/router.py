"""The impaired-link router: a user-space process between two TUN devices.

Run by :class:`tests.netlab.lab.Lab` as ``python -m tests.netlab.router ...`` in the root
namespace. It opens two TUN devices (``IFF_TUN | IFF_NO_PI``) with the names it is given,
prints one JSON line ``{"ready": true, ...}`` on stdout and then serves, in ONE thread:

* packets read from TUN A go to TUN B after the impairment of ``a>b`` (and vice versa);
* a heap of packets in flight ordered by departure time; ``select`` sleeps until the next
  departure (timer slack set to 1 ns), the last few tens of microseconds are spun, and
  the time recorded is the ACTUAL time of the write, not the planned one;
* a control socket (UNIX stream, one JSON object per line each way, see control.py).

A single thread means no GIL hand-offs between reader and writer. The process exits by
itself on SIGTERM/SIGINT, on a ``shutdown`` request, when its parent dies (parent pid
polled every 0.2 s) or after ``--max-lifetime`` seconds.
"""
from __future__ import annotations

import argparse
import ctypes
import errno
import fcntl
import gc
import heapq
import itertools
import json
import math
import os
import random
import select
import signal
import socket
import struct
import sys
import time
import traceback

from .impair import DELIVER, DIRECTIONS, Impairment, ImpairmentError, LinkDirection, check_direction
from .packet import parse
from .truth import new_records

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
PR_SET_TIMERSLACK = 29

SPIN_S = 60e-6  # the last 60 us before a departure are spun rather than slept
POLL_S = 0.2  # longest sleep: parent / lifetime / stop checks
READ_BATCH = 64
MAX_REQUEST = 64 * 1024
MAX_CLIENTS = 16
MAX_HISTORY = 10_000
MAX_PACKET = 65_535

mono = time.monotonic


def open_tun(name: str) -> int:
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI))
    except OSError:
        os.close(fd)
        raise
    return fd


def tune_process(realtime: bool) -> dict:
    """Best effort: 1 ns timer slack and a real-time priority. Returns what took effect."""
    done = {"timerslack_ns": None, "sched": "other"}
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_TIMERSLACK, ctypes.c_ulong(1), 0, 0, 0) == 0:
            done["timerslack_ns"] = 1
    except OSError:
        pass
    if realtime:
        try:
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(10))
            done["sched"] = "fifo:10"
        except (OSError, AttributeError):
            pass
    return done


class Router:
    def __init__(self, fd_a: int, fd_b: int, control_path: str, parent_pid: int,
                 max_lifetime: float, seed: int | None, initial: dict) -> None:
        self.fd_in = {"a>b": fd_a, "b>a": fd_b}
        self.fd_out = {"a>b": fd_b, "b>a": fd_a}
        self.dir_of_fd = {fd_a: "a>b", fd_b: "b>a"}
        self.parent_pid = parent_pid
        self.max_lifetime = max_lifetime
        self.t0 = mono()
        self.t0_wall = time.time()
        self.seed = seed if seed is not None else random.SystemRandom().randrange(2**32)
        self.links = {d: LinkDirection(d, random.Random(f"{self.seed}:{d}")) for d in DIRECTIONS}
        self.records = new_records()
        self.record_t = 0.0
        self.generation = 0
        self.heap: list = []
        self.counter = itertools.count()
        self.queued = {d: 0 for d in DIRECTIONS}
        self.history: list[dict] = []
        self.history_truncated = False
        self.stop = False
        self.stop_reason = ""
        self.tuning: dict = {}
        for d, params in (initial or {}).items():
            for dd in check_direction(d, allow_both=True):
                self.links[dd].set_config(Impairment.from_dict(params))
        self._log("start", dir="both", params={d: self.links[d].config.to_dict() for d in DIRECTIONS})
        self.lsock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.lsock.bind(control_path)
        self.lsock.listen(8)
        self.lsock.setblocking(False)
        self.clients: dict[socket.socket, bytearray] = {}

    # ---------------------------------------------------------------- history
    def rel(self, t: float) -> float:
        return round(t - self.t0, 6)

    def _log(self, op: str, **kw) -> None:
        if len(self.history) >= MAX_HISTORY:
            self.history_truncated = True
            return
        now = mono()
        entry = {"t": self.rel(now), "wall": round(time.time(), 6), "op": op}
        entry.update(kw)
        self.history.append(entry)

    # ---------------------------------------------------------------- packets
    def _ingress(self, direction: str, pkt: bytes, arrival: float) -> None:
        link = self.links[direction]
        verdict, planned = link.decide(arrival, self.queued[direction], len(pkt))
        sec = int(arrival - self.t0)
        handle = self.records[direction].ingress(parse(pkt), len(pkt), sec, verdict)
        if verdict == DELIVER:
            heapq.heappush(self.heap, (planned, next(self.counter), direction, pkt, arrival,
                                       handle, self.generation))
            self.queued[direction] += 1

    def _flush(self) -> None:
        heap = self.heap
        while heap:
            due = heap[0][0]
            now = mono()
            if due > now:
                if due - now > SPIN_S:
                    return
                while mono() < due:  # bounded: at most SPIN_S
                    pass
            planned, _, direction, pkt, arrival, handle, gen = heapq.heappop(heap)
            self.queued[direction] -= 1
            actual = mono()
            try:
                os.write(self.fd_out[direction], pkt)
            except OSError:
                if gen == self.generation:
                    self.records[direction].write_errors += 1
                continue
            if gen == self.generation:
                self.records[direction].delivery(handle, arrival, planned, actual)

    def _read(self, fd: int) -> None:
        direction = self.dir_of_fd[fd]
        for _ in range(READ_BATCH):
            try:
                pkt = os.read(fd, MAX_PACKET)
            except BlockingIOError:
                return
            except OSError as exc:
                if exc.errno in (errno.EAGAIN, errno.EINTR):
                    return
                raise
            self._ingress(direction, pkt, mono())
            if self.heap and self.heap[0][0] <= mono() + SPIN_S:
                self._flush()

    # ---------------------------------------------------------------- control
    def _accept(self) -> None:
        try:
            conn, _ = self.lsock.accept()
        except (BlockingIOError, InterruptedError):
            return
        if len(self.clients) >= MAX_CLIENTS:
            conn.close()
            return
        conn.setblocking(False)
        self.clients[conn] = bytearray()

    def _drop_client(self, conn: socket.socket) -> None:
        self.clients.pop(conn, None)
        conn.close()

    def _client_readable(self, conn: socket.socket) -> None:
        buf = self.clients[conn]
        try:
            data = conn.recv(MAX_REQUEST)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._drop_client(conn)
            return
        if not data:
            self._drop_client(conn)
            return
        buf += data
        while b"\n" in buf:
            line, _, rest = bytes(buf).partition(b"\n")
            buf[:] = rest
            reply = self.handle_line(line)
            try:
                conn.settimeout(5.0)
                conn.sendall(json.dumps(reply, separators=(",", ":")).encode() + b"\n")
                conn.setblocking(False)
            except OSError:
                self._drop_client(conn)
                return
        if len(buf) > MAX_REQUEST:
            self._drop_client(conn)

    def handle_line(self, line: bytes) -> dict:
        try:
            req = json.loads(line)
            if not isinstance(req, dict):
                raise ValueError("request must be a JSON object")
        except ValueError as exc:
            return {"ok": False, "error": "bad_request", "message": str(exc)}
        try:
            result = self.handle(req)
        except ImpairmentError as exc:
            return {"ok": False, "error": "bad_parameter", "message": str(exc)}
        except (KeyError, TypeError, ValueError) as exc:
            return {"ok": False, "error": "bad_request", "message": f"{type(exc).__name__}: {exc}"}
        except Exception as exc:  # noqa: BLE001 - a bug must not take the link down
            traceback.print_exc(file=sys.stderr)
            return {"ok": False, "error": "internal", "message": f"{type(exc).__name__}: {exc}"}
        return {"ok": True, "result": result}

    def handle(self, req: dict) -> object:
        op = req.get("op")
        now = mono()
        if op == "ping":
            return {"t0_monotonic": self.t0, "t0_wall": self.t0_wall, "now": self.rel(now),
                    "pid": os.getpid(), "seed": self.seed, "tuning": self.tuning}
        if op == "impair":
            dirs = check_direction(req["dir"], allow_both=True)
            cfg = Impairment.from_dict(req.get("params") or {})
            for d in dirs:
                self.links[d].set_config(Impairment.from_dict(cfg.to_dict()))
            self._log("impair", dir=req["dir"], params=cfg.to_dict())
            return self.config()
        if op == "blackout":
            dirs = check_direction(req["dir"], allow_both=True)
            seconds = req.get("seconds")
            if seconds is not None:
                seconds = float(seconds)
                if not (0 < seconds <= 24 * 3600):
                    raise ImpairmentError(f"seconds: expected 0..86400 or null, got {seconds}")
            until = math.inf if seconds is None else now + seconds
            for d in dirs:
                self.links[d].blackout_until = until
            self._log("blackout", dir=req["dir"], seconds=seconds,
                      until=None if seconds is None else self.rel(until))
            return self.config()
        if op == "restore":
            dirs = check_direction(req.get("dir", "both"), allow_both=True)
            for d in dirs:
                self.links[d].blackout_until = None
            self._log("restore", dir=req.get("dir", "both"))
            return self.config()
        if op == "clear":
            for d in DIRECTIONS:
                self.links[d].set_config(Impairment())
                self.links[d].blackout_until = None
            self._log("clear", dir="both")
            return self.config()
        if op == "config":
            return self.config()
        if op == "truth":
            return self.truth(series=bool(req.get("series", True)))
        if op == "reset":
            self.records = new_records()
            self.record_t = self.rel(now)
            self.generation += 1
            self._log("truth_reset", dir="both")
            return {"record_start": self.record_t}
        if op == "shutdown":
            self.stop = True
            self.stop_reason = "shutdown request"
            return {}
        raise ValueError(f"unknown op {op!r}")

    def config(self) -> dict:
        now = mono()
        out = {}
        for d, link in self.links.items():
            active = link.blackout_active(now)
            out[d] = {"impairment": link.config.to_dict(), "blackout": active,
                      "blackout_until": (None if not active or link.blackout_until == math.inf
                                         else self.rel(link.blackout_until))}
        return out

    def truth(self, series: bool = True) -> dict:
        now = mono()
        return {
            "schema": "vks.netlab-truth/1",
            "t0_monotonic": self.t0, "t0_wall": self.t0_wall,
            "record_start": self.record_t, "now": self.rel(now), "seed": self.seed,
            "directions": {d: self.records[d].to_dict(self.queued[d], series) for d in DIRECTIONS},
            "config": self.config(),
            "history": list(self.history), "history_truncated": self.history_truncated,
        }

    # ---------------------------------------------------------------- main loop
    def _housekeeping(self) -> None:
        if os.getppid() != self.parent_pid:
            self.stop, self.stop_reason = True, "parent died"
        elif mono() - self.t0 > self.max_lifetime:
            self.stop, self.stop_reason = True, "max lifetime reached"

    def run(self) -> str:
        tun_fds = list(self.fd_in.values())
        next_check = mono() + POLL_S
        last_gc = mono()
        while not self.stop:
            self._flush()
            now = mono()
            if now >= next_check:
                self._housekeeping()
                next_check = now + POLL_S
                if not self.heap and now - last_gc > 5.0:
                    gc.collect()  # automatic GC is off: collect only while nothing is due
                    last_gc = now
            timeout = next_check - now
            if self.heap:
                timeout = min(timeout, self.heap[0][0] - now - SPIN_S)
            timeout = max(0.0, timeout)
            readable, _, _ = select.select(tun_fds + [self.lsock] + list(self.clients), [], [], timeout)
            for r in readable:
                if r is self.lsock:
                    self._accept()
                elif isinstance(r, int):
                    self._read(r)
                elif r in self.clients:
                    self._client_readable(r)
        for conn in list(self.clients):
            self._drop_client(conn)
        self.lsock.close()
        return self.stop_reason


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.netlab.router", description=__doc__.split("\n")[0])
    p.add_argument("--tun-a", required=True)
    p.add_argument("--tun-b", required=True)
    p.add_argument("--control", required=True, help="path of the UNIX control socket")
    p.add_argument("--parent-pid", type=int, default=os.getppid())
    p.add_argument("--max-lifetime", type=float, default=7200.0, help="seconds (default 2 h)")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--config", default="{}", help='initial impairment JSON {"a>b": {...}, "b>a": {...}}')
    p.add_argument("--no-realtime", action="store_true", help="do not ask for SCHED_FIFO")
    args = p.parse_args(argv)

    fd_a = open_tun(args.tun_a)
    fd_b = open_tun(args.tun_b)
    router = Router(fd_a, fd_b, args.control, args.parent_pid, args.max_lifetime, args.seed,
                    json.loads(args.config))
    router.tuning = tune_process(realtime=not args.no_realtime)

    def on_signal(signum, _frame):
        router.stop, router.stop_reason = True, f"signal {signum}"

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    gc.collect()
    gc.freeze()
    gc.disable()
    sys.stdout.write(json.dumps({"ready": True, "pid": os.getpid(), "t0_monotonic": router.t0,
                                 "t0_wall": router.t0_wall, "seed": router.seed,
                                 "tuning": router.tuning}) + "\n")
    sys.stdout.flush()
    reason = router.run()
    print(f"netlab router: exiting ({reason})", file=sys.stderr)
    os.close(fd_a)
    os.close(fd_b)
    return 0


if __name__ == "__main__":
    sys.exit(main())
