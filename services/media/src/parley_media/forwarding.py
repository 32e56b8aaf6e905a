"""Forward encoded media instead of decoding and re-encoding it.

Receiver side: aiortc has no hook to get encoded frames out of an RTCRtpReceiver, so we replace the
module-level ``decoder_worker`` of ``aiortc.rtcrtpreceiver`` with a dispatcher. The dispatcher looks up the
receiver's decoder input queue (by identity) in a registry filled by the engine: registered receivers turn
each jitter-buffer frame into an ``av.Packet``; every other receiver in the process keeps aiortc's decoder.

Registered video receivers also get a jitter buffer that hands a frame on as soon as its last packet (RTP
marker bit) is in: aiortc's own waits for the first packet of the next frame, one frame interval (33 ms at
30 fps) of added latency for every forwarded frame.

Sender side is supported by aiortc: a track whose ``recv()`` returns an ``av.Packet`` is only repacketised.
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import inspect
import logging
import queue
import threading
import weakref
from collections.abc import Callable
from typing import Any, Protocol

import aiortc
import aiortc.rtcrtpreceiver as rtcrtpreceiver
import av
from aiortc import MediaStreamTrack, RTCRtpCodecParameters, RTCRtpReceiver
from aiortc.jitterbuffer import JitterBuffer, JitterFrame
from aiortc.mediastreams import MediaStreamError
from aiortc.rtp import RtpPacket

from .model import Packet
from .tasks import ThreadCounter

logger = logging.getLogger(__name__)

SUPPORTED_AIORTC = "1.16.0"

_registry_lock = threading.Lock()
# decoder input queue of an engine-owned receiver -> the engine's thread counter
_registry: weakref.WeakKeyDictionary[queue.Queue[Any], ThreadCounter] = weakref.WeakKeyDictionary()
_original_worker: Callable[..., None] | None = None


def install_forwarding_worker() -> None:
    """Patch aiortc once per process. Idempotent; refuses aiortc versions whose worker signature differs."""
    global _original_worker
    if _original_worker is not None:
        return
    if aiortc.__version__ != SUPPORTED_AIORTC:
        raise RuntimeError(f"parley_media patches aiortc {SUPPORTED_AIORTC}, found {aiortc.__version__}")
    original = rtcrtpreceiver.decoder_worker
    # 1.16.0: (loop, input_q, output_q, decode_error); 1.15 had three arguments.
    if len(inspect.signature(original).parameters) != 4:
        raise RuntimeError("unexpected aiortc decoder_worker signature")
    _original_worker = original
    rtcrtpreceiver.decoder_worker = _dispatch_worker


def forward_receiver(receiver: RTCRtpReceiver, threads: ThreadCounter) -> None:
    """Make this (not yet started) receiver output av.Packets. Must run before negotiation starts it."""
    install_forwarding_worker()
    input_q = getattr(receiver, "_RTCRtpReceiver__decoder_queue", None)
    buffer = getattr(receiver, "_RTCRtpReceiver__jitter_buffer", None)
    if not isinstance(input_q, queue.Queue) or not isinstance(buffer, JitterBuffer):
        raise RuntimeError("aiortc RTCRtpReceiver has no decoder queue or jitter buffer; version mismatch")
    kind = getattr(receiver, "_RTCRtpReceiver__kind", None)  # its track does not exist yet
    replacement: JitterBuffer = (
        MarkerJitterBuffer(buffer.capacity, is_video=True)
        if kind == "video"
        else PassThroughAudioBuffer(buffer.capacity)
    )
    setattr(receiver, "_RTCRtpReceiver__jitter_buffer", replacement)  # noqa: B010 (name-mangled)
    with _registry_lock:
        _registry[input_q] = threads


class MarkerJitterBuffer(JitterBuffer):
    """Emits a video frame once it is complete, known from its RTP marker bit (RFC 7741: last packet of
    the frame) or, for a sender that sets none, from the next frame's first packet as aiortc does.

    Only the frame-completion rule differs from aiortc's buffer (same capacity, reordering, NACK and PLI
    behaviour): packets from the buffer's origin must be contiguous, and all share one timestamp.
    """

    def _remove_frame(self, sequence_number: int) -> JitterFrame | None:
        origin = self._origin
        assert origin is not None  # set by add() before it calls us
        packets = []
        timestamp: int | None = None
        for count in range(self._capacity):
            packet = self._packets[(origin + count) % self._capacity]
            if packet is None:
                return None  # a gap: wait for it (retransmission) or for add() to give up on it
            if timestamp is None:
                timestamp = packet.timestamp
            elif packet.timestamp != timestamp:
                break  # the next frame began, so this one is complete
            packets.append(packet)
            if packet.marker:
                break
        else:
            return None
        self.remove(len(packets))
        data = b"".join(p._data for p in packets)  # type: ignore[attr-defined]  # set by the receiver
        if not data:
            return None  # padding-only packets carry no frame
        return JitterFrame(data=data, timestamp=timestamp)


class PassThroughAudioBuffer(JitterBuffer):
    """Forwarded audio: every packet is a whole Opus frame, handed on as it arrives.

    aiortc's audio buffer holds 4 frames (80 ms) before releasing one and, on a lost packet, stalls until
    16 are queued. Forwarding needs neither: the viewer's own jitter buffer (NetEq in a browser) smooths
    and conceals, as behind any SFU. Duplicates and packets older than the last one handed on are dropped.
    """

    def __init__(self, capacity: int) -> None:
        super().__init__(capacity)
        self._last: int | None = None

    def add(self, packet: RtpPacket) -> tuple[bool, JitterFrame | None]:
        sequence = packet.sequence_number
        if self._last is not None:
            ahead = (sequence - self._last) & 0xFFFF
            if ahead == 0 or ahead >= 0x8000:
                return False, None
        self._last = sequence
        data: bytes = packet._data  # type: ignore[attr-defined]  # set by the receiver (depayloaded)
        if not data:
            return False, None
        return False, JitterFrame(data=data, timestamp=packet.timestamp)


def _dispatch_worker(
    loop: asyncio.AbstractEventLoop,
    input_q: queue.Queue[Any],
    output_q: asyncio.Queue[Any],
    decode_error: threading.Event,
) -> None:
    with _registry_lock:
        threads = _registry.pop(input_q, None)
    if threads is None:
        assert _original_worker is not None
        _original_worker(loop, input_q, output_q, decode_error)
        return
    threads.enter()
    try:
        _forward_worker(loop, input_q, output_q)
    finally:
        threads.exit()


def _forward_worker(
    loop: asyncio.AbstractEventLoop, input_q: queue.Queue[Any], output_q: asyncio.Queue[Any]
) -> None:
    while True:
        task = input_q.get()
        if task is None:
            _deliver(loop, output_q, None)  # ends the remote track, as aiortc's worker does
            return
        codec, frame = task
        _deliver(loop, output_q, to_packet(codec, frame.data, frame.timestamp))


def _deliver(loop: asyncio.AbstractEventLoop, output_q: asyncio.Queue[Any], item: Packet | None) -> None:
    with contextlib.suppress(RuntimeError):  # loop already closed: nobody is listening any more
        loop.call_soon_threadsafe(output_q.put_nowait, item)


def to_packet(codec: RTCRtpCodecParameters, data: bytes, timestamp: int) -> Packet:
    """Wrap one reassembled frame; pts is the (unwrapped) RTP timestamp in 1/clockRate units."""
    packet = av.Packet(data)
    packet.pts = timestamp
    packet.dts = timestamp
    packet.time_base = fractions.Fraction(1, codec.clockRate)
    packet.is_keyframe = is_keyframe(codec.mimeType, data)
    return packet


def is_keyframe(mime_type: str, data: bytes) -> bool:
    mime = mime_type.lower()
    if mime == "video/vp8":
        # VP8 frame tag: bit 0 of the first byte is 0 for a key frame (RFC 6386 9.1).
        return len(data) > 0 and (data[0] & 1) == 0
    if mime == "video/h264":
        # aiortc's depayloader emits Annex B: IDR slice (5) or SPS (7) marks a keyframe.
        pos = data.find(b"\x00\x00\x01")
        while pos != -1 and pos + 3 < len(data):
            if data[pos + 3] & 0x1F in (5, 7):
                return True
            pos = data.find(b"\x00\x00\x01", pos + 3)
        return False
    return not mime.startswith("video/")  # every audio packet stands alone


class PacketSink(Protocol):
    def push(self, packet: Packet) -> None: ...


class ForwardedTrack(MediaStreamTrack):
    """One viewer's copy of a publisher track, fed through a bounded queue.

    Video waits for a keyframe before forwarding anything; on overflow it drops its own backlog, asks
    for a keyframe and waits again. Audio drops its oldest packet. Other viewers are never affected.
    """

    def __init__(self, kind: str, capacity: int, request_keyframe: Callable[[], None]) -> None:
        super().__init__()
        self.kind = kind
        self._capacity = capacity
        self._queue: asyncio.Queue[Packet | None] = asyncio.Queue(maxsize=capacity + 1)
        self._request_keyframe = request_keyframe
        self._needs_keyframe = kind == "video"
        self._started = False
        self._ended = False
        self.dropped = 0
        self.overflows = 0

    @property
    def waiting_for_keyframe(self) -> bool:
        return self._needs_keyframe

    def push(self, packet: Packet) -> None:
        if self._ended or self.readyState != "live":
            return
        if self.kind == "video":
            self._push_video(packet)
        else:
            if self._queue.qsize() >= self._capacity:
                self._queue.get_nowait()
                self.dropped += 1
            self._queue.put_nowait(packet)

    def _push_video(self, packet: Packet) -> None:
        if packet.is_keyframe and (self._needs_keyframe or not self._started):
            # Until the sender reads, keep only the newest GOP so the viewer starts on a fresh picture.
            self._clear()
            self._needs_keyframe = False
        elif self._needs_keyframe:
            self.dropped += 1
            return
        elif self._queue.qsize() >= self._capacity:
            self.overflows += 1
            self._clear()
            self._needs_keyframe = True
            self._request_keyframe()
            self.dropped += 1
            return
        self._queue.put_nowait(packet)

    def _clear(self) -> None:
        while not self._queue.empty():
            self._queue.get_nowait()
            self.dropped += 1

    def request_keyframe(self) -> None:
        """The viewer sent PLI/FIR (routed here from its RTCRtpSender)."""
        self._request_keyframe()

    def end(self) -> None:
        """Publisher gone or viewer closed: make the sender's next recv() fail."""
        if self._ended:
            return
        self._ended = True
        self._clear()
        self._queue.put_nowait(None)

    async def recv(self) -> Packet:
        if self.readyState != "live":
            raise MediaStreamError
        self._started = True
        item = await self._queue.get()
        if item is None:
            self.stop()
            raise MediaStreamError
        return item


class TrackFanout:
    """Consumes one publisher track for its whole life and hands every packet to the current sinks.

    Always running, even with no sinks: the receiver's output queue is unbounded.
    """

    def __init__(
        self,
        kind: str,
        track: MediaStreamTrack,
        on_keyframe: Callable[[], None] | None = None,
        *,
        fast_start_frames: int = 0,
    ) -> None:
        self.kind = kind
        self._track = track
        self._sinks: list[PacketSink] = []
        self._on_keyframe = on_keyframe
        self._request_keyframe: Callable[[], None] = _no_keyframe_request
        # Fast start: the current GOP while it is at most this many frames long (0: off). A viewer joining
        # then starts on its keyframe at once instead of waiting for the keyframe it asks for, which the
        # publisher may only send after the PLI rate limit (~300 ms); the replay is short enough that the
        # viewer's jitter buffer absorbs the burst.
        self._fast_start_frames = fast_start_frames
        self._gop: list[Packet] = []
        self.packets = 0
        self.bytes = 0
        self.keyframes = 0
        self.ended = False

    def set_keyframe_requester(self, request: Callable[[], None]) -> None:
        self._request_keyframe = request

    def request_keyframe(self) -> None:
        self._request_keyframe()

    def add(self, sink: PacketSink, *, replay_gop: bool = False) -> None:
        """Hand `sink` every packet from now on; with `replay_gop`, first the short GOP in progress."""
        if sink not in self._sinks:
            if replay_gop:
                for packet in self._gop:
                    sink.push(packet)
            self._sinks.append(sink)

    def remove(self, sink: PacketSink) -> None:
        if sink in self._sinks:
            self._sinks.remove(sink)

    @property
    def sink_count(self) -> int:
        return len(self._sinks)

    async def run(self) -> None:
        try:
            while True:
                try:
                    item = await self._track.recv()
                except MediaStreamError:
                    return
                if not isinstance(item, av.Packet):
                    # Only possible if the receiver was not registered before it started.
                    logger.error("publisher %s track produced a decoded frame; dropping", self.kind)
                    continue
                self.packets += 1
                self.bytes += item.size
                if item.is_keyframe and self.kind == "video":
                    self.keyframes += 1
                    if self._on_keyframe is not None:
                        self._on_keyframe()
                self._keep_gop(item)
                for sink in tuple(self._sinks):
                    try:
                        sink.push(item)
                    except Exception:  # one broken sink (e.g. a failing recording) must not stop the stream
                        logger.exception("dropping a %s packet for %r", self.kind, sink)
        finally:
            self.ended = True

    def _keep_gop(self, packet: Packet) -> None:
        if not self._fast_start_frames or self.kind != "video":
            return
        if packet.is_keyframe:
            self._gop = [packet]
        elif self._gop and len(self._gop) < self._fast_start_frames:
            self._gop.append(packet)
        else:
            self._gop = []  # too long to replay: joiners wait for the keyframe they ask for


def _no_keyframe_request() -> None:
    return None
