"""Taps on aiortc's RTP path: every RTP packet sent and received by a peer connection.

aiortc has no public API for this, so the taps wrap two methods of its DTLS
transport instance (aiortc is pinned to 1.16.* in pyproject.toml for that reason):
- `RtpRouter.route_rtp(packet)`: called with every decrypted, parsed RTP packet before
  it is handed to a receiver, RTX included;
- `RTCDtlsTransport._send_rtp(data)`: called with every plain RTP/RTCP packet just
  before it is encrypted and written to the socket.

The abs-send-time header extension is also negotiated for audio (aiortc offers it
for video only), so that both media measure network jitter from send-time stamps.

Arrival times come from the kernel (SO_TIMESTAMPNS on aioice's UDP sockets), not
from the moment Python gets round to the packet: on a busy terminal the event
loop's own delays would otherwise show up as network jitter. SRTP leaves the RTP
header in clear, so the stamp of a datagram is matched to its packet by (SSRC,
sequence number); where the kernel gives none, the tap's own clock is used.
"""
from __future__ import annotations

import contextlib
import socket
import struct
import sys
import time
from collections.abc import Callable
from typing import Any

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


def attach(pc: RTCPeerConnection, on_received: ReceivedHook, on_sent: SentHook) -> list[KernelStamps]:
    """Tap every DTLS transport of `pc` not tapped yet; returns their kernel stamps.

    Call after both descriptions are set (the callee's transports exist only then;
    the ICE sockets exist once candidates are gathered, which setLocalDescription does).
    """
    tapped = []
    for transceiver in pc.getTransceivers():
        dtls = transceiver.receiver.transport
        if dtls is None or getattr(dtls, _TAPPED, False):
            continue
        stamps = KernelStamps()
        for protocol in getattr(dtls.transport._connection, "_protocols", []):
            stamps.watch(protocol.transport)
        _tap_received(dtls, on_received, stamps)
        _tap_sent(dtls, on_sent)
        setattr(dtls, _TAPPED, True)
        tapped.append(stamps)
    return tapped


def _tap_received(dtls: Any, on_received: ReceivedHook, stamps: KernelStamps) -> None:
    router = dtls._rtp_router
    route_rtp = router.route_rtp

    def route_and_count(packet: RtpPacket):
        arrival = stamps.pop(packet.ssrc, packet.sequence_number)
        on_received(packet, time.monotonic() if arrival is None else arrival)
        return route_rtp(packet)

    router.route_rtp = route_and_count


# Linux: SO_TIMESTAMPNS (and its control message type SCM_TIMESTAMPNS); Python has no name for it.
SO_TIMESTAMPNS = 35
_TIMESPEC = struct.Struct("@qq")
_RTP_IDS = struct.Struct("!2xH4xI")      # sequence number, SSRC
_MAX_STAMPS = 4096
RCVBUF_BYTES = 1 << 20
_MAX_UNROUTED = 512
RAMP_FIRST_BYTE = b"\xf6"               # agent/capacity.py's datagrams


class KernelStamps:
    """Kernel receive times of the RTP datagrams on some UDP sockets, by (SSRC, seq).

    Wraps each asyncio datagram transport's socket so that its `recvfrom` (the one
    call asyncio's selector transport makes) becomes `recvmsg` with the timestamp
    control message. Times are converted to time.monotonic()'s clock.
    """

    def __init__(self) -> None:
        self._stamps: dict[tuple[int, int], float] = {}
        # Datagrams that reached the socket but never the RTP router: SRTP could not
        # decrypt them, mostly media that overtook the last DTLS handshake message.
        # The network delivered them; the session must not call them lost.
        self.unrouted: dict[int, set[int]] = {}
        # The kernel time of the last capacity-ramp datagram read (agent/capacity.py takes it at
        # once: asyncio hands each datagram to the protocol right after reading it).
        self.ramp_arrival: float | None = None
        self.enabled = sys.platform.startswith("linux")

    def watch(self, transport: Any) -> bool:
        sock = getattr(transport, "_sock", None)
        if not self.enabled or sock is None or isinstance(sock, _StampingSocket):
            return False
        try:
            sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        except OSError:
            return False
        with contextlib.suppress(OSError):
            # A busy terminal's event loop can stall for a video frame's decode; the
            # default ~200 KB buffer then overflows and the kernel's drops would be
            # counted as network loss. 1 MB holds several seconds of the session.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF_BYTES)
        transport._sock = _StampingSocket(sock, self)
        return True

    def record(self, data: bytes, ancdata: list) -> None:
        if data[:1] == RAMP_FIRST_BYTE:
            self.ramp_arrival = _kernel_time(ancdata)
            return
        if len(data) < 12 or not 128 <= data[0] < 192 or is_rtcp(data):
            return
        arrival = _kernel_time(ancdata)
        if arrival is None:
            return
        seq, ssrc = _RTP_IDS.unpack_from(data)
        if len(self._stamps) >= _MAX_STAMPS:
            # Stamps still here after thousands of newer packets were never
            # routed: keep which they were (bounded), drop their times.
            for key in list(self._stamps)[: _MAX_STAMPS // 2]:
                del self._stamps[key]
                seqs = self.unrouted.setdefault(key[0], set())
                if len(seqs) < _MAX_UNROUTED:
                    seqs.add(key[1])
        self._stamps[(ssrc, seq)] = arrival

    def take_ramp_arrival(self) -> float | None:
        """The kernel time of the ramp datagram just read (once), None without one."""
        arrival, self.ramp_arrival = self.ramp_arrival, None
        return arrival

    def pop(self, ssrc: int, seq: int) -> float | None:
        return self._stamps.pop((ssrc, seq), None)

    def arrived_unrouted(self, ssrc: int, seq: int) -> bool:
        """Did this packet reach the socket without ever being routed (so far)?"""
        return (ssrc, seq) in self._stamps or seq in self.unrouted.get(ssrc, ())


def _kernel_time(ancdata: list) -> float | None:
    """The SO_TIMESTAMPNS receive time in ancillary data, on time.monotonic()'s clock."""
    for level, kind, cdata in ancdata:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(cdata) >= _TIMESPEC.size:
            sec, nsec = _TIMESPEC.unpack_from(cdata)
            # Realtime -> monotonic: the offset is read now, microseconds after the stamp.
            return sec + nsec * 1e-9 - (time.time() - time.monotonic())
    return None


class _StampingSocket:
    """A socket whose recvfrom also reads the kernel's receive timestamp."""

    __slots__ = ("_sock", "_stamps")

    def __init__(self, sock: socket.socket, stamps: KernelStamps) -> None:
        self._sock = sock
        self._stamps = stamps

    def recvfrom(self, bufsize: int, flags: int = 0):
        data, ancdata, _, addr = self._sock.recvmsg(bufsize, 64, flags)
        self._stamps.record(data, ancdata)
        return data, addr

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


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
