"""Synthetic media for test sessions: an Opus-bound tone and a moving video pattern.

No camera or microphone is opened and nothing received is kept (rule 4: no hearing
content is recorded): the tracks generate their own signal, and received frames are
counted and dropped. Both tracks can be paused, which stops their RTP streams, so
that at the end of a session each side can say exactly what it sent.
"""
from __future__ import annotations

import asyncio
import fractions
import math
import random
import time
from array import array

from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av import AudioFrame, VideoFrame

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
