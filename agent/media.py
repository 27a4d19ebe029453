"""What a test session sends: synthetic media (an Opus-bound tone and a moving video pattern), or
the terminal's own camera and microphone (`session.media: devices`, `vks-agent test --media devices`).

Synthetic media opens no camera or microphone. Device media opens the configured devices with
agent/devices.py's MediaPlayer (the health check's code path), sent at most at the profile's frame
rate and scaled to its size, so that the receiver measures it as it measures the pattern. Either
way nothing received is kept (rule 4: no hearing content is recorded): received frames are
counted and dropped. Every track can be paused, which stops its RTP stream, so that at the end
of a session each side can say exactly what it sent.
"""
from __future__ import annotations

import asyncio
import fractions
import logging
import math
import random
import time
from array import array

from aiortc.contrib.media import MediaPlayer
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av import AudioFrame, VideoFrame

from agent import devices
from agent.settings import DeviceSource, DevicesSettings, VideoProfile

log = logging.getLogger(__name__)

AUDIO_RATE = 48000
AUDIO_PTIME = 0.020
VIDEO_CLOCK = 90000


class _Paced(MediaStreamTrack):
    """Real-time pacing plus a pause switch shared by both synthetic tracks."""

    def __init__(self) -> None:
        super().__init__()
        self._start: float | None = None
        self._resume = asyncio.Event()
        self._resume.set()

    def pause(self) -> None:
        self._resume.clear()

    async def _wait_turn(self, due: float) -> None:
        if self.readyState != "live":
            raise MediaStreamError
        await self._resume.wait()
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        if self.readyState != "live":
            raise MediaStreamError


class ToneTrack(_Paced):
    """A 440 Hz tone with a slow 'syllable' envelope, so Opus encodes it like speech-ish audio."""

    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        self._samples = int(AUDIO_RATE * AUDIO_PTIME)
        self._pts = 0
        period = AUDIO_RATE // 440 * 440  # whole cycles, so the loop is seamless
        self._table = array("h", (int(6000 * math.sin(2 * math.pi * 440 * i / AUDIO_RATE))
                                  for i in range(period)))

    async def recv(self) -> AudioFrame:
        if self._start is None:
            self._start = time.monotonic()
        await self._wait_turn(self._start + self._pts / AUDIO_RATE)
        n = self._samples
        off = self._pts % len(self._table)
        chunk = (self._table[off:] + self._table[:off])[:n] if off + n > len(self._table) \
            else self._table[off:off + n]
        gain = 0.35 + 0.65 * abs(math.sin(self._pts / AUDIO_RATE * math.pi * 2.5))
        samples = array("h", (int(s * gain) for s in chunk))
        frame = AudioFrame(format="s16", layout="mono", samples=n)
        frame.planes[0].update(samples.tobytes())
        frame.pts = self._pts
        frame.sample_rate = AUDIO_RATE
        frame.time_base = fractions.Fraction(1, AUDIO_RATE)
        self._pts += n
        return frame


class PatternTrack(_Paced):
    """A panning, blocky texture at the profile's size and rate.

    Smooth enough to compress like a camera picture, moving enough that every
    frame carries data at a hearing-like bitrate. Built once from random blocks;
    each frame is a shifted window of it, so a frame costs a few slices.
    """

    kind = "video"

    def __init__(self, width: int, height: int, fps: int, seed: int = 7) -> None:
        super().__init__()
        self.width, self.height, self.fps = width - width % 2, height - height % 2, fps
        self._index = 0
        rng = random.Random(seed)
        self._pan = 64
        tw, th = self.width + self._pan, self.height + self._pan
        block = 8
        cols = tw // block + 1
        rows = []
        for _ in range(th // block + 1):
            row = bytes(v for v in (rng.randrange(16, 236) for _ in range(cols)) for _ in range(block))
            rows.extend([row[:tw]] * block)
        self._texture = rows[:th]
        self._chroma = bytes([128]) * ((self.width // 2) * (self.height // 2))

    async def recv(self) -> VideoFrame:
        if self._start is None:
            self._start = time.monotonic()
        await self._wait_turn(self._start + self._index / self.fps)
        shift = self._index % self._pan
        w = self.width
        y_plane = b"".join(row[shift:shift + w] for row in self._texture[shift:shift + self.height])
        frame = VideoFrame(width=w, height=self.height, format="yuv420p")
        frame.planes[0].update(_fit(y_plane, frame.planes[0]))
        frame.planes[1].update(_fit(self._chroma, frame.planes[1]))
        frame.planes[2].update(_fit(self._chroma, frame.planes[2]))
        frame.pts = int(self._index * VIDEO_CLOCK / self.fps)
        frame.time_base = fractions.Fraction(1, VIDEO_CLOCK)
        self._index += 1
        return frame


def _fit(data: bytes, plane) -> bytes:
    """Lay rows of `plane.width` bytes into a plane whose line size may be padded."""
    if plane.line_size == plane.width:
        return data
    pad = bytes(plane.line_size - plane.width)
    w = plane.width
    return b"".join(data[i:i + w] + pad for i in range(0, len(data), w))


class DeviceTrack(MediaStreamTrack):
    """A track of the terminal's camera or microphone (a MediaPlayer's, agent/devices.py) sent by a
    test session; pausable like the synthetic ones. Video goes out newest frame first - a frame the
    sender had no time for is skipped rather than queued, as a real endpoint drops frames, so the
    delay never grows - at most at the profile's rate and at its size. `device_tracks`: the
    player's tracks to stop when the session ends (`stop_media`)."""

    def __init__(self, inner: MediaStreamTrack, profile: VideoProfile, stray: MediaStreamTrack | None = None):
        super().__init__()
        self.kind = inner.kind
        self._inner = inner
        self.device_tracks = [t for t in (inner, stray) if t is not None]
        self._size = (profile.width - profile.width % 2, profile.height - profile.height % 2)
        self._period = 1.0 / profile.fps
        self._due: float | None = None
        self._resume = asyncio.Event()
        self._resume.set()
        self._newest: VideoFrame | None = None
        self._arrived = asyncio.Event()
        self._ended = False
        self.pump: asyncio.Task | None = None    # video: reads the device as fast as it gives frames

    def pause(self) -> None:
        self._resume.clear()

    def stop(self) -> None:
        super().stop()
        if self.pump is not None:
            self.pump.cancel()

    async def _pump(self) -> None:
        try:
            while True:
                frame = await self._inner.recv()
                if isinstance(frame, VideoFrame):
                    self._newest = frame
                    self._arrived.set()
        except Exception as exc:         # the device or the file ended (MediaStreamError), or broke
            if not isinstance(exc, MediaStreamError):
                log.warning("the camera stopped: %s", exc)
            self._ended = True
            self._arrived.set()

    async def recv(self) -> AudioFrame | VideoFrame:
        while True:
            if self.readyState != "live":
                raise MediaStreamError
            await self._resume.wait()
            if self.kind == "audio":
                frame = await self._inner.recv()     # every sample, in order
                if self.readyState != "live" or not isinstance(frame, AudioFrame):
                    raise MediaStreamError
                return frame
            if self.pump is None:
                self.pump = asyncio.ensure_future(self._pump())
            await self._arrived.wait()
            self._arrived.clear()
            video, self._newest = self._newest, None
            if self.readyState != "live" or video is None and self._ended:
                raise MediaStreamError
            if video is None:
                continue
            t = video.time
            if t is not None:                   # at most the profile's rate
                if self._due is not None and t < self._due - self._period / 2:
                    continue
                self._due = (t if self._due is None or t > self._due + self._period else self._due) + self._period
            if (video.width, video.height) != self._size:
                video = video.reformat(width=self._size[0], height=self._size[1], format="yuv420p")
            return video


async def device_tracks(sources: DevicesSettings, profile: VideoProfile) -> tuple[list[DeviceTrack], list]:
    """(the session's tracks from the configured devices, the players' other tracks that must be
    drained while they play). Opens the devices in a worker thread; a camera and a microphone
    configured alike share one player. OSError/ValueError when one cannot be opened, LookupError
    when the profile wants one that is not configured."""
    wanted = [(name, kind) for name, kind, on in (("microphone", "audio", profile.audio),
                                                   ("camera", "video", profile.video)) if on]
    chosen = {name: getattr(sources, name) for name, _ in wanted}
    players: list[tuple[DeviceSource, MediaPlayer]] = []
    tracks: list[DeviceTrack] = []
    try:
        for name, kind in wanted:
            source = chosen[name]
            if source is None:
                raise LookupError(f"session.media is devices but devices.{name} is not configured")
            player = next((p for s, p in players if s == source), None)
            shared = player is not None
            if player is None:
                player = await asyncio.to_thread(devices.open_player, source)
                players.append((source, player))
            track, other = devices.player_track(player, kind)
            if track is None:
                raise ValueError(f"devices.{name} ({source.file}) gives no {kind}")
            other_used = any(n != name and s == source for n, s in chosen.items())
            tracks.append(DeviceTrack(track, profile, None if shared or other_used else other))
    except BaseException:
        for t in tracks:
            t.stop()
        await asyncio.to_thread(devices.stop_tracks, [t for _, p in players for t in (p.audio, p.video)
                                                      if t is not None])
        raise
    strays = [t.device_tracks[1] for t in tracks if len(t.device_tracks) > 1]
    return tracks, strays


async def stop_media(tracks: list) -> None:
    """Stop a session's tracks; a device's in a worker thread (agent/devices.py: bounded)."""
    inner: list[MediaStreamTrack] = []
    for track in tracks:
        track.stop()
        inner.extend(getattr(track, "device_tracks", ()))
    await asyncio.gather(*(p for t in tracks if (p := getattr(t, "pump", None)) is not None),
                         return_exceptions=True)
    if inner:
        await asyncio.to_thread(devices.stop_tracks, inner)
