"""The chat API end to end: the gateway over HTTP, the chat and conference services, a real nats-server.

Every operation of issue 9 with the rules of `shared/notes/chat-carbonio.md` in the note's check order
(positive and negative, with status codes), organization isolation, each event pushed over `GET /events/ws`
to the users it concerns and to no one else, the room meeting as a Parley conference (joined by members
through `/rtc-api/conferences/join`, 403 for others, ended with the room), a gateway restart between two
events, and a user known only from the gateway's report of their first request.

Users have UUID `sub`s and make a request before anyone adds them (the directory learns of them then).
A user's events are read from a fresh socket with an unknown `lastEventId` (from the oldest retained):
each user here is new, so that is every event they were ever sent, with no race against a live socket.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest
from parley_chat.adapters.repository import StorageChatRepository
from parley_chat.domain import Decision, Room, RoomMember
from parley_common.config import CommonSettings
from parley_common.storage import SqliteStore

from tests.integration.helpers import Api, Response, Stack, token

ORG = "acme"
OTHER_ORG = "globex"


@pytest.fixture(scope="module")
def chat_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    # A generous request deadline: one test lists 200 rooms of 128 members in pages, which a loaded CI
    # machine can take longer than the default 1.5 s to answer (a 503 here tests the machine, not Parley).
    env = {"PARLEY_ESSENTIAL_SERVICES": "conference,chat", "PARLEY_REQUEST_TIMEOUT_SECONDS": "6"}
    running = Stack(tmp_path_factory.mktemp("chat"), chat=True, env=env).start()
    yield running
    running.stop()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


class User:
    def __init__(self, session: aiohttp.ClientSession, stack: Stack, org: str = ORG) -> None:
        self.id = str(uuid.uuid4())
        self.org = org
        self.stack = stack
        self.session = session
        self.api = Api(session, stack.url, token(self.id, org, name=f"user {self.id[:8]}"))

    async def call(self, method: str, path: str, body: Any = None, **kwargs: Any) -> Response:
        return await self.api.request(method, path, json=body, **kwargs)

    async def events(self, base_url: str | None = None, quiet: float = 0.6) -> list[dict[str, Any]]:
        """Every event this user was ever pushed (an unknown lastEventId resumes from the oldest)."""
        url = (base_url or self.stack.url).replace("http", "ws") + "/events/ws"
        params = {"access_token": self.api.bearer or "", "lastEventId": str(uuid.uuid4())}
        received: list[dict[str, Any]] = []
        async with self.session.ws_connect(url, params=params) as ws:
            while True:
                try:
                    message = await ws.receive(timeout=quiet)
                except TimeoutError:
                    return received
                assert message.type == aiohttp.WSMsgType.TEXT, message
                received.append(json.loads(message.data))

    async def types(self, room_id: str) -> list[str]:
        return [e["type"] for e in await self.events() if e.get("roomId") == room_id]


async def known(*users: User) -> None:
    """Each user makes a request, then waits until the directory knows them (the gateway's report)."""
    for user in users:
        assert (await user.call("GET", "/users/capabilities")).status == 200
    for user in users:
        path = f"/users/{user.id}"
        await eventually(lambda u=user, p=path: u.call("GET", p), lambda r: r.status == 200)


async def eventually(
    probe: Callable[[], Awaitable[Response]], done: Callable[[Response], bool], within: float = 10.0
) -> Response:
    """`probe` again until `done` holds (a change carried out in the background), at most `within` s."""
    async with asyncio.timeout(within):
        while True:
            response = await probe()
            if done(response):
                return response
            await asyncio.sleep(0.1)


async def new_users(session: aiohttp.ClientSession, stack: Stack, count: int, org: str = ORG) -> list[User]:
    users = [User(session, stack, org) for _ in range(count)]
    await known(*users)
    return users


async def group(owner: User, *members: User, name: str = "g") -> str:
    created = await owner.call(
        "POST", "/rooms", {"type": "group", "name": name, "membersIds": [m.id for m in members]}
    )
    assert created.status == 201, created
    return str(created.body["id"])


def error(response: Response, status: int) -> None:
    assert response.status == status, response
    assert set(response.body) == {"message", "traceId"}, response


# ---------------------------------------------------------------- auth, users


async def test_auth_token_and_users(chat_stack: Stack, session: aiohttp.ClientSession) -> None:
    alice, bob = await new_users(session, chat_stack, 2)
    # No token: 401. The cookie Carbonio's clients send authenticates like the bearer.
    anonymous = Api(session, chat_stack.url, None)
    error(await anonymous.request("GET", "/rooms"), 401)
    cookie = alice.api.bearer or ""
    by_cookie = await anonymous.request("GET", "/auth/token", headers={"Cookie": f"ZM_AUTH_TOKEN={cookie}"})
    assert by_cookie.status == 200 and by_cookie.body == {"zmToken": cookie}
    assert (await alice.call("GET", "/auth/token")).body == {"zmToken": cookie}
    # A token whose sub is not a UUID is no chat user.
    not_chat = Api(session, chat_stack.url, token("alice", ORG))
    error(await not_chat.request("GET", "/rooms"), 403)

    got = await alice.call("GET", f"/users/{bob.id}")
    assert got.status == 200 and got.body["id"] == bob.id and got.body["type"] == "internal"
    assert {"email", "name"} <= set(got.body)
    error(await alice.call("GET", f"/users/{uuid.uuid4()}"), 404)
    error(await alice.call("GET", "/users/not-a-uuid"), 400)
    unknown = str(uuid.uuid4())
    listed = await alice.call("GET", "/users", params=[("userIds", bob.id), ("userIds", unknown)])
    assert listed.status == 200 and [u["id"] for u in listed.body] == [bob.id]  # unknown left out
    error(await alice.call("GET", "/users", params=[("userIds", str(uuid.uuid4())) for _ in range(11)]), 400)
    error(await alice.call("GET", "/users"), 400)
    capabilities = await alice.call("GET", "/users/capabilities")
    assert capabilities.status == 200 and capabilities.body["maxGroupMembers"] == 128
    # Another organization's user is unknown.
    (stranger,) = await new_users(session, chat_stack, 1, OTHER_ORG)
    error(await alice.call("GET", f"/users/{stranger.id}"), 404)


async def test_a_guest_token_makes_a_guest_user(chat_stack: Stack, session: aiohttp.ClientSession) -> None:
    guest = User(session, chat_stack)
    guest.api = Api(session, chat_stack.url, token(guest.id, ORG, type="guest"))
    await known(guest)
    assert (await guest.call("GET", f"/users/{guest.id}")).body["type"] == "guest"


async def test_a_user_known_only_from_their_first_request_is_addable(
    chat_stack: Stack, session: aiohttp.ClientSession
) -> None:
    alice, bob, carol = await new_users(session, chat_stack, 3)
    room = await group(alice, bob, carol)
    newcomer = User(session, chat_stack)
    error(
        await alice.call(
            "POST", f"/rooms/{room}/members", {"userId": newcomer.id, "owner": False, "historyCleared": False}
        ),
        404,
    )
    assert (await newcomer.call("GET", "/rooms")).status == 200  # the first request: reported on the bus
    body = {"userId": newcomer.id, "owner": False, "historyCleared": False}
    added = await eventually(
        lambda: alice.call("POST", f"/rooms/{room}/members", body), lambda r: r.status != 404
    )
    assert added.status == 201, added


# ---------------------------------------------------------------- rooms


async def test_room_creation_rules_in_order(chat_stack: Stack, session: aiohttp.ClientSession) -> None:
    alice, bob, carol = await new_users(session, chat_stack, 3)
    nobody = str(uuid.uuid4())
    post = lambda body: alice.call("POST", "/rooms", body)  # noqa: E731
    error(await post({"name": "g", "membersIds": [bob.id, carol.id]}), 400)  # type required
    error(await post({"type": "bogus", "membersIds": []}), 400)
    error(await post({"type": "group", "name": "g", "membersIds": [bob.id, carol.id], "extra": 1}), 400)
    error(await post({"type": "group", "name": "x" * 129, "membersIds": [bob.id, carol.id]}), 400)
    error(await post({"type": "one_to_one", "name": "n", "membersIds": [bob.id]}), 400)
    error(await post({"type": "group", "membersIds": [bob.id, carol.id]}), 400)  # group without a name
    error(await post({"type": "group", "name": "g", "membersIds": [bob.id, bob.id]}), 400)  # duplicated
    error(await post({"type": "group", "name": "g", "membersIds": [alice.id, bob.id]}), 400)  # the caller
    error(await post({"type": "group", "name": "g", "membersIds": [bob.id], "parentId": nobody}), 400)
    error(await post({"type": "one_to_one", "membersIds": [bob.id, carol.id]}), 400)
    error(await post({"type": "group", "name": "g", "membersIds": [bob.id]}), 400)  # 2 others at least
    error(await post({"type": "group", "name": "g", "membersIds": [bob.id, "not-a-uuid"]}), 400)
    error(await post({"type": "group", "name": "g", "membersIds": [bob.id, nobody]}), 404)  # unknown user

    created = await post({"type": "GROUP", "name": "g", "description": "d", "membersIds": [bob.id, carol.id]})
    assert created.status == 201, created
    room = created.body
    assert room["type"] == "group" and room["name"] == "g" and "meetingId" not in room
    assert {(m["userId"], m["owner"]) for m in room["members"]} == {
        (alice.id, True),
        (bob.id, False),
        (carol.id, False),
    }
    assert room["userSettings"] == {"muted": False}

    pair = await post({"type": "one_to_one", "membersIds": [bob.id]})
    assert pair.status == 201 and "name" not in pair.body and "description" not in pair.body
    assert all(m["owner"] for m in pair.body["members"])  # both owners
    error(await bob.call("POST", "/rooms", {"type": "one_to_one", "membersIds": [alice.id]}), 409)
    temporary = await post({"type": "temporary", "name": "t", "membersIds": []})
    assert temporary.status == 201  # no member count for temporary

    # Every member is told, nobody else.
    (outsider,) = await new_users(session, chat_stack, 1)
    for user in (alice, bob, carol):
        assert (await user.types(room["id"])) == ["ROOM_CREATED"]
    assert await outsider.types(room["id"]) == []


async def test_workspaces_channels_and_ranks(chat_stack: Stack, session: aiohttp.ClientSession) -> None:
    alice, bob, carol, dave = await new_users(session, chat_stack, 4)
    members = [bob.id, carol.id]
    one = await alice.call("POST", "/rooms", {"type": "workspace", "name": "w1", "membersIds": members})
    two = await alice.call("POST", "/rooms", {"type": "workspace", "name": "w2", "membersIds": members})
    assert one.status == two.status == 201
    w1, w2 = one.body["id"], two.body["id"]
    assert (one.body["rank"], two.body["rank"]) == (1, 2)
    # Channels: no members of their own, a parent that is a workspace, the parent's owner rule.
    channel = {"type": "channel", "name": "c"}
    error(await alice.call("POST", "/rooms", {**channel, "membersIds": [bob.id]}), 400)
    error(await alice.call("POST", "/rooms", {**channel, "membersIds": []}), 400)  # no parentId
    error(
        await alice.call("POST", "/rooms", {**channel, "membersIds": [], "parentId": str(uuid.uuid4())}), 404
    )
    error(await dave.call("POST", "/rooms", {**channel, "membersIds": [], "parentId": w1}), 403)
    error(await bob.call("POST", "/rooms", {**channel, "membersIds": [], "parentId": w1}), 403)  # not owner
    g = await group(alice, bob, carol)
    error(await alice.call("POST", "/rooms", {**channel, "membersIds": [], "parentId": g}), 400)
    c1 = await alice.call("POST", "/rooms", {**channel, "membersIds": [], "parentId": w1})
    c2 = await alice.call(
        "POST", "/rooms", {"type": "channel", "name": "c2", "membersIds": [], "parentId": w1}
    )
    assert c1.status == c2.status == 201 and (c1.body["rank"], c2.body["rank"]) == (1, 2)
    # A channel shows its workspace's members; the list nests channels in their workspace.
    got = await bob.call("GET", f"/rooms/{c1.body['id']}")
    assert {m["userId"] for m in got.body["members"]} == {alice.id, bob.id, carol.id}
    listed = await bob.call("GET", "/rooms")
    ids = {r["id"] for r in listed.body}
    assert c1.body["id"] not in ids and w1 in ids
    workspace = next(r for r in listed.body if r["id"] == w1)
    assert [c["id"] for c in workspace["children"]] == [c1.body["id"], c2.body["id"]]
    assert "members" not in workspace
    # Workspace ranks: duplicates, not 1..n, a wrong count, a room that is not one of the caller's -> 400.
    rank = "/rooms/workspaces/rank"
    error(await bob.call("PUT", rank, [{"roomId": w1, "rank": 1}, {"roomId": w1, "rank": 2}]), 400)
    error(await bob.call("PUT", rank, [{"roomId": w1, "rank": 1}, {"roomId": w2, "rank": 3}]), 400)
    error(await bob.call("PUT", rank, [{"roomId": w1, "rank": 1}]), 400)
    error(await bob.call("PUT", rank, [{"roomId": w1, "rank": 1}, {"roomId": g, "rank": 2}]), 400)
    assert (await bob.call("PUT", rank, [{"roomId": w1, "rank": 2}, {"roomId": w2, "rank": 1}])).status == 204
    ranks = {r["id"]: r.get("rank") for r in (await bob.call("GET", "/rooms")).body}
    assert (ranks[w1], ranks[w2]) == (2, 1)
    assert {r["id"]: r.get("rank") for r in (await alice.call("GET", "/rooms")).body}[w1] == 1  # per user
    # Channel ranks: shape checks first, then the owner rule, then the channel set.
    crank = f"/rooms/workspaces/{w1}/channels/rank"
    ch1, ch2 = c1.body["id"], c2.body["id"]
    error(await bob.call("PUT", crank, [{"roomId": ch1, "rank": 1}, {"roomId": ch2, "rank": 1}]), 400)
    error(await alice.call("PUT", f"/rooms/workspaces/{uuid.uuid4()}/channels/rank", []), 404)
    error(await dave.call("PUT", crank, [{"roomId": ch1, "rank": 1}, {"roomId": ch2, "rank": 2}]), 403)
    error(await bob.call("PUT", crank, [{"roomId": ch1, "rank": 1}, {"roomId": ch2, "rank": 2}]), 403)
    error(await alice.call("PUT", crank, [{"roomId": ch1, "rank": 1}]), 400)  # one left out
    assert (
        await alice.call("PUT", crank, [{"roomId": ch2, "rank": 1}, {"roomId": ch1, "rank": 2}])
    ).status == 204
    children = next(r for r in (await bob.call("GET", "/rooms")).body if r["id"] == w1)["children"]
    assert [c["id"] for c in children] == [ch2, ch1]
    # A workspace is not muted; its deletion takes its channels.
    error(await bob.call("PUT", f"/rooms/{w1}/mute"), 400)
    assert (await alice.call("DELETE", f"/rooms/{w1}")).status == 204
    error(await alice.call("GET", f"/rooms/{ch1}"), 404)


async def test_get_update_delete_room(chat_stack: Stack, session: aiohttp.ClientSession) -> None:
    alice, bob, carol, outsider = await new_users(session, chat_stack, 4)
    room = await group(alice, bob, carol)
    missing = str(uuid.uuid4())
    error(await alice.call("GET", f"/rooms/{missing}"), 404)
    error(await outsider.call("GET", f"/rooms/{room}"), 403)
    error(await alice.call("GET", "/rooms/not-a-uuid"), 400)
    got = await bob.call("GET", f"/rooms/{room}")
    assert (
        got.status == 200 and got.body["userSettings"] == {"muted": False} and len(got.body["members"]) == 3
    )
    listed = await bob.call("GET", "/rooms")
    plain = next(r for r in listed.body if r["id"] == room)
    assert "members" not in plain and "userSettings" not in plain
    for query in ("extraFields=members&extraFields=settings", "extraFields=members,SETTINGS"):
        full = next(r for r in (await bob.call("GET", f"/rooms?{query}")).body if r["id"] == room)
        assert len(full["members"]) == 3 and full["userSettings"] == {"muted": False}
    error(await bob.call("GET", "/rooms?extraFields=bogus"), 400)

    # Update: 404, 403 (member), one_to_one 400, neither field 400, not owner 403.
    error(await alice.call("PUT", f"/rooms/{missing}", {"name": "n"}), 404)
    error(await outsider.call("PUT", f"/rooms/{room}", {"name": "n"}), 403)
    pair = (await alice.call("POST", "/rooms", {"type": "one_to_one", "membersIds": [outsider.id]})).body[
        "id"
    ]
    error(await alice.call("PUT", f"/rooms/{pair}", {"name": "n"}), 400)
    error(await alice.call("PUT", f"/rooms/{room}", {}), 400)
    error(await bob.call("PUT", f"/rooms/{room}", {"name": "n"}), 403)
    updated = await alice.call("PUT", f"/rooms/{room}", {"name": "renamed"})
    assert updated.status == 200 and updated.body["name"] == "renamed" and "members" not in updated.body
    assert (
        await alice.call("PUT", f"/rooms/{room}", {"name": "renamed"})
    ).status == 200  # unchanged: no event
    for user in (alice, bob, carol):
        assert (await user.types(room)).count("ROOM_UPDATED") == 1
    assert await outsider.types(room) == []

    # Delete: 404, 403 (member), one_to_one 403 even for its owners, non-owner 403.
    error(await alice.call("DELETE", f"/rooms/{missing}"), 404)
    error(await outsider.call("DELETE", f"/rooms/{room}"), 403)
    error(await alice.call("DELETE", f"/rooms/{pair}"), 403)
    error(await bob.call("DELETE", f"/rooms/{room}"), 403)
    assert (await alice.call("DELETE", f"/rooms/{room}")).status == 204
    error(await bob.call("GET", f"/rooms/{room}"), 404)
    for user in (alice, bob, carol):
        assert (await user.types(room))[-1] == "ROOM_DELETED"
    assert await outsider.types(room) == []


async def test_mute_unmute_clear_go_to_the_caller_only(
    chat_stack: Stack, session: aiohttp.ClientSession
) -> None:
    alice, bob, carol, outsider = await new_users(session, chat_stack, 4)
    room = await group(alice, bob, carol)
    error(await bob.call("PUT", f"/rooms/{uuid.uuid4()}/mute"), 404)
    error(await outsider.call("PUT", f"/rooms/{room}/mute"), 403)
    assert (await bob.call("PUT", f"/rooms/{room}/mute")).status == 204
    assert (await bob.call("PUT", f"/rooms/{room}/mute")).status == 204  # idempotent, no second event
    assert (await bob.call("GET", f"/rooms/{room}")).body["userSettings"]["muted"] is True
    assert (await alice.call("GET", f"/rooms/{room}")).body["userSettings"]["muted"] is False
    assert (await bob.call("DELETE", f"/rooms/{room}/mute")).status == 204
    error(await outsider.call("DELETE", f"/rooms/{room}/mute"), 403)
    error(await outsider.call("PUT", f"/rooms/{room}/clear"), 403)
    cleared = await bob.call("PUT", f"/rooms/{room}/clear")
    assert cleared.status == 200 and cleared.body["clearedAt"]
    assert (await bob.call("GET", f"/rooms/{room}")).body["userSettings"]["clearedAt"] == cleared.body[
        "clearedAt"
    ]
    assert await bob.types(room) == ["ROOM_CREATED", "ROOM_MUTED", "ROOM_UNMUTED", "ROOM_HISTORY_CLEARED"]
    assert await alice.types(room) == ["ROOM_CREATED"]
    assert await carol.types(room) == ["ROOM_CREATED"]


# ---------------------------------------------------------------- members


async def test_members_rules_and_events(chat_stack: Stack, session: aiohttp.ClientSession) -> None:
    alice, bob, carol, dave, outsider = await new_users(session, chat_stack, 5)
    room = await group(alice, bob, carol)
    members = f"/rooms/{room}/members"
    error(await outsider.call("GET", members), 403)
    error(await alice.call("GET", f"/rooms/{uuid.uuid4()}/members"), 404)
    listed = await bob.call("GET", members)
    assert listed.status == 200 and {m["userId"] for m in listed.body} == {alice.id, bob.id, carol.id}

    insert = {"userId": dave.id, "owner": False, "historyCleared": True}
    error(
        await alice.call(
            "POST", members, {"userId": str(uuid.uuid4()), "owner": False, "historyCleared": False}
        ),
        404,
    )
    error(await alice.call("POST", f"/rooms/{uuid.uuid4()}/members", insert), 404)  # user known, room not
    error(await outsider.call("POST", members, insert), 403)
    error(await bob.call("POST", members, insert), 403)  # not owner
    error(
        await alice.call("POST", members, {"userId": dave.id, "owner": False}), 400
    )  # historyCleared missing
    pair = (await alice.call("POST", "/rooms", {"type": "one_to_one", "membersIds": [dave.id]})).body["id"]
    error(await alice.call("POST", f"/rooms/{pair}/members", {**insert, "userId": bob.id}), 400)
    error(await alice.call("POST", members, {**insert, "userId": bob.id}), 400)  # already a member
    added = await alice.call("POST", members, insert)
    assert added.status == 201 and added.body["userId"] == dave.id and added.body["clearedAt"]
    for user in (alice, bob, carol, dave):
        assert "ROOM_MEMBER_ADDED" in await user.types(room)
    assert await outsider.types(room) == []

    # Owners: self 400 before the room, 404, 403 member, 403 owner, target not a member 403.
    owner = f"{members}/{bob.id}/owner"
    error(await alice.call("PUT", f"{members}/{alice.id}/owner"), 400)
    error(await alice.call("PUT", f"/rooms/{uuid.uuid4()}/members/{bob.id}/owner"), 404)
    error(await outsider.call("PUT", owner), 403)
    error(await carol.call("PUT", owner), 403)
    error(await alice.call("PUT", f"{members}/{outsider.id}/owner"), 403)
    error(await alice.call("PUT", f"/rooms/{pair}/members/{dave.id}/owner"), 400)
    assert (await alice.call("PUT", owner)).status == 204
    assert (await alice.call("PUT", owner)).status == 204  # not idempotence-checked: two events
    assert (await alice.call("DELETE", owner)).status == 204
    for user in (alice, bob, carol, dave):
        types = await user.types(room)
        assert types.count("ROOM_OWNER_PROMOTED") == 2 and types.count("ROOM_OWNER_DEMOTED") == 1
    assert await outsider.types(room) == []

    # Removal: 404, caller not a member 403, someone else needs an owner 403, one_to_one 400, target
    # not a member 404, the only owner leaving while others remain 400.
    error(await alice.call("DELETE", f"/rooms/{uuid.uuid4()}/members/{bob.id}"), 404)
    error(await outsider.call("DELETE", f"{members}/{bob.id}"), 403)
    error(await bob.call("DELETE", f"{members}/{carol.id}"), 403)
    error(await alice.call("DELETE", f"/rooms/{pair}/members/{dave.id}"), 400)
    error(await alice.call("DELETE", f"{members}/{outsider.id}"), 404)
    error(await alice.call("DELETE", f"{members}/{alice.id}"), 400)
    assert (await bob.call("DELETE", f"{members}/{bob.id}")).status == 204  # leaving oneself
    assert (await alice.call("DELETE", f"{members}/{carol.id}")).status == 204
    for user in (alice, bob, carol, dave):
        assert "ROOM_MEMBER_REMOVED" in await user.types(room)  # the removed ones included
    error(await carol.call("GET", f"/rooms/{room}"), 403)
    # The last member leaving deletes the room.
    assert (await alice.call("DELETE", f"{members}/{dave.id}")).status == 204
    assert (await alice.call("DELETE", f"{members}/{alice.id}")).status == 204
    assert (await alice.types(room))[-1] == "ROOM_DELETED"
    error(await alice.call("GET", f"/rooms/{room}"), 404)


async def test_another_organization_gets_404_on_every_room_route(
    chat_stack: Stack, session: aiohttp.ClientSession
) -> None:
    alice, bob, carol = await new_users(session, chat_stack, 3)
    (stranger,) = await new_users(session, chat_stack, 1, OTHER_ORG)
    room = await group(alice, bob, carol)
    member = {"userId": stranger.id, "owner": False, "historyCleared": False}
    routes: list[tuple[str, str, Any]] = [
        ("GET", f"/rooms/{room}", None),
        ("PUT", f"/rooms/{room}", {"name": "n"}),
        ("DELETE", f"/rooms/{room}", None),
        ("PUT", f"/rooms/{room}/mute", None),
        ("DELETE", f"/rooms/{room}/mute", None),
        ("PUT", f"/rooms/{room}/clear", None),
        ("GET", f"/rooms/{room}/members", None),
        ("POST", f"/rooms/{room}/members", member),
        ("DELETE", f"/rooms/{room}/members/{bob.id}", None),
        ("PUT", f"/rooms/{room}/members/{bob.id}/owner", None),
        ("DELETE", f"/rooms/{room}/members/{bob.id}/owner", None),
        ("GET", f"/rooms/{room}/meeting", None),
        ("POST", f"/rooms/{room}/meeting", None),
        ("POST", "/meetings", {"roomId": room, "name": "m"}),
        ("PUT", f"/rooms/workspaces/{room}/channels/rank", []),
    ]
    for method, path, body in routes:
        error(await stranger.call(method, path, body), 404)
    assert room not in {r["id"] for r in (await stranger.call("GET", "/rooms")).body}
    # The other way round: another organization's user is unknown to alice's rooms.
    error(await alice.call("POST", f"/rooms/{room}/members", member), 404)
    assert await stranger.types(room) == []
    assert (await bob.call("GET", f"/rooms/{room}")).status == 200  # untouched


# ---------------------------------------------------------------- room meetings


async def join(user: User, conference_id: str, endpoint: str) -> Response:
    return await user.call(
        "POST", "/rtc-api/conferences/join", {"conferenceId": conference_id, "userEndpointId": endpoint}
    )


async def test_the_room_meeting_is_a_conference_of_its_members(
    chat_stack: Stack, session: aiohttp.ClientSession
) -> None:
    alice, bob, carol, outsider = await new_users(session, chat_stack, 4)
    room = await group(alice, bob, carol, name="standup")
    error(await alice.call("GET", f"/rooms/{room}/meeting"), 404)  # none yet
    error(await outsider.call("POST", f"/rooms/{room}/meeting"), 403)
    error(await alice.call("POST", f"/rooms/{uuid.uuid4()}/meeting"), 404)
    created = await bob.call("POST", f"/rooms/{room}/meeting")
    assert created.status == 201, created
    meeting = created.body
    assert (meeting["roomId"], meeting["name"], meeting["active"], meeting["participants"]) == (
        room,
        "standup",
        False,
        [],
    )
    assert meeting["meetingType"] == "permanent" and meeting["createdAt"]
    error(await alice.call("POST", f"/rooms/{room}/meeting"), 409)
    error(await alice.call("POST", "/meetings", {"roomId": room, "name": "again"}), 409)
    assert (await carol.call("GET", f"/rooms/{room}")).body["meetingId"] == meeting["id"]
    for user in (alice, bob, carol):
        assert "MEETING_CREATED" in await user.types(room)
    assert await outsider.types(room) == []

    # Members join the conference; a same-organization non-member gets 403 there.
    assert (await join(alice, meeting["id"], "alice-1")).status == 200
    assert (await join(carol, meeting["id"], "carol-1")).status == 200
    error(await join(outsider, meeting["id"], "outsider-1"), 403)
    live = await bob.call("GET", f"/rooms/{room}/meeting")
    assert live.status == 200 and live.body["active"] is True, live
    participants = {p["userId"]: p for p in live.body["participants"]}
    assert set(participants) == {alice.id, carol.id}
    assert participants[alice.id]["queueId"] == "alice-1" and participants[alice.id]["joinedAt"]
    assert participants[alice.id]["audioStreamEnabled"] is False
    error(await outsider.call("GET", f"/rooms/{room}/meeting"), 403)

    # A removed member is dropped from the meeting and can no longer join.
    assert (await alice.call("DELETE", f"/rooms/{room}/members/{carol.id}")).status == 204
    await eventually(
        lambda: bob.call("GET", f"/rooms/{room}/meeting"),
        lambda r: carol.id not in {p["userId"] for p in r.body["participants"]},
    )
    error(await join(carol, meeting["id"], "carol-1"), 403)
    error(await join(carol, meeting["id"], "carol-2"), 403)

    # Deleting the room ends the conference (and tells the members the meeting is gone).
    assert (await alice.call("DELETE", f"/rooms/{room}")).status == 204
    events = await eventually(
        lambda: alice.call("GET", f"/rtc-api/conferences/{meeting['id']}/events", params={"v": "0"}),
        lambda r: r.status != 200 or (bool(r.body) and r.body[-1]["type"] == "ConferenceEndedEvent"),
    )
    assert events.status == 200, events
    assert events.body[-1]["reason"] == "ROOM_DELETED"
    assert (await join(bob, meeting["id"], "bob-1")).status in (409, 410)
    deleted = [e for e in await bob.events() if e["type"] == "MEETING_DELETED"]
    assert [e["meetingId"] for e in deleted] == [meeting["id"]]


async def test_carbonio_post_meetings(chat_stack: Stack, session: aiohttp.ClientSession) -> None:
    alice, bob, carol = await new_users(session, chat_stack, 3)
    room = await group(alice, bob, carol)
    error(await alice.call("POST", "/meetings", {"name": "m"}), 400)  # no roomId
    error(await alice.call("POST", "/meetings", {"roomId": "nope"}), 400)
    error(await alice.call("POST", "/meetings", {"roomId": str(uuid.uuid4())}), 404)
    created = await alice.call("POST", "/meetings", {"roomId": room, "name": "m", "meetingType": "SCHEDULED"})
    assert created.status == 200, created
    assert created.body["name"] == "m" and created.body["meetingType"] == "scheduled"
    got = await bob.call("GET", f"/rooms/{room}/meeting")
    assert got.status == 200 and got.body["id"] == created.body["id"]
    assert (await join(bob, created.body["id"], "bob-1")).status == 200


# ---------------------------------------------------------------- the push channel


async def test_a_gateway_restart_between_two_events_loses_neither(
    chat_stack: Stack, session: aiohttp.ClientSession
) -> None:
    alice, bob, carol = await new_users(session, chat_stack, 3)
    room = await group(alice, bob, carol)
    url = chat_stack.url.replace("http", "ws") + "/events/ws"
    async with session.ws_connect(url, params={"access_token": bob.api.bearer or ""}) as ws:
        await asyncio.sleep(0.3)  # the socket's consumer is in place
        assert (await alice.call("PUT", f"/rooms/{room}", {"name": "first"})).status == 200
        first = json.loads((await ws.receive(timeout=5.0)).data)
        assert first["type"] == "ROOM_UPDATED" and first["name"] == "first"
    chat_stack.restart("gateway-0")
    assert (await alice.call("PUT", f"/rooms/{room}", {"name": "second"})).status == 200
    params = {"access_token": bob.api.bearer or "", "lastEventId": first["id"]}
    async with session.ws_connect(url, params=params) as ws:
        second = json.loads((await ws.receive(timeout=5.0)).data)
    assert second["type"] == "ROOM_UPDATED" and second["name"] == "second"


# ---------------------------------------------------------------- a list larger than a NATS message


async def test_the_rooms_of_a_user_in_many_large_rooms_outgrow_a_nats_message(
    chat_stack: Stack, session: aiohttp.ClientSession
) -> None:
    """`GET /rooms` answers the full list even when it is over the bus's 1 MiB: the service answers it a
    page at a time and the gateway assembles them. The rooms are written straight into the service's own
    storage (SQLite allows a second connection): 200 rooms of 128 members through HTTP would be minutes."""
    (alice,) = await new_users(session, chat_stack, 1)
    others = [str(uuid.uuid4()) for _ in range(127)]
    now = datetime.now(UTC)
    rooms = tuple(
        Room(
            id=str(uuid.uuid4()),
            organization_id=ORG,
            type="group",
            created_at=now,
            updated_at=now,
            name=f"room {index}",
            description="d" * 200,
            members=(RoomMember(alice.id, owner=True), *(RoomMember(user) for user in others)),
        )
        for index in range(200)
    )
    store = SqliteStore(
        CommonSettings(
            nats_url=chat_stack.nats_url,
            data_dir=chat_stack.local.data_dir,
            mongo_url=None,
            request_timeout=3.0,
        ).sqlite_path("chat")
    )
    await store.start()
    try:
        repository = await StorageChatRepository.open(store)
        await repository.commit(ORG, Decision(result=None, put_rooms=rooms))
    finally:
        await store.close()

    listed = await alice.call("GET", "/rooms", params={"extraFields": "members,settings"}, timeout=30.0)
    assert listed.status == 200, listed
    assert len(json.dumps(listed.body)) > 1024 * 1024  # more than one NATS message could carry
    assert sorted(r["id"] for r in listed.body) == sorted(r.id for r in rooms)
    assert all(len(r["members"]) == 128 and r["userSettings"] == {"muted": False} for r in listed.body)
