"""What push channels may cost: their durable consumers expire after the socket closes, a user's sockets are
capped. A stack of its own, with a short consumer inactivity threshold and a small cap."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack

import aiohttp
import nats
import pytest
from nats.aio.client import Client
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError
from parley_common.messaging import subjects
from parley_common.messaging.streams import PUSH_STREAM

from tests.integration.helpers import ORG, Api, Stack, token, unique
from tests.integration.test_push_channel import EVENT, channel, nothing_arrives, receive_type, send

INACTIVE_SECONDS = 1.0
PER_USER = 3


@pytest.fixture(scope="module")
def limited_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    running = Stack(
        tmp_path_factory.mktemp("push-limits"),
        env={
            "PARLEY_PUSH_CONSUMER_INACTIVE_SECONDS": str(INACTIVE_SECONDS),
            "PARLEY_PUSH_CHANNELS_PER_USER": str(PER_USER),
        },
    ).start()
    yield running
    running.stop()


@pytest.fixture
async def client(limited_stack: Stack) -> AsyncIterator[Api]:
    async with aiohttp.ClientSession() as session:
        yield Api(session, limited_stack.url, token("alice"))


@pytest.fixture
async def nc(limited_stack: Stack) -> AsyncIterator[Client]:
    connection = await nats.connect(limited_stack.nats_url)
    yield connection
    await connection.close()


def consumer_name(endpoint: str) -> str:
    return f"push-{subjects.endpoint_token(ORG, endpoint)}"


async def consumer_exists(nc: Client, endpoint: str) -> bool:
    try:
        await nc.jetstream().consumer_info(PUSH_STREAM, consumer_name(endpoint))
    except NotFoundError:
        return False
    return True


async def gone_within(nc: Client, endpoint: str, seconds: float) -> bool:
    """Whether the endpoint's consumer disappears within `seconds` (the server checks now and then)."""
    async with asyncio.timeout(seconds):
        while True:
            if not await consumer_exists(nc, endpoint):
                return True
            await asyncio.sleep(0.25)


async def test_the_consumer_of_a_closed_channel_expires_and_a_reconnect_gets_only_what_was_not_acknowledged(
    client: Api, nc: Client
) -> None:
    conference_id = await client.create()
    endpoint = unique("ep")
    await client.join(conference_id, endpoint)
    # As an older gateway left it: a week of inactivity allowed. Opening the channel must shorten that.
    await nc.jetstream().add_consumer(
        PUSH_STREAM,
        ConsumerConfig(
            name=consumer_name(endpoint),
            durable_name=consumer_name(endpoint),
            filter_subject=subjects.push_durable(ORG, endpoint),
            ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.ALL,
            inactive_threshold=7 * 24 * 3600.0,
        ),
    )
    await send(client, conference_id, "AT_LEAST_ONCE", {**EVENT, "n": 1})
    await send(client, conference_id, "AT_LEAST_ONCE", {**EVENT, "n": 2})
    async with channel(client, endpoint) as ws:
        first = await receive_type(ws, "ParticipantMutedEvent", n=1)
        await receive_type(ws, "ParticipantMutedEvent", n=2)
        await ws.send_json({"ack": first["id"]})  # the second stays unacknowledged
        await asyncio.sleep(0.2)
        assert await consumer_exists(nc, endpoint)
    assert await gone_within(nc, endpoint, INACTIVE_SECONDS + 10)

    async with channel(client, endpoint) as ws:  # a new consumer: only the unacknowledged event
        again = await receive_type(ws, "ParticipantMutedEvent")
        assert again["n"] == 2
        await ws.send_json({"ack": again["id"]})
        assert await nothing_arrives(ws, within=1.0)


async def test_a_user_holds_a_bounded_number_of_channels(client: Api) -> None:
    async with AsyncExitStack() as sockets:
        for _ in range(PER_USER):
            await sockets.enter_async_context(channel(client, unique("ep")))
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            async with channel(client, unique("ep")):
                pass
        assert refused.value.status == 429
        # Another user is not affected.
        async with channel(client.as_user("bob"), unique("ep"), user="bob"):
            pass
    # Once one closes, the user may open another.
    await asyncio.sleep(0.2)
    async with channel(client, unique("ep")):
        pass


async def test_the_refusal_is_the_api_error_body(client: Api, limited_stack: Stack) -> None:
    url = limited_stack.url + "/rtc-api/events/ws"
    headers = {
        "Connection": "Upgrade",
        "Upgrade": "websocket",
        "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
    }
    async with AsyncExitStack() as sockets:
        for _ in range(PER_USER):
            await sockets.enter_async_context(channel(client, unique("ep")))
        params = {"userEndpointId": unique("ep"), "access_token": token("alice")}
        async with client.session.get(url, params=params, headers=headers) as response:
            assert response.status == 429
            body = await response.json()
    assert "too many push channels" in body["message"].lower()
    assert body["traceId"]
