"""The terminal's own camera and microphone, proven (issue 14, rule 14).

`open_player(source)` opens a configured device (settings `devices.camera`, `devices.microphone`)
with aiortc's `MediaPlayer`: the one code path for a V4L2 camera, an ALSA microphone and, in the
tests, a file or a lavfi source played as the device - only the configuration differs. It blocks
while FFmpeg opens the device: call it in a worker thread.

`probe_devices(devices, cfg)` (blocking: the health check runs it in its worker thread) opens the
configured ones, reads them at once for `cfg.device_check_s` in a private event loop of that thread
(after the first frame and SETTLE_S more, for a camera's exposure to settle), closes them again (no
FFmpeg container stays open between checks) and returns a reading per device:

    camera:     {"present", "status", "method": "probe", "file", "format", "window_s", "frames",
                 "fps", "width", "height", "luma_mean", "luma_max", "diff_max", "gap_max_s",
                 "ended"?, "error"?, "monotonic_s"}
    microphone: {"present", "status", "method": "probe", "file", "format", "window_s", "frames",
                 "samples", "peak_dbfs", "rms_dbfs", "gap_max_s", "ended"?, "error"?, "monotonic_s"}

(luma 0..255 full range, over frames sampled at most ANALYSIS_WIDTH wide; `gap_max_s` the longest
wait for a frame within the window; levels in dB relative to full scale, SILENCE_FLOOR_DBFS for
digital silence.)

`status` (contract.vocab.DeviceStatus): `ok`; `missing` (no such device), `denied` (not allowed to
open it), `error` (it exists but cannot be opened or read, with `error` saying why); for a camera
`black` (its brightest frame's mean luma is below `health.camera_black_luma`) or `frozen` (no two
consecutive frames differ by `health.camera_frozen_diff`, no frames at all, or the frames stopped);
for a microphone `silent` (its peak over the window is below `health.microphone_silent_dbfs`, no
sound at all, or the sound stopped). Frames are measured and dropped: nothing is kept (rule 4).
"""
from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import math
import operator
import threading
import time
from array import array
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from agent.settings import DeviceSource, DevicesSettings, HealthSettings
from contract.vocab import DeviceStatus, HealthStatus

if TYPE_CHECKING:
    # The media stack (aiortc, PyAV: ~35 MB) is imported when a device is opened, not with this
    # module: agent/health.py imports it, and an idle `vks-agent run` with no devices configured
    # must not hold the media stack (docs/agent-link.md, "The agent's footprint").
    from aiortc.contrib.media import MediaPlayer
    from aiortc.mediastreams import MediaStreamTrack
    from av import AudioFrame, VideoFrame

log = logging.getLogger(__name__)

# Frames read before the measured window (a camera's exposure, a microphone's first buffers).
SETTLE_S = 0.5
# The first frame must come within this long of opening.
FIRST_FRAME_S = 5.0
# A wait for the next frame longer than this within the window: the device stopped giving frames.
STALL_S = 1.0
# Frames are compared at most this wide (nearest-neighbour sampling keeps a sensor's noise, so a
# live picture of a still room differs from frame to frame and a repeated buffer does not).
ANALYSIS_WIDTH = 160
SILENCE_FLOOR_DBFS = -100.0      # what no sound at all reads as (16-bit samples reach about -96)
# Stopping a device joins MediaPlayer's reading thread; one stuck in a driver's read is left behind
# after this long rather than holding the health check or a session's close.
STOP_TIMEOUT_S = 3.0


DEVICES = ("camera", "microphone")


# --- opening ------------------------------------------------------------------------------------

def open_player(source: DeviceSource) -> MediaPlayer:
    """The device opened with aiortc's MediaPlayer (blocking: FFmpeg opens it). PyAV's errors (OSErrors
    with `errno`) or ValueError when it cannot be opened."""
    from aiortc.contrib.media import MediaPlayer
    return MediaPlayer(source.file, format=source.format, options=dict(source.options) or None)


def stop_tracks(tracks: list[MediaStreamTrack], timeout: float = STOP_TIMEOUT_S) -> bool:
    """Stop MediaPlayer tracks - their reading thread joined, their FFmpeg container closed - in a
    thread of its own, waiting at most `timeout` (blocking). False when they did not stop in time
    (a device stuck in a read)."""
    done = threading.Event()

    def run() -> None:
        for track in tracks:
            try:
                track.stop()
            except Exception as exc:       # one that fails to stop must not keep the others open
                log.warning("device track not stopped cleanly: %s", exc)
        done.set()

    threading.Thread(target=run, name="vks-device-stop", daemon=True).start()
    if not done.wait(timeout):
        log.error("a device did not stop within %g s (stuck in its driver?)", timeout)
        return False
    return True


def open_failure(exc: BaseException) -> tuple[DeviceStatus, str]:
    """(status, why) of a device that could not be opened."""
    code = getattr(exc, "errno", None)
    text = getattr(exc, "strerror", None) or str(exc)
    if code in (errno.ENOENT, errno.ENODEV, errno.ENXIO):
        return DeviceStatus.MISSING, text
    if code in (errno.EACCES, errno.EPERM):
        return DeviceStatus.DENIED, text
    if code == errno.EBUSY:
        return DeviceStatus.ERROR, f"{text} (in use by another program)"
    return DeviceStatus.ERROR, text


def player_track(player: MediaPlayer, kind: str) -> tuple[MediaStreamTrack | None, MediaStreamTrack | None]:
    """(the track of `kind`, the player's other track if it has one: it must be drained, or its
    frames pile up in MediaPlayer's queue)."""
    track, other = (player.video, player.audio) if kind == "video" else (player.audio, player.video)
    return track, other


async def drain(track: MediaStreamTrack) -> None:
    """Read and drop a track's frames until it ends or is cancelled."""
    from aiortc.mediastreams import MediaStreamError
    with contextlib.suppress(MediaStreamError):
        while True:
            await track.recv()


# --- measuring (pure: frames in, figures out) ----------------------------------------------------

def _gray(frame: VideoFrame) -> bytes:
    """The frame's luma at most ANALYSIS_WIDTH wide, one byte a pixel, no row padding."""
    width = min(ANALYSIS_WIDTH, frame.width) // 2 * 2 or 2
    height = max(2, round(frame.height * width / max(frame.width, 1)) // 2 * 2)
    plane = frame.reformat(width=width, height=height, format="gray", interpolation="POINT").planes[0]
    data = bytes(plane)
    if plane.line_size == width:
        return data[:width * height]
    return b"".join(data[row * plane.line_size:row * plane.line_size + width] for row in range(height))


class PictureStats:
    """Brightness and change of a camera's frames."""

    def __init__(self) -> None:
        self.frames = 0
        self.luma_sum = 0.0
        self.luma_max: float | None = None
        self.diff_max = 0.0
        self.width: int | None = None
        self.height: int | None = None
        self._prev: bytes | None = None

    def add(self, frame: VideoFrame) -> None:
        """Count one frame: its mean luma, and how much it differs from the one before."""
        gray = _gray(frame)
        luma = sum(gray) / len(gray)
        self.frames += 1
        self.luma_sum += luma
        self.luma_max = luma if self.luma_max is None else max(self.luma_max, luma)
        if self._prev is not None and len(self._prev) == len(gray):
            diff = sum(map(abs, map(operator.sub, gray, self._prev))) / len(gray)
            self.diff_max = max(self.diff_max, diff)
        elif self._prev is not None:         # the size changed: that is a change
            self.diff_max = max(self.diff_max, 255.0)
        self._prev = gray
        self.width, self.height = frame.width, frame.height

    def reading(self, window_s: float) -> dict[str, Any]:
        """The figures of the window."""
        return {"window_s": round(window_s, 2), "frames": self.frames,
                "fps": round(self.frames / window_s, 1) if window_s > 0 else None,
                "width": self.width, "height": self.height,
                "luma_mean": round(self.luma_sum / self.frames, 1) if self.frames else None,
                "luma_max": None if self.luma_max is None else round(self.luma_max, 1),
                "diff_max": round(self.diff_max, 3) if self.frames > 1 else None}

    def status(self, cfg: HealthSettings, stopped: bool) -> DeviceStatus:
        """black, frozen or ok by the settings' limits."""
        if not self.frames:
            return DeviceStatus.FROZEN
        if self.luma_max is not None and self.luma_max < cfg.camera_black_luma:
            return DeviceStatus.BLACK
        if stopped or self.frames < 2 or self.diff_max < cfg.camera_frozen_diff:
            return DeviceStatus.FROZEN
        return DeviceStatus.OK


def dbfs(level: float) -> float:
    """A 16-bit level in dB relative to full scale; no sound at all reads SILENCE_FLOOR_DBFS."""
    if level <= 0:
        return SILENCE_FLOOR_DBFS
    return round(max(SILENCE_FLOOR_DBFS, 20 * math.log10(level / 32768.0)), 1)


class SoundStats:
    """Peak and RMS of a microphone's samples (aiortc's MediaPlayer gives s16)."""

    def __init__(self) -> None:
        self.frames = 0
        self.samples = 0
        self.peak = 0
        self.square_sum = 0
        self.values = 0          # samples of all channels

    def add(self, frame: AudioFrame) -> None:
        """Count one frame's samples."""
        channels = len(frame.layout.channels)
        packed = frame.format.name == "s16"
        if not packed and frame.format.name != "s16p":
            raise ValueError(f"expected 16-bit samples (MediaPlayer's), got {frame.format.name}")
        values = array("h")
        for plane in frame.planes[: 1 if packed else channels]:
            values.frombytes(bytes(plane)[:frame.samples * (channels if packed else 1) * 2])
        self.frames += 1
        self.samples += frame.samples
        if values:
            self.peak = max(self.peak, max(values), -min(values))
            self.square_sum += sum(map(operator.mul, values, values))
        self.values += len(values)

    def reading(self, window_s: float) -> dict[str, Any]:
        """The figures of the window."""
        count = self.values
        return {"window_s": round(window_s, 2), "frames": self.frames, "samples": self.samples,
                "peak_dbfs": dbfs(self.peak) if self.frames else None,
                "rms_dbfs": dbfs(math.sqrt(self.square_sum / count)) if count else None}

    def status(self, cfg: HealthSettings, stopped: bool) -> DeviceStatus:
        """silent or ok by the settings' limit."""
        if not self.frames or stopped or dbfs(self.peak) < cfg.microphone_silent_dbfs:
            return DeviceStatus.SILENT
        return DeviceStatus.OK


# --- the probe (blocking: a worker thread) --------------------------------------------------------

async def _read_window(track: MediaStreamTrack, add: Callable[[Any], None],
                       window_s: float) -> tuple[float, float | None, bool]:
    """Read `track`: the first frame within FIRST_FRAME_S, then SETTLE_S unmeasured, then `window_s`
    measured by `add`. (measured seconds, the longest wait for a frame within them, whether the
    track ended before the window did)."""
    from aiortc.mediastreams import MediaStreamError
    loop = asyncio.get_running_loop()
    deadline = loop.time() + FIRST_FRAME_S
    start: float | None = None
    last: float | None = None
    gap = 0.0
    while (left := deadline - loop.time()) > 0:
        try:
            frame = await asyncio.wait_for(track.recv(), left)
        except TimeoutError:
            break
        except MediaStreamError:
            if start is None:
                return 0.0, None, True
            return max(0.0, loop.time() - start), max(gap, loop.time() - (last or start)), True
        now = loop.time()
        if start is None:
            start = now + SETTLE_S
            deadline = start + window_s
        elif now >= start:
            gap = max(gap, now - (last if last is not None and last >= start else start))
            last = now
            add(frame)
    if start is None:
        return 0.0, None, False
    return window_s, round(max(gap, loop.time() - (last if last is not None else start)), 3), False


async def _probe(players: dict[str, tuple[DeviceSource, MediaPlayer]], cfg: HealthSettings) -> dict[str, dict]:
    """Read every opened device at once; stop them all (their containers closed)."""
    stats: dict[str, PictureStats | SoundStats] = {}
    tasks: dict[str, asyncio.Task] = {}
    drains: list[asyncio.Task] = []
    tracks: list[MediaStreamTrack] = []
    out: dict[str, dict] = {}
    try:
        for name, (source, player) in players.items():
            kind = "video" if name == "camera" else "audio"
            track, other = player_track(player, kind)
            for t in (track, other):
                if t is not None:
                    tracks.append(t)
            if track is None:
                out[name] = {"present": True, "status": DeviceStatus.ERROR,
                             "error": f"{source.file} gives no {kind}"}
                continue
            if other is not None:
                drains.append(asyncio.create_task(drain(other)))
            s = stats[name] = PictureStats() if kind == "video" else SoundStats()
            tasks[name] = asyncio.create_task(_read_window(track, s.add, cfg.device_check_s))
        for name, task in tasks.items():
            window, gap, ended = await task
            s = stats[name]
            stopped = ended or gap is not None and gap > STALL_S
            out[name] = {"present": True, "status": s.status(cfg, stopped), **s.reading(window),
                         "gap_max_s": gap, **({"ended": True} if ended else {})}
    finally:
        for task in (*tasks.values(), *drains):
            task.cancel()
        await asyncio.gather(*tasks.values(), *drains, return_exceptions=True)
        if not stop_tracks(tracks):
            for reading in out.values():
                reading.setdefault("error", "the device did not stop when told")
    return out


def probe_devices(devices: DevicesSettings, cfg: HealthSettings,
                  names: tuple[str, ...] = DEVICES) -> dict[str, dict[str, Any]]:
    """{name: reading} of the configured devices among `names` (blocking)."""
    players: dict[str, tuple[DeviceSource, MediaPlayer]] = {}
    out: dict[str, dict[str, Any]] = {}
    for name in names:
        source: DeviceSource | None = getattr(devices, name)
        if source is None:
            continue
        try:
            players[name] = (source, open_player(source))
        except (OSError, ValueError) as exc:     # PyAV's errors are OSErrors with errno
            status, why = open_failure(exc)
            out[name] = {"present": status != DeviceStatus.MISSING, "status": status, "error": why}
    try:
        if players:
            out.update(asyncio.run(_probe(players, cfg)))
    except Exception as exc:                       # a device that breaks the reading, not the check
        log.warning("device check failed: %s", exc)
        for name in players:
            out.setdefault(name, {"present": True, "status": DeviceStatus.ERROR, "error": str(exc)})
    now = time.monotonic()
    for name, reading in out.items():
        source = getattr(devices, name)
        reading.update({"method": "probe", "file": source.file, "format": source.format, "monotonic_s": now})
        reading["status"] = str(reading["status"])
    return out


# --- judgement (pure) -------------------------------------------------------------------------------

def device_problems(name: str, reading: dict[str, Any], cfg: HealthSettings) -> list[tuple[HealthStatus, str]]:
    """(level, problem in words) of a probed device's reading; none when it is ok."""
    status, file = reading.get("status"), reading.get("file")
    window, gap, why = reading.get("window_s") or 0, reading.get("gap_max_s"), reading.get("error")
    group = "video" if name == "camera" else "audio"
    missing = cfg.camera_missing if name == "camera" else cfg.microphone_missing
    if status == DeviceStatus.MISSING:
        return [(missing, f"{name}: {file} not found ({why})")]
    if status == DeviceStatus.DENIED:
        return [(cfg.device_error, f"{name}: not allowed to open {file} ({why}); "
                                   f"is the agent's user in the {group} group?")]
    if status == DeviceStatus.ERROR:
        return [(cfg.device_error, f"{name}: cannot read {file}: {why}")]
    if status == DeviceStatus.BLACK:
        return [(cfg.camera_black, f"camera: black picture from {file} (its brightest frame "
                                   f"{reading.get('luma_max', 0):.0f} of 255 over {window:g} s, "
                                   f"limit {cfg.camera_black_luma:g})")]
    if status not in (DeviceStatus.FROZEN, DeviceStatus.SILENT):
        return []
    level, what, unit = ((cfg.camera_frozen, "picture", "frames") if name == "camera"
                         else (cfg.microphone_silent, "sound", "samples"))
    if not reading.get("frames"):
        when = f"in the {window:g} s measured" if window else f"within {FIRST_FRAME_S:g} s of opening it"
        return [(level, f"{name}: no {what} from {file} (no {unit} {when})")]
    if reading.get("ended") or gap is not None and gap > STALL_S:
        return [(level, f"{name}: the {what} from {file} stopped (nothing for {gap or 0:.1f} s)")]
    if name == "camera":
        return [(level, f"camera: frozen picture from {file} ({reading.get('frames')} frames over "
                        f"{window:g} s, consecutive ones differing by {reading.get('diff_max') or 0:.2f} "
                        f"of 255 at most, limit {cfg.camera_frozen_diff:g})")]
    return [(level, f"microphone: silent ({file}: peak {reading.get('peak_dbfs'):g} dBFS over {window:g} s, "
                    f"limit {cfg.microphone_silent_dbfs:g} dBFS)")]
