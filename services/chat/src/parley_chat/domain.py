"""The chat rules: rooms, members, owners, ranks, mute, clear, users and room meetings. Pure: no I/O.

The rules are the real backend's (`shared/notes/chat-carbonio.md`, facts read from
zextras/carbonio-ws-collaboration-ce at API 1.3.1): every check in the note's order, with its status, the
first failure wins. Parley's departures: every room belongs to an organization and another organization's
room (or user) is unknown (404).

Each `decide_*` function takes the current state (plain values the handler loaded) and returns a
`Decision`: what to write, what to delete (cascades spelled out: a workspace's channels, every user's
settings and ranks of a deleted room, its meeting), the conferences to end, and the events with the user
ids each must be pushed to. The handler commits a decision in one write. Reads (`list_rooms`, `get_room`,
...) return the API's views. Time and fresh ids come in through `Context`.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Generic, TypeVar

import msgspec
from parley_common.contracts import chat as api
from parley_common.errors import Conflict, InvalidCommand, NotAllowed, NotFound

R = TypeVar("R")

MAX_GROUP_MEMBERS = api.MAX_GROUP_MEMBERS
MAX_USER_IDS = api.MAX_USER_IDS

CAPABILITIES = api.Capabilities(
    can_see_message_reads=True,
    can_see_users_presence=True,
    can_video_call=True,
    can_video_call_record=True,
    can_use_virtual_background=True,
    edit_message_time_limit_in_minutes=10,
    delete_message_time_limit_in_minutes=10,
    max_group_members=MAX_GROUP_MEMBERS,
    max_room_image_size_in_kb=512,
    max_user_image_size_in_kb=512,
)

# Room types whose membership is managed member by member (one_to_one is fixed, a channel has none).
_MEMBERSHIP_FIXED = frozenset({"one_to_one", "channel"})


# ---------------------------------------------------------------- state


class RoomMember(msgspec.Struct, frozen=True):
    user_id: str
    owner: bool = False


class Room(msgspec.Struct, frozen=True, kw_only=True):
    """A room and its members. A channel has no members of its own: its workspace's count."""

    id: str
    organization_id: str
    type: api.RoomType
    created_at: datetime
    updated_at: datetime
    name: str | None = None
    description: str | None = None
    # A channel's workspace.
    parent_id: str | None = None
    # A channel's place in its workspace (a workspace's rank is per user: `WorkspaceRank`).
    rank: int | None = None
    meeting_id: str | None = None
    picture_updated_at: datetime | None = None
    # The picture's real type (decoded, not declared), set with `picture_updated_at`.
    picture_type: str | None = None
    members: tuple[RoomMember, ...] = ()

    def member(self, user_id: str) -> RoomMember | None:
        return next((m for m in self.members if m.user_id == user_id), None)

    @property
    def member_ids(self) -> tuple[str, ...]:
        return tuple(m.user_id for m in self.members)


class UserSettings(msgspec.Struct, frozen=True, kw_only=True):
    """One user's preferences for one room."""

    room_id: str
    user_id: str
    muted: bool = False
    cleared_at: datetime | None = None


class WorkspaceRank(msgspec.Struct, frozen=True):
    """Where one user places one workspace in their list (1..n)."""

    user_id: str
    workspace_id: str
    rank: int


class SettingsKey(msgspec.Struct, frozen=True):
    room_id: str
    user_id: str


class RankKey(msgspec.Struct, frozen=True):
    user_id: str
    workspace_id: str


class ConferenceMember(msgspec.Struct, frozen=True):
    """A user to drop from a conference (a room meeting they may no longer be in)."""

    conference_id: str
    user_id: str


class RoomMeeting(msgspec.Struct, frozen=True, kw_only=True):
    """A room's meeting. Its id is the id of the Parley conference that runs it."""

    id: str
    organization_id: str
    room_id: str
    name: str
    meeting_type: api.MeetingType
    created_at: datetime


class StoredMessage(msgspec.Struct, frozen=True, kw_only=True):
    """A message of a room, as stored (the API's `Message` plus its organization)."""

    id: str
    organization_id: str
    room_id: str
    user_id: str
    text: str
    sent_at: datetime
    reply_id: str | None = None
    edited_at: datetime | None = None
    forwarded: api.Forwarded | None = None


class DirectoryUser(msgspec.Struct, frozen=True, kw_only=True):
    """A user as the gateway last reported them (known from their first authenticated request)."""

    organization_id: str
    id: str
    name: str
    email: str
    type: api.UserType = "internal"
    seen_at: datetime
    picture_updated_at: datetime | None = None
    # The picture's real type (decoded, not declared), set with `picture_updated_at`.
    picture_type: str | None = None
    status_message: str | None = None


class UserRooms(msgspec.Struct, frozen=True, kw_only=True):
    """Everything `GET /rooms` shows a user, loaded at once (no query per room).

    `rooms`: the rooms the user is a member of, plus the channels of those that are workspaces (with
    their members); `settings`: the user's settings of any of them; `workspace_ranks`: the user's ranks.
    """

    rooms: tuple[Room, ...] = ()
    settings: tuple[UserSettings, ...] = ()
    workspace_ranks: tuple[WorkspaceRank, ...] = ()


class Caller(msgspec.Struct, frozen=True):
    organization_id: str
    user_id: str


@dataclass(frozen=True)
class Context:
    """What a decision needs from outside the rules: the time and fresh ids (events, rooms, meetings)."""

    now: datetime
    new_id: Callable[[], str]


# ---------------------------------------------------------------- decisions


class Notice(msgspec.Struct, frozen=True):
    """An event and the users it is pushed to (in this order); it also goes once to the PARLEY_CHAT stream.

    `room`: pushed once on that room's subject, which every member's socket reads, rather than a copy per
    recipient (a message to 128 members is one stored copy, not 128).
    """

    event: api.AnyChatEvent
    recipients: tuple[str, ...]
    room: str | None = None


class Decision(msgspec.Struct, Generic[R], frozen=True, kw_only=True):
    """What a command changes, committed in one write, and what it answers (`result`)."""

    result: R
    # Rooms written whole (members inside).
    put_rooms: tuple[Room, ...] = ()
    # Rooms deleted with their memberships.
    delete_rooms: tuple[str, ...] = ()
    put_settings: tuple[UserSettings, ...] = ()
    # One user's settings of one room.
    delete_settings: tuple[SettingsKey, ...] = ()
    # Every user's settings of these rooms.
    delete_settings_of_rooms: tuple[str, ...] = ()
    put_workspace_ranks: tuple[WorkspaceRank, ...] = ()
    # One user's rank of one workspace.
    delete_workspace_ranks: tuple[RankKey, ...] = ()
    # Every user's rank of these workspaces.
    delete_ranks_of_workspaces: tuple[str, ...] = ()
    put_meetings: tuple[RoomMeeting, ...] = ()
    delete_meetings: tuple[str, ...] = ()
    # Directory entries written whole (a user's picture).
    put_users: tuple[DirectoryUser, ...] = ()
    put_messages: tuple[StoredMessage, ...] = ()
    delete_messages: tuple[str, ...] = ()
    # Every message of these rooms.
    delete_messages_of_rooms: tuple[str, ...] = ()
    # Attachment records written / deleted by file id (a deleted room's go with it: the repository).
    put_attachments: tuple[api.Attachment, ...] = ()
    delete_attachments: tuple[str, ...] = ()
    # Objects of the chat files bucket no committed state refers to any more (an outbox effect).
    delete_objects: tuple[str, ...] = ()
    # Effects after the commit (retried until done): conferences to end, users to drop from one.
    end_conferences: tuple[str, ...] = ()
    remove_from_conferences: tuple[ConferenceMember, ...] = ()
    notices: tuple[Notice, ...] = ()

    @property
    def changed(self) -> bool:
        return any(
            (
                self.put_rooms,
                self.delete_rooms,
                self.put_settings,
                self.delete_settings,
                self.delete_settings_of_rooms,
                self.put_workspace_ranks,
                self.delete_workspace_ranks,
                self.delete_ranks_of_workspaces,
                self.put_meetings,
                self.delete_meetings,
                self.put_users,
                self.put_messages,
                self.delete_messages,
                self.delete_messages_of_rooms,
                self.put_attachments,
                self.delete_attachments,
            )
        )


def merged(decisions: Sequence[Decision[Any]]) -> Decision[None]:
    """Several decisions as one commit (group commit), each list in decision order. Only for decisions
    independent of each other (none reads or undoes what another writes): room messages."""
    fields = {
        name: tuple(item for decision in decisions for item in getattr(decision, name))
        for name in Decision.__struct_fields__
        if name != "result"
    }
    return Decision(result=None, **fields)


# ---------------------------------------------------------------- access


def _found(room: Room | None, caller: Caller, room_id: str) -> Room:
    """A room of the caller's organization; anything else is unknown."""
    if room is None or room.organization_id != caller.organization_id:
        raise NotFound(f"room {room_id} not found")
    return room


def effective_members(room: Room, workspace: Room | None = None) -> tuple[RoomMember, ...]:
    """A room's members; a channel's are its workspace's (`workspace` = the channel's parent)."""
    if room.type == "channel":
        if workspace is None or workspace.id != room.parent_id:
            return ()
        return workspace.members
    return room.members


def _member(members: Iterable[RoomMember], user_id: str) -> RoomMember | None:
    return next((m for m in members if m.user_id == user_id), None)


def access(
    room: Room | None, caller: Caller, room_id: str, *, workspace: Room | None = None, owner: bool = False
) -> Room:
    """The room access rule, in the note's order: unknown 404, not a member 403, not an owner 403."""
    found = _found(room, caller, room_id)
    me = _member(effective_members(found, workspace), caller.user_id)
    if me is None:
        raise NotAllowed(f"user {caller.user_id} is not a member of room {room_id}")
    if owner and not me.owner:
        raise NotAllowed(f"user {caller.user_id} is not an owner of room {room_id}")
    return found


def _recipients(members: Iterable[RoomMember]) -> tuple[str, ...]:
    return tuple(m.user_id for m in members)


class _Events:
    """Builds events with fresh ids and the decision's time, in one organization."""

    def __init__(self, ctx: Context, organization_id: str) -> None:
        self._ctx = ctx
        self._organization_id = organization_id
        self.notices: list[Notice] = []

    def add(
        self,
        event_type: type[api.ChatEvent],
        recipients: Iterable[str],
        *,
        to_room: str | None = None,
        **fields: object,
    ) -> None:
        event = event_type(
            id=self._ctx.new_id(), sent_date=self._ctx.now, organization_id=self._organization_id, **fields
        )
        notice = Notice(event=event, recipients=tuple(recipients), room=to_room)  # type: ignore[arg-type]
        self.notices.append(notice)


# ---------------------------------------------------------------- views


def _member_views(members: Iterable[RoomMember]) -> tuple[api.Member, ...]:
    return tuple(api.Member(user_id=m.user_id, owner=m.owner) for m in members)


def _settings_view(settings: UserSettings | None) -> api.RoomUserSettings:
    if settings is None:
        return api.RoomUserSettings(muted=False)
    return api.RoomUserSettings(muted=settings.muted, cleared_at=settings.cleared_at)


def room_view(
    room: Room,
    *,
    members: Sequence[RoomMember] | None = None,
    settings: api.RoomUserSettings | None = None,
    rank: int | None = None,
    children: Sequence[api.Room] | None = None,
) -> api.Room:
    """A room as the API shows it; each optional part is left out of the JSON when None."""
    return api.Room(
        id=room.id,
        type=room.type,
        created_at=room.created_at,
        updated_at=room.updated_at,
        name=room.name,
        description=room.description,
        parent_id=room.parent_id,
        rank=rank if room.type == "workspace" else room.rank,
        meeting_id=room.meeting_id,
        picture_updated_at=room.picture_updated_at,
        children=tuple(children) if children is not None else None,
        members=_member_views(members) if members is not None else None,
        user_settings=settings,
    )


def _channels_of(workspace: Room, rooms: Iterable[Room]) -> list[Room]:
    channels = [r for r in rooms if r.type == "channel" and r.parent_id == workspace.id]
    # Channels by their place in the workspace; unranked ones last, in a stable order.
    return sorted(channels, key=lambda c: (c.rank is None, c.rank or 0, c.created_at, c.id))


def list_rooms(
    caller: Caller, user_rooms: UserRooms, extra_fields: Collection[str] = ()
) -> tuple[api.Room, ...]:
    """`GET /rooms`: the caller's rooms; channels only inside their workspace's `children`.

    `members` only with extraFields=members (a channel's are its workspace's), `userSettings` only with
    extraFields=settings, never on a workspace; a workspace's `rank` is the caller's own, a channel's is
    its place in the workspace.
    """
    with_members = "members" in extra_fields
    with_settings = "settings" in extra_fields
    settings = {s.room_id: s for s in user_rooms.settings if s.user_id == caller.user_id}
    ranks = {r.workspace_id: r.rank for r in user_rooms.workspace_ranks if r.user_id == caller.user_id}
    mine = [
        room
        for room in user_rooms.rooms
        if room.organization_id == caller.organization_id
        and room.type != "channel"
        and room.member(caller.user_id) is not None
    ]
    views: list[api.Room] = []
    for room in mine:
        if room.type != "workspace":
            views.append(
                room_view(
                    room,
                    members=room.members if with_members else None,
                    settings=_settings_view(settings.get(room.id)) if with_settings else None,
                )
            )
            continue
        children = [
            room_view(
                channel,
                members=room.members if with_members else None,
                settings=_settings_view(settings.get(channel.id)) if with_settings else None,
            )
            for channel in _channels_of(room, user_rooms.rooms)
        ]
        views.append(
            room_view(
                room,
                members=room.members if with_members else None,
                rank=ranks.get(room.id),
                children=children,
            )
        )
    return tuple(views)


def get_room(
    room: Room | None,
    caller: Caller,
    room_id: str,
    *,
    workspace: Room | None = None,
    channels: Sequence[Room] = (),
    settings: Sequence[UserSettings] = (),
    workspace_rank: int | None = None,
) -> api.Room:
    """`GET /rooms/{id}`: 404/403 (member); always with members and the caller's userSettings.

    A channel shows its workspace's members (`workspace`); a workspace shows its `channels` as children
    (rank, the caller's userSettings) and the caller's own rank.
    """
    found = access(room, caller, room_id, workspace=workspace)
    mine = {s.room_id: s for s in settings if s.user_id == caller.user_id}
    children = None
    if found.type == "workspace":
        children = [
            room_view(channel, settings=_settings_view(mine.get(channel.id)))
            for channel in _channels_of(found, channels)
        ]
    return room_view(
        found,
        members=effective_members(found, workspace),
        settings=_settings_view(mine.get(found.id)),
        rank=workspace_rank,
        children=children,
    )


def list_members(
    room: Room | None, caller: Caller, room_id: str, *, workspace: Room | None = None
) -> tuple[api.Member, ...]:
    """`GET /rooms/{id}/members`: 404/403 (member); a channel answers its workspace's members."""
    found = access(room, caller, room_id, workspace=workspace)
    return _member_views(effective_members(found, workspace))


# ---------------------------------------------------------------- create a room


def _validate_fields(name: str | None, description: str | None) -> None:
    if name is not None and not 1 <= len(name) <= api.NAME_MAX_LENGTH:
        raise InvalidCommand(f"name must be 1 to {api.NAME_MAX_LENGTH} characters")
    if description is not None and len(description) > api.DESCRIPTION_MAX_LENGTH:
        raise InvalidCommand(f"description must be at most {api.DESCRIPTION_MAX_LENGTH} characters")


def decide_insert_room(
    caller: Caller,
    body: api.RoomCreationFields,
    ctx: Context,
    *,
    known_users: Collection[str],
    one_to_one: Room | None = None,
    parent: Room | None = None,
    parent_channels: Sequence[Room] = (),
    highest_workspace_ranks: Mapping[str, int] | None = None,
    max_group_members: int = MAX_GROUP_MEMBERS,
) -> Decision[api.Room]:
    """`POST /rooms`, the note's checks in order (first failure wins).

    `known_users`: the ids the caller's organization's directory knows among `membersIds`;
    `one_to_one`: an existing one_to_one of the same pair (either direction), if any; `parent`: the
    room `parentId` names and `parent_channels` its channels; `highest_workspace_ranks`: each member's
    highest workspace rank (for a workspace).
    """
    room_type = body.room_type
    members_ids = body.members_ids
    # 1. validation, then the name/description rules of the type.
    _validate_fields(body.name, body.description)
    if room_type == "one_to_one" and (body.name is not None or body.description is not None):
        raise InvalidCommand("a one_to_one room has no name and no description")
    if room_type in ("group", "temporary") and body.name is None:
        raise InvalidCommand(f"a {room_type} room needs a name")
    # 2. the members list and parentId.
    if len(set(members_ids)) != len(members_ids):
        raise InvalidCommand("membersIds holds duplicates")
    if caller.user_id in members_ids:
        raise InvalidCommand("membersIds must not hold the requester (who is added as owner)")
    if body.parent_id is not None and room_type != "channel":
        raise InvalidCommand("parentId is only for a channel")
    # 3. the rules of each type.
    if room_type == "one_to_one":
        if len(members_ids) != 1:
            raise InvalidCommand("a one_to_one room needs exactly one other member")
        if one_to_one is not None and one_to_one.organization_id == caller.organization_id:
            raise Conflict(f"a one_to_one room with {members_ids[0]} already exists: {one_to_one.id}")
    elif room_type in ("group", "workspace"):
        if not 2 <= len(members_ids) <= max_group_members:
            raise InvalidCommand(f"a {room_type} room needs 2 to {max_group_members} other members")
    elif room_type == "channel":
        if members_ids:
            raise InvalidCommand("a channel takes no members: its workspace's members are its members")
        if body.parent_id is None:
            raise InvalidCommand("a channel needs parentId, its workspace")
        parent = access(parent, caller, body.parent_id, owner=True)
        if parent.type != "workspace":
            raise InvalidCommand(f"parentId {body.parent_id} is not a workspace")
    # 4. every member must be known to the directory.
    for user_id in members_ids:
        if user_id not in known_users:
            raise NotFound(f"user {user_id} not found")

    owners_too = room_type == "one_to_one"
    members = (
        RoomMember(caller.user_id, owner=True),
        *(RoomMember(user_id, owner=owners_too) for user_id in members_ids),
    )
    room = Room(
        id=ctx.new_id(),
        organization_id=caller.organization_id,
        type=room_type,
        created_at=ctx.now,
        updated_at=ctx.now,
        name=body.name,
        description=body.description,
        parent_id=body.parent_id if room_type == "channel" else None,
        members=() if room_type == "channel" else members,
    )
    ranks: tuple[WorkspaceRank, ...] = ()
    caller_rank = None
    if room_type == "channel":
        assert parent is not None  # checked above
        highest = max((c.rank or 0 for c in parent_channels if c.parent_id == parent.id), default=0)
        room = msgspec.structs.replace(room, rank=highest + 1)
        members = parent.members
    elif room_type == "workspace":
        highest_ranks = highest_workspace_ranks or {}
        ranks = tuple(WorkspaceRank(m.user_id, room.id, highest_ranks.get(m.user_id, 0) + 1) for m in members)
        caller_rank = ranks[0].rank
    events = _Events(ctx, caller.organization_id)
    events.add(api.RoomCreated, _recipients(members), room_id=room.id)
    view = room_view(
        room,
        members=members,
        settings=api.RoomUserSettings(muted=False),
        rank=caller_rank,
        children=() if room_type == "workspace" else None,
    )
    return Decision(result=view, put_rooms=(room,), put_workspace_ranks=ranks, notices=tuple(events.notices))


# ---------------------------------------------------------------- update, delete


def decide_update_room(
    room: Room | None, caller: Caller, body: api.UpdateRoom, ctx: Context, *, workspace: Room | None = None
) -> Decision[api.Room]:
    """`PUT /rooms/{id}`: 404/403 (member), one_to_one 400, a group with nothing to set 400, not owner 403.

    Only given and changed fields are written; ROOM_UPDATED {roomId, name, description} goes to the
    members only when something changed. Answers the room without members and userSettings.
    """
    _validate_fields(body.name, body.description)
    found = access(room, caller, body.room_id, workspace=workspace)
    if found.type == "one_to_one":
        raise InvalidCommand("a one_to_one room cannot be updated")
    if found.type == "group" and body.name is None and body.description is None:
        raise InvalidCommand("give a name or a description to update")
    access(found, caller, body.room_id, workspace=workspace, owner=True)
    changes: dict[str, object] = {}
    if body.name is not None and body.name != found.name:
        changes["name"] = body.name
    if body.description is not None and body.description != found.description:
        changes["description"] = body.description
    if not changes:
        return Decision(result=room_view(found))
    updated = msgspec.structs.replace(found, updated_at=ctx.now, **changes)
    events = _Events(ctx, caller.organization_id)
    events.add(
        api.RoomUpdated,
        _recipients(effective_members(found, workspace)),
        room_id=found.id,
        name=updated.name,
        description=updated.description,
    )
    return Decision(result=room_view(updated), put_rooms=(updated,), notices=tuple(events.notices))


def _deletion(
    room: Room,
    ctx: Context,
    *,
    channels: Sequence[Room],
    recipients: tuple[str, ...],
) -> Decision[None]:
    """Delete a room with everything hanging from it: a workspace's channels first, then the room.

    Its pictures' bytes go with it (its files' and their previews': the unit of work, `files_of_rooms`).

    For each: its meeting (MEETING_DELETED, the conference ended), every user's settings, the room with
    its memberships (ROOM_DELETED); a workspace's ranks. Events go to `recipients`.
    """
    events = _Events(ctx, room.organization_id)
    doomed = [c for c in _channels_of(room, channels)] if room.type == "workspace" else []
    doomed.append(room)
    meetings: list[str] = []
    for target in doomed:
        if target.meeting_id is not None:
            meetings.append(target.meeting_id)
            events.add(api.MeetingDeleted, recipients, meeting_id=target.meeting_id)
        events.add(api.RoomDeleted, recipients, room_id=target.id)
    ids = tuple(target.id for target in doomed)
    return Decision(
        result=None,
        delete_objects=(*(room_picture_object(t.id) for t in doomed if t.picture_updated_at is not None),),
        delete_rooms=ids,
        delete_settings_of_rooms=ids,
        delete_ranks_of_workspaces=(room.id,) if room.type == "workspace" else (),
        delete_meetings=tuple(meetings),
        delete_messages_of_rooms=ids,
        end_conferences=tuple(meetings),
        notices=tuple(events.notices),
    )


def decide_delete_room(
    room: Room | None,
    caller: Caller,
    room_id: str,
    ctx: Context,
    *,
    workspace: Room | None = None,
    channels: Sequence[Room] = (),
) -> Decision[None]:
    """`DELETE /rooms/{id}`: unknown 404, not a member 403, one_to_one 403 (even for its owners), not
    owner 403. A workspace owner may delete a channel (a channel's owners are its workspace's)."""
    found = access(room, caller, room_id, workspace=workspace)
    if found.type == "one_to_one":
        raise NotAllowed("a one_to_one room cannot be deleted")
    access(found, caller, room_id, workspace=workspace, owner=True)
    return _deletion(
        found,
        ctx,
        channels=channels,
        recipients=_recipients(effective_members(found, workspace)),
    )


# ---------------------------------------------------------------- mute, clear


def decide_mute(
    room: Room | None,
    caller: Caller,
    room_id: str,
    settings: UserSettings | None,
    ctx: Context,
    *,
    muted: bool,
    workspace: Room | None = None,
) -> Decision[None]:
    """`PUT|DELETE /rooms/{id}/mute`: 404/403 (member), a workspace 400. Per caller and idempotent:
    ROOM_MUTED / ROOM_UNMUTED goes to the caller only, and only when the state changed."""
    found = access(room, caller, room_id, workspace=workspace)
    if found.type == "workspace":
        raise InvalidCommand("a workspace cannot be muted")
    current = settings if settings is not None and settings.user_id == caller.user_id else None
    if (current.muted if current else False) == muted:
        return Decision(result=None)
    new = (
        msgspec.structs.replace(current, muted=muted)
        if current is not None
        else UserSettings(room_id=found.id, user_id=caller.user_id, muted=muted)
    )
    events = _Events(ctx, caller.organization_id)
    events.add(api.RoomMuted if muted else api.RoomUnmuted, (caller.user_id,), room_id=found.id)
    return Decision(result=None, put_settings=(new,), notices=tuple(events.notices))


def decide_clear(
    room: Room | None,
    caller: Caller,
    room_id: str,
    settings: UserSettings | None,
    ctx: Context,
    *,
    workspace: Room | None = None,
) -> Decision[api.ClearedDate]:
    """`PUT /rooms/{id}/clear`: 404/403 (member), any room type; every call moves clearedAt to now;
    ROOM_HISTORY_CLEARED {roomId, clearedAt} to the caller only."""
    found = access(room, caller, room_id, workspace=workspace)
    current = settings if settings is not None and settings.user_id == caller.user_id else None
    new = (
        msgspec.structs.replace(current, cleared_at=ctx.now)
        if current is not None
        else UserSettings(room_id=found.id, user_id=caller.user_id, cleared_at=ctx.now)
    )
    events = _Events(ctx, caller.organization_id)
    events.add(api.RoomHistoryCleared, (caller.user_id,), room_id=found.id, cleared_at=ctx.now)
    return Decision(
        result=api.ClearedDate(cleared_at=ctx.now), put_settings=(new,), notices=tuple(events.notices)
    )


# ---------------------------------------------------------------- ranks


def _check_progressive(ranks: Sequence[api.RoomRank]) -> None:
    if sorted(r.rank for r in ranks) != list(range(1, len(ranks) + 1)):
        raise InvalidCommand("ranks must be 1 to n, each once")


def _check_unique_rooms(ranks: Sequence[api.RoomRank]) -> None:
    if len({r.room_id for r in ranks}) != len(ranks):
        raise InvalidCommand("a roomId is listed twice")


def decide_workspaces_rank(
    caller: Caller, body: api.UpdateWorkspacesRank, workspaces: Sequence[Room]
) -> Decision[None]:
    """`PUT /rooms/workspaces/rank`: duplicated roomId 400; ranks not 1..n 400; n not the caller's
    workspace count 400; a roomId not one of the caller's workspaces 400. No event.

    `workspaces`: the workspaces the caller is a member of.
    """
    ranks = body.ranks
    _check_unique_rooms(ranks)
    _check_progressive(ranks)
    mine = {
        w.id
        for w in workspaces
        if w.type == "workspace"
        and w.organization_id == caller.organization_id
        and w.member(caller.user_id) is not None
    }
    if len(ranks) != len(mine):
        raise InvalidCommand(f"rank all {len(mine)} of your workspaces, no more, no less")
    for rank in ranks:
        if rank.room_id not in mine:
            raise InvalidCommand(f"room {rank.room_id} is not one of your workspaces")
    return Decision(
        result=None,
        put_workspace_ranks=tuple(WorkspaceRank(caller.user_id, r.room_id, r.rank) for r in ranks),
    )


def decide_channels_rank(
    workspace: Room | None, caller: Caller, body: api.UpdateChannelsRank, channels: Sequence[Room]
) -> Decision[None]:
    """`PUT /rooms/workspaces/{id}/channels/rank`: ranks not 1..n 400 and a duplicated channel 400,
    both before the workspace is looked up; then 404/403/owner 403; a count that is not the workspace's
    channel count 400; a channel left out 400. The room's type is not checked. No event."""
    ranks = body.ranks
    _check_progressive(ranks)
    _check_unique_rooms(ranks)
    found = access(workspace, caller, body.workspace_id, owner=True)
    own = {c.id: c for c in channels if c.type == "channel" and c.parent_id == found.id}
    if len(ranks) != len(own):
        raise InvalidCommand(f"rank all {len(own)} channels of the workspace, no more, no less")
    for rank in ranks:
        if rank.room_id not in own:
            raise InvalidCommand(f"room {rank.room_id} is not a channel of workspace {found.id}")
    return Decision(
        result=None,
        put_rooms=tuple(msgspec.structs.replace(own[r.room_id], rank=r.rank) for r in ranks),
    )


# ---------------------------------------------------------------- members


def decide_insert_member(
    room: Room | None,
    caller: Caller,
    body: api.InsertRoomMember,
    ctx: Context,
    *,
    user: DirectoryUser | None,
    workspace: Room | None = None,
    highest_workspace_rank: int = 0,
    max_group_members: int = MAX_GROUP_MEMBERS,
) -> Decision[api.MemberInserted]:
    """`POST /rooms/{id}/members`, in order: target unknown 404 (before the room); 404/403/owner 403;
    one_to_one or channel 400; a full group 400 (all members counted; only groups are capped); already
    a member 400. `historyCleared` sets the newcomer's clearedAt; in a workspace the newcomer's rank is
    their highest + 1. ROOM_MEMBER_ADDED to every member, the newcomer included."""
    if user is None or user.organization_id != caller.organization_id or user.id != body.user_id:
        raise NotFound(f"user {body.user_id} not found")
    found = access(room, caller, body.room_id, workspace=workspace, owner=True)
    if found.type in _MEMBERSHIP_FIXED:
        raise InvalidCommand(f"members cannot be added to a {found.type} room")
    if found.type == "group" and len(found.members) >= max_group_members:
        raise InvalidCommand(f"a group holds at most {max_group_members} members")
    if found.member(body.user_id) is not None:
        raise InvalidCommand(f"user {body.user_id} is already a member of room {found.id}")
    newcomer = RoomMember(body.user_id, owner=body.owner)
    updated = msgspec.structs.replace(found, members=(*found.members, newcomer))
    settings: tuple[UserSettings, ...] = ()
    cleared_at = None
    if body.history_cleared:
        cleared_at = ctx.now
        settings = (UserSettings(room_id=found.id, user_id=body.user_id, cleared_at=ctx.now),)
    ranks: tuple[WorkspaceRank, ...] = ()
    if found.type == "workspace":
        ranks = (WorkspaceRank(body.user_id, found.id, highest_workspace_rank + 1),)
    events = _Events(ctx, caller.organization_id)
    events.add(
        api.RoomMemberAdded,
        _recipients(updated.members),
        room_id=found.id,
        user_id=body.user_id,
        is_owner=body.owner,
    )
    return Decision(
        result=api.MemberInserted(user_id=body.user_id, owner=body.owner, cleared_at=cleared_at),
        put_rooms=(updated,),
        put_settings=settings,
        put_workspace_ranks=ranks,
        notices=tuple(events.notices),
    )


def decide_remove_member(
    room: Room | None,
    caller: Caller,
    body: api.MemberRef,
    ctx: Context,
    *,
    workspace: Room | None = None,
    channels: Sequence[Room] = (),
) -> Decision[None]:
    """`DELETE /rooms/{id}/members/{userId}`, in order: 404; caller not a member 403; removing someone
    else needs an owner 403; one_to_one or channel 400; target not a member 404; the only owner leaving
    while others remain 400.

    ROOM_MEMBER_REMOVED to every member, the removed one included. The leaver's settings (and, for a
    workspace, rank and channel settings) go, and they are dropped from the room's meeting. The last
    member leaving deletes the room as DELETE /rooms does (`channels`: a workspace's).
    """
    found = access(room, caller, body.room_id, workspace=workspace)
    if body.user_id != caller.user_id:
        access(found, caller, body.room_id, workspace=workspace, owner=True)
    if found.type in _MEMBERSHIP_FIXED:
        raise InvalidCommand(f"members cannot be removed from a {found.type} room")
    target = found.member(body.user_id)
    if target is None:
        raise NotFound(f"user {body.user_id} is not a member of room {found.id}")
    others = tuple(m for m in found.members if m.user_id != body.user_id)
    if target.owner and others and not any(m.owner for m in others):
        raise InvalidCommand("the only owner cannot leave while other members remain: promote one first")

    events = _Events(ctx, caller.organization_id)
    events.add(api.RoomMemberRemoved, _recipients(found.members), room_id=found.id, user_id=body.user_id)
    own_channels = _channels_of(found, channels) if found.type == "workspace" else []
    if not others:
        # The last member: the room goes with everything hanging from it; they are told it is gone.
        deletion = _deletion(found, ctx, channels=channels, recipients=(body.user_id,))
        return msgspec.structs.replace(deletion, notices=(*events.notices, *deletion.notices))
    updated = msgspec.structs.replace(found, members=others)
    meetings = [r.meeting_id for r in (found, *own_channels) if r.meeting_id is not None]
    return Decision(
        result=None,
        put_rooms=(updated,),
        delete_settings=tuple(SettingsKey(r.id, body.user_id) for r in (found, *own_channels)),
        delete_workspace_ranks=(RankKey(body.user_id, found.id),) if found.type == "workspace" else (),
        remove_from_conferences=tuple(ConferenceMember(m, body.user_id) for m in meetings),
        notices=tuple(events.notices),
    )


def decide_owner(
    room: Room | None,
    caller: Caller,
    body: api.MemberRef,
    ctx: Context,
    *,
    promote: bool,
    workspace: Room | None = None,
) -> Decision[None]:
    """`PUT|DELETE /rooms/{id}/members/{userId}/owner`: the caller themself 400 (before the room);
    404/403/owner 403; one_to_one or channel 400; target not a member 403. Not idempotence-checked:
    every call sends ROOM_OWNER_PROMOTED / ROOM_OWNER_DEMOTED to every member. Demoting the last owner
    is allowed."""
    if body.user_id == caller.user_id:
        raise InvalidCommand("you cannot change your own owner role")
    found = access(room, caller, body.room_id, workspace=workspace, owner=True)
    if found.type in _MEMBERSHIP_FIXED:
        raise InvalidCommand(f"owners of a {found.type} room cannot be changed")
    if found.member(body.user_id) is None:
        raise NotAllowed(f"user {body.user_id} is not a member of room {found.id}")
    updated = msgspec.structs.replace(
        found,
        members=tuple(
            RoomMember(m.user_id, owner=promote) if m.user_id == body.user_id else m for m in found.members
        ),
    )
    events = _Events(ctx, caller.organization_id)
    events.add(
        api.RoomOwnerPromoted if promote else api.RoomOwnerDemoted,
        _recipients(found.members),
        room_id=found.id,
        user_id=body.user_id,
    )
    return Decision(result=None, put_rooms=(updated,), notices=tuple(events.notices))


# ---------------------------------------------------------------- users


def user_view(user: DirectoryUser) -> api.User:
    return api.User(
        id=user.id,
        email=user.email,
        name=user.name,
        type=user.type,
        picture_updated_at=user.picture_updated_at,
        status_message=user.status_message,
    )


def get_user(user: DirectoryUser | None, caller: Caller, user_id: str) -> api.User:
    """`GET /users/{id}`: a user never seen, or one of another organization, is unknown (404)."""
    if user is None or user.organization_id != caller.organization_id or user.id != user_id:
        raise NotFound(f"user {user_id} not found")
    return user_view(user)


def check_user_ids(user_ids: Sequence[str]) -> tuple[str, ...]:
    """`GET /users?userIds=`: 1 to 10 ids (400 otherwise); a repeated id is asked once."""
    if not user_ids:
        raise InvalidCommand("userIds is required")
    if len(user_ids) > MAX_USER_IDS:
        raise InvalidCommand(f"at most {MAX_USER_IDS} userIds")
    return tuple(dict.fromkeys(user_ids))


def get_users(
    caller: Caller, user_ids: Sequence[str], found: Iterable[DirectoryUser]
) -> tuple[api.User, ...]:
    """The users asked for, in the order asked; unknown ids (and other organizations') are left out."""
    wanted = check_user_ids(user_ids)
    by_id = {u.id: u for u in found if u.organization_id == caller.organization_id}
    return tuple(user_view(by_id[user_id]) for user_id in wanted if user_id in by_id)


def record_seen(seen: api.UserSeen, current: DirectoryUser | None, now: datetime) -> DirectoryUser:
    """The directory entry after the gateway reported `seen`; missing name/email keep what was known."""
    name = seen.name or (current.name if current else None) or seen.email or ""
    email = seen.email or (current.email if current else None) or ""
    user_type = seen.user_type
    if current is not None and current.organization_id == seen.organization_id:
        return msgspec.structs.replace(current, name=name, email=email, type=user_type, seen_at=now)
    return DirectoryUser(
        organization_id=seen.organization_id,
        id=seen.user_id,
        name=name,
        email=email,
        type=user_type,
        seen_at=now,
    )


# ---------------------------------------------------------------- room meetings


def decide_create_meeting(
    room: Room | None,
    caller: Caller,
    body: api.MeetingCreation,
    ctx: Context,
    *,
    workspace: Room | None = None,
) -> Decision[RoomMeeting]:
    """`POST /rooms/{id}/meeting` or `POST /meetings`: 404/403 (member); a room that has one 409.

    The meeting (id = the conference's id) is recorded and the room's meetingId set; MEETING_CREATED
    {meetingId, roomId} to the members. Creating the guarded conference is the handler's (it needs the
    conference service).
    """
    found = access(room, caller, body.room_id, workspace=workspace)
    if found.meeting_id is not None:
        raise Conflict(f"room {found.id} already has meeting {found.meeting_id}")
    meeting = RoomMeeting(
        id=ctx.new_id(),
        organization_id=caller.organization_id,
        room_id=found.id,
        # Unnamed: the room's name (a one_to_one has none).
        name=body.name if body.name is not None else (found.name or ""),
        meeting_type=body.kind,
        created_at=ctx.now,
    )
    updated = msgspec.structs.replace(found, meeting_id=meeting.id)
    events = _Events(ctx, caller.organization_id)
    events.add(
        api.MeetingCreated,
        _recipients(effective_members(found, workspace)),
        meeting_id=meeting.id,
        room_id=found.id,
    )
    return Decision(
        result=meeting, put_rooms=(updated,), put_meetings=(meeting,), notices=tuple(events.notices)
    )


def meeting_of(
    room: Room | None,
    caller: Caller,
    room_id: str,
    meeting: RoomMeeting | None,
    *,
    workspace: Room | None = None,
) -> RoomMeeting:
    """`GET /rooms/{id}/meeting`: 404/403 (member); no meeting 404."""
    found = access(room, caller, room_id, workspace=workspace)
    if found.meeting_id is None or meeting is None or meeting.id != found.meeting_id:
        raise NotFound(f"room {found.id} has no meeting")
    return meeting


def meeting_view(
    meeting: RoomMeeting,
    *,
    participants: Sequence[api.MeetingParticipant] = (),
    active: bool = False,
    started_at: datetime | None = None,
) -> api.Meeting:
    """The Meeting shape; `active`/`participants`/`startedAt` come from the live conference."""
    return api.Meeting(
        id=meeting.id,
        name=meeting.name,
        room_id=meeting.room_id,
        active=active,
        participants=tuple(participants),
        created_at=meeting.created_at,
        meeting_type=meeting.meeting_type,
        started_at=started_at,
    )


def admits(room: Room | None, query: api.AdmissionQuery, *, workspace: Room | None = None) -> bool:
    """May the user join the conference of the room's meeting? Only its members, of its organization.

    Asked on every join, so a removed member is refused at once.
    """
    if room is None or room.organization_id != query.organization_id or room.id != query.resource:
        return False
    return _member(effective_members(room, workspace), query.user_id) is not None


# ---------------------------------------------------------------- pictures (issue 11)


def room_picture_object(room_id: str) -> str:
    return f"pictures/rooms/{room_id}"


def user_picture_object(user_id: str) -> str:
    return f"pictures/users/{user_id}"


def _check_upload(size: int | None, mime_type: str, max_bytes: int) -> None:
    """The declared size and type of a picture: over the limit 400 (the seed's status, not 413), a
    declared type that is not `image/...` 400 (the bytes are decoded later anyway)."""
    if size is not None and size > max_bytes:
        raise InvalidCommand(f"the picture is larger than {max_bytes // 1024} KB")
    if mime_type and not mime_type.lower().startswith("image/"):
        raise InvalidCommand(f"mimeType {mime_type!r} is not an image type")


def check_room_picture(
    room: Room | None,
    caller: Caller,
    room_id: str,
    *,
    size: int | None,
    mime_type: str,
    workspace: Room | None = None,
    capabilities: api.Capabilities = CAPABILITIES,
) -> Room:
    """`PUT /rooms/{id}/picture`, in the note's order: 404/403 (member)/403 (owner), not a group 400,
    larger than maxRoomImageSizeInKb 400, declared type not an image 400."""
    found = access(room, caller, room_id, workspace=workspace, owner=True)
    if found.type != "group":
        raise InvalidCommand(f"only a group has a picture, not a {found.type}")
    _check_upload(size, mime_type, capabilities.max_room_image_size_in_kb * 1024)
    return found


def decide_room_picture(room: Room, picture_type: str, ctx: Context) -> Decision[None]:
    """Set a checked, decoded picture: pictureUpdatedAt now; ROOM_PICTURE_CHANGED to the members."""
    updated = msgspec.structs.replace(room, picture_updated_at=ctx.now, picture_type=picture_type)
    events = _Events(ctx, room.organization_id)
    events.add(api.RoomPictureChanged, _recipients(room.members), room_id=room.id, updated_at=ctx.now)
    return Decision(result=None, put_rooms=(updated,), notices=tuple(events.notices))


def room_picture(
    room: Room | None, caller: Caller, room_id: str, *, workspace: Room | None = None
) -> api.StoredFile:
    """`GET /rooms/{id}/picture`: 404/403 (member); none 404."""
    found = access(room, caller, room_id, workspace=workspace)
    if found.picture_updated_at is None:
        raise NotFound(f"room {room_id} has no picture")
    return api.StoredFile(
        object_name=room_picture_object(found.id), mime_type=found.picture_type or "image/jpeg"
    )


def decide_delete_room_picture(
    room: Room | None, caller: Caller, room_id: str, ctx: Context, *, workspace: Room | None = None
) -> Decision[None]:
    """`DELETE /rooms/{id}/picture`: 404/403/403 (owner); none 404; ROOM_PICTURE_DELETED to members."""
    found = access(room, caller, room_id, workspace=workspace, owner=True)
    if found.picture_updated_at is None:
        raise NotFound(f"room {room_id} has no picture")
    events = _Events(ctx, found.organization_id)
    events.add(api.RoomPictureDeleted, _recipients(found.members), room_id=found.id)
    return Decision(
        result=None,
        put_rooms=(msgspec.structs.replace(found, picture_updated_at=None, picture_type=None),),
        delete_objects=(room_picture_object(found.id),),
        notices=tuple(events.notices),
    )


def check_user_picture(
    user: DirectoryUser | None,
    caller: Caller,
    user_id: str,
    *,
    size: int | None,
    mime_type: str,
    capabilities: api.Capabilities = CAPABILITIES,
) -> DirectoryUser:
    """`PUT /users/{id}/picture`: not the caller's own 403, larger than maxUserImageSizeInKb 400,
    declared type not an image 400 (the caller unknown to the directory: 404)."""
    if user_id != caller.user_id:
        raise NotAllowed("a user may only change their own picture")
    found = _known_user(user, caller, user_id)
    _check_upload(size, mime_type, capabilities.max_user_image_size_in_kb * 1024)
    return found


def _known_user(user: DirectoryUser | None, caller: Caller, user_id: str) -> DirectoryUser:
    if user is None or user.organization_id != caller.organization_id or user.id != user_id:
        raise NotFound(f"user {user_id} not found")
    return user


def _room_mates(user_id: str, rooms: Iterable[Room]) -> tuple[str, ...]:
    """Everyone sharing a room with the user, the user first (the note's USER_PICTURE_* recipients)."""
    mates: dict[str, None] = {user_id: None}
    for room in rooms:
        if _member(room.members, user_id) is not None:
            mates.update(dict.fromkeys(room.member_ids))
    return tuple(mates)


def decide_user_picture(
    user: DirectoryUser, picture_type: str, rooms: Iterable[Room], ctx: Context
) -> Decision[None]:
    """Set a checked, decoded picture; USER_PICTURE_CHANGED {userId, imageId, updatedAt} to room-mates."""
    updated = msgspec.structs.replace(user, picture_updated_at=ctx.now, picture_type=picture_type)
    events = _Events(ctx, user.organization_id)
    events.add(
        api.UserPictureChanged,
        _room_mates(user.id, rooms),
        user_id=user.id,
        image_id=user.id,
        updated_at=ctx.now,
    )
    return Decision(result=None, put_users=(updated,), notices=tuple(events.notices))


def user_picture(user: DirectoryUser | None, caller: Caller, user_id: str) -> api.StoredFile:
    """`GET /users/{id}/picture`: any caller of the organization; unknown user or no picture 404."""
    found = _known_user(user, caller, user_id)
    if found.picture_updated_at is None:
        raise NotFound(f"user {user_id} has no picture")
    return api.StoredFile(
        object_name=user_picture_object(found.id), mime_type=found.picture_type or "image/jpeg"
    )


def decide_delete_user_picture(
    user: DirectoryUser | None, caller: Caller, user_id: str, rooms: Iterable[Room], ctx: Context
) -> Decision[None]:
    """`DELETE /users/{id}/picture`: not own 403; none 404; USER_PICTURE_DELETED to room-mates."""
    if user_id != caller.user_id:
        raise NotAllowed("a user may only delete their own picture")
    found = _known_user(user, caller, user_id)
    if found.picture_updated_at is None:
        raise NotFound(f"user {user_id} has no picture")
    events = _Events(ctx, found.organization_id)
    events.add(api.UserPictureDeleted, _room_mates(found.id, rooms), user_id=found.id)
    return Decision(
        result=None,
        put_users=(msgspec.structs.replace(found, picture_updated_at=None, picture_type=None),),
        delete_objects=(user_picture_object(found.id),),
        notices=tuple(events.notices),
    )


# ---------------------------------------------------------------- messages and forwarding


def message_order(message: StoredMessage) -> str:
    """The key messages are paged by: sent time (microseconds since the epoch), then id; also the
    opaque `before` cursor (a message deleted since still marks its place)."""
    micros = int(message.sent_at.timestamp() * 1_000_000)
    return f"{micros:0{api.MESSAGE_ORDER_DIGITS}d}-{message.id}"


def message_view(message: StoredMessage, attachments: Sequence[str] | None = None) -> api.Message:
    """`attachments`: the ids of the files that belong to the message (left out when it has none)."""
    return api.Message(
        attachments=tuple(attachments) if attachments else None,
        id=message.id,
        room_id=message.room_id,
        user_id=message.user_id,
        text=message.text,
        sent_at=message.sent_at,
        reply_id=message.reply_id,
        edited_at=message.edited_at,
        forwarded=message.forwarded,
    )


def _check_text(text: str) -> None:
    if not text.strip():
        raise InvalidCommand("a message needs some text")


def _posted(
    found: Room,
    caller: Caller,
    ctx: Context,
    events: _Events,
    recipients: tuple[str, ...],
    text: str,
    *,
    reply_id: str | None = None,
    forwarded: api.Forwarded | None = None,
    index: int = 0,
    files: Sequence[str] = (),
) -> StoredMessage:
    message = StoredMessage(
        id=ctx.new_id(),
        organization_id=caller.organization_id,
        room_id=found.id,
        user_id=caller.user_id,
        text=text,
        # Several messages of one command (a forward) keep their order: a microsecond apart.
        sent_at=ctx.now + timedelta(microseconds=index),
        reply_id=reply_id,
        forwarded=forwarded,
    )
    events.add(
        api.RoomMessageSent,
        recipients,
        to_room=found.id,
        room_id=found.id,
        message=message_view(message, files),
    )
    return message


def decide_send_message(
    room: Room | None,
    caller: Caller,
    body: api.SendMessage,
    ctx: Context,
    *,
    workspace: Room | None = None,
    replied: StoredMessage | None = None,
) -> Decision[api.Message]:
    """`POST /rooms/{id}/messages`: 404/403 (member); blank text 400; a `replyId` that is not a message
    of this room 400. ROOM_MESSAGE_SENT {roomId, message} to every member, the sender included (their
    other devices). `replied`: the message `replyId` names, if found."""
    found = access(room, caller, body.room_id, workspace=workspace)
    _check_text(body.text)
    if body.reply_id is not None and (
        replied is None or replied.room_id != found.id or replied.organization_id != caller.organization_id
    ):
        raise InvalidCommand(f"replyId {body.reply_id} is not a message of room {found.id}")
    events = _Events(ctx, caller.organization_id)
    members = _recipients(effective_members(found, workspace))
    message = _posted(found, caller, ctx, events, members, body.text, reply_id=body.reply_id)
    return Decision(result=message_view(message), put_messages=(message,), notices=tuple(events.notices))


def list_messages(
    room: Room | None,
    caller: Caller,
    body: api.ListMessages,
    page: Sequence[StoredMessage],
    *,
    workspace: Room | None = None,
    settings: UserSettings | None = None,
    attachments: Sequence[api.Attachment] = (),
) -> api.MessagesPage:
    """`GET /rooms/{id}/messages`: 404/403 (member). `page`: up to `limit + 1` messages older than the
    cursor, newest first; what the caller cleared (sent at or before their `clearedAt`) is hidden."""
    found = access(room, caller, body.room_id, workspace=workspace)
    cleared_at = settings.cleared_at if settings is not None and settings.user_id == caller.user_id else None
    visible = [m for m in page if m.room_id == found.id and (cleared_at is None or m.sent_at > cleared_at)]
    more = len(visible) > body.limit
    shown = visible[: body.limit]
    files: dict[str, list[str]] = {}
    for attachment in attachments:
        if attachment.room_id == found.id and attachment.message_id is not None:
            files.setdefault(attachment.message_id, []).append(attachment.id)
    return api.MessagesPage(
        messages=tuple(message_view(m, files.get(m.id)) for m in shown),
        before=message_order(shown[-1]) if more else None,
    )


def _own_message(
    found: Room, caller: Caller, message_id: str, message: StoredMessage | None
) -> StoredMessage:
    if message is None or message.room_id != found.id or message.organization_id != caller.organization_id:
        raise NotFound(f"message {message_id} not found in room {found.id}")
    if message.user_id != caller.user_id:
        raise NotAllowed(f"message {message_id} is not yours")
    return message


class MessageLimits(msgspec.Struct, frozen=True):
    """How long after sending it a sender may edit / delete a message (the service's settings)."""

    edit: timedelta = timedelta(minutes=CAPABILITIES.edit_message_time_limit_in_minutes)
    delete: timedelta = timedelta(minutes=CAPABILITIES.delete_message_time_limit_in_minutes)

    def capabilities(self, base: api.Capabilities = CAPABILITIES) -> api.Capabilities:
        """The capabilities stating these limits, in whole minutes (a limit under a minute says 1)."""
        return msgspec.structs.replace(
            base,
            edit_message_time_limit_in_minutes=max(1, math.ceil(self.edit.total_seconds() / 60)),
            delete_message_time_limit_in_minutes=max(1, math.ceil(self.delete.total_seconds() / 60)),
        )


DEFAULT_MESSAGE_LIMITS = MessageLimits()


def _within(message: StoredMessage, ctx: Context, limit: timedelta, what: str) -> None:
    if ctx.now - message.sent_at > limit:
        raise NotAllowed(f"a message can be {what} only within {limit.total_seconds():g} s of sending it")


def decide_edit_message(
    room: Room | None,
    caller: Caller,
    body: api.EditMessage,
    message: StoredMessage | None,
    ctx: Context,
    *,
    workspace: Room | None = None,
    limits: MessageLimits = DEFAULT_MESSAGE_LIMITS,
) -> Decision[api.Message]:
    """`PUT /rooms/{id}/messages/{messageId}`: 404/403 (member); message unknown (or of another room)
    404; not the caller's 403; past the capabilities' edit limit 403; blank text 400.
    ROOM_MESSAGE_EDITED to every member."""
    found = access(room, caller, body.room_id, workspace=workspace)
    own = _own_message(found, caller, body.message_id, message)
    _within(own, ctx, limits.edit, "edited")
    _check_text(body.text)
    edited = msgspec.structs.replace(own, text=body.text, edited_at=ctx.now)
    events = _Events(ctx, caller.organization_id)
    events.add(
        api.RoomMessageEdited,
        _recipients(effective_members(found, workspace)),
        to_room=found.id,
        room_id=found.id,
        message_id=own.id,
        text=body.text,
        edited_at=ctx.now,
    )
    return Decision(result=message_view(edited), put_messages=(edited,), notices=tuple(events.notices))


def decide_delete_message(
    room: Room | None,
    caller: Caller,
    body: api.RoomMessageRef,
    message: StoredMessage | None,
    ctx: Context,
    *,
    workspace: Room | None = None,
    limits: MessageLimits = DEFAULT_MESSAGE_LIMITS,
) -> Decision[None]:
    """`DELETE /rooms/{id}/messages/{messageId}`: as an edit, with the delete limit.
    ROOM_MESSAGE_DELETED to every member."""
    found = access(room, caller, body.room_id, workspace=workspace)
    own = _own_message(found, caller, body.message_id, message)
    _within(own, ctx, limits.delete, "deleted")
    events = _Events(ctx, caller.organization_id)
    events.add(
        api.RoomMessageDeleted,
        _recipients(effective_members(found, workspace)),
        to_room=found.id,
        room_id=found.id,
        message_id=own.id,
    )
    return Decision(result=None, delete_messages=(own.id,), notices=tuple(events.notices))


class Original(msgspec.Struct, frozen=True):
    """A Parley message a forward names, with its room (and that room's workspace, for a channel), and
    the attachments that belong to it."""

    message: StoredMessage | None
    room: Room | None = None
    workspace: Room | None = None
    attachments: tuple[api.Attachment, ...] = ()


class FileCopy(msgspec.Struct, frozen=True):
    """An attachment's bytes to copy (object names) before a forward commits the copy's record."""

    source: str
    target: str


def decide_forward(
    room: Room | None,
    caller: Caller,
    body: api.ForwardMessages,
    ctx: Context,
    *,
    originals: Mapping[str, Original],
    workspace: Room | None = None,
) -> Decision[tuple[FileCopy, ...]]:
    """`POST /rooms/{id}/forward`: 404/403 (member); each ForwardMessage becomes a new message of the
    caller, in order, with `forwarded` {originalMessage, originalMessageSentAt, description}.

    An `originalMessage` that is a message id (a UUID) names a Parley message: unknown (or another
    organization's) 404, the caller not a member of its room 403; its text is forwarded and, when not
    given, its sent time; its attachments are copied into the room (a new record of the caller's, the
    new message's; the bytes copied by the handler first: the decision's `result`), as the real backend
    does; a room that takes no attachments (workspace, channel) 400. Any other string is forwarded as
    the text. ROOM_MESSAGE_SENT for each. `originals`: the message each UUID names, looked up by the
    handler.
    """
    found = access(room, caller, body.room_id, workspace=workspace)
    events = _Events(ctx, caller.organization_id)
    members = _recipients(effective_members(found, workspace))
    posted: list[StoredMessage] = []
    copies: list[FileCopy] = []
    records: list[api.Attachment] = []
    for item in body.messages:
        text = item.original_message
        sent_at = item.original_message_sent_at
        carried: tuple[api.Attachment, ...] = ()
        message_id = api.canonical_uuid(item.original_message)
        if message_id is not None:
            original = originals.get(message_id)
            stored = original.message if original is not None else None
            if stored is None or stored.organization_id != caller.organization_id:
                raise NotFound(f"message {message_id} not found")
            assert original is not None
            access(original.room, caller, stored.room_id, workspace=original.workspace)
            text = stored.text
            sent_at = sent_at or stored.sent_at
            carried = original.attachments
            if carried and found.type in _NO_ATTACHMENTS:
                raise InvalidCommand(f"a {found.type} room takes no attachments")
        _check_text(text)
        forwarded = api.Forwarded(
            original_message=item.original_message,
            original_message_sent_at=sent_at,
            description=item.description,
        )
        new_ids = [ctx.new_id() for _ in carried]
        message = _posted(
            found, caller, ctx, events, members, text, forwarded=forwarded, index=len(posted), files=new_ids
        )
        posted.append(message)
        for attachment, file_id in zip(carried, new_ids, strict=True):
            copies.append(FileCopy(api.attachment_object(attachment.id), api.attachment_object(file_id)))
            records.append(
                msgspec.structs.replace(
                    attachment,
                    id=file_id,
                    user_id=caller.user_id,
                    room_id=found.id,
                    created_at=ctx.now,
                    message_id=message.id,
                    reply_id=None,
                )
            )
    return Decision(
        result=tuple(copies),
        put_messages=tuple(posted),
        put_attachments=tuple(records),
        notices=tuple(events.notices),
    )


# ---------------------------------------------------------------- attachments

# Rooms that take no attachments (Carbonio's rule: a workspace or a channel is no conversation of files).
_NO_ATTACHMENTS = frozenset({"workspace", "channel"})


def check_attachment_room(
    room: Room | None, caller: Caller, room_id: str, *, workspace: Room | None = None
) -> Room:
    """Where an attachment may be uploaded: unknown 404, not a member 403, a workspace or channel 400.

    Checked twice for an upload: before its body is read (`prepareAttachment`) and when it is recorded.
    """
    found = access(room, caller, room_id, workspace=workspace)
    if found.type in _NO_ATTACHMENTS:
        raise InvalidCommand(f"a {found.type} room takes no attachments")
    return found


def decide_insert_attachment(
    room: Room | None,
    caller: Caller,
    body: api.InsertAttachment,
    ctx: Context,
    *,
    workspace: Room | None = None,
    existing: api.Attachment | None = None,
) -> Decision[api.Id]:
    """`POST /rooms/{id}/attachments` once its bytes are stored: the room rules again (the room may have
    changed while the body streamed), then the record. No event (the real backend sends none over REST).
    `existing`: a record already holding this file id (a retried command) is answered as it is."""
    found = check_attachment_room(room, caller, body.room_id, workspace=workspace)
    if existing is not None:
        if existing.room_id != found.id or existing.user_id != caller.user_id:
            raise Conflict(f"file {body.file_id} is already recorded")
        return Decision(result=api.Id(id=existing.id))
    record = api.Attachment(
        id=body.file_id,
        name=body.name,
        size=body.size,
        mime_type=body.mime_type,
        user_id=caller.user_id,
        room_id=found.id,
        created_at=ctx.now,
        description=body.description,
        message_id=body.message_id,
        reply_id=body.reply_id,
        area=body.area,
    )
    return Decision(result=api.Id(id=record.id), put_attachments=(record,))


def _attachment_found(attachment: api.Attachment | None, file_id: str) -> api.Attachment:
    if attachment is None:
        raise NotFound(f"attachment {file_id} not found")
    return attachment


def attachment_view(
    attachment: api.Attachment | None,
    room: Room | None,
    caller: Caller,
    file_id: str,
    *,
    workspace: Room | None = None,
) -> api.Attachment:
    """`GET /attachments/{id}` (and its download): unknown 404 (another organization's too: the
    repository does not find it), not a member of its room 403."""
    found = _attachment_found(attachment, file_id)
    access(room, caller, found.room_id, workspace=workspace)
    return found


def decide_delete_attachment(
    attachment: api.Attachment | None,
    room: Room | None,
    caller: Caller,
    file_id: str,
    *,
    workspace: Room | None = None,
) -> Decision[None]:
    """`DELETE /attachments/{id}`: unknown 404, not a member 403, neither its uploader nor an owner of
    its room 403. The record goes at once, the bytes through the outbox."""
    found = _attachment_found(attachment, file_id)
    room_found = access(room, caller, found.room_id, workspace=workspace)
    me = _member(effective_members(room_found, workspace), caller.user_id)
    if found.user_id != caller.user_id and not (me is not None and me.owner):
        raise NotAllowed(f"only its uploader or an owner of the room may delete attachment {file_id}")
    return Decision(
        result=None,
        delete_attachments=(found.id,),
        delete_objects=(api.attachment_object(found.id),),
    )


class AttachmentCursor(msgspec.Struct, frozen=True, rename="camel"):
    """Where a page of attachments ends: Carbonio's `filter`, the base64 of this JSON."""

    id: str
    created_at: datetime


_cursor_decoder = msgspec.json.Decoder(AttachmentCursor)


def encode_attachment_cursor(last: api.Attachment) -> str:
    return base64.b64encode(msgspec.json.encode(AttachmentCursor(last.id, last.created_at))).decode()


def decode_attachment_cursor(value: str | None) -> AttachmentCursor | None:
    """The cursor a client sent back, or None for the first page; anything else undecodable is a 400."""
    if value is None:
        return None
    try:
        cursor = _cursor_decoder.decode(base64.b64decode(value, validate=True))
    except (ValueError, msgspec.DecodeError):
        raise InvalidCommand("filter: not a cursor this API gave") from None
    if cursor.created_at.tzinfo is None:
        raise InvalidCommand("filter: not a cursor this API gave")
    return cursor


def attachments_page(found: Sequence[api.Attachment], items_number: int) -> api.AttachmentsPagination:
    """A page from up to `items_number + 1` records, newest first: the extra one says more exist."""
    page = tuple(found[:items_number])
    more = len(found) > items_number
    return api.AttachmentsPagination(
        attachments=page, filter=encode_attachment_cursor(page[-1]) if more and page else None
    )
