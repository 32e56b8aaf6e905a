"""The Zextras-style chat API (rooms, members, users, room meetings): bodies, results, commands, events.

Names and shapes follow `shared/seeds/zextras-chats-api.txt` (API 1.3.1), with the real backend's habits
(`shared/notes/chat-carbonio.md`): absent/None fields are left out of the JSON (`omit_defaults`), unknown
body properties are refused, enum values are case-insensitive on input (`GROUP` = `group`).

Parley's departures: every id (room, user, meeting = conference) is a UUID and a malformed one, in a body
or a path, is a 400 (the real backend answers 404 for a path). Path parameters travel INSIDE the body
struct of a command (`RoomRef {roomId}`, `MemberRef {roomId, userId}`), decoded by `decode_params` so that
they pass the same checks as body fields.

Case-insensitivity lives in ONE place: fields typed with a `CaseInsensitive` marker (the enums and `Uuid`)
accept any case (a portable pattern: a class per letter, `[gG][rR]...`, since `(?i)` is not ECMA-262,
the OpenAPI document's regex flavour) and `ChatPayload.__post_init__` lower-cases them, so whatever
decoded the value (the gateway's HTTP body, a query string through `decode_params`, the bus), the rules
see the canonical lower-case spelling.
"""

from __future__ import annotations

import functools
import re
import typing
from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Any, Literal, NamedTuple, TypeVar, get_args

import msgspec

from parley_common.contracts.base import Empty, Payload
from parley_common.contracts.conference import INSTANT_PATTERN

T = TypeVar("T")

# ---------------------------------------------------------------- the case-insensitive values


class CaseInsensitive:
    """Marks a `str` field whose value is lower-cased once decoded (see `ChatPayload.__post_init__`)."""

    __slots__ = ()


CASE_INSENSITIVE = CaseInsensitive()


def _any_case(value: str) -> str:
    """`value` matched in any case, spelled so Python's `re` and ECMA-262 read it alike (no `(?i)` flag)."""
    return "".join(f"[{c.lower()}{c.upper()}]" if c.lower() != c.upper() else re.escape(c) for c in value)


def _choice_pattern(values: tuple[str, ...]) -> str:
    # `$(?!\n)`: Python's `$` also matches before a final newline, ECMA-262's does not.
    return "^(?:" + "|".join(_any_case(value) for value in values) + r")$(?!\n)"


RoomType = Literal["one_to_one", "group", "temporary", "workspace", "channel"]
RoomExtraField = Literal["members", "settings"]
MeetingType = Literal["permanent", "scheduled"]
UserType = Literal["internal", "guest"]
ROOM_TYPES: tuple[RoomType, ...] = get_args(RoomType)
ROOM_EXTRA_FIELDS: tuple[RoomExtraField, ...] = get_args(RoomExtraField)
MEETING_TYPES: tuple[MeetingType, ...] = get_args(MeetingType)
USER_TYPES: tuple[UserType, ...] = get_args(UserType)

# The input spellings: any case, one of the values (the JSON schema still lists the canonical values).
RoomTypeInput = Annotated[
    str,
    msgspec.Meta(pattern=_choice_pattern(ROOM_TYPES), extra_json_schema={"enum": list(ROOM_TYPES)}),
    CASE_INSENSITIVE,
]
RoomExtraFieldInput = Annotated[
    str,
    msgspec.Meta(
        pattern=_choice_pattern(ROOM_EXTRA_FIELDS), extra_json_schema={"enum": list(ROOM_EXTRA_FIELDS)}
    ),
    CASE_INSENSITIVE,
]
MeetingTypeInput = Annotated[
    str,
    msgspec.Meta(pattern=_choice_pattern(MEETING_TYPES), extra_json_schema={"enum": list(MEETING_TYPES)}),
    CASE_INSENSITIVE,
]
UserTypeInput = Annotated[
    str,
    msgspec.Meta(pattern=_choice_pattern(USER_TYPES), extra_json_schema={"enum": list(USER_TYPES)}),
    CASE_INSENSITIVE,
]

_HEX = "[0-9a-fA-F]"
UUID_PATTERN = rf"^{_HEX}{{8}}-{_HEX}{{4}}-{_HEX}{{4}}-{_HEX}{{4}}-{_HEX}{{12}}$(?!\n)"
# A room, user or meeting id: a UUID in its canonical hyphenated form, any case on input, lower-cased.
Uuid = Annotated[
    str, msgspec.Meta(pattern=UUID_PATTERN, extra_json_schema={"format": "uuid"}), CASE_INSENSITIVE
]
# A date-time a body gives, with its zone (a naive one is refused): the document states the RFC 3339
# form the decoder takes, since `format: date-time` alone is not asserted by JSON Schema readers.
Instant = Annotated[datetime, msgspec.Meta(tz=True, extra_json_schema={"pattern": INSTANT_PATTERN})]
RoomName = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
RoomDescription = Annotated[str, msgspec.Meta(max_length=256)]

NAME_MAX_LENGTH = 128
# Most members of a group by default (the chat service's PARLEY_CHAT_MAX_GROUP_MEMBERS).
MAX_GROUP_MEMBERS = 128
DESCRIPTION_MAX_LENGTH = 256
MAX_USER_IDS = 10


def _is_case_insensitive(annotation: Any) -> bool:
    return typing.get_origin(annotation) is Annotated and any(
        isinstance(extra, CaseInsensitive) for extra in annotation.__metadata__
    )


@functools.cache
def _case_insensitive_fields(cls: type) -> tuple[tuple[str, bool], ...]:
    """(field name, is a sequence) of each case-insensitive field of `cls`, optional or not."""
    found: list[tuple[str, bool]] = []
    for name, annotation in typing.get_type_hints(cls, include_extras=True).items():
        candidates = [annotation, *get_args(annotation)]  # `X | None` is a Union of X and None
        for candidate in candidates:
            if _is_case_insensitive(candidate):
                found.append((name, False))
                break
            if typing.get_origin(candidate) in (tuple, list) and any(
                _is_case_insensitive(arg) for arg in get_args(candidate)
            ):
                found.append((name, True))
                break
    return tuple(found)


class ChatPayload(Payload, frozen=True, omit_defaults=True):
    """Every chat wire type: camelCase, None/default fields left out, case-insensitive fields normalised."""

    def __post_init__(self) -> None:
        for name, is_sequence in _case_insensitive_fields(type(self)):
            value = getattr(self, name)
            if value is None:
                continue
            normalised: Any = type(value)(item.lower() for item in value) if is_sequence else value.lower()
            if normalised != value:
                # Frozen: the one sanctioned write, during construction.
                msgspec.structs.force_setattr(self, name, normalised)


class ChatBody(ChatPayload, frozen=True, forbid_unknown_fields=True):
    """A body a client sends: an unknown property is a 400 (the real backend's Jackson default)."""


_UUID = re.compile(UUID_PATTERN)


def canonical_uuid(value: str) -> str | None:
    """The canonical (lower-case) spelling of a UUID, or None when `value` is not one.

    For ids that arrive outside a chat body, e.g. the token's `sub` a chat caller is known by: it must
    compare equal to the same id decoded from a body or a path (lower-cased there).
    """
    return value.lower() if _UUID.match(value) else None


def decode_params(body_type: type[T], params: Mapping[str, Any]) -> T:
    """Build a command body from path/query parameters (wire names), with the checks a JSON body gets.

    Constructing a Struct directly skips its constraints (a malformed UUID would pass); converting does
    not. Raises `msgspec.ValidationError` (a 400).
    """
    return msgspec.convert(dict(params), body_type)


# ---------------------------------------------------------------- bodies (HTTP, also inside commands)


class RoomEditableFields(ChatBody, frozen=True):
    name: RoomName | None = None
    description: RoomDescription | None = None


class RoomCreationFields(ChatBody, frozen=True):
    type: RoomTypeInput
    name: RoomName | None = None
    description: RoomDescription | None = None
    members_ids: tuple[Uuid, ...] = ()
    parent_id: Uuid | None = None

    @property
    def room_type(self) -> RoomType:
        return typing.cast(RoomType, self.type)


def _when_type(*types: RoomType, then: dict[str, Any]) -> dict[str, Any]:
    return {
        "if": {"required": ["type"], "properties": {"type": {"pattern": _choice_pattern(types)}}},
        "then": then,
    }


_ABSENT: dict[str, Any] = {"type": "null"}  # absent or null: the body's None
# The room type's rules that need no stored state, stated in the document (the use case checks them all,
# in the real backend's order): a client or a fuzzer can tell a valid creation from the schema alone.
# What needs state (known users, the parent being a workspace, the caller not among membersIds, an
# existing one_to_one) stays in words. The member cap is the default of PARLEY_CHAT_MAX_GROUP_MEMBERS.
ROOM_CREATION_RULES: dict[str, Any] = {
    "allOf": [
        {"properties": {"membersIds": {"uniqueItems": True}}},
        _when_type(
            "one_to_one",
            then={
                "required": ["membersIds"],
                "properties": {
                    "name": _ABSENT,
                    "description": _ABSENT,
                    "membersIds": {"minItems": 1, "maxItems": 1},
                    "parentId": _ABSENT,
                },
            },
        ),
        _when_type(
            "group",
            "temporary",
            then={"required": ["name"], "properties": {"name": {"type": "string"}, "parentId": _ABSENT}},
        ),
        _when_type(
            "group",
            "workspace",
            then={
                "required": ["membersIds"],
                "properties": {
                    "membersIds": {"minItems": 2, "maxItems": MAX_GROUP_MEMBERS},
                    "parentId": _ABSENT,
                },
            },
        ),
        _when_type(
            "channel",
            then={
                "required": ["parentId"],
                "properties": {"membersIds": {"maxItems": 0}, "parentId": {"type": "string"}},
            },
        ),
    ],
    "description": (
        "one_to_one: exactly one other member, no name, no description; group and temporary: a name; "
        f"group and workspace: 2 to {MAX_GROUP_MEMBERS} other members (the service's setting); channel: a "
        "parentId (a workspace of the caller's), no members; parentId only for a channel; membersIds "
        "distinct, known users of the organization, without the caller"
    ),
}
# POST /rooms' body as the HTTP side carries it: the same struct, with the rules above in its schema.
RoomCreationBody = Annotated[RoomCreationFields, msgspec.Meta(extra_json_schema=ROOM_CREATION_RULES)]


class MemberToInsert(ChatBody, frozen=True):
    user_id: Uuid
    owner: bool
    history_cleared: bool


class RoomRank(ChatBody, frozen=True):
    room_id: Uuid
    # What the document can state of "the ranks are 1 to n, each once, for every one of your rooms".
    rank: Annotated[
        int,
        msgspec.Meta(
            ge=1,
            description="1 to n, each once, n = the caller's workspaces (or the workspace's channels)",
        ),
    ]


class MeetingCreation(ChatBody, frozen=True):
    """Carbonio's `POST /meetings` body (the meeting API, not in the seed); also the command of Parley's
    `POST /rooms/{roomId}/meeting`, whose roomId comes from the path."""

    room_id: Uuid
    name: str | None = None
    meeting_type: MeetingTypeInput = "permanent"
    expiration: Instant | None = None

    @property
    def kind(self) -> MeetingType:
        return typing.cast(MeetingType, self.meeting_type)


# ---------------------------------------------------------------- command/query bodies (path params inside)


class ListRooms(ChatBody, frozen=True):
    """`GET /rooms?extraFields=`: the gateway splits repeated and comma-separated values.

    The answer is a `RoomsPage` (a user in many large rooms outgrows one NATS message): `after` is the
    previous page's cursor, set by the gateway while it assembles the full list, never by a client.
    """

    extra_fields: tuple[RoomExtraFieldInput, ...] = ()
    after: Uuid | None = None


class RoomRef(ChatBody, frozen=True):
    """Every operation on one room with no other input: getRoom, deleteRoom, mute, clear, members, meeting."""

    room_id: Uuid


class UpdateRoom(ChatBody, frozen=True):
    room_id: Uuid
    name: RoomName | None = None
    description: RoomDescription | None = None


class InsertRoomMember(ChatBody, frozen=True):
    room_id: Uuid
    user_id: Uuid
    owner: bool
    history_cleared: bool


class MemberRef(ChatBody, frozen=True):
    """deleteRoomMember, updateToOwner, deleteOwner."""

    room_id: Uuid
    user_id: Uuid


class UpdateWorkspacesRank(ChatBody, frozen=True):
    ranks: tuple[RoomRank, ...]


class UpdateChannelsRank(ChatBody, frozen=True):
    workspace_id: Uuid
    ranks: tuple[RoomRank, ...]


class UserRef(ChatBody, frozen=True):
    user_id: Uuid


class GetUsers(ChatBody, frozen=True):
    """`GET /users?userIds=`: 1 to 10 ids (the count is a rule: see the domain)."""

    user_ids: tuple[Uuid, ...] = ()


# ---------------------------------------------------------------- pictures and previews (issue 11, i11b)
#
# An upload is streamed by the gateway: a cheap check first (`check*Picture`: the room/user rules and the
# declared size, before the body is read), then the body into the bucket `CHAT_FILES_BUCKET` under
# `uploads/{uuid}` (so a refused upload never replaces the current picture), then the command
# (`update*Picture`) naming it; the service decodes it, keeps it as `pictures/rooms/{roomId}` or
# `pictures/users/{userId}` and drops the upload, refused or not. Reads answer a `StoredFile`: the
# gateway streams the object to the client.


class RoomPictureCheck(ChatBody, frozen=True):
    room_id: Uuid
    # The declared Content-Length (None: chunked, counted while streaming).
    size: int | None = None
    mime_type: str = ""


class UserPictureCheck(ChatBody, frozen=True):
    user_id: Uuid
    size: int | None = None
    mime_type: str = ""


class UploadAllowance(ChatPayload, frozen=True):
    """How many bytes the upload may hold (the capabilities' KB limit): the gateway stops past it."""

    max_bytes: int


class RoomPictureUpload(ChatBody, frozen=True):
    room_id: Uuid
    # The object the gateway streamed the body into (`uploads/{uuid}`).
    upload: str
    file_name: str
    mime_type: str
    size: int


class UserPictureUpload(ChatBody, frozen=True):
    user_id: Uuid
    upload: str
    file_name: str
    mime_type: str
    size: int


class StoredFile(ChatPayload, frozen=True):
    """Where the bytes to answer are (in `CHAT_FILES_BUCKET`) and their type."""

    object_name: str
    mime_type: str
    name: str | None = None
    # Previews: True when the answer was rendered before (the cache), False when rendered for this call.
    cached: bool | None = None


# A preview's side: 0 (follows the aspect ratio) to 4096 pixels, in digits.
_SIDE = "(?:[0-9]{1,3}|[0-3][0-9]{3}|40[0-8][0-9]|409[0-6])"
PreviewArea = Annotated[
    str,
    msgspec.Meta(
        pattern=rf"^{_SIDE}x{_SIDE}$(?!\n)",
        description="WIDTHxHEIGHT (width first), each 0..4096; 0 = follows the aspect ratio",
    ),
]
# The seed's spellings in the document; any case accepted (the previewer's enums are case-insensitive).
PREVIEW_QUALITIES = ("Lowest", "Low", "Medium", "High", "Highest")
PREVIEW_FORMATS = ("jpeg", "png", "gif")
PREVIEW_SHAPES = ("Rounded", "Rectangular")
PreviewQuality = Annotated[
    str,
    msgspec.Meta(
        pattern=_choice_pattern(PREVIEW_QUALITIES), extra_json_schema={"enum": list(PREVIEW_QUALITIES)}
    ),
    CASE_INSENSITIVE,
]
PreviewFormat = Annotated[
    str,
    msgspec.Meta(pattern=_choice_pattern(PREVIEW_FORMATS), extra_json_schema={"enum": list(PREVIEW_FORMATS)}),
    CASE_INSENSITIVE,
]
PreviewShape = Annotated[
    str,
    msgspec.Meta(pattern=_choice_pattern(PREVIEW_SHAPES), extra_json_schema={"enum": list(PREVIEW_SHAPES)}),
    CASE_INSENSITIVE,
]
FirstPage = Annotated[int, msgspec.Meta(ge=1, le=2**31 - 1)]
LastPage = Annotated[int, msgspec.Meta(ge=0, le=2**31 - 1)]


class ImagePreviewQuery(ChatBody, frozen=True):
    """`GET /preview/image/{fileId}/{area}/` (`crop`) and `.../thumbnail` (`shape`); also the PDF
    thumbnail. The service checks the values again (previews.image_options), whoever sent them."""

    file_id: Uuid
    area: PreviewArea
    quality: PreviewQuality | None = None
    # The seed's query name, snake_case (the previewer's).
    output_format: PreviewFormat | None = msgspec.field(default=None, name="output_format")
    crop: bool | None = None
    shape: PreviewShape | None = None


class PdfPreviewQuery(ChatBody, frozen=True):
    """`GET /preview/pdf/{fileId}/`: pages firstPage..lastPage (defaults all; lastPage 0 = the last;
    beyond the document: 400, the service's check)."""

    file_id: Uuid
    first_page: FirstPage | None = None
    last_page: LastPage | None = None


# ---------------------------------------------------------------- results


class Member(ChatPayload, frozen=True):
    user_id: str
    owner: bool


class MemberInserted(ChatPayload, frozen=True):
    user_id: str
    owner: bool
    cleared_at: datetime | None = None


class RoomUserSettings(ChatPayload, frozen=True):
    muted: bool
    cleared_at: datetime | None = None


class ClearedDate(ChatPayload, frozen=True):
    cleared_at: datetime


class Room(ChatPayload, frozen=True):
    """A room as the API shows it. `members`/`userSettings`/`children` only when asked for or relevant."""

    id: str
    type: RoomType
    created_at: datetime
    updated_at: datetime
    name: str | None = None
    description: str | None = None
    parent_id: str | None = None
    rank: int | None = None
    meeting_id: str | None = None
    picture_updated_at: datetime | None = None
    # None: left out; a workspace always carries its (possibly empty) list.
    children: tuple[Room, ...] | None = None
    members: tuple[Member, ...] | None = None
    user_settings: RoomUserSettings | None = None


class User(ChatPayload, frozen=True):
    id: str
    email: str
    name: str
    # No default: a default would be left out of the JSON, and clients read it.
    type: UserType
    picture_updated_at: datetime | None = None
    status_message: str | None = None


class Capabilities(ChatPayload, frozen=True):
    # Booleans are written out even when they equal their defaults: the seed requires every key.
    can_see_message_reads: bool
    can_see_users_presence: bool
    can_video_call: bool
    can_video_call_record: bool
    can_use_virtual_background: bool
    edit_message_time_limit_in_minutes: int
    delete_message_time_limit_in_minutes: int
    max_group_members: int
    max_room_image_size_in_kb: int
    max_user_image_size_in_kb: int


class AuthToken(ChatPayload, frozen=True):
    zm_token: str


class MeetingParticipant(ChatPayload, frozen=True):
    user_id: str
    # The participant's conference endpoint (userEndpointId).
    queue_id: str
    audio_stream_enabled: bool
    video_stream_enabled: bool
    screen_stream_enabled: bool
    joined_at: datetime


class Meeting(ChatPayload, frozen=True):
    id: str
    name: str
    room_id: str
    active: bool
    participants: tuple[MeetingParticipant, ...]
    created_at: datetime
    meeting_type: MeetingType
    started_at: datetime | None = None


# ---------------------------------------------------------------- users directory, admission


class UserSeen(ChatPayload, frozen=True):
    """The gateway's report of an authenticated caller (at most every few minutes per user)."""

    organization_id: str
    user_id: Uuid
    name: str | None = None
    email: str | None = None
    type: UserTypeInput = "internal"

    @property
    def user_type(self) -> UserType:
        return typing.cast(UserType, self.type)


class AdmissionQuery(ChatPayload, frozen=True):
    """May `userId` join the conference guarded by `resource` (a room id)? Asked by the conference service."""

    organization_id: str
    user_id: str
    resource: str


class Admitted(Payload, frozen=True):
    # Not a ChatPayload: `admitted: false` must be written out.
    admitted: bool


# ---------------------------------------------------------------- events


class ChatEvent(ChatPayload, tag_field="type", frozen=True, kw_only=True):
    """What every chat event carries; `type` is the event's name (ROOM_CREATED...)."""

    id: str
    sent_date: datetime
    organization_id: str


class RoomCreated(ChatEvent, tag="ROOM_CREATED", frozen=True, kw_only=True):
    """A chat room (group, one-to-one, channel...) was created; its members are in the `ROOM_MEMBER_ADDED`
    events that follow.
    """

    room_id: str


class RoomUpdated(ChatEvent, tag="ROOM_UPDATED", frozen=True, kw_only=True):
    """A room's name or description changed (the new values; an absent one did not change)."""

    room_id: str
    name: str | None = None
    description: str | None = None


class RoomDeleted(ChatEvent, tag="ROOM_DELETED", frozen=True, kw_only=True):
    """A room was deleted with its members, messages, attachments and meeting."""

    room_id: str


class RoomMemberAdded(ChatEvent, tag="ROOM_MEMBER_ADDED", frozen=True, kw_only=True):
    """A user became a member of a room (`isOwner`: as one of its owners)."""

    room_id: str
    user_id: str
    # Written out when false too (omit_defaults only drops fields that have a default).
    is_owner: bool


class RoomMemberRemoved(ChatEvent, tag="ROOM_MEMBER_REMOVED", frozen=True, kw_only=True):
    """A user stopped being a member of a room (left or was removed); they are dropped from its meeting."""

    room_id: str
    user_id: str


class RoomOwnerPromoted(ChatEvent, tag="ROOM_OWNER_PROMOTED", frozen=True, kw_only=True):
    """A member of a room became one of its owners."""

    room_id: str
    user_id: str


class RoomOwnerDemoted(ChatEvent, tag="ROOM_OWNER_DEMOTED", frozen=True, kw_only=True):
    """An owner of a room became an ordinary member."""

    room_id: str
    user_id: str


class RoomMuted(ChatEvent, tag="ROOM_MUTED", frozen=True, kw_only=True):
    """The user muted the room's notifications (sent to that user only)."""

    room_id: str


class RoomUnmuted(ChatEvent, tag="ROOM_UNMUTED", frozen=True, kw_only=True):
    """The user unmuted the room's notifications (sent to that user only)."""

    room_id: str


class RoomHistoryCleared(ChatEvent, tag="ROOM_HISTORY_CLEARED", frozen=True, kw_only=True):
    """The user cleared the room's history for themselves: they stop seeing messages before `clearedAt`."""

    room_id: str
    cleared_at: datetime


class RoomPictureChanged(ChatEvent, tag="ROOM_PICTURE_CHANGED", frozen=True, kw_only=True):
    """A room's picture was set or replaced (`updatedAt`)."""

    room_id: str
    updated_at: datetime


class RoomPictureDeleted(ChatEvent, tag="ROOM_PICTURE_DELETED", frozen=True, kw_only=True):
    """A room's picture was removed."""

    room_id: str


class UserPictureChanged(ChatEvent, tag="USER_PICTURE_CHANGED", frozen=True, kw_only=True):
    """A user's picture was set or replaced (`imageId`, `updatedAt`)."""

    user_id: str
    image_id: str
    updated_at: datetime


class UserPictureDeleted(ChatEvent, tag="USER_PICTURE_DELETED", frozen=True, kw_only=True):
    """A user's picture was removed."""

    user_id: str


class MeetingCreated(ChatEvent, tag="MEETING_CREATED", frozen=True, kw_only=True):
    """A room's meeting (its video call, a Parley conference) was created."""

    meeting_id: str
    room_id: str


class MeetingDeleted(ChatEvent, tag="MEETING_DELETED", frozen=True, kw_only=True):
    """A room's meeting was deleted; its conference is ended."""

    meeting_id: str


# ---------------------------------------------------------------- messages and forwarding (issue 11, i11c)
# Carbonio hands messages to an XMPP server; Parley serves them itself (the issue's decisions).

# Most characters of a message's text (Parley's bound: the seed is silent; a NATS message stays small).
MESSAGE_MAX_LENGTH = 4096
# Messages per page of `GET /rooms/{roomId}/messages` by default, and at most.
MESSAGES_PAGE_DEFAULT = 20
MESSAGES_PAGE_MAX = 100
MessageText = Annotated[str, msgspec.Meta(max_length=MESSAGE_MAX_LENGTH)]
# The paging cursor: a message's sent time in microseconds (zero-padded), a dash, its id.
MESSAGE_ORDER_DIGITS = 17
MessagesCursor = Annotated[
    str,
    msgspec.Meta(
        pattern=rf"^[0-9]{{{MESSAGE_ORDER_DIGITS}}}-{UUID_PATTERN[1:]}",
        description="the previous page's `before`",
    ),
]
PageLimit = Annotated[int, msgspec.Meta(ge=1, le=MESSAGES_PAGE_MAX)]


class MessageFields(ChatBody, frozen=True):
    """`POST /rooms/{roomId}/messages`'s body. Empty (or blank) text is a rule (400), in the domain."""

    text: MessageText
    reply_id: Uuid | None = None


class MessageEdit(ChatBody, frozen=True):
    """`PUT /rooms/{roomId}/messages/{messageId}`'s body."""

    text: MessageText


class ForwardMessage(ChatBody, frozen=True):
    """One item of the seed's ForwardMessagesList. `originalMessage`: the id of a Parley message (its
    text and attachments are forwarded), or any other string, forwarded as the text itself."""

    original_message: Annotated[str, msgspec.Meta(min_length=1, max_length=MESSAGE_MAX_LENGTH)]
    original_message_sent_at: Instant | None = None
    description: Annotated[str, msgspec.Meta(max_length=DESCRIPTION_MAX_LENGTH)] | None = None


ForwardMessagesList = tuple[ForwardMessage, ...]


class SendMessage(ChatBody, frozen=True):
    room_id: Uuid
    text: MessageText
    reply_id: Uuid | None = None


class ListMessages(ChatBody, frozen=True):
    """`GET /rooms/{roomId}/messages?limit=&before=`: `before` is the previous page's opaque cursor."""

    room_id: Uuid
    limit: PageLimit = MESSAGES_PAGE_DEFAULT
    before: MessagesCursor | None = None


class EditMessage(ChatBody, frozen=True):
    room_id: Uuid
    message_id: Uuid
    text: MessageText


class RoomMessageRef(ChatBody, frozen=True):
    room_id: Uuid
    message_id: Uuid


class ForwardMessages(ChatBody, frozen=True):
    room_id: Uuid
    messages: tuple[ForwardMessage, ...]


class Forwarded(ChatPayload, frozen=True):
    """Where a forwarded message came from (the ForwardMessage it was posted from)."""

    original_message: str
    original_message_sent_at: datetime | None = None
    description: str | None = None


class Message(ChatPayload, frozen=True):
    """A message as the API shows it. `attachments`: the ids of the files uploaded with its id as
    `messageId` (and of those a forward copied along)."""

    id: str
    room_id: str
    user_id: str
    text: str
    sent_at: datetime
    reply_id: str | None = None
    edited_at: datetime | None = None
    forwarded: Forwarded | None = None
    attachments: tuple[str, ...] | None = None


class MessagesPage(ChatPayload, frozen=True):
    """One page, newest first; `before`: ask again with it for older ones (absent on the last page)."""

    messages: tuple[Message, ...]
    before: str | None = None


class PushRooms(ChatPayload, frozen=True):
    """The rooms whose messages the caller's push socket reads (member rooms and their workspaces'
    channels): asked by the gateway when a socket opens and when the caller's rooms change."""

    room_ids: tuple[str, ...] = ()


# Events after which the gateway asks `listPushRooms` again for the socket that received them.
PUSH_ROOMS_CHANGE = frozenset({"ROOM_CREATED", "ROOM_DELETED", "ROOM_MEMBER_ADDED", "ROOM_MEMBER_REMOVED"})


class RoomMessageSent(ChatEvent, tag="ROOM_MESSAGE_SENT", frozen=True, kw_only=True):
    """A member sent a message (or a forwarded one) to a room."""

    room_id: str
    message: Message


class RoomMessageEdited(ChatEvent, tag="ROOM_MESSAGE_EDITED", frozen=True, kw_only=True):
    """A message's author replaced its text with `text` at `editedAt`."""

    room_id: str
    message_id: str
    text: str
    edited_at: datetime


class RoomMessageDeleted(ChatEvent, tag="ROOM_MESSAGE_DELETED", frozen=True, kw_only=True):
    """A message was deleted from a room."""

    room_id: str
    message_id: str


AnyChatEvent = (
    RoomCreated
    | RoomUpdated
    | RoomDeleted
    | RoomMemberAdded
    | RoomMemberRemoved
    | RoomOwnerPromoted
    | RoomOwnerDemoted
    | RoomMuted
    | RoomUnmuted
    | RoomHistoryCleared
    | RoomPictureChanged
    | RoomPictureDeleted
    | UserPictureChanged
    | UserPictureDeleted
    | MeetingCreated
    | MeetingDeleted
    | RoomMessageSent
    | RoomMessageEdited
    | RoomMessageDeleted
)

# Every event `type`, e.g. for the subjects `parley.events.chat.<TYPE>`.
CHAT_EVENT_TYPES: tuple[str, ...] = tuple(str(cls.__struct_config__.tag) for cls in get_args(AnyChatEvent))


# ---------------------------------------------------------------- attachments (issue 11)
#
# An attachment's bytes are the object `attachment_object(fileId)` of `subjects.CHAT_FILES_BUCKET`, streamed
# there by the gateway; the chat service keeps its record (`Attachment`, collection `chat_attachments`).
# An upload is two operations around the stream: `prepareAttachment` (the room rules, before the body is
# read; answers the file id) and `insertAttachment` (the rules again, then the record; refused: the object
# is deleted, so nothing is stored).

# Most bytes of one attachment by default (the gateway's PARLEY_CHAT_MAX_ATTACHMENT_BYTES).
MAX_ATTACHMENT_BYTES = 100 * 1024 * 1024
ATTACHMENTS_PAGE_DEFAULT = 10
# A page is one NATS reply: this many items of at most ~6 KB each stay well within it.
ATTACHMENTS_PAGE_MAX = 100
FILE_NAME_MAX_LENGTH = 1024
FILE_DESCRIPTION_MAX_LENGTH = 4096
# `WIDTHxHEIGHT` in digits (Carbonio's check), e.g. `15x20`.
AREA_PATTERN = r"^[0-9]+x[0-9]+$(?!\n)"
_MIME_TOKEN = r"[A-Za-z0-9!#$&^_.+-]+"
# `type/subtype` with optional parameters: it is sent back as the download's Content-Type, so it must be
# a header value HTTP can carry.
MIME_TYPE_PATTERN = (
    rf"^{_MIME_TOKEN}/{_MIME_TOKEN}(?:[ \t]*;[ \t]*{_MIME_TOKEN}=(?:{_MIME_TOKEN}|\"[^\"\\\r\n]*\"))*$(?!\n)"
)
Area = Annotated[str, msgspec.Meta(pattern=AREA_PATTERN, description="WIDTHxHEIGHT, e.g. 15x20")]
MimeType = Annotated[str, msgspec.Meta(pattern=MIME_TYPE_PATTERN, max_length=255)]
FileName = Annotated[str, msgspec.Meta(min_length=1, max_length=FILE_NAME_MAX_LENGTH)]
FileDescription = Annotated[str, msgspec.Meta(max_length=FILE_DESCRIPTION_MAX_LENGTH)]
# A message id as clients send it (Carbonio's are XMPP stanza ids, not UUIDs).
MessageRef = Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
ItemsNumber = Annotated[int, msgspec.Meta(ge=1, le=ATTACHMENTS_PAGE_MAX)]


def attachment_object(file_id: str) -> str:
    """The object name of an attachment's bytes in `subjects.CHAT_FILES_BUCKET`."""
    return f"attachments/{file_id}"


class Id(ChatPayload, frozen=True):
    """The seed's `Id`: what a creation answers (`POST /rooms/{roomId}/attachments`)."""

    id: str


class Attachment(ChatPayload, frozen=True, kw_only=True):
    """The seed's Attachment (AttachmentDto); also the chat service's record of one."""

    id: str
    name: str
    size: int
    mime_type: str
    user_id: str
    room_id: str
    created_at: datetime
    description: str | None = None
    message_id: str | None = None
    reply_id: str | None = None
    area: str | None = None


class AttachmentsPagination(ChatPayload, frozen=True):
    # No default: an empty page still carries its (empty) list.
    attachments: tuple[Attachment, ...]
    # The next page's cursor; absent on the last page.
    filter: str | None = None


class FileRef(ChatBody, frozen=True):
    """getAttachmentInfo (also behind the download), deleteAttachment."""

    file_id: Uuid


class ListAttachments(ChatBody, frozen=True):
    """`GET /rooms/{roomId}/attachments?itemsNumber=&filter=`: newest first; `filter` is the previous
    page's opaque cursor."""

    room_id: Uuid
    items_number: ItemsNumber = ATTACHMENTS_PAGE_DEFAULT
    filter: Annotated[str, msgspec.Meta(max_length=1024)] | None = None


class InsertAttachment(ChatBody, frozen=True, kw_only=True):
    """The record of an attachment whose bytes the gateway has stored as `attachment_object(file_id)`."""

    room_id: Uuid
    # The id `prepareAttachment` answered.
    file_id: Uuid
    name: FileName
    mime_type: MimeType
    # The bytes actually stored (not the Content-Length a client claimed).
    size: Annotated[int, msgspec.Meta(ge=0)]
    description: FileDescription | None = None
    message_id: MessageRef | None = None
    reply_id: MessageRef | None = None
    area: Area | None = None


# ---------------------------------------------------------------- operations


class RoomsPage(ChatPayload, frozen=True):
    """One page of `listRoom`, ordered by room id, within the bus's reply budget (`fit_reply`).

    `after`: ask again with `ListRooms.after` set to it for the rest; absent on the last page.
    """

    items: tuple[Room, ...]
    after: str | None = None


class Operation(NamedTuple):
    """One chat operation on the bus: `parley.<kind>.chat.<name>`, its body and its answer's type.

    `http_result`, when set, is what the HTTP answer is made of instead: the bus answers pages (a
    struct with `items` and `after`, the cursor the body's `after` takes), the gateway answers them all.
    """

    kind: Literal["cmd", "qry"]
    body: type[Any]
    result: Any
    http_result: Any = None


# The seed's operationIds (and Parley's additions) -> subject kind, `Request[body]`, `Accepted[result]`.
# `Empty` answers the operations whose HTTP answer is 204.
OPERATIONS: dict[str, Operation] = {
    # Paged on the bus (a user in many large rooms outgrows a NATS message); one list over HTTP.
    "listRoom": Operation("qry", ListRooms, RoomsPage, http_result=tuple[Room, ...]),
    "getRoom": Operation("qry", RoomRef, Room),
    "insertRoom": Operation("cmd", RoomCreationFields, Room),
    "updateRoom": Operation("cmd", UpdateRoom, Room),
    "deleteRoom": Operation("cmd", RoomRef, Empty),
    "updateWorkspacesRank": Operation("cmd", UpdateWorkspacesRank, Empty),
    "updateChannelsRank": Operation("cmd", UpdateChannelsRank, Empty),
    "muteRoom": Operation("cmd", RoomRef, Empty),
    "unmuteRoom": Operation("cmd", RoomRef, Empty),
    "clearRoomHistory": Operation("cmd", RoomRef, ClearedDate),
    "listRoomMember": Operation("qry", RoomRef, tuple[Member, ...]),
    "insertRoomMember": Operation("cmd", InsertRoomMember, MemberInserted),
    "deleteRoomMember": Operation("cmd", MemberRef, Empty),
    "updateToOwner": Operation("cmd", MemberRef, Empty),
    "deleteOwner": Operation("cmd", MemberRef, Empty),
    "getUsers": Operation("qry", GetUsers, tuple[User, ...]),
    "getUser": Operation("qry", UserRef, User),
    "getCapabilities": Operation("qry", Empty, Capabilities),
    "getMeetingByRoomId": Operation("qry", RoomRef, Meeting),
    # Parley's POST /rooms/{roomId}/meeting (201) and Carbonio's POST /meetings (200): one operation.
    "createMeeting": Operation("cmd", MeetingCreation, Meeting),
    # Asked by the conference service on each join of a room meeting's conference.
    "admit": Operation("qry", AdmissionQuery, Admitted),
    # Pictures and previews (issue 11, i11b).
    "checkRoomPicture": Operation("qry", RoomPictureCheck, UploadAllowance),
    "updateRoomPicture": Operation("cmd", RoomPictureUpload, Empty),
    "getRoomPicture": Operation("qry", RoomRef, StoredFile),
    "deleteRoomPicture": Operation("cmd", RoomRef, Empty),
    "checkUserPicture": Operation("qry", UserPictureCheck, UploadAllowance),
    "updateUserPicture": Operation("cmd", UserPictureUpload, Empty),
    "getUserPicture": Operation("qry", UserRef, StoredFile),
    "deleteUserPicture": Operation("cmd", UserRef, Empty),
    "getImagePreview": Operation("qry", ImagePreviewQuery, StoredFile),
    "getImageThumbnail": Operation("qry", ImagePreviewQuery, StoredFile),
    "getPdfPreview": Operation("qry", PdfPreviewQuery, StoredFile),
    "getPdfThumbnail": Operation("qry", ImagePreviewQuery, StoredFile),
    # Messages and forwarding (issue 11, i11c).
    "sendMessage": Operation("cmd", SendMessage, Message),
    "listMessages": Operation("qry", ListMessages, MessagesPage),
    "editMessage": Operation("cmd", EditMessage, Message),
    "deleteMessage": Operation("cmd", RoomMessageRef, Empty),
    "forwardMessages": Operation("cmd", ForwardMessages, Empty),
    # Asked by the gateway for a push socket (no HTTP route).
    "listPushRooms": Operation("qry", Empty, PushRooms),
    # Attachments (issue 11). prepareAttachment: the room rules before an upload's body is read, and
    # the new file's id; insertAttachment: the record once the bytes are stored. The download
    # (`GET /attachments/{fileId}/download`) asks getAttachmentInfo, then streams the object.
    "prepareAttachment": Operation("qry", RoomRef, Id),
    "insertAttachment": Operation("cmd", InsertAttachment, Id),
    "listRoomAttachmentInfo": Operation("qry", ListAttachments, AttachmentsPagination),
    "getAttachmentInfo": Operation("qry", FileRef, Attachment),
    "deleteAttachment": Operation("cmd", FileRef, Empty),
}
