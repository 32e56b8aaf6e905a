"""Still frames (JPEG) of a published video stream.

One VP8 decoder per published video, started lazily on the first request and primed with the packets
since the last keyframe (kept in a bounded cache), then fed every frame so later requests answer at
once; it stops again after ``idle_timeout`` without requests. Decoding (~0.5 ms/frame at 480p) and JPEG
encoding (PyAV ``mjpeg``, ~1.5 ms) run in the decoder's own thread, never on the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import av
from av.video.frame import VideoFrame

from .errors import NoPicture
from .model import Packet
from .tasks import ThreadCounter

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class _JpegRequest:
    future: asyncio.Future[bytes]


_Item = bytes | _JpegRequest | None


class _DecoderThread:
    """Decodes VP8 frame bytes in order and answers JPEG requests with the latest picture."""

    def __init__(self, loop: asyncio.AbstractEventLoop, threads: ThreadCounter) -> None:
        self._loop = loop
        self._threads = threads
        self._queue: queue.SimpleQueue[_Item] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="still-decoder", daemon=True)
        self._stopped = False
        threads.enter()  # counted from start() so a count never misses a thread about to run
        self._thread.start()

    def feed(self, data: bytes) -> None:
        self._queue.put(data)

    def request(self, future: asyncio.Future[bytes]) -> None:
        self._queue.put(_JpegRequest(future))

    def stop(self, join: bool) -> None:
        if not self._stopped:
            self._stopped = True
            self._queue.put(None)
        if join:
            self._thread.join(timeout=2.0)

    def _run(self) -> None:
        try:
            self._decode_loop()
        finally:
            self._threads.exit()

    def _decode_loop(self) -> None:
        decoder = av.CodecContext.create("vp8", "r")
        jpeg = _JpegEncoder()
        latest: VideoFrame | None = None
        waiting: list[_JpegRequest] = []
        while True:
            item = self._queue.get()
            if item is None:
                break
            if isinstance(item, _JpegRequest):
                waiting.append(item)
            else:
                try:
                    frames = decoder.decode(av.Packet(item))
                except av.FFmpegError as exc:  # keep the decoder: the next keyframe resyncs it
                    logger.debug("still decoder: %s", exc)
                    continue
                for frame in frames:
                    if isinstance(frame, VideoFrame):
                        latest = frame
            if latest is not None and waiting:
                self._answer(waiting, jpeg.encode(latest))
                waiting = []
        for request in waiting:
            self._resolve(request.future, NoPicture("stream closed before a picture was decoded"))

    def _answer(self, requests: list[_JpegRequest], data: bytes) -> None:
        for request in requests:
            self._resolve(request.future, data)

    def _resolve(self, future: asyncio.Future[bytes], value: bytes | Exception) -> None:
        with contextlib.suppress(RuntimeError):  # loop closed
            self._loop.call_soon_threadsafe(_settle, future, value)


def _settle(future: asyncio.Future[bytes], value: bytes | Exception) -> None:
    if future.done():
        return
    if isinstance(value, Exception):
        future.set_exception(value)
    else:
        future.set_result(value)


class _JpegEncoder:
    def __init__(self) -> None:
        self._codec: av.VideoCodecContext | None = None
        self._count = 0

    def encode(self, frame: VideoFrame) -> bytes:
        codec = self._codec
        if codec is None or (codec.width, codec.height) != (frame.width, frame.height):
            codec = av.CodecContext.create("mjpeg", "w")
            assert isinstance(codec, av.VideoCodecContext)
            codec.width, codec.height, codec.pix_fmt = frame.width, frame.height, "yuvj420p"
            codec.time_base = fractions.Fraction(1, 1000)
            self._codec = codec
        image = frame.reformat(format="yuvj420p")
        image.pts = self._count
        self._count += 1
        return b"".join(bytes(p) for p in codec.encode(image))


class StillCapture:
    """Sink on a publisher's video fanout; see the module docstring for the strategy."""

    def __init__(
        self,
        request_keyframe: Callable[[], None],
        threads: ThreadCounter,
        gop_cache_frames: int,
        timeout: float,
        idle_timeout: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._request_keyframe = request_keyframe
        self._threads = threads
        self._gop_cache_frames = gop_cache_frames
        self._timeout = timeout
        self._idle_timeout = idle_timeout
        self._clock = clock
        self._gop: list[Packet] | None = None  # None: no usable keyframe cached
        self._decoder: _DecoderThread | None = None
        self._last_request = 0.0
        self._closed = False

    @property
    def decoding(self) -> bool:
        return self._decoder is not None

    def push(self, packet: Packet) -> None:
        if packet.is_keyframe:
            self._gop = [packet]
        elif self._gop is not None:
            self._gop.append(packet)
            if len(self._gop) > self._gop_cache_frames:
                self._gop = None  # too long since the last keyframe; a first request will ask for one
        if self._decoder is None:
            return
        if self._clock() - self._last_request > self._idle_timeout:
            self._stop_decoder(join=False)
            return
        self._decoder.feed(bytes(packet))

    async def jpeg(self) -> bytes:
        if self._closed:
            raise NoPicture("stream closed")
        self._last_request = self._clock()
        if self._decoder is None:
            self._start_decoder()
        assert self._decoder is not None
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._decoder.request(future)
        try:
            return await asyncio.wait_for(future, self._timeout)
        except TimeoutError:
            raise NoPicture(f"no picture decoded within {self._timeout:.1f}s") from None

    def _start_decoder(self) -> None:
        self._decoder = _DecoderThread(asyncio.get_running_loop(), self._threads)
        if self._gop is None:
            self._request_keyframe()
            return
        for packet in self._gop:
            self._decoder.feed(bytes(packet))

    def _stop_decoder(self, join: bool) -> None:
        if self._decoder is not None:
            self._decoder.stop(join)
            self._decoder = None

    def close(self) -> None:
        self._closed = True
        self._gop = None
        self._stop_decoder(join=True)
