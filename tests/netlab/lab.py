"""`Lab`: two network namespaces joined by the user-space impaired-link router.

    with Lab(impair={"a>b": {"delay_ms": 40}}) as lab:
        lab.run("a", ["python3", "-c", "..."], timeout=10)
        lab.impair("b>a", delay_ms=20, jitter_ms=5, loss=0.01)
        lab.blackout("both", seconds=2.0)
        truth = lab.truth()

See README.md in this folder for the address plan, the truth's layout and the precision.
"""
from __future__ import annotations

import asyncio
import fcntl
import itertools
import json
import math
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import control
from .control import ControlError, LabError
from .impair import DIRECTIONS, Impairment, check_direction

__all__ = ["Lab", "LabError", "ControlError", "unavailable_reason", "sweep_stale"]

REPO_ROOT = Path(__file__).resolve().parents[2]
NS_RE = re.compile(r"^(vks[ab])-(\d+)-(\d+)$")
ADDR_A = "10.231.0.1"
ADDR_B = "10.231.0.2"
IFACE = "vks0"  # the impaired interface inside each namespace
MGMT_IFACE = "mgmt0"  # the management veth inside each namespace
MGMT_LOCK = "/run/lock/vks-netlab.lock"
READY_TIMEOUT = 10.0
IP_TIMEOUT = 10.0
SIDES = ("a", "b")
TUN_TXQUEUELEN = 10_000  # packets the kernel holds for the router before it drops (default 500)

_names = itertools.count()  # unique lab numbers within this process (names only)


def unavailable_reason() -> str | None:
    """Why a lab cannot run here (None when it can): root, /dev/net/tun, iproute2."""
    if os.geteuid() != 0:
        return "netlab needs root (network namespaces, TUN devices)"
    if shutil.which("ip") is None:
        return "netlab needs `ip` (Debian package iproute2)"
    try:
        fd = os.open("/dev/net/tun", os.O_RDWR)
        os.close(fd)
    except OSError as exc:
        return f"netlab needs /dev/net/tun ({exc.strerror})"
    try:
        r = subprocess.run(["ip", "netns", "list"], capture_output=True, timeout=IP_TIMEOUT)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"`ip netns list` failed: {exc}"
    if r.returncode != 0:
        return f"`ip netns list` failed: {r.stderr.decode(errors='replace').strip()}"
    return None


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    r = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=IP_TIMEOUT)
    if check and r.returncode != 0:
        raise LabError(f"`ip {' '.join(args)}` failed: {r.stderr.strip()}")
    return r


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _netns_pids(ns: str) -> list[int]:
    r = _ip("netns", "pids", ns, check=False)
    return [int(x) for x in r.stdout.split() if x.isdigit()]


def _kill_netns_pids(ns: str) -> None:
    for pid in _netns_pids(ns):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def sweep_stale() -> list[str]:
    """Delete `vksa-*`/`vksb-*` namespaces left by labs whose process is dead."""
    removed = []
    r = _ip("netns", "list", check=False)
    for line in r.stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        m = NS_RE.match(name)
        if not m or _pid_alive(int(m.group(2))):
            continue
        _kill_netns_pids(name)
        if _ip("netns", "del", name, check=False).returncode == 0:
            removed.append(name)
    return removed


def _root_10_231_octets() -> set[int]:
    r = _ip("-4", "-o", "addr", "show", check=False)
    used = set()
    for m in re.finditer(r"inet 10\.231\.(\d+)\.\d+", r.stdout):
        used.add(int(m.group(1)))
    return used


def _impairments(impair: Any) -> dict[str, dict]:
    """Accepts None, an Impairment/dict for both directions, or {"a>b": ..., "b>a": ...}."""
    if impair is None:
        return {}
    if isinstance(impair, Impairment):
        return {d: impair.to_dict() for d in DIRECTIONS}
    if isinstance(impair, dict) and set(impair) <= set(DIRECTIONS) | {"both"}:
        out: dict[str, dict] = {}
        for d, v in impair.items():
            params = v.to_dict() if isinstance(v, Impairment) else Impairment.from_dict(dict(v)).to_dict()
            for dd in check_direction(d, allow_both=True):
                out[dd] = params
        return out
    if isinstance(impair, dict):
        params = Impairment.from_dict(dict(impair)).to_dict()
        return {d: params for d in DIRECTIONS}
    raise LabError(f"impair: expected None, Impairment or a dict, got {type(impair).__name__}")


def _impair_params(kw: dict) -> dict:
    if kw.get("ge") is not None:
        kw["ge"] = list(kw["ge"])
    Impairment.from_dict({k: (tuple(v) if k == "ge" and v is not None else v) for k, v in kw.items()})
    return kw


class Lab:
    """Two namespaces (sides ``"a"`` and ``"b"``) and the router between them.

    Parameters
    ----------
    impair: initial impairment: ``{"a>b": {...}, "b>a": {...}}`` (or ``"both"``), a single
        dict / :class:`Impairment` for both directions, or None for a clean link.
    mgmt: add an unimpaired management veth from each namespace to the root namespace.
    seed: seed of the loss / jitter generators (repeatable runs); None = random (reported).
    max_lifetime: the router exits by itself after this many seconds.
    realtime: ask for SCHED_FIFO for the router (better timing on a busy machine).
    kill_timeout: on close, how long processes get after SIGTERM before SIGKILL.
    """

    def __init__(self, impair: Any = None, *, mgmt: bool = False, seed: int | None = None,
                 max_lifetime: float = 7200.0, realtime: bool = True, kill_timeout: float = 3.0) -> None:
        self._initial = _impairments(impair)
        self.mgmt = mgmt
        self.seed = seed
        self.max_lifetime = max_lifetime
        self.realtime = realtime
        self.kill_timeout = kill_timeout
        n = next(_names)
        pid = os.getpid()
        self.ns_a = f"vksa-{pid}-{n}"
        self.ns_b = f"vksb-{pid}-{n}"
        self._tun_root = {"a": f"vkt{pid}-{n}a", "b": f"vkt{pid}-{n}b"}
        self._veth_root = {"a": f"vkm{pid}-{n}a", "b": f"vkm{pid}-{n}b"}
        for name in (*self._tun_root.values(), *self._veth_root.values()):
            if len(name) > 15:
                raise LabError(f"interface name {name!r} too long (pid {pid})")
        self.addr_a = ADDR_A
        self.addr_b = ADDR_B
        self.iface = IFACE
        self.mgmt_iface = MGMT_IFACE
        self.mgmt_root: str | None = None  # root namespace address reachable from a and b
        self.mgmt_root_a: str | None = None  # root end of a's veth (== mgmt_root)
        self.mgmt_root_b: str | None = None  # root end of b's veth
        self.mgmt_a: str | None = None  # a's own management address
        self.mgmt_b: str | None = None
        self.t0_monotonic: float | None = None
        self.t0_wall: float | None = None
        self.router_info: dict = {}
        self.workdir: str | None = None
        self.control_path: str | None = None
        self.router_log: str | None = None
        self._router: subprocess.Popen | None = None
        self._procs: list[subprocess.Popen] = []
        self._aprocs: list[asyncio.subprocess.Process] = []
        self._created_ns: list[str] = []
        self._started = False
        self._closed = False

    # ------------------------------------------------------------------ naming
    def ns(self, side: str) -> str:
        """Namespace name of side ``"a"`` or ``"b"``."""
        return {"a": self.ns_a, "b": self.ns_b}[self._side(side)]

    def addr(self, side: str) -> str:
        """The impaired (TUN) address of a side."""
        return {"a": self.addr_a, "b": self.addr_b}[self._side(side)]

    def peer_addr(self, side: str) -> str:
        return self.addr("b" if self._side(side) == "a" else "a")

    def mgmt_addr(self, side: str) -> str:
        if not self.mgmt:
            raise LabError("this lab has no management link (Lab(mgmt=True))")
        return {"a": self.mgmt_a, "b": self.mgmt_b}[self._side(side)]  # type: ignore[return-value]

    @staticmethod
    def _side(side: str) -> str:
        if side not in SIDES:
            raise LabError(f"side: expected 'a' or 'b', got {side!r}")
        return side

    def netns_argv(self, side: str, argv: Sequence[str]) -> list[str]:
        """``argv`` prefixed so that it runs inside the side's namespace."""
        return ["ip", "netns", "exec", self.ns(side), *map(str, argv)]

    # ------------------------------------------------------------------ lifecycle
    def __enter__(self) -> Lab:
        self.start()
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        try:
            self.close()
        except LabError:
            if exc_type is None:  # never hide the test's own failure behind a cleanup error
                raise

    async def __aenter__(self) -> Lab:
        await asyncio.to_thread(self.start)
        return self

    async def __aexit__(self, exc_type: object, *exc: object) -> None:
        try:
            await self.aclose()
        except LabError:
            if exc_type is None:
                raise

    def start(self) -> Lab:
        if self._started:
            raise LabError("lab already started")
        self._started = True
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
        self.workdir = tempfile.mkdtemp(prefix=f"vks-netlab-{self.ns_a}-")
        self.control_path = os.path.join(self.workdir, "control.sock")
        self.router_log = os.path.join(self.workdir, "router.log")
        for ns in (self.ns_a, self.ns_b):
            _ip("netns", "add", ns)
            self._created_ns.append(ns)
        self._start_router()
        for side in SIDES:
            ns, tun = self.ns(side), self._tun_root[side]
            _ip("link", "set", tun, "netns", ns)
            _ip("-n", ns, "link", "set", tun, "name", IFACE)
            _ip("-n", ns, "link", "set", IFACE, "addrgenmode", "none")  # no IPv6 link-local chatter
            _ip("-n", ns, "link", "set", IFACE, "txqueuelen", str(TUN_TXQUEUELEN))
            _ip("-n", ns, "addr", "add", self.addr(side), "peer", f"{self.peer_addr(side)}/32", "dev", IFACE)
            _ip("-n", ns, "link", "set", IFACE, "up")
            _ip("-n", ns, "link", "set", "lo", "up")
        if self.mgmt:
            self._start_mgmt()

    def _start_router(self) -> None:
        argv = [sys.executable, "-m", "tests.netlab.router",
                "--tun-a", self._tun_root["a"], "--tun-b", self._tun_root["b"],
                "--control", self.control_path, "--parent-pid", str(os.getpid()),
                "--max-lifetime", str(self.max_lifetime), "--config", json.dumps(self._initial)]
        if self.seed is not None:
            argv += ["--seed", str(self.seed)]
        if not self.realtime:
            argv.append("--no-realtime")
        env = dict(os.environ)
        env["PYTHONPATH"] = str(REPO_ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        with open(self.router_log, "wb") as log:  # type: ignore[arg-type]
            self._router = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                            stderr=log, cwd=str(REPO_ROOT), env=env,
                                            start_new_session=True)
        assert self._router.stdout is not None
        deadline = time.monotonic() + READY_TIMEOUT
        line = b""
        while not line.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0 or self._router.poll() is not None:
                break
            r, _, _ = select.select([self._router.stdout], [], [], min(left, 0.2))
            if r:
                chunk = os.read(self._router.stdout.fileno(), 4096)
                if not chunk:
                    break
                line += chunk
        try:
            info = json.loads(line)
            assert info.get("ready") is True
        except (ValueError, AssertionError):
            raise LabError(f"router did not start: {self._router_log_tail()}") from None
        self.router_info = info
        self.t0_monotonic = info["t0_monotonic"]
        self.t0_wall = info["t0_wall"]
        if self.seed is None:
            self.seed = info["seed"]

    def _router_log_tail(self) -> str:
        try:
            with open(self.router_log, "rb") as f:  # type: ignore[arg-type]
                return f.read()[-2000:].decode(errors="replace").strip() or "(no output)"
        except OSError:
            return "(no log)"

    def _start_mgmt(self) -> None:
        os.makedirs(os.path.dirname(MGMT_LOCK), exist_ok=True)
        with open(MGMT_LOCK, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            used = _root_10_231_octets()
            free = [x for x in range(1, 251) if x not in used]
            if not free:
                raise LabError("no free 10.231.X.0/29 management subnet in the root namespace")
            x = free[0]
            self.mgmt_root = self.mgmt_root_a = f"10.231.{x}.1"
            self.mgmt_a = f"10.231.{x}.2"
            self.mgmt_root_b = f"10.231.{x}.5"
            self.mgmt_b = f"10.231.{x}.6"
            plan = {"a": (self.mgmt_root_a, self.mgmt_a), "b": (self.mgmt_root_b, self.mgmt_b)}
            for side in SIDES:
                ns, veth = self.ns(side), self._veth_root[side]
                root_addr, ns_addr = plan[side]
                _ip("link", "add", veth, "type", "veth", "peer", "name", MGMT_IFACE, "netns", ns)
                _ip("addr", "add", f"{root_addr}/30", "dev", veth)
                _ip("link", "set", veth, "up")
                _ip("-n", ns, "link", "set", MGMT_IFACE, "addrgenmode", "none")
                _ip("-n", ns, "addr", "add", f"{ns_addr}/30", "dev", MGMT_IFACE)
                _ip("-n", ns, "link", "set", MGMT_IFACE, "up")
            # b reaches the one root address mgmt_root (on a's veth) through its own veth;
            # a likewise reaches mgmt_root_b. The root namespace does not forward between them.
            _ip("-n", self.ns_b, "route", "add", f"{self.mgmt_root}/32", "via", self.mgmt_root_b)
            _ip("-n", self.ns_a, "route", "add", f"{self.mgmt_root_b}/32", "via", self.mgmt_root_a)

    def close(self) -> None:
        """Stop everything this lab started and delete its namespaces. Idempotent."""
        if self._closed:
            return
        self._closed = True
        errors: list[str] = []
        self._stop_procs()
        if self._router is not None:
            if self._router.poll() is None:
                try:
                    control.request(self.control_path, "shutdown", timeout=1.0)  # type: ignore[arg-type]
                except LabError:
                    pass
                try:
                    self._router.wait(timeout=2.0)
                except subprocess.TimeoutExpired:
                    self._router.kill()
                    self._router.wait(timeout=5.0)
            if self._router.stdout is not None:
                self._router.stdout.close()
        for ns in self._created_ns:
            _kill_netns_pids(ns)
        for veth in self._veth_root.values():
            _ip("link", "del", veth, check=False)  # usually gone with its namespace already
        for ns in self._created_ns:
            r = _ip("netns", "del", ns, check=False)
            if r.returncode != 0:
                errors.append(f"netns del {ns}: {r.stderr.strip()}")
        self._created_ns.clear()
        if self.workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)
        if errors:
            raise LabError("lab cleanup incomplete: " + "; ".join(errors))

    async def aclose(self) -> None:
        """Async close: waits for processes started with :meth:`spawn`, then :meth:`close`."""
        for proc in self._aprocs:
            if proc.returncode is None:
                _killpg(proc.pid, signal.SIGTERM)
        for proc in self._aprocs:
            if proc.returncode is None:
                try:
                    await asyncio.wait_for(proc.wait(), self.kill_timeout)
                except TimeoutError:
                    _killpg(proc.pid, signal.SIGKILL)
                    try:
                        await asyncio.wait_for(proc.wait(), 5.0)
                    except TimeoutError:
                        pass
        await asyncio.to_thread(self.close)

    def _stop_procs(self) -> None:
        live = [p for p in self._procs if p.poll() is None]
        for p in live:
            _killpg(p.pid, signal.SIGTERM)
        deadline = time.monotonic() + self.kill_timeout
        for p in live:
            try:
                p.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _killpg(p.pid, signal.SIGKILL)
                try:
                    p.wait(timeout=5.0)
                except subprocess.TimeoutExpired:
                    pass
        for p in self._procs:
            for stream in (p.stdin, p.stdout, p.stderr):
                if stream is not None:
                    stream.close()
        for proc in self._aprocs:  # not awaited here (sync path): make sure they die
            if proc.returncode is None:
                _killpg(proc.pid, signal.SIGKILL)

    def _require_running(self) -> None:
        if not self._started or self._closed:
            raise LabError("lab is not running (use `with Lab() as lab:` or lab.start())")

    # ------------------------------------------------------------------ processes
    def popen(self, side: str, argv: Sequence[str], **kw: Any) -> subprocess.Popen:
        """Start ``argv`` in the side's namespace (own session; killed on close)."""
        self._require_running()
        kw.setdefault("start_new_session", True)
        kw.setdefault("stdin", subprocess.DEVNULL)
        p = subprocess.Popen(self.netns_argv(side, argv), **kw)
        self._procs.append(p)
        return p

    def run(self, side: str, argv: Sequence[str], timeout: float = 30.0, check: bool = False,
            **kw: Any) -> subprocess.CompletedProcess:
        """Run ``argv`` to completion in the side's namespace; output captured as text."""
        kw.setdefault("stdout", subprocess.PIPE)
        kw.setdefault("stderr", subprocess.PIPE)
        kw.setdefault("text", True)
        p = self.popen(side, argv, **kw)
        try:
            out, err = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            _killpg(p.pid, signal.SIGKILL)
            p.communicate(timeout=5.0)
            raise LabError(f"{argv!r} in {side} did not finish in {timeout} s") from None
        finally:
            self._procs.remove(p)
        cp = subprocess.CompletedProcess(p.args, p.returncode, out, err)
        if check:
            cp.check_returncode()
        return cp

    def python(self, side: str, script: str | os.PathLike, *args: Any, **kw: Any) -> subprocess.Popen:
        """Start a Python script (this interpreter) in the side's namespace."""
        return self.popen(side, [sys.executable, str(script), *map(str, args)], **kw)

    async def spawn(self, side: str, argv: Sequence[str], **kw: Any) -> asyncio.subprocess.Process:
        """asyncio variant of :meth:`popen`; the process is killed by ``aclose``/``close``."""
        self._require_running()
        kw.setdefault("start_new_session", True)
        kw.setdefault("stdin", asyncio.subprocess.DEVNULL)
        proc = await asyncio.create_subprocess_exec(*self.netns_argv(side, argv), **kw)
        self._aprocs.append(proc)
        return proc

    def iface_stats(self, side: str, iface: str | None = None) -> dict:
        """Kernel counters of a side's interface (``ip -s -j link``): ``{"rx": {...}, "tx": {...}}``.

        ``tx.dropped`` on ``vks0`` counts packets the kernel dropped before the router read
        them (its queue full): those are not in the truth, so a test can assert it is 0.
        """
        r = _ip("-n", self.ns(side), "-s", "-j", "link", "show", iface or IFACE)
        info = json.loads(r.stdout)[0]
        stats = info.get("stats64") or info.get("stats") or {}
        return {"rx": stats.get("rx", {}), "tx": stats.get("tx", {})}

    # ------------------------------------------------------------------ control
    def _router_gone(self, exc: LabError) -> LabError:
        if isinstance(exc, ControlError) or self._router is None or self._router.poll() is None:
            return exc
        return LabError(f"the router exited (rc={self._router.returncode}): {self._router_log_tail()}")

    def _req(self, op: str, **fields: Any) -> Any:
        self._require_running()
        try:
            return control.request(self.control_path, op, **fields)  # type: ignore[arg-type]
        except LabError as exc:
            raise self._router_gone(exc) from exc

    async def _areq(self, op: str, **fields: Any) -> Any:
        self._require_running()
        try:
            return await control.arequest(self.control_path, op, **fields)  # type: ignore[arg-type]
        except LabError as exc:
            raise self._router_gone(exc) from exc

    def impair(self, direction: str, **params: Any) -> dict:
        """Replace the impairment of ``'a>b'``, ``'b>a'`` or ``'both'`` (unset fields = clean).

        Params: delay_ms, jitter_ms, jitter_dist ('normal'|'uniform'), loss (0..1),
        ge=(p_gb, p_bg, loss_bad, loss_good), reorder (bool), queue_limit (packets),
        rate_kbps (bottleneck capacity, 0 = none), buffer_ms (its drop-tail buffer).
        Semantics: impair.py's docstring and README.md.
        Returns the configuration now in force.
        """
        check_direction(direction, allow_both=True)
        return self._req("impair", dir=direction, params=_impair_params(params))

    async def aimpair(self, direction: str, **params: Any) -> dict:
        check_direction(direction, allow_both=True)
        return await self._areq("impair", dir=direction, params=_impair_params(params))

    def blackout(self, direction: str = "both", seconds: float | None = None) -> dict:
        """Drop every packet of the direction(s) from now for ``seconds`` (None: until restore)."""
        check_direction(direction, allow_both=True)
        return self._req("blackout", dir=direction, seconds=seconds)

    async def ablackout(self, direction: str = "both", seconds: float | None = None) -> dict:
        check_direction(direction, allow_both=True)
        return await self._areq("blackout", dir=direction, seconds=seconds)

    def restore(self, direction: str = "both") -> dict:
        """End a blackout now."""
        return self._req("restore", dir=direction)

    async def arestore(self, direction: str = "both") -> dict:
        return await self._areq("restore", dir=direction)

    def clear(self) -> dict:
        """Clean link both ways: no delay, loss or blackout."""
        return self._req("clear")

    async def aclear(self) -> dict:
        return await self._areq("clear")

    def config(self) -> dict:
        return self._req("config")

    async def aconfig(self) -> dict:
        return await self._areq("config")

    def truth(self, series: bool = True) -> dict:
        """The router's ground truth since start or the last :meth:`truth_reset`."""
        return self._req("truth", series=series)

    async def atruth(self, series: bool = True) -> dict:
        return await self._areq("truth", series=series)

    def truth_reset(self) -> float:
        """Start a fresh record; returns its start (seconds since lab start)."""
        return self._req("reset")["record_start"]

    async def atruth_reset(self) -> float:
        return (await self._areq("reset"))["record_start"]

    def now(self) -> float:
        """Seconds since lab start on the router's clock (CLOCK_MONOTONIC, shared)."""
        return time.monotonic() - (self.t0_monotonic or math.nan)


def _killpg(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        try:
            os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass
