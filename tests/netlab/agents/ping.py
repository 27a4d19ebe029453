"""ICMP echo (raw socket, needs root) with a bounded count: RTT in milliseconds as JSON.

Used instead of iputils' ping so that the tests need no extra package.
Prints {"sent", "received", "rtt_ms": [...], "min", "p50", "mean", "max"}.
"""
import argparse
import json
import os
import select
import socket
import struct
import time


def checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    s = (s >> 16) + (s & 0xFFFF)
    s += s >> 16
    return ~s & 0xFFFF


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("dst")
    p.add_argument("--count", type=int, default=10)
    p.add_argument("--interval", type=float, default=0.1)
    p.add_argument("--timeout", type=float, default=2.0, help="wait for the last reply")
    a = p.parse_args()
    if not (0 < a.count <= 10_000 and 0.001 <= a.interval <= 10):
        p.error("count 1..10000, interval 0.001..10")
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    ident = os.getpid() & 0xFFFF
    sent_at: dict[int, float] = {}
    rtts: dict[int, float] = {}
    start = time.monotonic()
    next_send = start
    seq = 0
    end = None
    while True:
        now = time.monotonic()
        if seq < a.count and now >= next_send:
            body = struct.pack("!d", now) + bytes(48)
            hdr = struct.pack("!BBHHH", 8, 0, 0, ident, seq)
            pkt = struct.pack("!BBHHH", 8, 0, checksum(hdr + body), ident, seq) + body
            sent_at[seq] = time.monotonic()
            s.sendto(pkt, (a.dst, 0))
            seq += 1
            next_send += a.interval
            if seq == a.count:
                end = time.monotonic() + a.timeout
            continue
        if len(rtts) == a.count or (end is not None and now >= end):
            break
        wait = (next_send if seq < a.count else end) - now
        r, _, _ = select.select([s], [], [], max(0.0, wait))
        if not r:
            continue
        data = s.recv(2048)
        t = time.monotonic()
        ihl = (data[0] & 0x0F) * 4
        if len(data) < ihl + 8:
            continue
        typ, _code, _ck, rid, rseq = struct.unpack_from("!BBHHH", data, ihl)
        if typ == 0 and rid == ident and rseq in sent_at and rseq not in rtts:
            rtts[rseq] = (t - sent_at[rseq]) * 1000.0
    vals = sorted(rtts.values())
    out = {"sent": seq, "received": len(vals), "rtt_ms": [round(rtts[k], 3) for k in sorted(rtts)]}
    if vals:
        out.update({"min": round(vals[0], 3), "p50": round(vals[len(vals) // 2], 3),
                    "mean": round(sum(vals) / len(vals), 3), "max": round(vals[-1], 3)})
    print(json.dumps(out))


if __name__ == "__main__":
    main()
