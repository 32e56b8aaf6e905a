"""NATS side of the conference service: subjects to use cases, endpoint delivery, presence fan-out."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from faststream.nats import NatsBroker
from nats.aio.client import Client
from parley_common.contracts import conference as api
from parley_common.contracts import meeting as meeting_api
from parley_common.contracts.health import Dependency, HealthQuery, ServiceHealth
from parley_common.contracts.media import RecordingQuery, StreamStillQuery
from parley_common.contracts.push import PresenceReport
from parley_common.contracts.rpc import Accepted, Rejected, Request
from parley_common.log import get_logger
from parley_common.messaging import subjects
from parley_common.messaging.codec import encode
from parley_common.messaging.rpc import Responders
from parley_common.storage import DocumentStore, StorageError

from parley_conference.handlers import ConferenceHandlers
from parley_conference.media import MediaHandlers
from parley_conference.memberships import Memberships
from parley_conference.placement import MediaNodes
from parley_conference.presence import Presence

log = get_logger(__name__)
QUEUE = "conference"
_presence_decoder = msgspec.json.Decoder(PresenceReport)
_event_decoder = msgspec.json.Decoder(api.AnyConferenceEvent)


async def register(
    broker: NatsBroker,
    responders: Responders,
    handlers: ConferenceHandlers,
    media: MediaHandlers,
    presence: Presence,
    memberships: Memberships,
    store: DocumentStore,
    nodes: MediaNodes,
) -> None:
    commands: dict[str, tuple[Any, Any]] = {
        "create": (Request[api.CreateConferenceWebCommand], handlers.create),
        # Internal (services only; the gateway has no route to them).
        "createGuarded": (Request[api.CreateGuardedConference], handlers.create_guarded),
        "removeParticipant": (Request[api.RemoveParticipantCommand], handlers.remove_participant),
        "join": (Request[api.JoinConferenceWebCommand], handlers.join),
        "leave": (Request[api.LeaveConferenceWebCommand], handlers.leave),
        "end": (Request[api.EndConferenceWebCommand], handlers.end),
        "admitLobbyEndpoint": (Request[api.AdmitLobbyEndpointWebCommand], handlers.admit_lobby_endpoint),
        "rejectLobbyEndpoint": (Request[api.RejectLobbyEndpointWebCommand], handlers.reject_lobby_endpoint),
        "updateMetadata": (Request[api.UpdateConferenceMetadataWebCommand], handlers.update_metadata),
        "updateParticipantMetadata": (
            Request[api.UpdateConferenceParticipantMetadataWebCommand],
            handlers.update_participant_metadata,
        ),
        "sendEvent": (Request[api.SendEventToConferenceWebCommand], handlers.send_event),
        "publishStream": (Request[api.ConferencePublishStreamWebCommand], media.publish_stream),
        "unpublishStream": (Request[api.ConferenceUnpublishStreamWebCommand], media.unpublish_stream),
        "viewStream": (Request[api.ConferenceViewStreamWebCommand], media.view_stream),
        "stopViewStream": (Request[api.ConferenceStopViewStreamWebCommand], media.stop_view_stream),
        "addPublishStreamIceCandidates": (
            Request[api.ConferencePublishStreamIceCandidatesWebCommand],
            media.add_publish_candidates,
        ),
        "addViewStreamIceCandidates": (
            Request[api.ConferenceViewStreamIceCandidatesWebCommand],
            media.add_view_candidates,
        ),
        "updatePublishedStreamBitrate": (
            Request[api.ConferenceUpdatePublishedStreamBitrateWebCommand],
            media.update_bitrate,
        ),
        "updateStreamMetadata": (
            Request[api.UpdateConferenceStreamMetadataWebCommand],
            media.update_stream_metadata,
        ),
    }
    queries: dict[str, tuple[Any, Any]] = {
        "get": (Request[api.GetConferenceQuery], handlers.get),
        "simpleView": (Request[api.GetConferenceQuery], handlers.simple_view),
        "events": (Request[api.ConferenceEventsQuery], handlers.events),
        "endpointConferences": (Request[api.EndpointConferencesQuery], handlers.endpoint_conferences),
        "streamStill": (Request[StreamStillQuery], media.stream_still),
        "recording": (Request[RecordingQuery], media.recording),
    }
    # Requests on plain nats-py subscriptions, events through faststream (see `Responders`).
    for op, (request_type, handler) in commands.items():
        await responders.serve(subjects.conference_command(op), request_type, handler, queue=QUEUE)
    for op, (request_type, handler) in queries.items():
        await responders.serve(subjects.conference_query(op), request_type, handler, queue=QUEUE)

    async def health(_: HealthQuery) -> Accepted[ServiceHealth] | Rejected:
        try:
            await store.ping()
            storage_ok = True
        except StorageError:
            storage_ok = False
        dependencies = [
            Dependency(name="nats", is_healthy=True),
            Dependency(name="storage", is_healthy=storage_ok),
            # Not part of this service's own health: the gateway counts it toward media's readiness (a
            # publish needs a node this replica heard; a node answering its health is not enough).
            Dependency(name="media", is_healthy=nodes.any_alive()),
        ]
        return Accepted(value=ServiceHealth(service=QUEUE, is_healthy=storage_ok, dependencies=dependencies))

    await responders.serve(subjects.health(QUEUE), HealthQuery, health, queue=QUEUE)

    # Every replica hears every report (no queue group): any of them may have to judge a keep-alive.
    async def on_presence(body: bytes) -> None:
        try:
            report = _presence_decoder.decode(body)
        except msgspec.DecodeError:
            log.warning("undecodable presence report")
            return
        for endpoint_id in report.user_endpoint_ids:
            presence.seen(report.organization_id, endpoint_id)

    broker.subscriber(subjects.PRESENCE, no_reply=True)(on_presence)

    # Every replica applies the other replicas' events to its read models (no queue group; its own
    # commits it applies directly and does not hear back, the connection being `no_echo`).
    async def on_event(body: bytes) -> None:
        try:
            event = _event_decoder.decode(body)
        except msgspec.DecodeError:
            log.warning("undecodable conference event")
            return
        memberships.apply(event)

    # `no_reply`: another replica's outbox publishes these as JetStream requests; an (empty) answer from
    # here would race the stream's PubAck and fail that publish.
    broker.subscriber(subjects.CONFERENCE_EVENTS_ALL, no_reply=True)(on_event)


async def register_meetings(
    responders: Responders, use_cases: dict[str, Callable[[Any], Awaitable[Any]]]
) -> None:
    """Meeting operations (`contracts.meeting.OPERATIONS`) to their use cases; each module registers its
    own (the meeting core, attendance, archives), all on the `conference` queue group."""
    for op, handler in use_cases.items():
        operation = meeting_api.OPERATIONS[op]  # a use case without its contract is a bug, found at start
        # The Request envelope of this operation's body, built at run time from the table.
        request_type: Any = Request.__class_getitem__(operation.body)  # type: ignore[attr-defined]
        subject = subjects.meeting_command(op) if operation.kind == "cmd" else subjects.meeting_query(op)
        await responders.serve(subject, request_type, handler, queue=QUEUE)


class PresenceAnnouncer:
    """Tells the other replicas an endpoint was seen here, at most once a second per endpoint."""

    def __init__(self, nc: Client, *, interval: float = 1.0) -> None:
        self._nc = nc
        self._interval = interval
        self._last: dict[tuple[str, str], float] = {}
        self._pending: set[asyncio.Task[None]] = set()

    def __call__(self, organization_id: str, endpoint_id: str) -> None:
        now = time.monotonic()
        k = (organization_id, endpoint_id)
        if now - self._last.get(k, -self._interval) < self._interval:
            return
        self._last[k] = now
        if len(self._last) > 100_000:
            self._last.clear()
        report = PresenceReport(organization_id=organization_id, user_endpoint_ids=[endpoint_id])
        task = asyncio.ensure_future(self._nc.publish(subjects.PRESENCE, encode(report)))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)
