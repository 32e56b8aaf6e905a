"""WebM recording by remuxing forwarded packets: VP8 and Opus are written as received, never re-encoded.

The file starts on a video keyframe (the engine requests one when recording starts). Audio and video
timestamps come from independent RTP clocks, so each track is placed on the recording timeline by the
arrival time of its first recorded packet; that is good to a few tens of milliseconds, not lip-sync exact.
Muxing costs ~20 us per packet and runs on the event loop.
"""

from __future__ import annotations

import enum
import fractions
import io
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Any

import av
from av.container import OutputContainer
from av.stream import Stream

from .errors import RecordingError
from .model import Packet

logger = logging.getLogger(__name__)

RecordingSink = str | os.PathLike[str] | IO[bytes]


@dataclass(frozen=True, slots=True)
class RecordingInfo:
    duration: float  # seconds, from the first keyframe to the last packet
    bytes: int
    mime_type: str  # "video/webm", or "audio/webm" for an audio-only stream
    video_frames: int
    audio_packets: int


class RecorderState(enum.Enum):
    WAITING_KEYFRAME = "waiting-keyframe"
    RECORDING = "recording"
    FINISHED = "finished"


class _CountingWriter(io.RawIOBase):
    """Passes writes through and remembers the file's extent (the muxer seeks back to patch headers)."""

    def __init__(self, target: IO[bytes]) -> None:
        super().__init__()
        self._target = target
        self._pos = target.tell() if target.seekable() else 0
        self._start = self._pos
        self.extent = 0

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return self._target.seekable()

    def write(self, data: Any) -> int:
        written = self._target.write(data)
        self._pos += written
        self.extent = max(self.extent, self._pos - self._start)
        return written

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        self._pos = self._target.seek(offset, whence)
        return self._pos

    def tell(self) -> int:
        return self._pos

    def flush(self) -> None:
        self._target.flush()


def vp8_dimensions(keyframe: bytes) -> tuple[int, int]:
    """Width and height from a VP8 keyframe header (RFC 6386 9.1); (0, 0) if it is not one."""
    if len(keyframe) < 10 or keyframe[3:6] != b"\x9d\x01\x2a":
        return 0, 0
    width = int.from_bytes(keyframe[6:8], "little") & 0x3FFF
    height = int.from_bytes(keyframe[8:10], "little") & 0x3FFF
    return width, height


class _Track:
    """Placement of one forwarded track on the recording timeline."""

    def __init__(self, stream: Stream, time_base: fractions.Fraction) -> None:
        self.stream = stream
        self.time_base = time_base
        self.offset: int | None = None
        self.last_pts = -1
        self.count = 0


class WebmRecorder:
    def __init__(
        self,
        sink: RecordingSink,
        has_video: bool,
        has_audio: bool,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not (has_video or has_audio):
            raise RecordingError("nothing to record")
        self._has_video = has_video
        self._has_audio = has_audio
        self._clock = clock
        if isinstance(sink, (str, os.PathLike)):
            self._file: IO[bytes] = open(sink, "wb")  # noqa: SIM115 - closed in stop()
            self._owns_file = True
        else:
            self._file = sink
            self._owns_file = False
        self._writer = _CountingWriter(self._file)
        self._container: OutputContainer | None = None
        self._video: _Track | None = None
        self._audio: _Track | None = None
        self._t0 = 0.0
        self.state = RecorderState.WAITING_KEYFRAME
        self.video_input = _Input(self._on_video)
        self.audio_input = _Input(self._on_audio)

    @property
    def mime_type(self) -> str:
        return "video/webm" if self._has_video else "audio/webm"

    def _open(self, width: int, height: int) -> None:
        container = av.open(self._writer, mode="w", format="webm")
        if self._has_video:
            # A mux-only stream: no codec context, so nothing is ever encoded.
            video = container.add_mux_stream("vp8", width=width, height=height)
            self._video = _Track(video, fractions.Fraction(1, 90000))
        if self._has_audio:
            # A libopus context only so the muxer writes a proper OpusHead; it never encodes.
            audio = container.add_stream("libopus", rate=48000, layout="stereo")
            self._audio = _Track(audio, fractions.Fraction(1, 48000))
        self._container = container
        self._t0 = self._clock()
        self.state = RecorderState.RECORDING

    def _on_video(self, packet: Packet) -> None:
        if self.state is RecorderState.WAITING_KEYFRAME and packet.is_keyframe:
            self._open(*vp8_dimensions(bytes(packet)))
        if self.state is RecorderState.RECORDING and self._video is not None:
            self._write(self._video, packet)

    def _on_audio(self, packet: Packet) -> None:
        if self.state is RecorderState.WAITING_KEYFRAME and not self._has_video:
            self._open(0, 0)
        if self.state is RecorderState.RECORDING and self._audio is not None:
            self._write(self._audio, packet)

    def _write(self, track: _Track, packet: Packet) -> None:
        assert self._container is not None and packet.pts is not None
        if track.offset is None:
            elapsed = round((self._clock() - self._t0) / track.time_base)
            track.offset = packet.pts - elapsed
        pts = packet.pts - track.offset
        if pts <= track.last_pts:  # the muxer needs strictly increasing timestamps per track
            return
        # A fresh packet: muxing rebases timestamps in place, and the original is shared with viewers.
        copy = av.Packet(bytes(packet))
        copy.pts = copy.dts = pts
        copy.time_base = track.time_base
        copy.is_keyframe = packet.is_keyframe
        copy.stream = track.stream
        try:
            self._container.mux(copy)
        except av.FFmpegError as exc:
            logger.warning("recording: dropped a packet: %s", exc)
            return
        track.last_pts = pts
        track.count += 1

    def stop(self) -> RecordingInfo:
        """Finish the file (write cues and duration) and describe it; idempotent-safe to call once."""
        if self.state is RecorderState.FINISHED:
            raise RecordingError("recording already stopped")
        self.state = RecorderState.FINISHED
        try:
            if self._container is not None:
                self._container.close()
            self._writer.flush()
        finally:
            if self._owns_file:
                self._file.close()
        return RecordingInfo(
            duration=self._duration(),
            bytes=self._writer.extent,
            mime_type=self.mime_type,
            video_frames=self._video.count if self._video else 0,
            audio_packets=self._audio.count if self._audio else 0,
        )

    def _duration(self) -> float:
        tracks = [t for t in (self._video, self._audio) if t is not None and t.count]
        ends = [float(t.last_pts * t.time_base) for t in tracks]
        return max(ends, default=0.0)


class _Input:
    """Adapter so one recorder can sit on two fanouts as two PacketSinks."""

    def __init__(self, push: Callable[[Packet], None]) -> None:
        self.push = push
