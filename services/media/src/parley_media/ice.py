"""Trickle ICE plumbing and the announced-address rewrite.

aiortc gathers all its own candidates before answering, so only *incoming* candidates trickle. They may
arrive before the offer (another NATS handler ran first) or while the answer is being produced; both
cases are buffered and applied in arrival order once the answer exists.
"""

from __future__ import annotations

import ipaddress
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable
from typing import Generic, TypeVar

from aiortc import RTCIceCandidate, RTCPeerConnection
from aiortc.sdp import candidate_from_sdp

from .errors import InvalidCandidate
from .model import IceCandidate

logger = logging.getLogger(__name__)

K = TypeVar("K", bound=Hashable)

MAX_PENDING = 256


def parse_candidate(item: IceCandidate) -> RTCIceCandidate | None:
    """Browser candidate -> aiortc candidate; None for the empty / end-of-candidates marker."""
    text = item.candidate.strip()
    if text.startswith("a="):
        text = text[2:]
    if text in ("", "end-of-candidates"):
        return None
    if text.startswith("candidate:"):
        text = text[len("candidate:") :]
    try:
        candidate = candidate_from_sdp(text)
    except (AssertionError, ValueError, IndexError) as exc:
        raise InvalidCandidate(f"cannot parse ICE candidate {item.candidate!r}") from exc
    # aiortc needs one of them; with BUNDLE every m-line shares the first transport.
    candidate.sdpMid = item.sdp_mid
    candidate.sdpMLineIndex = item.sdp_mline_index
    if item.sdp_mid is None and item.sdp_mline_index is None:
        candidate.sdpMLineIndex = 0
    return candidate


def parse_candidates(items: Iterable[IceCandidate]) -> list[RTCIceCandidate]:
    parsed = (parse_candidate(item) for item in items)
    return [c for c in parsed if c is not None]


class CandidateGate:
    """Holds a session's remote candidates until its answer exists, then applies them in order."""

    def __init__(self) -> None:
        self._pending: list[RTCIceCandidate] = []
        self._pc: RTCPeerConnection | None = None
        self.applied = 0

    async def add(self, candidates: Iterable[RTCIceCandidate]) -> None:
        if self._pc is None:
            self._pending.extend(candidates)
            del self._pending[:-MAX_PENDING]
            return
        for candidate in candidates:
            await self._apply(self._pc, candidate)

    async def open(self, pc: RTCPeerConnection) -> None:
        # Candidates added while we await here land in _pending and are picked up by the loop.
        while self._pending:
            batch, self._pending = self._pending, []
            for candidate in batch:
                await self._apply(pc, candidate)
        self._pc = pc

    async def _apply(self, pc: RTCPeerConnection, candidate: RTCIceCandidate) -> None:
        try:
            await pc.addIceCandidate(candidate)
            self.applied += 1
        except Exception as exc:  # a closed pc or a candidate aioice rejects must not fail the request
            logger.warning("ignoring ICE candidate %s:%s: %s", candidate.ip, candidate.port, exc)


class EarlyCandidates(Generic[K]):
    """Candidates for sessions that do not exist yet, kept for ``ttl`` seconds, bounded in size."""

    def __init__(
        self,
        ttl: float,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 4096,
        max_per_key: int = 64,
    ) -> None:
        self._ttl = ttl
        self._clock = clock
        self._max_keys = max_keys
        self._max_per_key = max_per_key
        self._entries: OrderedDict[K, tuple[float, list[RTCIceCandidate]]] = OrderedDict()

    def __len__(self) -> int:
        self._purge()
        return len(self._entries)

    def add(self, key: K, candidates: list[RTCIceCandidate]) -> None:
        self._purge()
        created, items = self._entries.pop(key, (self._clock(), []))
        items.extend(candidates)
        self._entries[key] = (created, items[-self._max_per_key :])
        while len(self._entries) > self._max_keys:
            self._entries.popitem(last=False)

    def take(self, key: K) -> list[RTCIceCandidate]:
        self._purge()
        return self._entries.pop(key, (0.0, []))[1]

    def discard(self, key: K) -> None:
        self._entries.pop(key, None)

    def _purge(self) -> None:
        limit = self._clock() - self._ttl
        while self._entries:
            key, (created, _) = next(iter(self._entries.items()))
            if created >= limit:
                return
            del self._entries[key]


def announce_address(sdp: str, address: str | None) -> str:
    """Write ``address`` over host-candidate (and matching c=) addresses of the same IP family.

    The ports stay the local ones, so this fits 1:1 NAT / hostPort setups where ports are preserved.
    """
    if not address:
        return sdp
    public = ipaddress.ip_address(address)
    replaced: set[str] = set()
    lines = sdp.split("\r\n")
    for i, line in enumerate(lines):
        if not line.startswith("a=candidate:"):
            continue
        bits = line.split(" ")
        if len(bits) < 8 or bits[7] != "host" or not _same_family(bits[4], public):
            continue
        replaced.add(bits[4])
        bits[4] = address
        lines[i] = " ".join(bits)
    for i, line in enumerate(lines):
        bits = line.split(" ")
        if line.startswith("c=IN ") and len(bits) == 3 and bits[2] in replaced:
            lines[i] = f"{bits[0]} {bits[1]} {address}"
    return "\r\n".join(lines)


def _same_family(host: str, public: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    try:
        return ipaddress.ip_address(host).version == public.version
    except ValueError:  # an mDNS name or garbage: leave it alone
        return False
