"""Room messages and forwarding end to end (issue 11): the gateway over HTTP, the chat service, a real
nats-server.

Every rule of `POST|GET /rooms/{roomId}/messages`, `PUT|DELETE /rooms/{roomId}/messages/{messageId}` and
`POST /rooms/{roomId}/forward` with its status, the clear-history view per member, each message pushed
live to every member's `/events/ws` and to no one else, a gateway restart losing nothing, and a deleted
room taking its messages with it. The edit/delete time limits are shortened to a few seconds here
(`PARLEY_CHAT_EDIT_MESSAGE_SECONDS`, `PARLEY_CHAT_DELETE_MESSAGE_SECONDS`) so "after the limit" is testable.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import nats
import pytest
from parley_common.config import CommonSettings
from parley_common.messaging.streams import USER_PUSH_STREAM
from parley_common.storage import SqliteStore

from tests.integration.helpers import Api, Stack
from tests.integration.test_chat_api import OTHER_ORG, User, error, group, new_users
from tests.integration.test_chat_attachments import upload

LIMIT_SECONDS = 4.0


@pytest.fixture(scope="module")
def chat_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    running = Stack(
        tmp_path_factory.mktemp("chat-messages"),
        chat=True,
        env={
            "PARLEY_ESSENTIAL_SERVICES": "conference,chat",
            "PARLEY_CHAT_EDIT_MESSAGE_SECONDS": str(LIMIT_SECONDS),
            "PARLEY_CHAT_DELETE_MESSAGE_SECONDS": str(LIMIT_SECONDS),
        },
    ).start()
    yield running
    running.stop()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


async def send(user: User, room: str, text: str, **fields: Any) -> dict[str, Any]:
    sent = await user.call("POST", f"/rooms/{room}/messages", {"text": text, **fields})
    assert sent.status == 201, sent
    return dict(sent.body)


async def texts(user: User, room: str, **params: str) -> list[str]:
    listed = await user.call("GET", f"/rooms/{room}/messages", params=params)
    assert listed.status == 200, listed
    return [m["text"] for m in listed.body["messages"]]


@asynccontextmanager
async def live(user: User, base_url: str | None = None) -> AsyncIterator[aiohttp.ClientWebSocketResponse]:
    """`user`'s socket, from now on (no lastEventId), its consumer in place."""
    url = (base_url or user.stack.url).replace("http", "ws") + "/events/ws"
    async with user.session.ws_connect(url, params={"access_token": user.api.bearer or ""}) as ws:
        await asyncio.sleep(0.3)
        yield ws


async def frames(ws: aiohttp.ClientWebSocketResponse, quiet: float = 0.8) -> list[dict[str, Any]]:
    """Every frame until `quiet` seconds pass without one."""
    received: list[dict[str, Any]] = []
    while True:
        try:
            message = await ws.receive(timeout=quiet)
        except TimeoutError:
            return received
        assert message.type == aiohttp.WSMsgType.TEXT, message
        received.append(json.loads(message.data))


# ---------------------------------------------------------------- send and list


async def test_send_answers_the_message_and_refuses_bad_input(
    chat_stack: Stack, session: aiohttp.ClientSession
) -> None:
    alice, bob, carol, outsider = await new_users(session, chat_stack, 4)
    (stranger,) = await new_users(session, chat_stack, 1, org=OTHER_ORG)
    room = await group(alice, bob, carol)
    other_room = await group(alice, bob, carol)

    first = await send(alice, room, "hello")
    assert set(first) == {"id", "roomId", "userId", "text", "sentAt"}
    assert (first["roomId"], first["userId"], first["text"]) == (room, alice.id, "hello")
    reply = await send(bob, room, "hi", replyId=first["id"])
    assert reply["replyId"] == first["id"]

    path = f"/rooms/{room}/messages"
    error(await alice.call("POST", path, {"text": ""}), 400)
    error(await alice.call("POST", path, {"text": " \n\t"}), 400)
    error(await alice.call("POST", path, {}), 400)
    error(await alice.call("POST", path, {"text": "x" * 4097}), 400)
    error(await alice.call("POST", path, {"text": "x", "colour": "red"}), 400)
    error(await alice.call("POST", path, {"text": "x", "replyId": "not-a-uuid"}), 400)
    # A reply to a message of another room, or to no message at all.
    elsewhere = await send(alice, other_room, "elsewhere")
    error(await alice.call("POST", path, {"text": "x", "replyId": elsewhere["id"]}), 400)
    error(await alice.call("POST", path, {"text": "x", "replyId": str(uuid.uuid4())}), 400)
    error(await outsider.call("POST", path, {"text": "x"}), 403)
    error(await outsider.call("GET", path), 403)
    error(await alice.call("POST", f"/rooms/{uuid.uuid4()}/messages", {"text": "x"}), 404)
    error(await stranger.call("POST", path, {"text": "x"}), 404)
    error(await stranger.call("GET", path), 404)
    # Nothing a refusal touched was stored.
    assert await texts(carol, room) == ["hi", "hello"]


async def test_paging_newest_first_walked_to_the_end(
    chat_stack: Stack, session: aiohttp.ClientSession
) -> None:
    alice, bob, carol = await new_users(session, chat_stack, 3)
    room = await group(alice, bob, carol)
    for index in range(7):
        await send(alice if index % 2 else bob, room, f"m{index}")
    seen: list[str] = []
    params = {"limit": "3"}
    pages = 0
    while True:
        page = await carol.call("GET", f"/rooms/{room}/messages", params=params)
        assert page.status == 200, page
        pages += 1
        seen.extend(m["text"] for m in page.body["messages"])
        if "before" not in page.body:
            break
        params = {"limit": "3", "before": page.body["before"]}
    assert pages == 3
    assert seen == [f"m{index}" for index in reversed(range(7))]
    assert await texts(carol, room) == seen  # the default page holds them all
    path = f"/rooms/{room}/messages"
    for bad in ({"limit": "0"}, {"limit": "101"}, {"limit": "many"}, {"before": "yesterday"}):
        error(await carol.call("GET", path, params=bad), 400)


async def test_clear_history_hides_older_messages_from_that_member_only(
    chat_stack: Stack, session: aiohttp.ClientSession
) -> None:
    alice, bob, carol = await new_users(session, chat_stack, 3)
    room = await group(alice, bob, carol)
    await send(alice, room, "before")
    assert (await bob.call("PUT", f"/rooms/{room}/clear")).status == 200
    await send(alice, room, "after")
    assert await texts(bob, room) == ["after"]
    assert await texts(alice, room) == ["after", "before"]
    assert await texts(carol, room) == ["after", "before"]
    # Paging stops at the cleared point: no page holds only hidden messages.
    page = await bob.call("GET", f"/rooms/{room}/messages", params={"limit": "1"})
    assert [m["text"] for m in page.body["messages"]] == ["after"] and "before" not in page.body


# ---------------------------------------------------------------- edit and delete


async def test_edit_and_delete_own_messages_within_the_limits(
    chat_stack: Stack, session: aiohttp.ClientSession
) -> None:
    alice, bob, carol, outsider = await new_users(session, chat_stack, 4)
    room = await group(alice, bob, carol)
    other_room = await group(alice, bob, carol)
    mine = await send(alice, room, "draft")
    theirs = await send(bob, room, "bob's")
    path = f"/rooms/{room}/messages/{mine['id']}"

    edited = await alice.call("PUT", path, {"text": "final"})
    assert edited.status == 200, edited
    assert edited.body["text"] == "final" and edited.body["editedAt"] and edited.body["id"] == mine["id"]
    error(await alice.call("PUT", path, {"text": "  "}), 400)
    error(await alice.call("PUT", f"/rooms/{room}/messages/{theirs['id']}", {"text": "mine now"}), 403)
    error(await alice.call("DELETE", f"/rooms/{room}/messages/{theirs['id']}"), 403)
    error(await outsider.call("PUT", path, {"text": "x"}), 403)
    error(await outsider.call("DELETE", path), 403)
    error(await alice.call("PUT", f"/rooms/{room}/messages/{uuid.uuid4()}", {"text": "x"}), 404)
    # A message addressed through another room is unknown there.
    error(await alice.call("PUT", f"/rooms/{other_room}/messages/{mine['id']}", {"text": "x"}), 404)
    assert await texts(carol, room) == ["bob's", "final"]

    assert (await alice.call("DELETE", path)).status == 204
    error(await alice.call("DELETE", path), 404)
    assert await texts(carol, room) == ["bob's"]

    late = await send(alice, room, "too late")
    await asyncio.sleep(LIMIT_SECONDS + 0.5)
    late_path = f"/rooms/{room}/messages/{late['id']}"
    error(await alice.call("PUT", late_path, {"text": "changed"}), 403)
    error(await alice.call("DELETE", late_path), 403)
    assert await texts(carol, room) == ["too late", "bob's"]
    capabilities = await alice.call("GET", "/users/capabilities")
    assert capabilities.body["editMessageTimeLimitInMinutes"] == 1  # 4 s, stated in whole minutes


# ---------------------------------------------------------------- push


async def test_every_message_is_pushed_to_every_member_and_no_one_else(
    chat_stack: Stack, session: aiohttp.ClientSession
) -> None:
    alice, bob, carol, outsider = await new_users(session, chat_stack, 4)
    room = await group(alice, bob, carol)
    async with live(alice) as a, live(bob) as b, live(carol) as c, live(outsider) as o:
        sent = await send(alice, room, "to all")
        edited = await alice.call("PUT", f"/rooms/{room}/messages/{sent['id']}", {"text": "to all!"})
        assert edited.status == 200
        assert (await alice.call("DELETE", f"/rooms/{room}/messages/{sent['id']}")).status == 204
        for ws in (a, b, c):
            events = await frames(ws)
            assert [e["type"] for e in events] == [
                "ROOM_MESSAGE_SENT",
                "ROOM_MESSAGE_EDITED",
                "ROOM_MESSAGE_DELETED",
            ]
            assert events[0]["roomId"] == room and events[0]["message"] == sent
            assert events[1]["messageId"] == sent["id"] and events[1]["text"] == "to all!"
            assert events[2]["messageId"] == sent["id"]
        assert await frames(o) == []


async def test_a_gateway_restart_loses_no_message(chat_stack: Stack, session: aiohttp.ClientSession) -> None:
    alice, bob, carol = await new_users(session, chat_stack, 3)
    room = await group(alice, bob, carol)
    async with live(bob) as ws:
        first = await send(alice, room, "one")
        (event,) = await frames(ws)
        assert event["message"]["id"] == first["id"]
    chat_stack.restart("gateway-0")
    # A fresh client: the old one's kept-alive connections died with the gateway.
    async with aiohttp.ClientSession() as fresh:
        for user in (alice, bob, carol):
            user.api = Api(fresh, chat_stack.url, user.api.bearer)
        second = await send(alice, room, "two")
        third = await send(carol, room, "three")
        url = chat_stack.url.replace("http", "ws") + "/events/ws"
        params = {"access_token": bob.api.bearer or "", "lastEventId": event["id"]}
        async with fresh.ws_connect(url, params=params) as resumed:
            missed = await frames(resumed)
        assert [e["message"]["id"] for e in missed] == [second["id"], third["id"]]
        assert await texts(bob, room) == ["three", "two", "one"]


async def test_the_gateway_reads_a_room_once_and_a_resumed_socket_gets_exactly_what_it_missed(
    chat_stack: Stack, session: aiohttp.ClientSession
) -> None:
    """The gateway's one feed of PARLEY_USER_PUSH fans a room's messages out to its members' sockets
    (no consumer per socket); a socket resuming with lastEventId replays what it missed, then joins the
    feed while messages keep coming: each exactly once, in order."""
    alice, bob, carol = await new_users(session, chat_stack, 3)
    room = await group(alice, bob, carol)
    nc = await nats.connect(chat_stack.nats_url)
    js = nc.jetstream()
    try:
        consumers = (await js.stream_info(USER_PUSH_STREAM)).state.consumer_count
        async with live(alice) as a, live(carol) as c:
            async with live(bob) as b:
                # Three sockets, at most the feed itself more (it may be started already).
                assert (await js.stream_info(USER_PUSH_STREAM)).state.consumer_count <= consumers + 1
                first = await send(alice, room, "m0")
                (seen,) = await frames(b)
                assert seen["message"]["id"] == first["id"]
            missed = [await send(carol, room, f"m{n}") for n in range(1, 6)]
            url = chat_stack.url.replace("http", "ws") + "/events/ws"
            params = {"access_token": bob.api.bearer or "", "lastEventId": seen["id"]}
            # Messages keep coming while bob's socket replays and hands over to the feed.
            during = asyncio.create_task(send_all(alice, room, [f"m{n}" for n in range(6, 16)]))
            async with session.ws_connect(url, params=params) as resumed:
                later = await during
                after = await send(alice, room, "m16")
                bob_frames = await frames(resumed)
            expected = [m["id"] for m in (first, *missed, *later, after)]
            assert [e["message"]["id"] for e in bob_frames] == expected[1:]
            for ws in (a, c):
                assert [e["message"]["id"] for e in await frames(ws)] == expected
    finally:
        await nc.close()


async def send_all(user: User, room: str, texts: list[str]) -> list[dict[str, Any]]:
    return [await send(user, room, text) for text in texts]


# ---------------------------------------------------------------- forward


async def test_forward_posts_each_as_a_new_message_of_the_caller(
    chat_stack: Stack, session: aiohttp.ClientSession
) -> None:
    alice, bob, carol, dave = await new_users(session, chat_stack, 4)
    source = await group(alice, bob, carol)
    target = await group(bob, carol, dave)
    private = await group(alice, carol, dave)  # bob is not in it
    original = await send(alice, source, "worth sharing")
    secret = await send(alice, private, "secret")
    path = f"/rooms/{target}/forward"

    async with live(dave) as ws:
        forwarded = await bob.call(
            "POST",
            path,
            [
                {"originalMessage": original["id"], "description": "look"},
                {
                    "originalMessage": "<message>from elsewhere</message>",
                    "originalMessageSentAt": "2024-01-02T03:04:05Z",
                },
            ],
        )
        assert forwarded.status == 204, forwarded
        pushed = await frames(ws)
    assert [e["type"] for e in pushed] == ["ROOM_MESSAGE_SENT", "ROOM_MESSAGE_SENT"]
    listed = (await dave.call("GET", f"/rooms/{target}/messages")).body["messages"]
    assert [m["message"] for m in pushed] == list(reversed(listed))
    newest, oldest = listed
    assert oldest["userId"] == bob.id and oldest["roomId"] == target and oldest["text"] == "worth sharing"
    assert oldest["forwarded"]["originalMessage"] == original["id"]
    assert oldest["forwarded"]["description"] == "look"
    assert oldest["forwarded"]["originalMessageSentAt"] == original["sentAt"]
    assert oldest["id"] != original["id"]
    assert newest["text"] == "<message>from elsewhere</message>"
    assert newest["forwarded"] == {
        "originalMessage": "<message>from elsewhere</message>",
        "originalMessageSentAt": "2024-01-02T03:04:05Z",
    }

    # Refusals, in order; none posts anything.
    error(await dave.call("POST", f"/rooms/{source}/forward", [{"originalMessage": "x"}]), 403)
    error(await bob.call("POST", f"/rooms/{uuid.uuid4()}/forward", [{"originalMessage": "x"}]), 404)
    error(await bob.call("POST", path, [{"originalMessage": str(uuid.uuid4())}]), 404)
    error(await bob.call("POST", path, [{"originalMessage": "ok"}, {"originalMessage": secret["id"]}]), 403)
    error(await bob.call("POST", path, [{"originalMessage": ""}]), 400)
    error(await bob.call("POST", path, {"originalMessage": "not a list"}), 400)
    assert len((await dave.call("GET", f"/rooms/{target}/messages")).body["messages"]) == 2


# ---------------------------------------------------------------- room deletion


async def test_deleting_a_room_deletes_its_messages(
    chat_stack: Stack, session: aiohttp.ClientSession
) -> None:
    alice, bob, carol = await new_users(session, chat_stack, 3)
    doomed = await group(alice, bob, carol)
    kept = await group(alice, bob, carol)
    await send(alice, doomed, "gone soon")
    await send(bob, doomed, "me too")
    await send(alice, kept, "staying")
    assert (await alice.call("DELETE", f"/rooms/{doomed}")).status == 204
    error(await alice.call("GET", f"/rooms/{doomed}/messages"), 404)
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
        messages = await store.collection("chat_messages")
        assert await messages.count({"room": doomed}) == 0
        assert await messages.count({"room": kept}) == 1
    finally:
        await store.close()


async def test_a_live_socket_follows_the_rooms_its_user_joins_and_leaves(
    chat_stack: Stack, session: aiohttp.ClientSession
) -> None:
    """A room's messages are stored once on the room's subject: each socket reads the subjects of its
    user's rooms and re-reads the list when they change, without losing or repeating a frame."""
    alice, bob, carol, dave = await new_users(session, chat_stack, 4)
    async with live(bob) as b, live(dave) as d:
        room = await group(alice, bob, carol)  # bob's socket learns of the room from ROOM_CREATED
        first = await send(alice, room, "first")
        added = await alice.call(
            "POST", f"/rooms/{room}/members", {"userId": dave.id, "owner": False, "historyCleared": False}
        )
        assert added.status == 201
        second = await send(carol, room, "second")
        assert (await alice.call("DELETE", f"/rooms/{room}/members/{bob.id}")).status == 204
        third = await send(alice, room, "third")
        bob_frames = await frames(b)
        dave_frames = await frames(d)
    assert [(e["type"], e.get("message", {}).get("id")) for e in bob_frames] == [
        ("ROOM_CREATED", None),
        ("ROOM_MESSAGE_SENT", first["id"]),
        ("ROOM_MEMBER_ADDED", None),
        ("ROOM_MESSAGE_SENT", second["id"]),
        ("ROOM_MEMBER_REMOVED", None),
    ]
    assert [(e["type"], e.get("message", {}).get("id")) for e in dave_frames] == [
        ("ROOM_MEMBER_ADDED", None),
        ("ROOM_MESSAGE_SENT", second["id"]),
        ("ROOM_MEMBER_REMOVED", None),
        ("ROOM_MESSAGE_SENT", third["id"]),
    ]


async def test_a_message_lists_its_attachments_and_a_forward_copies_them(
    chat_stack: Stack, session: aiohttp.ClientSession
) -> None:
    alice, bob, carol, dave = await new_users(session, chat_stack, 4)
    source = await group(alice, bob, carol)
    target = await group(bob, carol, dave)
    original = await send(alice, source, "see the file")
    data = bytes(range(256)) * 1000
    uploaded = await upload(alice, source, data, "report.bin", messageId=original["id"])
    assert uploaded.status == 201, uploaded
    file_id = uploaded.body["id"]
    (listed,) = (await bob.call("GET", f"/rooms/{source}/messages")).body["messages"]
    assert listed["attachments"] == [file_id]

    forwarded = await bob.call("POST", f"/rooms/{target}/forward", [{"originalMessage": original["id"]}])
    assert forwarded.status == 204, forwarded
    (copy_message,) = (await dave.call("GET", f"/rooms/{target}/messages")).body["messages"]
    (copy_id,) = copy_message["attachments"]
    assert copy_id != file_id
    info = await dave.call("GET", f"/attachments/{copy_id}")
    assert info.status == 200, info
    assert (info.body["roomId"], info.body["userId"], info.body["name"]) == (target, bob.id, "report.bin")
    assert info.body["messageId"] == copy_message["id"] and info.body["size"] == len(data)
    async with session.get(
        f"{chat_stack.url}/attachments/{copy_id}/download",
        headers={"Authorization": f"Bearer {dave.api.bearer}"},
    ) as response:
        assert response.status == 200 and await response.read() == data
    # The original stays the source room's: dave (not a member there) still cannot read it.
    error(await dave.call("GET", f"/attachments/{file_id}"), 403)
