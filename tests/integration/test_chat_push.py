"""The chat push channel `GET /events/ws` against a real nats-server: events published straight to
PARLEY_USER_PUSH (as the chat service stores them) reach their user's sockets, resume after `lastEventId`,
never leak to another user, and survive a gateway restart. Also the gateway's UserSeen report."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import aiohttp
import nats
import pytest
from nats.aio.client import Client
from nats.js.errors import NotFoundError
from parley_common.contracts import chat
from parley_common.messaging import subjects
from parley_common.messaging.codec import encode
from parley_common.messaging.streams import USERS_STREAM

from tests.integration.helpers import ORG, Stack, token


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Two gateways and the chat service: a socket asks it which rooms' messages it reads."""
    running = Stack(tmp_path_factory.mktemp("chat-push"), gateways=2, chat=True).start()
    yield running
    running.stop()


@pytest.fixture
async def nc(stack: Stack) -> AsyncIterator[Client]:
    connection = await nats.connect(stack.nats_url)
    yield connection
    await connection.close()


def new_user() -> str:
    return str(uuid.uuid4())


async def publish(nc: Client, user_id: str, room_id: str | None = None) -> str:
    """One event stored for `user_id` the way the chat service stores it; its id."""
    event = chat.RoomCreated(
        id=str(uuid.uuid4()),
        sent_date=datetime.now(UTC),
        organization_id=ORG,
        room_id=room_id or str(uuid.uuid4()),
    )
    await nc.jetstream().publish(
        subjects.user_push(ORG, user_id),
        encode(event),
        headers={"Nats-Msg-Id": subjects.user_push_msg_id(event.id, user_id)},
    )
    return event.id


@asynccontextmanager
async def channel(
    session: aiohttp.ClientSession, base_url: str, user_id: str, **params: str
) -> AsyncIterator[aiohttp.ClientWebSocketResponse]:
    url = base_url.replace("http", "ws") + "/events/ws"
    async with session.ws_connect(url, params={"access_token": token(user_id), **params}) as ws:
        yield ws


async def received_ids(ws: aiohttp.ClientWebSocketResponse, count: int) -> list[str]:
    ids = []
    for _ in range(count):
        message = await ws.receive(timeout=5.0)
        assert message.type == aiohttp.WSMsgType.TEXT, message
        event = json.loads(message.data)
        assert event["type"] == "ROOM_CREATED"
        assert event["organizationId"] == ORG
        ids.append(event["id"])
    return ids


async def nothing_arrives(ws: aiohttp.ClientWebSocketResponse, within: float = 0.5) -> None:
    try:
        message = await ws.receive(timeout=within)
    except TimeoutError:
        return
    raise AssertionError(f"unexpected frame {message}")


async def test_new_events_reach_their_user_only(
    stack: Stack, session: aiohttp.ClientSession, nc: Client
) -> None:
    alice, bob = new_user(), new_user()
    before = await publish(nc, alice)
    async with channel(session, stack.url, alice) as ws:
        # Without lastEventId only what comes next: the event stored before does not come.
        first = await publish(nc, alice)
        await publish(nc, bob)
        second = await publish(nc, alice)
        assert await received_ids(ws, 2) == [first, second]
        await nothing_arrives(ws)
    assert before not in (first, second)


async def test_resume_right_after_last_event_id(
    stack: Stack, session: aiohttp.ClientSession, nc: Client
) -> None:
    alice = new_user()
    ids = [await publish(nc, alice) for _ in range(3)]
    await publish(nc, new_user())
    # On the other gateway: any gateway can resume, nothing is kept in a gateway.
    async with channel(session, stack.gateway_url(1), alice, lastEventId=ids[0]) as ws:
        assert await received_ids(ws, 2) == ids[1:]
        later = await publish(nc, alice)
        assert await received_ids(ws, 1) == [later]
        await nothing_arrives(ws)
    async with channel(session, stack.url, alice, lastEventId=later) as ws:
        await nothing_arrives(ws)


async def test_unknown_last_event_id_resumes_from_the_oldest(
    stack: Stack, session: aiohttp.ClientSession, nc: Client
) -> None:
    alice = new_user()
    ids = [await publish(nc, alice) for _ in range(2)]
    async with channel(session, stack.url, alice, lastEventId=str(uuid.uuid4())) as ws:
        assert await received_ids(ws, 2) == ids
        await nothing_arrives(ws)


async def test_cookie_opens_the_channel_and_a_non_uuid_user_is_refused(
    stack: Stack, session: aiohttp.ClientSession, nc: Client
) -> None:
    alice = new_user()
    url = stack.url.replace("http", "ws") + "/events/ws"
    headers = {"Cookie": f"ZM_AUTH_TOKEN={token(alice.upper())}"}
    async with session.ws_connect(url, headers=headers) as ws:
        event_id = await publish(nc, alice)  # the channel of the lower-cased id
        assert await received_ids(ws, 1) == [event_id]
    response = await session.get(stack.url + "/events/ws", params={"access_token": token("alice")})
    assert response.status == 403
    assert set(await response.json()) == {"message", "traceId"}


async def test_gateway_restart_loses_nothing(
    stack: Stack, session: aiohttp.ClientSession, nc: Client
) -> None:
    alice = new_user()
    async with channel(session, stack.gateway_url(1), alice) as ws:
        first = await publish(nc, alice)
        assert await received_ids(ws, 1) == [first]
        gateway = stack.local["gateway-1"]
        gateway.stop()
        # Stored while no gateway serves the user's socket.
        missed = await publish(nc, alice)
        closed = await ws.receive(timeout=5.0)
        assert closed.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR)
    gateway.start()
    stack.wait_ready(stack.ports[1])
    async with channel(session, stack.gateway_url(1), alice, lastEventId=first) as ws:
        assert await received_ids(ws, 1) == [missed]
        after = await publish(nc, alice)
        assert await received_ids(ws, 1) == [after]


async def test_an_authenticated_request_reports_the_user_seen(
    stack: Stack, session: aiohttp.ClientSession, nc: Client
) -> None:
    alice = new_user()
    bearer = token(alice, email="alice@acme.io", type="guest")
    response = await session.get(stack.url + "/auth/token", headers={"Authorization": f"Bearer {bearer}"})
    assert response.status == 200
    assert await response.json() == {"zmToken": bearer}
    subject = subjects.users_seen(ORG, alice)
    report: Any = None
    async with asyncio.timeout(5.0):
        while report is None:
            try:
                report = await nc.jetstream().get_last_msg(USERS_STREAM, subject)
            except NotFoundError:
                await asyncio.sleep(0.05)
    seen = json.loads(report.data)
    assert seen == {
        "organizationId": ORG,
        "userId": alice,
        "name": alice.title(),
        "email": "alice@acme.io",
        "type": "guest",
    }
