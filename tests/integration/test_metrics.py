"""Prometheus metrics end to end (issue 13): every service of a real stack serves `/metrics` in the text
format `prometheus_client`'s parser reads, and its counters move with traffic sent over the real API:
HTTP requests by operation, conference commands and their NATS round trips, outbox lag, chat messages,
and a media node forwarding a real aiortc peer's packets.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterator

import aiohttp
import pytest
from aioice.ice import get_host_addresses
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.helpers import Api, Stack, token
from tests.integration.media_api import publish, room, view
from tests.integration.peers import RED, Peers, PublisherPeer
from tests.integration.test_chat_api import group, new_users

NODE = "media-0"
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture(scope="module")
def metrics_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    running = Stack(
        tmp_path_factory.mktemp("metrics"),
        media=1,
        snapshot=True,
        chat=True,
        env={"PARLEY_ESSENTIAL_SERVICES": "conference,chat", "PARLEY_OPTIONAL_SERVICES": "media,snapshot"},
    ).start()
    yield running
    running.stop()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


async def scrape(session: aiohttp.ClientSession, url: str) -> Samples:
    async with session.get(url, timeout=aiohttp.ClientTimeout(total=5)) as response:
        assert response.status == 200, url
        assert response.content_type == "text/plain", response.headers
        text = await response.text()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sum of `name`'s samples whose labels include `labels`."""
    wanted = set(labels.items())
    return sum(v for (n, have), v in samples.items() if n == name and wanted <= have)


def label_values(samples: Samples, name: str, label: str) -> set[str]:
    return {dict(have)[label] for (n, have), _ in samples.items() if n == name and label in dict(have)}


async def test_every_service_serves_metrics_that_parse(
    metrics_stack: Stack, session: aiohttp.ClientSession
) -> None:
    for name in metrics_stack.local.processes:
        samples = await scrape(session, metrics_stack.metrics_url(name))
        service = "media" if name.startswith("media") else name.split("-")[0]
        info = [dict(have) for (n, have) in samples if n == "parley_service_info"]
        assert [i["service"] for i in info] == [service], (name, info)
        assert info[0]["version"] not in ("", "unknown"), info
        # Read from the loop at scrape time: at least the serving task itself.
        assert value(samples, "parley_asyncio_tasks") >= 1, name
        assert value(samples, "process_resident_memory_bytes") > 10_000_000, name
        assert value(samples, "process_open_fds") > 3, name
    # A non-scrape request is refused cleanly, not hung on.
    async with session.get(metrics_stack.metrics_url("conference").replace("/metrics", "/other")) as response:
        assert response.status == 404


async def test_gateway_counts_requests_by_operation_never_by_path(
    metrics_stack: Stack, session: aiohttp.ClientSession
) -> None:
    api = Api(session, metrics_stack.url, token("alice"))
    url = metrics_stack.metrics_url("gateway-0")
    before = await scrape(session, url)
    conference_id = await api.create()
    unknown = f"no-such-{uuid.uuid4().hex}"
    assert (await api.get(f"/rtc-api/conferences/{unknown}")).status == 404
    assert (await api.get(f"/no/such/route/{unknown}")).status == 404
    after = await scrape(session, url)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("parley_http_requests_total", operation="create", status="200") == 1
    assert moved("parley_http_request_seconds_count", operation="create") == 1
    assert moved("parley_http_requests_total", operation="unmatched", status="404") == 1
    operations = label_values(after, "parley_http_requests_total", "operation")
    assert not any(unknown in o or conference_id in o for o in operations), operations
    # An operator's route like /docs: scraped without a token above, and not in the public API's document.
    document = await api.get("/openapi.json")
    assert "/metrics" not in document.body["paths"]
    # The gateway's NATS round trip for it, by the subject's operation.
    assert (
        moved("parley_nats_request_seconds_count", operation="cmd.conference.create", outcome="accepted") >= 1
    )


async def test_conference_commands_and_outbox_lag(
    metrics_stack: Stack, session: aiohttp.ClientSession
) -> None:
    api = Api(session, metrics_stack.url, token("alice"))
    url = metrics_stack.metrics_url("conference")
    before = await scrape(session, url)
    conference_id = await api.create()
    await api.join(conference_id, "ep-1")
    refused = await api.post("join", {"conferenceId": f"c-{uuid.uuid4().hex[:8]}", "userEndpointId": "ep-1"})
    assert refused.status == 404, refused
    after = await scrape(session, url)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    labels = {"service": "conference"}
    assert (
        moved("parley_commands_total", operation="cmd.conference.create", outcome="accepted", **labels) == 1
    )
    assert moved("parley_commands_total", operation="cmd.conference.join", outcome="accepted", **labels) == 1
    assert moved("parley_commands_total", operation="cmd.conference.join", outcome="rejected", **labels) == 1
    # Both commits' events went out through the outbox, and nothing is left owed.
    assert moved("parley_outbox_lag_seconds_count") >= 2
    assert value(after, "parley_outbox_owed_effects") == 0


async def test_chat_messages_move_the_chat_service_counters(
    metrics_stack: Stack, session: aiohttp.ClientSession
) -> None:
    alice, bob, carol = await new_users(session, metrics_stack, 3)
    room_id = await group(alice, bob, carol)
    url = metrics_stack.metrics_url("chat")
    before = await scrape(session, url)
    sent = await alice.call("POST", f"/rooms/{room_id}/messages", {"text": "metrics"})
    assert sent.status == 201, sent
    after = await scrape(session, url)
    accepted = {
        dict(have)["operation"]: v - value(before, n, **dict(have))
        for (n, have), v in after.items()
        if n == "parley_commands_total" and dict(have)["outcome"] == "accepted"
    }
    assert sum(accepted.values()) >= 1, accepted
    assert all(o.startswith(("cmd.chat.", "qry.chat.", "health.")) for o in accepted), accepted
    assert value(after, "parley_outbox_lag_seconds_count") > value(before, "parley_outbox_lag_seconds_count")


@pytest.mark.skipif(
    not get_host_addresses(use_ipv4=True, use_ipv6=False),
    reason="no non-loopback IPv4 interface: aioice gathers no candidate",
)
async def test_media_node_counts_forwarded_packets(
    metrics_stack: Stack, session: aiohttp.ClientSession
) -> None:
    api = Api(session, metrics_stack.url, token("alice"))
    url = metrics_stack.metrics_url(NODE)
    before = await scrape(session, url)
    assert label_values(before, "parley_media_peers", "node") == {NODE}
    peers = Peers()
    try:
        conference_id = await room(api, "pub", "viewer")
        publisher = peers.publisher(RED, audio=False)
        stream_id = await published(api.as_user("user-pub"), conference_id, publisher)
        viewer = peers.viewer(("video",))
        await view(api.as_user("user-viewer"), conference_id, "viewer", stream_id, viewer)
        await viewer.wait_frames(5, timeout=10)
        during = await scrape(session, url)
        assert value(during, "parley_media_peers", node=NODE, role="publisher") == 1
        assert value(during, "parley_media_peers", node=NODE, role="viewer") == 1
        packets = value(during, "parley_media_forwarded_packets_total", node=NODE)
        assert packets > value(before, "parley_media_forwarded_packets_total", node=NODE)
        assert value(during, "parley_media_forwarded_bytes_total", node=NODE) > packets  # RTP payloads
        assert value(during, "parley_media_plis_sent_total", node=NODE) >= 1  # the viewer asked a keyframe
    finally:
        await peers.close()
    # Closed streams keep their counts: counters never go down.
    await api.post("end", {"conferenceId": conference_id, "userEndpointId": "pub"})
    deadline = time.monotonic() + 10
    while True:
        after = await scrape(session, url)
        if value(after, "parley_media_peers", node=NODE) == 0 or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)
    assert value(after, "parley_media_peers", node=NODE) == 0
    assert value(after, "parley_media_forwarded_packets_total", node=NODE) >= packets


async def published(api: Api, conference_id: str, publisher: PublisherPeer) -> str:
    """Publish, retrying while the conference service has not heard the node's first heartbeat yet."""
    deadline = time.monotonic() + 15
    while True:
        try:
            return await publish(api, conference_id, "pub", publisher, stream_type="CAM")
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)
