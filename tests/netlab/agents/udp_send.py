"""Send a bounded stream of RTP-like UDP packets at a steady rate.

Each packet: a 12-byte RTP header (V=2, PT, seq, timestamp, SSRC), then the send time
(CLOCK_MONOTONIC, int64 nanoseconds, shared by every namespace of the machine) and zero
padding up to --size bytes. Sending follows an absolute schedule (no drift).
Prints one JSON object: {"sent", "first_seq", "last_seq", "ssrc", "duration_s"}.
"""
import argparse
import json
import socket
import struct
import time


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dst", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--count", type=int, default=500)
    p.add_argument("--pps", type=float, default=100.0)
    p.add_argument("--ssrc", type=lambda s: int(s, 0), default=0x1234ABCD)
    p.add_argument("--first-seq", type=int, default=1000)
    p.add_argument("--pt", type=int, default=96)
    p.add_argument("--size", type=int, default=200)
    p.add_argument("--src-port", type=int, default=0)
    a = p.parse_args()
    if not (0 < a.count <= 1_000_000 and 0 < a.pps <= 100_000 and 20 <= a.size <= 1400):
        p.error("count 1..1e6, pps 1..1e5, size 20..1400")
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("0.0.0.0", a.src_port))
    pad = bytes(max(0, a.size - 20))
    start = time.monotonic()
    for i in range(a.count):
        due = start + i / a.pps
        while (left := due - time.monotonic()) > 0:
            time.sleep(left)
        seq = (a.first_seq + i) & 0xFFFF
        ts = (i * 90000 // int(a.pps)) & 0xFFFFFFFF
        hdr = struct.pack("!BBHII", 0x80, a.pt & 0x7F, seq, ts, a.ssrc)
        s.sendto(hdr + struct.pack("!q", time.monotonic_ns()) + pad, (a.dst, a.port))
    print(json.dumps({"sent": a.count, "first_seq": a.first_seq & 0xFFFF,
                      "last_seq": (a.first_seq + a.count - 1) & 0xFFFF, "ssrc": a.ssrc,
                      "duration_s": round(time.monotonic() - start, 3)}))


if __name__ == "__main__":
    main()
