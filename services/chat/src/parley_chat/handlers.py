"""The chat use cases: one per operation of `parley_common.contracts.chat.OPERATIONS`, and the directory.

Each takes the bus `Request` (the gateway's caller + the body, path parameters inside), loads what the rule
needs through the `ChatRepository` protocol, asks the pure domain, commits the `Decision` with its outbox
entries in one write (`ChatUnitOfWork`) and answers `Accepted`, or `Rejected` with the rule's status
(`rejecting`). Commands run one at a time in this process: a decision is never taken on state another
command is changing.

A chat caller is known by their token's `sub`, which must be a UUID (403 otherwise: the design's rule).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import Executor
from datetime import datetime
from typing import Any, Protocol

import nats.errors
from parley_common import errors
from parley_common.clock import new_id, utcnow
from parley_common.contracts import chat as api
from parley_common.contracts.base import Empty
from parley_common.contracts.rpc import Accepted, Request
from parley_common.errors import NotAllowed
from parley_common.log import get_logger
from parley_common.messaging.rpc import REPLY_BUDGET_BYTES, fit_reply
from parley_common.outbox import DeleteObject, Outbox, Owed

from parley_chat import domain, previews
from parley_chat.domain import Caller, Context, Decision, DirectoryUser, Room
from parley_chat.effects import effects_of
from parley_chat.repository import ChatRepository

log = get_logger(__name__)
# object_store: pictures and previews read and write the chat files bucket (not answering: 503).
rejecting = errors.rejecting(context={"room_id": "room_id"}, object_store=True)
# How long a command's answer waits for its events to be published and pushed (they stay owed after).
EFFECTS_WAIT_SECONDS = 2.0


class ConferencePort(Protocol):
    async def create_guarded(
        self, organization_id: str, creator: str, conference_id: str, room_id: str, name: str
    ) -> None: ...

    async def live(self, organization_id: str, conference_id: str) -> Any: ...


class FilesPort(Protocol):
    """The chat files bucket (`subjects.CHAT_FILES_BUCKET`), as far as the use cases touch it."""

    async def delete(self, object_name: str) -> None:
        """Delete an object (gone already is fine)."""
        ...

    async def read(self, name: str, max_bytes: int) -> bytes | None:
        """The bytes, None when not stored; InvalidCommand (400) when larger than `max_bytes`."""
        ...

    async def exists(self, name: str) -> bool: ...

    async def write(self, name: str, data: bytes, mime_type: str) -> None: ...

    async def copy(self, source: str, target: str) -> bool:
        """Copy an object's bytes (a forwarded attachment); False when the source is not stored."""
        ...


class SeenReports(Protocol):
    """The latest `UserSeen` report of a user on PARLEY_USERS (the directory's source)."""

    async def last_seen(self, organization_id: str, user_id: str) -> api.UserSeen | None: ...


class ChatUnitOfWork:
    """The repository, the outbox and the command lock: a commit writes state + effects, then hands over.

    `deciding()` holds the lock while a use case reads, decides and commits, and waits for the commits'
    events AFTER releasing it: the next command's decision need not wait for this one's publishes (the
    outbox carries them out in commit order all the same), so commands pipeline.

    Group commit (`commit_grouped`): decisions that only add independent records (a room message and its
    events) join the open group instead of writing at once; the group is written as ONE commit (one
    commit document, one outbox entry) by a writer that queues for the lock behind the commands waiting
    for it, so every send decided meanwhile joins. Each waits for the group's write and events before it
    answers (durable once answered). Any other commit first writes the open group: commits stay in the
    order they were decided.
    """

    def __init__(
        self, repository: ChatRepository, outbox: Outbox, *, wait_seconds: float = EFFECTS_WAIT_SECONDS
    ):
        self.repository = repository
        self.outbox = outbox
        self.lock = asyncio.Lock()
        self._wait = wait_seconds
        self._owed: contextvars.ContextVar[list[Owed | asyncio.Future[None]] | None] = contextvars.ContextVar(
            "owed", default=None
        )
        self._group: list[tuple[str, Decision[Any], asyncio.Future[None]]] = []
        self._group_writer: asyncio.Task[None] | None = None
        self._settling: set[asyncio.Task[None]] = set()

    @contextlib.asynccontextmanager
    async def deciding(self) -> AsyncIterator[None]:
        owed: list[Owed | asyncio.Future[None]] = []
        token = self._owed.set(owed)
        try:
            async with self.lock:
                yield
        finally:
            self._owed.reset(token)
        # The answer leaves once the events are out (a client hears its own change first), or after the
        # wait: they stay owed and the outbox carries them out later.
        for each in owed:
            if isinstance(each, asyncio.Future):
                await each  # a grouped commit: written (or failed) and its events out
            else:
                await self.outbox.carried_out(each, self._wait)

    async def commit(self, organization_id: str, decision: Decision[Any]) -> None:
        await self._write_group()  # decided before this one: committed before it
        owed = await self._write(organization_id, [decision])
        if owed is None:
            return
        pending = self._owed.get()
        if pending is not None:
            pending.append(owed)  # waited for once the lock is released
        else:
            await self.outbox.carried_out(owed, self._wait)

    async def commit_grouped(self, organization_id: str, decision: Decision[Any]) -> None:
        """Within `deciding()`: commit a decision that only adds records no other decision of the group
        reads (a message), together with the others decided meanwhile. Waited for by `deciding()`."""
        pending = self._owed.get()
        if pending is None:
            await self.commit(organization_id, decision)
            return
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._group.append((organization_id, decision, done))
        pending.append(done)
        if self._group_writer is None or self._group_writer.done():
            self._group_writer = asyncio.create_task(self._write_group_after_queue())

    async def _write_group_after_queue(self) -> None:
        # Queued behind the commands already waiting for the lock: their sends join this group.
        async with self.lock:
            await self._write_group()

    async def _write_group(self) -> None:
        """Write the open group (under the lock): one commit per organization, in decision order."""
        group, self._group = self._group, []
        if not group:
            return
        by_org: dict[str, list[tuple[Decision[Any], asyncio.Future[None]]]] = {}
        for org, decision, done in group:
            by_org.setdefault(org, []).append((decision, done))
        for org, members in by_org.items():
            try:
                owed = await self._write(org, [decision for decision, _ in members])
            except Exception as exc:
                for _, done in members:
                    if not done.done():
                        done.set_exception(exc)
                continue
            futures = [done for _, done in members]
            if owed is None:
                for done in futures:
                    done.set_result(None)
            else:
                # Its events are waited for off the lock, as `deciding()` does for a single commit.
                task = asyncio.create_task(self._settle(owed, futures))
                self._settling.add(task)
                task.add_done_callback(self._settling.discard)

    async def _settle(self, owed: Owed, futures: list[asyncio.Future[None]]) -> None:
        await self.outbox.carried_out(owed, self._wait)
        for done in futures:
            if not done.done():
                done.set_result(None)

    async def _write(self, organization_id: str, decisions: Sequence[Decision[Any]]) -> Owed | None:
        decision = decisions[0] if len(decisions) == 1 else domain.merged(decisions)
        effects = effects_of(organization_id, decision)
        if decision.delete_rooms:
            # However a room goes (deleted, its last member gone, its workspace deleted), its files go
            # with it: the repository deletes their records with the room, the outbox their objects.
            files = await self.repository.files_of_rooms(organization_id, decision.delete_rooms)
            effects.extend(DeleteObject(object_name=name) for name in files)
        if decision.delete_attachments:
            # A deleted attachment's rendered previews go with it (their records in the same commit).
            previews = await self.repository.previews_of_files(organization_id, decision.delete_attachments)
            effects.extend(DeleteObject(object_name=name) for name in previews)
        owed = await self.repository.commit(organization_id, decision, effects)
        if owed is not None:
            self.outbox.watch(owed)  # a group's owed is waited for by a task that runs later
            self.outbox.committed(owed)
        return owed


def chat_caller(request: Request[Any]) -> Caller:
    user_id = api.canonical_uuid(request.caller.user_id)
    if user_id is None:
        raise NotAllowed("chat needs a user id that is a UUID")
    return Caller(organization_id=request.caller.organization_id, user_id=user_id)


# How many rendered previews a chat process remembers are in the bucket (names only).
RENDERED_REMEMBERED = 10_000


class ChatHandlers:
    def __init__(
        self,
        uow: ChatUnitOfWork,
        conferences: ConferencePort,
        seen: SeenReports,
        *,
        clock: Callable[[], datetime] = utcnow,
        ids: Callable[[], str] = new_id,
        max_group_members: int = domain.MAX_GROUP_MEMBERS,
        message_limits: domain.MessageLimits = domain.DEFAULT_MESSAGE_LIMITS,
        files: FilesPort | None = None,
        renderer: Executor | None = None,
        max_preview_source_bytes: int = 64 * 1024 * 1024,
    ) -> None:
        self._uow = uow
        self._repo = uow.repository
        self._conferences = conferences
        self._seen = seen
        self._clock = clock
        self._ids = ids
        self._max_group_members = max_group_members
        self._message_limits = message_limits
        self._capabilities = message_limits.capabilities()
        self._files = files
        # Rendering is CPU work: off the event loop, in this pool (None: the loop's default pool).
        self._renderer = renderer
        self._max_preview_source = max_preview_source_bytes
        # Previews known to be in the bucket: a cached one is answered without asking the object store
        # first. A preview goes only with its file (or room), whose record `_previewable` checks first.
        self._rendered: OrderedDict[str, None] = OrderedDict()

    def _ctx(self) -> Context:
        return Context(now=self._clock(), new_id=self._ids)

    async def _room(self, caller: Caller, room_id: str) -> tuple[Room | None, Room | None]:
        return await self._repo.room_with_parent(caller.organization_id, room_id)

    async def _channels(self, caller: Caller, room: Room | None) -> Sequence[Room]:
        if room is None or room.type != "workspace" or room.organization_id != caller.organization_id:
            return ()
        return await self._repo.channels(caller.organization_id, room.id)

    # ---------------------------------------------------------------- rooms

    @rejecting
    async def list_room(self, request: Request[api.ListRooms]) -> Accepted[api.RoomsPage]:
        """A page of the caller's rooms by id, after `after`, within the bus's reply budget. The list
        fits one page but for users in very many large rooms, who pay one storage read per page."""
        caller, body = chat_caller(request), request.body
        rooms = await self._repo.rooms_of_user(caller.organization_id, caller.user_id)
        views = sorted(domain.list_rooms(caller, rooms, body.extra_fields), key=lambda room: room.id)
        if body.after is not None:
            views = [room for room in views if room.id > body.after]
        page = fit_reply(views, REPLY_BUDGET_BYTES)
        after = page[-1].id if len(page) < len(views) else None
        return Accepted(value=api.RoomsPage(items=tuple(page), after=after))

    @rejecting
    async def get_room(self, request: Request[api.RoomRef]) -> Accepted[api.Room]:
        caller, room_id = chat_caller(request), request.body.room_id
        room, workspace = await self._room(caller, room_id)
        channels = await self._channels(caller, room)
        settings = await self._repo.settings_of_rooms(caller.user_id, [room_id, *(c.id for c in channels)])
        rank = None
        if room is not None and room.type == "workspace":
            found = await self._repo.workspace_rank(caller.user_id, room.id)
            rank = found.rank if found is not None else None
        view = domain.get_room(
            room,
            caller,
            room_id,
            workspace=workspace,
            channels=channels,
            settings=settings,
            workspace_rank=rank,
        )
        return Accepted(value=view)

    @rejecting
    async def insert_room(self, request: Request[api.RoomCreationFields]) -> Accepted[api.Room]:
        caller, body = chat_caller(request), request.body
        async with self._uow.deciding():
            org = caller.organization_id
            known = {u.id for u in await self._users(org, body.members_ids)}
            one_to_one = None
            if body.room_type == "one_to_one" and len(body.members_ids) == 1:
                one_to_one = await self._repo.one_to_one(org, caller.user_id, body.members_ids[0])
            parent: Room | None = None
            parent_channels: Sequence[Room] = ()
            if body.parent_id is not None:
                parent = await self._repo.room(org, body.parent_id)
                parent_channels = await self._channels(caller, parent)
            highest = None
            if body.room_type == "workspace":
                highest = await self._repo.highest_workspace_ranks(org, [caller.user_id, *body.members_ids])
            decision = domain.decide_insert_room(
                caller,
                body,
                self._ctx(),
                known_users=known,
                one_to_one=one_to_one,
                parent=parent,
                parent_channels=tuple(parent_channels),
                highest_workspace_ranks=highest,
                max_group_members=self._max_group_members,
            )
            await self._uow.commit(org, decision)
        return Accepted(value=decision.result)

    @rejecting
    async def update_room(self, request: Request[api.UpdateRoom]) -> Accepted[api.Room]:
        caller, body = chat_caller(request), request.body
        async with self._uow.deciding():
            room, workspace = await self._room(caller, body.room_id)
            decision = domain.decide_update_room(room, caller, body, self._ctx(), workspace=workspace)
            await self._uow.commit(caller.organization_id, decision)
        return Accepted(value=decision.result)

    @rejecting
    async def delete_room(self, request: Request[api.RoomRef]) -> Accepted[Empty]:
        caller, body = chat_caller(request), request.body
        async with self._uow.deciding():
            room, workspace = await self._room(caller, body.room_id)
            channels = await self._channels(caller, room)
            decision = domain.decide_delete_room(
                room, caller, body.room_id, self._ctx(), workspace=workspace, channels=channels
            )
            await self._uow.commit(caller.organization_id, decision)
        return Accepted(value=Empty())

    @rejecting
    async def update_workspaces_rank(self, request: Request[api.UpdateWorkspacesRank]) -> Accepted[Empty]:
        caller = chat_caller(request)
        async with self._uow.deciding():
            workspaces = await self._repo.workspaces_of_user(caller.organization_id, caller.user_id)
            decision = domain.decide_workspaces_rank(caller, request.body, workspaces)
            await self._uow.commit(caller.organization_id, decision)
        return Accepted(value=Empty())

    @rejecting
    async def update_channels_rank(self, request: Request[api.UpdateChannelsRank]) -> Accepted[Empty]:
        caller, body = chat_caller(request), request.body
        async with self._uow.deciding():
            workspace = await self._repo.room(caller.organization_id, body.workspace_id)
            channels = await self._channels(caller, workspace)
            decision = domain.decide_channels_rank(workspace, caller, body, channels)
            await self._uow.commit(caller.organization_id, decision)
        return Accepted(value=Empty())

    async def _mute(self, request: Request[api.RoomRef], *, muted: bool) -> Accepted[Empty]:
        caller, room_id = chat_caller(request), request.body.room_id
        async with self._uow.deciding():
            room, workspace = await self._room(caller, room_id)
            settings = await self._repo.settings(room_id, caller.user_id)
            decision = domain.decide_mute(
                room, caller, room_id, settings, self._ctx(), muted=muted, workspace=workspace
            )
            await self._uow.commit(caller.organization_id, decision)
        return Accepted(value=Empty())

    @rejecting
    async def mute_room(self, request: Request[api.RoomRef]) -> Accepted[Empty]:
        return await self._mute(request, muted=True)

    @rejecting
    async def unmute_room(self, request: Request[api.RoomRef]) -> Accepted[Empty]:
        return await self._mute(request, muted=False)

    @rejecting
    async def clear_room_history(self, request: Request[api.RoomRef]) -> Accepted[api.ClearedDate]:
        caller, room_id = chat_caller(request), request.body.room_id
        async with self._uow.deciding():
            room, workspace = await self._room(caller, room_id)
            settings = await self._repo.settings(room_id, caller.user_id)
            decision = domain.decide_clear(room, caller, room_id, settings, self._ctx(), workspace=workspace)
            await self._uow.commit(caller.organization_id, decision)
        return Accepted(value=decision.result)

    # ---------------------------------------------------------------- members

    @rejecting
    async def list_room_member(self, request: Request[api.RoomRef]) -> Accepted[tuple[api.Member, ...]]:
        caller, room_id = chat_caller(request), request.body.room_id
        room, workspace = await self._room(caller, room_id)
        return Accepted(value=domain.list_members(room, caller, room_id, workspace=workspace))

    @rejecting
    async def insert_room_member(
        self, request: Request[api.InsertRoomMember]
    ) -> Accepted[api.MemberInserted]:
        caller, body = chat_caller(request), request.body
        org = caller.organization_id
        async with self._uow.deciding():
            user = await self._user(org, body.user_id)
            room, workspace = await self._room(caller, body.room_id)
            highest = 0
            if room is not None and room.type == "workspace":
                highest = (await self._repo.highest_workspace_ranks(org, [body.user_id])).get(body.user_id, 0)
            decision = domain.decide_insert_member(
                room,
                caller,
                body,
                self._ctx(),
                user=user,
                workspace=workspace,
                highest_workspace_rank=highest,
                max_group_members=self._max_group_members,
            )
            await self._uow.commit(org, decision)
        return Accepted(value=decision.result)

    @rejecting
    async def delete_room_member(self, request: Request[api.MemberRef]) -> Accepted[Empty]:
        caller, body = chat_caller(request), request.body
        async with self._uow.deciding():
            room, workspace = await self._room(caller, body.room_id)
            channels = await self._channels(caller, room)
            decision = domain.decide_remove_member(
                room, caller, body, self._ctx(), workspace=workspace, channels=channels
            )
            await self._uow.commit(caller.organization_id, decision)
        return Accepted(value=Empty())

    async def _owner(self, request: Request[api.MemberRef], *, promote: bool) -> Accepted[Empty]:
        caller, body = chat_caller(request), request.body
        async with self._uow.deciding():
            room, workspace = await self._room(caller, body.room_id)
            decision = domain.decide_owner(
                room, caller, body, self._ctx(), promote=promote, workspace=workspace
            )
            await self._uow.commit(caller.organization_id, decision)
        return Accepted(value=Empty())

    @rejecting
    async def update_to_owner(self, request: Request[api.MemberRef]) -> Accepted[Empty]:
        return await self._owner(request, promote=True)

    @rejecting
    async def delete_owner(self, request: Request[api.MemberRef]) -> Accepted[Empty]:
        return await self._owner(request, promote=False)

    # ---------------------------------------------------------------- users

    async def _users(self, organization_id: str, user_ids: Sequence[str]) -> list[DirectoryUser]:
        """The known users among `user_ids`; a directory miss asks PARLEY_USERS (the report may be on
        its way to the directory's consumer) and keeps what it finds."""
        found = list(await self._repo.users(organization_id, user_ids))
        known = {u.id for u in found}
        missing = [user_id for user_id in dict.fromkeys(user_ids) if user_id not in known]
        reports = await asyncio.gather(*(self._seen.last_seen(organization_id, u) for u in missing))
        for report in reports:
            if report is not None and report.organization_id == organization_id:
                user = domain.record_seen(report, None, self._clock())
                await self._repo.save_user(user)
                found.append(user)
        return found

    async def _user(self, organization_id: str, user_id: str) -> DirectoryUser | None:
        users = await self._users(organization_id, [user_id])
        return users[0] if users else None

    @rejecting
    async def get_users(self, request: Request[api.GetUsers]) -> Accepted[tuple[api.User, ...]]:
        caller = chat_caller(request)
        wanted = domain.check_user_ids(request.body.user_ids)
        found = await self._users(caller.organization_id, wanted)
        return Accepted(value=domain.get_users(caller, wanted, found))

    @rejecting
    async def get_user(self, request: Request[api.UserRef]) -> Accepted[api.User]:
        caller, user_id = chat_caller(request), request.body.user_id
        user = await self._user(caller.organization_id, user_id)
        return Accepted(value=domain.get_user(user, caller, user_id))

    @rejecting
    async def get_capabilities(self, request: Request[Empty]) -> Accepted[api.Capabilities]:
        chat_caller(request)
        return Accepted(value=self._capabilities)

    async def record_seen(self, seen: api.UserSeen) -> None:
        """A gateway's `UserSeen` report: upsert the directory entry (fed by the PARLEY_USERS consumer)."""
        current = await self._repo.user(seen.organization_id, seen.user_id)
        await self._repo.save_user(domain.record_seen(seen, current, self._clock()))

    # ---------------------------------------------------------------- room meetings

    @rejecting
    async def get_meeting_by_room_id(self, request: Request[api.RoomRef]) -> Accepted[api.Meeting]:
        caller, room_id = chat_caller(request), request.body.room_id
        room, workspace = await self._room(caller, room_id)
        stored = None
        if room is not None and room.meeting_id is not None:
            stored = await self._repo.meeting(caller.organization_id, room.meeting_id)
        meeting = domain.meeting_of(room, caller, room_id, stored, workspace=workspace)
        live = await self._conferences.live(caller.organization_id, meeting.id)
        return Accepted(
            value=domain.meeting_view(
                meeting, participants=live.participants, active=live.active, started_at=live.started_at
            )
        )

    @rejecting
    async def create_meeting(self, request: Request[api.MeetingCreation]) -> Accepted[api.Meeting]:
        caller, body = chat_caller(request), request.body
        async with self._uow.deciding():
            room, workspace = await self._room(caller, body.room_id)
            decision = domain.decide_create_meeting(room, caller, body, self._ctx(), workspace=workspace)
            meeting = decision.result
            # The conference first: if it cannot be created nothing is committed (503); a conference
            # created for a commit that then fails stays empty and ends on its empty timeout.
            await self._conferences.create_guarded(
                caller.organization_id, caller.user_id, meeting.id, meeting.room_id, meeting.name
            )
            await self._uow.commit(caller.organization_id, decision)
        return Accepted(value=domain.meeting_view(meeting))

    @rejecting
    async def admit(self, request: Request[api.AdmissionQuery]) -> Accepted[api.Admitted]:
        """Asked by the conference service on every join of a room meeting's conference."""
        query = request.body
        user_id = api.canonical_uuid(query.user_id)
        room_id = api.canonical_uuid(query.resource)
        if user_id is None or room_id is None:
            return Accepted(value=api.Admitted(admitted=False))
        room, workspace = await self._repo.room_with_parent(query.organization_id, room_id)
        normalised = api.AdmissionQuery(
            organization_id=query.organization_id, user_id=user_id, resource=room_id
        )
        return Accepted(value=api.Admitted(admitted=domain.admits(room, normalised, workspace=workspace)))

    # ---------------------------------------------------------------- messages and forwarding

    @rejecting
    async def send_message(self, request: Request[api.SendMessage]) -> Accepted[api.Message]:
        caller, body = chat_caller(request), request.body
        async with self._uow.deciding():
            room, workspace = await self._room(caller, body.room_id)
            replied = None
            if body.reply_id is not None:
                replied = await self._repo.message(caller.organization_id, body.reply_id)
            decision = domain.decide_send_message(
                room, caller, body, self._ctx(), workspace=workspace, replied=replied
            )
            # Durable once answered: the commit (message + its events) is written before the answer,
            # together with the sends decided meanwhile (one commit for them all).
            await self._uow.commit_grouped(caller.organization_id, decision)
        return Accepted(value=decision.result)

    @rejecting
    async def list_messages(self, request: Request[api.ListMessages]) -> Accepted[api.MessagesPage]:
        caller, body = chat_caller(request), request.body
        room, workspace = await self._room(caller, body.room_id)
        domain.access(room, caller, body.room_id, workspace=workspace)  # before reading any message
        settings = await self._repo.settings(body.room_id, caller.user_id)
        # One more than asked: whether an older page exists.
        page = await self._repo.messages(body.room_id, before=body.before, limit=body.limit + 1)
        files = await self._repo.attachments_of_messages(
            caller.organization_id, body.room_id, [m.id for m in page]
        )
        view = domain.list_messages(
            room, caller, body, page, workspace=workspace, settings=settings, attachments=files
        )
        return Accepted(value=view)

    @rejecting
    async def edit_message(self, request: Request[api.EditMessage]) -> Accepted[api.Message]:
        caller, body = chat_caller(request), request.body
        async with self._uow.deciding():
            room, workspace = await self._room(caller, body.room_id)
            message = await self._repo.message(caller.organization_id, body.message_id)
            decision = domain.decide_edit_message(
                room, caller, body, message, self._ctx(), workspace=workspace, limits=self._message_limits
            )
            await self._uow.commit(caller.organization_id, decision)
        return Accepted(value=decision.result)

    @rejecting
    async def delete_message(self, request: Request[api.RoomMessageRef]) -> Accepted[Empty]:
        caller, body = chat_caller(request), request.body
        async with self._uow.deciding():
            room, workspace = await self._room(caller, body.room_id)
            message = await self._repo.message(caller.organization_id, body.message_id)
            decision = domain.decide_delete_message(
                room, caller, body, message, self._ctx(), workspace=workspace, limits=self._message_limits
            )
            await self._uow.commit(caller.organization_id, decision)
        return Accepted(value=Empty())

    @rejecting
    async def forward_messages(self, request: Request[api.ForwardMessages]) -> Accepted[Empty]:
        caller, body = chat_caller(request), request.body
        org = caller.organization_id
        async with self._uow.deciding():
            room, workspace = await self._room(caller, body.room_id)
            domain.access(room, caller, body.room_id, workspace=workspace)  # before reading the originals
            originals: dict[str, domain.Original] = {}
            for item in body.messages:
                message_id = api.canonical_uuid(item.original_message)
                if message_id is None or message_id in originals:
                    continue
                message = await self._repo.message(org, message_id)
                if message is None:
                    originals[message_id] = domain.Original(None)
                    continue
                origin, origin_workspace = await self._room(caller, message.room_id)
                carried = await self._repo.attachments_of_messages(org, message.room_id, [message.id])
                originals[message_id] = domain.Original(message, origin, origin_workspace, tuple(carried))
            decision = domain.decide_forward(
                room, caller, body, self._ctx(), originals=originals, workspace=workspace
            )
            # The bytes first, then the records: a copy that fails leaves no record; a refusal after a
            # copy (the commit failing) deletes the copies, so nothing unreferenced stays.
            store = self._files
            copied: list[str] = []
            try:
                for copy in decision.result:
                    if store is None or not await store.copy(copy.source, copy.target):
                        raise errors.NotFound(f"the bytes of {copy.source} are gone")
                    copied.append(copy.target)
                await self._uow.commit(org, decision)
            except Exception:
                for target in copied:
                    assert store is not None  # copied only through it
                    try:
                        await store.delete(target)
                    except Exception:
                        log.exception("a forwarded attachment's copy could not be deleted", target=target)
                raise
        return Accepted(value=Empty())

    @rejecting
    async def list_push_rooms(self, request: Request[Empty]) -> Accepted[api.PushRooms]:
        """The gateway's question for a push socket: which rooms' messages it reads."""
        caller = chat_caller(request)
        rooms = await self._repo.rooms_of_user(caller.organization_id, caller.user_id)
        views = domain.list_rooms(caller, rooms)
        ids = [room_id for view in views for room_id in (view.id, *(c.id for c in view.children or ()))]
        return Accepted(value=api.PushRooms(room_ids=tuple(ids)))

    # ---------------------------------------------------------------- attachments

    @rejecting
    async def prepare_attachment(self, request: Request[api.RoomRef]) -> Accepted[api.Id]:
        """Before an upload's body is read: may the caller upload into this room? Answers the new file's id
        (nothing is written: an upload that never comes leaves nothing behind)."""
        caller, room_id = chat_caller(request), request.body.room_id
        room, workspace = await self._room(caller, room_id)
        domain.check_attachment_room(room, caller, room_id, workspace=workspace)
        return Accepted(value=api.Id(id=self._ids()))

    @rejecting
    async def insert_attachment(self, request: Request[api.InsertAttachment]) -> Accepted[api.Id]:
        """The bytes are stored: record them, or, refused, delete them (nothing stays on a refusal)."""
        caller, body = chat_caller(request), request.body
        try:
            async with self._uow.deciding():
                room, workspace = await self._room(caller, body.room_id)
                existing = await self._repo.attachment(caller.organization_id, body.file_id)
                decision = domain.decide_insert_attachment(
                    room, caller, body, self._ctx(), workspace=workspace, existing=existing
                )
                await self._uow.commit(caller.organization_id, decision)
        except (errors.NotFound, errors.NotAllowed, errors.InvalidCommand):
            # Not a Conflict: a record already holding this file id owns the object.
            if self._files is not None:
                try:
                    await self._files.delete(api.attachment_object(body.file_id))
                except Exception:
                    # The refusal stands; the bytes stay behind unreferenced (logged, to be swept).
                    log.exception("a refused attachment's bytes could not be deleted", file_id=body.file_id)
            raise
        return Accepted(value=decision.result)

    @rejecting
    async def list_room_attachment_info(
        self, request: Request[api.ListAttachments]
    ) -> Accepted[api.AttachmentsPagination]:
        caller, body = chat_caller(request), request.body
        room, workspace = await self._room(caller, body.room_id)
        domain.access(room, caller, body.room_id, workspace=workspace)
        cursor = domain.decode_attachment_cursor(body.filter)
        found = await self._repo.room_attachments(
            caller.organization_id,
            body.room_id,
            before=None if cursor is None else (cursor.created_at, cursor.id),
            limit=body.items_number + 1,
        )
        return Accepted(value=domain.attachments_page(found, body.items_number))

    async def _attachment(
        self, caller: Caller, file_id: str
    ) -> tuple[api.Attachment | None, Room | None, Room | None]:
        attachment = await self._repo.attachment(caller.organization_id, file_id)
        if attachment is None:
            return None, None, None
        room, workspace = await self._room(caller, attachment.room_id)
        return attachment, room, workspace

    @rejecting
    async def get_attachment_info(self, request: Request[api.FileRef]) -> Accepted[api.Attachment]:
        caller, file_id = chat_caller(request), request.body.file_id
        attachment, room, workspace = await self._attachment(caller, file_id)
        return Accepted(value=domain.attachment_view(attachment, room, caller, file_id, workspace=workspace))

    @rejecting
    async def delete_attachment(self, request: Request[api.FileRef]) -> Accepted[Empty]:
        caller, file_id = chat_caller(request), request.body.file_id
        async with self._uow.deciding():
            attachment, room, workspace = await self._attachment(caller, file_id)
            decision = domain.decide_delete_attachment(attachment, room, caller, file_id, workspace=workspace)
            await self._uow.commit(caller.organization_id, decision)
        return Accepted(value=Empty())

    # ---------------------------------------------------------------- pictures (issue 11)

    @property
    def _bucket(self) -> FilesPort:
        if self._files is None:
            raise errors.Unavailable("service unavailable: no file storage configured")
        return self._files

    async def _cpu(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._renderer, fn, *args)

    async def _picture_bytes(self, upload: str, max_bytes: int) -> tuple[bytes, str]:
        """The streamed upload, decoded (a real image, not only a declared type): bytes and real type."""
        if not upload.startswith("uploads/"):
            raise errors.InvalidCommand("upload must name an object under uploads/")
        data = await self._bucket.read(upload, max_bytes)
        if data is None:
            raise errors.InvalidCommand(f"upload {upload} is not stored")
        mime: str = await self._cpu(previews.check_picture, data)
        return data, mime

    async def _drop_upload(self, upload: str) -> None:
        """The upload is kept as the picture or refused: either way it goes (a missing one is fine). A
        failure here is logged, not raised: it must not turn a committed picture into an error."""
        if not upload.startswith("uploads/"):
            return
        try:
            await self._bucket.delete(upload)
        except (nats.errors.Error, TimeoutError) as exc:
            log.warning("could not delete a picture upload", upload=upload, error=repr(exc))

    @rejecting
    async def check_room_picture(
        self, request: Request[api.RoomPictureCheck]
    ) -> Accepted[api.UploadAllowance]:
        caller, body = chat_caller(request), request.body
        room, workspace = await self._room(caller, body.room_id)
        domain.check_room_picture(
            room, caller, body.room_id, size=body.size, mime_type=body.mime_type, workspace=workspace
        )
        return Accepted(
            value=api.UploadAllowance(max_bytes=domain.CAPABILITIES.max_room_image_size_in_kb * 1024)
        )

    @rejecting
    async def update_room_picture(self, request: Request[api.RoomPictureUpload]) -> Accepted[Empty]:
        caller, body = chat_caller(request), request.body
        try:
            async with self._uow.lock:
                room, workspace = await self._room(caller, body.room_id)
                found = domain.check_room_picture(
                    room, caller, body.room_id, size=body.size, mime_type=body.mime_type, workspace=workspace
                )
                limit = domain.CAPABILITIES.max_room_image_size_in_kb * 1024
                data, mime = await self._picture_bytes(body.upload, limit)
                # The bytes first: a commit then never names a picture that is not stored.
                await self._bucket.write(domain.room_picture_object(found.id), data, mime)
                decision = domain.decide_room_picture(found, mime, self._ctx())
                await self._uow.commit(caller.organization_id, decision)
        finally:
            await self._drop_upload(body.upload)
        return Accepted(value=Empty())

    @rejecting
    async def get_room_picture(self, request: Request[api.RoomRef]) -> Accepted[api.StoredFile]:
        caller, room_id = chat_caller(request), request.body.room_id
        room, workspace = await self._room(caller, room_id)
        return Accepted(value=domain.room_picture(room, caller, room_id, workspace=workspace))

    @rejecting
    async def delete_room_picture(self, request: Request[api.RoomRef]) -> Accepted[Empty]:
        caller, room_id = chat_caller(request), request.body.room_id
        async with self._uow.lock:
            room, workspace = await self._room(caller, room_id)
            decision = domain.decide_delete_room_picture(
                room, caller, room_id, self._ctx(), workspace=workspace
            )
            await self._uow.commit(caller.organization_id, decision)
        return Accepted(value=Empty())

    @rejecting
    async def check_user_picture(
        self, request: Request[api.UserPictureCheck]
    ) -> Accepted[api.UploadAllowance]:
        caller, body = chat_caller(request), request.body
        user = (
            await self._user(caller.organization_id, body.user_id) if body.user_id == caller.user_id else None
        )
        domain.check_user_picture(user, caller, body.user_id, size=body.size, mime_type=body.mime_type)
        return Accepted(
            value=api.UploadAllowance(max_bytes=domain.CAPABILITIES.max_user_image_size_in_kb * 1024)
        )

    @rejecting
    async def update_user_picture(self, request: Request[api.UserPictureUpload]) -> Accepted[Empty]:
        caller, body = chat_caller(request), request.body
        org = caller.organization_id
        try:
            async with self._uow.lock:
                user = await self._user(org, body.user_id) if body.user_id == caller.user_id else None
                found = domain.check_user_picture(
                    user, caller, body.user_id, size=body.size, mime_type=body.mime_type
                )
                limit = domain.CAPABILITIES.max_user_image_size_in_kb * 1024
                data, mime = await self._picture_bytes(body.upload, limit)
                await self._bucket.write(domain.user_picture_object(found.id), data, mime)
                rooms = await self._repo.rooms_of_user(org, found.id)
                decision = domain.decide_user_picture(found, mime, rooms.rooms, self._ctx())
                await self._uow.commit(org, decision)
        finally:
            await self._drop_upload(body.upload)
        return Accepted(value=Empty())

    @rejecting
    async def get_user_picture(self, request: Request[api.UserRef]) -> Accepted[api.StoredFile]:
        caller, user_id = chat_caller(request), request.body.user_id
        user = await self._user(caller.organization_id, user_id)
        return Accepted(value=domain.user_picture(user, caller, user_id))

    @rejecting
    async def delete_user_picture(self, request: Request[api.UserRef]) -> Accepted[Empty]:
        caller, user_id = chat_caller(request), request.body.user_id
        org = caller.organization_id
        async with self._uow.lock:
            user = await self._user(org, user_id) if user_id == caller.user_id else None
            rooms = await self._repo.rooms_of_user(org, user_id) if user is not None else None
            decision = domain.decide_delete_user_picture(
                user, caller, user_id, rooms.rooms if rooms is not None else (), self._ctx()
            )
            await self._uow.commit(org, decision)
        return Accepted(value=Empty())

    # ---------------------------------------------------------------- previews (issue 11)

    async def _previewable(self, caller: Caller, file_id: str) -> api.Attachment:
        """The note's order: file unknown 404, caller not a member of its room 403."""
        record = await self._repo.attachment(caller.organization_id, file_id)
        if record is None:
            raise errors.NotFound(f"file {file_id} not found")
        room, workspace = await self._room(caller, record.room_id)
        domain.access(room, caller, record.room_id, workspace=workspace)
        return record

    async def _preview(
        self, caller: Caller, file_id: str, key: str, render: Callable[[bytes], previews.Rendered], mime: str
    ) -> api.StoredFile:
        """A rendered preview from the cache (`previews/{fileId}/{key}`), or rendered now and kept."""
        record = await self._previewable(caller, file_id)
        name = f"previews/{record.id}/{key}"
        if name in self._rendered or await self._bucket.exists(name):
            self._remember_rendered(name)
            return api.StoredFile(object_name=name, mime_type=mime, cached=True)
        source = await self._bucket.read(api.attachment_object(record.id), self._max_preview_source)
        if source is None:
            raise errors.NotFound(f"file {file_id} has no content")
        rendered: previews.Rendered = await self._cpu(render, source)
        await self._repo.record_preview(caller.organization_id, record.room_id, record.id, name)
        await self._bucket.write(name, rendered.data, rendered.mime_type)
        self._remember_rendered(name)
        return api.StoredFile(object_name=name, mime_type=rendered.mime_type, cached=False)

    def _remember_rendered(self, name: str) -> None:
        self._rendered[name] = None
        self._rendered.move_to_end(name)
        if len(self._rendered) > RENDERED_REMEMBERED:
            self._rendered.popitem(last=False)

    async def _image(
        self, request: Request[api.ImagePreviewQuery], *, thumbnail: bool, pdf: bool
    ) -> Accepted[api.StoredFile]:
        caller, body = chat_caller(request), request.body
        options = previews.image_options(
            body.area,
            quality=body.quality,
            output_format=body.output_format,
            # A preview has no shape, a thumbnail no crop (the seed's parameters of each).
            shape=body.shape if thumbnail else None,
            crop=body.crop if not thumbnail else None,
            fill=thumbnail,
        )
        kind = ("pdf-" if pdf else "image-") + ("thumbnail" if thumbnail else "preview")
        render = previews.render_pdf_thumbnail if pdf else previews.render_image

        def run(source: bytes) -> previews.Rendered:
            return render(source, options)

        return Accepted(
            value=await self._preview(caller, body.file_id, options.key(kind), run, options.mime_type)
        )

    @rejecting
    async def get_image_preview(self, request: Request[api.ImagePreviewQuery]) -> Accepted[api.StoredFile]:
        return await self._image(request, thumbnail=False, pdf=False)

    @rejecting
    async def get_image_thumbnail(self, request: Request[api.ImagePreviewQuery]) -> Accepted[api.StoredFile]:
        return await self._image(request, thumbnail=True, pdf=False)

    @rejecting
    async def get_pdf_thumbnail(self, request: Request[api.ImagePreviewQuery]) -> Accepted[api.StoredFile]:
        return await self._image(request, thumbnail=True, pdf=True)

    @rejecting
    async def get_pdf_preview(self, request: Request[api.PdfPreviewQuery]) -> Accepted[api.StoredFile]:
        caller, body = chat_caller(request), request.body
        if body.first_page is not None and body.first_page < 1:
            raise errors.InvalidCommand("firstPage must be at least 1")
        if body.last_page is not None and body.last_page < 0:
            raise errors.InvalidCommand("lastPage must be at least 0 (0 = the last page)")
        key = f"pdf-{body.first_page or 1}-{body.last_page or 0}"

        def run(source: bytes) -> previews.Rendered:
            return previews.pdf_pages(source, body.first_page, body.last_page)

        return Accepted(value=await self._preview(caller, body.file_id, key, run, "application/pdf"))
