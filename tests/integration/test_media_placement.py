"""Several media nodes: conferences spread by load, and a dead node's conferences move to a live one."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator

import aiohttp
import nats
import pytest

from tests.integration.helpers import Api, Stack, token
from tests.integration.media_api import Heartbeats, event_types, publish, room, view
from tests.integration.peers import Peers, eventually, skip_without_interface

skip_without_interface()

NODE_TIMEOUT = 3.0


@pytest.fixture(scope="module")
def two_nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    running = Stack(
        tmp_path_factory.mktemp("placement"),
        media=2,
        env={"PARLEY_MEDIA_NODE_TIMEOUT_SECONDS": str(NODE_TIMEOUT), "PARLEY_OPTIONAL_SERVICES": "media"},
    )
    running.start()
    yield running
    running.stop()


@pytest.fixture
async def api(two_nodes: Stack) -> AsyncIterator[Api]:
    async with aiohttp.ClientSession() as session:
        yield Api(session, two_nodes.url, token("alice"))


@pytest.fixture
async def peers() -> AsyncIterator[Peers]:
    running = Peers()
    yield running
    await running.close()


@pytest.fixture
async def heartbeats(two_nodes: Stack) -> AsyncIterator[Heartbeats]:
    beats = Heartbeats()
    nc: nats.NATS = await beats.listen(two_nodes.nats_url)
    yield beats
    await nc.close()


async def test_conferences_spread_over_nodes_and_move_off_a_dead_one(
    two_nodes: Stack, api: Api, peers: Peers, heartbeats: Heartbeats
) -> None:
    await eventually(lambda: len(heartbeats.latest) == 2, timeout=10, what="both nodes heard")
    await asyncio.sleep(1.2)  # the conference service has heard them too (same heartbeats)
    first, second = await room(api, "a"), await room(api, "b")
    first_stream = await publish(api.as_user("user-a"), first, "a", peers.publisher())
    await publish(api.as_user("user-b"), second, "b", peers.publisher())
    await eventually(
        lambda: sorted(b.publishers for b in heartbeats.latest.values()) == [1, 1],
        timeout=5,
        what=f"one publisher on each node ({heartbeats.latest})",
    )
    # Kill the node holding the first conference: its stream ends as MEDIA_NODE_LOST, the other stays.
    victim = await node_of(api, first, first_stream, two_nodes, peers)
    two_nodes.local[victim].kill()
    try:
        deadline = time.monotonic() + NODE_TIMEOUT + 10
        while True:
            lost = [e for t, e in await event_types(api, first) if t == "ConferenceStreamUnpublishedEvent"]
            if lost or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.3)
        assert [(e["streamId"], e["reason"]) for e in lost] == [(first_stream, "MEDIA_NODE_LOST")]
        assert not [t for t, _ in await event_types(api, second) if t == "ConferenceStreamUnpublishedEvent"]
        # The first conference moves to the surviving node: publishing and viewing work again.
        moved = await publish(api.as_user("user-a"), first, "a", peers.publisher())
        await api.as_user("user-v").join(first, "v")
        viewer = peers.viewer()
        await view(api.as_user("user-v"), first, "v", moved, viewer)
        await viewer.wait_frames(5)
        survivor = next(n for n in two_nodes.media_names if n != victim)
        await eventually(
            lambda: heartbeats.latest[survivor].publishers == 2,
            timeout=5,
            what="both conferences on the surviving node",
        )
    finally:
        two_nodes.local[victim].start()


async def node_of(api: Api, conference_id: str, stream_id: str, stack: Stack, peers: Peers) -> str:
    """The node that serves the conference: the one whose viewer count rises when we view its stream."""
    await api.as_user("user-probe").join(conference_id, "probe")
    before = {n: 0 for n in stack.media_names}
    viewer = peers.viewer(("video",))
    await view(api.as_user("user-probe"), conference_id, "probe", stream_id, viewer)
    await viewer.wait_frames(3)
    beats = Heartbeats()
    nc = await beats.listen(stack.nats_url)
    try:
        await eventually(lambda: len(beats.latest) == len(before), timeout=5, what="fresh heartbeats")
        await eventually(
            lambda: any(b.viewers == 1 for b in beats.latest.values()), timeout=5, what="the viewer on a node"
        )
        return next(n for n, b in beats.latest.items() if b.viewers == 1)
    finally:
        await nc.close()
