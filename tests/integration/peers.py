"""aiortc client peers for tests: a publisher sending a solid colour and a tone, a viewer that decodes.

Signalling is the caller's business (NATS request to a media node, HTTP to the gateway...): a peer makes
its offer, optionally with its candidates split out for trickle ICE, and accepts the answer it is given.

    publisher = PublisherPeer(RED)
    sdp = await publisher.offer(trickle=True)        # candidates now in publisher.candidates
    await publisher.accept(answer_sdp)
    viewer = ViewerPeer()
    ...
    await viewer.wait_frames(10)
    assert close_to(viewer.average_color(), RED)

aioice leaves 127.0.0.1 out of its host candidates, so peers need another local interface address:
`skip_without_interface()` skips a test module on a machine that has none.
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from aioice.ice import get_host_addresses
from aiortc import MediaStreamTrack, RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, VideoStreamTrack
from av.audio.frame import AudioFrame
from av.video.frame import VideoFrame

Color = tuple[int, int, int]

RED: Color = (220, 30, 30)
GREEN: Color = (30, 200, 40)
BLUE: Color = (30, 40, 220)

WIDTH, HEIGHT = 640, 480


def skip_without_interface() -> None:
    """Skip the calling module when aioice would gather no host candidate (no non-loopback IPv4)."""
    if not get_host_addresses(use_ipv4=True, use_ipv6=False):
        pytest.skip(
            "no non-loopback IPv4 interface: aioice would gather no host candidate",
            allow_module_level=True,
        )


# -- synthetic media -------------------------------------------------------------------------------


class SolidColorTrack(VideoStreamTrack):
    """640x480 solid colour at 30 fps; the colour can change while publishing."""

    def __init__(self, color: Color) -> None:
        super().__init__()
        self.set_color(color)

    def set_color(self, color: Color) -> None:
        rgb = np.empty((HEIGHT, WIDTH, 3), np.uint8)
        rgb[:] = color
        self._yuv = VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p").to_ndarray()

    async def recv(self) -> VideoFrame:
        pts, time_base = await self.next_timestamp()
        frame = VideoFrame.from_ndarray(self._yuv, format="yuv420p")
        frame.pts, frame.time_base = pts, time_base
        return frame


class ToneTrack(MediaStreamTrack):
    """440 Hz sine, 20 ms frames, paced in real time like aiortc's AudioStreamTrack."""

    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        self._samples = 0
        self._start: float | None = None

    async def recv(self) -> AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        rate, n = 48000, 960
        if self._start is None:
            self._start = time.time()
        else:
            await asyncio.sleep(max(0.0, self._start + self._samples / rate - time.time()))
        t = (np.arange(n) + self._samples) / rate
        pcm = (np.sin(2 * math.pi * 440 * t) * 8000).astype(np.int16).reshape(1, -1)
        frame = AudioFrame.from_ndarray(pcm, format="s16", layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = rate, self._samples, fractions.Fraction(1, rate)
        self._samples += n
        return frame


# -- signalling helpers ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Candidate:
    """A trickle candidate as a browser's RTCIceCandidate serialises it."""

    candidate: str
    sdp_mid: str | None
    sdp_mline_index: int | None

    def as_json(self) -> dict[str, Any]:
        """The API's shape (`iceCandidates` items)."""
        return {"candidate": self.candidate, "sdpMid": self.sdp_mid, "sdpMLineIndex": self.sdp_mline_index}


def split_candidates(sdp: str) -> tuple[str, list[Candidate]]:
    """Remove candidates (and end-of-candidates) from an SDP, returning them as trickle candidates."""
    kept: list[str] = []
    found: list[Candidate] = []
    mid: str | None = None
    index = -1
    for line in sdp.split("\r\n"):
        if line.startswith("m="):
            index += 1
            mid = None
        elif line.startswith("a=mid:"):
            mid = line[len("a=mid:") :]
        if line.startswith("a=candidate:"):
            found.append(Candidate(line[2:], mid, index))
            continue
        if line == "a=end-of-candidates":
            continue
        kept.append(line)
    return "\r\n".join(kept), found


def new_peer_connection() -> RTCPeerConnection:
    # Explicit and empty: aiortc's default is a public STUN host, which a test must never wait for.
    return RTCPeerConnection(RTCConfiguration(iceServers=[]))


class _Peer:
    def __init__(self) -> None:
        self.pc = new_peer_connection()
        # Filled by offer(trickle=True): what the test must send separately.
        self.candidates: list[Candidate] = []

    async def offer(self, trickle: bool = False) -> str:
        """The local offer; with `trickle`, without its candidates (kept in `self.candidates`)."""
        await self.pc.setLocalDescription(await self.pc.createOffer())
        sdp = str(self.pc.localDescription.sdp)
        if trickle:
            sdp, self.candidates = split_candidates(sdp)
        return sdp

    async def accept(self, answer_sdp: str) -> None:
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=answer_sdp, type="answer"))

    async def connected(self, timeout: float = 10.0) -> None:
        await eventually(lambda: self.pc.connectionState == "connected", timeout)

    async def close(self) -> None:
        await self.pc.close()


class PublisherPeer(_Peer):
    """Sends a 640x480 solid colour (if `video`) and a 440 Hz tone (if `audio`)."""

    def __init__(self, color: Color = RED, *, video: bool = True, audio: bool = True) -> None:
        super().__init__()
        self.video = SolidColorTrack(color) if video else None
        if self.video is not None:
            self.pc.addTrack(self.video)
        if audio:
            self.pc.addTrack(ToneTrack())

    def set_color(self, color: Color) -> None:
        assert self.video is not None, "this publisher sends no video"
        self.video.set_color(color)


class ViewerPeer(_Peer):
    """A browser-like recvonly viewer: decodes every frame it receives, counting them.

    Video frames update `video_frames` and the average colour of the latest one; audio frames update
    `audio_frames` and the loudest sample seen. `ended` is set once a received track ends.
    """

    def __init__(self, kinds: tuple[str, ...] = ("video", "audio")) -> None:
        super().__init__()
        self.video_frames = 0
        self.audio_frames = 0
        self.audio_peak = 0
        self.last_color: Color | None = None
        self.ended = asyncio.Event()
        self._readers: list[asyncio.Task[None]] = []
        for kind in kinds:
            self.pc.addTransceiver(kind, direction="recvonly")
        self.pc.on("track", self._on_track)

    def _on_track(self, track: MediaStreamTrack) -> None:
        self._readers.append(asyncio.ensure_future(self._read(track)))

    async def _read(self, track: MediaStreamTrack) -> None:
        try:
            while True:
                frame = await track.recv()
                if isinstance(frame, VideoFrame):
                    self.video_frames += 1
                    self.last_color = mean_color(frame)
                elif isinstance(frame, AudioFrame):
                    self.audio_frames += 1
                    self.audio_peak = max(self.audio_peak, int(np.abs(frame.to_ndarray()).max()))
        except MediaStreamError:
            self.ended.set()

    def average_color(self) -> Color:
        assert self.last_color is not None, "no video frame decoded yet"
        return self.last_color

    async def wait_frames(self, count: int, timeout: float = 10.0, kind: str = "video") -> None:
        start = self.video_frames if kind == "video" else self.audio_frames

        def enough() -> bool:
            now = self.video_frames if kind == "video" else self.audio_frames
            return now - start >= count

        await eventually(enough, timeout, f"{count} {kind} frames")

    async def wait_for_color(self, color: Color, timeout: float = 10.0) -> None:
        await eventually(
            lambda: self.last_color is not None and close_to(self.last_color, color),
            timeout,
            f"colour {color} (last {self.last_color})",
        )

    async def wait_ended(self, timeout: float = 10.0) -> bool:
        """True once the far side closed: a track ended or the connection closed or failed."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.ended.is_set() or self.pc.connectionState in ("closed", "failed"):
                return True
            await asyncio.sleep(0.05)
        return False

    async def close(self) -> None:
        await super().close()
        for reader in self._readers:
            reader.cancel()
        for reader in self._readers:
            with contextlib.suppress(asyncio.CancelledError, MediaStreamError):
                await reader


class Peers:
    """The client peers of one test, closed at teardown."""

    def __init__(self) -> None:
        self._peers: list[_Peer] = []

    def publisher(self, color: Color = RED, *, video: bool = True, audio: bool = True) -> PublisherPeer:
        peer = PublisherPeer(color, video=video, audio=audio)
        self._peers.append(peer)
        return peer

    def viewer(self, kinds: tuple[str, ...] = ("video", "audio")) -> ViewerPeer:
        peer = ViewerPeer(kinds)
        self._peers.append(peer)
        return peer

    async def close(self) -> None:
        await asyncio.gather(*(peer.close() for peer in self._peers), return_exceptions=True)


# -- pictures and waiting ---------------------------------------------------------------------------


def mean_color(frame: VideoFrame) -> Color:
    rgb = frame.to_ndarray(format="rgb24")[::4, ::4]  # every 16th pixel: plenty for a solid colour
    r, g, b = (int(v) for v in rgb.reshape(-1, 3).mean(axis=0))
    return r, g, b


def close_to(actual: Color, expected: Color, tolerance: int = 25) -> bool:
    return all(abs(a - e) <= tolerance for a, e in zip(actual, expected, strict=True))


async def eventually(predicate: Callable[[], bool], timeout: float = 5.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not met within {timeout} s")
        await asyncio.sleep(0.02)
