"""The chat service over a real nats-server and SQLite, asked on the bus as the gateway asks it.

The service runs in-process (`serve_chat`, the bootstrap `python -m parley_chat` runs); requests go through
`RpcClient` as `Request(caller, body)`; events are read back from PARLEY_CHAT and from each user's push
subject on PARLEY_USER_PUSH. The conference service is stood in for by responders on its real subjects
(createGuarded, get, removeParticipant, end) that record what they were asked, with the conference
service's own contract (`parley_common.contracts.conference`).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import nats
import pytest
from nats.aio.client import Client
from nats.js.api import DeliverPolicy
from parley_chat.adapters.bus import subject_of
from parley_chat.adapters.repository import OUTBOX, StorageChatRepository
from parley_chat.app import serve_chat
from parley_chat.domain import Decision
from parley_chat.settings import Settings
from parley_common.config import CommonSettings
from parley_common.contracts import chat as api
from parley_common.contracts import conference as conference_api
from parley_common.contracts.base import Empty
from parley_common.contracts.health import HealthQuery, ServiceHealth
from parley_common.contracts.rpc import Accepted, Caller, Rejected, Request
from parley_common.messaging import subjects
from parley_common.messaging.rpc import Responders, RpcClient
from parley_common.messaging.streams import CHAT_STREAM, USER_PUSH_STREAM, USERS_STREAM
from parley_common.processes import NatsServer
from parley_common.storage import SqliteStore

ORG = "org-a"
OTHER_ORG = "org-b"


def uid() -> str:
    return str(uuid.uuid4())


class Conferences:
    """The conference service's side of room meetings, on its real subjects: records what it is asked."""

    def __init__(self) -> None:
        self.created: list[Request[conference_api.CreateGuardedConference]] = []
        self.ended: list[Request[conference_api.EndConferenceWebCommand]] = []
        self.removed: list[Request[conference_api.RemoveParticipantCommand]] = []
        self.participants: dict[str, list[conference_api.ConferenceParticipant]] = {}

    async def start(self, nc: Client) -> Responders:
        responders = Responders(nc)

        def service(request: Request[Any]) -> bool:
            # As the conference service: only a SERVICE_SCOPE caller ends or removes without being in it.
            return conference_api.SERVICE_SCOPE in request.caller.scopes

        async def create(
            request: Request[conference_api.CreateGuardedConference],
        ) -> Accepted[conference_api.ConferenceSummary]:
            self.created.append(request)
            summary = conference_api.ConferenceSummary(
                id=request.body.conference_id, mode="ROUTER", version=1
            )
            return Accepted(value=summary)

        async def end(request: Request[conference_api.EndConferenceWebCommand]) -> Accepted[Empty] | Rejected:
            if not service(request):
                return Rejected(status=403, message="not a participant")
            self.ended.append(request)
            return Accepted(value=Empty())

        async def remove(
            request: Request[conference_api.RemoveParticipantCommand],
        ) -> Accepted[Empty] | Rejected:
            if not service(request):
                return Rejected(status=403, message="only a service may remove a participant")
            self.removed.append(request)
            return Accepted(value=Empty())

        async def get(request: Request[conference_api.GetConferenceQuery]) -> Any:
            conference_id = request.body.conference_id
            if conference_id not in {c.body.conference_id for c in self.created}:
                return Rejected(status=404, message="not found")
            return Accepted(
                value=conference_api.Conference(
                    id=conference_id,
                    organization_id=request.caller.organization_id,
                    mode="ROUTER",
                    version=1,
                    creator=None,
                    creator_endpoint=None,
                    empty=not self.participants.get(conference_id),
                    metadata={},
                    participants=self.participants.get(conference_id, []),
                )
            )

        await responders.serve(
            subjects.CONFERENCE_CREATE_GUARDED,
            Request[conference_api.CreateGuardedConference],
            create,
            queue="conference",
        )
        await responders.serve(
            subjects.conference_command("end"),
            Request[conference_api.EndConferenceWebCommand],
            end,
            queue="conference",
        )
        await responders.serve(
            subjects.conference_command("removeParticipant"),
            Request[conference_api.RemoveParticipantCommand],
            remove,
            queue="conference",
        )
        await responders.serve(
            subjects.conference_query("get"),
            Request[conference_api.GetConferenceQuery],
            get,
            queue="conference",
        )
        return responders


class Chat:
    """The chat service running in this process, and a client asking it as the gateway does."""

    def __init__(self, nc: Client, nats_url: str, data_dir: Path) -> None:
        self.nc = nc
        self.js = nc.jetstream()
        self.rpc = RpcClient(nc, timeout=5.0)
        self.settings = Settings(
            common=CommonSettings(nats_url=nats_url, data_dir=data_dir, mongo_url=None, request_timeout=3.0),
            max_group_members=128,
            effects_wait_seconds=2.0,
        )
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._stop = asyncio.Event()
        self._task = asyncio.create_task(serve_chat(self.settings, self._stop))
        for _ in range(200):
            reply = await self.rpc.request(subjects.health("chat"), HealthQuery(), ServiceHealth, timeout=0.5)
            if isinstance(reply, Accepted):
                return
            if self._task.done():
                self._task.result()
            await asyncio.sleep(0.05)
        raise AssertionError("the chat service did not start")

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            await self._task

    async def ask(self, op: str, user: str, body: Any, *, org: str = ORG) -> Any:
        caller = Caller(organization_id=org, user_id=user, request_id=uid())
        return await self.rpc.request(
            subject_of(op), Request(caller=caller, body=body), api.OPERATIONS[op].result
        )

    async def ok(self, op: str, user: str, body: Any, *, org: str = ORG) -> Any:
        reply = await self.ask(op, user, body, org=org)
        assert isinstance(reply, Accepted), reply
        return reply.value

    async def refused(self, op: str, user: str, body: Any, *, org: str = ORG) -> int:
        reply = await self.ask(op, user, body, org=org)
        assert isinstance(reply, Rejected), reply
        return reply.status

    async def seen(self, user: str, name: str, *, org: str = ORG) -> None:
        """A gateway's report of an authenticated user, on PARLEY_USERS."""
        report = api.UserSeen(organization_id=org, user_id=user, name=name, email=f"{name}@example.com")
        await self.js.publish(subjects.users_seen(org, user), msgspec.json.encode(report))

    async def pushed(self, user: str, *, org: str = ORG) -> list[dict[str, Any]]:
        """Every event on the user's push subject, as the client sees it."""
        return await _read(self.js, USER_PUSH_STREAM, subjects.user_push(org, user))

    async def chat_events(self) -> list[dict[str, Any]]:
        return await _read(self.js, CHAT_STREAM, subjects.CHAT_EVENTS_ALL)


async def _read(js: Any, stream: str, subject: str) -> list[dict[str, Any]]:
    info = await js.stream_info(stream)
    found: list[dict[str, Any]] = []
    if info.state.messages == 0:
        return found
    subscription = await js.subscribe(
        subject, stream=stream, ordered_consumer=True, deliver_policy=DeliverPolicy.ALL
    )
    try:
        while True:
            try:
                msg = await subscription.next_msg(timeout=0.3)
            except (TimeoutError, nats.errors.TimeoutError):
                return found
            found.append(msgspec.json.decode(msg.data))
    finally:
        await subscription.unsubscribe()


@pytest.fixture
async def conferences(nc: Client) -> AsyncIterator[Conferences]:
    fake = Conferences()
    responders = await fake.start(nc)
    yield fake
    await responders.stop()


@pytest.fixture
async def chat(
    nc: Client, nats_server: NatsServer, tmp_path: Path, conferences: Conferences
) -> AsyncIterator[Chat]:
    service = Chat(nc, nats_server.url, tmp_path)
    await service.start()
    yield service
    await service.stop()


async def users(chat: Chat, *names: str, org: str = ORG) -> list[str]:
    ids = [uid() for _ in names]
    for user_id, name in zip(ids, names, strict=True):
        await chat.seen(user_id, name, org=org)
    return ids


def types(events: list[dict[str, Any]], room_id: str | None = None) -> list[str]:
    return [e["type"] for e in events if room_id is None or e.get("roomId") == room_id]


# ---------------------------------------------------------------- rooms


async def test_group_room_lifecycle_with_events_to_members_only(chat: Chat) -> None:
    alice, bob, carol, dave = await users(chat, "alice", "bob", "carol", "dave")
    (stranger,) = await users(chat, "eve", org=OTHER_ORG)

    room = await chat.ok(
        "insertRoom", alice, api.RoomCreationFields(type="GROUP", name="g", members_ids=(bob, carol))
    )
    assert room.type == "group"
    assert [(m.user_id, m.owner) for m in room.members] == [(alice, True), (bob, False), (carol, False)]
    created = [e for e in await chat.pushed(bob) if e["type"] == "ROOM_CREATED"]
    assert created and created[0]["roomId"] == room.id
    # The client's JSON: no organization; the stream's copy has it.
    assert "organizationId" not in created[0] and {"id", "type", "sentDate"} <= created[0].keys()
    on_stream = [e for e in await chat.chat_events() if e.get("roomId") == room.id]
    assert types(on_stream) == ["ROOM_CREATED"] and on_stream[0]["organizationId"] == ORG
    assert types(await chat.pushed(dave)) == []

    # Access: member 200, same-organization stranger 403, other organization 404, bad caller id 403.
    got = await chat.ok("getRoom", bob, api.RoomRef(room_id=room.id))
    assert got.user_settings is not None and got.user_settings.muted is False
    assert await chat.refused("getRoom", dave, api.RoomRef(room_id=room.id)) == 403
    assert await chat.refused("getRoom", stranger, api.RoomRef(room_id=room.id), org=OTHER_ORG) == 404
    assert await chat.refused("getRoom", "alice", api.RoomRef(room_id=room.id)) == 403

    # Update: a member who is not an owner 403; the owner's change goes to every member.
    assert await chat.refused("updateRoom", bob, api.UpdateRoom(room_id=room.id, name="x")) == 403
    updated = await chat.ok("updateRoom", alice, api.UpdateRoom(room_id=room.id, name="renamed"))
    assert updated.name == "renamed"
    assert "ROOM_UPDATED" in types(await chat.pushed(carol), room.id)

    # Mute and clear: the caller's own, told to the caller only.
    await chat.ok("muteRoom", bob, api.RoomRef(room_id=room.id))
    await chat.ok("muteRoom", bob, api.RoomRef(room_id=room.id))  # idempotent: no second event
    cleared = await chat.ok("clearRoomHistory", bob, api.RoomRef(room_id=room.id))
    assert types(await chat.pushed(bob), room.id).count("ROOM_MUTED") == 1
    assert "ROOM_HISTORY_CLEARED" in types(await chat.pushed(bob), room.id)
    assert "ROOM_MUTED" not in types(await chat.pushed(alice), room.id)
    listed = (await chat.ok("listRoom", bob, api.ListRooms(extra_fields=("members", "settings")))).items
    (mine,) = [r for r in listed if r.id == room.id]
    assert mine.user_settings == api.RoomUserSettings(muted=True, cleared_at=cleared.cleared_at)
    assert mine.members is not None and len(mine.members) == 3
    bare = (await chat.ok("listRoom", bob, api.ListRooms())).items
    assert all(r.members is None and r.user_settings is None for r in bare)
    await chat.ok("unmuteRoom", bob, api.RoomRef(room_id=room.id))

    # Delete: owner only; every member is told; then the room is unknown.
    assert await chat.refused("deleteRoom", bob, api.RoomRef(room_id=room.id)) == 403
    await chat.ok("deleteRoom", alice, api.RoomRef(room_id=room.id))
    for member in (alice, bob, carol):
        assert types(await chat.pushed(member), room.id)[-1] == "ROOM_DELETED"
    assert await chat.refused("getRoom", alice, api.RoomRef(room_id=room.id)) == 404
    assert [r.id for r in (await chat.ok("listRoom", bob, api.ListRooms())).items] == []


async def test_room_creation_refusals(chat: Chat) -> None:
    alice, bob, carol = await users(chat, "alice", "bob", "carol")
    (other,) = await users(chat, "olga", org=OTHER_ORG)
    never_seen = uid()
    group = api.RoomCreationFields
    assert (
        await chat.refused("insertRoom", alice, group(type="group", members_ids=(bob, carol))) == 400
    )  # no name
    assert await chat.refused("insertRoom", alice, group(type="group", name="g", members_ids=(bob,))) == 400
    assert (
        await chat.refused("insertRoom", alice, group(type="group", name="g", members_ids=(bob, never_seen)))
        == 404
    )
    # A user of another organization is unknown here.
    assert (
        await chat.refused("insertRoom", alice, group(type="group", name="g", members_ids=(bob, other)))
        == 404
    )
    one = await chat.ok("insertRoom", alice, group(type="one_to_one", members_ids=(bob,)))
    assert all(m.owner for m in one.members)
    assert await chat.refused("insertRoom", bob, group(type="one_to_one", members_ids=(alice,))) == 409
    assert await chat.refused("deleteRoom", alice, api.RoomRef(room_id=one.id)) == 403


async def test_workspace_channels_and_ranks(chat: Chat) -> None:
    alice, bob, carol = await users(chat, "alice", "bob", "carol")
    first = await chat.ok(
        "insertRoom", alice, api.RoomCreationFields(type="workspace", name="w1", members_ids=(bob, carol))
    )
    second = await chat.ok(
        "insertRoom", alice, api.RoomCreationFields(type="workspace", name="w2", members_ids=(bob, carol))
    )
    assert (first.rank, second.rank) == (1, 2)
    channel = await chat.ok(
        "insertRoom", alice, api.RoomCreationFields(type="channel", name="c1", parent_id=first.id)
    )
    other = await chat.ok(
        "insertRoom", alice, api.RoomCreationFields(type="channel", name="c2", parent_id=first.id)
    )
    assert (
        await chat.refused(
            "insertRoom", bob, api.RoomCreationFields(type="channel", name="c", parent_id=first.id)
        )
        == 403
    )
    # A channel's members are its workspace's.
    assert len(await chat.ok("listRoomMember", carol, api.RoomRef(room_id=channel.id))) == 3

    listed = (await chat.ok("listRoom", bob, api.ListRooms(extra_fields=("members",)))).items
    by_id = {r.id: r for r in listed}
    assert set(by_id) == {first.id, second.id}  # channels only inside their workspace
    assert [c.id for c in by_id[first.id].children] == [channel.id, other.id]

    ranks = api.UpdateWorkspacesRank(
        ranks=(api.RoomRank(room_id=second.id, rank=1), api.RoomRank(room_id=first.id, rank=2))
    )
    await chat.ok("updateWorkspacesRank", bob, ranks)
    again = {r.id: r.rank for r in (await chat.ok("listRoom", bob, api.ListRooms())).items}
    assert again == {second.id: 1, first.id: 2}
    assert (
        await chat.refused(
            "updateWorkspacesRank",
            bob,
            api.UpdateWorkspacesRank(ranks=(api.RoomRank(room_id=first.id, rank=1),)),
        )
        == 400
    )

    channel_ranks = api.UpdateChannelsRank(
        workspace_id=first.id,
        ranks=(api.RoomRank(room_id=other.id, rank=1), api.RoomRank(room_id=channel.id, rank=2)),
    )
    assert await chat.refused("updateChannelsRank", bob, channel_ranks) == 403
    await chat.ok("updateChannelsRank", alice, channel_ranks)
    got = await chat.ok("getRoom", bob, api.RoomRef(room_id=first.id))
    assert [c.id for c in got.children] == [other.id, channel.id]

    # Deleting the workspace deletes its channels.
    await chat.ok("deleteRoom", alice, api.RoomRef(room_id=first.id))
    assert await chat.refused("getRoom", alice, api.RoomRef(room_id=channel.id)) == 404
    deleted = [e["roomId"] for e in await chat.pushed(carol) if e["type"] == "ROOM_DELETED"]
    assert set(deleted) == {first.id, channel.id, other.id}


# ---------------------------------------------------------------- members and owners


async def test_members_and_owners(chat: Chat) -> None:
    alice, bob, carol, dave, erin = await users(chat, "alice", "bob", "carol", "dave", "erin")
    room = await chat.ok(
        "insertRoom", alice, api.RoomCreationFields(type="group", name="g", members_ids=(bob, carol))
    )
    add = api.InsertRoomMember
    assert (
        await chat.refused(
            "insertRoomMember", alice, add(room_id=room.id, user_id=uid(), owner=False, history_cleared=False)
        )
        == 404
    )
    assert (
        await chat.refused(
            "insertRoomMember", bob, add(room_id=room.id, user_id=dave, owner=False, history_cleared=False)
        )
        == 403
    )
    inserted = await chat.ok(
        "insertRoomMember", alice, add(room_id=room.id, user_id=dave, owner=False, history_cleared=True)
    )
    assert inserted.user_id == dave and inserted.cleared_at is not None
    assert (
        await chat.refused(
            "insertRoomMember", alice, add(room_id=room.id, user_id=dave, owner=False, history_cleared=False)
        )
        == 400
    )
    for member in (alice, bob, carol, dave):
        added = [e for e in await chat.pushed(member) if e["type"] == "ROOM_MEMBER_ADDED"]
        assert added == [added[0]] and added[0]["userId"] == dave and added[0]["isOwner"] is False
    assert types(await chat.pushed(erin)) == []

    # Owners: not oneself (400), the promoted one told with everyone.
    assert await chat.refused("updateToOwner", alice, api.MemberRef(room_id=room.id, user_id=alice)) == 400
    await chat.ok("updateToOwner", alice, api.MemberRef(room_id=room.id, user_id=bob))
    assert "ROOM_OWNER_PROMOTED" in types(await chat.pushed(dave), room.id)
    members = await chat.ok("listRoomMember", carol, api.RoomRef(room_id=room.id))
    assert [(m.user_id, m.owner) for m in members] == [
        (alice, True),
        (bob, True),
        (carol, False),
        (dave, False),
    ]
    await chat.ok("deleteOwner", bob, api.MemberRef(room_id=room.id, user_id=alice))
    assert "ROOM_OWNER_DEMOTED" in types(await chat.pushed(alice), room.id)

    # Removal: someone else needs an owner; leaving oneself does not; the removed one is told.
    assert await chat.refused("deleteRoomMember", carol, api.MemberRef(room_id=room.id, user_id=dave)) == 403
    await chat.ok("deleteRoomMember", carol, api.MemberRef(room_id=room.id, user_id=carol))
    assert types(await chat.pushed(carol), room.id)[-1] == "ROOM_MEMBER_REMOVED"
    assert await chat.refused("getRoom", carol, api.RoomRef(room_id=room.id)) == 403
    assert await chat.refused("deleteRoomMember", bob, api.MemberRef(room_id=room.id, user_id=carol)) == 404


# ---------------------------------------------------------------- users


async def test_users_directory_from_the_users_stream(chat: Chat) -> None:
    alice, bob = await users(chat, "alice", "bob")
    user = await chat.ok("getUser", alice, api.UserRef(user_id=bob))
    assert (user.id, user.name, user.email, user.type) == (bob, "bob", "bob@example.com", "internal")
    assert await chat.refused("getUser", alice, api.UserRef(user_id=uid())) == 404
    (other,) = await users(chat, "olga", org=OTHER_ORG)
    assert await chat.refused("getUser", alice, api.UserRef(user_id=other)) == 404
    found = await chat.ok("getUsers", alice, api.GetUsers(user_ids=(bob, uid(), alice)))
    assert [u.id for u in found] == [bob, alice]
    assert (
        await chat.refused("getUsers", alice, api.GetUsers(user_ids=tuple(uid() for _ in range(11)))) == 400
    )
    assert await chat.refused("getUsers", alice, api.GetUsers()) == 400
    capabilities = await chat.ok("getCapabilities", alice, Empty())
    assert capabilities.max_group_members == 128

    # The consumer stores reports in the directory: with the stream's copy gone, the user is still known.
    (carol,) = await users(chat, "carol")
    repository, store = await _repository(chat)
    for _ in range(100):
        if await repository.user(ORG, carol) is not None:
            break
        await asyncio.sleep(0.05)
    await store.close()
    await chat.js.purge_stream(USERS_STREAM, subject=subjects.users_seen(ORG, carol))
    assert (await chat.ok("getUser", alice, api.UserRef(user_id=carol))).name == "carol"


async def _repository(chat: Chat) -> tuple[StorageChatRepository, SqliteStore]:
    """The service's own storage, opened beside it (SQLite allows several connections to one file)."""
    store = SqliteStore(chat.settings.common.sqlite_path("chat"))
    await store.start()
    return await StorageChatRepository.open(store), store


# ---------------------------------------------------------------- room meetings


async def test_room_meeting_is_a_guarded_conference(chat: Chat, conferences: Conferences) -> None:
    alice, bob, carol = await users(chat, "alice", "bob", "carol")
    room = await chat.ok(
        "insertRoom", alice, api.RoomCreationFields(type="group", name="g", members_ids=(bob, carol))
    )
    assert await chat.refused("getMeetingByRoomId", bob, api.RoomRef(room_id=room.id)) == 404
    (outsider,) = await users(chat, "olaf")
    assert await chat.refused("createMeeting", outsider, api.MeetingCreation(room_id=room.id)) == 403

    meeting = await chat.ok("createMeeting", bob, api.MeetingCreation(room_id=room.id))
    assert (meeting.room_id, meeting.name, meeting.active, meeting.meeting_type) == (
        room.id,
        "g",
        False,
        "permanent",
    )
    (guarded,) = conferences.created
    # Created for the member who asked, in the room's organization.
    assert (guarded.caller.organization_id, guarded.caller.user_id) == (ORG, bob)
    assert guarded.body.conference_id == meeting.id
    assert (guarded.body.admission.subject, guarded.body.admission.resource) == (subjects.CHAT_ADMIT, room.id)
    assert await chat.refused("createMeeting", alice, api.MeetingCreation(room_id=room.id)) == 409
    assert (await chat.ok("getRoom", carol, api.RoomRef(room_id=room.id))).meeting_id == meeting.id
    assert "MEETING_CREATED" in types(await chat.pushed(carol), room.id)

    joined = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    conferences.participants[meeting.id] = [
        conference_api.ConferenceParticipant(
            id="endpoint-1",
            user_id=bob,
            state="HEALTHY",
            joined_at=joined,
            streams=[conference_api.ConferenceStream(id=conference_api.StreamId(id="s"), type="CAM")],
        )
    ]
    live = await chat.ok("getMeetingByRoomId", alice, api.RoomRef(room_id=room.id))
    assert live.active is True
    (participant,) = live.participants
    assert (participant.user_id, participant.queue_id) == (bob, "endpoint-1")
    assert (participant.video_stream_enabled, participant.audio_stream_enabled) == (True, False)
    # The conference's own join time, not the meeting's creation.
    assert participant.joined_at == joined and live.started_at == joined

    async def admitted(user: str, org: str = ORG, resource: str = room.id) -> bool:
        query = api.AdmissionQuery(organization_id=org, user_id=user, resource=resource)
        return bool((await chat.ok("admit", "service:conference", query)).admitted)

    assert await admitted(carol) and not await admitted(outsider) and not await admitted(carol, OTHER_ORG)
    await chat.ok("deleteRoomMember", carol, api.MemberRef(room_id=room.id, user_id=carol))
    assert not await admitted(carol)  # removed: refused at the next join
    for _ in range(100):  # and dropped from the meeting at once, by a service caller
        if conferences.removed:
            break
        await asyncio.sleep(0.05)
    assert [
        (r.body.conference_id, r.body.user_id, r.caller.organization_id) for r in conferences.removed
    ] == [(meeting.id, carol, ORG)]

    await chat.ok("deleteRoom", alice, api.RoomRef(room_id=room.id))
    for _ in range(100):
        if conferences.ended:
            break
        await asyncio.sleep(0.05)
    assert [(e.body.conference_id, e.caller.organization_id) for e in conferences.ended] == [
        (meeting.id, ORG)
    ]
    deleted = [e for e in await chat.pushed(bob) if e["type"] == "MEETING_DELETED"]
    assert [e["meetingId"] for e in deleted] == [meeting.id]


# ---------------------------------------------------------------- durability


async def test_a_restart_loses_nothing_acknowledged(chat: Chat) -> None:
    alice, bob, carol = await users(chat, "alice", "bob", "carol")
    room = await chat.ok(
        "insertRoom", alice, api.RoomCreationFields(type="group", name="g", members_ids=(bob, carol))
    )
    await chat.stop()

    # A commit a dying process left half-applied: its document is there, its writes not all landed
    # (the test plays that process, on the repository's own collections).
    repository, store = await _repository(chat)
    rooms, commits = repository._c["chat_rooms"], repository._c[OUTBOX]
    before = await rooms.get(room.id)
    stored = await repository.room(ORG, room.id)
    assert before is not None and stored is not None
    owed = await repository.commit(
        ORG, Decision(result=None, put_rooms=(msgspec.structs.replace(stored, name="while-down"),))
    )
    assert owed is not None
    await commits.update(owed.key, {"applied": False})
    await rooms.replace(before)
    await store.close()

    await chat.start()
    got = await chat.ok("getRoom", bob, api.RoomRef(room_id=room.id))
    assert got.name == "while-down"  # landed at start, before serving
    assert [m.user_id for m in got.members] == [alice, bob, carol]
    assert types(await chat.pushed(carol), room.id) == ["ROOM_CREATED"]
    # The directory was kept too: users are known without a new report.
    assert (await chat.ok("getUser", alice, api.UserRef(user_id=carol))).name == "carol"
    await chat.ok("deleteRoomMember", carol, api.MemberRef(room_id=room.id, user_id=carol))
    assert types(await chat.pushed(carol), room.id) == ["ROOM_CREATED", "ROOM_MEMBER_REMOVED"]
