"""Files played as a terminal's camera and microphone (issue 14): the kernel here has no
v4l2loopback and no sound card, so the tests give `devices.camera` / `devices.microphone` a file
instead of /dev/video0 and ALSA's `default` - the same MediaPlayer code path, another config.

Written with PyAV: a moving picture, a black one and a still one (y4m: raw, so a still picture
repeats byte for byte, as a frozen camera's buffer does), a beep each second and silence (WAV).
"""
from __future__ import annotations

import fractions
import math
import random
from array import array
from pathlib import Path

import av

RATE = 48000


def write_video(path: Path, kind: str, seconds: float, width: int = 160, height: int = 120,
                fps: int = 15, fmt: str = "yuv4mpegpipe", codec: str = "rawvideo", block: int = 8) -> Path:
    """`kind`: "moving" (a random-block texture panning a pixel a frame), "black" (luma 16, the
    black of limited-range video) or "still" (the texture, not moving)."""
    rng = random.Random(3)
    pan = 64
    cols = (width + pan) // block + 1
    rows: list[bytes] = []
    for _ in range((height + pan) // block + 1):
        row = bytes(v for v in (rng.randrange(40, 220) for _ in range(cols)) for _ in range(block))
        rows.extend([row] * block)
    chroma = bytes([128]) * ((width // 2) * (height // 2))
    with av.open(str(path), "w", format=fmt) as out:
        stream = out.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for i in range(int(seconds * fps)):
            if kind == "black":
                luma = bytes([16]) * (width * height)
            else:
                shift = i % pan if kind == "moving" else 0
                luma = b"".join(r[shift:shift + width] for r in rows[shift:shift + height])
            frame = av.VideoFrame(width, height, "yuv420p")
            for plane, data in zip(frame.planes, (luma, chroma, chroma), strict=True):
                w = plane.width
                plane.update(data if plane.line_size == w else
                             b"".join(data[j:j + w] + bytes(plane.line_size - w) for j in range(0, len(data), w)))
            frame.pts = i
            frame.time_base = fractions.Fraction(1, fps)
            _encode(out, stream, frame)
        _encode(out, stream, None)
    return path


def write_sound(path: Path, kind: str, seconds: float, dbfs: float = -12.0) -> Path:
    """`kind`: "beep" (0.1 s of 1 kHz at `dbfs` at the start of each second, silence between -
    as Chromium's fake microphone does) or "silence" (digital zero)."""
    amplitude = 32767 * 10 ** (dbfs / 20)
    n = int(seconds * RATE)
    samples = array("h", bytes(2 * n))
    if kind == "beep":
        for i in range(n):
            if i % RATE < RATE // 10:
                samples[i] = int(amplitude * math.sin(2 * math.pi * 1000 * i / RATE))
    with av.open(str(path), "w", format="wav") as out:
        stream = out.add_stream("pcm_s16le", rate=RATE)
        stream.layout = "mono"
        step = 960
        for k, start in enumerate(range(0, n, step)):
            chunk = samples[start:start + step]
            frame = av.AudioFrame(format="s16", layout="mono", samples=len(chunk))
            frame.planes[0].update(chunk.tobytes())
            frame.sample_rate = RATE
            frame.pts = k * step
            frame.time_base = fractions.Fraction(1, RATE)
            _encode(out, stream, frame)
        _encode(out, stream, None)
    return path


def _encode(out, stream, frame) -> None:
    """Encode a frame (None: flush the encoder) and write its packets."""
    for packet in stream.encode(frame):
        out.mux(packet)
