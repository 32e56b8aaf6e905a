"""The conference aggregate and its rules. Pure: no I/O, no clock, no bus.

Every state change is expressed as exactly one event. `decide_*` functions check a command against the
current state and return the event it produces (or None when the command changes nothing, e.g. a repeated
join); `evolve` applies an event to the state. The state is therefore always `fold(evolve, events)`, which
is what the repository relies on to rebuild a conference from its event log.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import datetime
from typing import Any

import msgspec
from parley_common.contracts.base import JsonObject
from parley_common.contracts.conference import (
    Admission,
    AnyConferenceEvent,
    ConferenceCreatedEvent,
    ConferenceEndedEvent,
    ConferenceEvent,
    ConferenceJoinedEvent,
    ConferenceLeftEvent,
    ConferenceLobbyAdmittedEvent,
    ConferenceLobbyEnteredEvent,
    ConferenceLobbyRejectedEvent,
    ConferenceMetadataUpdatedEvent,
    ConferenceMode,
    ConferenceParticipantMetadataUpdatedEvent,
    ConferencePublishedStreamBitrateUpdatedEvent,
    ConferenceStreamMetadataUpdatedEvent,
    ConferenceStreamPublishedEvent,
    ConferenceStreamUnpublishedEvent,
    Metadata,
    MetadataOperation,
    StreamType,
)
from parley_common.contracts.media import Recording
from parley_common.contracts.meeting import MeetingGrant

# The shared refusals, re-exported: the rules raise them as `domain.NotFound(...)`.
from parley_common.errors import Conflict as Conflict
from parley_common.errors import DomainError as DomainError
from parley_common.errors import InvalidCommand as InvalidCommand
from parley_common.errors import NotAllowed as NotAllowed
from parley_common.errors import NotFound as NotFound

MAX_ID_LENGTH = 256
EMPTY_TIMEOUT = "EMPTY_TIMEOUT"
KEEPALIVE_TIMEOUT = "TIMEOUT"
# The leave reason when a service removes a participant (a member removed from a room leaves its meeting).
REMOVED = "REMOVED"
# A lobby rejection's reason when the waiting endpoint itself gave up (left), not a moderator.
LEFT = "LEFT"
MODERATOR = "moderator"
# Conference metadata keys with a meaning to Parley: clients set RECORDER ('{"on":true}' records every
# stream); RECORDINGS is Parley's list of finished recordings, which clients only read.
RECORDER_KEY = "RECORDER"
RECORDINGS_KEY = "RECORDINGS"
RESERVED_METADATA_KEYS = frozenset({RECORDINGS_KEY})
CAMERA_STREAM_TYPES: frozenset[str] = frozenset({"CAM", "MIC_AND_CAM"})
_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")


# ---------------------------------------------------------------- errors


class ConferenceHasEnded(Conflict):
    def __init__(self) -> None:
        super().__init__("conference has ended")


# ---------------------------------------------------------------- state


class Stream(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    type: StreamType
    metadata: JsonObject = {}
    video_bitrate: int | None = None


class Participant(msgspec.Struct, frozen=True, kw_only=True):
    """One user endpoint (a device/session of a user) in the conference."""

    endpoint_id: str
    user_id: str
    joined_at: datetime
    metadata: JsonObject = {}
    streams: tuple[Stream, ...] = ()
    # The meeting token's grant it joined with (None: a user of the conference API itself).
    grant: MeetingGrant | None = None

    def stream(self, stream_id: str) -> Stream | None:
        return next((s for s in self.streams if s.id == stream_id), None)


class Waiting(msgspec.Struct, frozen=True, kw_only=True):
    """An endpoint waiting in the lobby (its grant said `lobby`) for a moderator to let it in."""

    endpoint_id: str
    user_id: str
    since: datetime
    metadata: JsonObject = {}
    grant: MeetingGrant | None = None


class Conference(msgspec.Struct, frozen=True, kw_only=True):
    organization_id: str
    id: str
    mode: ConferenceMode
    version: int
    created_at: datetime
    creator: str | None = None
    creator_endpoint: str | None = None
    metadata: dict[str, Metadata] = {}
    participants: tuple[Participant, ...] = ()
    ended: bool = False
    ended_at: datetime | None = None
    end_reason: str | None = None
    # Since when nobody has been in the conference (None while someone is): drives the empty timeout.
    empty_since: datetime | None = None
    # Who admits joins (None: anyone of the organization may join). Fixed at creation.
    admission: Admission | None = None
    # The scheduled meeting behind the conference: it, not the empty timeout, ends the conference.
    meeting_id: str | None = None
    # Endpoints waiting to be let in: not participants (no media, no events) until admitted.
    lobby: tuple[Waiting, ...] = ()

    @property
    def guarded(self) -> bool:
        return self.admission is not None

    @property
    def empty(self) -> bool:
        return not self.participants

    def participant(self, endpoint_id: str) -> Participant | None:
        return next((p for p in self.participants if p.endpoint_id == endpoint_id), None)

    def waiting(self, endpoint_id: str) -> Waiting | None:
        return next((w for w in self.lobby if w.endpoint_id == endpoint_id), None)

    def stream(self, stream_id: str) -> tuple[Participant, Stream] | None:
        for participant in self.participants:
            stream = participant.stream(stream_id)
            if stream is not None:
                return participant, stream
        return None


# ---------------------------------------------------------------- commands as the domain sees them


class Actor(msgspec.Struct, frozen=True):
    """Who issues a command: an authenticated user acting through one of their endpoints, or a service
    acting for an object it owns (`service`: it need not be a participant to end the conference)."""

    user_id: str
    endpoint_id: str | None
    service: bool = False
    # The caller's meeting token grant (one conference, one role); None: no meeting token.
    grant: MeetingGrant | None = None


class EventContext(msgspec.Struct, frozen=True):
    """What every new event needs from outside the pure rules."""

    event_id: str
    now: datetime


def _common(conference: Conference, ctx: EventContext, actor: Actor | None) -> dict[str, Any]:
    return {
        "id": ctx.event_id,
        "conference_id": conference.id,
        "conference_version": conference.version,
        "organization_id": conference.organization_id,
        "timestamp": ctx.now,
        "user_endpoint_id": actor.endpoint_id if actor else None,
        "user_id": actor.user_id if actor else None,
    }


def validate_client_id(field: str, value: str) -> None:
    """Ids clients choose (conferenceId, streamId, viewerId): printable, not blank, bounded."""
    if not value.strip():
        raise InvalidCommand(f"{field} must not be blank")
    if len(value) > MAX_ID_LENGTH or _CONTROL_CHARS.search(value):
        raise InvalidCommand(f"{field} must be at most {MAX_ID_LENGTH} printable characters")


def validate_conference_id(conference_id: str) -> None:
    validate_client_id("conferenceId", conference_id)


def _require_open(conference: Conference) -> None:
    if conference.ended:
        raise ConferenceHasEnded


def check_grant(grant: MeetingGrant | None, conference_id: str | None) -> None:
    """A meeting token acts on its own conference only (every command and query of any other: 403)."""
    if grant is not None and conference_id is not None and conference_id != grant.conference_id:
        raise NotAllowed(f"this meeting token is not valid for conference {conference_id}")


def _require_participant(conference: Conference, actor: Actor) -> Participant:
    """The actor's endpoint must have joined, and must be the actor's own."""
    if actor.endpoint_id is None:
        raise InvalidCommand("userEndpointId is required")
    participant = conference.participant(actor.endpoint_id)
    if participant is None and conference.waiting(actor.endpoint_id) is not None:
        # Said plainly: a guest's client should show "waiting to be let in", not "not joined".
        raise NotAllowed(
            f"userEndpointId {actor.endpoint_id} is waiting in the lobby of conference {conference.id}"
        )
    if participant is None or participant.user_id != actor.user_id:
        raise NotAllowed(f"userEndpointId {actor.endpoint_id} has not joined conference {conference.id}")
    return participant


# ---------------------------------------------------------------- decisions


def decide_create(
    *,
    organization_id: str,
    conference_id: str,
    mode: str | None,
    creator: str,
    creator_endpoint: str | None,
    metadata: dict[str, str],
    ctx: EventContext,
    admission: Admission | None = None,
    meeting_id: str | None = None,
) -> ConferenceCreatedEvent:
    validate_conference_id(conference_id)
    if mode not in (None, "ROUTER"):
        raise InvalidCommand(f"mode {mode} is not supported: only ROUTER is supported")
    entries = {
        key: Metadata(value=value, last_modified=ctx.now, user_endpoint_id=creator_endpoint, user_id=creator)
        for key, value in metadata.items()
    }
    return ConferenceCreatedEvent(
        id=ctx.event_id,
        conference_id=conference_id,
        conference_version=None,
        organization_id=organization_id,
        timestamp=ctx.now,
        user_endpoint_id=creator_endpoint,
        user_id=creator,
        mode="ROUTER",
        creator_endpoint=creator_endpoint,
        metadata=entries,
        admission=admission,
        meeting_id=meeting_id,
    )


def decide_join(
    conference: Conference, actor: Actor, metadata: JsonObject, ctx: EventContext
) -> ConferenceJoinedEvent | ConferenceLobbyEnteredEvent | None:
    """A join; with a grant that says `lobby`, the endpoint waits in the lobby instead (a Coviu guest)."""
    _require_open(conference)
    if actor.endpoint_id is None:
        raise InvalidCommand("userEndpointId is required")
    check_grant(actor.grant, conference.id)
    present = conference.participant(actor.endpoint_id) or conference.waiting(actor.endpoint_id)
    if present is not None:
        if present.user_id != actor.user_id:
            raise Conflict(f"userEndpointId {actor.endpoint_id} belongs to another user")
        return None  # joining (or knocking) twice is idempotent
    if actor.grant is not None and actor.grant.lobby:
        return ConferenceLobbyEnteredEvent(
            **_common(conference, ctx, actor), metadata=metadata, grant=actor.grant
        )
    return ConferenceJoinedEvent(**_common(conference, ctx, actor), metadata=metadata, grant=actor.grant)


def is_waiting(conference: Conference, endpoint_id: str | None) -> bool:
    return endpoint_id is not None and conference.waiting(endpoint_id) is not None


def _require_moderator(conference: Conference, actor: Actor) -> Participant:
    """Who runs the call: a participant whose grant is moderator, or a conference API user (no grant)."""
    participant = _require_participant(conference, actor)
    for grant in (actor.grant, participant.grant):
        if grant is not None and grant.role != MODERATOR:
            raise NotAllowed(f"only a moderator may do this in conference {conference.id}")
    return participant


def _require_waiting(conference: Conference, endpoint_id: str) -> Waiting:
    waiting = conference.waiting(endpoint_id)
    if waiting is None:
        raise NotFound(
            f"userEndpointId {endpoint_id} is not waiting in the lobby of conference {conference.id}"
        )
    return waiting


def decide_admit(
    conference: Conference, actor: Actor, lobby_endpoint_id: str, ctx: EventContext
) -> ConferenceLobbyAdmittedEvent:
    _require_open(conference)
    _require_moderator(conference, actor)
    waiting = _require_waiting(conference, lobby_endpoint_id)
    return ConferenceLobbyAdmittedEvent(
        **_common(conference, ctx, actor),
        lobby_endpoint_id=waiting.endpoint_id,
        lobby_user_id=waiting.user_id,
        grant=waiting.grant,
    )


def decide_reject(
    conference: Conference, actor: Actor, lobby_endpoint_id: str, reason: str | None, ctx: EventContext
) -> ConferenceLobbyRejectedEvent:
    """Turned away, the endpoint leaves the lobby; it may knock again (a new join), like a Coviu guest."""
    _require_open(conference)
    _require_moderator(conference, actor)
    waiting = _require_waiting(conference, lobby_endpoint_id)
    return ConferenceLobbyRejectedEvent(
        **_common(conference, ctx, actor),
        lobby_endpoint_id=waiting.endpoint_id,
        lobby_user_id=waiting.user_id,
        reason=reason,
    )


def _gave_up(
    conference: Conference, waiting: Waiting, reason: str, ctx: EventContext
) -> ConferenceLobbyRejectedEvent:
    """A waiting endpoint left (or timed out): it leaves the lobby, as if rejected with `reason`."""
    itself = Actor(user_id=waiting.user_id, endpoint_id=waiting.endpoint_id)
    return ConferenceLobbyRejectedEvent(
        **_common(conference, ctx, itself),
        lobby_endpoint_id=waiting.endpoint_id,
        lobby_user_id=waiting.user_id,
        reason=reason,
    )


def decide_leave(
    conference: Conference, actor: Actor, reason: str | None, ctx: EventContext
) -> ConferenceLeftEvent | ConferenceLobbyRejectedEvent:
    _require_open(conference)
    waiting = conference.waiting(actor.endpoint_id) if actor.endpoint_id else None
    if waiting is not None and waiting.user_id == actor.user_id:
        return _gave_up(conference, waiting, LEFT, ctx)
    _require_participant(conference, actor)
    return ConferenceLeftEvent(**_common(conference, ctx, actor), reason=reason)


def decide_timeout(
    conference: Conference, endpoint_id: str, ctx: EventContext
) -> ConferenceLeftEvent | ConferenceLobbyRejectedEvent | None:
    """An endpoint's keep-alive grace period ran out: it leaves (or leaves the lobby), reason TIMEOUT."""
    participant = conference.participant(endpoint_id)
    waiting = conference.waiting(endpoint_id)
    if conference.ended:
        return None
    if waiting is not None:
        return _gave_up(conference, waiting, KEEPALIVE_TIMEOUT, ctx)
    if participant is None:
        return None
    actor = Actor(user_id=participant.user_id, endpoint_id=endpoint_id)
    return ConferenceLeftEvent(**_common(conference, ctx, actor), reason=KEEPALIVE_TIMEOUT)


def decide_end(
    conference: Conference, actor: Actor, reason: str | None, ctx: EventContext
) -> ConferenceEndedEvent:
    _require_open(conference)
    if actor.service:
        # A service ends what it owns (a deleted room's meeting); the event names the service, no endpoint.
        by = Actor(user_id=actor.user_id, endpoint_id=None)
        return ConferenceEndedEvent(**_common(conference, ctx, by), reason=reason)
    participant = _require_participant(conference, actor)
    for grant in (actor.grant, participant.grant):
        if grant is not None and grant.role != MODERATOR:
            raise NotAllowed("only a moderator may end the conference")
    return ConferenceEndedEvent(**_common(conference, ctx, actor), reason=reason)


def decide_remove(
    conference: Conference, actor: Actor, user_id: str, reason: str | None, ctx: EventContext
) -> ConferenceLeftEvent | None:
    """A service removes a user: their first endpoint still in the conference leaves (None: none left).

    One event per decision, as always: the caller decides again until nothing is left to remove.
    """
    if not actor.service:
        raise NotAllowed("only a service may remove a participant")
    _require_open(conference)
    participant = next((p for p in conference.participants if p.user_id == user_id), None)
    if participant is None:
        return None
    leaving = Actor(user_id=participant.user_id, endpoint_id=participant.endpoint_id)
    return ConferenceLeftEvent(**_common(conference, ctx, leaving), reason=reason or REMOVED)


def decide_end_if_empty(
    conference: Conference, *, now: datetime, timeout_seconds: float, ctx: EventContext
) -> ConferenceEndedEvent | None:
    if conference.ended or not conference.empty or conference.empty_since is None:
        return None
    if conference.meeting_id is not None:  # a scheduled meeting waits for its people; the meeting ends it
        return None
    if (now - conference.empty_since).total_seconds() < timeout_seconds:
        return None
    return ConferenceEndedEvent(**_common(conference, ctx, None), reason=EMPTY_TIMEOUT)


def decide_update_metadata(
    conference: Conference,
    actor: Actor,
    *,
    key: str,
    operation: MetadataOperation,
    value: str | None,
    ctx: EventContext,
) -> ConferenceMetadataUpdatedEvent | None:
    _require_open(conference)
    _require_participant(conference, actor)
    if not key:
        raise InvalidCommand("key must not be empty")
    if key in RESERVED_METADATA_KEYS:
        raise NotAllowed(f"metadata key {key} is maintained by Parley and read-only")
    if operation == "SET" and value is None:
        raise InvalidCommand("value is required when operation is SET")
    if operation == "REMOVE":
        if key not in conference.metadata:
            return None
        value = None
    return ConferenceMetadataUpdatedEvent(
        **_common(conference, ctx, actor), key=key, operation=operation, value=value
    )


def decide_update_participant_metadata(
    conference: Conference, actor: Actor, new_metadata: JsonObject, ctx: EventContext
) -> ConferenceParticipantMetadataUpdatedEvent:
    _require_open(conference)
    _require_participant(conference, actor)
    return ConferenceParticipantMetadataUpdatedEvent(
        **_common(conference, ctx, actor), new_metadata=new_metadata
    )


def decide_publish_stream(
    conference: Conference,
    actor: Actor,
    *,
    stream_id: str,
    stream_type: StreamType,
    metadata: JsonObject,
    video_bitrate: int | None,
    ctx: EventContext,
) -> ConferenceStreamPublishedEvent:
    _require_open(conference)
    participant = _require_participant(conference, actor)
    for grant in (actor.grant, participant.grant):
        if grant is not None and grant.role == "subscriber":
            raise NotAllowed("a subscriber may not publish")
    if stream_type == "UNKNOWN":
        raise InvalidCommand("conferenceStreamType must be one of MIC, CAM, SCREEN or MIC_AND_CAM")
    if conference.stream(stream_id) is not None:
        raise Conflict(f"stream {stream_id} already exists in conference {conference.id}")
    return ConferenceStreamPublishedEvent(
        **_common(conference, ctx, actor),
        stream_id=stream_id,
        stream_type=stream_type,
        metadata=metadata,
        video_bitrate=video_bitrate,
    )


def _own_stream(conference: Conference, actor: Actor, stream_id: str | None) -> Stream:
    participant = _require_participant(conference, actor)
    if stream_id is None:
        raise InvalidCommand("streamId is required")
    stream = participant.stream(stream_id)
    if stream is None:
        if conference.stream(stream_id) is not None:
            raise NotAllowed(f"stream {stream_id} is not published by userEndpointId {actor.endpoint_id}")
        raise NotFound(f"stream {stream_id} not found")
    return stream


def decide_unpublish_stream(
    conference: Conference, actor: Actor, stream_id: str, reason: str | None, ctx: EventContext
) -> ConferenceStreamUnpublishedEvent:
    _require_open(conference)
    stream = _own_stream(conference, actor, stream_id)
    return ConferenceStreamUnpublishedEvent(
        **_common(conference, ctx, actor), stream_id=stream.id, stream_type=stream.type, reason=reason
    )


def decide_stream_lost(
    conference: Conference, stream_id: str, reason: str, ctx: EventContext
) -> ConferenceStreamUnpublishedEvent | None:
    """The media plane lost a stream (peer failed, media node died): unpublished on its owner's behalf."""
    found = conference.stream(stream_id)
    if conference.ended or found is None:
        return None
    participant, stream = found
    actor = Actor(user_id=participant.user_id, endpoint_id=participant.endpoint_id)
    return ConferenceStreamUnpublishedEvent(
        **_common(conference, ctx, actor), stream_id=stream.id, stream_type=stream.type, reason=reason
    )


def check_view(conference: Conference, actor: Actor, stream_id: str | None) -> Stream:
    """Viewing (or trickling a viewer's candidates) needs an open conference, a member, the stream."""
    _require_open(conference)
    _require_participant(conference, actor)
    if stream_id is None:
        raise InvalidCommand("streamId is required")
    found = conference.stream(stream_id)
    if found is None:
        raise NotFound(f"stream {stream_id} not found")
    return found[1]


def check_publisher_candidates(conference: Conference, actor: Actor, stream_id: str | None) -> Stream | None:
    """A publisher's trickled candidates: its own stream, or one still negotiating (None: not committed)."""
    _require_open(conference)
    participant = _require_participant(conference, actor)
    if stream_id is None:
        raise InvalidCommand("streamId is required")
    own = participant.stream(stream_id)
    if own is None and conference.stream(stream_id) is not None:
        raise NotAllowed(f"stream {stream_id} is not published by userEndpointId {actor.endpoint_id}")
    return own


def camera_stream(conference: Conference, endpoint_id: str) -> Stream:
    """The endpoint's camera stream (CAM first, then MIC_AND_CAM): what a still is taken from."""
    participant = conference.participant(endpoint_id)
    if participant is None:
        raise NotFound(f"userEndpointId {endpoint_id} is not in conference {conference.id}")
    cameras = sorted(
        (s for s in participant.streams if s.type in CAMERA_STREAM_TYPES), key=lambda s: s.type != "CAM"
    )
    if not cameras:
        raise NotFound(f"userEndpointId {endpoint_id} publishes no camera stream")
    return cameras[0]


def recorder_on(conference: Conference) -> bool:
    """RECORDER holds '{"on":true}' while the conference records; anything else means off."""
    entry = conference.metadata.get(RECORDER_KEY)
    if entry is None or entry.value is None:
        return False
    try:
        value = json.loads(entry.value)
    except ValueError:
        return False
    return isinstance(value, dict) and value.get("on") is True


_recordings_decoder = msgspec.json.Decoder(list[Recording])


def recordings(conference: Conference) -> list[Recording]:
    entry = conference.metadata.get(RECORDINGS_KEY)
    if entry is None or entry.value is None:
        return []
    try:
        return _recordings_decoder.decode(entry.value)
    except msgspec.DecodeError:
        return []


def decide_add_recording(
    conference: Conference, recording: Recording, ctx: EventContext
) -> ConferenceMetadataUpdatedEvent | None:
    """List a finished recording on the conference (also after it ended: recordings finish at the end)."""
    listed = recordings(conference)
    if any(r.recording_id == recording.recording_id for r in listed):
        return None
    value = msgspec.json.encode([*listed, recording]).decode()
    return ConferenceMetadataUpdatedEvent(
        **_common(conference, ctx, None), key=RECORDINGS_KEY, operation="SET", value=value
    )


def decide_update_stream_metadata(
    conference: Conference, actor: Actor, stream_id: str | None, new_metadata: JsonObject, ctx: EventContext
) -> ConferenceStreamMetadataUpdatedEvent:
    _require_open(conference)
    stream = _own_stream(conference, actor, stream_id)
    return ConferenceStreamMetadataUpdatedEvent(
        **_common(conference, ctx, actor), stream_id=stream.id, new_metadata=new_metadata
    )


def decide_update_stream_bitrate(
    conference: Conference, actor: Actor, stream_id: str | None, video_bitrate: int | None, ctx: EventContext
) -> ConferencePublishedStreamBitrateUpdatedEvent:
    _require_open(conference)
    if video_bitrate is not None and video_bitrate < 0:
        raise InvalidCommand("videoBitrate must not be negative")
    stream = _own_stream(conference, actor, stream_id)
    return ConferencePublishedStreamBitrateUpdatedEvent(
        **_common(conference, ctx, actor), stream_id=stream.id, video_bitrate=video_bitrate
    )


# ---------------------------------------------------------------- evolution


def _with_participant(
    conference: Conference, endpoint_id: str, change: Callable[[Participant], Participant]
) -> Conference:
    participants = tuple(change(p) if p.endpoint_id == endpoint_id else p for p in conference.participants)
    return msgspec.structs.replace(conference, participants=participants)


def _without_participant(conference: Conference, endpoint_id: str, at: datetime) -> Conference:
    participants = tuple(p for p in conference.participants if p.endpoint_id != endpoint_id)
    return msgspec.structs.replace(
        conference, participants=participants, empty_since=None if participants else at
    )


def _stream_owner(conference: Conference, stream_id: str) -> str:
    found = conference.stream(stream_id)
    if found is None:  # an event log is only ever written from decisions that checked this
        raise ValueError(f"event refers to unknown stream {stream_id}")
    return found[0].endpoint_id


def _map_stream(conference: Conference, stream_id: str, change: Callable[[Stream], Stream]) -> Conference:
    owner = _stream_owner(conference, stream_id)
    return _with_participant(
        conference,
        owner,
        lambda p: msgspec.structs.replace(
            p, streams=tuple(change(s) if s.id == stream_id else s for s in p.streams)
        ),
    )


def create(event: ConferenceCreatedEvent) -> Conference:
    return Conference(
        organization_id=event.organization_id,
        id=event.conference_id,
        mode=event.mode,
        version=0,
        created_at=event.timestamp,
        creator=event.user_id,
        creator_endpoint=event.creator_endpoint,
        metadata=dict(event.metadata),
        empty_since=event.timestamp,
        admission=event.admission,
        meeting_id=event.meeting_id,
    )


def evolve(conference: Conference, event: AnyConferenceEvent) -> Conference:
    """Apply one event. Raises ValueError if the event does not follow the conference's version."""
    if isinstance(event, ConferenceCreatedEvent) or event.conference_version != conference.version:
        raise ValueError(
            f"event {event.id} (version {event.conference_version}) does not apply"
            f" to version {conference.version}"
        )
    state = _apply(conference, event)
    return msgspec.structs.replace(state, version=conference.version + 1)


def _apply(c: Conference, e: ConferenceEvent) -> Conference:
    if isinstance(e, ConferenceJoinedEvent):
        participant = Participant(
            endpoint_id=e.user_endpoint_id or "",
            user_id=e.user_id or "",
            joined_at=e.timestamp,
            metadata=e.metadata,
            grant=e.grant,
        )
        return msgspec.structs.replace(c, participants=(*c.participants, participant), empty_since=None)
    if isinstance(e, ConferenceLobbyEnteredEvent):
        waiting = Waiting(
            endpoint_id=e.user_endpoint_id or "",
            user_id=e.user_id or "",
            since=e.timestamp,
            metadata=e.metadata,
            grant=e.grant,
        )
        return msgspec.structs.replace(c, lobby=(*c.lobby, waiting))
    if isinstance(e, ConferenceLobbyAdmittedEvent):
        let_in = c.waiting(e.lobby_endpoint_id)
        if let_in is None:  # an event log is only ever written from decisions that checked this
            raise ValueError(f"event admits unknown lobby endpoint {e.lobby_endpoint_id}")
        # The admitted endpoint joins now: its joinedAt is the admission, its metadata what it knocked with.
        participant = Participant(
            endpoint_id=let_in.endpoint_id,
            user_id=let_in.user_id,
            joined_at=e.timestamp,
            metadata=let_in.metadata,
            grant=let_in.grant,
        )
        lobby = tuple(w for w in c.lobby if w.endpoint_id != e.lobby_endpoint_id)
        return msgspec.structs.replace(
            c, lobby=lobby, participants=(*c.participants, participant), empty_since=None
        )
    if isinstance(e, ConferenceLobbyRejectedEvent):
        return msgspec.structs.replace(
            c, lobby=tuple(w for w in c.lobby if w.endpoint_id != e.lobby_endpoint_id)
        )
    if isinstance(e, ConferenceLeftEvent):
        return _without_participant(c, e.user_endpoint_id or "", e.timestamp)
    if isinstance(e, ConferenceEndedEvent):
        return msgspec.structs.replace(
            c,
            ended=True,
            ended_at=e.timestamp,
            end_reason=e.reason,
            participants=(),
            lobby=(),
            empty_since=c.empty_since or e.timestamp,
        )
    if isinstance(e, ConferenceMetadataUpdatedEvent):
        metadata = dict(c.metadata)
        if e.operation == "REMOVE":
            metadata.pop(e.key, None)
        else:
            metadata[e.key] = Metadata(
                value=e.value,
                last_modified=e.timestamp,
                user_endpoint_id=e.user_endpoint_id,
                user_id=e.user_id,
            )
        return msgspec.structs.replace(c, metadata=metadata)
    if isinstance(e, ConferenceParticipantMetadataUpdatedEvent):
        return _with_participant(
            c, e.user_endpoint_id or "", lambda p: msgspec.structs.replace(p, metadata=e.new_metadata)
        )
    if isinstance(e, ConferenceStreamPublishedEvent):
        stream = Stream(
            id=e.stream_id, type=e.stream_type, metadata=e.metadata, video_bitrate=e.video_bitrate
        )
        return _with_participant(
            c, e.user_endpoint_id or "", lambda p: msgspec.structs.replace(p, streams=(*p.streams, stream))
        )
    if isinstance(e, ConferenceStreamUnpublishedEvent):
        owner = _stream_owner(c, e.stream_id)
        return _with_participant(
            c,
            owner,
            lambda p: msgspec.structs.replace(p, streams=tuple(s for s in p.streams if s.id != e.stream_id)),
        )
    if isinstance(e, ConferenceStreamMetadataUpdatedEvent):
        return _map_stream(c, e.stream_id, lambda s: msgspec.structs.replace(s, metadata=e.new_metadata))
    if isinstance(e, ConferencePublishedStreamBitrateUpdatedEvent):
        return _map_stream(
            c, e.stream_id, lambda s: msgspec.structs.replace(s, video_bitrate=e.video_bitrate)
        )
    raise ValueError(f"no rule applies event type {type(e).__name__}")
