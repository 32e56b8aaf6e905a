"""The push channel and sendEvent: conference events and endpoint events over a WebSocket."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import nats
import pytest
from parley_common.messaging import subjects

from tests.integration.helpers import Api, Stack, token, unique

EVENT = {"type": "ParticipantMutedEvent", "timestamp": "2026-01-01T10:15:30Z"}


@asynccontextmanager
async def channel(
    api: Api, endpoint: str, user: str = "alice"
) -> AsyncIterator[aiohttp.ClientWebSocketResponse]:
    url = api.base_url.replace("http", "ws") + "/rtc-api/events/ws"
    params = {"userEndpointId": endpoint, "access_token": token(user)}
    async with api.session.ws_connect(url, params=params) as ws:
        yield ws


async def receive(ws: aiohttp.ClientWebSocketResponse, timeout: float = 5.0) -> dict[str, Any]:
    message = await ws.receive(timeout=timeout)
    assert message.type == aiohttp.WSMsgType.TEXT, message
    return dict(json.loads(message.data))


async def receive_type(
    ws: aiohttp.ClientWebSocketResponse, event_type: str, timeout: float = 5.0, **fields: Any
) -> dict[str, Any]:
    """The next event of `event_type` (with these field values, if given); others are skipped."""
    async with asyncio.timeout(timeout):
        while True:
            event = await receive(ws, timeout)
            if event.get("type") == event_type and all(event.get(k) == v for k, v in fields.items()):
                return event


async def nothing_arrives(ws: aiohttp.ClientWebSocketResponse, within: float = 0.5) -> bool:
    try:
        message = await ws.receive(timeout=within)
    except TimeoutError:
        return True
    raise AssertionError(f"unexpected frame {message}")


async def send(
    api: Api, conference_id: str, qos: str, event: dict[str, Any] | None = None, **extra: Any
) -> Any:
    return await api.post(
        "sendEvent", {"conferenceId": conference_id, "qos": qos, "event": event or EVENT, **extra}
    )


async def test_the_channel_streams_events_of_conferences_joined_before_and_after_connecting(api: Api) -> None:
    before = await api.create()
    await api.join(before, "a1")
    async with channel(api, "a1") as ws:
        await api.as_user("bob").join(before, "b1")
        # a1's own join may still be on its way (events are published after the reply): skip it.
        joined = await receive_type(ws, "ConferenceJoinedEvent", userEndpointId="b1")
        assert joined["conferenceId"] == before
        after = await api.create()
        await api.join(after, "a1")
        own = await receive_type(ws, "ConferenceJoinedEvent", conferenceId=after)
        assert own["userEndpointId"] == "a1"
        await api.post("leave", {"conferenceId": after, "userEndpointId": "a1"})
        left = await receive_type(ws, "ConferenceLeftEvent")
        assert left["conferenceId"] == after
        # having left, nothing more of that conference
        await api.as_user("bob").join(after, "b1")
        assert await nothing_arrives(ws)


async def test_an_endpoint_of_another_user_cannot_open_its_channel(api: Api) -> None:
    conference_id = await api.create()
    await api.join(conference_id, "alice-only")
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        async with channel(api, "alice-only", user="mallory"):
            pass
    assert refused.value.status == 403


async def test_the_channel_needs_a_token_and_an_endpoint(api: Api) -> None:
    url = api.base_url.replace("http", "ws") + "/rtc-api/events/ws"
    with pytest.raises(aiohttp.WSServerHandshakeError) as anonymous:
        async with api.session.ws_connect(url, params={"userEndpointId": "x"}):
            pass
    assert anonymous.value.status == 401
    with pytest.raises(aiohttp.WSServerHandshakeError) as no_endpoint:
        async with api.session.ws_connect(url, params={"access_token": token("alice")}):
            pass
    assert no_endpoint.value.status == 400


@pytest.mark.parametrize(
    ("event", "field"),
    [
        ({"timestamp": "2026-01-01T10:15:30Z"}, "event.type"),
        ({**EVENT, "type": "participantMutedEvent"}, "event.type"),
        ({**EVENT, "type": "ParticipantMuted"}, "event.type"),
        ({**EVENT, "type": "Event"}, "event.type"),
        ({"type": "ParticipantMutedEvent"}, "event.timestamp"),
        ({**EVENT, "timestamp": "yesterday"}, "event.timestamp"),
        ({**EVENT, "timestamp": "2026-01-01 10:15:30"}, "event.timestamp"),
        ({**EVENT, "timestamp": 1700000000}, "event.timestamp"),
    ],
)
async def test_send_event_validates_type_and_timestamp(api: Api, event: dict[str, Any], field: str) -> None:
    conference_id = await api.create()
    response = await send(api, conference_id, "BEST_EFFORT", event)
    assert response.status == 400
    assert field in response.body["message"]


async def test_send_event_requires_qos_and_valid_masks(api: Api) -> None:
    conference_id = await api.create()
    no_qos = await api.post("sendEvent", {"conferenceId": conference_id, "event": EVENT})
    assert no_qos.status == 400
    assert "qos" in no_qos.body["message"]
    bad_qos = await send(api, conference_id, "SOMETIMES")
    assert bad_qos.status == 400
    bad_mask = await send(api, conference_id, "BEST_EFFORT", masks=["$..[?("])
    assert bad_mask.status == 400
    assert "masks" in bad_mask.body["message"]


async def test_best_effort_events_reach_every_joined_endpoint(api: Api) -> None:
    conference_id = await api.create()
    bob = api.as_user("bob")
    await api.join(conference_id, "a1")
    await bob.join(conference_id, "b1")
    await bob.join(conference_id, "b2")  # joined, not connected: counted, never delivered
    async with channel(api, "a1") as alice_ws, channel(bob, "b1", user="bob") as bob_ws:
        response = await send(api, conference_id, "BEST_EFFORT", {**EVENT, "muted": True})
        assert (response.status, response.body) == (200, {"eventsSent": 3})
        for ws in (alice_ws, bob_ws):
            event = await receive_type(ws, "ParticipantMutedEvent")
            assert event["muted"] is True
            assert event["conferenceId"] == conference_id
            assert event["id"]


async def test_masks_hide_fields_in_stored_copies_but_not_from_endpoints(api: Api, stack: Stack) -> None:
    conference_id = await api.create()
    endpoint = unique("ep")
    await api.join(conference_id, endpoint)
    secret_event = {**EVENT, "card": {"number": "4111111111111111", "holder": "Alice"}, "note": "keep"}
    response = await send(
        api, conference_id, "AT_LEAST_ONCE", secret_event, masks=["$.card.number", "$.note"]
    )
    assert response.status == 200
    async with channel(api, endpoint) as ws:
        delivered = await receive_type(ws, "ParticipantMutedEvent")
        assert delivered["card"] == {"number": "4111111111111111", "holder": "Alice"}
        assert delivered["note"] == "keep"
        # the copy stored in JetStream is masked, character for character (read before the ack deletes it)
        nc = await nats.connect(stack.nats_url)
        try:
            stored = await nc.jetstream().get_last_msg("PARLEY_PUSH", subjects.push_durable("acme", endpoint))
        finally:
            await nc.close()
        await ws.send_json({"ack": delivered["id"]})
    copy = json.loads(stored.data)
    assert copy["event"]["card"] == {"number": "*" * 16, "holder": "Alice"}
    assert copy["event"]["note"] == "****"
    assert b"4111111111111111" not in stored.data
    assert "4111111111111111" not in stack.logs("conference")
    assert "4111111111111111" not in stack.logs("gateway-0")


async def test_at_least_once_events_wait_for_the_endpoint_and_come_back_until_acknowledged(api: Api) -> None:
    conference_id = await api.create()
    endpoint = unique("ep")
    await api.join(conference_id, endpoint)
    response = await send(api, conference_id, "AT_LEAST_ONCE", {**EVENT, "n": 1})
    assert response.body == {"eventsSent": 1}
    async with channel(api, endpoint) as ws:  # connected after the send: still delivered
        first = await receive_type(ws, "ParticipantMutedEvent")
        assert first["n"] == 1
    async with channel(api, endpoint) as ws:  # not acknowledged: delivered again
        again = await receive_type(ws, "ParticipantMutedEvent")
        assert again["id"] == first["id"]
        await ws.send_json({"ack": again["id"]})
        await asyncio.sleep(0.2)
    async with channel(api, endpoint) as ws:  # acknowledged: gone
        assert await nothing_arrives(ws, within=1.0)


async def test_a_deeply_nested_client_message_is_ignored_and_the_channel_carries_on(api: Api) -> None:
    conference_id = await api.create()
    endpoint = unique("ep")
    await api.join(conference_id, endpoint)
    await send(api, conference_id, "AT_LEAST_ONCE", {**EVENT, "n": 1})
    async with channel(api, endpoint) as ws:
        first = await receive_type(ws, "ParticipantMutedEvent")
        # msgspec recurses into ignored fields: 1,000 levels raised RecursionError in the socket task
        await ws.send_str('{"other": ' + "[" * 1000 + "]" * 1000 + "}")
        await ws.send_json({"ack": first["id"]})
        await send(api, conference_id, "BEST_EFFORT", {**EVENT, "n": 2})
        second = await receive_type(ws, "ParticipantMutedEvent", n=2)
        assert second["n"] == 2
    async with channel(api, endpoint) as ws:  # the ack after the deep message was still taken
        assert await nothing_arrives(ws, within=1.0)


async def test_at_least_once_events_reach_idle_channels_promptly(api: Api) -> None:
    """Events sent one after another after a quiet spell reach every connected endpoint at once (issues
    12/13). The gateway reads each endpoint's durable consumer with a fetch that times out while idle
    (FETCH_SECONDS). With nats-py's `fetch(64)`, the pull of a fetch that timed out could answer the next
    fetch's first pull with its late 408: that fetch then left a lingering pull of 64 behind, which took
    the following message and held it until it expired (up to 2 s). 16 channels over two quiet spells give
    that race 32 chances."""
    conference_id = await api.create()
    # Two users: a user may hold 10 channels on one gateway.
    endpoints = [(user, unique("ep")) for user in ("alice", "bob") for _ in range(8)]
    for user, endpoint in endpoints:
        await api.as_user(user).join(conference_id, endpoint)
    async with contextlib.AsyncExitStack() as stack:
        sockets = [
            await stack.enter_async_context(channel(api.as_user(user), endpoint, user=user))
            for user, endpoint in endpoints
        ]
        latencies: list[float] = []
        for n in range(4):
            if n % 2 == 0:
                await asyncio.sleep(2.3)  # every channel's fetch has timed out at least once meanwhile
            sent = time.monotonic()
            response = await send(api, conference_id, "AT_LEAST_ONCE", {**EVENT, "n": n})
            assert response.body == {"eventsSent": len(endpoints)}

            async def arrival(ws: aiohttp.ClientWebSocketResponse, n: int = n, sent: float = sent) -> float:
                event = await receive_type(ws, "ParticipantMutedEvent", n=n)
                await ws.send_json({"ack": event["id"]})
                return time.monotonic() - sent

            latencies += await asyncio.gather(*(arrival(ws) for ws in sockets))
        # measured: at most ~0.1 s with fetch_ready; before it, up to the 2 s fetch timeout
        assert max(latencies) < 0.5, sorted(latencies)
