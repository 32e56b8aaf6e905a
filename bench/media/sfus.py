"""The two Python SFUs under test, each hosted alone in its own child process.

- ``EngineSfu``: Parley's bare ``MediaEngine`` (forwards encoded VP8; the media node wraps the same engine).
- ``RelaySfu``: aiortc's ``MediaRelay``: the publisher's receiver decodes every frame once, and every
  viewer's sender encodes its own copy (the textbook aiortc SFU).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from typing import Any

from aiortc import MediaStreamTrack, RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.contrib.media import MediaRelay
from aiortc.mediastreams import MediaStreamError
from parley_media import MediaConfig, MediaEngine, StreamKey, StreamKind

from .peers import prefer_vp8

STREAM = StreamKey("bench-org", "bench-conference", "cam")


class EngineSfu:
    def __init__(self, keyframe_min_interval: float | None = None) -> None:
        config = MediaConfig()
        if keyframe_min_interval is not None:
            config = dataclasses.replace(config, keyframe_min_interval=keyframe_min_interval)
        self.engine = MediaEngine(config)

    async def publish(self, sdp: str) -> dict[str, Any]:
        return {"sdp": await self.engine.publish(STREAM, sdp, StreamKind.CAM)}

    async def view(self, id: str, sdp: str) -> dict[str, Any]:
        return {"sdp": await self.engine.view(STREAM, id, sdp)}

    async def stats(self) -> dict[str, Any]:
        s = self.engine.stream_stats(STREAM)
        return {
            "viewers": s.viewers,
            "keyframes": s.keyframes,
            "keyframe_requests": s.keyframe_requests,
            "plis_sent": s.plis_sent,
            "viewer_drops": s.viewer_drops,
        }

    async def close(self) -> None:
        await self.engine.close_all()


class RelaySfu:
    def __init__(self) -> None:
        self.relay = MediaRelay()
        self.source: MediaStreamTrack | None = None
        self.pcs: list[RTCPeerConnection] = []
        self._drain: asyncio.Task[None] | None = None

    def _pc(self) -> RTCPeerConnection:
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.pcs.append(pc)
        return pc

    async def publish(self, sdp: str) -> dict[str, Any]:
        pc = self._pc()
        transceiver = pc.addTransceiver("video", direction="recvonly")
        prefer_vp8(transceiver)
        await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
        self.source = transceiver.receiver.track
        # Keep the source read while nobody views: aiortc's receiver queue is unbounded otherwise.
        self._drain = asyncio.create_task(self._blackhole(self.relay.subscribe(self.source, buffered=False)))
        await pc.setLocalDescription(await pc.createAnswer())
        return {"sdp": pc.localDescription.sdp}

    @staticmethod
    async def _blackhole(track: MediaStreamTrack) -> None:
        with contextlib.suppress(MediaStreamError):
            while True:
                await track.recv()

    async def view(self, id: str, sdp: str) -> dict[str, Any]:
        if self.source is None:
            raise RuntimeError("nothing published")
        pc = self._pc()
        # Unbuffered: a slow encoder gets the newest decoded frame, never an ever-growing backlog.
        track = self.relay.subscribe(self.source, buffered=False)
        transceiver = pc.addTransceiver(track, direction="sendonly")
        prefer_vp8(transceiver)
        await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
        await pc.setLocalDescription(await pc.createAnswer())
        return {"sdp": pc.localDescription.sdp}

    async def stats(self) -> dict[str, Any]:
        return {"viewers": len(self.pcs) - 1}

    async def close(self) -> None:
        if self._drain is not None:
            self._drain.cancel()
        await asyncio.gather(*(pc.close() for pc in self.pcs), return_exceptions=True)
