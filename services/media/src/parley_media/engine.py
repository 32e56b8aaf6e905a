"""MediaEngine: the asyncio facade the NATS handlers call (one engine per process).

    engine = MediaEngine(MediaConfig(ice_servers=[...], announced_address="203.0.113.9"))
    answer = await engine.publish(StreamKey(org, conf, stream_id), offer_sdp, StreamKind.CAM)
    await engine.add_publisher_candidates(key, [IceCandidate(c, mid, index)])  # any time, even before
    answer = await engine.view(key, viewer_id, viewer_offer_sdp)
    async for event in engine.subscribe(): ...  # StreamEnded -> ConferenceStreamUnpublishedEvent

Errors: UnknownStream / UnknownViewer -> 404, InvalidSdp / InvalidCandidate / NoVideo -> 400,
StreamAlreadyPublished / RecordingError -> 409, NoPicture -> 404.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from aiortc import RTCPeerConnection

from .config import MediaConfig
from .errors import MediaError, NoVideo, StreamAlreadyPublished, UnknownStream, UnknownViewer
from .events import EventHub, EventSubscription, Listener, RecordingFinished, StreamEnded, ViewerEnded
from .forwarding import install_forwarding_worker
from .ice import EarlyCandidates, parse_candidates
from .model import IceCandidate, StreamKey, StreamKind
from .publisher import Publisher
from .recording import RecordingInfo, RecordingSink
from .session import SessionState
from .tasks import TaskSet, ThreadCounter
from .viewer import Viewer

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class EngineCounters:
    publishers: int
    viewers: int
    peer_connections: int  # RTCPeerConnections created and not yet fully closed
    tasks: int  # engine-owned asyncio tasks (pumps, PLI schedulers, teardowns)
    threads: int  # engine-owned threads (forwarding receiver workers, still decoders)


@dataclass(slots=True)
class ForwardingTotals:
    """What this node forwarded since it started, for its metrics (counters: they only grow).

    Kept as plain sums the engine adds a closed stream's or viewer's counts to, so that the packet path
    counts nothing more than it did (one int per packet in `TrackFanout`), and read at scrape time.
    """

    packets: int = 0
    bytes: int = 0
    plis_sent: int = 0
    dropped: int = 0

    def add(self, other: ForwardingTotals) -> None:
        self.packets += other.packets
        self.bytes += other.bytes
        self.plis_sent += other.plis_sent
        self.dropped += other.dropped


@dataclass(frozen=True, slots=True)
class StreamStats:
    kind: StreamKind
    state: SessionState
    viewers: int
    packets: dict[str, int]  # per media kind, forwarded from the publisher
    keyframes: int
    keyframe_requests: int
    plis_sent: int
    viewer_drops: int  # packets dropped from viewer queues (slow viewers, waiting for keyframes)


class MediaEngine:
    def __init__(self, config: MediaConfig | None = None) -> None:
        install_forwarding_worker()
        self.config = config or MediaConfig()
        self._publishers: dict[StreamKey, Publisher] = {}
        self._early_publisher: EarlyCandidates[StreamKey] = EarlyCandidates(self.config.early_candidate_ttl)
        self._early_viewer: EarlyCandidates[tuple[StreamKey, str]] = EarlyCandidates(
            self.config.early_candidate_ttl
        )
        self._tasks = TaskSet()
        self._threads = ThreadCounter()
        self._live_pcs: set[RTCPeerConnection] = set()
        self._events = EventHub()
        # The counts of streams and viewers closed so far (the live ones are read from them at scrape).
        self._retired = ForwardingTotals()

    # -- publishing ---------------------------------------------------------------------------------

    async def publish(self, stream: StreamKey, offer_sdp: str, kind: StreamKind) -> str:
        """Answer a publisher's offer. Raises StreamAlreadyPublished, InvalidSdp."""
        if stream in self._publishers:
            raise StreamAlreadyPublished(str(stream))

        def lost(reason: str) -> None:
            self._publisher_lost(publisher, reason)

        publisher = Publisher(stream, kind, self.config, self._tasks, self._threads, self._live_pcs, lost)
        self._publishers[stream] = publisher
        await publisher.candidates.add(self._early_publisher.take(stream))
        try:
            return await publisher.negotiate(offer_sdp)
        except BaseException as exc:
            closed_meanwhile = publisher.state is SessionState.CLOSED
            if self._publishers.get(stream) is publisher:
                del self._publishers[stream]
            await publisher.close()
            if closed_meanwhile and not isinstance(exc, MediaError):
                raise UnknownStream(f"{stream} was closed while negotiating") from exc
            raise

    async def add_publisher_candidates(self, stream: StreamKey, candidates: Iterable[IceCandidate]) -> None:
        """Trickle ICE; candidates for a stream not published yet wait up to ``early_candidate_ttl``."""
        parsed = parse_candidates(candidates)
        publisher = self._publishers.get(stream)
        if publisher is not None:
            await publisher.candidates.add(parsed)
        elif parsed:
            self._early_publisher.add(stream, parsed)

    async def unpublish(self, stream: StreamKey) -> None:
        publisher = self._publishers.pop(stream, None)
        self._early_publisher.discard(stream)
        if publisher is None:
            raise UnknownStream(str(stream))
        await self._close_publisher(publisher)

    async def close_conference(self, organization_id: str, conference_id: str) -> None:
        conference = (organization_id, conference_id)
        keys = [k for k in self._publishers if (k.organization_id, k.conference_id) == conference]
        publishers = [self._publishers.pop(k) for k in keys]
        await asyncio.gather(*(self._close_publisher(p) for p in publishers))

    async def close_all(self) -> None:
        """Close every stream and wait for all engine tasks; the engine stays usable afterwards."""
        publishers = list(self._publishers.values())
        self._publishers.clear()
        await asyncio.gather(*(self._close_publisher(p) for p in publishers))
        await self._tasks.wait_idle()

    async def _close_publisher(self, publisher: Publisher) -> None:
        viewers = list(publisher.viewers.values())  # closed by the publisher: their drops are counted here
        info = await publisher.close()
        self._retired.add(_publisher_totals(publisher, ()))
        for viewer in viewers:
            self._retired.dropped += viewer.dropped
        if info is not None:
            self._events.emit(RecordingFinished(publisher.stream, info))

    def _publisher_lost(self, publisher: Publisher, reason: str) -> None:
        if self._publishers.get(publisher.stream) is not publisher:
            return  # already being closed on purpose
        del self._publishers[publisher.stream]
        logger.info("stream %s ended: %s", publisher.stream, reason)

        async def teardown() -> None:
            await self._close_publisher(publisher)
            self._events.emit(StreamEnded(publisher.stream, reason))

        self._tasks.spawn(teardown(), f"media-teardown-{publisher.stream}")

    # -- viewing ------------------------------------------------------------------------------------

    async def view(self, stream: StreamKey, viewer_id: str, offer_sdp: str) -> str:
        """Answer a viewer's recvonly offer with the publisher's tracks; replaces a same-id viewer."""
        publisher = self._publisher(stream)
        if not publisher.fanouts:
            raise UnknownStream(f"{stream} is still negotiating")
        previous = publisher.viewers.pop(viewer_id, None)
        if previous is not None:
            await self._close_viewer(previous)

        def lost(reason: str) -> None:
            self._viewer_lost(publisher, viewer, reason)

        viewer = Viewer(stream, viewer_id, publisher.fanouts, self.config, self._live_pcs, lost)
        publisher.viewers[viewer_id] = viewer
        await viewer.candidates.add(self._early_viewer.take((stream, viewer_id)))
        try:
            return await viewer.negotiate(offer_sdp)
        except BaseException as exc:
            closed_meanwhile = viewer.state is SessionState.CLOSED
            if publisher.viewers.get(viewer_id) is viewer:
                del publisher.viewers[viewer_id]
            await viewer.close()
            if closed_meanwhile and not isinstance(exc, MediaError):
                raise UnknownStream(f"{stream} or its viewer {viewer_id} closed while negotiating") from exc
            raise

    async def add_viewer_candidates(
        self, stream: StreamKey, viewer_id: str, candidates: Iterable[IceCandidate]
    ) -> None:
        """Trickle ICE for a viewer; UnknownStream if the stream is not published."""
        parsed = parse_candidates(candidates)
        publisher = self._publisher(stream)
        viewer = publisher.viewers.get(viewer_id)
        if viewer is not None:
            await viewer.candidates.add(parsed)
        elif parsed:
            self._early_viewer.add((stream, viewer_id), parsed)

    async def stop_view(self, stream: StreamKey, viewer_id: str) -> None:
        publisher = self._publisher(stream)
        viewer = publisher.viewers.pop(viewer_id, None)
        self._early_viewer.discard((stream, viewer_id))
        if viewer is None:
            raise UnknownViewer(f"{viewer_id} on {stream}")
        await self._close_viewer(viewer)

    def _viewer_lost(self, publisher: Publisher, viewer: Viewer, reason: str) -> None:
        if publisher.viewers.get(viewer.viewer_id) is not viewer:
            return
        del publisher.viewers[viewer.viewer_id]

        async def teardown() -> None:
            await self._close_viewer(viewer)
            self._events.emit(ViewerEnded(viewer.stream, viewer.viewer_id, reason))

        self._tasks.spawn(teardown(), f"media-teardown-{viewer.stream}-{viewer.viewer_id}")

    async def _close_viewer(self, viewer: Viewer) -> None:
        await viewer.close()
        self._retired.dropped += viewer.dropped

    # -- recording and stills -----------------------------------------------------------------------

    async def start_recording(self, stream: StreamKey, sink: RecordingSink) -> None:
        """Remux the stream into webm on ``sink`` (path or binary writer), from the next keyframe."""
        self._publisher(stream).start_recording(sink)

    async def stop_recording(self, stream: StreamKey) -> RecordingInfo:
        return self._publisher(stream).stop_recording()

    async def still_jpeg(self, stream: StreamKey) -> bytes:
        """JPEG of the stream's current picture. Raises NoVideo, NoPicture."""
        stills = self._publisher(stream).stills
        if stills is None:
            raise NoVideo(str(stream))
        return await stills.jpeg()

    # -- observability ------------------------------------------------------------------------------

    def subscribe(self, capacity: int = 1000) -> EventSubscription:
        """Async iterator of StreamEnded / ViewerEnded / RecordingFinished; call close() when done."""
        return self._events.subscribe(capacity)

    def add_listener(self, listener: Listener) -> Callable[[], None]:
        return self._events.add_listener(listener)

    def counters(self) -> EngineCounters:
        return EngineCounters(
            publishers=len(self._publishers),
            viewers=sum(len(p.viewers) for p in self._publishers.values()),
            peer_connections=len(self._live_pcs),
            tasks=len(self._tasks),
            threads=self._threads.live,
        )

    def forwarding_totals(self) -> ForwardingTotals:
        """Everything forwarded since the engine started: closed streams and viewers, plus the live ones.

        Read on the event loop (the metrics are served from it). A stream being closed is briefly in
        neither part: the reader keeps its counters monotonic (`parley_media.adapters.metrics`).
        """
        totals = ForwardingTotals()
        totals.add(self._retired)
        for publisher in self._publishers.values():
            totals.add(_publisher_totals(publisher, publisher.viewers.values()))
        return totals

    def streams(self) -> list[StreamKey]:
        return list(self._publishers)

    def viewer_ids(self, stream: StreamKey) -> list[str]:
        return list(self._publisher(stream).viewers)

    def stream_stats(self, stream: StreamKey) -> StreamStats:
        publisher = self._publisher(stream)
        keyframes = publisher.keyframes
        video = publisher.fanouts.get("video")
        return StreamStats(
            kind=publisher.kind,
            state=publisher.state,
            viewers=len(publisher.viewers),
            packets={kind: f.packets for kind, f in publisher.fanouts.items()},
            keyframes=video.keyframes if video else 0,
            keyframe_requests=keyframes.requests if keyframes else 0,
            plis_sent=keyframes.sent if keyframes else 0,
            viewer_drops=sum(v.dropped for v in publisher.viewers.values()),
        )

    def _publisher(self, stream: StreamKey) -> Publisher:
        publisher = self._publishers.get(stream)
        if publisher is None:
            raise UnknownStream(str(stream))
        return publisher


def _publisher_totals(publisher: Publisher, viewers: Iterable[Viewer]) -> ForwardingTotals:
    keyframes = publisher.keyframes
    return ForwardingTotals(
        packets=sum(f.packets for f in publisher.fanouts.values()),
        bytes=sum(f.bytes for f in publisher.fanouts.values()),
        plis_sent=keyframes.sent if keyframes else 0,
        dropped=sum(v.dropped for v in viewers),
    )
