"""The chat state in the document store (SQLite or MongoDB behind `parley_common.storage`).

Collections: `chat_rooms` (a room without its members), `chat_members` (one document per (room, user): the
port cannot query inside arrays), `chat_settings` (per (room, user)), `chat_ranks` (per (user, workspace)),
`chat_meetings`, `chat_users` (the directory, per (organization, user)), `chat_messages` (per message,
paged by (room, order)), `chat_attachments` (one record
per file, `pos` its newest-first paging key) and `chat_commits`. A deleted room's attachment records go
with it; their objects are deleted by the outbox (`files_of_rooms`).

Atomicity. The port has no transactions: a commit is ONE `chat_commits` document of the shared commit log
(`parley_common.commits.CommitLog`, the outbox store of the chat service) holding every write the decision
makes (idempotent puts and deletes) and the effects it owes (events to publish, conferences to end, objects
to delete). Its insert is the commit point; the log applies the writes, and its recovery applies them again
(in commit order) and carries out the effects after a crash. So an acknowledged command never loses a
write, an event or an effect; a reader may see a commit half-applied for the few milliseconds it takes.

Commands are serialised in this process (`ChatUnitOfWork.lock`): a decision is taken on state no other
command of this process is changing. Several replicas would need a version check per room (see README),
and could not keep the room cache (`room()`), which relies on this process being the only writer.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
from parley_common.commits import CommitLog, Delete, DeleteWhere, Operation, Put, as_document
from parley_common.contracts import chat as api
from parley_common.outbox import Owed
from parley_common.storage import Collection, DocumentStore, Index

from parley_chat.domain import (
    Decision,
    DirectoryUser,
    Room,
    RoomMeeting,
    RoomMember,
    StoredMessage,
    UserRooms,
    UserSettings,
    WorkspaceRank,
    message_order,
)
from parley_chat.effects import Effect

OUTBOX = "chat_commits"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Rooms kept in memory (the least recently read first out); a hit saves reading a room's members.
ROOM_CACHE_SIZE = 10_000


def key(*parts: str) -> str:
    """A document id from several ids, unambiguous whatever characters they hold."""
    return msgspec.json.encode(parts).decode()


def _pair(user_a: str, user_b: str) -> str:
    return key(*sorted((user_a, user_b)))


def _room_doc(room: Room) -> dict[str, Any]:
    return {
        "_id": room.id,
        "org": room.organization_id,
        "type": room.type,
        # None for every room but a channel: the port matches null and missing alike.
        "parent": room.parent_id,
        "pair": _pair(*room.member_ids) if room.type == "one_to_one" and len(room.members) == 2 else None,
        "state": as_document(msgspec.structs.replace(room, members=())),
    }


def _settings_doc(settings: UserSettings) -> dict[str, Any]:
    return {
        "_id": key(settings.room_id, settings.user_id),
        "room": settings.room_id,
        "user": settings.user_id,
        "state": as_document(settings),
    }


def _rank_doc(organization_id: str, rank: WorkspaceRank) -> dict[str, Any]:
    return {
        "_id": key(rank.user_id, rank.workspace_id),
        "org": organization_id,
        "user": rank.user_id,
        "workspace": rank.workspace_id,
        "rank": rank.rank,
    }


def _meeting_doc(meeting: RoomMeeting) -> dict[str, Any]:
    return {
        "_id": meeting.id,
        "org": meeting.organization_id,
        "room": meeting.room_id,
        "state": as_document(meeting),
    }


def _message_doc(message: StoredMessage) -> dict[str, Any]:
    return {
        "_id": message.id,
        "org": message.organization_id,
        "room": message.room_id,
        # Pages are read by (room, order): newest first, ties broken by id.
        "order": message_order(message),
        "state": as_document(message),
    }


def _attachment_pos(created_at: datetime, file_id: str) -> str:
    """The paging key of an attachment: (createdAt, id) as one string that sorts like the pair (the port
    has no `$or` to page on two fields). Microseconds since the epoch, zero-padded."""
    micros = (created_at - _EPOCH) // timedelta(microseconds=1)
    return f"{micros:020d}:{file_id}"


def _attachment_doc(organization_id: str, attachment: api.Attachment) -> dict[str, Any]:
    return {
        "_id": attachment.id,
        "org": organization_id,
        "room": attachment.room_id,
        "pos": _attachment_pos(attachment.created_at, attachment.id),
        "state": as_document(attachment),
    }


def _user_doc(user: DirectoryUser) -> dict[str, Any]:
    return {
        "_id": key(user.organization_id, user.id),
        "org": user.organization_id,
        "user": user.id,
        "state": as_document(user),
    }


class StorageChatRepository:
    """`ChatRepository` over the storage port; `log` commits its writes and is the outbox store of what
    they owe (`OutboxStore`)."""

    def __init__(self, collections: dict[str, Collection]) -> None:
        self._c = collections
        self._rooms = collections["chat_rooms"]
        self._members = collections["chat_members"]
        self._settings = collections["chat_settings"]
        self._ranks = collections["chat_ranks"]
        self._meetings = collections["chat_meetings"]
        self._users = collections["chat_users"]
        self._messages = collections["chat_messages"]
        self._attachments = collections["chat_attachments"]
        self._previews = collections["chat_previews"]
        # Rooms with their members by id (a message's send reads its room: 128 members are 1.4 ms of
        # storage). This process is the only writer of rooms and members and every write goes through
        # the log, which tells `_forget_room` (recoveries' writes too); `_room_epoch` counts those drops.
        self._room_cache: dict[str, Room] = {}
        self._room_epoch = 0
        self.log = CommitLog(
            collections[OUTBOX], Effect, (c for name, c in collections.items() if name != OUTBOX)
        )
        self.log.watch(self._forget_room)

    @classmethod
    async def open(cls, store: DocumentStore) -> StorageChatRepository:
        specs: dict[str, list[Index]] = {
            "chat_rooms": [Index(("org", "parent")), Index(("org", "pair"))],
            "chat_members": [Index(("org", "user")), Index(("room", "pos"))],
            "chat_settings": [Index(("user", "room")), Index(("room",))],
            "chat_ranks": [Index(("org", "user")), Index(("workspace",))],
            "chat_meetings": [Index(("room",))],
            "chat_users": [Index(("org", "user"))],
            "chat_messages": [Index(("room", "order"))],
            # A room's attachments newest first (paging), and all of them when the room goes.
            "chat_attachments": [Index(("room", "pos"))],
            # One per rendered preview (its object): found by room or file when they go.
            "chat_previews": [Index(("room",)), Index(("file",))],
            # The log reads its commits in id (commit) order: the primary key.
            OUTBOX: [],
        }
        return cls({name: await store.collection(name, indexes) for name, indexes in specs.items()})

    # ---------------------------------------------------------------- rooms

    async def _with_members(self, room_docs: Sequence[dict[str, Any]]) -> list[Room]:
        """Rooms with their members, in one query for all of them (none for channels: they have none)."""
        rooms = [msgspec.convert(doc["state"], Room) for doc in room_docs]
        ids = [room.id for room in rooms if room.type != "channel"]
        members: dict[str, list[RoomMember]] = {room_id: [] for room_id in ids}
        if ids:
            for doc in await self._members.find({"room": {"$in": ids}}, sort=[("room", 1), ("pos", 1)]):
                members[doc["room"]].append(RoomMember(doc["user"], owner=doc["owner"]))
        return [
            msgspec.structs.replace(room, members=tuple(members[room.id])) if room.id in members else room
            for room in rooms
        ]

    async def room(self, organization_id: str, room_id: str) -> Room | None:
        room = self._room_cache.pop(room_id, None)
        if room is not None:
            self._room_cache[room_id] = room  # the most recently read: last out
        else:
            # Kept only if no commit touched a room while it was read (it may have read a half-applied one).
            epoch = self._room_epoch
            doc = await self._rooms.get(room_id)
            if doc is None:
                return None
            room = (await self._with_members([doc]))[0]
            if epoch == self._room_epoch:
                self._room_cache[room_id] = room
                if len(self._room_cache) > ROOM_CACHE_SIZE:
                    del self._room_cache[next(iter(self._room_cache))]
        return room if room.organization_id == organization_id else None

    async def room_with_parent(self, organization_id: str, room_id: str) -> tuple[Room | None, Room | None]:
        room = await self.room(organization_id, room_id)
        if room is None or room.type != "channel" or room.parent_id is None:
            return room, None
        return room, await self.room(organization_id, room.parent_id)

    async def _rooms_of_member(self, organization_id: str, user_id: str, **where: Any) -> list[Room]:
        ids = [d["room"] for d in await self._members.find({"org": organization_id, "user": user_id})]
        if not ids:
            return []
        return await self._with_members(await self._rooms.find({"_id": {"$in": ids}, **where}))

    async def rooms_of_user(self, organization_id: str, user_id: str) -> UserRooms:
        # Five queries whatever the room count: memberships, rooms, their members, channels, settings; ranks.
        rooms = await self._rooms_of_member(organization_id, user_id)
        workspaces = [room.id for room in rooms if room.type == "workspace"]
        channels: list[Room] = []
        if workspaces:
            channel_docs = await self._rooms.find({"org": organization_id, "parent": {"$in": workspaces}})
            channels = [msgspec.convert(doc["state"], Room) for doc in channel_docs]
        all_ids = [room.id for room in (*rooms, *channels)]
        settings = await self.settings_of_rooms(user_id, all_ids) if all_ids else ()
        ranks = [
            WorkspaceRank(doc["user"], doc["workspace"], doc["rank"])
            for doc in await self._ranks.find({"org": organization_id, "user": user_id})
        ]
        return UserRooms(rooms=(*rooms, *channels), settings=tuple(settings), workspace_ranks=tuple(ranks))

    async def workspaces_of_user(self, organization_id: str, user_id: str) -> Sequence[Room]:
        return await self._rooms_of_member(organization_id, user_id, type="workspace")

    async def channels(self, organization_id: str, workspace_id: str) -> Sequence[Room]:
        docs = await self._rooms.find({"org": organization_id, "parent": workspace_id, "type": "channel"})
        return [msgspec.convert(doc["state"], Room) for doc in docs]

    async def one_to_one(self, organization_id: str, user_a: str, user_b: str) -> Room | None:
        docs = await self._rooms.find(
            {"org": organization_id, "pair": _pair(user_a, user_b), "type": "one_to_one"}, limit=1
        )
        return (await self._with_members(docs))[0] if docs else None

    # ---------------------------------------------------------------- settings and ranks

    async def settings(self, room_id: str, user_id: str) -> UserSettings | None:
        doc = await self._settings.get(key(room_id, user_id))
        return None if doc is None else msgspec.convert(doc["state"], UserSettings)

    async def settings_of_rooms(self, user_id: str, room_ids: Sequence[str]) -> Sequence[UserSettings]:
        if not room_ids:
            return ()
        docs = await self._settings.find({"user": user_id, "room": {"$in": list(room_ids)}})
        return [msgspec.convert(doc["state"], UserSettings) for doc in docs]

    async def workspace_rank(self, user_id: str, workspace_id: str) -> WorkspaceRank | None:
        doc = await self._ranks.get(key(user_id, workspace_id))
        return None if doc is None else WorkspaceRank(doc["user"], doc["workspace"], doc["rank"])

    async def highest_workspace_ranks(self, organization_id: str, user_ids: Sequence[str]) -> dict[str, int]:
        highest: dict[str, int] = {}
        if not user_ids:
            return highest
        for doc in await self._ranks.find({"org": organization_id, "user": {"$in": list(user_ids)}}):
            highest[doc["user"]] = max(highest.get(doc["user"], 0), doc["rank"])
        return highest

    # ---------------------------------------------------------------- meetings

    async def meeting(self, organization_id: str, meeting_id: str) -> RoomMeeting | None:
        doc = await self._meetings.get(meeting_id)
        if doc is None or doc["org"] != organization_id:
            return None
        return msgspec.convert(doc["state"], RoomMeeting)

    # ---------------------------------------------------------------- messages

    async def message(self, organization_id: str, message_id: str) -> StoredMessage | None:
        doc = await self._messages.get(message_id)
        if doc is None or doc["org"] != organization_id:
            return None
        return msgspec.convert(doc["state"], StoredMessage)

    async def messages(self, room_id: str, *, before: str | None, limit: int) -> Sequence[StoredMessage]:
        where: dict[str, Any] = {"room": room_id}
        if before is not None:
            where["order"] = {"$lt": before}
        docs = await self._messages.find(where, sort=[("order", -1)], limit=limit)
        return [msgspec.convert(doc["state"], StoredMessage) for doc in docs]

    # ---------------------------------------------------------------- users

    async def user(self, organization_id: str, user_id: str) -> DirectoryUser | None:
        doc = await self._users.get(key(organization_id, user_id))
        return None if doc is None else msgspec.convert(doc["state"], DirectoryUser)

    async def users(self, organization_id: str, user_ids: Sequence[str]) -> Sequence[DirectoryUser]:
        if not user_ids:
            return ()
        docs = await self._users.find({"org": organization_id, "user": {"$in": list(user_ids)}})
        return [msgspec.convert(doc["state"], DirectoryUser) for doc in docs]

    async def known_user_ids(self, organization_id: str, user_ids: Sequence[str]) -> frozenset[str]:
        return frozenset(user.id for user in await self.users(organization_id, user_ids))

    async def save_user(self, user: DirectoryUser) -> None:
        await self._users.replace(_user_doc(user), upsert=True)

    # ---------------------------------------------------------------- attachments

    async def attachment(self, organization_id: str, file_id: str) -> api.Attachment | None:
        doc = await self._attachments.get(file_id)
        if doc is None or doc["org"] != organization_id:
            return None
        return msgspec.convert(doc["state"], api.Attachment)

    async def attachments_of_messages(
        self, organization_id: str, room_id: str, message_ids: Sequence[str]
    ) -> Sequence[api.Attachment]:
        if not message_ids:
            return ()
        docs = await self._attachments.find(
            {"room": room_id, "org": organization_id, "state.messageId": {"$in": list(message_ids)}},
            sort=[("pos", 1)],
        )
        return [msgspec.convert(doc["state"], api.Attachment) for doc in docs]

    async def room_attachments(
        self, organization_id: str, room_id: str, *, before: tuple[datetime, str] | None, limit: int
    ) -> Sequence[api.Attachment]:
        where: dict[str, Any] = {"org": organization_id, "room": room_id}
        if before is not None:
            where["pos"] = {"$lt": _attachment_pos(*before)}
        docs = await self._attachments.find(where, sort=[("pos", -1)], limit=limit)
        return [msgspec.convert(doc["state"], api.Attachment) for doc in docs]

    async def files_of_rooms(self, organization_id: str, room_ids: Sequence[str]) -> Sequence[str]:
        if not room_ids:
            return ()
        docs = await self._attachments.find({"org": organization_id, "room": {"$in": list(room_ids)}})
        previews = await self._previews.find({"org": organization_id, "room": {"$in": list(room_ids)}})
        return [*(api.attachment_object(doc["_id"]) for doc in docs), *(doc["_id"] for doc in previews)]

    async def previews_of_files(self, organization_id: str, file_ids: Sequence[str]) -> Sequence[str]:
        if not file_ids:
            return ()
        docs = await self._previews.find({"org": organization_id, "file": {"$in": list(file_ids)}})
        return [doc["_id"] for doc in docs]

    async def record_preview(
        self, organization_id: str, room_id: str, file_id: str, object_name: str
    ) -> None:
        doc = {"_id": object_name, "org": organization_id, "room": room_id, "file": file_id}
        await self._previews.replace(doc, upsert=True)

    # ---------------------------------------------------------------- writes

    async def commit(
        self, organization_id: str, decision: Decision[Any], effects: Sequence[Effect] = ()
    ) -> Owed | None:
        """Write the decision and its effects atomically (one commit document), then apply its writes.

        Returns what the commit owes for the outbox, or None when there was nothing to write.
        """
        operations = await self._operations(organization_id, decision)
        if not operations and not effects:
            return None
        return await self.log.commit(operations, effects)

    def _forget_room(self, op: Operation) -> None:
        """Drop the cached room a write touches (after the write; a read that began before it is not
        kept either: its epoch is stale)."""
        room_id: str | None
        if op.collection == "chat_rooms":
            room_id = op.doc["_id"] if isinstance(op, Put) else op.id if isinstance(op, Delete) else None
        elif op.collection == "chat_members":
            if isinstance(op, Put):
                room_id = op.doc["room"]
            elif isinstance(op, Delete):
                room_id = msgspec.json.decode(op.id)[0]  # a membership's id is key(room, user)
            else:
                room_id = op.where.get("room")
        else:
            return
        self._room_epoch += 1
        if isinstance(room_id, str):
            self._room_cache.pop(room_id, None)
        else:
            self._room_cache.clear()

    async def _operations(self, org: str, decision: Decision[Any]) -> list[Operation]:
        ops: list[Operation] = []
        for room in decision.put_rooms:
            ops.append(Put("chat_rooms", _room_doc(room)))
            ops.extend(await self._membership_changes(room))
        for room_id in decision.delete_rooms:
            ops.append(Delete("chat_rooms", room_id))
            ops.append(DeleteWhere("chat_members", {"room": room_id}))
            # Its files' records and their previews' (the objects: `files_of_rooms`, deleted by the outbox).
            ops.append(DeleteWhere("chat_attachments", {"room": room_id}))
            ops.append(DeleteWhere("chat_previews", {"room": room_id}))
        ops.extend(Put("chat_settings", _settings_doc(s)) for s in decision.put_settings)
        ops.extend(Delete("chat_settings", key(k.room_id, k.user_id)) for k in decision.delete_settings)
        ops.extend(DeleteWhere("chat_settings", {"room": r}) for r in decision.delete_settings_of_rooms)
        ops.extend(Put("chat_ranks", _rank_doc(org, r)) for r in decision.put_workspace_ranks)
        ops.extend(
            Delete("chat_ranks", key(k.user_id, k.workspace_id)) for k in decision.delete_workspace_ranks
        )
        ops.extend(DeleteWhere("chat_ranks", {"workspace": w}) for w in decision.delete_ranks_of_workspaces)
        ops.extend(Put("chat_meetings", _meeting_doc(m)) for m in decision.put_meetings)
        ops.extend(Delete("chat_meetings", m) for m in decision.delete_meetings)
        ops.extend(Put("chat_messages", _message_doc(m)) for m in decision.put_messages)
        ops.extend(Delete("chat_messages", m) for m in decision.delete_messages)
        ops.extend(DeleteWhere("chat_messages", {"room": r}) for r in decision.delete_messages_of_rooms)
        ops.extend(Put("chat_attachments", _attachment_doc(org, a)) for a in decision.put_attachments)
        ops.extend(Delete("chat_attachments", file_id) for file_id in decision.delete_attachments)
        ops.extend(DeleteWhere("chat_previews", {"file": file_id}) for file_id in decision.delete_attachments)
        ops.extend(Put("chat_users", _user_doc(u)) for u in decision.put_users)
        return ops

    async def _membership_changes(self, room: Room) -> list[Operation]:
        """Only the memberships that change (adding one member to 127 writes one document, not 128)."""
        if room.type == "channel":
            return []
        stored = {d["user"]: d for d in await self._members.find({"room": room.id})}
        ops: list[Operation] = []
        next_pos = max((d["pos"] for d in stored.values()), default=-1) + 1
        for member in room.members:
            doc = stored.pop(member.user_id, None)
            if doc is not None and doc["owner"] == member.owner:
                continue
            pos = doc["pos"] if doc is not None else next_pos
            if doc is None:
                next_pos += 1
            ops.append(
                Put(
                    "chat_members",
                    {
                        "_id": key(room.id, member.user_id),
                        "org": room.organization_id,
                        "room": room.id,
                        "user": member.user_id,
                        "owner": member.owner,
                        # The order members were added in (ties: never, each gets the next position).
                        "pos": pos,
                    },
                )
            )
        ops.extend(Delete("chat_members", doc["_id"]) for doc in stored.values())
        return ops
