"""The storage port of the chat service: what the handlers read and how a `Decision` is written.

Handlers depend on this protocol only; the adapter (over `parley_common.storage`, SQLite or MongoDB) lives
in `adapters/repository.py`. Every read is scoped to one organization: a room or user of another one is
not found (None), never returned. A method that loads several rooms loads their members with them (a room
is stored whole), so no read needs a query per room.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Protocol

from parley_common.contracts import chat as api
from parley_common.outbox import Owed

from parley_chat.domain import (
    Decision,
    DirectoryUser,
    Room,
    RoomMeeting,
    StoredMessage,
    UserRooms,
    UserSettings,
    WorkspaceRank,
)
from parley_chat.effects import Effect


class ChatRepository(Protocol):
    # ---------------------------------------------------------------- rooms

    async def room(self, organization_id: str, room_id: str) -> Room | None:
        """One room with its members, or None when unknown in this organization."""
        ...

    async def room_with_parent(self, organization_id: str, room_id: str) -> tuple[Room | None, Room | None]:
        """A room and, when it is a channel, its workspace (a channel's members are the workspace's).

        (None, None) when the room is unknown; (room, None) for any other type.
        """
        ...

    async def rooms_of_user(self, organization_id: str, user_id: str) -> UserRooms:
        """Everything `GET /rooms` shows a user, in a fixed number of queries whatever the room count.

        The rooms the user is a member of (members included), the channels of those that are workspaces,
        the user's settings of all of them and the user's workspace ranks.
        """
        ...

    async def workspaces_of_user(self, organization_id: str, user_id: str) -> Sequence[Room]:
        """The workspaces the user is a member of (for `PUT /rooms/workspaces/rank`)."""
        ...

    async def channels(self, organization_id: str, workspace_id: str) -> Sequence[Room]:
        """The channels of a workspace (for ranks, creation of a channel, and the cascade on delete)."""
        ...

    async def one_to_one(self, organization_id: str, user_a: str, user_b: str) -> Room | None:
        """The one_to_one room of this pair, in either direction, if it exists."""
        ...

    # ---------------------------------------------------------------- per-user settings and ranks

    async def settings(self, room_id: str, user_id: str) -> UserSettings | None:
        """One user's settings of one room (None: the defaults, not muted and never cleared)."""
        ...

    async def settings_of_rooms(self, user_id: str, room_ids: Sequence[str]) -> Sequence[UserSettings]:
        """One user's settings of several rooms at once (a workspace and its channels)."""
        ...

    async def workspace_rank(self, user_id: str, workspace_id: str) -> WorkspaceRank | None: ...

    async def highest_workspace_ranks(self, organization_id: str, user_ids: Sequence[str]) -> dict[str, int]:
        """Each user's highest workspace rank (users without one left out): a new workspace goes last."""
        ...

    # ---------------------------------------------------------------- meetings

    async def meeting(self, organization_id: str, meeting_id: str) -> RoomMeeting | None: ...

    # ---------------------------------------------------------------- messages

    async def message(self, organization_id: str, message_id: str) -> StoredMessage | None:
        """One message, or None when unknown in this organization."""
        ...

    async def messages(self, room_id: str, *, before: str | None, limit: int) -> Sequence[StoredMessage]:
        """Up to `limit` messages of a room, newest first, older than the cursor `before` (a
        `domain.message_order` key) when given."""
        ...

    async def attachments_of_messages(
        self, organization_id: str, room_id: str, message_ids: Sequence[str]
    ) -> Sequence[api.Attachment]:
        """The attachments of a room uploaded with (or forwarded along with) these messages, oldest first."""
        ...

    # ---------------------------------------------------------------- users directory

    async def user(self, organization_id: str, user_id: str) -> DirectoryUser | None:
        """A user of this organization's directory, or None (never seen, or of another organization)."""
        ...

    async def users(self, organization_id: str, user_ids: Sequence[str]) -> Sequence[DirectoryUser]:
        """The known users among `user_ids` (unknown ones left out), in one query."""
        ...

    async def known_user_ids(self, organization_id: str, user_ids: Sequence[str]) -> frozenset[str]:
        """Which of `user_ids` this organization's directory knows (the members check of a new room)."""
        ...

    async def save_user(self, user: DirectoryUser) -> None:
        """Insert or replace a directory entry (from a `UserSeen` report)."""
        ...

    # ---------------------------------------------------------------- attachments

    async def attachment(self, organization_id: str, file_id: str) -> api.Attachment | None:
        """One attachment's record, or None when unknown in this organization."""
        ...

    async def room_attachments(
        self, organization_id: str, room_id: str, *, before: tuple[datetime, str] | None, limit: int
    ) -> Sequence[api.Attachment]:
        """A room's attachments newest first (createdAt, then id, descending), those strictly older than
        `before` (the (createdAt, id) of the previous page's last one), at most `limit`."""
        ...

    async def files_of_rooms(self, organization_id: str, room_ids: Sequence[str]) -> Sequence[str]:
        """The objects (chat files bucket) of these rooms' files and of their rendered previews: deleted
        with the rooms (their records go in the rooms' commit)."""
        ...

    async def previews_of_files(self, organization_id: str, file_ids: Sequence[str]) -> Sequence[str]:
        """The objects of these files' rendered previews: deleted with the files."""
        ...

    async def record_preview(
        self, organization_id: str, room_id: str, file_id: str, object_name: str
    ) -> None:
        """Note a rendered preview of a file of a room, before its object is written (so deleting the
        room finds every preview's object; a record whose write then failed deletes nothing)."""
        ...

    # ---------------------------------------------------------------- writes

    async def commit(
        self, organization_id: str, decision: Decision[Any], effects: Sequence[Effect] = ()
    ) -> Owed | None:
        """Write everything a decision says, atomically, with the effects it owes (for the outbox).

        Puts (rooms whole, settings, workspace ranks, meetings, attachments) and deletes (rooms with their
        memberships and attachment records, one user's settings or every user's of a room, one user's
        rank or every user's of a workspace, meetings, attachments) all land or none does; the effects
        (the events for PARLEY_CHAT and each recipient's push subject, conferences to end, objects to
        delete) are written in the same commit, so an acknowledged command never loses an event or an
        effect. Returns what the commit owes (None: nothing was written).
        """
        ...
