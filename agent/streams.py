"""A session's RTP streams: what each SSRC this side sent, and a meter for each SSRC it receives.

Every RTP stream counts, retransmissions (RTX, RFC 4588) included: an RTX stream is its own SSRC
with its own sequence numbers, so its losses are counted from its gaps like any stream's, and the
report shows what the link carried and lost, not only the media (issue 12: a report that left
the RTX stream out said 37 % where the link lost 71 %). Which SSRC an RTX stream repairs comes
from the SDP's `a=ssrc-group:FID <media> <rtx>`.

`StreamBook` is fed by the taps of agent/rtp_tap.py; agent/session.py owns one per session.
"""
from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiortc.rtp import RtpPacket
from aiortc.sdp import SessionDescription

from agent.measure import StreamMeter


@dataclass
class SentCounter:
    """One SSRC this side sent: its first and last sequence numbers, packets and bytes."""
    first_seq: int
    last_seq: int
    packets: int = 0
    bytes: int = 0


@dataclass
class Codec:
    """A negotiated payload type: its media kind and clock, and whether it is RTX."""
    kind: str
    clock_rate: int
    rtx: bool


def codecs_of(sdp: str) -> dict[int, Codec]:
    """The payload types of the audio and video sections of `sdp`."""
    codecs: dict[int, Codec] = {}
    for media in SessionDescription.parse(sdp).media:
        if media.kind not in ("audio", "video"):
            continue
        for codec in media.rtp.codecs:
            if codec.payloadType is None:
                continue
            rtx = codec.mimeType.lower().endswith("/rtx")
            codecs[codec.payloadType] = Codec(media.kind, codec.clockRate, rtx)
    return codecs


def repaired_ssrcs(sdp: str) -> dict[int, int]:
    """RTX SSRC -> the SSRC it retransmits, from the FID groups of `sdp`."""
    out: dict[int, int] = {}
    for media in SessionDescription.parse(sdp).media:
        for group in media.ssrc_group:
            if group.semantic == "FID" and len(group.items) == 2:
                out[int(group.items[1])] = int(group.items[0])
    return out


def parse_sent(raw: Any) -> dict[int, dict]:
    """The far side's `sent` summary (SSRC -> first and last sequence numbers), bad entries left out."""
    out: dict[int, dict] = {}
    if isinstance(raw, dict):
        for ssrc, counts in raw.items():
            with contextlib.suppress(ValueError, TypeError, KeyError):
                out[int(ssrc)] = {"first_seq": int(counts["first_seq"]) & 0xFFFF,
                                  "last_seq": int(counts["last_seq"]) & 0xFFFF}
    return out


class StreamBook:
    """Meters of the streams received and counters of the streams sent, by SSRC."""

    def __init__(self, on_first_media: Callable[[float], None]) -> None:
        self.meters: dict[int, StreamMeter] = {}
        self.sent: dict[int, SentCounter] = {}
        self.codecs: dict[int, Codec] = {}
        self.repairs: dict[int, int] = {}          # RTX SSRC -> media SSRC
        self.t0: float | None = None               # first media packet received
        self._on_first_media = on_first_media

    def negotiated(self, remote_sdp: str) -> None:
        """The far side's description is set: its payload types and RTX pairs."""
        self.codecs = codecs_of(remote_sdp)
        self.repairs = repaired_ssrcs(remote_sdp)

    @property
    def rtx_received(self) -> int:
        """RTX packets received (unique ones)."""
        return sum(m.packets for m in self.meters.values() if m.rtx)

    def on_received(self, packet: RtpPacket, now: float) -> None:
        codec = self.codecs.get(packet.payload_type)
        if codec is None:
            return
        if self.t0 is None:
            if codec.rtx:
                return                  # a retransmission before any media: nothing to time it by
            self.t0 = now
            self._on_first_media(now)
        meter = self.meters.get(packet.ssrc)
        if meter is None:
            meter = self.meters[packet.ssrc] = StreamMeter(
                codec.kind, packet.ssrc, codec.clock_rate, self.t0, rtx=codec.rtx,
                repairs=self.repairs.get(packet.ssrc) if codec.rtx else None)
        size = 12 + len(packet.payload) + packet.padding_size
        meter.add_packet(packet.sequence_number, packet.timestamp, now, size,
                         packet.extensions.abs_send_time)

    def on_sent(self, ssrc: int, seq: int, size: int, now: float) -> None:
        c = self.sent.get(ssrc)
        if c is None:
            c = self.sent[ssrc] = SentCounter(first_seq=seq, last_seq=seq)
        c.last_seq = seq
        c.packets += 1
        c.bytes += size

    def add_frame(self, now: float) -> None:
        """A decoded video frame: counted on the video stream(s), never on a retransmission."""
        for m in self.meters.values():
            if m.kind == "video" and not m.rtx:
                m.add_frame(now)

    def sent_summary(self) -> dict[str, dict]:
        """What this side sent, per SSRC (the finish handshake tells the far side)."""
        return {str(ssrc): vars(c) for ssrc, c in self.sent.items()}
