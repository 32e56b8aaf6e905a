"""Webhooks out, end to end: a real nats-server, conference service and gateway, real aiohttp receivers.

Endpoints are registered over `/rtc-api/webhooks`; conference events are driven over the API, and the
catalogue's other event types (media, snapshot, chat, meeting: their services do not run here) are
published on their subjects over the real NATS connection, exactly as their publishers do. Each POST is
checked with the documented verifier (`parley-token verify-webhook`'s `verify_webhook`).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from typing import Any

import aiohttp
import msgspec
import nats
import pytest
from aiohttp import web
from parley_common.contracts import catalogue
from parley_common.processes import free_port
from parley_gateway.token_cli import InvalidWebhook, verify_webhook

from tests.integration.helpers import ORG, Api, Stack, token

OTHER_ORG = "globex"
CONFIGURED_SECRET = "configured-endpoint-secret"
MAX_ATTEMPTS = 5
pytestmark = pytest.mark.timeout(60)


class Receiver:
    """An HTTP endpoint that records every POST (headers and exact body), answering `status`."""

    def __init__(self, port: int | None = None, status: int = 204) -> None:
        self.port = port or free_port()
        self.status = status
        self.received: list[tuple[dict[str, str], bytes, float]] = []
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def start(self) -> Receiver:
        async def hook(request: web.Request) -> web.Response:
            self.received.append((dict(request.headers), await request.read(), time.monotonic()))
            return web.Response(status=self.status)

        app = web.Application()
        app.router.add_post("/hook", hook)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(body) for _, body, _ in self.received]

    async def wait_for(self, done: Any, timeout: float = 15.0, why: Any = None) -> None:
        deadline = time.monotonic() + timeout
        while not done():
            assert time.monotonic() < deadline, (
                f"not received in time; got {len(self.received)} POSTs; {why() if why else ''}"
            )
            await asyncio.sleep(0.05)


CONFIGURED_PORT = free_port()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    configured = [{"url": f"http://127.0.0.1:{CONFIGURED_PORT}/hook", "secret": CONFIGURED_SECRET}]
    running = Stack(
        tmp_path_factory.mktemp("webhooks"),
        env={
            "PARLEY_WEBHOOKS": json.dumps(configured),
            "PARLEY_WEBHOOK_MAX_ATTEMPTS": str(MAX_ATTEMPTS),
            "PARLEY_WEBHOOK_RETRY_BASE_SECONDS": "0.2",
            "PARLEY_WEBHOOK_RETRY_MAX_SECONDS": "0.5",
            "PARLEY_WEBHOOK_TIMEOUT_SECONDS": "2",
        },
    )
    running.start()
    yield running
    running.stop()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


async def register(api: Api, url: str, event_types: list[str] | None = None) -> dict[str, Any]:
    body = {"url": url, "eventTypes": event_types or []}
    created = await api.request("POST", "/rtc-api/webhooks", json=body)
    assert created.status == 201, created
    assert created.body["secret"] and created.body["webhookId"]
    return dict(created.body)


def sample(cls: type[msgspec.Struct], overrides: dict[str, Any]) -> dict[str, Any]:
    """A valid instance of an event type (as JSON), built from its msgspec type: the required fields with
    plain values, and `overrides` (by Python field name) wherever a struct has that field."""
    info = msgspec.inspect.type_info(cls)
    assert isinstance(info, msgspec.inspect.StructType)
    out: dict[str, Any] = {}
    for f in info.fields:
        if f.name in overrides:
            out[f.encode_name] = overrides[f.name]
        elif f.required:
            out[f.encode_name] = _value(f.type, overrides)
    return out


def _value(t: msgspec.inspect.Type, overrides: dict[str, Any]) -> Any:
    i = msgspec.inspect
    if isinstance(t, i.StructType):
        return sample(t.cls, overrides)
    if isinstance(t, i.UnionType):
        return _value(next(x for x in t.types if not isinstance(x, i.NoneType)), overrides)
    if isinstance(t, i.LiteralType):
        return t.values[0]
    if isinstance(t, i.EnumType):
        return next(iter(t.cls)).value
    if isinstance(t, i.StrType):
        return "x" * max(1, t.min_length or 0)
    if isinstance(t, i.IntType | i.FloatType):
        return max(1, int(t.ge or 0))
    if isinstance(t, i.BoolType):
        return False
    if isinstance(t, i.DateTimeType):
        return datetime.now(UTC).isoformat()
    if isinstance(t, i.ListType | i.TupleType | i.VarTupleType | i.SetType | i.FrozenSetType):
        return []
    return {}


async def publish_samples(nats_url: str, kinds: list[catalogue.EventKind], org: str, key: str) -> set[str]:
    """Publish one event of each kind on its subject, as its publisher does; their ids."""
    ids: set[str] = set()
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        for kind in kinds:
            event_id = str(uuid.uuid4())
            overrides = {
                "id": event_id,
                "organization_id": org,
                "conference_id": key,
                "room_id": key,
                "meeting_id": key,
                "session_id": key,
            }
            event = msgspec.convert(sample(kind.payload, overrides), kind.payload)
            await js.publish(kind.subject, msgspec.json.encode(event), headers={"Nats-Msg-Id": event_id})
            ids.add(event_id)
    finally:
        await nc.close()
    return ids


def verified(receiver: Receiver, secret: str, webhook_id: str) -> list[dict[str, Any]]:
    """Every POST the receiver got, each checked as the README tells receivers to check it."""
    events = []
    for headers, body, _ in receiver.received:
        claims = verify_webhook(body, headers["Authorization"], secret, webhook_id=webhook_id)
        assert claims["iss"] == webhook_id
        assert headers["Content-Type"] == "application/webhook+json"
        event = json.loads(body)
        assert headers["Webhook-Id"] == event["id"] == event["event"]["id"]
        assert headers["Webhook-Event-Type"] == event["type"]
        events.append(event)
    return events


async def drive_conference(api: Api) -> str:
    """Every conference event the API drives without media: created, joined, metadata, left, ended."""
    conference_id = await api.create()
    await api.join(conference_id, "e1")
    await api.join(conference_id, "e2")
    base = {"conferenceId": conference_id, "userEndpointId": "e1"}
    for op, body in [
        ("updateMetadata", {**base, "key": "k", "operation": "SET", "value": "v"}),
        ("updateParticipantMetadata", {**base, "newMetadata": {"a": 1}}),
        ("leave", {"conferenceId": conference_id, "userEndpointId": "e2"}),
        ("end", base),
    ]:
        response = await api.post(op, body)
        assert response.status == 204, (op, response)
    return conference_id


async def test_every_event_type_reaches_a_receiver_once_signed_and_configured_ones_get_every_org(
    stack: Stack, session: aiohttp.ClientSession
) -> None:
    api = Api(session, stack.url, token("alice"))
    other = Api(session, stack.url, token("bob", OTHER_ORG))
    receiver = await Receiver().start()
    configured = await Receiver(CONFIGURED_PORT).start()
    try:
        hook = await register(api, receiver.url)
        conference_id = await drive_conference(api)
        other_conference = await other.create()
        driven = {"ConferenceCreatedEvent", "ConferenceJoinedEvent", "ConferenceMetadataUpdatedEvent"}
        driven |= {"ConferenceParticipantMetadataUpdatedEvent", "ConferenceLeftEvent", "ConferenceEndedEvent"}
        rest = [k for k in catalogue.EVENT_KINDS if k.type not in driven]
        published = await publish_samples(stack.nats_url, rest, ORG, f"k-{uuid.uuid4().hex[:8]}")

        everything = set(catalogue.EVENT_TYPES)
        await receiver.wait_for(
            lambda: {e["type"] for e in receiver.events()} >= everything,
            why=lambda: everything - {e["type"] for e in receiver.events()},
        )
        await configured.wait_for(lambda: OTHER_ORG in {e["organizationId"] for e in configured.events()})
        await asyncio.sleep(0.5)  # time for a duplicate to show up, if one were sent

        events = verified(receiver, hook["secret"], hook["webhookId"])
        ids = Counter(e["id"] for e in events)
        assert ids.most_common(1)[0][1] == 1, "an event was delivered twice"
        assert published <= set(ids)
        assert {e["type"] for e in events} == everything
        assert {e["organizationId"] for e in events} == {ORG}, "another organization's event leaked"
        mine = [e for e in events if e["event"].get("conferenceId") == conference_id]
        assert mine[0]["type"] == "ConferenceCreatedEvent"
        versions = [e["event"].get("conferenceVersion", 0) for e in mine]
        assert versions == sorted(versions, key=lambda v: -1 if v is None else v), mine
        # The body is the event exactly as on the bus, inside LiveKit's envelope.
        assert set(events[0]) == {"id", "type", "createdAt", "organizationId", "event"}

        # A tampered body or another secret fails the documented check.
        headers, body, _ = receiver.received[0]
        with pytest.raises(InvalidWebhook):
            verify_webhook(body + b" ", headers["Authorization"], hook["secret"])
        with pytest.raises(InvalidWebhook):
            verify_webhook(body, headers["Authorization"], "not-the-secret")

        # The deployment's endpoint gets every organization's events, signed with its configured secret.
        seen = configured.events()
        assert {e["organizationId"] for e in seen} >= {ORG, OTHER_ORG}
        assert other_conference in {e["event"].get("conferenceId") for e in seen}
        for headers, body, _ in configured.received:
            verify_webhook(body, headers["Authorization"], CONFIGURED_SECRET)
    finally:
        await receiver.stop()
        await configured.stop()
        await api.request("DELETE", f"/rtc-api/webhooks/{hook['webhookId']}")


async def test_a_receiver_down_for_a_while_gets_everything_after_in_order_per_conference(
    stack: Stack, session: aiohttp.ClientSession
) -> None:
    api = Api(session, stack.url, token("carol"))
    receiver = Receiver()  # not listening yet: connections are refused
    hook = await register(api, receiver.url, ["ConferenceCreatedEvent", "ConferenceMetadataUpdatedEvent"])
    try:
        conferences = [await api.create(), await api.create()]
        for conference_id in conferences:
            await api.join(conference_id, "e")
        for n in range(5):
            for conference_id in conferences:
                body = {
                    "conferenceId": conference_id,
                    "userEndpointId": "e",
                    "key": "n",
                    "operation": "SET",
                    "value": str(n),
                }
                response = await api.post("updateMetadata", body)
                assert response.status == 204, response
        await asyncio.sleep(0.8)
        assert not receiver.received
        await receiver.start()
        await receiver.wait_for(lambda: len(receiver.received) >= 12)
        await asyncio.sleep(0.3)
        events = verified(receiver, hook["secret"], hook["webhookId"])
        assert len(events) == 12
        for conference_id in conferences:
            mine = [e["event"] for e in events if e["event"]["conferenceId"] == conference_id]
            assert [e.get("value") for e in mine] == [None, "0", "1", "2", "3", "4"], mine
        details = await api.get(f"/rtc-api/webhooks/{hook['webhookId']}")
        assert details.status == 200 and details.body["failures"] == [], details
    finally:
        await receiver.stop()
        await api.request("DELETE", f"/rtc-api/webhooks/{hook['webhookId']}")


async def test_a_failing_receiver_does_not_slow_another_and_ends_up_parked(
    stack: Stack, session: aiohttp.ClientSession
) -> None:
    api = Api(session, stack.url, token("dave"))
    failing = await Receiver(status=500).start()
    healthy = await Receiver().start()
    types = ["ConferenceCreatedEvent"]
    bad = await register(api, failing.url, types)
    good = await register(api, healthy.url, types)
    try:
        latencies = []
        for _ in range(5):
            started = time.monotonic()
            # Counted before: the POST may well arrive before the API's answer does.
            count = len(healthy.received) + 1
            await api.create()
            await healthy.wait_for(lambda count=count: len(healthy.received) >= count, timeout=5)
            latencies.append(healthy.received[-1][2] - started)
        # The failing endpoint is retrying all along; the healthy one answers as if it were alone.
        assert max(latencies) < 0.5, latencies
        assert len(failing.received) >= 2

        deadline = time.monotonic() + 15
        while True:
            details = await api.get(f"/rtc-api/webhooks/{bad['webhookId']}")
            assert details.status == 200, details
            if len(details.body["failures"]) == 5:
                break
            assert time.monotonic() < deadline, details
            await asyncio.sleep(0.2)
        failure = details.body["failures"][0]
        assert failure["eventType"] == "ConferenceCreatedEvent"
        assert failure["attempts"] == MAX_ATTEMPTS
        assert failure["lastError"] == "HTTP 500"
        assert set(failure) == {"eventId", "eventType", "attempts", "lastError", "parkedAt"}
        assert len(failing.received) == 5 * MAX_ATTEMPTS
        # Every attempt of one event carries the same id: the receiver's dedup key.
        assert len({h["Webhook-Id"] for h, _, _ in failing.received}) == 5
        healthy_details = await api.get(f"/rtc-api/webhooks/{good['webhookId']}")
        assert healthy_details.body["failures"] == []
    finally:
        await failing.stop()
        await healthy.stop()
        for hook in (bad, good):
            await api.request("DELETE", f"/rtc-api/webhooks/{hook['webhookId']}")


async def test_webhook_api_refuses_bad_input_and_hides_other_organizations(
    stack: Stack, session: aiohttp.ClientSession
) -> None:
    api = Api(session, stack.url, token("erin"))
    other = Api(session, stack.url, token("frank", OTHER_ORG))
    for body, field in [
        ({"url": "ftp://example.com/x"}, "url"),
        ({"url": "not a url"}, "url"),
        ({"url": "http:///nohost"}, "url"),
        ({"url": "http://example.com", "eventTypes": ["NoSuchEvent"]}, "eventTypes"),
        ({"url": 3}, "url"),
        ({}, "url"),
    ]:
        refused = await api.request("POST", "/rtc-api/webhooks", json=body)
        assert refused.status == 400, (body, refused)
        assert set(refused.body) == {"message", "traceId"} and field in refused.body["message"], refused

    hook = await register(api, "https://example.com/hook", ["ROOM_CREATED"])
    listed = await api.get("/rtc-api/webhooks")
    assert listed.status == 200
    [mine] = [h for h in listed.body if h["webhookId"] == hook["webhookId"]]
    assert "secret" not in mine and mine["eventTypes"] == ["ROOM_CREATED"]
    one = await api.get(f"/rtc-api/webhooks/{hook['webhookId']}")
    assert one.status == 200 and "secret" not in one.body and one.body["failures"] == []

    path = f"/rtc-api/webhooks/{hook['webhookId']}"
    for method in ("GET", "DELETE"):
        refused = await other.request(method, path)
        assert refused.status == 404 and set(refused.body) == {"message", "traceId"}, refused
    assert hook["webhookId"] not in [h["webhookId"] for h in (await other.get("/rtc-api/webhooks")).body]

    deleted = await api.request("DELETE", path)
    assert deleted.status == 204, deleted
    assert (await api.get(path)).status == 404
    assert (await api.request("DELETE", path)).status == 404


async def test_a_restart_between_storing_and_delivering_delivers_each_event_once_in_order(
    stack: Stack, session: aiohttp.ClientSession
) -> None:
    """Deliveries stored in PARLEY_WEBHOOK but not yet answered when the service stops are sent by the
    next run (read back from the endpoint's consumer), together with what fan-out hands it meanwhile:
    each once, in order per conference."""
    api = Api(session, stack.url, token("grace"))
    gate = asyncio.Event()
    answered: list[dict[str, Any]] = []

    async def hook(request: web.Request) -> web.Response:
        body = await request.read()
        await gate.wait()  # hangs until the restart is over: nothing is delivered before it
        # A POST whose sender went away (the stopped service's) never got its answer: not a delivery.
        if request.transport is not None and not request.transport.is_closing():
            answered.append(json.loads(body))
        return web.Response(status=204)

    port = free_port()
    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    hook_id = ""
    try:
        types = ["ConferenceCreatedEvent", "ConferenceMetadataUpdatedEvent"]
        hook_id = (await register(api, f"http://127.0.0.1:{port}/hook", types))["webhookId"]
        # Its worker live first: the stopping run then holds nothing of the endpoint's consumer, which
        # would make the next run wait out the ack wait (as after a crash).
        await asyncio.sleep(1.5)
        conference_id = await api.create()
        await api.join(conference_id, "restart-e")

        async def update(value: str) -> None:
            body = {
                "conferenceId": conference_id,
                "userEndpointId": "restart-e",
                "key": "n",
                "operation": "SET",
            }
            response = await api.post("updateMetadata", {**body, "value": value})
            assert response.status == 204, response

        for n in range(3):
            await update(str(n))
        await asyncio.sleep(0.5)  # fanned out and stored; the first POST hangs, the rest wait behind it
        await asyncio.to_thread(stack.restart, "conference")
        await update("3")  # after the restart: while (or after) the new run reads the stored ones
        gate.set()
        deadline = time.monotonic() + 20
        while len(answered) < 5:
            assert time.monotonic() < deadline, answered
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)  # no second copy of any of them comes
        mine = [e["event"] for e in answered if e["event"]["conferenceId"] == conference_id]
        assert [e.get("value") for e in mine] == [None, "0", "1", "2", "3"], mine
        assert len(answered) == 5, answered
    finally:
        gate.set()
        await runner.cleanup()
        if hook_id:
            await api.request("DELETE", f"/rtc-api/webhooks/{hook_id}")
