"""Use cases of the media endpoints: the conference keeps the rules, a media node does the SDP work.

A publish is checked against the rules first, answered by the conference's media node, and only then
committed (re-decided on the latest state, like every change); a publish that loses that race is closed on
the node again. Teardown on leave, end and timeouts needs nothing here: nodes follow the conference events.
What nodes report (a stream that died, a finished recording) and nodes that stop answering come back as
conference changes through `on_stream_ended`, `on_recording_stored` and `sweep_nodes`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Protocol, TypeVar, cast

from parley_common.clock import new_id
from parley_common.contracts import conference as api
from parley_common.contracts.base import Empty
from parley_common.contracts.media import (
    MEDIA_NODE_LOST,
    RECORDING_PATH,
    AddMediaCandidates,
    GrabStill,
    MediaOp,
    MediaStream,
    MediaStreamEndedEvent,
    PublishMedia,
    Recording,
    RecordingQuery,
    RecordingStoredEvent,
    SdpAnswer,
    StillImage,
    StopViewMedia,
    StreamStillQuery,
    UnpublishMedia,
    ViewMedia,
)
from parley_common.contracts.rpc import Accepted, Caller, Rejected, Request
from parley_common.errors import Unavailable
from parley_common.log import get_logger, log_context
from parley_common.messaging.rpc import serving_deadline

from parley_conference import domain
from parley_conference.adapters.placements import Pin, Placements
from parley_conference.adapters.recordings import RecordingLocations
from parley_conference.domain import Conference, DomainError, EventContext
from parley_conference.handlers import ConferenceHandlers, Reply, actor_of, rejecting
from parley_conference.placement import MediaNodes, NodeStatus

log = get_logger(__name__)
T = TypeVar("T")


class MediaUnavailable(Unavailable):
    """No media node can take the request now."""


class MediaNodeClient(Protocol):
    """Requests to one media node (`parley.media.<node>.<op>`); transport failures come back as 503."""

    async def request(
        self, node_id: str, op: MediaOp, caller: Caller, body: Any, value_type: type[T]
    ) -> Accepted[T] | Rejected: ...


class NodeAnnouncements(Protocol):
    """Media nodes announcing themselves (heartbeats), for a use case waiting for one."""

    async def next(self, timeout: float) -> bool:
        """Until the next heartbeat is heard (True), or `timeout` seconds pass without one (False)."""
        ...


def system_caller(organization_id: str) -> Caller:
    """Parley itself, for what it does on nobody's request (closing a stream a node lost)."""
    return Caller(organization_id=organization_id, user_id="parley", request_id=new_id())


class MediaHandlers:
    def __init__(
        self,
        conferences: ConferenceHandlers,
        nodes: MediaNodes,
        placements: Placements,
        locations: RecordingLocations,
        client: MediaNodeClient,
        *,
        ids: Callable[[], str] = new_id,
        announcements: NodeAnnouncements | None = None,
        node_wait_seconds: float = 0.0,
    ) -> None:
        self._conferences = conferences
        self._nodes = nodes
        self._placements = placements
        self._locations = locations
        self._client = client
        self._ids = ids
        self._announcements = announcements
        self._node_wait = node_wait_seconds

    # ------------------------------------------------------------ placement

    async def _place(self, conference: Conference) -> Pin:
        """The conference's node; pins it to the least loaded node when it has none (or lost it)."""
        pin = await self._placements.get(conference.organization_id, conference.id)
        if pin is not None:
            if not self._nodes.lost(pin.node_id, pin.incarnation):
                if self._nodes.alive(pin.node_id) is None:
                    raise MediaUnavailable(f"media node {pin.node_id} is not answering")
                return pin
            await self._lose_streams(conference.organization_id, conference.id, MEDIA_NODE_LOST)
        chosen = self._nodes.choose() or await self._announced_node()
        if chosen is None:
            raise MediaUnavailable("no media node is available")
        new = Pin(
            organization_id=conference.organization_id,
            conference_id=conference.id,
            node_id=chosen.node_id,
            incarnation=chosen.incarnation,
        )
        placed = await (self._placements.move(pin, new) if pin else self._placements.pin(new))
        log.info("conference placed on media node", node_id=placed.node_id)
        return placed

    async def _announced_node(self) -> NodeStatus | None:
        """A node that announces itself soon, for a publish that found none.

        Right after a start (of the stack, or of this service) nodes have not been heard yet, and their
        first heartbeat is at most a second or two away: wait for it rather than answer 503. The wait
        ends at the first heartbeat that brings a node with room, at `node_wait_seconds`, or at half the
        time the caller has left (the node still needs the rest for the SDP work), whichever is first.
        """
        if self._announcements is None:
            return None
        started = time.monotonic()
        give_up = started + self._node_wait
        deadline = serving_deadline()
        if deadline is not None:
            give_up = min(give_up, started + (deadline - time.time()) / 2)
        while (left := give_up - time.monotonic()) > 0:
            if not await self._announcements.next(left):
                break
            chosen = self._nodes.choose()
            if chosen is not None:
                waited_ms = round((time.monotonic() - started) * 1e3)
                log.info("media node announced itself", node_id=chosen.node_id, waited_ms=waited_ms)
                return chosen
        return None

    async def _located(self, conference: Conference, stream_id: str) -> Pin:
        """The live node holding the conference's streams."""
        pin = await self._placements.get(conference.organization_id, conference.id)
        if pin is None:
            raise domain.NotFound(f"stream {stream_id} not found")
        if self._nodes.lost(pin.node_id, pin.incarnation) or self._nodes.alive(pin.node_id) is None:
            raise MediaUnavailable(f"media node {pin.node_id} is not answering")
        return pin

    async def _lose_streams(self, organization_id: str, conference_id: str, reason: str) -> None:
        """Unpublish every stream of the conference on its owners' behalf, one event each."""

        def next_stream(c: Conference, ctx: EventContext) -> api.ConferenceStreamUnpublishedEvent | None:
            stream_id = next((s.id for p in c.participants for s in p.streams), None)
            return None if stream_id is None else domain.decide_stream_lost(c, stream_id, reason, ctx)

        while True:
            _, event = await self._conferences.change(organization_id, conference_id, next_stream)
            if event is None:
                return
            log.info("stream lost", stream_id=cast(api.ConferenceStreamUnpublishedEvent, event).stream_id)

    # ------------------------------------------------------------ commands

    @rejecting
    async def publish_stream(self, request: Request[api.ConferencePublishStreamWebCommand]) -> Reply:
        caller, body = request.caller, request.body
        org = caller.organization_id
        self._conferences.seen(org, body.user_endpoint_id)
        actor = actor_of(caller, body.user_endpoint_id)
        stream_id = api.stream_id_value(body.stream_id) or self._ids()
        domain.validate_client_id("streamId", stream_id)

        def decide(c: Conference, ctx: EventContext) -> api.ConferenceStreamPublishedEvent:
            return domain.decide_publish_stream(
                c,
                actor,
                stream_id=stream_id,
                stream_type=body.conference_stream_type,
                metadata=body.metadata,
                video_bitrate=body.video_bitrate,
                ctx=ctx,
            )

        conference = await self._conferences.load(org, body.conference_id)
        decide(conference, self._conferences.context())  # refuse before any media work
        pin = await self._place(conference)
        stream = MediaStream(organization_id=org, conference_id=conference.id, stream_id=stream_id)
        with log_context(stream_id=stream_id, node_id=pin.node_id):
            publish = PublishMedia(
                stream=stream,
                stream_type=body.conference_stream_type,
                sdp_offer=body.sdp_offer,
                user_endpoint_id=body.user_endpoint_id,
                record=domain.recorder_on(conference),
            )
            answer = await self._client.request(pin.node_id, "publish", caller, publish, SdpAnswer)
            if isinstance(answer, Rejected):
                return answer
            try:
                await self._conferences.change(org, conference.id, decide)
            except BaseException:
                # Lost a race (left, ended, same streamId): the node must not keep what the API refused.
                await self._client.request(
                    pin.node_id, "unpublish", caller, UnpublishMedia(stream=stream), Empty
                )
                raise
            log.info("stream published", stream_type=body.conference_stream_type)
        return Accepted(
            value=api.ConferencePublishResult(
                sdp_answer=answer.value.sdp_answer, stream_id=api.StreamId(id=stream_id)
            )
        )

    @rejecting
    async def unpublish_stream(self, request: Request[api.ConferenceUnpublishStreamWebCommand]) -> Reply:
        caller, body = request.caller, request.body
        org = caller.organization_id
        self._conferences.seen(org, body.user_endpoint_id)
        actor = actor_of(caller, body.user_endpoint_id)
        stream_id = api.stream_id_value(body.stream_id) or ""
        await self._conferences.change(
            org,
            body.conference_id,
            lambda c, ctx: domain.decide_unpublish_stream(c, actor, stream_id, None, ctx),
        )
        # Close it now rather than when the node hears the event, so viewers stop as the reply arrives.
        pin = await self._placements.get(org, body.conference_id)
        if pin is not None and self._nodes.alive(pin.node_id) is not None:
            stream = MediaStream(organization_id=org, conference_id=body.conference_id, stream_id=stream_id)
            closed = await self._client.request(
                pin.node_id, "unpublish", caller, UnpublishMedia(stream=stream), Empty
            )
            if isinstance(closed, Rejected):
                log.warning("node did not close the stream; it will on the event", reason=closed.message)
        return Accepted(value=Empty())

    @rejecting
    async def view_stream(self, request: Request[api.ConferenceViewStreamWebCommand]) -> Reply:
        caller, body = request.caller, request.body
        org = caller.organization_id
        self._conferences.seen(org, body.user_endpoint_id)
        stream_id = api.stream_id_value(body.stream_id)
        viewer_id = body.viewer_id or self._ids()
        domain.validate_client_id("viewerId", viewer_id)
        conference = await self._conferences.load(org, body.conference_id)
        actor = actor_of(caller, body.user_endpoint_id)
        stream = domain.check_view(conference, actor, stream_id)
        pin = await self._located(conference, stream.id)
        view = ViewMedia(
            stream=MediaStream(organization_id=org, conference_id=conference.id, stream_id=stream.id),
            viewer_id=viewer_id,
            sdp_offer=body.sdp_offer,
            user_endpoint_id=body.user_endpoint_id,
        )
        with log_context(stream_id=stream.id, viewer_id=viewer_id, node_id=pin.node_id):
            answer = await self._client.request(pin.node_id, "view", caller, view, SdpAnswer)
        if isinstance(answer, Rejected):
            return answer
        return Accepted(
            value=api.ConferenceStreamViewResult(sdp_answer=answer.value.sdp_answer, viewer_id=viewer_id)
        )

    @rejecting
    async def stop_view_stream(self, request: Request[api.ConferenceStopViewStreamWebCommand]) -> Reply:
        caller, body = request.caller, request.body
        org = caller.organization_id
        self._conferences.seen(org, body.user_endpoint_id)
        conference = await self._conferences.load(org, body.conference_id)
        actor = actor_of(caller, body.user_endpoint_id)
        stream = domain.check_view(conference, actor, api.stream_id_value(body.stream_id))
        pin = await self._located(conference, stream.id)
        stop = StopViewMedia(
            stream=MediaStream(organization_id=org, conference_id=conference.id, stream_id=stream.id),
            viewer_id=body.viewer_id,
            user_endpoint_id=body.user_endpoint_id,
        )
        return await self._client.request(pin.node_id, "stopView", caller, stop, Empty)

    @rejecting
    async def add_publish_candidates(
        self, request: Request[api.ConferencePublishStreamIceCandidatesWebCommand]
    ) -> Reply:
        caller, body = request.caller, request.body
        org = caller.organization_id
        self._conferences.seen(org, body.user_endpoint_id)
        stream_id = api.stream_id_value(body.stream_id)
        conference = await self._conferences.load(org, body.conference_id, fresh=False)
        actor = actor_of(caller, body.user_endpoint_id)
        # Not committed yet is fine: trickle ICE races the publish; the node waits briefly for it.
        domain.check_publisher_candidates(conference, actor, stream_id)
        assert stream_id is not None
        pin = await self._located(conference, stream_id)
        candidates = AddMediaCandidates(
            stream=MediaStream(organization_id=org, conference_id=conference.id, stream_id=stream_id),
            ice_candidates=body.ice_candidates,
            user_endpoint_id=body.user_endpoint_id,
        )
        return await self._client.request(pin.node_id, "candidates", caller, candidates, Empty)

    @rejecting
    async def add_view_candidates(
        self, request: Request[api.ConferenceViewStreamIceCandidatesWebCommand]
    ) -> Reply:
        caller, body = request.caller, request.body
        org = caller.organization_id
        self._conferences.seen(org, body.user_endpoint_id)
        conference = await self._conferences.load(org, body.conference_id, fresh=False)
        actor = actor_of(caller, body.user_endpoint_id)
        stream = domain.check_view(conference, actor, api.stream_id_value(body.stream_id))
        pin = await self._located(conference, stream.id)
        candidates = AddMediaCandidates(
            stream=MediaStream(organization_id=org, conference_id=conference.id, stream_id=stream.id),
            ice_candidates=body.ice_candidates,
            user_endpoint_id=body.user_endpoint_id,
            viewer_id=body.viewer_id,
        )
        return await self._client.request(pin.node_id, "candidates", caller, candidates, Empty)

    @rejecting
    async def update_bitrate(
        self, request: Request[api.ConferenceUpdatePublishedStreamBitrateWebCommand]
    ) -> Reply:
        caller, body = request.caller, request.body
        self._conferences.seen(caller.organization_id, body.user_endpoint_id)
        actor = actor_of(caller, body.user_endpoint_id)
        stream_id = api.stream_id_value(body.stream_id)
        await self._conferences.change(
            caller.organization_id,
            body.conference_id,
            lambda c, ctx: domain.decide_update_stream_bitrate(c, actor, stream_id, body.video_bitrate, ctx),
        )
        return Accepted(value=Empty())

    @rejecting
    async def update_stream_metadata(
        self, request: Request[api.UpdateConferenceStreamMetadataWebCommand]
    ) -> Reply:
        caller, body = request.caller, request.body
        self._conferences.seen(caller.organization_id, body.user_endpoint_id)
        actor = actor_of(caller, body.user_endpoint_id)
        stream_id = api.stream_id_value(body.stream_id)
        await self._conferences.change(
            caller.organization_id,
            body.conference_id,
            lambda c, ctx: domain.decide_update_stream_metadata(c, actor, stream_id, body.new_metadata, ctx),
        )
        return Accepted(value=Empty())

    # ------------------------------------------------------------ queries

    @rejecting
    async def stream_still(self, request: Request[StreamStillQuery]) -> Reply:
        caller, body = request.caller, request.body
        conference = await self._conferences.load(caller.organization_id, body.conference_id, fresh=False)
        if conference.ended:
            raise domain.ConferenceHasEnded
        stream = domain.camera_stream(conference, body.user_endpoint_id)
        pin = await self._located(conference, stream.id)
        grab = GrabStill(
            stream=MediaStream(
                organization_id=caller.organization_id, conference_id=conference.id, stream_id=stream.id
            )
        )
        return await self._client.request(pin.node_id, "still", caller, grab, StillImage)

    @rejecting
    async def recording(self, request: Request[RecordingQuery]) -> Reply:
        caller, body = request.caller, request.body
        # Loading the conference first: another organization's conference is unknown, like its recordings.
        await self._conferences.load(caller.organization_id, body.conference_id, fresh=False)
        location = await self._locations.get(caller.organization_id, body.conference_id, body.recording_id)
        if location is None:
            raise domain.NotFound(f"recording {body.recording_id} not found")
        return Accepted(value=location)

    # ------------------------------------------------------------ what media nodes report

    async def on_stream_ended(self, event: MediaStreamEndedEvent) -> None:
        """A node's publisher failed or closed without an unpublish: unpublish it on the owner's behalf."""
        stream = event.stream
        with log_context(
            organization=stream.organization_id,
            conference_id=stream.conference_id,
            stream_id=stream.stream_id,
        ):
            try:
                await self._conferences.change(
                    stream.organization_id,
                    stream.conference_id,
                    lambda c, ctx: domain.decide_stream_lost(c, stream.stream_id, event.reason, ctx),
                )
            except DomainError as exc:
                log.info("stream end not applied", reason=exc.message)

    async def on_recording_stored(self, event: RecordingStoredEvent) -> None:
        stream = event.stream
        location = event.location()
        recording = Recording(
            recording_id=event.recording_id,
            stream_id=stream.stream_id,
            mime_type=event.mime_type,
            bytes=event.bytes,
            duration_seconds=event.duration_seconds,
            started_at=event.started_at,
            url=RECORDING_PATH.format(conference_id=stream.conference_id, recording_id=event.recording_id),
        )
        with log_context(
            organization=stream.organization_id,
            conference_id=stream.conference_id,
            recording_id=event.recording_id,
        ):
            await self._locations.put(stream.organization_id, stream.conference_id, location)
            try:
                await self._conferences.change(
                    stream.organization_id,
                    stream.conference_id,
                    lambda c, ctx: domain.decide_add_recording(c, recording, ctx),
                )
            except DomainError as exc:
                log.info("recording not listed", reason=exc.message)
                return
            log.info("recording listed", bytes=event.bytes)

    async def sweep_nodes(self) -> None:
        """Streams of nodes that stopped answering (or restarted) end with MEDIA_NODE_LOST; stale pins go."""
        for pin in await self._placements.all():
            with log_context(organization=pin.organization_id, conference_id=pin.conference_id):
                try:
                    conference = await self._conferences.load(pin.organization_id, pin.conference_id)
                except domain.NotFound:
                    await self._placements.remove(pin)
                    continue
                if conference.ended:
                    await self._placements.remove(pin)
                    continue
                if self._nodes.lost(pin.node_id, pin.incarnation):
                    log.warning("media node lost", node_id=pin.node_id)
                    try:
                        await self._lose_streams(pin.organization_id, pin.conference_id, MEDIA_NODE_LOST)
                    except DomainError as exc:
                        log.info("lost streams not applied", reason=exc.message)
                        continue
                    await self._placements.remove(pin)
