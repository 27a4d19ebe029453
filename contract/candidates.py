"""Which of a remote description's ICE candidates a peer may contact (the agents' sessions and the
controller's self-check peer, issue 14): pure SDP text, no I/O.

A remote description is filtered (`remote_candidates`) before aiortc applies it: at most
MAX_REMOTE_CANDIDATES addresses, none link-local, multicast or broadcast, no mDNS name, and loopback
only for a side that offers loopback itself. `PATH_TYPES`: the ICE candidate types a path is
reported as (a relay: through a TURN server). `OfferLimiter`: offers per source address in a
sliding minute (the agents' responder, the controller's self-check links: 429 above it).
"""
from __future__ import annotations

import ipaddress
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import NamedTuple

PATH_TYPES = ("host", "srflx", "prflx", "relay")

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


class OfferLimiter:
    """Offers per source address in a sliding minute, in bounded memory: a source's attempts are
    at most the limit, sources silent for a minute are pruned, and beyond `max_sources` the least
    recently seen are forgotten."""
    WINDOW_S = 60.0

    def __init__(self, per_minute: int, max_sources: int = 4096,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.per_minute = per_minute
        self.max_sources = max_sources
        self._clock = clock
        self._seen: OrderedDict[str, deque[float]] = OrderedDict()   # least recently seen first

    def __len__(self) -> int:
        return len(self._seen)

    def allow(self, source: str) -> bool:
        """Count an offer from `source`; False when it already made `per_minute` in the last minute."""
        now = self._clock()
        while self._seen:                       # prune sources silent for a minute, least recent first
            oldest = next(iter(self._seen.values()))
            if oldest and now - oldest[-1] < self.WINDOW_S:
                break
            self._seen.popitem(last=False)
        if source not in self._seen and len(self._seen) >= self.max_sources:
            self._seen.popitem(last=False)      # full of recent sources: forget the least recent
        times = self._seen.setdefault(source, deque(maxlen=self.per_minute))
        self._seen.move_to_end(source)
        while times and now - times[0] >= self.WINDOW_S:
            times.popleft()
        if len(times) >= self.per_minute:
            return False
        times.append(now)
        return True
