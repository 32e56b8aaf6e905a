"""The Auvious-style conference API (`/rtc-api/conferences/...`): bodies, views and events.

Names and shapes follow `shared/seeds/auvious-conference-api.txt`. Fields the seed marks "Mandatory" have no
default, so decoding names the missing field; everything optional defaults to None/empty. Unknown fields in
a request are ignored (clients send `userId` next to `userEndpointId`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec

from parley_common.contracts.base import ID_MAX_LENGTH, MAX_INT64, Id, JsonObject, Payload
from parley_common.contracts.meeting import MeetingGrant

ConferenceMode = Literal["P2P", "ROUTER", "UNKNOWN"]
ParticipantState = Literal["HEALTHY", "SICK", "UNKNOWN"]
StreamType = Literal["MIC", "CAM", "SCREEN", "MIC_AND_CAM", "UNKNOWN"]
# What a client may publish: UNKNOWN only describes streams of other clients.
PublishableStreamType = Literal["MIC", "CAM", "SCREEN", "MIC_AND_CAM"]
MetadataOperation = Literal["SET", "REMOVE"]
Qos = Literal["AT_LEAST_ONCE", "BEST_EFFORT"]
Bitrate = Annotated[int, msgspec.Meta(ge=0, le=MAX_INT64, description="bits per second")]
MetadataKey = Annotated[str, msgspec.Meta(min_length=1)]
# What `sendEvent` checks in its free-form event (parley_conference.sending uses these patterns). The
# schema is stated for the OpenAPI document only: msgspec cannot decode "an object with these keys and
# anything else", so the conference service checks them.
# `$(?!\n)` ends these patterns: Python's `$` also matches before a final newline, ECMA-262's does not.
# Capitalised camel case ending in "Event" with at least one word before it: "ParticipantMutedEvent".
EVENT_TYPE_PATTERN = r"^(?:[A-Z][a-z0-9]*)+Event$(?!\n)"
# ISO-8601 instant: a date Python's datetime takes (years 1-9999, real days of each month, February 29
# in leap years only), a time, an optional fraction, and an explicit zone (Z or an offset under 24 h).
_YEAR = r"(?:000[1-9]|00[1-9][0-9]|0[1-9][0-9]{2}|[1-9][0-9]{3})"
_LEAP_YEAR = r"(?:[0-9]{2}(?:0[48]|[2468][048]|[13579][26])|(?:0[48]|[2468][048]|[13579][26])00)"
_DAY_OF_MONTH = (
    r"(?:(?:0[13578]|1[02])-(?:0[1-9]|[12][0-9]|3[01])"
    r"|(?:0[469]|11)-(?:0[1-9]|[12][0-9]|30)"
    r"|02-(?:0[1-9]|1[0-9]|2[0-8]))"
)
INSTANT_PATTERN = (
    rf"^(?:{_YEAR}-{_DAY_OF_MONTH}|{_LEAP_YEAR}-02-29)"
    r"T(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\.[0-9]{1,9})?(?:Z|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])$(?!\n)"
)
JsonPathMask = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        description="a JSONPath expression (e.g. $.card.number): the string fields it selects are starred",
    ),
]
ClientEvent = Annotated[
    JsonObject,
    msgspec.Meta(
        extra_json_schema={
            "required": ["type", "timestamp"],
            "properties": {
                "type": {"type": "string", "pattern": EVENT_TYPE_PATTERN},
                "timestamp": {"type": "string", "pattern": INSTANT_PATTERN},
            },
        },
        description="a client-defined event: `type` like ParticipantMutedEvent, `timestamp` ISO-8601",
    ),
]


class StreamId(Payload, frozen=True):
    id: Id


# `streamId` arrives as the seed's `{"id": ...}` or, from the iOS client, as a plain string.
StreamIdInput = StreamId | Id


def stream_id_value(value: StreamIdInput | None) -> str | None:
    if value is None:
        return None
    return value.id if isinstance(value, StreamId) else value


class IceCandidate(Payload, frozen=True):
    candidate: str
    sdp_m_line_index: int | None = msgspec.field(default=None, name="sdpMLineIndex")
    sdp_mid: str | None = None


# ---------------------------------------------------------------- commands (HTTP bodies, also on the bus)


class CreateConferenceWebCommand(Payload, frozen=True):
    conference_id: Id | None = None
    creator_endpoint: Id | None = None
    metadata: dict[str, str] = {}
    # Parley routes every stream through a media node: ROUTER is the only mode it runs.
    mode: Literal["ROUTER"] | None = None
    organization_id: Id | None = None  # "for internal use only": the caller's organization always wins


class JoinConferenceWebCommand(Payload, frozen=True):
    conference_id: Id
    user_endpoint_id: Id
    metadata: JsonObject = {}


class LeaveConferenceWebCommand(Payload, frozen=True):
    conference_id: Id
    user_endpoint_id: Id
    reason: str | None = None


class EndConferenceWebCommand(Payload, frozen=True):
    """End a conference for everyone (`parley.cmd.conference.end`).

    Who may: a user whose endpoint `userEndpointId` has joined the conference (the HTTP route's rule), or a
    service acting on behalf of an object it owns (the chat service ending a deleted room's meeting): a
    caller holding `SERVICE_SCOPE`. A service need not be a participant; it names itself in
    `userEndpointId` (e.g. "chat"), which is neither looked up nor kept alive. `SERVICE_SCOPE` is a grant
    only a deployment's trusted issuers give to service accounts: a user's token never carries it, so over
    HTTP a user who has not joined still gets 403. The service's caller carries the conference's
    organization (as for every command). Ending an unknown conference answers 404, an ended one 409 (a
    retrying caller, such as the chat outbox, counts both as done).
    """

    conference_id: Id
    user_endpoint_id: Id
    reason: str | None = None


# The scope of a service principal (a Parley service acting for an object it owns, not for a user): it
# may end a conference or remove a participant without being one. See `EndConferenceWebCommand`.
SERVICE_SCOPE = "parley:service"
# A NATS subject to send requests to: dot-separated tokens, no wildcards or whitespace.
SUBJECT_PATTERN = r"^[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*$(?!\n)"


class Admission(Payload, frozen=True):
    """Who decides whether a user may join a guarded conference: the service answering `subject`.

    On every join the conference service sends `Request[AdmissionQuery{organizationId, userId,
    resource}]` (`parley_common.contracts.chat`) to `subject` and expects `Accepted[Admitted]`:
    not admitted is a 403, no answer a 503. `resource` is what the guard knows the conference by
    (the chat service: the room id).
    """

    subject: Annotated[str, msgspec.Meta(pattern=SUBJECT_PATTERN, max_length=ID_MAX_LENGTH)]
    resource: Id


class CreateGuardedConference(Payload, frozen=True):
    """Internal command `parley.cmd.conference.createGuarded`, never exposed over HTTP.

    A service (the chat service for a room meeting) creates a conference whose joins `admission` guards.
    The caller is the user the service acts for (the conference's creator). Same rules and events as
    `create` (409 if the id exists); the `ConferenceCreatedEvent` carries `admission`. Answers
    `ConferenceSummary`.
    """

    conference_id: Id
    admission: Admission
    metadata: dict[str, str] = {}


class RemoveParticipantCommand(Payload, frozen=True):
    """Internal command `parley.cmd.conference.removeParticipant` (caller: a `SERVICE_SCOPE` principal).

    Every endpoint of `userId` leaves the conference at once (`ConferenceLeftEvent`, reason `REMOVED`):
    a member removed from a room leaves its meeting. A user with no endpoint in it: nothing to do. A caller
    without the scope: 403; an unknown conference (or one of another organization than the caller's) 404,
    an ended one 409.
    """

    conference_id: Id
    user_id: Id
    reason: str | None = None


class AdmitLobbyEndpointWebCommand(Payload, frozen=True):
    """A moderator in the call (`userEndpointId`) lets a waiting endpoint (`lobbyEndpointId`) in."""

    conference_id: Id
    user_endpoint_id: Id
    lobby_endpoint_id: Id


class RejectLobbyEndpointWebCommand(Payload, frozen=True):
    """A moderator in the call (`userEndpointId`) turns a waiting endpoint (`lobbyEndpointId`) away."""

    conference_id: Id
    user_endpoint_id: Id
    lobby_endpoint_id: Id
    reason: str | None = None


class UpdateConferenceMetadataWebCommand(Payload, frozen=True):
    conference_id: Id
    user_endpoint_id: Id
    key: MetadataKey
    operation: MetadataOperation
    value: str | None = None


class UpdateConferenceParticipantMetadataWebCommand(Payload, frozen=True):
    conference_id: Id
    user_endpoint_id: Id
    new_metadata: JsonObject = {}


class SendEventToConferenceWebCommand(Payload, frozen=True):
    conference_id: Id
    event: ClientEvent
    qos: Qos
    masks: list[JsonPathMask] = []


class ConferencePublishStreamWebCommand(Payload, frozen=True):
    conference_id: Id
    user_endpoint_id: Id
    conference_stream_type: PublishableStreamType
    sdp_offer: str
    stream_id: StreamIdInput | None = None
    metadata: JsonObject = {}
    video_bitrate: Bitrate | None = None


class ConferenceUnpublishStreamWebCommand(Payload, frozen=True):
    conference_id: Id
    user_endpoint_id: Id
    stream_id: StreamIdInput


class ConferenceViewStreamWebCommand(Payload, frozen=True):
    conference_id: Id
    user_endpoint_id: Id
    stream_id: StreamIdInput
    sdp_offer: str
    viewer_id: Id | None = None
    metadata: dict[str, str] = {}


class ConferenceStopViewStreamWebCommand(Payload, frozen=True):
    conference_id: Id
    user_endpoint_id: Id
    stream_id: StreamIdInput
    viewer_id: Id


class ConferencePublishStreamIceCandidatesWebCommand(Payload, frozen=True):
    conference_id: Id
    user_endpoint_id: Id
    stream_id: StreamIdInput
    ice_candidates: list[IceCandidate]


class ConferenceViewStreamIceCandidatesWebCommand(Payload, frozen=True):
    conference_id: Id
    user_endpoint_id: Id
    stream_id: StreamIdInput
    viewer_id: Id
    ice_candidates: list[IceCandidate]


class ConferenceUpdatePublishedStreamBitrateWebCommand(Payload, frozen=True):
    conference_id: Id
    user_endpoint_id: Id
    stream_id: StreamIdInput
    video_bitrate: Bitrate | None = None


class UpdateConferenceStreamMetadataWebCommand(Payload, frozen=True):
    conference_id: Id
    user_endpoint_id: Id
    stream_id: StreamIdInput
    new_metadata: JsonObject = {}


# ---------------------------------------------------------------- views (HTTP responses)


class Metadata(Payload, frozen=True):
    value: str | None
    last_modified: datetime
    user_endpoint_id: str | None = None
    user_id: str | None = None


class ConferenceSummary(Payload, frozen=True):
    id: str
    mode: ConferenceMode
    version: int


class ConferenceStream(Payload, frozen=True):
    id: StreamId
    type: StreamType
    metadata: JsonObject = {}
    video_bitrate: int | None = None


class ConferenceParticipant(Payload, frozen=True):
    id: str
    user_id: str
    state: ParticipantState
    # When this endpoint joined (its ConferenceJoinedEvent's timestamp); e.g. a room meeting's joinedAt.
    joined_at: datetime
    metadata: JsonObject = {}
    streams: list[ConferenceStream] = []


class ConferenceLobbyEndpoint(Payload, frozen=True):
    """An endpoint waiting in the conference's lobby (a meeting guest) for a moderator to let it in."""

    id: str
    user_id: str
    # When it asked to join (its ConferenceLobbyEnteredEvent's timestamp).
    since: datetime
    metadata: JsonObject = {}
    grant: MeetingGrant | None = None


class Conference(Payload, frozen=True):
    id: str
    organization_id: str
    mode: ConferenceMode
    version: int
    creator: str | None
    creator_endpoint: str | None
    empty: bool
    metadata: dict[str, Metadata]
    participants: list[ConferenceParticipant]
    # Endpoints waiting to be admitted (only conferences of meetings with guests have any).
    lobby: list[ConferenceLobbyEndpoint] = []


class ConferenceJoinResult(Payload, frozen=True, omit_defaults=True):
    """The answer to a join: `{}` when the endpoint is in; `{"lobby": true}` when it waits in the lobby
    (its meeting grant says so) until a moderator admits it (`ConferenceLobbyAdmittedEvent`)."""

    lobby: bool = False


class ConferenceSimpleViewParticipantEndpointStream(Payload, frozen=True):
    id: str
    type: StreamType
    metadata: JsonObject = {}


class ConferenceSimpleViewParticipantEndpoint(Payload, frozen=True):
    id: str
    state: ParticipantState
    metadata: JsonObject = {}
    streams: list[ConferenceSimpleViewParticipantEndpointStream] = []


class ConferenceSimpleViewParticipant(Payload, frozen=True):
    id: str
    endpoints: list[ConferenceSimpleViewParticipantEndpoint]


class ConferenceSimpleView(Payload, frozen=True):
    id: str
    mode: ConferenceMode
    version: int
    metadata: dict[str, Metadata]
    participants: list[ConferenceSimpleViewParticipant]


class SendEventResponse(Payload, frozen=True):
    events_sent: int


class ConferencePublishResult(Payload, frozen=True):
    sdp_answer: str
    stream_id: StreamId


class ConferenceStreamViewResult(Payload, frozen=True):
    sdp_answer: str
    viewer_id: str


# ---------------------------------------------------------------- events


class ConferenceEvent(Payload, tag_field="type", tag=True, frozen=True):
    """What every conference event carries. `type` is the class name (the API's exact strings).

    `conferenceVersion` is the version the conference had when the event was generated (None for the
    creation event): each state change raises the version by one and yields exactly one event.
    """

    id: str
    conference_id: str
    conference_version: int | None
    organization_id: str
    timestamp: datetime
    user_endpoint_id: str | None = None
    user_id: str | None = None


class ConferenceCreatedEvent(ConferenceEvent, kw_only=True, frozen=True):
    """A conference was created (by an HTTP create, or by a service for a room meeting or a scheduled
    meeting); it is empty until someone joins.
    """

    mode: ConferenceMode
    creator_endpoint: str | None = None
    metadata: dict[str, Metadata] = {}
    # Set for a guarded conference (`createGuarded`); events logged before guards existed load unguarded.
    admission: Admission | None = None
    # The scheduled meeting behind this conference (`parley_common.contracts.meeting`): the meeting, not
    # the empty timeout, decides when it ends.
    meeting_id: str | None = None


class ConferenceJoinedEvent(ConferenceEvent, kw_only=True, frozen=True):
    """An endpoint (`userEndpointId`, of `userId`) joined the conference and now receives its events and may
    publish and view streams.
    """

    metadata: JsonObject = {}
    # The meeting token's grant the endpoint joined with (role, attendee), when it had one.
    grant: MeetingGrant | None = None


class ConferenceLobbyEnteredEvent(ConferenceEvent, kw_only=True, frozen=True):
    """An endpoint whose grant says `lobby` asked to join: it waits (no media, no events) for a moderator."""

    metadata: JsonObject = {}
    grant: MeetingGrant | None = None


class ConferenceLobbyAdmittedEvent(ConferenceEvent, kw_only=True, frozen=True):
    """A moderator in the call (`userEndpointId`/`userId`) let a waiting endpoint in: it has now joined."""

    lobby_endpoint_id: str
    lobby_user_id: str | None = None
    grant: MeetingGrant | None = None


class ConferenceLobbyRejectedEvent(ConferenceEvent, kw_only=True, frozen=True):
    """A moderator turned a waiting endpoint away (also raised when it gives up waiting: reason LEFT)."""

    lobby_endpoint_id: str
    lobby_user_id: str | None = None
    reason: str | None = None


class ConferenceLeftEvent(ConferenceEvent, kw_only=True, frozen=True):
    """An endpoint left the conference: by asking, by timing out (no keep-alive), or removed by a service
    (`reason`).
    """

    reason: str | None = None


class ConferenceEndedEvent(ConferenceEvent, kw_only=True, frozen=True):
    """The conference ended (asked by a participant or a service, emptied past its timeout, or its meeting
    ended; `reason`): nobody can join it any more.
    """

    reason: str | None = None


class ConferenceMetadataUpdatedEvent(ConferenceEvent, kw_only=True, frozen=True):
    """A conference metadata entry `key` was set or removed (`operation`); `value` is the new value (masked
    values starred out).
    """

    key: str
    operation: MetadataOperation
    value: str | None = None


class ConferenceParticipantMetadataUpdatedEvent(ConferenceEvent, kw_only=True, frozen=True):
    """An endpoint replaced its own participant metadata with `newMetadata`."""

    new_metadata: JsonObject = {}


class ConferenceStreamPublishedEvent(ConferenceEvent, kw_only=True, frozen=True):
    """An endpoint started publishing a stream (`streamId`, camera or screen) on the conference's media node;
    others may now view it.
    """

    stream_id: str
    stream_type: StreamType
    metadata: JsonObject = {}
    video_bitrate: int | None = None


class ConferenceStreamUnpublishedEvent(ConferenceEvent, kw_only=True, frozen=True):
    """A published stream stopped: its publisher unpublished it, left, or the media node reported it ended
    (`reason`).
    """

    stream_id: str
    stream_type: StreamType
    reason: str | None = None


class ConferenceStreamMetadataUpdatedEvent(ConferenceEvent, kw_only=True, frozen=True):
    """The metadata of a published stream was replaced with `newMetadata`."""

    stream_id: str
    new_metadata: JsonObject = {}


class ConferencePublishedStreamBitrateUpdatedEvent(ConferenceEvent, kw_only=True, frozen=True):
    """A published stream's requested video bitrate changed to `videoBitrate`.

    The publishing client is expected to apply `videoBitrate` to its encoder (the server cannot).
    """

    stream_id: str
    video_bitrate: int | None = None


AnyConferenceEvent = (
    ConferenceCreatedEvent
    | ConferenceJoinedEvent
    | ConferenceLeftEvent
    | ConferenceEndedEvent
    | ConferenceMetadataUpdatedEvent
    | ConferenceParticipantMetadataUpdatedEvent
    | ConferenceStreamPublishedEvent
    | ConferenceStreamUnpublishedEvent
    | ConferenceStreamMetadataUpdatedEvent
    | ConferencePublishedStreamBitrateUpdatedEvent
    | ConferenceLobbyEnteredEvent
    | ConferenceLobbyAdmittedEvent
    | ConferenceLobbyRejectedEvent
)


# ---------------------------------------------------------------- bus-only queries


class GetConferenceQuery(Payload, frozen=True):
    conference_id: Id
    user_endpoint_id: Id | None = None  # a poll from a known endpoint counts as a keep-alive


class ConferenceEventsQuery(Payload, frozen=True):
    conference_id: Id
    from_version: int
    user_endpoint_id: Id | None = None


class ConferenceEvents(Payload, frozen=True):
    events: list[AnyConferenceEvent]
    # The conference's version now: lets the gateway's long-poll tell "nothing yet" from "never".
    version: int


class EndpointConferencesQuery(Payload, frozen=True):
    """Which live conferences has this endpoint joined (and is it the caller's own endpoint)?"""

    user_endpoint_id: Id


class EndpointConferences(Payload, frozen=True):
    conference_ids: list[str]
    # The user the endpoint belongs to, if it ever joined anything.
    owner_user_id: str | None = None
