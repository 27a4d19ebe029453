"""The agent's settings (configs/agent.yaml), validated.

Every key has a default, so `vks-agent test --peer ...` works with no file at all.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from agent import configfile

REPO_CONFIGS = Path(__file__).resolve().parent.parent / "configs"
DEFAULT_PATH_ENV = "VKS_AGENT_CONFIG"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class IceServer(Strict):
    """A STUN or TURN server, as in RTCIceServer."""
    urls: list[str]
    username: str | None = None
    credential: str | None = None

    @field_validator("urls", mode="before")
    @classmethod
    def _one_or_many(cls, v):
        return [v] if isinstance(v, str) else v


class VideoProfile(Strict):
    """A media profile: what the test session sends, hearing-like by default."""
    width: int = Field(640, ge=16, le=3840)
    height: int = Field(360, ge=16, le=2160)
    fps: int = Field(15, ge=1, le=60)
    # Target bitrate for the VP8 encoder (kbit/s); the congestion controller may go lower.
    bitrate_kbps: int = Field(600, ge=50, le=8000)
    audio: bool = True
    video: bool = True


def _default_profiles() -> dict[str, VideoProfile]:
    return {
        # What a hearing carries: 360p at 15 fps, Opus audio (issue 3).
        "hearing": VideoProfile(),
        # The lighter monitoring session kept up during a hearing (issue 5).
        "monitor": VideoProfile(width=320, height=180, fps=10, bitrate_kbps=250),
        "audio-only": VideoProfile(video=False),
    }


class SessionSettings(Strict):
    ice_servers: list[IceServer] = Field(default_factory=list)
    # aioice gathers every non-loopback address and has no interface selection;
    # these addresses, when given, are the only host candidates offered.
    # Loopback must be named here to test two processes on 127.0.0.1.
    host_addresses: list[str] = Field(default_factory=list)
    default_profile: str = "hearing"
    profiles: dict[str, VideoProfile] = Field(default_factory=_default_profiles)
    # Data-channel RTT probes per second.
    probe_hz: float = Field(10.0, gt=0, le=50)
    # Give up connecting after this long (offer to media flowing).
    connect_timeout_s: float = Field(10.0, gt=0, le=60)
    # How many sessions a responder serves at once; more get 503.
    max_sessions: int = Field(2, ge=1, le=64)
    # Largest offer the responder reads (bytes); larger gets 400.
    max_offer_bytes: int = Field(64 * 1024, ge=1024)
    thresholds_path: Path = REPO_CONFIGS / "thresholds.yaml"
    thresholds_profile: str = "hearing"


class ControllerLink(Strict):
    url: str | None = None          # ws(s)://host:port/api/v1/agent
    token: str | None = None
    token_file: Path | None = None
    outbox_path: Path = Path("/var/lib/vks-agent/outbox.sqlite")
    heartbeat_s: float = Field(5.0, gt=0)
    ca_file: Path | None = None


class MetricsSettings(Strict):
    listen: str = "127.0.0.1:9101"


class HookSettings(Strict):
    """Endpoint hooks: a command or an HTTP call fired on break/reconnect/resume."""
    on_break: str | None = None
    on_reconnect: str | None = None
    on_resume: str | None = None
    timeout_s: float = 10.0


class AgentSettings(Strict):
    terminal_id: str = Field(default_factory=lambda: os.uname().nodename)
    role: Literal["courtroom", "institution"] = "courtroom"
    session: SessionSettings = Field(default_factory=SessionSettings)
    controller: ControllerLink = Field(default_factory=ControllerLink)
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)
    hooks: HookSettings = Field(default_factory=HookSettings)

    def profile(self, name: str | None) -> VideoProfile:
        name = name or self.session.default_profile
        try:
            return self.session.profiles[name]
        except KeyError:
            known = ", ".join(sorted(self.session.profiles))
            raise configfile.ConfigError(None, "session.profiles",
                                         f"no profile named {name!r} (known: {known})") from None


def load_settings(path: str | os.PathLike | None = None) -> AgentSettings:
    """Load the agent's settings: `path`, else $VKS_AGENT_CONFIG, else defaults."""
    path = path or os.environ.get(DEFAULT_PATH_ENV)
    return configfile.load(AgentSettings, path, section="agent")
