"""Scheduled meetings: ONE model on the bus, TWO dialects over HTTP (SourceFuse and Coviu).

A meeting is a planned Parley conference: a schedule, invitations with roles (a SourceFuse token, a Coviu
participant), attendance (attendees) and recordings (archives). The conference service owns it (its
`meetings` module, beside `Conference`); every meeting has a real conference behind it
(`conferenceId`, created with the meeting, ended with it).

The bus speaks the model (`parley.cmd.meeting.<op>` / `parley.qry.meeting.<op>`, queue group
`conference`, camelCase like every Parley payload). The gateway's two thin dialects translate:
`/session`, `/archives` (SourceFuse: `shared/seeds/sourcefuse-video-conferencing-service-api.txt`) and
`/v1/...` (Coviu: `shared/seeds/coviu-session-api.txt`). Their HTTP shapes are declared at the end of this
module with the seeds' own field names, once, for the gateway and the OpenAPI document.

Where the two APIs word a refusal differently, the command says which `dialect` asks and the domain picks
the dialect's message (SourceFuse's are verbatim from its source); a meeting is visible only to the
dialect that created it (the other one answers 404), since each API's views need what only it sets.

Roles are grants, checked by the conference service on the conference behind the meeting:
`subscriber` joins and views; `publisher` also publishes; `moderator` also ends the conference and
admits or rejects endpoints waiting in its lobby. `lobby=True` (a Coviu guest) waits in the lobby until
a moderator in the call admits it. Coviu `HOST` = moderator without lobby, `GUEST` = publisher with lobby.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal, NamedTuple

import msgspec

from parley_common.contracts.base import Empty, Id, JsonObject, Payload

Dialect = Literal["sourcefuse", "coviu"]
MeetingRole = Literal["subscriber", "publisher", "moderator"]
MEETING_ROLES: tuple[MeetingRole, ...] = ("subscriber", "publisher", "moderator")

# The JWT claim that carries a `MeetingGrant` (a JSON object) in a meeting token.
GRANT_CLAIM = "meeting"


class MeetingGrant(Payload, frozen=True):
    """What a meeting token allows: one conference, one role. The gateway copies it onto `Caller.grant`.

    A caller with a grant acts on `conferenceId` only (any other conference: 403), publishes only as
    publisher or moderator (subscriber: 403 on publishStream), ends the conference only as moderator, and
    waits in the lobby first when `lobby`. `attendee` keys the attendance record (SourceFuse: the token's
    `data`; Coviu: the participant id); None: the token's user.
    """

    meeting_id: str
    conference_id: str
    role: MeetingRole
    lobby: bool = False
    attendee: str | None = None


# ---------------------------------------------------------------- the model's views


class InvitationView(Payload, frozen=True):
    """Someone invited to a meeting with a role (a Coviu participant)."""

    invitation_id: str
    meeting_id: str
    role: MeetingRole
    lobby: bool
    created_at: datetime
    display_name: str | None = None
    picture: str | None = None
    # Opaque client data (Coviu `state`); `GET /v1/sessions?state=X` finds meetings by it.
    state: str | None = None
    removed_at: datetime | None = None


class MeetingView(Payload, frozen=True):
    meeting_id: str
    conference_id: str
    organization_id: str
    dialect: Dialect
    # Who created it (the token's `sub`: for a client-credentials token, the OAuth client id).
    created_by: str
    created_at: datetime
    name: str | None = None
    picture: str | None = None
    feature_flags: tuple[str, ...] = ()
    # SourceFuse `isScheduled`/`scheduleTime`; Coviu's session is always scheduled.
    scheduled: bool = False
    # The schedule: `startsAt`/`endsAt` as instants, and as the client wrote them (Coviu echoes the
    # very string it was sent, RFC 1123 included).
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    starts_at_text: str | None = None
    ends_at_text: str | None = None
    # SourceFuse `startTime` (first token issued) and `endTime` (ended); Coviu cancel time.
    started_at: datetime | None = None
    ended_at: datetime | None = None
    canceled_at: datetime | None = None
    archiving: bool = False
    end_to_end_encryption: bool = False
    # Removed invitations only when the query asked for them.
    invitations: tuple[InvitationView, ...] = ()


class MeetingPage(Payload, frozen=True):
    items: tuple[MeetingView, ...]
    page: int
    page_size: int
    page_count: int
    more: bool


class InvitationPage(Payload, frozen=True):
    items: tuple[InvitationView, ...]
    page: int
    page_size: int
    page_count: int
    more: bool


class MeetingPass(Payload, frozen=True):
    """The answer to `issuePass`: what the gateway signs into a meeting token (it holds the key)."""

    grant: MeetingGrant
    not_before: datetime | None = None
    expires_at: datetime | None = None


class AttendeeView(Payload, frozen=True):
    """One attendee of a meeting (SourceFuse's session attendee), from the conference's joins and leaves."""

    id: str
    meeting_id: str
    conference_id: str
    attendee: str
    created_on: datetime
    is_deleted: bool
    modified_on: datetime | None = None
    ext_id: str | None = None
    ext_metadata: JsonObject | None = None


class Attendees(Payload, frozen=True):
    items: tuple[AttendeeView, ...]


ArchiveUploadState = Literal["pending", "uploaded", "failed"]


class ArchiveUpload(Payload, frozen=True):
    """A copy of an archive on the organization's storage target, and how its upload went."""

    target: Literal["AWSS3", "AZURE"]
    # Bucket (S3) or container (Azure) and the object's name there.
    location: str
    object_name: str
    state: ArchiveUploadState
    attempts: int = 0
    last_error: str | None = None
    uploaded_at: datetime | None = None


class ArchiveView(Payload, frozen=True):
    """A recording of a meeting's conference (one stream), kept in Parley's object store."""

    archive_id: str
    meeting_id: str
    conference_id: str
    name: str | None
    created_at: datetime
    recording_id: str
    stream_id: str
    mime_type: str
    bytes: int
    duration_seconds: float
    # The gateway path that downloads the bytes (the conference API's recording route).
    url: str
    uploads: tuple[ArchiveUpload, ...] = ()


class Archives(Payload, frozen=True):
    items: tuple[ArchiveView, ...]


# ---------------------------------------------------------------- the model's commands and queries

# A time as the client wrote it: RFC 3339 or RFC 1123 (`Tue, 01 Dec 2026 10:00:00 GMT`); the domain
# parses it and refuses what it cannot read with the dialect's message.
TimeText = Annotated[str, msgspec.Meta(max_length=64)]
Text = Annotated[str, msgspec.Meta(max_length=1024)]
Url = Annotated[str, msgspec.Meta(max_length=4096)]


class InvitationFields(Payload, frozen=True):
    role: MeetingRole = "publisher"
    lobby: bool = False
    display_name: Text | None = None
    picture: Url | None = None
    state: Text | None = None


class CreateMeeting(Payload, frozen=True):
    dialect: Dialect
    name: Text | None = None
    picture: Url | None = None
    feature_flags: tuple[Text, ...] = ()
    scheduled: bool = False
    starts_at: TimeText | None = None
    ends_at: TimeText | None = None
    archiving: bool = False
    end_to_end_encryption: bool = False
    invitations: tuple[InvitationFields, ...] = ()


class MeetingRef(Payload, frozen=True):
    dialect: Dialect
    meeting_id: Id


class GetMeeting(MeetingRef, frozen=True):
    include_removed: bool = False


class UpdateMeeting(MeetingRef, frozen=True):
    """Change the schedule or the labels. Unset fields stay as they are."""

    name: Text | None = None
    picture: Url | None = None
    # SourceFuse `isScheduled` (None: not sent).
    scheduled: bool | None = None
    starts_at: TimeText | None = None
    ends_at: TimeText | None = None


class ListMeetings(Payload, frozen=True):
    dialect: Dialect
    page: Annotated[int, msgspec.Meta(ge=0)] = 0
    page_size: Annotated[int, msgspec.Meta(ge=1, le=200)] = 200
    # Filters on the start time; either one orders by start time instead of creation time.
    starts_from: datetime | None = None
    starts_until: datetime | None = None
    include_canceled: bool = False
    include_removed: bool = False
    # Only meetings with an invitation whose `state` is this.
    state: Text | None = None
    reverse: bool = False


class InvitationRef(Payload, frozen=True):
    dialect: Dialect
    invitation_id: Id


class Invite(MeetingRef, frozen=True):
    invitation: InvitationFields


class UpdateInvitation(InvitationRef, frozen=True):
    role: MeetingRole | None = None
    lobby: bool | None = None
    display_name: Text | None = None
    picture: Url | None = None
    state: Text | None = None


class ListInvitations(MeetingRef, frozen=True):
    include_removed: bool = False


class IssuePass(MeetingRef, frozen=True):
    """SourceFuse `POST /session/{id}/token`: checks in the real service's order, sets `startedAt`."""

    role: MeetingRole = "publisher"
    # The token's `data`; keys the attendee.
    data: Text | None = None
    # As sent (an ISO string or epoch milliseconds); the domain checks format and past.
    expire_time: TimeText | None = None


class ListAttendees(MeetingRef, frozen=True):
    active_only: bool = False


class ProviderConnection(Payload, frozen=True):
    id: Text | None = None
    created_at: int | None = None
    data: Text | None = None


class ProviderStream(Payload, frozen=True):
    id: Text | None = None
    connection: ProviderConnection | None = None
    created_at: int | None = None
    video_type: Text | None = None


class AttendanceWebhook(Payload, frozen=True):
    """A Vonage-shaped session webhook (`POST /webhooks/session`), also its HTTP body.

    Unknown fields are ignored. `sessionId` is the conference behind the meeting. The caller is the
    gateway itself (no user).
    """

    session_id: Id
    event: Text
    project_id: Id | None = None
    reason: Text | None = None
    timestamp: int | None = None
    connection: ProviderConnection | None = None
    stream: ProviderStream | None = None


class ArchiveRef(Payload, frozen=True):
    archive_id: Id


class StorageTarget(Payload, frozen=True):
    """`PUT /archives/storage-target` (also the HTTP body): where new archives are also uploaded.

    Credentials are the deployment's (`PARLEY_ARCHIVE_S3_*`, `PARLEY_ARCHIVE_AZURE_*`), as the real
    service keeps its Vonage/AWS/Azure keys in its configuration; the body names the place only.
    """

    name: Text | None = None
    bucket: Text | None = None
    account_name: Text | None = None
    endpoint: Url | None = None
    domain: Text | None = None
    region: Text | None = None
    container: Text | None = None
    fallback: Text | None = None


# ---------------------------------------------------------------- the operations on the bus


class Operation(NamedTuple):
    """One meeting operation on the bus: `parley.<kind>.meeting.<name>`, its body and its answer's type."""

    kind: Literal["cmd", "qry"]
    body: type
    result: Any


OPERATIONS: dict[str, Operation] = {
    "createMeeting": Operation("cmd", CreateMeeting, MeetingView),
    "getMeeting": Operation("qry", GetMeeting, MeetingView),
    "listMeetings": Operation("qry", ListMeetings, MeetingPage),
    "updateMeeting": Operation("cmd", UpdateMeeting, MeetingView),
    # SourceFuse end (409-free: its message) and Coviu cancel share the model's two endings.
    "endMeeting": Operation("cmd", MeetingRef, MeetingView),
    "cancelMeeting": Operation("cmd", MeetingRef, MeetingView),
    "invite": Operation("cmd", Invite, InvitationView),
    "getInvitation": Operation("qry", InvitationRef, InvitationView),
    "listInvitations": Operation("qry", ListInvitations, InvitationPage),
    "updateInvitation": Operation("cmd", UpdateInvitation, InvitationView),
    "removeInvitation": Operation("cmd", InvitationRef, InvitationView),
    "issuePass": Operation("cmd", IssuePass, MeetingPass),
    "listAttendees": Operation("qry", ListAttendees, Attendees),
    "attendanceWebhook": Operation("cmd", AttendanceWebhook, Empty),
    "listArchives": Operation("qry", Empty, Archives),
    "getArchive": Operation("qry", ArchiveRef, ArchiveView),
    "deleteArchive": Operation("cmd", ArchiveRef, Empty),
    "setStorageTarget": Operation("cmd", StorageTarget, Empty),
}


# ---------------------------------------------------------------- events (stream PARLEY_MEETING)


class MeetingEvent(Payload, tag_field="type", tag=True, frozen=True):
    """What every meeting event carries; `type` is the class name. Subject `parley.events.meeting.<type>`."""

    id: str
    organization_id: str
    meeting_id: str
    conference_id: str
    timestamp: datetime


class MeetingCreatedEvent(MeetingEvent, kw_only=True, frozen=True):
    """A scheduled meeting (SourceFuse session or Coviu session) was created with its conference; `meeting` is
    its full view.
    """

    meeting: MeetingView


class MeetingUpdatedEvent(MeetingEvent, kw_only=True, frozen=True):
    """A scheduled meeting's details (title, times, settings) were changed; `meeting` is its new view."""

    meeting: MeetingView


class MeetingStartedEvent(MeetingEvent, kw_only=True, frozen=True):
    """A scheduled meeting started: its first pass (token) was issued."""


class MeetingEndedEvent(MeetingEvent, kw_only=True, frozen=True):
    """A scheduled meeting ended: by the end command or, past its end time, by the service's sweep."""


class MeetingCanceledEvent(MeetingEvent, kw_only=True, frozen=True):
    """A scheduled meeting was canceled before its start: no pass is issued for it any more."""


class InvitationAddedEvent(MeetingEvent, kw_only=True, frozen=True):
    """Someone was invited to a scheduled meeting with a role (`invitation`)."""

    invitation: InvitationView


class InvitationUpdatedEvent(MeetingEvent, kw_only=True, frozen=True):
    """An invitation to a scheduled meeting was changed (role, name); `invitation` is its new view."""

    invitation: InvitationView


class InvitationRemovedEvent(MeetingEvent, kw_only=True, frozen=True):
    """An invitation to a scheduled meeting was withdrawn: its tokens no longer admit anyone."""

    invitation_id: str


class AttendeeJoinedEvent(MeetingEvent, kw_only=True, frozen=True):
    """An attendee joined a scheduled meeting's conference (from the conference's own join events)."""

    attendee: AttendeeView


class AttendeeLeftEvent(MeetingEvent, kw_only=True, frozen=True):
    """An attendee left a scheduled meeting's conference."""

    attendee: AttendeeView


class ArchiveCreatedEvent(MeetingEvent, kw_only=True, frozen=True):
    """A recording of a scheduled meeting became an archive (`archive`), available for download."""

    archive: ArchiveView


class ArchiveUploadedEvent(MeetingEvent, kw_only=True, frozen=True):
    """An archive was copied to the meeting's storage target (S3 or Azure; `upload` says where)."""

    archive_id: str
    upload: ArchiveUpload


class ArchiveUploadFailedEvent(MeetingEvent, kw_only=True, frozen=True):
    """Copying an archive to the storage target failed for good (`upload` says why); the archive stays
    downloadable.
    """

    archive_id: str
    upload: ArchiveUpload


class ArchiveDeletedEvent(MeetingEvent, kw_only=True, frozen=True):
    """An archive was deleted with its recording."""

    archive_id: str


AnyMeetingEvent = (
    MeetingCreatedEvent
    | MeetingUpdatedEvent
    | MeetingStartedEvent
    | MeetingEndedEvent
    | MeetingCanceledEvent
    | InvitationAddedEvent
    | InvitationUpdatedEvent
    | InvitationRemovedEvent
    | AttendeeJoinedEvent
    | AttendeeLeftEvent
    | ArchiveCreatedEvent
    | ArchiveUploadedEvent
    | ArchiveUploadFailedEvent
    | ArchiveDeletedEvent
)


# ================================================================ the dialects' HTTP shapes
#
# SourceFuse: camelCase, the real service's models (`src/types.ts`, `models/*.ts`); unknown properties
# are ignored as LoopBack does. Coviu: snake_case, the seed's definitions; unknown properties ignored
# (its own SDK test sends `display_name` in a session update).


class SourceFuseBody(msgspec.Struct, frozen=True, kw_only=True, rename="camel", omit_defaults=True):
    """Base of the SourceFuse HTTP shapes."""


class MeetingOptions(SourceFuseBody, frozen=True):
    """`POST /session` body."""

    is_scheduled: bool = False
    schedule_time: TimeText | None = None
    enable_archiving: bool = False
    end_to_end_encryption: bool = False


class SessionOptions(SourceFuseBody, frozen=True):
    """`POST /session/{meetingLinkId}/token` body. `expireTime`: an ISO date string or epoch ms."""

    expire_time: TimeText | int | None = None
    role: MeetingRole | None = None
    data: Text | None = None


class SessionResponse(SourceFuseBody, frozen=True):
    session_id: str
    token: str


class VideoChatSessionPartial(SourceFuseBody, frozen=True):
    """`PATCH /session/{meetingLinkId}` body (the seed's schema; only the schedule is acted on)."""

    deleted: bool | None = None
    deleted_on: TimeText | None = None
    deleted_by: Text | None = None
    created_on: TimeText | None = None
    modified_on: TimeText | None = None
    created_by: Text | None = None
    modified_by: Text | None = None
    id: int | None = None  # the real model's autoincrement number; ignored here
    session_id: Id | None = None
    meeting_link: Text | None = None
    is_scheduled: bool | None = None
    schedule_time: TimeText | None = None
    is_archived: bool | None = None
    archive_id: Id | None = None
    upload_target: Text | None = None
    start_time: TimeText | None = None
    end_time: TimeText | None = None
    ext_id: Id | None = None
    ext_metadata: JsonObject | None = None


class SessionAttendee(SourceFuseBody, frozen=True):
    """One row of `GET /session/{meetingLinkId}/attendees` (the real service's SessionAttendees model)."""

    id: str
    session_id: str
    attendee: str
    created_on: datetime
    is_deleted: bool
    modified_on: datetime | None = None
    ext_id: str | None = None
    ext_metadata: JsonObject | None = None


class ArchiveResponse(SourceFuseBody, frozen=True):
    id: str
    session_id: str
    meta_data: dict[str, Any]
    name: str | None = None


class ArchiveResponseList(SourceFuseBody, frozen=True):
    count: int
    items: tuple[ArchiveResponse, ...]


class CoviuBody(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """Base of the Coviu HTTP shapes (snake_case, as the seed)."""


# `host` or `guest` in any case. Only documented (the pattern): the dialect checks it, to answer the seed's
# `Invalid role` rather than a schema message.
CoviuRole = Annotated[
    str,
    msgspec.Meta(max_length=16, extra_json_schema={"pattern": "^([Hh][Oo][Ss][Tt]|[Gg][Uu][Ee][Ss][Tt])$"}),
]


class ParticipantCreationRequest(CoviuBody, frozen=True):
    # `host` or `guest`, any case (checked by the dialect: 400 otherwise); default guest.
    role: CoviuRole | None = None
    display_name: Text | None = None
    picture: Url | None = None
    state: Text | None = None


class ParticipantUpdateRequest(ParticipantCreationRequest, frozen=True):
    pass


class SessionCreationRequest(CoviuBody, frozen=True):
    start_time: TimeText
    end_time: TimeText
    session_name: Text | None = None
    picture: Url | None = None
    feature_flags: tuple[Text, ...] = ()
    participants: tuple[ParticipantCreationRequest, ...] = ()


class SessionUpdateRequest(CoviuBody, frozen=True):
    session_name: Text | None = None
    picture: Url | None = None
    start_time: TimeText | None = None
    end_time: TimeText | None = None


class Participant(CoviuBody, frozen=True):
    participant_id: str
    session_id: str
    client_id: str
    role: Literal["HOST", "GUEST"]
    entry_url: str
    display_name: str | None = None
    picture: str | None = None
    state: str | None = None
    deleted_at: str | None = None
    coviu_user_id: str | None = None


class Session(CoviuBody, frozen=True):
    session_id: str
    team_id: str
    client_id: str
    start_time: str
    end_time: str
    session_name: str | None = None
    picture: str | None = None
    feature_flags: tuple[str, ...] = ()
    canceled_time: str | None = None
    participants: tuple[Participant, ...] = ()


class SessionPage(CoviuBody, frozen=True):
    content: tuple[Session, ...]
    more: bool
    page: int
    page_size: int
    page_count: int


class ParticipantPage(CoviuBody, frozen=True):
    content: tuple[Participant, ...]
    more: bool
    page: int
    page_size: int
    page_count: int


class UnitResponse(CoviuBody, frozen=True):
    ok: bool
