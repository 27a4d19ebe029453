"""Receive an RTP-like stream from udp_send.py and report what a receiver can know.

Prints {"ready": true} once bound, then, when done, one JSON object:
received, duplicates, lost (from sequence gaps, extended per RFC 3550; with --expect
the tail counts too: lost = expect - unique), lost_seqs, jitter_ms (RFC 3550 over
one-way transit = arrival - the sender's monotonic stamp), delay_ms (mean/p50/max of
that transit) and the per-second arrivals.
Stops after --expect packets, --idle seconds of silence after the first packet, or
--timeout seconds in all.
"""
import argparse
import json
import socket
import struct
import time


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--bind", default="0.0.0.0")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--expect", type=int, default=0, help="packets the sender sends (0: unknown)")
    p.add_argument("--first-seq", type=int, default=None, help="first sequence number sent")
    p.add_argument("--timeout", type=float, default=30.0)
    p.add_argument("--idle", type=float, default=2.0)
    a = p.parse_args()
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    s.bind((a.bind, a.port))
    print(json.dumps({"ready": True}), flush=True)
    start = time.monotonic()
    first_arrival = None
    last_arrival = None
    seen: set[int] = set()
    dup = 0
    ext_max = None
    jitter = 0.0
    last_transit = None
    delays: list[float] = []
    per_second: dict[int, int] = {}
    while True:
        now = time.monotonic()
        limit = start + a.timeout
        if last_arrival is not None:
            limit = min(limit, last_arrival + a.idle)
        if now >= limit or (a.expect and len(seen) >= a.expect):
            break
        s.settimeout(limit - now)
        try:
            data = s.recv(2048)
        except TimeoutError:
            break
        arrival_ns = time.monotonic_ns()
        arrival = arrival_ns / 1e9
        if len(data) < 20 or data[0] >> 6 != 2:
            continue
        seq = struct.unpack_from("!H", data, 2)[0]
        sent_ns = struct.unpack_from("!q", data, 12)[0]
        if ext_max is None:
            ext = seq
            ext_max = ext
        else:
            delta = (seq - (ext_max & 0xFFFF)) & 0xFFFF
            ext = ext_max + delta if delta < 0x8000 else ext_max - (0x10000 - delta)
            ext_max = max(ext_max, ext)
        if ext in seen:
            dup += 1
            continue
        seen.add(ext)
        first_arrival = first_arrival or arrival
        last_arrival = arrival
        transit = (arrival_ns - sent_ns) / 1e6
        delays.append(transit)
        if last_transit is not None:
            jitter += (abs(transit - last_transit) - jitter) / 16.0
        last_transit = transit
        sec = int(arrival - start)
        per_second[sec] = per_second.get(sec, 0) + 1
    s.close()
    if seen:
        lo = min(seen)
        if a.first_seq is not None:  # align the first expected number with the seen ones
            lo = min(seen) - ((min(seen) - a.first_seq) & 0xFFFF)
        hi = max(seen)
        if a.expect:
            hi = lo + a.expect - 1
        lost_seqs = [x & 0xFFFF for x in range(lo, hi + 1) if x not in seen]
    else:
        lost_seqs = list(range(a.expect))
    delays.sort()
    out = {
        "received": len(seen), "duplicates": dup, "lost": len(lost_seqs),
        "lost_seqs": lost_seqs[:10000],
        "jitter_ms": round(jitter, 4),
        "delay_ms": {"mean": round(sum(delays) / len(delays), 3) if delays else None,
                     "p50": round(delays[len(delays) // 2], 3) if delays else None,
                     "max": round(delays[-1], 3) if delays else None},
        "per_second": [{"t": k, "received": v} for k, v in sorted(per_second.items())],
    }
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
