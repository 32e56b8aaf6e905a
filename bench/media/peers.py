"""Client peers for the bench: one pre-encoded publisher, many viewers that count frames without decoding.

Viewers install Parley's forwarding receive worker (parley_media.forwarding): each complete jitter-buffer
frame comes out as an ``av.Packet``, so a viewer costs RTP/SRTP handling only, never a VP8 decode. The
first frame is the first keyframe that a fresh VP8 decoder turns into a picture: a frame reassembled from
a stream joined mid-frame can look like a keyframe (bit 0 of its first byte) and is not one.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av
from aiortc import MediaStreamTrack, RTCConfiguration, RTCPeerConnection, RTCRtpSender, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError
from parley_media.forwarding import forward_receiver
from parley_media.tasks import ThreadCounter

from .clip import ClipTrack, load_clip


def new_pc() -> RTCPeerConnection:
    # No STUN: gathering is immediate and only host candidates (a non-loopback interface) are used.
    return RTCPeerConnection(RTCConfiguration(iceServers=[]))


def prefer_vp8(transceiver: Any) -> None:
    codecs = RTCRtpSender.getCapabilities("video").codecs
    transceiver.setCodecPreferences([c for c in codecs if c.mimeType.lower() in ("video/vp8", "video/rtx")])


async def wait_connected(pc: RTCPeerConnection, timeout: float) -> str:
    settled = asyncio.Event()

    def check() -> None:
        if pc.connectionState in ("connected", "failed", "closed"):
            settled.set()

    pc.on("connectionstatechange", check)
    check()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(settled.wait(), timeout)
    pc.remove_listener("connectionstatechange", check)
    return str(pc.connectionState)


class PublisherRole:
    """Sends the pre-encoded clip; PLI/FIR from the SFU make it skip to the clip's next keyframe."""

    def __init__(self, clip_path: Path, min_keyframe_interval: float) -> None:
        self.track = ClipTrack(load_clip(clip_path), min_keyframe_interval)
        self.pc = new_pc()

    async def offer(self) -> dict[str, Any]:
        transceiver = self.pc.addTransceiver(self.track, direction="sendonly")
        prefer_vp8(transceiver)
        # The sender would only flag its (unused) encoder; the clip must jump to a keyframe instead.
        transceiver.sender._send_keyframe = self.track.request_keyframe  # type: ignore[method-assign]
        await self.pc.setLocalDescription(await self.pc.createOffer())
        return {"sdp": self.pc.localDescription.sdp}

    async def answer(self, sdp: str) -> dict[str, Any]:
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="answer"))
        return {}

    async def connected(self, wait: float = 10.0) -> dict[str, Any]:
        return {"state": await wait_connected(self.pc, wait)}

    async def stats(self) -> dict[str, Any]:
        return {
            "keyframe_requests": self.track.keyframe_requests,
            "keyframes_sent": self.track.keyframes_sent,
        }

    async def close(self) -> None:
        await self.pc.close()


@dataclass
class ViewerPeer:
    pc: RTCPeerConnection
    answered_at: float | None = None  # the moment the client applied the answer (ours or the SFU's)
    connected_at: float | None = None  # ICE + DTLS done
    first_keyframe_at: float | None = None  # arrival of the first keyframe that decoded
    first_keyframe_decoded: bool | None = None
    checking: bool = False  # a keyframe candidate is being decoded
    bogus_keyframes: int = 0  # candidates that did not decode
    frames: int = 0
    keyframes: int = 0
    marks: dict[str, tuple[float, int]] = field(default_factory=dict)
    first_frame: asyncio.Event = field(default_factory=asyncio.Event)


class ViewersRole:
    """Many recvonly viewers in one process; each counts the encoded frames it receives."""

    def __init__(self) -> None:
        self.viewers: dict[str, ViewerPeer] = {}
        self._threads = ThreadCounter()
        self._tasks: set[asyncio.Task[None]] = set()

    def _viewer(self, viewer_id: str) -> ViewerPeer:
        pc = new_pc()
        viewer = ViewerPeer(pc)
        self.viewers[viewer_id] = viewer
        pc.on("track", lambda track: self._spawn(self._consume(viewer, track)))

        def on_state() -> None:
            if pc.connectionState == "connected" and viewer.connected_at is None:
                viewer.connected_at = time.monotonic()

        pc.on("connectionstatechange", on_state)
        return viewer

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def offer(self, id: str) -> dict[str, Any]:
        """For SFUs that take the viewer's offer (Parley, the relay)."""
        viewer = self._viewer(id)
        transceiver = viewer.pc.addTransceiver("video", direction="recvonly")
        prefer_vp8(transceiver)
        forward_receiver(transceiver.receiver, self._threads)  # before negotiation starts its worker
        await viewer.pc.setLocalDescription(await viewer.pc.createOffer())
        return {"sdp": viewer.pc.localDescription.sdp}

    async def answer(self, id: str, sdp: str) -> dict[str, Any]:
        viewer = self.viewers[id]
        await viewer.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="answer"))
        viewer.answered_at = time.monotonic()
        return {}

    async def accept_offer(self, id: str, sdp: str) -> dict[str, Any]:
        """For SFUs that offer to subscribers (Janus): answer recvonly."""
        viewer = self._viewer(id)
        await viewer.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
        for transceiver in viewer.pc.getTransceivers():
            transceiver.direction = "recvonly"
            if transceiver.kind == "video":
                forward_receiver(transceiver.receiver, self._threads)
        await viewer.pc.setLocalDescription(await viewer.pc.createAnswer())
        viewer.answered_at = time.monotonic()
        return {"sdp": viewer.pc.localDescription.sdp}

    async def _consume(self, viewer: ViewerPeer, track: MediaStreamTrack) -> None:
        while True:
            try:
                packet = await track.recv()
            except MediaStreamError:
                return
            if not isinstance(packet, av.Packet):
                raise RuntimeError("viewer receiver decoded a frame: the forwarding worker is not installed")
            viewer.frames += 1
            if packet.is_keyframe:
                viewer.keyframes += 1
                if viewer.first_keyframe_at is None and not viewer.checking:
                    viewer.checking = True
                    self._spawn(self._check_decodable(viewer, bytes(packet), time.monotonic()))

    async def _check_decodable(self, viewer: ViewerPeer, data: bytes, arrived_at: float) -> None:
        def decode() -> bool:
            codec = av.CodecContext.create("vp8", "r")
            return any(f.width > 0 for f in codec.decode(av.Packet(data)))

        try:
            decoded = await asyncio.get_running_loop().run_in_executor(None, decode)
        except Exception:
            decoded = False
        viewer.checking = False
        if decoded:
            viewer.first_keyframe_decoded = True
            viewer.first_keyframe_at = arrived_at
            viewer.first_frame.set()
        else:
            viewer.bogus_keyframes += 1

    async def first_frames(self, wait: float) -> dict[str, Any]:
        """Wait until every viewer got its first keyframe (or ``wait`` s); report times to first frame."""
        waits = [asyncio.wait_for(v.first_frame.wait(), wait) for v in self.viewers.values()]
        await asyncio.gather(*waits, return_exceptions=True)
        return {"ttff_ms": {vid: self._ttff_ms(v) for vid, v in self.viewers.items()}}

    @staticmethod
    def _ttff_ms(viewer: ViewerPeer) -> float | None:
        return _ms(viewer.answered_at, viewer.first_keyframe_at)

    @staticmethod
    def _connect_ms(viewer: ViewerPeer) -> float | None:
        return _ms(viewer.answered_at, viewer.connected_at)

    async def mark(self, name: str) -> dict[str, Any]:
        now = time.monotonic()
        for viewer in self.viewers.values():
            viewer.marks[name] = (now, viewer.frames)
        return {}

    async def report(self, start: str, end: str) -> dict[str, Any]:
        out = {}
        for vid, v in self.viewers.items():
            (t0, f0), (t1, f1) = v.marks[start], v.marks[end]
            out[vid] = {
                "fps": (f1 - f0) / (t1 - t0),
                "ttff_ms": self._ttff_ms(v),
                "connect_ms": self._connect_ms(v),
                "decodable": v.first_keyframe_decoded,
                "bogus_keyframes": v.bogus_keyframes,
                "keyframes": v.keyframes,
                "state": v.pc.connectionState,
            }
        return {"viewers": out}

    async def close(self) -> None:
        await asyncio.gather(*(v.pc.close() for v in self.viewers.values()), return_exceptions=True)
        for task in list(self._tasks):
            task.cancel()


def _ms(start: float | None, end: float | None) -> float | None:
    return None if start is None or end is None else (end - start) * 1000
