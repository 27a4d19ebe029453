"""The agent's settings (configs/agent.yaml), validated.

Every key has a default, so `vks-agent test --peer ...` works with no file at all.
"""
from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from contract import configfile, quality
from contract.configfile import IceServer
from contract.vocab import HealthStatus, SessionMedia, TerminalRole
from contract.wire import CAPACITY_MAX_S_PER_DIRECTION

DEFAULT_PATH_ENV = "VKS_AGENT_CONFIG"


class Strict(BaseModel):
    """A settings section: unknown keys are an error (a typo must not pass silently)."""
    model_config = ConfigDict(extra="forbid")


class VideoProfile(Strict):
    """A media profile: what the test session sends, hearing-like by default."""
    width: int = Field(default=640, ge=16, le=3840)
    height: int = Field(default=360, ge=16, le=2160)
    fps: int = Field(default=15, ge=1, le=60)
    # Target bitrate for the VP8 encoder (kbit/s); the congestion controller may go lower.
    bitrate_kbps: int = Field(default=600, ge=50, le=8000)
    audio: bool = True
    video: bool = True
    # The threshold profile (configs/thresholds.yaml) a session of this profile is judged by.
    thresholds: str = "hearing"


def _default_profiles() -> dict[str, VideoProfile]:
    return {
        # What a hearing carries: 360p at 15 fps, Opus audio (issue 3).
        "hearing": VideoProfile(),
        # The lighter monitoring session kept up during a hearing (issue 5).
        "monitor": VideoProfile(width=320, height=180, fps=10, bitrate_kbps=250, thresholds="monitor"),
        "audio-only": VideoProfile(video=False),
    }


class CapacitySettings(Strict):
    """The capacity ramp after a test session's media (agent/capacity.py): rates in IP kb/s."""
    # The most a direction is ramped to; a direction clean there reports `limited_by: ceiling`.
    ceiling_kbps: float = Field(default=2500.0, gt=0, le=1_000_000)
    start_kbps: float = Field(default=300.0, gt=0, le=1_000_000)
    step_s: float = Field(default=0.5, gt=0.1, le=2.0)
    # At most this long per direction.
    max_s: float = Field(default=12.0, gt=0, le=CAPACITY_MAX_S_PER_DIRECTION)   # the controller waits no longer
    # Queueing delay growth within a step (ms) that means a queue builds at the bottleneck.
    delay_growth_ms: float = Field(default=15.0, gt=0, le=1000.0)


class SessionSettings(Strict):
    """How test sessions are made: ICE, media profiles, probes, limits, the quality model."""
    ice_servers: list[IceServer] = Field(default_factory=list)
    # What a test or pre-connect session sends: the synthetic tone and pattern, or the terminal's
    # own camera and microphone (`devices`; `vks-agent test --media`). Monitoring during a
    # hearing always sends synthetic media: the hearing has the devices.
    media: SessionMedia = SessionMedia.SYNTHETIC
    # aioice gathers every non-loopback address and has no interface selection;
    # these addresses, when given, are the only host candidates offered.
    # Loopback must be named here to test two processes on 127.0.0.1.
    host_addresses: list[str] = Field(default_factory=list)
    default_profile: str = "hearing"
    profiles: dict[str, VideoProfile] = Field(default_factory=_default_profiles)
    # The sender honours congestion feedback and bounds its retransmissions (agent/sender.py).
    # false: aiortc's sender as it is, which floods a thin link with retransmissions - only to
    # show the difference (benchmarks/bottleneck.py).
    bounded_sender: bool = True
    # The capacity ramp (`vks-agent test --capacity`, rule-13 checks); never during monitoring.
    capacity: CapacitySettings = Field(default_factory=CapacitySettings)
    # Data-channel RTT probes per second.
    probe_hz: float = Field(default=10.0, gt=0, le=50)
    # Give up connecting after this long (offer to media flowing).
    connect_timeout_s: float = Field(default=10.0, gt=0, le=60)
    # How many sessions a responder serves at once; more get 503.
    max_sessions: int = Field(default=2, ge=1, le=64)
    # Largest offer the responder reads (bytes); larger gets 400.
    max_offer_bytes: int = Field(default=64 * 1024, ge=1024)
    # The threshold profiles; default: the package's own (contract/thresholds.yaml, package data).
    thresholds_path: Path = quality.DEFAULT_PATH


class ControllerLink(Strict):
    """The link to the controller: where, with which token, where reports wait meanwhile."""
    url: str | None = None          # ws(s)://host:port/api/v1/agent
    token: str | None = None
    token_file: Path | None = None
    outbox_path: Path = Path("/var/lib/vks-agent/outbox.sqlite")
    heartbeat_s: float = Field(default=5.0, gt=0)
    ca_file: Path | None = None


class ResponderSettings(Strict):
    """`vks-agent responder`: who may offer, and how often."""
    # The bearer token an offer must carry: this file's first line, trimmed (--token-file overrides).
    token_file: Path | None = None
    # Offers taken from one source address per minute; more get 429 (counted before any work).
    offers_per_minute: int = Field(default=30, ge=1, le=6000)


class MetricsSettings(Strict):
    """The daemon's /metrics endpoint ('' or off: none)."""
    listen: str = "127.0.0.1:9101"


class HookSettings(Strict):
    """Endpoint hooks: a command or an HTTP call fired on break/reconnect/resume."""
    on_break: str | None = None
    on_reconnect: str | None = None
    on_resume: str | None = None
    timeout_s: float = 10.0


class DeviceSource(Strict):
    """A camera or a microphone as FFmpeg opens it (aiortc's MediaPlayer, agent/devices.py): a V4L2
    node (`file: /dev/video0, format: v4l2`), an ALSA PCM (`file: default, format: alsa`; PulseAudio
    and PipeWire through ALSA's `default`), or for a trial a file or a lavfi source."""
    file: str = Field(min_length=1)
    # An FFmpeg input format (v4l2, alsa, pulse where FFmpeg has it, lavfi ...); none: by the contents.
    format: str | None = None
    # FFmpeg options of the input, e.g. {video_size: 1280x720, framerate: "30", input_format: mjpeg}.
    options: dict[str, str] = Field(default_factory=dict)

    @field_validator("options", mode="before")
    @classmethod
    def _as_text(cls, v):
        return {str(k): str(x) for k, x in v.items()} if isinstance(v, dict) else v

    @field_validator("format")
    @classmethod
    def _known_format(cls, v):
        if v is None:
            return v
        import av  # FFmpeg's input formats, as this build has them
        known = {name for names in av.formats_available for name in names.split(",")}
        if v not in known:
            raise ValueError(f"FFmpeg here has no input format {v!r} (for example v4l2, alsa, lavfi)")
        return v


class DevicesSettings(Strict):
    """The terminal's camera and microphone (issue 14): proven by the health check, and sent by test
    sessions with `session.media: devices`. None: the health check looks for device nodes only."""
    camera: DeviceSource | None = None
    microphone: DeviceSource | None = None


class HealthSettings(Strict):
    """Terminal health (rule 14, agent/health.py): what is checked, when it is a problem."""
    interval_s: float = Field(default=30.0, gt=0)            # how often the agent checks
    cpu_sample_s: float = Field(default=0.25, gt=0, le=5)    # CPU percent measured over this long
    cpu_warn_percent: float = Field(default=85.0, ge=0, le=100)
    cpu_fail_percent: float = Field(default=98.0, ge=0, le=100)
    load_per_cpu_warn: float = Field(default=2.0, gt=0)      # 1-min load average / CPUs
    memory_warn_ratio: float = Field(default=0.85, ge=0, le=1)
    memory_fail_ratio: float = Field(default=0.95, ge=0, le=1)
    # Checked besides "/" and the outbox's directory.
    disk_paths: list[Path] = Field(default_factory=list)
    disk_warn_ratio: float = Field(default=0.90, ge=0, le=1)
    disk_fail_ratio: float = Field(default=0.98, ge=0, le=1)
    disk_warn_free_bytes: int = Field(default=1024 ** 3, ge=0)
    disk_fail_free_bytes: int = Field(default=200 * 1024 ** 2, ge=0)
    # Interfaces that must be up; empty: the default route's interface.
    interfaces: list[str] = Field(default_factory=list)
    min_speed_mbps: int = Field(default=100, ge=0)           # 0: not checked; unknown speeds are not judged
    net_errors_warn: int = Field(default=1, ge=1)            # new errors since the last check
    net_drop_ratio_warn: float = Field(default=0.01, ge=0, le=1)   # new drops / new packets
    camera_missing: HealthStatus = HealthStatus.WARN
    microphone_missing: HealthStatus = HealthStatus.WARN
    # The configured devices (section `devices`) are opened and read for device_check_s (after
    # half a second to settle), at most every device_interval_s; between, the last finding stands.
    device_check_s: float = Field(default=2.5, ge=2.0, le=10.0)     # silence is judged over >= 2 s
    device_interval_s: float = Field(default=60.0, ge=0)
    # Black: the brightest frame's mean luma (0..255) below this; frozen: no two consecutive frames
    # differ by this much (mean absolute luma difference), or no frames at all; silent: the
    # microphone's peak below this (dB relative to full scale), or no sound at all.
    camera_black_luma: float = Field(default=24.0, ge=0, le=255)
    camera_frozen_diff: float = Field(default=0.1, ge=0, le=255)
    microphone_silent_dbfs: float = Field(default=-70.0, ge=-100, le=0)
    camera_black: HealthStatus = HealthStatus.FAIL
    camera_frozen: HealthStatus = HealthStatus.FAIL
    microphone_silent: HealthStatus = HealthStatus.FAIL
    # A configured device that exists but cannot be opened or read (permission, busy, I/O error).
    device_error: HealthStatus = HealthStatus.WARN
    clock_unsynchronised: HealthStatus = HealthStatus.WARN
    clock_offset_warn_s: float = Field(default=0.5, gt=0)
    clock_offset_fail_s: float = Field(default=10.0, gt=0)

    @model_validator(mode="after")
    def _warn_before_fail(self):
        for warn, fail in (("cpu_warn_percent", "cpu_fail_percent"), ("memory_warn_ratio", "memory_fail_ratio"),
                           ("disk_warn_ratio", "disk_fail_ratio"), ("clock_offset_warn_s", "clock_offset_fail_s")):
            if getattr(self, warn) > getattr(self, fail):
                raise ValueError(f"{warn} ({getattr(self, warn)}) must not exceed {fail} ({getattr(self, fail)})")
        if self.disk_warn_free_bytes < self.disk_fail_free_bytes:
            raise ValueError("disk_warn_free_bytes must not be below disk_fail_free_bytes")
        return self


class AgentSettings(Strict):
    """All of the agent's settings (configs/agent.yaml, section `agent`)."""
    terminal_id: str = Field(default_factory=lambda: os.uname().nodename)
    role: TerminalRole = TerminalRole.COURTROOM
    session: SessionSettings = Field(default_factory=SessionSettings)
    controller: ControllerLink = Field(default_factory=ControllerLink)
    responder: ResponderSettings = Field(default_factory=ResponderSettings)
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)
    hooks: HookSettings = Field(default_factory=HookSettings)
    health: HealthSettings = Field(default_factory=HealthSettings)
    devices: DevicesSettings = Field(default_factory=DevicesSettings)

    def profile(self, name: str | None) -> VideoProfile:
        """The media profile `name` (None: the default); a ConfigError names the known ones."""
        name = name or self.session.default_profile
        try:
            return self.session.profiles[name]
        except KeyError:
            known = ", ".join(sorted(self.session.profiles))
            raise configfile.ConfigError(None, "session.profiles",
                                         f"no profile named {name!r} (known: {known})") from None


def read_token_file(path: Path, key: str) -> str:
    """The bearer token in `path`: its first line, trimmed (blocking: call it in a worker thread);
    a ConfigError naming `key` for a file that cannot be read or is empty."""
    return configfile.read_secret(path, key)


def load_settings(path: str | os.PathLike | None = None) -> AgentSettings:
    """Load the agent's settings: `path`, else $VKS_AGENT_CONFIG, else defaults."""
    path = path or os.environ.get(DEFAULT_PATH_ENV)
    return configfile.load(AgentSettings, path, section="agent")
