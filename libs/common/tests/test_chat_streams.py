"""The chat streams as a real nats-server declares and applies them: per-recipient dedup, the directory's
one-message-per-user retention, and no stream capturing a request subject."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import msgspec
import nats
import pytest
from nats.aio.client import Client
from parley_common.contracts import chat
from parley_common.messaging import streams, subjects
from parley_common.messaging.streams import ensure_streams
from parley_common.processes import NatsServer

ALICE = "2c4a230c-5085-4924-a3e1-25fb4fc5965b"
BOB = "497f6eca-6276-4993-bfeb-53cbbbba6f08"
ROOM = "c3631f02-ff67-42b8-8775-18c47f52a678"


@pytest.fixture
async def nc(nats_server: NatsServer) -> AsyncIterator[Client]:
    connection = await nats.connect(nats_server.url)
    await ensure_streams(connection.jetstream())
    yield connection
    await connection.close()


async def test_one_event_is_stored_once_per_recipient_and_a_retry_is_deduplicated(nc: Client) -> None:
    js = nc.jetstream()
    event = chat.RoomCreated(id="e-1", sent_date=datetime.now(UTC), organization_id="acme", room_id=ROOM)
    payload = msgspec.json.encode(event)
    for _attempt in range(2):  # a retried outbox delivery
        for user in (ALICE, BOB):
            ack = await js.publish(
                subjects.user_push("acme", user),
                payload,
                headers={"Nats-Msg-Id": subjects.user_push_msg_id(event.id, user)},
            )
            assert ack.stream == streams.USER_PUSH_STREAM
    info = await js.stream_info(streams.USER_PUSH_STREAM)
    assert info.state.messages == 2
    stored = await js.get_last_msg(streams.USER_PUSH_STREAM, subjects.user_push("acme", BOB))
    assert msgspec.json.decode(stored.data or b"", type=chat.AnyChatEvent) == event
    ack = await js.publish(subjects.chat_event("ROOM_CREATED"), payload, headers={"Nats-Msg-Id": event.id})
    assert ack.stream == streams.CHAT_STREAM


async def test_the_users_stream_keeps_only_the_latest_report_of_each_user(nc: Client) -> None:
    js = nc.jetstream()
    for name in ("first", "second"):
        seen = chat.UserSeen(organization_id="acme", user_id=ALICE, name=name)
        await js.publish(subjects.users_seen("acme", ALICE), msgspec.json.encode(seen))
    await js.publish(
        subjects.users_seen("globex", ALICE),
        msgspec.json.encode(chat.UserSeen(organization_id="globex", user_id=ALICE, name="other")),
    )
    last = await js.get_last_msg(streams.USERS_STREAM, subjects.users_seen("acme", ALICE))
    assert msgspec.json.decode(last.data or b"", type=chat.UserSeen).name == "second"
    info = await js.stream_info(streams.USERS_STREAM)
    assert info.state.messages == 2


async def test_chat_requests_are_answered_by_their_handler_not_by_a_stream(nc: Client) -> None:
    """A stream capturing a request subject would answer with a PubAck: nothing does here."""
    sub = await nc.subscribe(subjects.CHAT_ADMIT, queue=subjects.CHAT_QUEUE)
    reply = asyncio.create_task(nc.request(subjects.CHAT_ADMIT, b"{}", timeout=2))
    message = await sub.next_msg(timeout=2)
    await message.respond(b'{"outcome":"accepted","value":{"admitted":true}}')
    assert (await reply).data == b'{"outcome":"accepted","value":{"admitted":true}}'
    await sub.unsubscribe()
