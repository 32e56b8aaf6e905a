"""A publisher leg: a recvonly peer whose receivers output encoded packets to per-track fanouts."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from aiortc import RTCPeerConnection, RTCRtpTransceiver

from .config import MediaConfig
from .errors import InvalidSdp, RecordingError
from .forwarding import TrackFanout, forward_receiver
from .keyframes import KeyframeRequester, ReceiverPli
from .model import StreamKey, StreamKind
from .negotiation import OfferedMedia, apply_offer, first_of_kind, parse_offer, pin_codecs
from .recording import RecordingInfo, RecordingSink, WebmRecorder
from .session import PeerSession, SessionState
from .stills import StillCapture
from .tasks import TaskSet, ThreadCounter
from .viewer import Viewer

logger = logging.getLogger(__name__)


class Publisher(PeerSession):
    def __init__(
        self,
        stream: StreamKey,
        kind: StreamKind,
        config: MediaConfig,
        tasks: TaskSet,
        threads: ThreadCounter,
        live_pcs: set[RTCPeerConnection],
        on_lost: Callable[[str], None],
    ) -> None:
        super().__init__(config, live_pcs, on_lost)
        self.stream = stream
        self.kind = kind
        self.fanouts: dict[str, TrackFanout] = {}
        self.viewers: dict[str, Viewer] = {}
        self.keyframes: KeyframeRequester | None = None
        self.stills: StillCapture | None = None
        self.recorder: WebmRecorder | None = None
        self._tasks = tasks
        self._threads = threads
        self._own_tasks: list[asyncio.Task[None]] = []

    async def negotiate(self, offer_sdp: str) -> str:
        offered = parse_offer(offer_sdp)
        own: dict[str, tuple[RTCRtpTransceiver, OfferedMedia]] = {}
        for media_kind in sorted(self.kind.media_kinds):
            media = first_of_kind(offered, media_kind)
            if media is None or not media.sends:
                raise InvalidSdp(f"a {self.kind.value} stream must send {media_kind}")
            transceiver = self.pc.addTransceiver(media_kind, direction="recvonly")
            pin_codecs(transceiver)
            # Registered before negotiation starts the receiver's worker thread.
            forward_receiver(transceiver.receiver, self._threads)
            own[media_kind] = (transceiver, media)
        await apply_offer(self.pc, offer_sdp, [t for t, _ in own.values()])
        self._ensure_open()
        for media_kind, (transceiver, media) in own.items():
            self.fanouts[media_kind] = self._build_fanout(media_kind, transceiver, media)
        for fanout in self.fanouts.values():
            self._spawn(self._pump(fanout), f"media-pump-{self.stream}-{fanout.kind}")
        if self.keyframes is not None:
            self._spawn(self.keyframes.run(), f"media-pli-{self.stream}")
        return await self._finish_negotiation()

    def _build_fanout(self, kind: str, transceiver: RTCRtpTransceiver, media: OfferedMedia) -> TrackFanout:
        track = transceiver.receiver.track
        if kind != "video":
            return TrackFanout(kind, track)
        self.keyframes = KeyframeRequester(
            ReceiverPli(transceiver.receiver, media.ssrcs), self.config.keyframe_min_interval
        )
        fanout = TrackFanout(
            kind,
            track,
            on_keyframe=self.keyframes.keyframe_seen,
            fast_start_frames=self.config.fast_start_frames,
        )
        fanout.set_keyframe_requester(self.keyframes.request)
        self.stills = StillCapture(
            fanout.request_keyframe,
            self._threads,
            gop_cache_frames=self.config.still_gop_cache_frames,
            timeout=self.config.still_timeout,
            idle_timeout=self.config.still_idle_timeout,
        )
        fanout.add(self.stills)
        return fanout

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        self._own_tasks.append(self._tasks.spawn(coro, name))

    async def _pump(self, fanout: TrackFanout) -> None:
        await fanout.run()
        if self.state is not SessionState.CLOSED and all(f.ended for f in self.fanouts.values()):
            self._report_lost("tracks-ended")  # e.g. RTCP BYE on every track

    def start_recording(self, sink: RecordingSink) -> None:
        if self.recorder is not None:
            raise RecordingError(f"{self.stream} is already being recorded")
        recorder = WebmRecorder(sink, has_video="video" in self.fanouts, has_audio="audio" in self.fanouts)
        self.recorder = recorder
        if "audio" in self.fanouts:
            self.fanouts["audio"].add(recorder.audio_input)
        if "video" in self.fanouts:
            self.fanouts["video"].add(recorder.video_input)
            self.fanouts["video"].request_keyframe()  # a recording must start on a keyframe

    def stop_recording(self) -> RecordingInfo:
        recorder = self.recorder
        if recorder is None:
            raise RecordingError(f"{self.stream} is not being recorded")
        self.recorder = None
        for fanout in self.fanouts.values():
            fanout.remove(recorder.audio_input)
            fanout.remove(recorder.video_input)
        return recorder.stop()

    async def close(self) -> RecordingInfo | None:
        """Close viewers, finish any recording, stop the decoder and the peer; returns the recording."""
        if not self._begin_close():
            return None
        viewers = list(self.viewers.values())
        self.viewers.clear()
        await asyncio.gather(*(v.close() for v in viewers), return_exceptions=True)
        info: RecordingInfo | None = None
        if self.recorder is not None:
            try:
                info = self.stop_recording()
            except Exception:
                logger.exception("finishing the recording of %s failed", self.stream)
        if self.stills is not None:
            self.stills.close()
        try:
            await self._close_pc()  # stops receivers: their worker threads end, then the pumps
        finally:
            for task in self._own_tasks:
                await self._tasks.cancel(task)
        return info
