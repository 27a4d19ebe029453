"""`selfcheck:` of the controller's settings (issue 14): the self-check links' media peer."""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from contract.configfile import IceServer


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SelfCheckSettings(_Strict):
    """The self-check page's WebRTC session with the controller's own aiortc peer."""
    # The media window the browser measures (the whole check: a few seconds more).
    duration_s: float = Field(default=15.0, ge=3.0, le=60.0)
    # The controller's host candidates: like an agent's `session.host_addresses`, these addresses
    # only (empty: every address aioice finds). Name the address phones can reach.
    host_addresses: list[str] = Field(default_factory=list)
    ice_servers: list[IceServer] = Field(default_factory=list)
    # At most this many self-check sessions at once (each is a peer with media on this controller).
    max_sessions: int = Field(default=8, ge=1, le=200)
    # Offers (sessions started) per source address and minute, as the agents' responder: 429 above it.
    offers_per_minute: int = Field(default=30, ge=1, le=10_000)
    # The links' base, e.g. https://vks.court.kz (default: the scheme and host the request came with).
    public_url: str | None = None
