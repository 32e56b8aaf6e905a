"""The media endpoints end to end: HTTP through the gateway, rules in the conference service, SDP work and
forwarding in a media node process, real aiortc client peers in this process decoding what they receive.
"""

from __future__ import annotations

import asyncio
import io
import json
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import av
import pytest

from tests.integration.helpers import Api, Stack, token
from tests.integration.media_api import Heartbeats, event_types, publish, room, view
from tests.integration.peers import (
    BLUE,
    GREEN,
    RED,
    Peers,
    PublisherPeer,
    close_to,
    eventually,
    skip_without_interface,
)

skip_without_interface()

NODE = "media-0"
NODE_TIMEOUT = 3.0


@pytest.fixture(scope="module")
def media_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    running = Stack(
        tmp_path_factory.mktemp("media"),
        media=1,
        env={
            "PARLEY_LONGPOLL_SECONDS": "1",
            "PARLEY_MEDIA_NODE_TIMEOUT_SECONDS": str(NODE_TIMEOUT),
            "PARLEY_OPTIONAL_SERVICES": "media",
            # A client that closes before ICE completes is let go (and reported) after this: the tests
            # expect an idle node within 10 s, the default (20 s) is for real networks.
            "PARLEY_MEDIA_CONNECT_TIMEOUT_SECONDS": "5",
        },
    )
    running.start()
    yield running
    running.stop()


@pytest.fixture
async def api(media_stack: Stack) -> AsyncIterator[Api]:
    async with aiohttp.ClientSession() as session:
        yield Api(session, media_stack.url, token("alice"))


@pytest.fixture
async def peers() -> AsyncIterator[Peers]:
    running = Peers()
    yield running
    await running.close()


@pytest.fixture
async def heartbeats(media_stack: Stack) -> AsyncIterator[Heartbeats]:
    beats = Heartbeats()
    nc = await beats.listen(media_stack.nats_url)
    yield beats
    await nc.close()


async def node_ready(stack: Stack) -> None:
    """Until the conference service has heard the node (the first publish needs a placement)."""
    async with aiohttp.ClientSession() as session:
        probe = Api(session, stack.url, token("probe"))
        conference_id = await probe.create()
        await probe.join(conference_id, "probe-ep")
        publisher = PublisherPeer(audio=False)
        try:
            deadline = time.monotonic() + 20
            while True:
                response = await probe.post(
                    "publishStream",
                    {
                        "conferenceId": conference_id,
                        "userEndpointId": "probe-ep",
                        "conferenceStreamType": "CAM",
                        "sdpOffer": await publisher.offer(),
                    },
                )
                if response.status == 200 or time.monotonic() > deadline:
                    assert response.status == 200, response
                    break
                await asyncio.sleep(0.2)
        finally:
            await publisher.close()
            await probe.post("end", {"conferenceId": conference_id, "userEndpointId": "probe-ep"})


@pytest.fixture(scope="module")
def ready(media_stack: Stack) -> Stack:
    asyncio.run(node_ready(media_stack))
    return media_stack


async def test_two_viewers_receive_the_published_video_and_audio(
    ready: Stack, api: Api, peers: Peers
) -> None:
    conference_id = await room(api, "pub", "v1", "v2")
    publisher = peers.publisher(RED)
    stream_id = await publish(api.as_user("user-pub"), conference_id, "pub", publisher)
    viewers = [peers.viewer(), peers.viewer()]
    for endpoint, viewer in zip(["v1", "v2"], viewers, strict=True):
        await view(api.as_user(f"user-{endpoint}"), conference_id, endpoint, stream_id, viewer)
    for viewer in viewers:
        await viewer.wait_frames(15, timeout=10)
        await viewer.wait_frames(20, timeout=10, kind="audio")
        assert close_to(viewer.average_color(), RED), viewer.average_color()
        assert viewer.audio_peak > 1000  # the tone, not silence
    # Forwarded as encoded: a colour change reaches both viewers.
    publisher.set_color(BLUE)
    for viewer in viewers:
        await viewer.wait_for_color(BLUE)

    events = await event_types(api, conference_id)
    published = [e for t, e in events if t == "ConferenceStreamPublishedEvent"]
    assert [(e["streamId"], e["streamType"], e["userEndpointId"]) for e in published] == [
        (stream_id, "MIC_AND_CAM", "pub")
    ]
    conference = await api.conference(conference_id)
    (participant,) = [p for p in conference["participants"] if p["id"] == "pub"]
    assert participant["streams"][0]["id"] == {"id": stream_id}


async def test_trickled_candidates_before_and_after_the_answer(ready: Stack, api: Api, peers: Peers) -> None:
    conference_id = await room(api, "pub", "viewer")
    owner, watcher = api.as_user("user-pub"), api.as_user("user-viewer")
    publisher = peers.publisher(GREEN)
    offer = await publisher.offer(trickle=True)
    assert publisher.candidates and "a=candidate" not in offer

    async def trickle_publisher() -> None:
        await asyncio.sleep(0.01)  # racing the publish: it may or may not have reached the node yet
        response = await owner.post(
            "addPublishStreamIceCandidates",
            {
                "conferenceId": conference_id,
                "userEndpointId": "pub",
                "streamId": "cam-1",  # the iOS client's plain-string form
                "iceCandidates": [c.as_json() for c in publisher.candidates],
            },
        )
        assert response.status == 204, response

    publish_body = {
        "conferenceId": conference_id,
        "userEndpointId": "pub",
        "conferenceStreamType": "CAM",
        "streamId": {"id": "cam-1"},
        "sdpOffer": offer,
    }
    published, _ = await asyncio.gather(owner.post("publishStream", publish_body), trickle_publisher())
    assert published.status == 200, published
    await publisher.accept(published.body["sdpAnswer"])

    viewer = peers.viewer(("video",))
    viewer_id = await view(watcher, conference_id, "viewer", "cam-1", viewer, trickle=True)
    response = await watcher.post(
        "addViewStreamIceCandidates",
        {
            "conferenceId": conference_id,
            "userEndpointId": "viewer",
            "streamId": {"id": "cam-1"},
            "viewerId": viewer_id,
            "iceCandidates": [c.as_json() for c in viewer.candidates],
        },
    )
    assert response.status == 204, response
    await viewer.wait_for_color(GREEN, timeout=15)


async def test_unpublish_closes_every_viewer(ready: Stack, api: Api, peers: Peers) -> None:
    conference_id = await room(api, "pub", "viewer")
    owner = api.as_user("user-pub")
    publisher = peers.publisher()
    stream_id = await publish(owner, conference_id, "pub", publisher)
    viewer = peers.viewer()
    await view(api.as_user("user-viewer"), conference_id, "viewer", stream_id, viewer)
    await viewer.wait_frames(5)
    response = await owner.post(
        "unpublishStream", {"conferenceId": conference_id, "userEndpointId": "pub", "streamId": stream_id}
    )
    assert response.status == 204, response
    assert await viewer.wait_ended(5), "the viewer was not closed"
    types = [t for t, _ in await event_types(api, conference_id)]
    assert types[-1] == "ConferenceStreamUnpublishedEvent"
    # Gone: viewing it again is a 404, unpublishing again too.
    again = await api.as_user("user-viewer").post(
        "viewStream",
        {
            "conferenceId": conference_id,
            "userEndpointId": "viewer",
            "streamId": stream_id,
            "sdpOffer": await peers.viewer().offer(),
        },
    )
    assert again.status == 404, again


async def test_stop_view_closes_one_viewer_only(ready: Stack, api: Api, peers: Peers) -> None:
    conference_id = await room(api, "pub", "a", "b")
    stream_id = await publish(api.as_user("user-pub"), conference_id, "pub", peers.publisher())
    first, second = peers.viewer(), peers.viewer()
    first_id = await view(api.as_user("user-a"), conference_id, "a", stream_id, first)
    await view(api.as_user("user-b"), conference_id, "b", stream_id, second)
    await first.wait_frames(5)
    stop = {"conferenceId": conference_id, "userEndpointId": "a", "streamId": stream_id, "viewerId": first_id}
    # Somebody else's viewer: forbidden; unknown viewer: 404.
    forbidden = await api.as_user("user-b").post("stopViewStream", {**stop, "userEndpointId": "b"})
    assert forbidden.status == 403, forbidden
    unknown = await api.as_user("user-a").post("stopViewStream", {**stop, "viewerId": "nope"})
    assert unknown.status == 404, unknown
    response = await api.as_user("user-a").post("stopViewStream", stop)
    assert response.status == 204, response
    assert await first.wait_ended(5)
    await second.wait_frames(10)


async def test_leave_and_end_tear_down_every_peer(
    ready: Stack, api: Api, peers: Peers, heartbeats: Heartbeats
) -> None:
    conference_id = await room(api, "pub", "viewer", "other")
    publisher = peers.publisher()
    stream_id = await publish(api.as_user("user-pub"), conference_id, "pub", publisher)
    viewer = peers.viewer()
    await view(api.as_user("user-viewer"), conference_id, "viewer", stream_id, viewer)
    await viewer.wait_frames(5)
    left = await api.as_user("user-pub").post(
        "leave", {"conferenceId": conference_id, "userEndpointId": "pub"}
    )
    assert left.status == 204, left
    assert await viewer.wait_ended(5), "leave did not close the publisher's viewers"

    second = peers.publisher()
    other_stream = await publish(api.as_user("user-other"), conference_id, "other", second)
    watcher = peers.viewer()
    await view(api.as_user("user-viewer"), conference_id, "viewer", other_stream, watcher)
    await watcher.wait_frames(5)
    ended = await api.as_user("user-other").post(
        "end", {"conferenceId": conference_id, "userEndpointId": "other"}
    )
    assert ended.status == 204, ended
    assert await watcher.wait_ended(5), "end did not close the conference's peers"
    await eventually(
        lambda: (
            (beat := heartbeats.latest.get(NODE)) is not None and (beat.publishers, beat.viewers) == (0, 0)
        ),
        timeout=5,
        what="the node to hold no publisher and no viewer",
    )


async def test_refusals(ready: Stack, api: Api, peers: Peers) -> None:
    conference_id = await room(api, "pub", "viewer")
    owner = api.as_user("user-pub")
    base = {"conferenceId": conference_id, "userEndpointId": "pub"}
    offer = await peers.publisher().offer()
    stream_id = await publish(owner, conference_id, "pub", peers.publisher(), stream_id="taken")
    cases: list[tuple[Api, str, dict[str, Any], int, str]] = [
        (owner, "publishStream", {**base, "conferenceStreamType": "VR", "sdpOffer": offer}, 400, "VR"),
        (owner, "publishStream", {**base, "conferenceStreamType": "CAM"}, 400, "sdpOffer"),
        (
            owner,
            "publishStream",
            {**base, "conferenceStreamType": "UNKNOWN", "sdpOffer": offer},
            400,
            "UNKNOWN",
        ),
        (
            owner,
            "publishStream",
            {**base, "conferenceStreamType": "CAM", "sdpOffer": "v=0 nonsense"},
            400,
            "",
        ),
        (
            owner,
            "publishStream",
            {**base, "conferenceStreamType": "CAM", "sdpOffer": offer, "streamId": "taken"},
            409,
            "taken",
        ),
        (
            api.as_user("stranger"),
            "publishStream",
            {**base, "userEndpointId": "x", "conferenceStreamType": "CAM", "sdpOffer": offer},
            403,
            "has not joined",
        ),
        (
            api.as_user("user-viewer"),
            "viewStream",
            {
                "conferenceId": conference_id,
                "userEndpointId": "viewer",
                "streamId": "nope",
                "sdpOffer": offer,
            },
            404,
            "nope",
        ),
        (
            owner,
            "viewStream",
            {**base, "conferenceId": "no-such-conference", "streamId": stream_id, "sdpOffer": offer},
            404,
            "no-such-conference",
        ),
        (
            api.as_user("user-viewer"),
            "addPublishStreamIceCandidates",
            {
                "conferenceId": conference_id,
                "userEndpointId": "viewer",
                "streamId": stream_id,
                "iceCandidates": [],
            },
            403,
            "not published by",
        ),
        (
            owner,
            "addPublishStreamIceCandidates",
            {**base, "streamId": "never-published", "iceCandidates": []},
            404,
            "never-published",
        ),
        (
            owner,
            "addViewStreamIceCandidates",
            {**base, "streamId": stream_id, "viewerId": "ghost", "iceCandidates": []},
            404,
            "ghost",
        ),
        (owner, "unpublishStream", {**base, "streamId": "never-published"}, 404, "never-published"),
        (
            api.as_user("other-org-user", "globex"),
            "unpublishStream",
            {**base, "streamId": stream_id},
            404,
            "",
        ),
    ]
    for caller, op, body, status, words in cases:
        response = await caller.post(op, body)
        assert response.status == status, (op, body, response)
        assert words in response.body["message"], (op, response)
        assert response.body["traceId"]
    # Nothing changed: still one stream, the refused ones left no trace.
    published = [t for t, _ in await event_types(api, conference_id) if t == "ConferenceStreamPublishedEvent"]
    assert len(published) == 1


async def test_bitrate_and_stream_metadata_raise_events(ready: Stack, api: Api, peers: Peers) -> None:
    conference_id = await room(api, "pub")
    owner = api.as_user("user-pub")
    stream_id = await publish(owner, conference_id, "pub", peers.publisher())
    base = {"conferenceId": conference_id, "userEndpointId": "pub", "streamId": {"id": stream_id}}
    response = await owner.post("updatePublishedStreamBitrate", {**base, "videoBitrate": 300_000})
    assert response.status == 204, response
    response = await owner.post("updateStreamMetadata", {**base, "newMetadata": {"label": "front"}})
    assert response.status == 204, response
    events = dict((t, e) for t, e in await event_types(api, conference_id))
    assert events["ConferencePublishedStreamBitrateUpdatedEvent"]["videoBitrate"] == 300_000
    assert events["ConferenceStreamMetadataUpdatedEvent"]["newMetadata"] == {"label": "front"}
    stream = (await api.conference(conference_id))["participants"][0]["streams"][0]
    assert stream["videoBitrate"] == 300_000 and stream["metadata"] == {"label": "front"}


async def test_recorder_records_every_stream_into_a_downloadable_webm(
    ready: Stack, api: Api, peers: Peers
) -> None:
    conference_id = await room(api, "pub")
    owner = api.as_user("user-pub")
    base = {"conferenceId": conference_id, "userEndpointId": "pub"}
    on = await owner.post(
        "updateMetadata", {**base, "key": "RECORDER", "operation": "SET", "value": '{"on":true}'}
    )
    assert on.status == 204, on
    publisher = peers.publisher(GREEN)
    stream_id = await publish(owner, conference_id, "pub", publisher)
    await publisher.connected()
    await asyncio.sleep(2.5)
    off = await owner.post(
        "updateMetadata", {**base, "key": "RECORDER", "operation": "SET", "value": '{"on":false}'}
    )
    assert off.status == 204, off

    listed: list[dict[str, Any]] = []

    async def recordings() -> bool:
        metadata = (await api.conference(conference_id))["metadata"]
        entry = metadata.get("RECORDINGS")
        listed[:] = json.loads(entry["value"]) if entry else []
        return bool(listed)

    deadline = time.monotonic() + 15
    while not await recordings():
        assert time.monotonic() < deadline, "no recording listed on the conference"
        await asyncio.sleep(0.2)
    (recording,) = listed
    assert recording["streamId"] == stream_id and recording["mimeType"].startswith("video/webm")
    assert recording["durationSeconds"] > 1

    download = await api.get(recording["url"])
    assert download.status == 200, download
    assert download.headers["Content-Type"].startswith("video/webm")
    with av.open(io.BytesIO(download.body), format="webm") as container:
        assert container.streams.video, "no video track in the recording"
        frames = list(container.decode(video=0))
    assert len(frames) > 20
    assert close_to(_mean(frames[-1]), GREEN)

    # Same path, other organization: as unknown as a made-up recording.
    foreign = await api.as_user("mallory", "globex").get(recording["url"])
    assert foreign.status == 404, foreign
    missing = await api.get(f"/rtc-api/conferences/{conference_id}/recordings/nope")
    assert missing.status == 404, missing


def _mean(frame: av.VideoFrame) -> tuple[int, int, int]:
    rgb = frame.to_ndarray(format="rgb24")[::4, ::4]
    r, g, b = (int(v) for v in rgb.reshape(-1, 3).mean(axis=0))
    return r, g, b


def node_threads(stack: Stack) -> int:
    pid = stack.local[NODE].pid
    assert pid is not None
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("Threads:"))


async def test_no_peer_or_thread_outlives_its_stream(
    ready: Stack, api: Api, peers: Peers, heartbeats: Heartbeats
) -> None:
    await eventually(lambda: NODE in heartbeats.latest, timeout=5, what="a heartbeat")
    # Earlier tests' client peers closed at their teardown: the node notices (DTLS close) and lets go.
    await eventually(
        lambda: (heartbeats.latest[NODE].publishers, heartbeats.latest[NODE].viewers) == (0, 0),
        timeout=10,
        what=f"an idle node (last heartbeat {heartbeats.latest[NODE]})",
    )
    baseline = node_threads(ready)
    conference_id = await room(api, "pub", "viewer")
    for _ in range(3):
        publisher = peers.publisher()
        stream_id = await publish(api.as_user("user-pub"), conference_id, "pub", publisher)
        viewers = [peers.viewer(), peers.viewer()]
        for viewer in viewers:
            await view(api.as_user("user-viewer"), conference_id, "viewer", stream_id, viewer)
        for viewer in viewers:
            await viewer.wait_frames(5)
        await eventually(
            lambda: (heartbeats.latest[NODE].publishers, heartbeats.latest[NODE].viewers) == (1, 2),
            timeout=5,
            what="1 publisher and 2 viewers on the node",
        )
        assert node_threads(ready) > baseline  # decoder threads of the publisher's receivers
        response = await api.as_user("user-pub").post(
            "unpublishStream", {"conferenceId": conference_id, "userEndpointId": "pub", "streamId": stream_id}
        )
        assert response.status == 204, response
        await eventually(
            lambda: (heartbeats.latest[NODE].publishers, heartbeats.latest[NODE].viewers) == (0, 0),
            timeout=5,
            what="the node to let go of every peer",
        )
    await eventually(lambda: node_threads(ready) <= baseline, timeout=10, what="threads back to baseline")


async def test_placement_survives_a_conference_service_restart_and_a_lost_node_ends_its_streams(
    ready: Stack, api: Api, peers: Peers
) -> None:
    conference_id = await room(api, "pub", "viewer")
    publisher = peers.publisher()
    stream_id = await publish(api.as_user("user-pub"), conference_id, "pub", publisher)
    await asyncio.to_thread(ready.restart, "conference")
    # The restarted service finds the pin in storage and sends the viewer to the node holding the stream.
    viewer = peers.viewer()
    deadline = time.monotonic() + NODE_TIMEOUT + 5
    while True:
        response = await api.as_user("user-viewer").post(
            "viewStream",
            {
                "conferenceId": conference_id,
                "userEndpointId": "viewer",
                "streamId": stream_id,
                "sdpOffer": await viewer.offer(),
            },
        )
        if response.status != 503 or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)  # the restarted service has not heard the node's heartbeat yet
    assert response.status == 200, response
    await viewer.accept(response.body["sdpAnswer"])
    await viewer.wait_frames(5)

    ready.local[NODE].kill()
    try:
        deadline = time.monotonic() + NODE_TIMEOUT + 10
        while True:
            events = await event_types(api, conference_id)
            lost = [e for t, e in events if t == "ConferenceStreamUnpublishedEvent"]
            if lost or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.3)
        assert [(e["streamId"], e["reason"]) for e in lost] == [(stream_id, "MEDIA_NODE_LOST")]
    finally:
        ready.local[NODE].start()
    # Back: a new publish lands on the restarted node.
    await node_ready(ready)
