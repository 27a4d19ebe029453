"""Run the stdlib agents across a lab: an RTP-like UDP stream and ICMP ping.

These give tests and benchmarks a reference receiver whose figures must match the
router's ground truth exactly (loss) or closely (jitter, delay).
"""
from __future__ import annotations

import json
import select
import subprocess
import sys
import time
from dataclasses import dataclass

from .agents import path as agent_path
from .control import LabError
from .lab import Lab


@dataclass
class StreamResult:
    sender: dict
    receiver: dict
    ssrc: int
    direction: str


def _read_json_line(proc: subprocess.Popen, timeout: float) -> dict:
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    buf = b""
    while not buf.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0:
            raise LabError("agent did not print its line in time")
        r, _, _ = select.select([proc.stdout], [], [], left)
        if r:
            chunk = proc.stdout.read1(65536) if hasattr(proc.stdout, "read1") else proc.stdout.read(1)
            if not chunk:
                raise LabError(f"agent exited early (rc={proc.poll()})")
            buf += chunk
    return json.loads(buf)


def udp_stream(lab: Lab, direction: str = "a>b", *, count: int = 500, pps: float = 100.0,
               port: int = 5004, ssrc: int = 0x1234ABCD, first_seq: int = 1000, size: int = 200,
               idle: float = 0.7, during=None) -> StreamResult:
    """Send ``count`` RTP-like packets from one side to the other; returns both reports.

    ``during``: optional callable run (in this thread) right after the sender starts, e.g.
    to change the impairment mid-stream; it gets the lab.
    """
    src, dst = direction.split(">")
    rx = lab.popen(dst, [sys.executable, agent_path("udp_recv"), "--port", port,
                         "--expect", count, "--first-seq", first_seq, "--idle", idle,
                         "--timeout", count / pps + 30],
                   stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        _read_json_line(rx, 10.0)  # {"ready": true}
        tx = lab.popen(src, [sys.executable, agent_path("udp_send"), "--dst", lab.addr(dst),
                             "--port", port, "--count", count, "--pps", pps, "--ssrc", hex(ssrc),
                             "--first-seq", first_seq, "--size", size],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        if during is not None:
            during(lab)
        tx_out, tx_err = tx.communicate(timeout=count / pps + 30)
        if tx.returncode != 0:
            raise LabError(f"udp_send failed: {tx_err.decode(errors='replace')}")
        rx_out, rx_err = rx.communicate(timeout=idle + 30)
        if rx.returncode != 0:
            raise LabError(f"udp_recv failed: {rx_err.decode(errors='replace')}")
    finally:
        if rx.poll() is None:
            rx.kill()
            rx.wait()
    return StreamResult(json.loads(tx_out), json.loads(rx_out), ssrc, direction)


def ping(lab: Lab, side: str = "a", *, count: int = 10, interval: float = 0.1,
         timeout: float = 2.0) -> dict:
    """ICMP echo from ``side`` to the other side's TUN address; RTT figures in ms."""
    r = lab.run(side, [sys.executable, agent_path("ping"), lab.peer_addr(side), "--count", str(count),
                       "--interval", str(interval), "--timeout", str(timeout)],
                timeout=count * interval + timeout + 20)
    if r.returncode != 0:
        raise LabError(f"ping failed: {r.stderr}")
    return json.loads(r.stdout)


def find_ssrc(truth: dict, direction: str, ssrc: int) -> dict:
    """The truth record of one RTP stream (any flow) in a direction."""
    for flow in truth["directions"][direction]["flows"]:
        for s in flow["ssrcs"]:
            if s["ssrc"] == ssrc:
                return s
    raise KeyError(f"no SSRC {ssrc:#x} in the truth of {direction}")
