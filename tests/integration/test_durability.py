"""Nothing acknowledged is lost: restarts mid-traffic, a service that is down, replicas racing."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import nats
import pytest
from nats.js.api import DeliverPolicy

from tests.integration.helpers import Api, Stack, token, unique

WORKERS = 6


@pytest.fixture(scope="module")
def own_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    running = Stack(
        tmp_path_factory.mktemp("durability"), gateways=2, env={"PARLEY_LONGPOLL_SECONDS": "1"}
    ).start()
    yield running
    running.stop()


@pytest.fixture
async def client(own_stack: Stack) -> AsyncIterator[Api]:
    async with aiohttp.ClientSession() as session:
        yield Api(session, own_stack.url, token("alice"))


async def traffic(api: Api, conference_id: str, stop: asyncio.Event) -> dict[str, list[int]]:
    """Workers update their participant metadata in a loop; returns what each saw acknowledged."""
    acknowledged: dict[str, list[int]] = {}

    async def worker(endpoint: str) -> None:
        acknowledged[endpoint] = []
        joined = False
        n = 0
        while not stop.is_set():
            try:
                if not joined:
                    response = await api.post(
                        "join", {"conferenceId": conference_id, "userEndpointId": endpoint}, timeout=3
                    )
                    joined = response.status == 200
                    continue
                n += 1
                body = {"conferenceId": conference_id, "userEndpointId": endpoint, "newMetadata": {"n": n}}
                response = await api.post("updateParticipantMetadata", body, timeout=3)
                if response.status == 204:
                    acknowledged[endpoint].append(n)
                else:
                    assert response.status == 503, response
            except (aiohttp.ClientError, TimeoutError):
                await asyncio.sleep(0.05)  # the gateway itself is restarting: not acknowledged

    await asyncio.gather(*(worker(f"w{i}") for i in range(WORKERS)))
    return acknowledged


async def stream_event_ids(nats_url: str, conference_id: str) -> set[str]:
    nc = await nats.connect(nats_url)
    ids: set[str] = set()
    try:
        js = nc.jetstream()
        sub = await js.subscribe(
            "parley.events.conference.>", ordered_consumer=True, deliver_policy=DeliverPolicy.ALL
        )
        info = await js.stream_info("PARLEY_CONFERENCE")
        for _ in range(info.state.messages):
            msg = await sub.next_msg(timeout=5)
            event = json.loads(msg.data)
            if event["conferenceId"] == conference_id:
                ids.add(event["id"])
        await sub.unsubscribe()
    finally:
        await nc.close()
    return ids


async def all_events(api: Api, conference_id: str) -> list[dict[str, Any]]:
    """Every event of the conference: a long history comes a page at a time (a reply fits the bus)."""
    version = (await api.conference(conference_id))["version"]
    events: list[dict[str, Any]] = []
    while len(events) < version:
        response = await api.events(conference_id, len(events))
        assert response.status == 200, (response.status, response.body)
        assert response.body, "a page is never empty while events remain"
        events.extend(response.body)
    return events


async def check_nothing_lost(
    api: Api, stack: Stack, conference_id: str, acknowledged: dict[str, list[int]]
) -> None:
    events = await all_events(api, conference_id)
    versions = [e["conferenceVersion"] for e in events]
    assert versions == list(range(len(events))), "versions must be contiguous from 0"
    assert (await api.conference(conference_id))["version"] == len(events)
    recorded: dict[str, set[int]] = {}
    for event in events:
        if event["type"] == "ConferenceParticipantMetadataUpdatedEvent":
            recorded.setdefault(event["userEndpointId"], set()).add(event["newMetadata"]["n"])
    total = 0
    for endpoint, values in acknowledged.items():
        missing = set(values) - recorded.get(endpoint, set())
        assert not missing, f"acknowledged but lost for {endpoint}: {sorted(missing)}"
        total += len(values)
    assert total > 50, "the traffic should have been real"
    # every committed event also reached the stream (published, deduplicated by id)
    deadline = time.monotonic() + 5
    while True:
        published = await stream_event_ids(stack.nats_url, conference_id)
        if {e["id"] for e in events} <= published or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)
    assert {e["id"] for e in events} <= published
    assert len(published) == len(events) + 1  # plus the creation event


@pytest.mark.parametrize("kill", [False, True], ids=["sigterm", "sigkill"])
async def test_restarting_the_conference_service_mid_traffic_loses_nothing(
    client: Api, own_stack: Stack, kill: bool
) -> None:
    conference_id = await client.create()
    stop = asyncio.Event()
    running = asyncio.create_task(traffic(client, conference_id, stop))
    await asyncio.sleep(1.0)
    await asyncio.to_thread(own_stack.restart, "conference", kill=kill)
    await asyncio.sleep(1.0)
    stop.set()
    acknowledged = await running
    await check_nothing_lost(client, own_stack, conference_id, acknowledged)


async def test_restarting_a_gateway_mid_traffic_loses_nothing(client: Api, own_stack: Stack) -> None:
    conference_id = await client.create()
    stop = asyncio.Event()
    running = asyncio.create_task(traffic(client, conference_id, stop))
    await asyncio.sleep(1.0)
    await asyncio.to_thread(own_stack.restart, "gateway-0")
    await asyncio.sleep(1.0)
    stop.set()
    acknowledged = await running
    await check_nothing_lost(client, own_stack, conference_id, acknowledged)


async def test_a_service_that_is_down_answers_503_within_two_seconds(client: Api, own_stack: Stack) -> None:
    conference_id = await client.create()
    own_stack.local["conference"].stop()
    try:
        for op, body in [("create", {}), ("join", {"conferenceId": conference_id, "userEndpointId": "a"})]:
            started = time.perf_counter()
            response = await client.post(op, body)
            assert response.status == 503, response
            assert time.perf_counter() - started < 2.0
            assert response.body["message"]
        health = await Api(client.session, client.base_url, None).get("/health/ready")
        assert health.status == 500
    finally:
        await asyncio.to_thread(own_stack.restart, "conference")
    assert (await client.post("join", {"conferenceId": conference_id, "userEndpointId": "a"})).status == 200


async def test_at_least_once_events_survive_a_gateway_restart(client: Api, own_stack: Stack) -> None:
    conference_id = await client.create()
    endpoint = unique("ep")
    await client.join(conference_id, endpoint)
    url = own_stack.gateway_url(1).replace("http", "ws") + "/rtc-api/events/ws"
    params = {"userEndpointId": endpoint, "access_token": token("alice")}
    event = {"type": "DocumentSharedEvent", "timestamp": "2026-01-01T00:00:00Z", "doc": "x"}
    async with client.session.ws_connect(url, params=params) as ws:
        response = await client.post(
            "sendEvent", {"conferenceId": conference_id, "qos": "AT_LEAST_ONCE", "event": event}
        )
        assert response.body == {"eventsSent": 1}
        first = json.loads((await ws.receive(timeout=5)).data)
        assert first["type"] == "DocumentSharedEvent"
        # not acknowledged, and the gateway holding the socket goes away
        await asyncio.to_thread(own_stack.restart, "gateway-1", kill=True)
    async with client.session.ws_connect(url, params=params) as ws:
        again = json.loads((await ws.receive(timeout=15)).data)
        assert again["id"] == first["id"]
        await ws.send_json({"ack": again["id"]})


async def test_two_replicas_never_commit_the_same_version(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Two conference-service processes on one SQLite file race on one conference: every join succeeds
    once, versions stay contiguous, and none is taken twice."""
    stack = await asyncio.to_thread(Stack(tmp_path_factory.mktemp("replicas"), conferences=2).start)
    try:
        async with aiohttp.ClientSession() as session:
            api = Api(session, stack.url, token("alice"))
            conference_id = await api.create()
            responses = await asyncio.gather(
                *(
                    api.post("join", {"conferenceId": conference_id, "userEndpointId": f"e{i}"})
                    for i in range(32)
                )
            )
            assert [r.status for r in responses] == [200] * 32
            events = (await api.events(conference_id, 0)).body
            assert [e["conferenceVersion"] for e in events] == list(range(32))
            assert sorted(e["userEndpointId"] for e in events) == sorted(f"e{i}" for i in range(32))
            conference = await api.conference(conference_id)
            assert conference["version"] == 32
            assert len(conference["participants"]) == 32
    finally:
        await asyncio.to_thread(stack.stop)
