"""`StarLab`: three or more sites (network namespaces), each behind its own access link, joined by
one user-space router - the court, the SIZO and the data centre of issue 12 (which side is at fault).

```
 netns site "court"  --TUN--> [up: court's access link] --+              +--> [down] --TUN--> "sizo"
 netns site "sizo"   --TUN--> [up: sizo's access link]  --+-- router ---+--> [down] --TUN--> "dc"
 netns site "dc"     --TUN--> [up: dc's access link]    --+              +--> [down] --TUN--> "court"
```

A packet from site X to site Y crosses X's uplink, then Y's downlink, each impaired on its own
(`tests.netlab.impair.LinkDirection`: delay, jitter, Bernoulli / Gilbert-Elliott loss, rate,
blackout), so a lossy access link shows on every path through it and on no other. Site i has the
impaired address 10.232.0.(i+1) on `vks0` (the /24 routed through it) and, for the controller, a
management veth to the root namespace (`lab.mgmt_root(site)`, its own /30 in 10.231.X.0/24).

    with StarLab({"court": None, "sizo": {"loss": 0.07}, "dc": None}, seed=1) as lab:
        lab.popen("sizo", [...])                    # in the site's namespace
        lab.impair("sizo", "up", loss=0.1)          # up | down | both
        lab.truth()                                 # per link: packets, dropped, delivered

The router is this module run as `python -m tests.netlab.star` (one thread, stdlib only); control
is tests.netlab.control's JSON-line socket. Needs what Lab needs (root, /dev/net/tun, ip).
"""
from __future__ import annotations

import argparse
import fcntl
import heapq
import itertools
import json
import os
import random
import select
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from typing import Any

from . import control
from .control import LabError
from .impair import DELIVER, Impairment, LinkDirection
from .lab import (
    IFACE,
    MGMT_IFACE,
    MGMT_LOCK,
    READY_TIMEOUT,
    REPO_ROOT,
    TUN_TXQUEUELEN,
    _ip,
    _kill_netns_pids,
    _killpg,
    _names,
    _root_10_231_octets,
    sweep_stale,
    unavailable_reason,
)
from .router import open_tun, tune_process

GAP_RECORDED_S = 0.3      # a gap between packets a link delivered this long is kept in the truth
GAPS_KEPT = 1000          # per link, and per RTP stream on a link
STREAMS_KEPT = 64         # RTP streams (SSRCs) per link whose gaps are kept
LINKS = ("up", "down")
MAX_PACKET = 65_535


def site_addr(i: int) -> str:
    return f"10.232.0.{i + 1}"


class StarLab:
    """Sites (namespaces) each behind its own impaired access link, and the router at the centre.
    `sites`: {name: impairment of its access link (both ways) | {"up": {...}, "down": {...}} | None}."""

    def __init__(self, sites: dict[str, Any], *, seed: int | None = None, kill_timeout: float = 3.0) -> None:
        if len(sites) < 3:
            raise LabError("a star has three sites or more")
        self.names = list(sites)
        self._initial = {s: _links(v) for s, v in sites.items()}
        self.seed = seed
        self.kill_timeout = kill_timeout
        n, pid = next(_names), os.getpid()
        # Named like Lab's namespaces (vksa-<pid>-<k>) so a crashed run's are swept by the next lab.
        self._ns = {s: f"vksa-{pid}-{100000 + n * 100 + i}" for i, s in enumerate(self.names)}
        self._tun = {s: f"vkt{pid}s{n}{i}" for i, s in enumerate(self.names)}
        self._veth = {s: f"vkm{pid}s{n}{i}" for i, s in enumerate(self.names)}
        for name in (*self._tun.values(), *self._veth.values()):
            if len(name) > 15:
                raise LabError(f"interface name {name!r} too long (pid {pid})")
        self._addr = {s: site_addr(i) for i, s in enumerate(self.names)}
        self._mgmt: dict[str, tuple[str, str]] = {}      # site -> (root end, site end)
        self._router: subprocess.Popen | None = None
        self._procs: list[subprocess.Popen] = []
        self._created: list[str] = []
        self.workdir: str | None = None
        self.control_path: str | None = None
        self.iface = IFACE

    # --- naming -------------------------------------------------------------------------------
    def ns(self, site: str) -> str:
        return self._ns[site]

    def addr(self, site: str) -> str:
        """The site's impaired address (its media goes through its access link)."""
        return self._addr[site]

    def mgmt_root(self, site: str) -> str:
        """The root namespace's end of the site's management veth (where a controller listens)."""
        return self._mgmt[site][0]

    def netns_argv(self, site: str, argv: Sequence[str]) -> list[str]:
        return ["ip", "netns", "exec", self.ns(site), *map(str, argv)]

    # --- lifecycle ----------------------------------------------------------------------------
    def __enter__(self) -> StarLab:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> StarLab:
        reason = unavailable_reason()
        if reason:
            raise LabError(reason)
        try:
            sweep_stale()
            self._start()
        except BaseException:
            self.close()
            raise
        return self

    def _start(self) -> None:
        self.workdir = tempfile.mkdtemp(prefix="vks-star-")
        self.control_path = os.path.join(self.workdir, "control.sock")
        for s in self.names:
            _ip("netns", "add", self.ns(s))
            self._created.append(self.ns(s))
        self._start_router()
        for s in self.names:
            ns, tun = self.ns(s), self._tun[s]
            _ip("link", "set", tun, "netns", ns)
            _ip("-n", ns, "link", "set", tun, "name", IFACE)
            _ip("-n", ns, "link", "set", IFACE, "addrgenmode", "none")
            _ip("-n", ns, "link", "set", IFACE, "txqueuelen", str(TUN_TXQUEUELEN))
            _ip("-n", ns, "addr", "add", f"{self.addr(s)}/24", "dev", IFACE)
            _ip("-n", ns, "link", "set", IFACE, "up")
            _ip("-n", ns, "link", "set", "lo", "up")
        os.makedirs(os.path.dirname(MGMT_LOCK), exist_ok=True)
        with open(MGMT_LOCK, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            free = [x for x in range(1, 251) if x not in _root_10_231_octets()]
            if not free:
                raise LabError("no free 10.231.X.0/24 management subnet in the root namespace")
            x = free[0]
            for i, s in enumerate(self.names):
                root_addr, site_end = f"10.231.{x}.{4 * i + 1}", f"10.231.{x}.{4 * i + 2}"
                ns, veth = self.ns(s), self._veth[s]
                _ip("link", "add", veth, "type", "veth", "peer", "name", MGMT_IFACE, "netns", ns)
                _ip("addr", "add", f"{root_addr}/30", "dev", veth)
                _ip("link", "set", veth, "up")
                _ip("-n", ns, "link", "set", MGMT_IFACE, "addrgenmode", "none")
                _ip("-n", ns, "addr", "add", f"{site_end}/30", "dev", MGMT_IFACE)
                _ip("-n", ns, "link", "set", MGMT_IFACE, "up")
                self._mgmt[s] = (root_addr, site_end)

    def _start_router(self) -> None:
        argv = [sys.executable, "-m", "tests.netlab.star", "--control", self.control_path,
                "--parent-pid", str(os.getpid()), "--config", json.dumps(self._initial),
                "--sites", json.dumps([[s, self._tun[s], self.addr(s)] for s in self.names])]
        if self.seed is not None:
            argv += ["--seed", str(self.seed)]
        env = dict(os.environ)
        env["PYTHONPATH"] = str(REPO_ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        log = open(os.path.join(self.workdir, "router.log"), "wb")   # noqa: SIM115 - the child keeps it
        self._router = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log,
                                        cwd=str(REPO_ROOT), env=env, start_new_session=True)
        log.close()
        assert self._router.stdout is not None
        r, _, _ = select.select([self._router.stdout], [], [], READY_TIMEOUT)
        line = self._router.stdout.readline() if r else b""
        try:
            assert json.loads(line).get("ready") is True
        except (ValueError, AssertionError):
            with open(os.path.join(self.workdir, "router.log"), "rb") as f:
                raise LabError(f"star router did not start: {f.read()[-2000:].decode(errors='replace')}") from None

    def close(self) -> None:
        for p in self._procs:
            if p.poll() is None:
                _killpg(p.pid, signal.SIGTERM)
        for p in self._procs:
            try:
                p.wait(timeout=self.kill_timeout)
            except subprocess.TimeoutExpired:
                _killpg(p.pid, signal.SIGKILL)
                p.wait(timeout=5)
        self._procs.clear()
        if self._router is not None and self._router.poll() is None:
            try:
                control.request(self.control_path, "shutdown", timeout=1.0)
                self._router.wait(timeout=2.0)
            except (LabError, subprocess.TimeoutExpired):
                self._router.kill()
                self._router.wait(timeout=5.0)
        if self._router is not None and self._router.stdout is not None:
            self._router.stdout.close()
        for ns in self._created:
            _kill_netns_pids(ns)
        for veth in self._veth.values():
            _ip("link", "del", veth, check=False)
        for ns in self._created:
            _ip("netns", "del", ns, check=False)
        self._created.clear()

    # --- processes and the links --------------------------------------------------------------
    def popen(self, site: str, argv: Sequence[str], **kw: Any) -> subprocess.Popen:
        """Start `argv` in the site's namespace (own session; stopped on close)."""
        kw.setdefault("start_new_session", True)
        kw.setdefault("stdin", subprocess.DEVNULL)
        p = subprocess.Popen(self.netns_argv(site, argv), **kw)
        self._procs.append(p)
        return p

    def run(self, site: str, argv: Sequence[str], timeout: float = 30.0) -> subprocess.CompletedProcess:
        return subprocess.run(self.netns_argv(site, argv), capture_output=True, text=True, timeout=timeout)

    def impair(self, site: str, link: str = "both", **params: Any) -> dict:
        """Replace the impairment of the site's access link (`up`: what it sends, `down`: what it
        receives, or `both`); the configuration in force."""
        return control.request(self.control_path, "impair", site=site, link=link, params=params)  # type: ignore[return-value]

    def blackout(self, site: str, link: str = "both", *, seconds: float, every: float | None = None,
                 times: int = 1) -> dict:
        """Black out the site's access link (`up`, `down` or `both`) for `seconds`, from now and then
        every `every` seconds, `times` times in all - timed by the router itself."""
        return control.request(self.control_path, "blackout", site=site, link=link, seconds=seconds,  # type: ignore[return-value]
                               every=every, times=times)

    def restore(self, site: str, link: str = "both") -> dict:
        """End the site's blackouts (a schedule too) now."""
        return control.request(self.control_path, "restore", site=site, link=link)  # type: ignore[return-value]

    def config(self) -> dict:
        return control.request(self.control_path, "config")  # type: ignore[return-value]

    def truth(self) -> dict:
        """Per site and link: packets in, dropped (loss, blackout, queue), delivered, and the gaps of
        GAP_RECORDED_S or more between the packets it delivered, timed as the router wrote them:
        of all of them (`gaps_s`) and of each RTP stream (`stream_gaps_s`, {SSRC: gaps})."""
        return control.request(self.control_path, "truth")  # type: ignore[return-value]


def _links(v: Any) -> dict[str, dict]:
    if v is None:
        return {k: {} for k in LINKS}
    if isinstance(v, dict) and set(v) <= set(LINKS) and v:
        return {k: dict(v.get(k) or {}) for k in LINKS}
    return {k: dict(v) for k in LINKS}


# --- the router ---------------------------------------------------------------------------------
def rtp_ssrc(pkt: bytes) -> int | None:
    """The SSRC of an IPv4/UDP datagram carrying RTP (SRTP leaves the header in the clear), else
    None: STUN, DTLS, RTCP (payload types 192-223) and anything not UDP."""
    ihl = (pkt[0] & 0x0F) * 4
    if pkt[9] != socket.IPPROTO_UDP or len(pkt) < ihl + 8 + 12:
        return None
    rtp = ihl + 8
    if not 128 <= pkt[rtp] < 192 or 64 <= pkt[rtp + 1] & 0x7F < 96:
        return None
    return int.from_bytes(pkt[rtp + 8:rtp + 12], "big")


class StarRouter:
    def __init__(self, sites: list[tuple[str, int, str]], control_path: str, parent_pid: int,
                 seed: int | None, initial: dict) -> None:
        self.site_of_fd = {fd: name for name, fd, _ in sites}
        self.fd_of = {name: fd for name, fd, _ in sites}
        self.site_of_addr = {socket.inet_aton(addr): name for name, _, addr in sites}
        self.parent_pid = parent_pid
        seed = seed if seed is not None else random.SystemRandom().randrange(2**32)
        self.links = {(s, k): LinkDirection(f"{s}:{k}", random.Random(f"{seed}:{s}:{k}"))
                      for s in self.fd_of for k in LINKS}
        self.counts = {key: {"packets": 0, "dropped": 0, "delivered": 0} for key in self.links}
        # Blackouts on a schedule (op "blackout"), and the gaps between packets each link delivered -
        # all its packets, and each RTP stream's (SSRC) on its own - timed when the router wrote them
        # to the receiving site (what the receiver's kernel sees, whatever the router's own lag).
        self.schedules: dict[tuple[str, str], dict[str, float]] = {}
        self.last_delivered: dict[tuple, float] = {}
        self.gaps: dict[tuple[str, str], list[float]] = {key: [] for key in self.links}
        self.stream_gaps: dict[tuple[str, str], dict[int, list[float]]] = {key: {} for key in self.links}
        for s, links in initial.items():
            for k, params in links.items():
                self.links[(s, k)].set_config(Impairment.from_dict(params))
        self.heap: list = []
        self.seq = itertools.count()
        self.stop = False
        self.lsock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.lsock.bind(control_path)
        self.lsock.listen(8)
        self.lsock.setblocking(False)
        self.clients: dict[socket.socket, bytearray] = {}

    def _hop(self, site: str, link: str, at: float, size: int) -> float | None:
        key = (site, link)
        c = self.counts[key]
        c["packets"] += 1
        sched = self.schedules.get(key)
        if sched is not None:
            k = int((at - sched["first"]) // sched["every"])
            start = sched["first"] + k * sched["every"]
            if 0 <= k < sched["times"] and at < start + sched["seconds"]:
                self.links[key].blackout_until = start + sched["seconds"]
        verdict, planned = self.links[key].decide(at, 0, size)
        if verdict != DELIVER:
            c["dropped"] += 1
            return None
        c["delivered"] += 1
        return planned

    def _delivered(self, src: str, dst: str, pkt: bytes, at: float) -> None:
        """Note the gaps a packet written at `at` ends: on its source's uplink and its
        destination's downlink, of all their packets and of its RTP stream."""
        ssrc = rtp_ssrc(pkt)
        for key in ((src, "up"), (dst, "down")):
            self._gap(key, self.gaps[key], at)
            if ssrc is not None:
                streams = self.stream_gaps[key]
                if ssrc in streams or len(streams) < STREAMS_KEPT:
                    self._gap((*key, ssrc), streams.setdefault(ssrc, []), at)

    def _gap(self, key: tuple, gaps: list[float], at: float) -> None:
        last = self.last_delivered.get(key)
        if last is not None and at - last >= GAP_RECORDED_S and len(gaps) < GAPS_KEPT:
            gaps.append(round(at - last, 4))
        self.last_delivered[key] = at

    def ingress(self, src: str, pkt: bytes) -> None:
        if len(pkt) < 20 or pkt[0] >> 4 != 4:
            return                                      # IPv4 only (the lab has no IPv6)
        dst = self.site_of_addr.get(pkt[16:20])
        if dst is None or dst == src:
            return
        now = time.monotonic()
        up = self._hop(src, "up", now, len(pkt))
        down = None if up is None else self._hop(dst, "down", up, len(pkt))
        if down is not None:
            heapq.heappush(self.heap, (down, next(self.seq), src, dst, pkt))

    def flush(self) -> None:
        while self.heap and self.heap[0][0] <= time.monotonic():
            _, _, src, dst, pkt = heapq.heappop(self.heap)
            try:
                os.write(self.fd_of[dst], pkt)
            except OSError:
                continue
            self._delivered(src, dst, pkt, time.monotonic())

    def handle(self, req: dict) -> object:
        op = req.get("op")
        if op == "impair":
            links = LINKS if req.get("link", "both") == "both" else (req["link"],)
            for k in links:
                self.links[(req["site"], k)].set_config(Impairment.from_dict(req.get("params") or {}))
            return self.config()
        if op == "blackout":
            links = LINKS if req.get("link", "both") == "both" else (req["link"],)
            seconds = float(req["seconds"])
            every = float(req.get("every") or seconds + 1.0)
            times = int(req.get("times") or 1)
            if not (0 < seconds < every and 1 <= times <= 100_000):
                raise ValueError(f"blackout: expected 0 < seconds < every and times >= 1, got {req}")
            for k in links:
                self.schedules[(req["site"], k)] = {"first": time.monotonic(), "seconds": seconds, "every": every,
                                                    "times": times}
            return self.config()
        if op == "restore":
            links = LINKS if req.get("link", "both") == "both" else (req["link"],)
            for k in links:
                self.schedules.pop((req["site"], k), None)
                self.links[(req["site"], k)].blackout_until = None
            return self.config()
        if op == "config":
            return self.config()
        if op == "truth":
            out: dict[str, dict] = {}
            for (s, k), c in self.counts.items():
                out.setdefault(s, {})[k] = {**c, "loss_ratio": round(c["dropped"] / c["packets"], 6)
                                            if c["packets"] else 0.0, "gaps_s": list(self.gaps[(s, k)]),
                                            "stream_gaps_s": {str(ssrc): list(g) for ssrc, g
                                                              in self.stream_gaps[(s, k)].items() if g}}
            return out
        if op == "shutdown":
            self.stop = True
            return {}
        raise ValueError(f"unknown op {op!r}")

    def config(self) -> dict:
        out: dict[str, dict] = {}
        for (s, k), link in self.links.items():
            out.setdefault(s, {})[k] = link.config.to_dict()
        return out

    def _client(self, conn: socket.socket) -> None:
        try:
            data = conn.recv(65536)
        except OSError:
            data = b""
        if not data:
            self.clients.pop(conn, None)
            conn.close()
            return
        buf = self.clients[conn]
        buf += data
        while b"\n" in buf:
            line, _, rest = bytes(buf).partition(b"\n")
            buf[:] = rest
            try:
                reply = {"ok": True, "result": self.handle(json.loads(line))}
            except Exception as exc:  # noqa: BLE001 - a bad request must not take the links down
                reply = {"ok": False, "error": "bad_request", "message": f"{type(exc).__name__}: {exc}"}
            conn.setblocking(True)
            conn.sendall(json.dumps(reply).encode() + b"\n")
            conn.setblocking(False)

    def run(self) -> None:
        fds = list(self.fd_of.values())
        next_check = time.monotonic() + 0.2
        while not self.stop:
            self.flush()
            now = time.monotonic()
            if now >= next_check:
                if os.getppid() != self.parent_pid:
                    return
                next_check = now + 0.2
            timeout = next_check - now
            if self.heap:
                timeout = min(timeout, self.heap[0][0] - now)
            readable, _, _ = select.select(fds + [self.lsock] + list(self.clients), [], [], max(0.0, timeout))
            for r in readable:
                if r is self.lsock:
                    try:
                        conn, _ = self.lsock.accept()
                    except OSError:
                        continue
                    conn.setblocking(False)
                    self.clients[conn] = bytearray()
                elif isinstance(r, int):
                    for _ in range(64):
                        try:
                            pkt = os.read(r, MAX_PACKET)
                        except (BlockingIOError, InterruptedError):
                            break
                        self.ingress(self.site_of_fd[r], pkt)
                        self.flush()
                else:
                    self._client(r)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.netlab.star")
    p.add_argument("--sites", required=True, help='JSON [[name, tun, address], ...]')
    p.add_argument("--control", required=True)
    p.add_argument("--parent-pid", type=int, default=os.getppid())
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--config", default="{}", help='JSON {site: {"up": {...}, "down": {...}}}')
    args = p.parse_args(argv)
    sites = [(name, open_tun(tun), addr) for name, tun, addr in json.loads(args.sites)]
    router = StarRouter(sites, args.control, args.parent_pid, args.seed, json.loads(args.config))
    tune_process(realtime=True)
    signal.signal(signal.SIGTERM, lambda *_: setattr(router, "stop", True))
    print(json.dumps({"ready": True, "pid": os.getpid()}), flush=True)
    router.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
