"""The WebRTC test session between two terminals: the call, the probes, the report.

One `PeerSession` is one RTCPeerConnection with an Opus audio track, a VP8 video
track at the profile's size and rate, and two data channels:
- "vks-probe" (unordered, no retransmission): RTT probes, echoed by the callee;
- "vks-control" (reliable): the callee's per-second receive figures, and the
  finish handshake in which each side tells the other what it sent, so that
  packets lost at the very end are counted too.

The caller (`run_caller`) drives: it offers, runs for the duration, finishes and
returns the `vks.test-report/1` dict with both directions. The callee
(`answer_offer`) answers; `await session.serve()` then serves until the caller finishes.
Signalling is the caller's `signal(offer) -> answer` function: an HTTP POST to a responder
(agent/responder.py) or a relay through the controller (agent/daemon.py).

Every task of a session (frame consumers, ticker, prober, the callee's finish) is a job of the
session's own scheduler (contract.jobs): `close()` cancels and awaits them all. The report is
built in a worker thread (it reads the quality model's file).
"""
from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import struct
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime
from typing import Any

from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError

from agent import capacity, devices, rtp_tap, sender
from agent.ice import chosen_host_addresses, offers_loopback, path_type, remote_candidates, rtc_configuration
from agent.media import DeviceTrack, PatternTrack, ToneTrack, device_tracks, stop_media
from agent.report import build_report, receive_side, side_interval
from agent.settings import AgentSettings, VideoProfile
from agent.streams import StreamBook, parse_sent
from contract import jobs
from contract.vocab import SessionMedia, SessionRole

log = logging.getLogger(__name__)

SignalFn = Callable[[dict], Awaitable[dict]]
IntervalFn = Callable[[dict], None]

CONTROL_LABEL = "vks-control"
PROBE_LABEL = "vks-probe"
PROBE = struct.Struct("!Id")          # probe number, caller's monotonic send time
# After the far side stops sending: wait at least DRAIN_MIN_S and until every stream
# has reached the sender's last sequence number (at most DRAIN_MAX_S: the last ones may
# be lost), then STRAGGLER_S more for packets that were overtaken on the way.
DRAIN_MIN_S = 0.2
DRAIN_MAX_S = 2.0
STRAGGLER_S = 0.15
FINISH_TIMEOUT_S = 5.0
# The callee gives up on a caller that went silent (no finish) after this long.
CALLEE_GRACE_S = 30.0
# After the pacer's backlog has left: the last packet's own trip through the event loop.
PACER_SLACK_S = 0.02


class SessionError(Exception):
    """A session could not be set up or run; `str()` says what and in which state."""


class SignalingError(SessionError):
    """The offer could not be delivered or answered."""


class PeerSession:
    """One side of a test or monitoring session."""

    def __init__(self, settings: AgentSettings, role: SessionRole | str, profile: str | None = None,
                 on_interval: IntervalFn | None = None, media: SessionMedia | str | None = None) -> None:
        if role not in tuple(SessionRole):
            raise ValueError(f"role must be caller or callee, not {role!r}")
        self.settings = settings
        self.role = SessionRole(role)
        self.profile_name = profile or settings.session.default_profile
        self.profile: VideoProfile = settings.profile(self.profile_name)
        self.on_interval = on_interval
        self.media = SessionMedia(media or settings.session.media)     # agent/media.py
        self.pc = RTCPeerConnection(rtc_configuration(settings.session))
        self.tracks: list[ToneTrack | PatternTrack | DeviceTrack] = []
        self.streams = StreamBook(on_first_media=lambda _: self.media_flowing.set())
        self.meters = self.streams.meters
        self.manners: list[sender.Manners] = []          # agent/sender.py, one per RTP sender
        self.connect_start = time.monotonic()           # reset when the offer is made
        self.media_flowing = asyncio.Event()
        self.control_open = asyncio.Event()
        self.finished = asyncio.Event()
        self.rtts: list[tuple[float, float]] = []       # (send time, rtt seconds)
        self.peer_intervals: deque[dict] = deque(maxlen=8)   # far end's latest live receive figures
        self.peer_final: dict | None = None
        self.peer_sent: dict[int, dict] = {}
        self.peer_sending: dict | None = None             # the far side's `sending()`
        self._control: Any = None
        # The capacity ramp's datagrams and messages (agent/capacity.py), on both sides.
        self.ramps = capacity.RampEndpoint(self._send_control, lambda: capacity.ice_connection(self.pc),
                                           lambda: next((t for s in self._stamps
                                                         if (t := s.take_ramp_arrival()) is not None), None))
        self._probe: Any = None
        self._stamps: list[rtp_tap.KernelStamps] = []
        self._jobs = jobs.scheduler(f"{self.role} session")
        self._new_tracks: list[Any] = []                # received, no consumer yet
        self._finish_asked = asyncio.Event()            # callee: the caller sent "finish"
        self._final_received = asyncio.Event()
        self._closed = False
        self.pc.on("track", self._on_track)
        self.pc.on("datachannel", self._on_datachannel)
        self.pc.on("connectionstatechange", self._on_state)

    # -- set-up -------------------------------------------------------------------
    async def _add_media(self) -> None:
        if self.profile.video:
            sender.set_start_bitrate(self.profile.bitrate_kbps)
        if self.media == SessionMedia.DEVICES:          # the terminal's camera and microphone
            try:
                tracks, strays = await device_tracks(self.settings.devices, self.profile)
            except (OSError, ValueError, LookupError) as exc:
                raise SessionError(f"cannot open the terminal's devices: {exc}") from None
            self.tracks.extend(tracks)
            for stray in strays:
                await self._jobs.spawn(devices.drain(stray), name="drain-device")
        else:
            if self.profile.audio:
                self.tracks.append(ToneTrack())
            if self.profile.video:
                self.tracks.append(PatternTrack(self.profile.width, self.profile.height, self.profile.fps))
        for track in self.tracks:
            rtp_sender = self.pc.addTrack(track)
            if self.settings.session.bounded_sender:
                self.manners.append(sender.install(rtp_sender, self.profile.bitrate_kbps))

    async def make_offer(self) -> dict:
        """The caller's offer (media and both data channels added)."""
        self.connect_start = time.monotonic()
        await self._add_media()
        self._bind_control(self.pc.createDataChannel(CONTROL_LABEL))
        self._bind_probe(self.pc.createDataChannel(PROBE_LABEL, ordered=False, maxRetransmits=0))
        with chosen_host_addresses(self.settings.session.host_addresses):
            await self.pc.setLocalDescription(await self.pc.createOffer())
        return {"type": "offer", "sdp": self.pc.localDescription.sdp}

    async def accept_answer(self, answer: dict) -> None:
        """The caller takes the callee's answer."""
        await self.pc.setRemoteDescription(self._remote(answer, "answer"))
        await self._after_negotiation()

    async def answer_offer(self, offer: dict) -> dict:
        """The callee's answer to the caller's offer."""
        await self.pc.setRemoteDescription(self._remote(offer, "offer"))
        await self._add_media()
        with chosen_host_addresses(self.settings.session.host_addresses):
            await self.pc.setLocalDescription(await self.pc.createAnswer())
        await self._after_negotiation()
        return {"type": "answer", "sdp": self.pc.localDescription.sdp}

    def _remote(self, message: dict, expected: str) -> RTCSessionDescription:
        """The far side's description with only the candidates this side may contact (agent/ice.py)."""
        description = _description(message, expected)
        allowed = remote_candidates(description.sdp, allow_loopback=offers_loopback(self.settings.session))
        if allowed.dropped:
            log.warning("%s: %d of the %s's candidates not contacted (%d addresses kept)",
                        self.role, allowed.dropped, expected, allowed.kept)
        return RTCSessionDescription(sdp=allowed.sdp, type=expected)

    async def _after_negotiation(self) -> None:
        self.streams.negotiated(self.pc.remoteDescription.sdp)
        self._stamps = rtp_tap.attach(self.pc, self.streams.on_received, self.streams.on_sent)
        for manners in self.manners:
            manners.pace()
        # The remote tracks arrived with the remote description; no frame can come before the
        # connection is up, so their consumers start in time.
        while self._new_tracks:
            track = self._new_tracks.pop(0)
            await self._jobs.spawn(self._consume(track), name=f"consume-{track.kind}")

    def _on_track(self, track: Any) -> None:
        self._new_tracks.append(track)

    async def _consume(self, track) -> None:
        """Take decoded frames and drop them: counted for frame rate and freezes, never kept."""
        with contextlib.suppress(MediaStreamError):
            while True:
                await track.recv()
                now = time.monotonic()
                if track.kind == "video":
                    self.streams.add_frame(now)

    def _on_state(self) -> None:
        state = self.pc.connectionState
        log.debug("%s: connection %s", self.role, state)
        if state in ("failed", "closed"):
            self.finished.set()

    # -- data channels --------------------------------------------------------------
    def _on_datachannel(self, channel) -> None:
        if channel.label == CONTROL_LABEL:
            self._bind_control(channel)
            if channel.readyState == "open":
                self.control_open.set()
        elif channel.label == PROBE_LABEL:
            self._bind_probe(channel)

    def _bind_control(self, channel) -> None:
        self._control = channel
        channel.on("open", self.control_open.set)
        channel.on("message", self._on_control)

    def _bind_probe(self, channel) -> None:
        self._probe = channel

        @channel.on("message")
        def on_probe(message: bytes) -> None:
            if not isinstance(message, bytes) or len(message) != PROBE.size:
                return
            if self.role == SessionRole.CALLEE:
                if channel.readyState == "open" and _sctp_can_send_now(self.pc):
                    channel.send(message)
            else:
                _, sent = PROBE.unpack(message)
                self.rtts.append((sent, time.monotonic() - sent))

    def _send_control(self, message: dict) -> None:
        if self._control is not None and self._control.readyState == "open":
            self._control.send(json.dumps(message, separators=(",", ":")))

    def _on_control(self, raw: Any) -> None:
        try:
            message = json.loads(raw)
            kind = message["type"]
        except (ValueError, TypeError, KeyError):
            log.warning("%s: ignoring malformed control message", self.role)
            return
        if kind == "interval":
            self.peer_intervals.append(message)
        elif kind == "finish" and self.role == SessionRole.CALLEE:
            self.peer_sent = parse_sent(message.get("sent"))
            self._finish_asked.set()
        elif kind == "final" and self.role == SessionRole.CALLER:
            self.peer_sent = parse_sent(message.get("sent"))
            self.peer_final = message.get("received")
            self.peer_sending = message.get("sending")
            self._final_received.set()
        elif kind == capacity.CONTROL_TYPE:
            self.ramps.on_message(message)
        elif kind == "bye":
            self.finished.set()

    # -- running --------------------------------------------------------------------
    @property
    def t0(self) -> float | None:
        """When the first media packet arrived (monotonic), None before."""
        return self.streams.t0

    async def _pause_media(self) -> None:
        """Stop sending, and wait until the pacer has let out what it holds, so that what this
        side then says it sent is final (agent/sender.py)."""
        for track in self.tracks:
            track.pause()
        for manners in self.manners:
            manners.stop()
        await asyncio.sleep(max((m.backlog_s() for m in self.manners), default=0.0) + PACER_SLACK_S)

    def _sent_summary(self) -> dict[str, dict]:
        return self.streams.sent_summary()

    def sending(self) -> dict:
        """What this side's senders did: packets sent, and each video sender's retransmissions and
        estimate (agent/sender.py)."""
        by_kind = {m.sender.kind: m.summary() for m in self.manners}
        return {"media": str(self.media), "packets": sum(c.packets for c in self.streams.sent.values()),
                "rtx_packets": sum(c.packets for ssrc, c in self.streams.sent.items()
                                   if ssrc in {s._rtx_ssrc for s in self.pc.getSenders()}),
                "retransmission": by_kind.get("video")}

    async def _drain(self) -> None:
        """Wait for what the far end sent before it stopped (see DRAIN_MIN_S)."""
        deadline = time.monotonic() + DRAIN_MAX_S
        await asyncio.sleep(DRAIN_MIN_S)
        while time.monotonic() < deadline:
            if all(m.reached(self.peer_sent[ssrc]["last_seq"])
                   for ssrc, m in self.meters.items() if ssrc in self.peer_sent):
                break
            await asyncio.sleep(0.02)
        await asyncio.sleep(STRAGGLER_S)

    def _finalize_inbound(self) -> None:
        end = time.monotonic()
        for ssrc, meter in self.meters.items():
            counts = self.peer_sent.get(ssrc)
            if counts:
                meter.finalize(counts["first_seq"], counts["last_seq"], end,
                               arrived=functools.partial(self._arrived_unrouted, ssrc))

    def _arrived_unrouted(self, ssrc: int, seq: int) -> bool:
        """Did packet `seq` of `ssrc` reach a socket without being decrypted (rtp_tap)?"""
        return any(st.arrived_unrouted(ssrc, seq) for st in self._stamps)

    def live_interval(self, index: int) -> dict:
        """This side's receive figures for second `index` (as known now)."""
        return side_interval(self.meters, index)

    async def _ticker(self, on_tick: Callable[[int], None], stop: asyncio.Event) -> None:
        """Call on_tick(i) at the end of each whole second after media started."""
        t0 = self.t0 if self.t0 is not None else time.monotonic()
        i = 0
        while not stop.is_set():
            due = t0 + i + 1
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=max(0.0, due - time.monotonic()))
            if stop.is_set():
                break
            try:
                on_tick(i)
            except Exception:       # a consumer's bug must not stop the seconds
                log.exception("%s: interval %d not delivered", self.role, i)
            i += 1

    async def _probe_loop(self, stop: asyncio.Event) -> None:
        period = 1.0 / self.settings.session.probe_hz
        n = 0
        while not stop.is_set():
            if self._probe is not None and self._probe.readyState == "open" and _sctp_can_send_now(self.pc):
                self._probe.send(PROBE.pack(n & 0xFFFFFFFF, time.monotonic()))
                n += 1
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=period)

    async def wait_connected(self, timeout: float) -> None:
        """Until media flows and the control channel is open; SessionError after `timeout`."""
        waiter = asyncio.gather(self.media_flowing.wait(), self.control_open.wait())
        try:
            await asyncio.wait_for(waiter, timeout)
        except TimeoutError:
            state = f"ICE {self.pc.iceConnectionState}, connection {self.pc.connectionState}"
            missing = "no media from the peer" if not self.media_flowing.is_set() else "no data channel"
            raise SessionError(f"{missing} within {timeout:g} s ({state})") from None

    def _media_start(self) -> float:
        if self.t0 is None:
            raise SessionError(f"{self.role}: no media has arrived (not connected)")
        return self.t0

    async def run_as_caller(self, duration_s: float, started: str, *, with_capacity: bool = False) -> dict:
        """After connecting: run for `duration_s`, finish, (ramp the capacity,) build the report."""
        stop = asyncio.Event()
        t0 = self._media_start()

        relayed = -1

        def tick(i: int) -> None:
            nonlocal relayed
            if self.on_interval is None:
                return
            peer = peer_second(self.peer_intervals, i, relayed)
            if peer is not None:
                relayed = peer["i"]
            rtts = [r * 1000 for s, r in self.rtts if int(s - t0) == i]
            self.on_interval({"t": float(i),
                              "rtt_ms": sum(rtts) / len(rtts) if rtts else None,
                              "inbound": self.live_interval(i),
                              "outbound": peer.get("received") if peer else None})

        self._send_control({"type": "start", "duration_s": duration_s})
        ticker = await self._jobs.spawn(self._ticker(tick, stop), name="ticker")
        prober = await self._jobs.spawn(self._probe_loop(stop), name="prober")
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.finished.wait(), timeout=duration_s)
        end = time.monotonic()
        stop.set()
        await asyncio.gather(ticker.wait(), prober.wait(), return_exceptions=True)

        # Finish: stop sending, tell the callee what we sent, get its figures and counts.
        await self._pause_media()
        self._send_control({"type": "finish", "sent": self._sent_summary()})
        error = None
        try:
            await asyncio.wait_for(self._final_received.wait(), FINISH_TIMEOUT_S)
        except TimeoutError:
            error = "the peer did not send its final figures (link lost at the end?)"
        await self._drain()
        self._finalize_inbound()
        aiortc_view = await self.aiortc_stats()
        more: dict[str, Any] = {}
        if with_capacity:       # after the media: the ramp never enters the session's figures
            cfg = await capacity.session_config(self.settings.session, self.profile.thresholds)
            more["capacity"] = await capacity.measure(self.ramps, cfg)
        self._send_control({"type": "bye"})
        inbound = _with_estimate(receive_side(self.meters, until=end), self.peer_sending)
        outbound = self.peer_final
        if outbound is None and self.peer_intervals:
            outbound = self.peer_intervals[-1].get("cumulative")
        outbound = _with_estimate(outbound, self.sending())
        return await asyncio.to_thread(functools.partial(
            build_report,
            started_at=started, duration_s=end - t0, connected=True,
            connect_ms=(t0 - self.connect_start) * 1000.0, error=error,
            rtts=[(s - t0, r) for s, r in self.rtts],
            inbound=inbound, outbound=outbound, profile=self.profile_name,
            thresholds_path=self.settings.session.thresholds_path,
            thresholds_profile=self.profile.thresholds,
            extra={"aiortc_stats": aiortc_view, "rtx_received": self.streams.rtx_received,
                   "sent": self.sending(), "peer_sent": self.peer_sending, "path_type": path_type(self.pc),
                   **more}))

    async def serve_as_callee(self) -> dict:
        """Serve until the caller says bye, the connection ends or the caller goes silent."""
        stop = asyncio.Event()

        def tick(i: int) -> None:
            iv = side_interval(self.meters, i)
            if self.on_interval is not None:
                # The same shape as the caller's: this side's view only.
                self.on_interval({"t": float(i), "rtt_ms": None, "inbound": iv, "outbound": None})
            self._send_control({"type": "interval", "i": i, "received": iv,
                                "cumulative": receive_side(self.meters, with_intervals=False)})

        finisher = await self._jobs.spawn(self._callee_finish(), name="finish")
        try:
            await self.wait_connected(self.settings.session.connect_timeout_s)
        except SessionError as exc:
            await jobs.stop(finisher, FINISH_TIMEOUT_S)
            return {"error": str(exc)}
        t0 = self._media_start()
        ticker = await self._jobs.spawn(self._ticker(tick, stop), name="ticker")
        try:
            while not self.finished.is_set():
                last = max((m.last_arrival or 0 for m in self.meters.values()), default=t0)
                last = max(last, self.ramps.last_seen)
                if time.monotonic() - last > CALLEE_GRACE_S:
                    break
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self.finished.wait(), timeout=1.0)
        finally:
            stop.set()
            await asyncio.gather(ticker.wait(), return_exceptions=True)
            await jobs.stop(finisher, FINISH_TIMEOUT_S)
        return receive_side(self.meters, until=time.monotonic())

    async def serve(self) -> dict:
        """The callee's whole service: `serve_as_callee()`, then `close()` (whatever happens)."""
        try:
            return await self.serve_as_callee()
        finally:
            await self.close()

    async def _callee_finish(self) -> None:
        """When the caller asks to finish: stop sending, drain, send the final figures."""
        await self._finish_asked.wait()
        await self._pause_media()
        await self._drain()
        self._finalize_inbound()
        received = receive_side(self.meters, until=time.monotonic())
        self._send_control({"type": "final", "sent": self._sent_summary(), "received": received,
                            "sending": self.sending()})

    async def aiortc_stats(self) -> dict:
        """aiortc's own getStats, kept beside our figures for comparison only
        (docs/measurement.md says where it is wrong): jitter converted from RTP clock
        units to ms, the RTCP round trip in ms."""
        clock = {"audio": 48000, "video": 90000}
        view: dict[str, list] = {"inbound": [], "remote_inbound": []}
        with contextlib.suppress(Exception):
            for stat in (await self.pc.getStats()).values():
                if stat.type == "inbound-rtp":
                    view["inbound"].append({
                        "kind": stat.kind, "ssrc": stat.ssrc, "packets_received": stat.packetsReceived,
                        "packets_lost": stat.packetsLost,
                        "jitter_ms": round(stat.jitter / clock[stat.kind] * 1000, 3)})
                elif stat.type == "remote-inbound-rtp":
                    rtt = stat.roundTripTime
                    view["remote_inbound"].append({
                        "kind": stat.kind, "ssrc": stat.ssrc, "packets_lost": stat.packetsLost,
                        "fraction_lost": stat.fractionLost,
                        "jitter_ms": round(stat.jitter / clock[stat.kind] * 1000, 3),
                        "rtt_ms": None if rtt is None else round(rtt * 1000, 3)})
        return view

    async def close(self) -> None:
        """Idempotent: stops the tracks, closes the connection, cancels and awaits every task."""
        if self._closed:
            return
        self._closed = True
        await stop_media(self.tracks)
        await self.ramps.close()
        with contextlib.suppress(Exception):
            await self.pc.close()
        await self._jobs.close()


def peer_second(received: Iterable[dict], i: int, relayed: int) -> dict | None:
    """The callee's second to relay with the caller's second `i`: of its seconds i - 1 and i
    here, the oldest not yet relayed (`relayed`: the newest relayed so far); None when neither.

    The callee sends its second i at the end of that second, by its own clock, which started with
    the first media it received: up to a second before or after the caller's tick, so either may
    be here. Each is relayed once: a second relayed twice would count twice (one stalled second
    as a stall of two, one bad second as two in the quality window)."""
    return min((m for m in received if isinstance(m.get("i"), int) and relayed < m["i"] and i - 1 <= m["i"] <= i),
               key=lambda m: m["i"], default=None)


def _sctp_can_send_now(pc: RTCPeerConnection) -> bool:
    """Would a data-channel message leave at once, or wait in SCTP's queue?

    After a blackout, SCTP retransmits with backed-off timers and a collapsed
    congestion window; a probe queued behind that measures SCTP's recovery, not the
    network. Such probes are not sent (nor echoed): they would be counted as lost
    rather than reported as a round trip of hundreds of milliseconds. Reads aiortc
    1.16's association state (see rtp_tap.py on the pin)."""
    sctp = pc.sctp
    if sctp is None:
        return False
    return (not sctp._outbound_queue and not sctp._data_channel_queue
            and sctp._flight_size < sctp._cwnd)


def _description(message: dict, expected: str) -> RTCSessionDescription:
    if not isinstance(message, dict):
        raise SignalingError(f"expected an {expected} object, got {type(message).__name__}")
    if message.get("type") != expected or not isinstance(message.get("sdp"), str):
        raise SignalingError(f"expected {{'type': '{expected}', 'sdp': str}}")
    return RTCSessionDescription(sdp=message["sdp"], type=expected)


def _with_estimate(side: dict | None, sending: dict | None) -> dict | None:
    """A direction's figures with its sender's last bandwidth estimate (`estimate_kbps`)."""
    retransmission = (sending or {}).get("retransmission") or {}
    if side is None or retransmission.get("estimate_kbps") is None:
        return side
    return {**side, "estimate_kbps": retransmission["estimate_kbps"]}


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


async def run_caller(settings: AgentSettings, *, signal: SignalFn, duration_s: float,
                     profile: str | None = None, on_interval: IntervalFn | None = None,
                     with_capacity: bool = False, media: SessionMedia | str | None = None) -> dict:
    """Run a whole test session as the caller; returns the vks.test-report/1 dict (with
    `capacity` when `with_capacity`: agent/capacity.py, after the media).

    Never raises for a network failure: the report says `connected: false` and why.
    """
    started = _now_iso()
    session = PeerSession(settings, SessionRole.CALLER, profile, on_interval, media)
    try:
        offer = await session.make_offer()
        timeout = settings.session.connect_timeout_s
        try:
            answer = await asyncio.wait_for(signal(offer), timeout)
        except TimeoutError:
            raise SignalingError(f"the peer did not answer the offer within {timeout:g} s") from None
        await session.accept_answer(answer)
        await session.wait_connected(max(1.0, timeout - (time.monotonic() - session.connect_start)))
        return await session.run_as_caller(duration_s, started, with_capacity=with_capacity)
    except SessionError as exc:
        return await asyncio.to_thread(functools.partial(
            build_report, started_at=started, duration_s=0.0, connected=False, connect_ms=None,
            error=str(exc), rtts=[], inbound=None, outbound=None, profile=session.profile_name,
            thresholds_path=settings.session.thresholds_path, thresholds_profile=session.profile.thresholds,
            extra={"path_type": None}))
    finally:
        await session.close()


async def answer_offer(settings: AgentSettings, offer: dict, *, profile: str | None = None,
                       on_interval: IntervalFn | None = None,
                       media: SessionMedia | str | None = None) -> tuple[dict, PeerSession]:
    """Answer `offer`: (the answer, the callee's session). The caller of this function owns the
    session: `await session.serve()` (this side's receive summary; closes it) or `close()`.
    Raises SignalingError for an offer that cannot be answered."""
    session = PeerSession(settings, SessionRole.CALLEE, profile, on_interval, media)
    try:
        answer = await session.answer_offer(offer)
    except SignalingError:
        await session.close()
        raise
    except Exception as exc:   # aiortc raises ValueError & co. for bad SDP
        await session.close()
        raise SignalingError(f"cannot answer the offer: {exc}") from None
    return answer, session
