"""Use cases of a media node: one method per `MediaOp`, each answering `Accepted[...] | Rejected`.

The conference service keeps the rules (who may publish, view, record); the node does the SDP work and
checks only what it alone knows: which endpoint each publisher and viewer belongs to.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextlib import contextmanager

from parley_common.clock import utcnow
from parley_common.contracts.base import Empty
from parley_common.contracts.conference import IceCandidate as ApiCandidate
from parley_common.contracts.media import (
    AddMediaCandidates,
    GrabStill,
    MediaStream,
    PublishMedia,
    SdpAnswer,
    StillImage,
    StopViewMedia,
    UnpublishMedia,
    ViewMedia,
)
from parley_common.contracts.rpc import Accepted, Rejected, Request
from parley_common.log import get_logger, log_context

from parley_media.engine import MediaEngine
from parley_media.errors import (
    InvalidCandidate,
    InvalidSdp,
    MediaError,
    NoPicture,
    NoVideo,
    RecordingError,
    StreamAlreadyPublished,
    UnknownStream,
    UnknownViewer,
)
from parley_media.holdings import Holdings, conference_of
from parley_media.ice import parse_candidates
from parley_media.model import IceCandidate, StreamKey, StreamKind
from parley_media.recordings import Recordings

log = get_logger(__name__)


def stream_key(stream: MediaStream) -> StreamKey:
    return StreamKey(stream.organization_id, stream.conference_id, stream.stream_id)


@contextmanager
def stream_context(stream: MediaStream, endpoint: str | None = None, **ids: str | None) -> Iterator[None]:
    with log_context(
        organization=stream.organization_id,
        conference_id=stream.conference_id,
        stream_id=stream.stream_id,
        user_endpoint_id=endpoint,
        **ids,
    ):
        yield


def rejection(exc: MediaError, stream_id: str, viewer_id: str | None = None) -> Rejected:
    """Engine error -> the status and message a client sees (naming the field or the id)."""
    if isinstance(exc, UnknownStream):
        return Rejected.not_found(f"stream {stream_id} not found")
    if isinstance(exc, UnknownViewer):
        return Rejected.not_found(f"viewer {viewer_id} not found")
    if isinstance(exc, NoPicture):
        return Rejected.not_found(f"stream {stream_id} has no picture yet")
    if isinstance(exc, InvalidSdp):
        return Rejected.bad_request(f"sdpOffer: {exc}")
    if isinstance(exc, InvalidCandidate):
        return Rejected.bad_request(f"iceCandidates: {exc}")
    if isinstance(exc, NoVideo):
        return Rejected.bad_request(f"stream {stream_id} carries no video")
    if isinstance(exc, StreamAlreadyPublished):
        return Rejected.conflict(f"stream {stream_id} is already published")
    if isinstance(exc, RecordingError):
        return Rejected.conflict(f"stream {stream_id}: {exc}")
    return Rejected.conflict(f"stream {stream_id}: {exc}")


def engine_candidates(candidates: list[ApiCandidate]) -> list[IceCandidate]:
    return [IceCandidate(c.candidate, c.sdp_mid, c.sdp_m_line_index) for c in candidates]


class MediaNodeHandlers:
    def __init__(
        self,
        engine: MediaEngine,
        holdings: Holdings,
        recordings: Recordings,
        *,
        node_id: str,
        capacity: int = 0,
        candidate_wait: float = 1.0,
    ) -> None:
        self._engine = engine
        self._holdings = holdings
        self._recordings = recordings
        self._node_id = node_id
        self._capacity = capacity
        self._candidate_wait = candidate_wait

    # -- publish / unpublish ------------------------------------------------------------------------

    async def publish(self, request: Request[PublishMedia]) -> Accepted[SdpAnswer] | Rejected:
        body = request.body
        stream, stream_id, endpoint = stream_key(body.stream), body.stream.stream_id, body.user_endpoint_id
        with stream_context(body.stream, endpoint):
            if self._holdings.publisher_owner(stream) is not None:
                return Rejected.conflict(f"stream {stream_id} is already published")
            if self._capacity and self._engine.counters().publishers >= self._capacity:
                return Rejected.unavailable(f"media node {self._node_id} is full")
            # Known before negotiating, so trickled candidates racing this request find their owner.
            self._holdings.add_publisher(stream, endpoint)
            try:
                answer = await self._engine.publish(stream, body.sdp_offer, StreamKind(body.stream_type))
            except MediaError as exc:
                self._holdings.remove_publisher(stream, endpoint)
                if isinstance(exc, UnknownStream):  # torn down (left, ended) while negotiating
                    return Rejected.conflict(f"stream {stream_id} was closed while it was being published")
                return rejection(exc, stream_id)
            except BaseException:
                self._holdings.remove_publisher(stream, endpoint)
                raise
            if body.record or self._recordings.conference_on(conference_of(stream)):
                await self._start_recording(stream)
            log.info("stream published", stream_type=body.stream_type, record=body.record)
            return Accepted(value=SdpAnswer(sdp_answer=answer))

    async def _start_recording(self, stream: StreamKey) -> None:
        try:
            await self._recordings.start(stream)
        except MediaError as exc:  # the stream went away meanwhile: nothing to record
            log.warning("recording not started", error=str(exc))

    async def unpublish(self, request: Request[UnpublishMedia]) -> Accepted[Empty] | Rejected:
        """Idempotent: the conference service calls it after committing, maybe after a teardown event."""
        stream = stream_key(request.body.stream)
        with stream_context(request.body.stream):
            await unpublish(self._engine, self._holdings, self._recordings, stream)
            return Accepted(value=Empty())

    # -- viewers ------------------------------------------------------------------------------------

    async def view(self, request: Request[ViewMedia]) -> Accepted[SdpAnswer] | Rejected:
        body = request.body
        stream, stream_id, endpoint = stream_key(body.stream), body.stream.stream_id, body.user_endpoint_id
        with stream_context(body.stream, endpoint, viewer_id=body.viewer_id):
            if self._holdings.publisher_owner(stream) is None:
                return Rejected.not_found(f"stream {stream_id} not found")
            owner = self._holdings.viewer_owner(stream, body.viewer_id)
            if owner is not None and owner != endpoint:
                return Rejected.forbidden(f"viewer {body.viewer_id} belongs to another endpoint")
            self._holdings.add_viewer(stream, body.viewer_id, endpoint)
            try:
                answer = await self._engine.view(stream, body.viewer_id, body.sdp_offer)
            except MediaError as exc:
                self._holdings.remove_viewer(stream, body.viewer_id, endpoint)
                return rejection(exc, stream_id, body.viewer_id)
            except BaseException:
                self._holdings.remove_viewer(stream, body.viewer_id, endpoint)
                raise
            log.info("viewer joined")
            return Accepted(value=SdpAnswer(sdp_answer=answer))

    async def stop_view(self, request: Request[StopViewMedia]) -> Accepted[Empty] | Rejected:
        body = request.body
        stream, stream_id, endpoint = stream_key(body.stream), body.stream.stream_id, body.user_endpoint_id
        with stream_context(body.stream, endpoint, viewer_id=body.viewer_id):
            owner = self._holdings.viewer_owner(stream, body.viewer_id)
            if owner is None:
                if self._holdings.publisher_owner(stream) is None:
                    return Rejected.not_found(f"stream {stream_id} not found")
                return Rejected.not_found(f"viewer {body.viewer_id} not found")
            if owner != endpoint:
                return Rejected.forbidden(f"viewer {body.viewer_id} belongs to another endpoint")
            self._holdings.remove_viewer(stream, body.viewer_id)
            # UnknownStream/UnknownViewer: its connection ended meanwhile, so it is stopped either way.
            with contextlib.suppress(UnknownStream, UnknownViewer):
                await self._engine.stop_view(stream, body.viewer_id)
            log.info("viewer stopped")
            return Accepted(value=Empty())

    # -- trickle ICE --------------------------------------------------------------------------------

    async def candidates(self, request: Request[AddMediaCandidates]) -> Accepted[Empty] | Rejected:
        body = request.body
        stream, stream_id, endpoint = stream_key(body.stream), body.stream.stream_id, body.user_endpoint_id
        with stream_context(body.stream, endpoint, viewer_id=body.viewer_id):
            candidates = engine_candidates(body.ice_candidates)
            try:
                parse_candidates(candidates)  # a malformed candidate is a 400 at once, never a wait
            except InvalidCandidate as exc:
                return rejection(exc, stream_id)
            if body.viewer_id is None:
                return await self._publisher_candidates(stream, stream_id, endpoint, candidates)
            return await self._viewer_candidates(stream, stream_id, body.viewer_id, endpoint, candidates)

    async def _publisher_candidates(
        self, stream: StreamKey, stream_id: str, endpoint: str, candidates: list[IceCandidate]
    ) -> Accepted[Empty] | Rejected:
        owner = await self._holdings.wait_publisher(stream, self._candidate_wait)
        if owner is None:
            return Rejected.not_found(f"stream {stream_id} not found")
        if owner != endpoint:
            return Rejected.forbidden(f"stream {stream_id} is published by another endpoint")
        try:
            await self._engine.add_publisher_candidates(stream, candidates)
        except MediaError as exc:
            return rejection(exc, stream_id)
        return Accepted(value=Empty())

    async def _viewer_candidates(
        self, stream: StreamKey, stream_id: str, viewer_id: str, endpoint: str, candidates: list[IceCandidate]
    ) -> Accepted[Empty] | Rejected:
        owner = await self._holdings.wait_viewer(stream, viewer_id, self._candidate_wait)
        if owner is None:
            if self._holdings.publisher_owner(stream) is None:
                return Rejected.not_found(f"stream {stream_id} not found")
            return Rejected.not_found(f"viewer {viewer_id} not found")
        if owner != endpoint:
            return Rejected.forbidden(f"viewer {viewer_id} belongs to another endpoint")
        try:
            await self._engine.add_viewer_candidates(stream, viewer_id, candidates)
        except MediaError as exc:
            return rejection(exc, stream_id, viewer_id)
        return Accepted(value=Empty())

    # -- stills -------------------------------------------------------------------------------------

    async def still(self, request: Request[GrabStill]) -> Accepted[StillImage] | Rejected:
        body = request.body
        with stream_context(body.stream):
            try:
                jpeg = await self._engine.still_jpeg(stream_key(body.stream))
            except MediaError as exc:
                return rejection(exc, body.stream.stream_id)
            width, height = jpeg_size(jpeg)
            return Accepted(value=StillImage(jpeg=jpeg, width=width, height=height, captured_at=utcnow()))


async def unpublish(
    engine: MediaEngine, holdings: Holdings, recordings: Recordings, stream: StreamKey
) -> None:
    """Close a stream if it is here (its recording, if any, is finished and stored through the engine)."""
    holdings.remove_publisher(stream)
    try:
        await engine.unpublish(stream)
        log.info("stream unpublished")
    except UnknownStream:
        pass
    if not holdings.holds(*conference_of(stream)):
        recordings.set_conference(conference_of(stream), on=False)


def jpeg_size(data: bytes) -> tuple[int, int]:
    """(width, height) from a JPEG's start-of-frame segment; (0, 0) if there is none."""
    i = 2  # after SOI
    while i + 9 < len(data):
        if data[i] != 0xFF:
            return 0, 0
        marker = data[i + 1]
        length = int.from_bytes(data[i + 2 : i + 4], "big")
        # SOF0..SOF15 carry the size, except DHT (C4), JPG (C8) and DAC (CC).
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            height = int.from_bytes(data[i + 5 : i + 7], "big")
            width = int.from_bytes(data[i + 7 : i + 9], "big")
            return width, height
        i += 2 + length
    return 0, 0
