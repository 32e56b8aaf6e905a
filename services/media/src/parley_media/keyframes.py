"""Keyframe requests: viewer PLI/FIR and joins become a rate-limited PLI to the publisher.

In forward mode a viewer's PLI only sets an unused flag on its sender, and browsers send no periodic
keyframes, so every request must travel to the publisher's encoder. The PLI goes to the publisher's
*media* SSRC: Chrome ignores a PLI addressed to its RTX SSRC.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiortc import RTCRtpReceiver, RTCRtpSender
from aiortc.sdp import MediaDescription

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SignalledSsrcs:
    """SSRCs an offer's media section declares: primaries and RTX repair streams (a=ssrc-group:FID)."""

    media: frozenset[int]
    rtx: frozenset[int]

    @classmethod
    def from_media(cls, media: MediaDescription) -> SignalledSsrcs:
        fid = [g.items for g in media.ssrc_group if g.semantic == "FID" and len(g.items) >= 2]
        rtx = frozenset(int(items[1]) for items in fid)
        primaries = frozenset(int(items[0]) for items in fid)
        plain = frozenset(s.ssrc for s in media.ssrc) - rtx
        return cls(media=primaries or plain, rtx=rtx)


def pli_targets(receiver: RTCRtpReceiver, signalled: SignalledSsrcs) -> list[int]:
    """Media SSRCs to address: SSRCs seen on the wire minus RTX, preferring the signalled primaries."""
    active = {s.source for s in receiver.getSynchronizationSources()} - signalled.rtx
    if signalled.media and active & signalled.media:
        active &= signalled.media
    return sorted(active or signalled.media)


class ReceiverPli:
    """Sends a PLI from a publisher's receiver (aiortc's own method, addressed by us)."""

    def __init__(self, receiver: RTCRtpReceiver, signalled: SignalledSsrcs) -> None:
        self._receiver = receiver
        self._signalled = signalled

    async def __call__(self) -> bool:
        targets = pli_targets(self._receiver, self._signalled)
        for ssrc in targets:
            await self._receiver._send_rtcp_pli(ssrc)
        return bool(targets)


class KeyframeRequester:
    """Coalesces keyframe requests into at most one PLI per ``min_interval``.

    A request made within the interval is deferred to its end, and skipped if a keyframe arrived after
    the latest request in the meantime (someone else's PLI already served it).
    """

    def __init__(
        self,
        send: Callable[[], Awaitable[bool]],
        min_interval: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._send = send
        self._min_interval = min_interval
        self._clock = clock
        self._wakeup = asyncio.Event()
        self._requested_at: float | None = None
        self._last_sent = -math.inf
        self._last_keyframe = -math.inf
        self.sent = 0
        self.requests = 0

    def request(self) -> None:
        self.requests += 1
        self._requested_at = self._clock()
        self._wakeup.set()

    def keyframe_seen(self) -> None:
        self._last_keyframe = self._clock()

    async def run(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            delay = self._last_sent + self._min_interval - self._clock()
            if delay > 0:
                await asyncio.sleep(delay)
            requested_at, self._requested_at = self._requested_at, None
            if requested_at is None or self._last_keyframe >= requested_at:
                continue
            try:
                sent = await self._send()
            except Exception:
                logger.exception("sending PLI failed")
                sent = False
            if sent:
                self._last_sent = self._clock()
                self.sent += 1


def route_viewer_keyframe_requests(sender: RTCRtpSender, request: Callable[[], None]) -> None:
    """aiortc calls ``sender._send_keyframe()`` on an incoming PLI/FIR; redirect it for this sender only."""
    sender._send_keyframe = request  # type: ignore[method-assign]
