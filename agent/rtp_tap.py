"""Taps on aiortc's RTP path: every RTP packet sent and received by a peer connection.

aiortc has no public API for this, so the taps wrap two methods of its DTLS
transport instance (aiortc is pinned to 1.16.* in pyproject.toml for that reason):
- `RtpRouter.route_rtp(packet)`: called with every decrypted, parsed RTP packet before
  it is handed to a receiver, RTX included;
- `RTCDtlsTransport._send_rtp(data)`: called with every plain RTP/RTCP packet just
  before it is encrypted and written to the socket.

The abs-send-time header extension is also negotiated for audio (aiortc offers it
for video only), so that both media measure network jitter from send-time stamps.
"""
from __future__ import annotations

import struct
import time
from typing import Any, Callable

from aiortc import RTCPeerConnection
from aiortc.codecs import HEADER_EXTENSIONS
from aiortc.rtcrtpparameters import RTCRtpHeaderExtensionParameters
from aiortc.rtp import RtpPacket, is_rtcp

ABS_SEND_TIME_URI = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"


def _negotiate_abs_send_time_for_audio() -> None:
    audio = HEADER_EXTENSIONS["audio"]
    if not any(ext.uri == ABS_SEND_TIME_URI for ext in audio):
        # Same id as video's: BUNDLE shares one id space, and the URI is the same.
        video_id = next(e.id for e in HEADER_EXTENSIONS["video"] if e.uri == ABS_SEND_TIME_URI)
        audio.append(RTCRtpHeaderExtensionParameters(id=video_id, uri=ABS_SEND_TIME_URI))


_negotiate_abs_send_time_for_audio()

ReceivedHook = Callable[[RtpPacket, float], None]
SentHook = Callable[[int, int, int, float], None]   # ssrc, seq, size, monotonic time

_TAPPED = "_vks_tapped"


def attach(pc: RTCPeerConnection, on_received: ReceivedHook, on_sent: SentHook) -> int:
    """Tap every DTLS transport of `pc` not tapped yet; returns how many were tapped.

    Call after both descriptions are set (the callee's transports exist only then).
    """
    tapped = 0
    for transceiver in pc.getTransceivers():
        dtls = transceiver.receiver.transport
        if dtls is None or getattr(dtls, _TAPPED, False):
            continue
        _tap_received(dtls, on_received)
        _tap_sent(dtls, on_sent)
        setattr(dtls, _TAPPED, True)
        tapped += 1
    return tapped


def _tap_received(dtls: Any, on_received: ReceivedHook) -> None:
    router = dtls._rtp_router
    route_rtp = router.route_rtp

    def route_and_count(packet: RtpPacket):
        on_received(packet, time.monotonic())
        return route_rtp(packet)

    router.route_rtp = route_and_count


_RTP_HEADER = struct.Struct("!BBHII")


def _tap_sent(dtls: Any, on_sent: SentHook) -> None:
    send_rtp = dtls._send_rtp

    async def count_and_send(data: bytes) -> None:
        await send_rtp(data)
        # Counted once handed to the socket: a packet that failed to go is not "sent".
        if len(data) >= 12 and not is_rtcp(data):
            _, _, seq, _, ssrc = _RTP_HEADER.unpack_from(data)
            on_sent(ssrc, seq, len(data), time.monotonic())

    dtls._send_rtp = count_and_send
