"""Terminal health (rule 14): is this terminal's equipment in working order?

`check_health(settings, previous=None)` reads the machine (psutil, /dev, /proc,
/sys, the local time daemon; no network calls) in a worker thread and returns a
JSON-able dict, `vks.health/1`:

    {"schema", "terminal_id", "checked_at", "status": "ok"|"warn"|"fail", "problems": [str],
     "cpu": {"percent", "count", "load": [1, 5, 15 min], "load_per_cpu"},
     "memory": {"total_bytes", "used_bytes", "available_bytes", "used_ratio"},
     "disk": [{"mount", "purposes", "total_bytes", "used_bytes", "free_bytes", "used_ratio"}],
     "network": {"default_interface", "monotonic_s", "interval_s",
                 "interfaces": {name: {"up", "speed_mbps", "mtu", "duplex", "addresses",
                                       "counters": {...}, "delta": {...}|None}}},
     "camera": {"present", "status", "method": "presence", "devices": [{"path", "name"}]},
     "microphone": {"present", "status", "method": "presence", "cards": [str], "capture_devices": [str]},
     "clock": {"synchronized", "offset_s", "max_error_s", "source", "reason"},
     "agent": {"pid", "rss_bytes", "threads"}}

A camera or microphone configured in `devices` is opened and read instead (agent/devices.py: its
reading with `method` "probe", `status` ok|missing|denied|black|frozen|silent|error and the figures
it was judged by); a black or frozen picture or a silent microphone fails the check.

Network deltas are counted since `previous` (the last result); `HealthChecker`
keeps it between calls. `evaluate(readings, cfg)` is the pure judgement,
tested alone with injected readings.
"""
from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import glob
import logging
import os
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil

from agent import devices
from agent.settings import AgentSettings, HealthSettings
from contract.vocab import DeviceStatus, HealthStatus, worst

SCHEMA = "vks.health/1"
log = logging.getLogger(__name__)
COUNTERS = ("bytes_sent", "bytes_recv", "packets_sent", "packets_recv", "errin", "errout", "dropin", "dropout")


# --- readings (I/O, blocking: run in a thread) ---------------------------------

def read_cpu(sample_s: float) -> dict[str, Any]:
    """CPU busy percent over `sample_s`, CPU count and load averages."""
    count = psutil.cpu_count() or 1
    percent = psutil.cpu_percent(interval=sample_s)
    load = list(os.getloadavg())
    return {"percent": percent, "count": count, "load": [round(x, 2) for x in load],
            "load_per_cpu": round(load[0] / count, 3)}


def read_memory() -> dict[str, Any]:
    """Memory in use (what applications cannot have) and its ratio."""
    vm = psutil.virtual_memory()
    used = vm.total - vm.available        # what applications cannot have
    return {"total_bytes": vm.total, "used_bytes": used, "available_bytes": vm.available,
            "used_ratio": round(used / vm.total, 4) if vm.total else None}


def _existing(path: Path) -> Path:
    """The path, or its nearest existing ancestor (the outbox may not exist yet)."""
    p = path.absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def _mount_point(path: Path) -> str:
    p = os.path.realpath(path)
    while not os.path.ismount(p):
        p = os.path.dirname(p)
    return p


def read_disks(paths: Mapping[str, Path]) -> list[dict[str, Any]]:
    """Usage of the mounts holding each path ({purpose: path}), one entry per mount."""
    by_mount: dict[str, dict[str, Any]] = {}
    for purpose, path in paths.items():
        existing = _existing(Path(path))
        mount = _mount_point(existing)
        entry = by_mount.get(mount)
        if entry is None:
            try:
                du = psutil.disk_usage(str(existing))
            except OSError as exc:
                entry = {"mount": mount, "purposes": [], "error": exc.strerror or str(exc)}
            else:
                usable = du.used + du.free     # excludes blocks reserved for root
                entry = {"mount": mount, "purposes": [], "total_bytes": du.total, "used_bytes": du.used,
                         "free_bytes": du.free, "used_ratio": round(du.used / usable, 4) if usable else None}
            by_mount[mount] = entry
        entry["purposes"].append(purpose)
    return list(by_mount.values())


def default_route_interface(route_file: str = "/proc/net/route") -> str | None:
    """The interface of the IPv4 default route, from /proc/net/route."""
    try:
        with open(route_file, encoding="ascii") as fh:
            next(fh, None)
            for line in fh:
                fields = line.split()
                if len(fields) > 3 and fields[1] == "00000000" and int(fields[3], 16) & 0x1:
                    return fields[0]
    except OSError:
        return None
    return None


def read_network(previous: Mapping[str, Any] | None) -> dict[str, Any]:
    """Every interface's state, addresses and counters, with deltas since `previous`."""
    now = time.monotonic()
    stats = psutil.net_if_stats()
    counters = psutil.net_io_counters(pernic=True)
    addrs = psutil.net_if_addrs()
    prev_ifaces = ((previous or {}).get("interfaces") or {}) if previous else {}
    prev_t = (previous or {}).get("monotonic_s")
    out: dict[str, Any] = {}
    for name in sorted(set(stats) | set(counters)):
        st = stats.get(name)
        c = counters.get(name)
        now_c = {k: getattr(c, k) for k in COUNTERS} if c else None
        before = (prev_ifaces.get(name) or {}).get("counters")
        delta = None
        if now_c and before:
            delta = {k: now_c[k] - before.get(k, 0) for k in COUNTERS}
            if any(v < 0 for v in delta.values()):   # counters reset: interface re-created
                delta = None
        out[name] = {
            "up": bool(st.isup) if st else None,
            "speed_mbps": (st.speed or None) if st else None,      # 0: unknown (virtual links)
            "mtu": st.mtu if st else None,
            "duplex": {psutil.NIC_DUPLEX_FULL: "full", psutil.NIC_DUPLEX_HALF: "half"}.get(st.duplex)
            if st else None,
            "loopback": "loopback" in getattr(st, "flags", "") if st else name == "lo",
            "addresses": [a.address for a in addrs.get(name, ())
                          if a.family in (socket.AF_INET, socket.AF_INET6)],
            "counters": now_c,
            "delta": delta,
        }
    return {"default_interface": default_route_interface(), "monotonic_s": now,
            "interval_s": round(now - prev_t, 3) if isinstance(prev_t, (int, float)) else None,
            "interfaces": out}


def read_camera(dev_glob: str = "/dev/video*") -> dict[str, Any]:
    """Video devices (/dev/video*) and their names."""
    devices = []
    for path in sorted(glob.glob(dev_glob)):
        name_file = Path("/sys/class/video4linux") / Path(path).name / "name"
        try:
            name = name_file.read_text(encoding="utf-8").strip()
        except OSError:
            name = None
        devices.append({"path": path, "name": name})
    return {"present": bool(devices), "devices": devices}


def read_microphone(asound: str = "/proc/asound", snd_dev: str = "/dev/snd") -> dict[str, Any]:
    """ALSA capture devices: /dev/snd/pcmC*D*c, or capture PCMs listed in /proc/asound/pcm."""
    cards: list[str] = []
    try:
        text = Path(asound, "cards").read_text(encoding="utf-8", errors="replace")
        cards = [m.group(1).strip() for m in re.finditer(r"^\s*\d+\s+\[[^\]]*\]:\s*(.+)$", text, re.M)]
    except OSError:
        pass
    capture = sorted(glob.glob(os.path.join(snd_dev, "pcmC*D*c")))
    if not capture:
        try:
            pcm = Path(asound, "pcm").read_text(encoding="utf-8", errors="replace")
            capture = [line.split(":")[0].strip() for line in pcm.splitlines() if "capture" in line]
        except OSError:
            pass
    return {"present": bool(capture), "cards": cards, "capture_devices": capture}


def _run(cmd: list[str], timeout: float = 2.0) -> str | None:
    if not shutil.which(cmd[0]):
        return None
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.SubprocessError):
        return None
    return res.stdout if res.returncode == 0 else None


_CHRONY_SYSTEM = re.compile(r"^System time\s*:\s*([\d.]+) seconds (slow|fast)", re.M)
_CHRONY_LEAP = re.compile(r"^Leap status\s*:\s*(.+)$", re.M)
_TIMESYNC_OFFSET = re.compile(r"^\s*Offset:\s*([+-]?[\d.]+)(us|ms|s)\b", re.M)


def parse_chrony_tracking(text: str) -> dict[str, Any] | None:
    """`chronyc tracking` -> offset of the system clock (local - true: slow is negative)."""
    m = _CHRONY_SYSTEM.search(text)
    if not m:
        return None
    offset = float(m.group(1)) * (-1 if m.group(2) == "slow" else 1)
    leap = _CHRONY_LEAP.search(text)
    synced = leap is None or leap.group(1).strip() != "Not synchronised"
    return {"synchronized": synced, "offset_s": offset, "max_error_s": None, "source": "chronyc",
            "reason": None if synced else "chronyd is not synchronised"}


def parse_timesync_status(text: str) -> dict[str, Any] | None:
    """`timedatectl timesync-status` (systemd-timesyncd) -> offset."""
    m = _TIMESYNC_OFFSET.search(text)
    if not m:
        return None
    scale = {"us": 1e-6, "ms": 1e-3, "s": 1.0}[m.group(2)]
    return {"synchronized": True, "offset_s": float(m.group(1)) * scale, "max_error_s": None,
            "source": "timedatectl", "reason": None}


class _Timeval(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_usec", ctypes.c_long)]


class _Timex(ctypes.Structure):
    """struct timex (Linux, <sys/timex.h>)."""
    _fields_ = [("modes", ctypes.c_uint), ("offset", ctypes.c_long), ("freq", ctypes.c_long),
                ("maxerror", ctypes.c_long), ("esterror", ctypes.c_long), ("status", ctypes.c_int),
                ("constant", ctypes.c_long), ("precision", ctypes.c_long), ("tolerance", ctypes.c_long),
                ("time", _Timeval), ("tick", ctypes.c_long), ("ppsfreq", ctypes.c_long),
                ("jitter", ctypes.c_long), ("shift", ctypes.c_int), ("stabil", ctypes.c_long),
                ("jitcnt", ctypes.c_long), ("calcnt", ctypes.c_long), ("errcnt", ctypes.c_long),
                ("stbcnt", ctypes.c_long), ("tai", ctypes.c_int), ("_pad", ctypes.c_int * 11)]


_STA_UNSYNC, _STA_NANO, _TIME_ERROR = 0x0040, 0x2000, 5


def read_kernel_clock() -> dict[str, Any] | None:
    """adjtimex(2) read-only: the kernel's NTP state (set by whichever daemon disciplines it)."""
    libc_name = ctypes.util.find_library("c")
    if not libc_name:
        return None
    try:
        libc = ctypes.CDLL(libc_name, use_errno=True)
        tx = _Timex()
        state = libc.adjtimex(ctypes.byref(tx))
    except (OSError, AttributeError):
        return None
    if state < 0:
        return None
    synced = state != _TIME_ERROR and not tx.status & _STA_UNSYNC
    unit = 1e-9 if tx.status & _STA_NANO else 1e-6
    return {"synchronized": synced,
            "offset_s": tx.offset * unit if synced else None,
            "max_error_s": tx.maxerror * 1e-6 if synced else None,
            "source": "adjtimex",
            "reason": None if synced else "kernel clock not synchronised (no NTP daemon is disciplining it)"}


def read_clock() -> dict[str, Any]:
    """Clock offset from the local time daemon (chronyd, systemd-timesyncd) or the kernel; no network."""
    for cmd, parse in ((["chronyc", "-n", "tracking"], parse_chrony_tracking),
                       (["timedatectl", "timesync-status"], parse_timesync_status)):
        out = _run(cmd)
        if out:
            got = parse(out)
            if got:
                return got
    got = read_kernel_clock()
    if got:
        return got
    return {"synchronized": None, "offset_s": None, "max_error_s": None, "source": None,
            "reason": "no time daemon status available (chronyc, timedatectl, adjtimex)"}


def read_devices(settings: AgentSettings, previous: Mapping[str, Any] | None = None,
                 in_use: bool = False) -> dict[str, Any]:
    """{"camera", "microphone"}: a configured device (settings `devices`) opened and read
    (agent/devices.py) - again once `health.device_interval_s` has passed since `previous`'s
    reading, else that one stands; a device not configured, by its device nodes. `in_use`: a
    session of this agent sends the devices now - `previous`'s readings stand (marked `in_use`),
    or the device nodes are looked at, rather than the session's devices opened twice."""
    now = time.monotonic()
    due, out = [], {}
    for name in devices.DEVICES:
        source = getattr(settings.devices, name)
        before = (previous or {}).get(name) or {}
        if source is None:
            found = read_camera() if name == "camera" else read_microphone()
            out[name] = {**found, "status": DeviceStatus.OK if found["present"] else DeviceStatus.MISSING,
                         "method": "presence"}
        elif (before.get("method") == "probe" and before.get("file") == source.file
              and (in_use or now - before.get("monotonic_s", -1e9) < settings.health.device_interval_s)):
            out[name] = {**before, **({"in_use": True} if in_use else {})}
        elif in_use:
            found = read_camera() if name == "camera" else read_microphone()
            out[name] = {**found, "status": DeviceStatus.OK if found["present"] else DeviceStatus.MISSING,
                         "method": "presence", "in_use": True}
        else:
            due.append(name)
    if due:
        out.update(devices.probe_devices(settings.devices, settings.health, tuple(due)))
    return out


def read_agent_process() -> dict[str, Any]:
    """This agent's own pid, resident memory and thread count."""
    p = psutil.Process()
    with p.oneshot():
        return {"pid": p.pid, "rss_bytes": p.memory_info().rss, "threads": p.num_threads()}


def disk_paths(settings: AgentSettings) -> dict[str, Path]:
    """{purpose: path} of every disk checked: the root, the outbox's and the configured ones."""
    paths: dict[str, Path] = {"root": Path("/"), "outbox": settings.controller.outbox_path.parent}
    for p in settings.health.disk_paths:
        paths[str(p)] = p
    return paths


def read_all(settings: AgentSettings, previous: Mapping[str, Any] | None = None,
             devices_in_use: bool = False) -> dict[str, Any]:
    """Every reading (blocking); `devices_in_use`: see read_devices."""
    cfg = settings.health
    return {
        "schema": SCHEMA,
        "terminal_id": settings.terminal_id,
        "checked_at": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "cpu": read_cpu(cfg.cpu_sample_s),
        "memory": read_memory(),
        "disk": read_disks(disk_paths(settings)),
        "network": read_network((previous or {}).get("network")),
        **read_devices(settings, previous, devices_in_use),
        "clock": read_clock(),
        "agent": read_agent_process(),
    }


# --- judgement (pure) -----------------------------------------------------------

def _gib(n: float) -> str:
    return f"{n / 1024 ** 3:.1f} GiB" if n >= 1024 ** 3 else f"{n / 1024 ** 2:.0f} MiB"


FAIL, WARN = HealthStatus.FAIL, HealthStatus.WARN


def evaluate(readings: Mapping[str, Any], cfg: HealthSettings) -> tuple[HealthStatus, list[str]]:
    """(status, problems) of a set of readings: "fail" problems first, then "warn"."""
    found: list[tuple[HealthStatus, str]] = []

    def add(level: HealthStatus, text: str) -> None:
        if level != HealthStatus.OK:
            found.append((level, text))

    cpu = readings.get("cpu") or {}
    pct = cpu.get("percent")
    if pct is not None:
        if pct >= cfg.cpu_fail_percent:
            add(FAIL, f"CPU busy {pct:.0f}% >= {cfg.cpu_fail_percent:.0f}%")
        elif pct >= cfg.cpu_warn_percent:
            add(WARN, f"CPU busy {pct:.0f}% >= {cfg.cpu_warn_percent:.0f}%")
    lpc = cpu.get("load_per_cpu")
    if lpc is not None and lpc >= cfg.load_per_cpu_warn:
        add(WARN, f"load {lpc:.1f} per CPU >= {cfg.load_per_cpu_warn:.1f}")

    mem = readings.get("memory") or {}
    ratio = mem.get("used_ratio")
    if ratio is not None:
        for level, limit in ((FAIL, cfg.memory_fail_ratio), (WARN, cfg.memory_warn_ratio)):
            if ratio >= limit:
                add(level, f"memory {ratio:.0%} used >= {limit:.0%}")
                break

    for d in readings.get("disk") or ():
        where = f"disk {d.get('mount')} ({', '.join(d.get('purposes') or ())})"
        if d.get("error"):
            add(FAIL, f"{where}: cannot read usage: {d['error']}")
            continue
        ratio, free = d.get("used_ratio"), d.get("free_bytes")
        level = HealthStatus.OK
        if ratio is not None and ratio >= cfg.disk_fail_ratio or free is not None and free < cfg.disk_fail_free_bytes:
            level = FAIL
        elif ratio is not None and ratio >= cfg.disk_warn_ratio or free is not None and free < cfg.disk_warn_free_bytes:
            level = WARN
        if level != HealthStatus.OK:
            used = "usage unknown" if ratio is None else f"{ratio:.0%} used"
            add(level, f"{where} {used}, {'?' if free is None else _gib(free)} free")

    net = readings.get("network") or {}
    ifaces: Mapping[str, Any] = net.get("interfaces") or {}
    required = list(cfg.interfaces) or ([net["default_interface"]] if net.get("default_interface") else [])
    if not required:
        if not any(i.get("up") and not i.get("loopback") for i in ifaces.values()):
            add(FAIL, "network: no interface up besides loopback")
        else:
            add(WARN, "network: no default route")
    for name in required:
        i = ifaces.get(name)
        if i is None:
            add(FAIL, f"network interface {name} missing")
        elif not i.get("up"):
            add(FAIL, f"network interface {name} down")
        elif cfg.min_speed_mbps and i.get("speed_mbps") and i["speed_mbps"] < cfg.min_speed_mbps:
            add(WARN, f"network interface {name} at {i['speed_mbps']} Mbit/s < {cfg.min_speed_mbps} Mbit/s")
    for name, i in sorted(ifaces.items()):
        delta = i.get("delta")
        if i.get("loopback") or not delta or (name not in required and not i.get("up")):
            continue
        errors = delta.get("errin", 0) + delta.get("errout", 0)
        if errors >= cfg.net_errors_warn:
            add(WARN, f"network interface {name}: {errors} errors since the last check "
                        f"(in {delta.get('errin', 0)}, out {delta.get('errout', 0)})")
        packets = delta.get("packets_recv", 0) + delta.get("packets_sent", 0)
        drops = delta.get("dropin", 0) + delta.get("dropout", 0)
        if drops and drops / max(packets + drops, 1) >= cfg.net_drop_ratio_warn:
            add(WARN, f"network interface {name}: {drops} packets dropped of {packets + drops} "
                        f"since the last check")

    for name, level, missing in (("camera", cfg.camera_missing, "camera: no video device (/dev/video*)"),
                                 ("microphone", cfg.microphone_missing, "microphone: no ALSA capture device")):
        device = readings.get(name) or {}
        if device.get("method") == "probe":       # opened and read (agent/devices.py)
            for lvl, text in devices.device_problems(name, device, cfg):
                add(lvl, text)
        elif not device.get("present", False):
            add(level, missing)

    clock = readings.get("clock") or {}
    offset = clock.get("offset_s")
    if clock.get("synchronized") is False:
        add(cfg.clock_unsynchronised, f"clock: {clock.get('reason') or 'not synchronised'}")
    if offset is not None:
        if abs(offset) >= cfg.clock_offset_fail_s:
            add(FAIL, f"clock off by {offset:+.3f} s (limit {cfg.clock_offset_fail_s:g} s)")
        elif abs(offset) >= cfg.clock_offset_warn_s:
            add(WARN, f"clock off by {offset:+.3f} s (limit {cfg.clock_offset_warn_s:g} s)")

    status = worst(HealthStatus, (lvl for lvl, _ in found), HealthStatus.OK)
    problems = [t for lvl, t in found if lvl == FAIL] + [t for lvl, t in found if lvl == WARN]
    return status, problems


# --- the check --------------------------------------------------------------------

def check_health_sync(settings: AgentSettings, previous: Mapping[str, Any] | None = None,
                      devices_in_use: bool = False) -> dict[str, Any]:
    """One health check (blocking: run it in a thread)."""
    readings = read_all(settings, previous, devices_in_use)
    status, problems = evaluate(readings, settings.health)
    return {**readings, "status": status, "problems": problems}


async def check_health(settings: AgentSettings, previous: Mapping[str, Any] | None = None,
                       devices_in_use: bool = False) -> dict[str, Any]:
    """One health check, the blocking reads in a worker thread.

    `previous`: the last result, for network counter deltas and the devices' last readings (None:
    no deltas); `devices_in_use`: a session of this agent sends the devices now (read_devices).
    """
    return await asyncio.to_thread(check_health_sync, settings, previous, devices_in_use)


class HealthChecker:
    """Keeps the last result so that each check reports deltas since the one before."""

    def __init__(self, settings: AgentSettings, devices_in_use: Callable[[], bool] = lambda: False):
        self.settings = settings
        self.devices_in_use = devices_in_use
        self.last: dict[str, Any] | None = None

    async def check(self) -> dict[str, Any]:
        """Check now (in a worker thread); deltas since the previous check."""
        self.last = await check_health(self.settings, self.last, self.devices_in_use())
        return self.last

    async def check_or_unknown(self) -> dict[str, Any]:
        """`check()` that never raises: a check that breaks reads as status "unknown"."""
        try:
            return await self.check()
        except Exception as exc:       # a broken check must not break the link or the monitor
            log.warning("health check failed: %s", exc)
            return {"status": "unknown", "problems": [f"health check failed: {exc}"]}
