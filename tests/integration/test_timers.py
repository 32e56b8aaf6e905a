"""Keep-alive and empty timeouts, with the windows shortened to seconds."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator

import aiohttp
import pytest

from tests.integration.helpers import Api, Stack, token

KEEPALIVE = 1.0
GRACE = 1.5
EMPTY = 2.0


@pytest.fixture(scope="module")
def timed_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    running = Stack(
        tmp_path_factory.mktemp("timers"),
        env={
            "PARLEY_KEEPALIVE_SECONDS": str(KEEPALIVE),
            "PARLEY_KEEPALIVE_GRACE_SECONDS": str(GRACE),
            "PARLEY_EMPTY_TIMEOUT_SECONDS": str(EMPTY),
            "PARLEY_SWEEP_INTERVAL_SECONDS": "0.2",
            "PARLEY_PRESENCE_INTERVAL_SECONDS": "0.3",
            "PARLEY_LONGPOLL_SECONDS": "1",
        },
    ).start()
    yield running
    running.stop()


@pytest.fixture
async def client(timed_stack: Stack) -> AsyncIterator[Api]:
    async with aiohttp.ClientSession() as session:
        yield Api(session, timed_stack.url, token("alice"))


async def states(api: Api, conference_id: str) -> dict[str, str]:
    return {p["id"]: p["state"] for p in (await api.conference(conference_id))["participants"]}


async def wait_for(condition, timeout: float):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = await condition()
        if result:
            return result
        await asyncio.sleep(0.1)
    raise AssertionError("condition not met in time")


async def test_a_silent_endpoint_turns_sick_then_times_out_while_a_connected_one_stays(client: Api) -> None:
    conference_id = await client.create()
    await client.join(conference_id, "silent")
    await client.join(conference_id, "connected")
    url = client.base_url.replace("http", "ws") + "/rtc-api/events/ws"
    params = {"userEndpointId": "connected", "access_token": token("alice")}
    async with client.session.ws_connect(url, params=params):
        assert await states(client, conference_id) == {"silent": "HEALTHY", "connected": "HEALTHY"}
        await wait_for(lambda: _state_is(client, conference_id, "silent", "SICK"), timeout=KEEPALIVE + 1.5)
        assert (await states(client, conference_id))["connected"] == "HEALTHY"
        await wait_for(lambda: _gone(client, conference_id, "silent"), timeout=GRACE + 2)
        assert await states(client, conference_id) == {"connected": "HEALTHY"}
    left = [e for e in (await client.events(conference_id, 0)).body if e["type"] == "ConferenceLeftEvent"]
    assert [(e["userEndpointId"], e["reason"]) for e in left] == [("silent", "TIMEOUT")]


async def _state_is(client: Api, conference_id: str, endpoint: str, state: str) -> bool:
    return (await states(client, conference_id)).get(endpoint) == state


async def _gone(client: Api, conference_id: str, endpoint: str) -> bool:
    return endpoint not in await states(client, conference_id)


async def test_polling_keeps_an_endpoint_alive(client: Api) -> None:
    conference_id = await client.create()
    await client.join(conference_id, "poller")
    deadline = time.monotonic() + KEEPALIVE + GRACE + 1
    while time.monotonic() < deadline:
        await client.events(conference_id, 99, endpoint="poller", timeout=5)
    assert (await states(client, conference_id)) == {"poller": "HEALTHY"}


async def test_an_empty_conference_ends_by_itself(client: Api) -> None:
    conference_id = await client.create()
    await client.join(conference_id, "a1")
    await client.post("leave", {"conferenceId": conference_id, "userEndpointId": "a1"})
    events = await wait_for(lambda: _ended(client, conference_id), timeout=EMPTY + 2)
    ended = events[-1]
    assert ended["reason"] == "EMPTY_TIMEOUT"
    assert ended["conferenceVersion"] == 2
    response = await client.post("join", {"conferenceId": conference_id, "userEndpointId": "a1"})
    assert response.status == 409


async def _ended(client: Api, conference_id: str) -> list[dict[str, object]] | None:
    events = (await client.events(conference_id, 0)).body
    return events if events and events[-1]["type"] == "ConferenceEndedEvent" else None
