"""Pure packet classification for the impaired-link router (no I/O).

The router sees raw IP packets (TUN, ``IFF_NO_PI``). It needs to know, for each packet,
the flow it belongs to and, for UDP payloads, what kind of WebRTC traffic it carries:

* RFC 7983 demultiplexing on the first payload byte:
  ``0..3`` STUN, ``16..19`` ZRTP, ``20..63`` DTLS, ``64..79`` TURN channel,
  ``128..191`` RTP or RTCP (version 2).
* RFC 5761 section 4 separates RTCP from RTP on the second byte: RTCP packet types
  192..223 (SR 200, RR 201, SDES 202, BYE 203, APP 204, RTPFB 205, PSFB 206, XR 207, ...)
  are exactly the values whose low 7 bits ("payload type" when read as RTP) fall in
  64..95, which is why RTP payload types 64..95 must not be used when multiplexing.
* SRTP and SRTCP leave the first 12 (RTP) / 8 (RTCP) bytes in clear, so sequence numbers
  and SSRCs of encrypted media are readable here.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

PROTO_ICMP = 1
PROTO_TCP = 6
PROTO_UDP = 17

KIND_RTP = "rtp"
KIND_RTCP = "rtcp"
KIND_STUN = "stun"
KIND_DTLS = "dtls"
KIND_ZRTP = "zrtp"
KIND_TURN = "turn_channel"
KIND_UDP = "udp_other"
KIND_TCP = "tcp"
KIND_ICMP = "icmp"
KIND_OTHER = "other"

KINDS = (KIND_RTP, KIND_RTCP, KIND_STUN, KIND_DTLS, KIND_ZRTP, KIND_TURN, KIND_UDP,
         KIND_TCP, KIND_ICMP, KIND_OTHER)

_PROTO_NAMES = {PROTO_ICMP: "icmp", PROTO_TCP: "tcp", PROTO_UDP: "udp"}


@dataclass(frozen=True, slots=True)
class PacketInfo:
    """What the router needs to know about one IP packet."""

    kind: str
    flow: tuple  # (proto, src, sport, dst, dport); ports 0 where there are none
    ssrc: int | None = None  # RTP: media SSRC; RTCP: sender SSRC
    seq: int | None = None  # RTP sequence number (16 bit)
    pt: int | None = None  # RTP payload type, RTCP packet type


def classify_udp_payload(payload: bytes) -> tuple[str, int | None, int | None, int | None]:
    """RFC 7983 + RFC 5761 demultiplexing. Returns (kind, ssrc, seq, payload_type)."""
    if not payload:
        return KIND_UDP, None, None, None
    b0 = payload[0]
    if 128 <= b0 <= 191:
        if len(payload) >= 2 and 64 <= (payload[1] & 0x7F) <= 95:
            if len(payload) >= 8:
                return KIND_RTCP, struct.unpack_from("!I", payload, 4)[0], None, payload[1]
            return KIND_UDP, None, None, None
        if len(payload) >= 12:
            seq, _ts, ssrc = struct.unpack_from("!HII", payload, 2)
            return KIND_RTP, ssrc, seq, payload[1] & 0x7F
        return KIND_UDP, None, None, None
    if b0 <= 3:
        return KIND_STUN, None, None, None
    if 16 <= b0 <= 19:
        return KIND_ZRTP, None, None, None
    if 20 <= b0 <= 63:
        return KIND_DTLS, None, None, None
    if 64 <= b0 <= 79:
        return KIND_TURN, None, None, None
    return KIND_UDP, None, None, None


def parse(packet: bytes) -> PacketInfo:
    """Classify a raw IPv4/IPv6 packet. Never raises: junk is ``other``."""
    if len(packet) < 1:
        return PacketInfo(KIND_OTHER, ("?", "", 0, "", 0))
    version = packet[0] >> 4
    if version == 4 and len(packet) >= 20:
        ihl = (packet[0] & 0x0F) * 4
        proto = packet[9]
        src = ".".join(str(b) for b in packet[12:16])
        dst = ".".join(str(b) for b in packet[16:20])
        frag = struct.unpack_from("!H", packet, 6)[0]
        first_fragment = (frag & 0x1FFF) == 0
        l4 = packet[ihl:] if first_fragment else b""
    elif version == 6 and len(packet) >= 40:
        proto = packet[6]
        import ipaddress  # rare path: IPv6 is switched off on the lab's links

        src = str(ipaddress.IPv6Address(packet[8:24]))
        dst = str(ipaddress.IPv6Address(packet[24:40]))
        l4 = packet[40:]
        if proto == 58:
            proto = PROTO_ICMP
    else:
        return PacketInfo(KIND_OTHER, ("?", "", 0, "", 0))
    pname = _PROTO_NAMES.get(proto, str(proto))
    if proto in (PROTO_UDP, PROTO_TCP) and len(l4) >= 4:
        sport, dport = struct.unpack_from("!HH", l4, 0)
        flow = (pname, src, sport, dst, dport)
        if proto == PROTO_TCP:
            return PacketInfo(KIND_TCP, flow)
        kind, ssrc, seq, pt = classify_udp_payload(l4[8:])
        return PacketInfo(kind, flow, ssrc, seq, pt)
    flow = (pname, src, 0, dst, 0)
    if proto == PROTO_ICMP:
        return PacketInfo(KIND_ICMP, flow)
    return PacketInfo(KIND_OTHER, flow)


def flow_key(flow: tuple) -> str:
    """A stable printable name for a flow: ``udp 10.231.0.1:5000>10.231.0.2:6000``."""
    proto, src, sport, dst, dport = flow
    if sport or dport:
        return f"{proto} {src}:{sport}>{dst}:{dport}"
    return f"{proto} {src}>{dst}"
