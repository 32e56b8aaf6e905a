"""A pre-encoded VP8 clip and a track that replays it, so publishing costs no encoder time.

The clip is encoded once per run (PyAV libvpx) and stored as length-prefixed frames; every publisher
process loads it. ``ClipTrack.recv()`` returns ``av.Packet``s, which aiortc's sender only packetises.
"""

from __future__ import annotations

import asyncio
import fractions
import math
import struct
import time
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError
from av.video.frame import VideoFrame
from parley_media.model import Packet

WIDTH, HEIGHT, FPS = 640, 480, 30
VIDEO_CLOCK = 90_000
_HEADER = struct.Struct("<IB")  # frame length, keyframe flag


@dataclass(frozen=True, slots=True)
class EncodedFrame:
    data: bytes
    keyframe: bool


def _pictures(count: int) -> list[np.ndarray]:
    """A scrolling noise texture with a bouncing square: motion everywhere, so VP8 cannot coast."""
    rng = np.random.default_rng(7)
    texture = rng.integers(0, 256, (HEIGHT * 2, WIDTH * 2, 3), dtype=np.uint8)
    # Smooth a little: pure noise would be all high frequency, unlike a camera picture.
    texture = ((texture.astype(np.uint16) + np.roll(texture, 1, 0) + np.roll(texture, 1, 1)) // 3).astype(
        np.uint8
    )
    pictures = []
    for i in range(count):
        y, x = (3 * i) % HEIGHT, (5 * i) % WIDTH
        rgb = texture[y : y + HEIGHT, x : x + WIDTH].copy()
        bx = int((WIDTH - 120) * (0.5 + 0.5 * np.sin(i / 17)))
        by = int((HEIGHT - 120) * (0.5 + 0.5 * np.cos(i / 23)))
        rgb[by : by + 120, bx : bx + 120] = (230, 40 + (i * 7) % 200, 40)
        # Fresh grain in every frame, like sensor noise: P-frames carry real residual, not just motion.
        grain = rng.integers(-10, 11, (HEIGHT // 4, WIDTH // 4, 1), dtype=np.int16)
        grain = np.repeat(np.repeat(grain, 4, 0), 4, 1)
        rgb = np.clip(rgb.astype(np.int16) + grain, 0, 255).astype(np.uint8)
        pictures.append(rgb)
    return pictures


def encode_clip(path: Path, seconds: float, bitrate: int = 1_000_000, keyframe_every: float = 3.0) -> int:
    """Encode ``seconds`` of 640x480 30 fps VP8 to ``path``; returns the number of bytes written."""
    count = round(seconds * FPS)
    gop = round(keyframe_every * FPS)
    codec = av.CodecContext.create("libvpx", "w")
    codec.width, codec.height, codec.pix_fmt = WIDTH, HEIGHT, "yuv420p"
    codec.framerate = fractions.Fraction(FPS, 1)
    codec.time_base = fractions.Fraction(1, FPS)
    codec.bit_rate = bitrate
    codec.gop_size = gop
    # Constant bitrate with keyframes capped near a browser's (~15-30 KB at this size): an uncapped
    # first keyframe is ~250 KB, more packets than aiortc's 128-packet jitter buffer holds.
    codec.options = {
        "deadline": "realtime",
        "cpu-used": "8",
        "lag-in-frames": "0",
        "max-intra-rate": "600",
        "qmin": "4",
        "qmax": "63",
        "minrate": str(bitrate),
        "maxrate": str(bitrate),
        "bufsize": str(bitrate),
    }
    frames: list[EncodedFrame] = []
    # One GOP more than kept: the encoder's very first keyframe is ~70 KB (rate control not settled),
    # more than a browser sends at this bitrate, so the clip starts at the second keyframe.
    for i, rgb in enumerate(_pictures(count + gop)):
        frame = VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p")
        frame.pts = i
        frames.extend(EncodedFrame(bytes(p), bool(p.is_keyframe)) for p in codec.encode(frame))
    frames.extend(EncodedFrame(bytes(p), bool(p.is_keyframe)) for p in codec.encode(None))
    frames = frames[gop : gop + count]
    if not frames or not frames[0].keyframe:
        raise RuntimeError("the clip must start with a keyframe")
    with path.open("wb") as out:
        for f in frames:
            out.write(_HEADER.pack(len(f.data), f.keyframe))
            out.write(f.data)
    return path.stat().st_size


def load_clip(path: Path) -> list[EncodedFrame]:
    raw = path.read_bytes()
    frames, pos = [], 0
    while pos < len(raw):
        size, keyframe = _HEADER.unpack_from(raw, pos)
        pos += _HEADER.size
        frames.append(EncodedFrame(raw[pos : pos + size], bool(keyframe)))
        pos += size
    return frames


class ClipTrack(MediaStreamTrack):
    """Replays the clip in a loop at 30 fps with continuous timestamps.

    ``request_keyframe()`` (wired to the sender's PLI/FIR handling) makes the next frame sent the clip's
    next keyframe: the picture skips ahead, but the decoder never sees a reference it lacks.

    Like libwebrtc's sender (EncoderRtcpFeedback: one intra request per 300 ms is honoured), at most one
    request per ``min_keyframe_interval`` is: an SFU that forwards every subscriber's PLI cannot turn the
    stream into keyframes only. libwebrtc drops the others and relies on receivers repeating theirs; the
    bench's viewers do not repeat, so a request inside the interval waits for its end instead.
    """

    kind = "video"

    def __init__(self, frames: list[EncodedFrame], min_keyframe_interval: float = 0.3) -> None:
        super().__init__()
        self._min_keyframe_interval = min_keyframe_interval
        self._last_honoured = -math.inf
        self._frames = frames
        self._keyframes = [i for i, f in enumerate(frames) if f.keyframe]
        self._position = 0
        self._sent = 0
        self._start: float | None = None
        self._jump = False
        self.keyframe_requests = 0
        self.keyframes_sent = 0

    def request_keyframe(self) -> None:
        self.keyframe_requests += 1
        self._jump = True

    def _next_keyframe(self) -> int:
        return next((i for i in self._keyframes if i >= self._position), 0)

    async def recv(self) -> Packet:
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            self._start = time.monotonic()
        else:
            await asyncio.sleep(max(0.0, self._start + self._sent / FPS - time.monotonic()))
        now = time.monotonic()
        if self._jump and now - self._last_honoured >= self._min_keyframe_interval:
            self._last_honoured = now
            if not self._frames[self._position].keyframe:
                self._position = self._next_keyframe()
        frame = self._frames[self._position]
        if frame.keyframe:
            self._jump = False  # whoever asked for one gets this one
        self._position = (self._position + 1) % len(self._frames)
        packet = av.Packet(frame.data)
        packet.pts = packet.dts = self._sent * (VIDEO_CLOCK // FPS)
        packet.time_base = fractions.Fraction(1, VIDEO_CLOCK)
        packet.is_keyframe = frame.keyframe
        self._sent += 1
        self.keyframes_sent += frame.keyframe
        return packet
