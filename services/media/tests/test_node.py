"""A media node against a real nats-server, with real aiortc client peers (ICE, DTLS, SRTP) in this process.

The node runs in-process (so the tests can read the engine's counters); one test runs it as
`python -m parley_media` to check the entry point, heartbeats and SIGTERM.
"""

from __future__ import annotations

import asyncio
import io
import os
import signal
import sys
import time
import uuid
from asyncio.subprocess import DEVNULL, PIPE
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, TypeVar

import av
import msgspec
import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import DeliverPolicy
from parley_common.clock import new_id, utcnow
from parley_common.config import CommonSettings
from parley_common.contracts.base import Empty, Payload
from parley_common.contracts.conference import (
    ConferenceEndedEvent,
    ConferenceLeftEvent,
    ConferenceMetadataUpdatedEvent,
    ConferenceStreamUnpublishedEvent,
    IceCandidate,
)
from parley_common.contracts.media import (
    AddMediaCandidates,
    GrabStill,
    MediaNodeHeartbeat,
    MediaStream,
    MediaStreamEndedEvent,
    PublishableStreamType,
    PublishMedia,
    RecordingStoredEvent,
    SdpAnswer,
    StillImage,
    StopViewMedia,
    UnpublishMedia,
    ViewMedia,
)
from parley_common.contracts.rpc import Accepted, Caller, Rejected, Request
from parley_common.messaging import subjects
from parley_common.messaging.events import publish_event
from parley_common.messaging.rpc import RpcClient
from parley_common.processes import NatsServer
from parley_media.app import MediaNode
from parley_media.handlers import jpeg_size
from parley_media.model import StreamKey
from parley_media.settings import Settings

from tests.integration.peers import (
    BLUE,
    GREEN,
    RED,
    Candidate,
    Peers,
    PublisherPeer,
    ViewerPeer,
    close_to,
    eventually,
    mean_color,
    skip_without_interface,
)

skip_without_interface()

ORG = "org-1"
CALLER = Caller(organization_id=ORG, user_id="conference-service", request_id="req-1")
T = TypeVar("T")


# -- fixtures --------------------------------------------------------------------------------------


def node_settings(server: NatsServer, node_id: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "common": CommonSettings(
            nats_url=server.url, data_dir=Path("."), mongo_url=None, request_timeout=5.0
        ),
        "node_id": node_id,
        "ice_servers": (),
        "announced_address": None,
        "heartbeat_seconds": 0.2,
        "capacity": 0,
        "candidate_wait_seconds": 1.0,
        "connect_timeout_seconds": 10.0,
        "log_level": "INFO",
        **overrides,
    }
    return Settings(**values)


@pytest.fixture
async def node(nats_server: NatsServer) -> AsyncIterator[MediaNode]:
    running = MediaNode(node_settings(nats_server, f"media-test-{uuid.uuid4().hex[:8]}"))
    await running.start()
    yield running
    await running.stop()


@pytest.fixture
async def peers() -> AsyncIterator[Peers]:
    all_peers = Peers()
    yield all_peers
    await all_peers.close()


class NodeClient:
    """What the conference service does to a node, over NATS."""

    def __init__(self, nc: Client, node_id: str, conference_id: str) -> None:
        self.rpc = RpcClient(nc, timeout=10.0)
        self.js = nc.jetstream()
        self.node_id = node_id
        self.conference_id = conference_id

    def stream(self, stream_id: str) -> MediaStream:
        return MediaStream(organization_id=ORG, conference_id=self.conference_id, stream_id=stream_id)

    def stream_key(self, stream_id: str) -> StreamKey:
        return StreamKey(ORG, self.conference_id, stream_id)

    async def call(self, op: str, body: Payload, value_type: type[T]) -> Accepted[T] | Rejected:
        request = Request(caller=CALLER, body=body)
        return await self.rpc.request(subjects.media_node(self.node_id, op), request, value_type)

    async def publish(
        self,
        peer: PublisherPeer,
        stream_id: str,
        endpoint: str,
        *,
        stream_type: PublishableStreamType = "MIC_AND_CAM",
        record: bool = False,
        trickle: bool = False,
    ) -> Accepted[SdpAnswer] | Rejected:
        body = PublishMedia(
            stream=self.stream(stream_id),
            stream_type=stream_type,
            sdp_offer=await peer.offer(trickle=trickle),
            user_endpoint_id=endpoint,
            record=record,
        )
        reply = await self.call("publish", body, SdpAnswer)
        if isinstance(reply, Accepted):
            await peer.accept(reply.value.sdp_answer)
        return reply

    async def view(
        self, peer: ViewerPeer, stream_id: str, viewer_id: str, endpoint: str, *, trickle: bool = False
    ) -> Accepted[SdpAnswer] | Rejected:
        body = ViewMedia(
            stream=self.stream(stream_id),
            viewer_id=viewer_id,
            sdp_offer=await peer.offer(trickle=trickle),
            user_endpoint_id=endpoint,
        )
        reply = await self.call("view", body, SdpAnswer)
        if isinstance(reply, Accepted):
            await peer.accept(reply.value.sdp_answer)
        return reply

    async def candidates(
        self, stream_id: str, endpoint: str, candidates: list[Candidate], viewer_id: str | None = None
    ) -> Accepted[Empty] | Rejected:
        body = AddMediaCandidates(
            stream=self.stream(stream_id),
            ice_candidates=[
                IceCandidate(candidate=c.candidate, sdp_mid=c.sdp_mid, sdp_m_line_index=c.sdp_mline_index)
                for c in candidates
            ],
            user_endpoint_id=endpoint,
            viewer_id=viewer_id,
        )
        return await self.call("candidates", body, Empty)

    async def stop_view(self, stream_id: str, viewer_id: str, endpoint: str) -> Accepted[Empty] | Rejected:
        body = StopViewMedia(stream=self.stream(stream_id), viewer_id=viewer_id, user_endpoint_id=endpoint)
        return await self.call("stopView", body, Empty)

    async def unpublish(self, stream_id: str) -> Accepted[Empty] | Rejected:
        return await self.call("unpublish", UnpublishMedia(stream=self.stream(stream_id)), Empty)

    async def still(self, stream_id: str) -> Accepted[StillImage] | Rejected:
        return await self.call("still", GrabStill(stream=self.stream(stream_id)), StillImage)

    async def conference_event(self, event: Any) -> None:
        """Published on the real PARLEY_CONFERENCE stream, as the conference service's outbox does."""
        await publish_event(
            self.js, subjects.conference_event(type(event).__name__), event, msg_id=event.id, attempts=3
        )

    def event_fields(self, endpoint: str | None = None) -> dict[str, Any]:
        return {
            "id": new_id(),
            "conference_id": self.conference_id,
            "conference_version": 1,
            "organization_id": ORG,
            "timestamp": utcnow(),
            "user_endpoint_id": endpoint,
        }


async def next_media_event(
    js: JetStreamContext, event_type: type[T], node_id: str, timeout: float = 10.0
) -> T:
    """The first event of this type from `node_id` on PARLEY_MEDIA (from the stream's start)."""
    subscription = await js.subscribe(
        subjects.media_event(event_type.__name__), ordered_consumer=True, deliver_policy=DeliverPolicy.ALL
    )
    decoder = msgspec.json.Decoder(event_type)
    try:
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no {event_type.__name__} from {node_id} within {timeout} s")
            message = await subscription.next_msg(timeout=remaining)
            event = decoder.decode(message.data)
            if getattr(event, "node_id", None) == node_id:
                return event
    finally:
        await subscription.unsubscribe()


def client(nc: Client, node: MediaNode) -> NodeClient:
    return NodeClient(nc, node.node_id, f"conf-{uuid.uuid4().hex[:8]}")


def accepted(reply: Accepted[T] | Rejected) -> T:
    assert isinstance(reply, Accepted), reply
    return reply.value


def rejected(reply: Accepted[Any] | Rejected, status: int) -> str:
    assert isinstance(reply, Rejected), reply
    assert reply.status == status, reply
    return reply.message


async def assert_nothing_left(node: MediaNode) -> None:
    engine = node.engine

    def idle() -> bool:
        c = engine.counters()
        return (c.publishers, c.viewers, c.peer_connections, c.tasks, c.threads) == (0, 0, 0, 0, 0)

    await eventually(idle, 10.0, f"engine idle (now {engine.counters()})")
    assert list(node.holdings) == []


# -- tests -----------------------------------------------------------------------------------------


async def test_publish_and_view_with_trickle_before_and_after(
    node: MediaNode, nc: Client, peers: Peers
) -> None:
    conf = client(nc, node)
    publisher = peers.publisher(RED)
    sdp_offer_ready = await publisher.offer(trickle=True)
    assert publisher.candidates and "a=candidate" not in sdp_offer_ready
    # Trickle overtakes the offer: the candidates request waits for the publish request to arrive.
    early = asyncio.ensure_future(conf.candidates("cam-1", "alice", publisher.candidates))
    await asyncio.sleep(0.3)
    assert not early.done(), "candidates for an unknown stream wait for it"
    body = PublishMedia(
        stream=conf.stream("cam-1"),
        stream_type="MIC_AND_CAM",
        sdp_offer=sdp_offer_ready,
        user_endpoint_id="alice",
    )
    await publisher.accept(accepted(await conf.call("publish", body, SdpAnswer)).sdp_answer)
    accepted(await early)
    await publisher.connected()
    assert node.engine._publishers[conf.stream_key("cam-1")].candidates.applied > 0

    viewer = peers.viewer()
    started = time.monotonic()
    accepted(await conf.view(viewer, "cam-1", "v-bob", "bob", trickle=True))
    # After the answer: applied at once; a foreign endpoint may not add to (or stop) bob's viewer.
    rejected(await conf.candidates("cam-1", "mallory", viewer.candidates, viewer_id="v-bob"), 403)
    accepted(await conf.candidates("cam-1", "bob", viewer.candidates, viewer_id="v-bob"))
    await viewer.wait_frames(10)
    first_frames_ms = (time.monotonic() - started) * 1000
    assert close_to(viewer.average_color(), RED)
    await viewer.wait_frames(20, kind="audio")
    assert viewer.audio_peak > 1000, "the tone must survive forwarding"
    publisher.set_color(BLUE)
    await viewer.wait_for_color(BLUE)
    print(f"view request to 10 decoded frames: {first_frames_ms:.0f} ms")

    rejected(await conf.candidates("cam-1", "mallory", publisher.candidates), 403)
    assert "another endpoint" in rejected(await conf.stop_view("cam-1", "v-bob", "mallory"), 403)
    accepted(await conf.stop_view("cam-1", "v-bob", "bob"))
    assert await viewer.wait_ended()
    assert rejected(await conf.stop_view("cam-1", "v-bob", "bob"), 404) == "viewer v-bob not found"

    accepted(await conf.unpublish("cam-1"))
    accepted(await conf.unpublish("cam-1"))  # idempotent
    await peers.close()
    await assert_nothing_left(node)


async def test_unknown_bad_and_conflicting_requests(node: MediaNode, nc: Client, peers: Peers) -> None:
    conf = client(nc, node)
    candidate = [Candidate("candidate:1 1 udp 2130706431 192.0.2.1 50000 typ host", "0", 0)]

    started = time.monotonic()
    message = rejected(await conf.candidates("nope", "alice", candidate), 404)
    waited = time.monotonic() - started
    assert message == "stream nope not found"
    assert 0.9 <= waited < 3.0, f"waited {waited:.2f} s for the stream to appear"
    assert list(node.holdings) == [] and node.engine.counters().publishers == 0, "nothing kept"

    garbage = [Candidate("candidate:garbage", "0", 0)]
    started = time.monotonic()
    assert rejected(await conf.candidates("nope", "alice", garbage), 400).startswith("iceCandidates")
    assert time.monotonic() - started < 0.5, "a malformed candidate is rejected without waiting"

    rejected(await conf.view(peers.viewer(), "nope", "v", "bob"), 404)
    assert rejected(await conf.stop_view("nope", "v", "bob"), 404) == "stream nope not found"
    assert rejected(await conf.still("nope"), 404) == "stream nope not found"
    bad = PublishMedia(
        stream=conf.stream("bad"), stream_type="CAM", sdp_offer="not sdp", user_endpoint_id="alice"
    )
    assert rejected(await conf.call("publish", bad, SdpAnswer), 400).startswith("sdpOffer")
    assert list(node.holdings) == []

    accepted(await conf.publish(peers.publisher(video=False), "mic", "alice", stream_type="MIC"))
    assert "already published" in rejected(
        await conf.publish(peers.publisher(video=False), "mic", "bob", stream_type="MIC"), 409
    )
    assert rejected(await conf.still("mic"), 400) == "stream mic carries no video"
    message = rejected(await conf.candidates("mic", "alice", candidate, viewer_id="ghost"), 404)
    assert message == "viewer ghost not found"
    assert rejected(await conf.stop_view("mic", "ghost", "alice"), 404) == "viewer ghost not found"

    # A body that does not decode is a 400 naming the problem, never a timeout.
    reply = await nc.request(subjects.media_node(node.node_id, "publish"), b'{"caller": {}}', timeout=5)
    assert b'"status":400' in reply.data

    accepted(await conf.unpublish("mic"))
    await peers.close()
    await assert_nothing_left(node)


async def test_full_node_refuses_publishers(nats_server: NatsServer, nc: Client, peers: Peers) -> None:
    full = MediaNode(node_settings(nats_server, f"media-full-{uuid.uuid4().hex[:6]}", capacity=1))
    await full.start()
    try:
        conf = client(nc, full)
        accepted(await conf.publish(peers.publisher(video=False), "a", "alice", stream_type="MIC"))
        assert rejected(await conf.publish(peers.publisher(video=False), "b", "bob", stream_type="MIC"), 503)
    finally:
        await full.stop()
    assert full.engine.counters().publishers == 0


async def test_still_is_a_decodable_jpeg(node: MediaNode, nc: Client, peers: Peers) -> None:
    conf = client(nc, node)
    accepted(await conf.publish(peers.publisher(GREEN), "cam", "alice", stream_type="CAM"))
    key = conf.stream_key("cam")
    await eventually(lambda: node.engine.stream_stats(key).packets.get("video", 0) > 10, 10)
    started = time.monotonic()
    still = accepted(await conf.still("cam"))
    print(f"still over NATS: {(time.monotonic() - started) * 1000:.0f} ms, {len(still.jpeg)} bytes")
    assert still.jpeg[:2] == b"\xff\xd8"
    assert (still.width, still.height) == (640, 480) == jpeg_size(still.jpeg)
    with av.open(io.BytesIO(still.jpeg), mode="r") as container:
        frame = next(container.decode(video=0))
    assert (frame.width, frame.height) == (640, 480)
    assert close_to(mean_color(frame), GREEN)


async def test_conference_events_tear_sessions_down(node: MediaNode, nc: Client, peers: Peers) -> None:
    conf = client(nc, node)
    other = client(nc, node)  # another conference on the same node: never touched
    accepted(await conf.publish(peers.publisher(RED), "cam-a", "alice"))
    accepted(await conf.publish(peers.publisher(BLUE), "cam-b", "bob"))
    accepted(await conf.publish(peers.publisher(GREEN, video=False), "mic-c", "carol", stream_type="MIC"))
    accepted(await other.publish(peers.publisher(GREEN), "cam-x", "alice"))
    bob_sees_a, alice_sees_b, carol_sees_b = peers.viewer(), peers.viewer(), peers.viewer()
    outsider = peers.viewer()
    accepted(await conf.view(bob_sees_a, "cam-a", "v1", "bob"))
    accepted(await conf.view(alice_sees_b, "cam-b", "v2", "alice"))
    accepted(await conf.view(carol_sees_b, "cam-b", "v3", "carol"))
    accepted(await other.view(outsider, "cam-x", "v4", "bob"))
    for viewer in (bob_sees_a, alice_sees_b, carol_sees_b, outsider):
        await viewer.wait_frames(5)
    assert node.engine.counters().peer_connections == 8

    # bob leaves: his publisher (with alice's and carol's viewers of it) and his viewer of cam-a close.
    await conf.conference_event(ConferenceLeftEvent(**conf.event_fields("bob"), reason="LEFT"))
    assert (
        await bob_sees_a.wait_ended() and await alice_sees_b.wait_ended() and await carol_sees_b.wait_ended()
    )
    await eventually(lambda: node.engine.counters().peer_connections == 4)
    assert sorted(k.stream_id for k in node.holdings) == ["cam-a", "cam-x", "mic-c"]
    assert bob_sees_a.video_frames > 0

    # A stream unpublished through the conference service.
    unpublished = ConferenceStreamUnpublishedEvent(
        **conf.event_fields("carol"), stream_id="mic-c", stream_type="MIC", reason="UNPUBLISHED"
    )
    await conf.conference_event(unpublished)
    await eventually(lambda: sorted(k.stream_id for k in node.holdings) == ["cam-a", "cam-x"])

    # Events of a conference the node holds nothing of are ignored; the end closes everything of conf.
    stranger = client(nc, node)
    await stranger.conference_event(ConferenceEndedEvent(**stranger.event_fields(), reason="END"))
    await conf.conference_event(ConferenceEndedEvent(**conf.event_fields("alice"), reason="END"))
    await eventually(lambda: [k.stream_id for k in node.holdings] == ["cam-x"])
    await eventually(lambda: node.engine.counters().peer_connections == 2)
    frames = outsider.video_frames
    await outsider.wait_frames(10)
    assert outsider.video_frames > frames, "the other conference keeps flowing"

    await other.conference_event(ConferenceEndedEvent(**other.event_fields(), reason="END"))
    assert await outsider.wait_ended()
    await peers.close()
    await assert_nothing_left(node)


async def test_recorder_on_then_off_stores_a_webm(node: MediaNode, nc: Client, peers: Peers) -> None:
    conf = client(nc, node)
    accepted(await conf.publish(peers.publisher(BLUE), "cam", "alice"))
    key = conf.stream_key("cam")
    await eventually(lambda: node.engine.stream_stats(key).packets.get("video", 0) > 10, 10)

    recorder: dict[str, Any] = {"key": "RECORDER", "operation": "SET"}
    await conf.conference_event(
        ConferenceMetadataUpdatedEvent(**conf.event_fields("alice"), **recorder, value='{"on":true}')
    )
    await eventually(lambda: node.recordings.recording(key), 5)
    await asyncio.sleep(1.5)
    await conf.conference_event(
        ConferenceMetadataUpdatedEvent(**conf.event_fields("alice"), **recorder, value='{"on":false}')
    )
    stored = await next_media_event(conf.js, RecordingStoredEvent, node.node_id)
    assert stored.stream == conf.stream("cam")
    assert stored.bucket == subjects.RECORDINGS_BUCKET
    assert stored.object_name == f"{ORG}/{conf.conference_id}/{stored.recording_id}.webm"
    assert stored.mime_type == "video/webm"
    assert 1.0 < stored.duration_seconds < 3.0
    print(f"recording: {stored.bytes} bytes, {stored.duration_seconds} s")

    bucket = await conf.js.object_store(subjects.RECORDINGS_BUCKET)
    data = (await bucket.get(stored.object_name)).data
    assert data is not None and len(data) == stored.bytes > 10_000
    with av.open(io.BytesIO(data), mode="r") as container:
        assert container.streams.video[0].codec_context.name == "vp8"
        assert len(container.streams.audio) == 1
        frames = list(container.decode(video=0))
    assert frames[0].key_frame and len(frames) > 25
    assert close_to(mean_color(frames[-1]), BLUE)
    assert not node.recordings.recording(key)
    accepted(await conf.unpublish("cam"))


async def test_recording_requested_at_publish_is_stored_on_unpublish(
    node: MediaNode, nc: Client, peers: Peers
) -> None:
    conf = client(nc, node)
    accepted(await conf.publish(peers.publisher(video=False), "mic", "alice", stream_type="MIC", record=True))
    assert node.recordings.recording(conf.stream_key("mic"))
    await asyncio.sleep(1.0)
    accepted(await conf.unpublish("mic"))
    stored = await next_media_event(conf.js, RecordingStoredEvent, node.node_id)
    assert stored.mime_type == "audio/webm" and stored.stream.stream_id == "mic"
    bucket = await conf.js.object_store(subjects.RECORDINGS_BUCKET)
    data = (await bucket.get(stored.object_name)).data
    assert data is not None
    with av.open(io.BytesIO(data), mode="r") as container:
        assert sum(1 for _ in container.decode(audio=0)) > 20
    await peers.close()
    await assert_nothing_left(node)


async def test_a_publisher_that_goes_away_is_reported(node: MediaNode, nc: Client, peers: Peers) -> None:
    conf = client(nc, node)
    publisher = peers.publisher(RED)
    accepted(await conf.publish(publisher, "cam", "alice"))
    viewer = peers.viewer()
    accepted(await conf.view(viewer, "cam", "v", "bob"))
    await viewer.wait_frames(5)

    await publisher.close()  # the browser tab goes away
    ended = await next_media_event(conf.js, MediaStreamEndedEvent, node.node_id, timeout=15)
    assert ended.stream == conf.stream("cam")
    assert ended.reason in ("connection-closed", "connection-failed", "tracks-ended")
    assert await viewer.wait_ended()
    assert list(node.holdings) == []
    # The conference service's unpublish comes afterwards and still succeeds.
    accepted(await conf.unpublish("cam"))
    await peers.close()
    await assert_nothing_left(node)


async def test_a_client_that_never_connects_is_let_go(
    nats_server: NatsServer, nc: Client, peers: Peers
) -> None:
    impatient = MediaNode(
        node_settings(nats_server, f"media-short-{uuid.uuid4().hex[:6]}", connect_timeout_seconds=1.5)
    )
    await impatient.start()
    try:
        conf = client(nc, impatient)
        publisher = peers.publisher(video=False)
        body = PublishMedia(
            stream=conf.stream("mic"),
            stream_type="MIC",
            sdp_offer=await publisher.offer(),
            user_endpoint_id="alice",
        )
        accepted(await conf.call("publish", body, SdpAnswer))  # the answer never reaches the client
        await publisher.close()
        ended = await next_media_event(conf.js, MediaStreamEndedEvent, impatient.node_id, timeout=10)
        assert (ended.stream.stream_id, ended.reason) == ("mic", "connect-timeout")
        await assert_nothing_left(impatient)
    finally:
        await impatient.stop()


async def test_heartbeats_count_streams(node: MediaNode, nc: Client, peers: Peers) -> None:
    beats: asyncio.Queue[MediaNodeHeartbeat] = asyncio.Queue()
    decoder = msgspec.json.Decoder(MediaNodeHeartbeat)

    async def on_beat(message: Any) -> None:
        beat = decoder.decode(message.data)
        if beat.node_id == node.node_id:
            beats.put_nowait(beat)

    await nc.subscribe(subjects.MEDIA_HEARTBEAT, cb=on_beat)
    first = await asyncio.wait_for(beats.get(), 2)
    assert (first.publishers, first.viewers, first.capacity) == (0, 0, 0)
    assert first.started_at == node.started_at

    conf = client(nc, node)
    accepted(await conf.publish(peers.publisher(video=False), "mic", "alice", stream_type="MIC"))
    accepted(await conf.view(peers.viewer(("audio",)), "mic", "v", "bob"))
    while (beat := await asyncio.wait_for(beats.get(), 2)).viewers != 1:
        pass
    assert beat.publishers == 1 and beat.started_at == first.started_at
    accepted(await conf.unpublish("mic"))


async def test_python_m_parley_media_serves_and_stops_on_sigterm(nats_server: NatsServer, nc: Client) -> None:
    node_id = f"media-proc-{uuid.uuid4().hex[:6]}"
    beats: asyncio.Queue[bytes] = asyncio.Queue()

    async def on_beat(message: Any) -> None:
        if node_id.encode() in message.data:
            beats.put_nowait(message.data)

    await nc.subscribe(subjects.MEDIA_HEARTBEAT, cb=on_beat)
    env = {
        **os.environ,
        "PARLEY_NATS_URL": nats_server.url,
        "PARLEY_MEDIA_NODE_ID": node_id,
        "PARLEY_MEDIA_HEARTBEAT_SECONDS": "0.2",
        "PARLEY_MEDIA_ICE_SERVERS": '[{"urls": "stun:192.0.2.1:3478"}]',
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "parley_media", env=env, stdout=DEVNULL, stderr=PIPE
    )
    try:
        await asyncio.wait_for(beats.get(), 15)  # the first beat is sent once the node serves
        health = await nc.request(subjects.health("media"), b"{}", timeout=2)
        assert b'"isHealthy":true' in health.data
        conf = NodeClient(nc, node_id, "conf-proc")
        accepted(await conf.unpublish("nothing"))
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 15) == 0
    finally:
        if process.returncode is None:
            process.kill()
        stderr = (await process.communicate())[1].decode(errors="replace")
    assert "media node stopped" in stderr, stderr[-2000:]
