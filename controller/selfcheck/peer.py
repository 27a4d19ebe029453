"""The controller's media peer for a self-check (issue 14): it answers the page's offer, sends
media back (aiortc's synthetic video and Opus audio) so that the browser can measure what it
receives, and measures what it receives from the browser.

ICE: the controller's host candidates are `selfcheck.host_addresses` only (when given; aioice has no
interface selection, so its address discovery is replaced for these sessions, as the agents do
for theirs), its servers are `selfcheck.ice_servers` only (never aiortc's public default), and the
browser's offer is filtered by the agents' own rule (contract.candidates.remote_candidates: at
most 16 addresses, no link-local, multicast, broadcast or mDNS name; loopback only when the
controller offers loopback itself). A browser's mDNS host candidates are therefore not contacted:
its connectivity checks reach the controller and are answered (peer-reflexive).

What the controller receives (the `outbound` of the self-check: what the browser sent) is read
from aiortc 1.16's getStats where docs/measurement.md found it sound, and no further:
- loss: the audio stream's `packetsLost / (packetsReceived + packetsLost)` (audio has no
  retransmission stream to confuse it; gaps after the last packet are not counted - the check
  keeps its media flowing to the end, so none are missed that matter);
- jitter: the audio stream's `jitter` in RTP clock units converted to ms (48 kHz). It is computed
  from RTP timestamps, so it includes the browser's own capture-to-send wobble: an upper bound
  on the network's jitter, which is the safe side for a verdict;
- bitrate: the DTLS transport's bytes received over the media window (audio, video, RTCP).
"""
from __future__ import annotations

import asyncio
import contextlib
import contextvars
import ipaddress
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import aioice.ice
from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import AudioStreamTrack, MediaStreamError, MediaStreamTrack, VideoStreamTrack
from aiortc.rtcconfiguration import RTCBundlePolicy

from contract.candidates import remote_candidates
from controller.selfcheck.settings import SelfCheckSettings

log = logging.getLogger(__name__)
AUDIO_CLOCK_HZ = 48_000

_chosen: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar("vks_selfcheck_hosts", default=None)
_previous = aioice.ice.get_host_addresses


def _host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
    chosen = _chosen.get()
    if chosen is None:
        return _previous(use_ipv4=use_ipv4, use_ipv6=use_ipv6)
    return [a for a in chosen if (ipaddress.ip_address(a).version == 4 and use_ipv4)
            or (ipaddress.ip_address(a).version == 6 and use_ipv6)]


aioice.ice.get_host_addresses = _host_addresses


@contextlib.contextmanager
def _hosts(addresses: list[str]) -> Iterator[None]:
    token = _chosen.set(list(addresses) if addresses else None)
    try:
        yield
    finally:
        _chosen.reset(token)


def _loopback(addresses: list[str]) -> bool:
    return any(ipaddress.ip_address(a).is_loopback for a in addresses)


class OfferRefused(ValueError):
    """The page's offer cannot be answered (no usable candidate, not an offer)."""


@dataclass
class Received:
    """What the controller's peer received from the browser during the media window."""
    loss_ratio: float | None
    jitter_ms: float | None
    bitrate_kbps: float | None
    rtt_ms: float | None

    def direction(self) -> dict[str, float | None]:
        return {"loss_ratio": self.loss_ratio, "jitter_ms": self.jitter_ms, "bitrate_kbps": self.bitrate_kbps}


class SelfCheckPeer:
    """One self-check's peer connection: `answer(offer)`, then `measure()` and `close()`."""

    def __init__(self, settings: SelfCheckSettings) -> None:
        self.settings = settings
        servers = [RTCIceServer(urls=s.urls, username=s.username, credential=s.credential)
                   for s in settings.ice_servers]
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=servers, bundlePolicy=RTCBundlePolicy.MAX_BUNDLE))
        self._sinks: list[asyncio.Task] = []
        self._start: tuple[float, int] | None = None     # (monotonic, transport bytes) as media began
        self.connected = asyncio.Event()
        self.failed = asyncio.Event()
        self.pc.on("track", self._on_track)
        self.pc.on("connectionstatechange", self._on_state)

    def _on_state(self) -> None:
        state = self.pc.connectionState
        if state == "connected":
            self.connected.set()
        elif state in ("failed", "closed"):
            self.failed.set()

    def _on_track(self, track: MediaStreamTrack) -> None:
        # Read (and drop) what arrives so the receiver decodes and reports on it.
        self._sinks.append(asyncio.ensure_future(self._drain(track)))

    async def _drain(self, track: MediaStreamTrack) -> None:
        with contextlib.suppress(MediaStreamError, asyncio.CancelledError):
            while True:
                await track.recv()
                if self._start is None:
                    self._start = (time.monotonic(), self._transport_bytes())

    def _transport_bytes(self) -> int:
        for t in self.pc.getTransceivers():
            dtls = t.receiver.transport
            stats = dtls._get_stats().get(dtls._stats_id) if dtls is not None else None   # aiortc 1.16
            if stats is not None:
                return int(stats.bytesReceived)
        return 0

    async def answer(self, sdp: str, kind: str) -> dict[str, str]:
        """The answer to the page's (non-trickle) offer; our media added for each media section."""
        if kind != "offer":
            raise OfferRefused("expected an offer")
        if not sdp.startswith("v=0") or "\nm=" not in sdp:
            raise OfferRefused("not an SDP offer with media")
        hosts = self.settings.host_addresses
        # Nothing left (a browser without camera permission offers only mDNS names) is no refusal:
        # the browser's own checks reach the controller, which answers them (peer-reflexive).
        filtered = remote_candidates(sdp, allow_loopback=_loopback(hosts))
        with _hosts(hosts):
            try:
                await self.pc.setRemoteDescription(RTCSessionDescription(sdp=filtered.sdp, type="offer"))
            except (ValueError, KeyError, IndexError) as exc:
                raise OfferRefused(f"the offer is not valid SDP: {exc}") from None
            if not self.pc.getTransceivers():
                raise OfferRefused("the offer has no audio or video")
            for t in self.pc.getTransceivers():
                if t.kind == "audio":
                    t.sender.replaceTrack(AudioStreamTrack())
                    t.direction = "sendrecv"
                elif t.kind == "video":
                    t.sender.replaceTrack(VideoStreamTrack())
                    t.direction = "sendrecv"
            await self.pc.setLocalDescription(await self.pc.createAnswer())
        local = self.pc.localDescription
        return {"sdp": local.sdp, "type": local.type}

    async def measure(self) -> Received:
        """What arrived from the browser since the first media (see the module's docstring)."""
        loss = jitter = rate = rtt = None
        for t in self.pc.getTransceivers():
            stats = await t.receiver.getStats()
            for s in stats.values():
                if s.type == "inbound-rtp" and t.kind == "audio":
                    expected = s.packetsReceived + max(s.packetsLost, 0)
                    loss = max(s.packetsLost, 0) / expected if expected else None
                    jitter = s.jitter / AUDIO_CLOCK_HZ * 1000.0 if s.packetsReceived else None
            for s in (await t.sender.getStats()).values():
                if s.type == "remote-inbound-rtp" and getattr(s, "roundTripTime", None) is not None:
                    rtt = s.roundTripTime * 1000.0
        if self._start is not None:
            elapsed = time.monotonic() - self._start[0]
            if elapsed > 0.5:
                rate = (self._transport_bytes() - self._start[1]) * 8 / elapsed / 1000.0
        return Received(loss_ratio=loss, jitter_ms=jitter, bitrate_kbps=rate, rtt_ms=rtt)

    async def close(self) -> None:
        for task in self._sinks:
            task.cancel()
        await self.pc.close()
        for task in self._sinks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


def snapshot(peer: SelfCheckPeer) -> dict[str, Any]:
    """For the logs: the peer's connection states."""
    return {"connection": peer.pc.connectionState, "ice": peer.pc.iceConnectionState}
