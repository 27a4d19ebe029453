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
from typing import NamedTuple

import aioice.ice
from aiortc import RTCConfiguration, RTCIceServer
from aiortc.rtcconfiguration import RTCBundlePolicy

from agent.settings import SessionSettings

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


# At most this many distinct remote transport addresses of one description are ever contacted: an
# offer listing hundreds would otherwise make the answerer a STUN scanner and reflector.
MAX_REMOTE_CANDIDATES = 16
_BROADCAST = ipaddress.IPv4Address("255.255.255.255")


class RemoteCandidates(NamedTuple):
    """A remote description's SDP with only the candidates this side may contact."""
    sdp: str
    kept: int          # distinct remote transport addresses left
    dropped: int       # candidate lines removed


def _contactable(address: str, allow_loopback: bool) -> bool:
    """May a connectivity check go to `address`? Only an IP literal (no mDNS name, which could
    resolve anywhere) that is not link-local, multicast, broadcast or unspecified; loopback only
    when this side itself offers loopback."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_link_local or ip.is_multicast or ip.is_unspecified or ip == _BROADCAST:
        return False
    return allow_loopback or not ip.is_loopback


def remote_candidates(sdp: str, *, allow_loopback: bool,
                      limit: int = MAX_REMOTE_CANDIDATES) -> RemoteCandidates:
    """Filter the `a=candidate` lines of a remote description before aiortc applies it: drop the
    ones `_contactable` refuses and malformed ones, and keep at most `limit` distinct transport
    addresses over all media sections (a bundled offer repeats its candidates in each section;
    a repeat of a kept address is kept). `a=end-of-candidates` and every other line pass as they
    are. Candidates reach a session in its descriptions only: no path trickles them later."""
    newline = "\r\n" if "\r\n" in sdp else "\n"
    kept: set[tuple[str, str, int]] = set()
    out: list[str] = []
    dropped = 0
    for line in sdp.split(newline):
        if line.startswith("a=candidate:"):
            fields = line[len("a=candidate:"):].split()
            key = None
            if len(fields) >= 8 and fields[5].isdigit():
                key = (fields[2].lower(), fields[4].lower(), int(fields[5]))
            if key is None or not _contactable(key[1], allow_loopback) or (
                    key not in kept and len(kept) >= limit):
                dropped += 1
                continue
            kept.add(key)
        out.append(line)
    return RemoteCandidates(newline.join(out), len(kept), dropped)


def offers_loopback(settings: SessionSettings) -> bool:
    """Does this side offer a loopback host candidate (a test on one machine)?"""
    def loopback(address: str) -> bool:
        try:
            return ipaddress.ip_address(address).is_loopback
        except ValueError:
            return False
    return any(loopback(a) for a in settings.host_addresses)


PATH_TYPES = ("host", "srflx", "prflx", "relay")


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
