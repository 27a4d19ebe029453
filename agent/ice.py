"""ICE settings for a peer connection: STUN/TURN servers, which host addresses to offer, and
which of the far side's candidates may be contacted.

aioice offers every non-loopback address of the machine and has no interface
selection. A terminal with a management network beside its media network, or a
test between two processes on 127.0.0.1, needs to choose. `host_addresses` (from
settings) replaces aioice's address discovery for the sessions started inside
`chosen_host_addresses(...)`; a context variable keeps concurrent sessions apart.

A remote description is filtered (`remote_candidates`) before aiortc applies it, on both
sides of every session: at most MAX_REMOTE_CANDIDATES addresses, none link-local, multicast or
broadcast, and loopback only for a side that offers loopback itself.
"""
from __future__ import annotations

import contextlib
import contextvars
import ipaddress
from collections.abc import Iterator

import aioice.ice
from aiortc import RTCConfiguration, RTCIceServer
from aiortc.rtcconfiguration import RTCBundlePolicy

from agent.settings import SessionSettings

# The remote description's filter is shared with the controller's self-check peer (issue 14).
from contract.candidates import MAX_REMOTE_CANDIDATES, PATH_TYPES, RemoteCandidates, remote_candidates

__all__ = ["MAX_REMOTE_CANDIDATES", "PATH_TYPES", "RemoteCandidates", "chosen_host_addresses", "offers_loopback",
           "path_type", "remote_candidates", "rtc_configuration"]

_chosen: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar("vks_host_addresses", default=None)
_discover = aioice.ice.get_host_addresses


def _get_host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
    chosen = _chosen.get()
    if chosen is None:
        return _discover(use_ipv4=use_ipv4, use_ipv6=use_ipv6)
    out = []
    for addr in chosen:
        version = ipaddress.ip_address(addr).version
        if (version == 4 and use_ipv4) or (version == 6 and use_ipv6):
            out.append(addr)
    return out


aioice.ice.get_host_addresses = _get_host_addresses


@contextlib.contextmanager
def chosen_host_addresses(addresses: list[str] | None) -> Iterator[None]:
    """Within this block (and tasks started from it), gather only these host candidates."""
    token = _chosen.set(list(addresses) if addresses else None)
    try:
        yield
    finally:
        _chosen.reset(token)


def rtc_configuration(settings: SessionSettings) -> RTCConfiguration:
    """The peer connection's configuration: the configured STUN/TURN servers only, one bundle."""
    servers = [RTCIceServer(urls=s.urls, username=s.username, credential=s.credential)
               for s in settings.ice_servers]
    # An empty list, never None: with None aiortc falls back to a public STUN server,
    # which a court network may not reach and must not be told about.
    # One transport for audio, video and data: one ICE check, one DTLS handshake.
    return RTCConfiguration(iceServers=servers, bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)


def offers_loopback(settings: SessionSettings) -> bool:
    """Does this side offer a loopback host candidate (a test on one machine)?"""
    def loopback(address: str) -> bool:
        try:
            return ipaddress.ip_address(address).is_loopback
        except ValueError:
            return False
    return any(loopback(a) for a in settings.host_addresses)


def path_type(pc) -> str | None:
    """The type of the local candidate of the ICE pair the session's media uses (host | srflx |
    prflx | relay: a relay means a TURN server stands in the path); None when none was selected."""
    transports = [getattr(getattr(t, "sender", None), "transport", None) for t in pc.getTransceivers()]
    sctp = getattr(pc, "sctp", None)
    transports.append(getattr(sctp, "transport", None))
    for dtls in transports:
        connection = getattr(getattr(dtls, "transport", None), "_connection", None)
        nominated = getattr(connection, "_nominated", None) or {}
        for pair in nominated.values():
            kind = getattr(pair.local_candidate, "type", None)
            if kind in PATH_TYPES:
                return kind
    return None
