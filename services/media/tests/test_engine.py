"""MediaEngine end to end with real aiortc client peers (real ICE, DTLS, SRTP) in this process."""

from __future__ import annotations

import asyncio
import io
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
from aioice.ice import get_host_addresses
from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError
from aiortc.rtcrtpreceiver import RemoteStreamTrack
from av.audio.frame import AudioFrame
from av.video.frame import VideoFrame
from parley_media import (
    IceCandidate,
    InvalidCandidate,
    InvalidSdp,
    MediaConfig,
    MediaEngine,
    NoVideo,
    SessionState,
    StreamAlreadyPublished,
    StreamEnded,
    StreamKey,
    StreamKind,
    UnknownStream,
    UnknownViewer,
)

from tests.integration.peers import BLUE, GREEN, RED, SolidColorTrack, ToneTrack
from tests.integration.peers import split_candidates as split_sdp_candidates

# aioice never offers 127.0.0.1, so peers in one process need another local interface address.
if not get_host_addresses(use_ipv4=True, use_ipv6=False):
    pytest.skip(
        "no non-loopback IPv4 interface: aioice would gather no host candidate", allow_module_level=True
    )


# -- synthetic client media ------------------------------------------------------------------------


def split_candidates(sdp: str) -> tuple[str, list[IceCandidate]]:
    """The shared test peers' split, as the engine's own candidate type."""
    kept, found = split_sdp_candidates(sdp)
    return kept, [IceCandidate(c.candidate, c.sdp_mid, c.sdp_mline_index) for c in found]


def new_client() -> RTCPeerConnection:
    return RTCPeerConnection(RTCConfiguration(iceServers=[]))


async def offer(pc: RTCPeerConnection) -> str:
    await pc.setLocalDescription(await pc.createOffer())
    return str(pc.localDescription.sdp)


async def accept(pc: RTCPeerConnection, answer_sdp: str) -> None:
    await pc.setRemoteDescription(RTCSessionDescription(sdp=answer_sdp, type="answer"))


class Clients:
    """Client peers of one test, closed at teardown."""

    def __init__(self) -> None:
        self.pcs: list[RTCPeerConnection] = []

    def publisher(self, video: SolidColorTrack | None, audio: bool) -> RTCPeerConnection:
        pc = new_client()
        if video is not None:
            pc.addTrack(video)
        if audio:
            pc.addTrack(ToneTrack())
        self.pcs.append(pc)
        return pc

    def viewer(self, kinds: tuple[str, ...] = ("video", "audio")) -> Viewer:
        viewer = Viewer(kinds)
        self.pcs.append(viewer.pc)
        return viewer

    async def close(self) -> None:
        await asyncio.gather(*(pc.close() for pc in self.pcs))


class Viewer:
    """A browser-like recvonly viewer that decodes what it receives."""

    def __init__(self, kinds: tuple[str, ...]) -> None:
        self.pc = new_client()
        self.tracks: dict[str, asyncio.Future[MediaStreamTrack]] = {}
        loop = asyncio.get_running_loop()
        for kind in kinds:
            self.pc.addTransceiver(kind, direction="recvonly")
            self.tracks[kind] = loop.create_future()
        self.pc.on("track", lambda track: self.tracks[track.kind].set_result(track))

    async def join(
        self, engine: MediaEngine, stream: StreamKey, viewer_id: str, trickle: bool = False
    ) -> None:
        sdp = await offer(self.pc)
        if not trickle:
            await accept(self.pc, await engine.view(stream, viewer_id, sdp))
            return
        sdp, candidates = split_candidates(sdp)
        await accept(self.pc, await engine.view(stream, viewer_id, sdp))
        # After the answer: applied directly; the end-of-candidates marker is accepted and ignored.
        await engine.add_viewer_candidates(stream, viewer_id, [*candidates, IceCandidate("", "0", 0)])

    async def frame(self, kind: str, timeout: float = 5.0) -> VideoFrame | AudioFrame:
        track = await asyncio.wait_for(self.tracks[kind], timeout)
        frame = await asyncio.wait_for(track.recv(), timeout)
        assert isinstance(frame, (VideoFrame, AudioFrame)), "client receivers must still decode"
        return frame

    async def video_color(self, timeout: float = 5.0) -> tuple[int, int, int]:
        frame = await self.frame("video", timeout)
        assert isinstance(frame, VideoFrame)
        return mean_color(frame)

    async def wait_for_color(self, color: tuple[int, int, int], timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        last = (0, 0, 0)
        while time.monotonic() < deadline:
            last = await self.video_color(timeout)
            if close_to(last, color):
                return
        raise AssertionError(f"viewer never saw {color}, last {last}")

    async def ended(self, timeout: float = 5.0) -> bool:
        """True once the server side closed: the track ends or the connection closes."""
        received = [f.result() for f in self.tracks.values() if f.done()]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.pc.connectionState in ("closed", "failed"):
                return True
            if not received:
                await asyncio.sleep(0.05)
                continue
            try:
                await asyncio.wait_for(received[0].recv(), 0.5)
            except MediaStreamError:
                return True
            except TimeoutError:
                continue
        return False


def mean_color(frame: VideoFrame) -> tuple[int, int, int]:
    rgb = frame.to_ndarray(format="rgb24")
    r, g, b = (int(v) for v in rgb.reshape(-1, 3).mean(axis=0))
    return r, g, b


def close_to(actual: tuple[int, int, int], expected: tuple[int, int, int], tolerance: int = 25) -> bool:
    return all(abs(a - e) <= tolerance for a, e in zip(actual, expected, strict=True))


async def eventually(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


def media_threads() -> set[str]:
    # The loop's default-executor threads ("asyncio_N") belong to the client encoders, not to us.
    return {f"{t.name}:{t.ident}" for t in threading.enumerate() if not t.name.startswith("asyncio_")}


async def publish(
    engine: MediaEngine,
    clients: Clients,
    stream: StreamKey,
    kind: StreamKind,
    color: tuple[int, int, int] = RED,
    trickle_early: bool = False,
) -> tuple[RTCPeerConnection, SolidColorTrack | None]:
    video = SolidColorTrack(color) if kind is not StreamKind.MIC else None
    pc = clients.publisher(video, audio=kind in (StreamKind.MIC, StreamKind.MIC_AND_CAM))
    sdp = await offer(pc)
    if trickle_early:
        sdp, candidates = split_candidates(sdp)
        # Before publish() even starts: the engine must hold them until the answer exists.
        await engine.add_publisher_candidates(stream, candidates)
    await accept(pc, await engine.publish(stream, sdp, kind))
    return pc, video


# -- fixtures --------------------------------------------------------------------------------------


@pytest.fixture
async def engine() -> AsyncIterator[MediaEngine]:
    engine = MediaEngine(MediaConfig(connect_timeout=10.0))
    yield engine
    await engine.close_all()


@pytest.fixture
async def clients() -> AsyncIterator[Clients]:
    clients = Clients()
    yield clients
    await clients.close()


def key(stream_id: str, conference: str = "conf-1") -> StreamKey:
    return StreamKey("org-1", conference, stream_id)


async def assert_nothing_left(
    engine: MediaEngine, threads_before: set[str], tasks_before: set[asyncio.Task[Any]]
) -> None:
    await eventually(lambda: engine.counters().peer_connections == 0 and engine.counters().tasks == 0)
    # Not only the engine's own tasks: aiortc's RTP/RTCP/ICE tasks of closed peers must be gone too.
    await eventually(lambda: asyncio.all_tasks() - tasks_before <= {asyncio.current_task()})
    await eventually(lambda: engine.counters().threads == 0)
    await eventually(lambda: media_threads() <= threads_before)
    counters = engine.counters()
    assert (counters.publishers, counters.viewers) == (0, 0)


# -- tests -----------------------------------------------------------------------------------------


async def test_two_viewers_receive_forwarded_video_and_audio(engine: MediaEngine, clients: Clients) -> None:
    threads_before, tasks_before = media_threads(), set(asyncio.all_tasks())
    stream = key("cam-1")
    _, video = await publish(engine, clients, stream, StreamKind.MIC_AND_CAM, RED, trickle_early=True)
    assert video is not None

    first = clients.viewer()
    started = time.monotonic()
    await first.join(engine, stream, "viewer-1")
    assert close_to(await first.video_color(), RED)
    first_frame_ms = (time.monotonic() - started) * 1000

    # Joins after the publisher's only spontaneous keyframe: needs the forwarded PLI, with trickle ICE.
    await asyncio.sleep(0.5)
    second = clients.viewer()
    await second.join(engine, stream, "viewer-2", trickle=True)
    assert close_to(await second.video_color(), RED)

    for viewer in (first, second):
        audio = await viewer.frame("audio")
        assert isinstance(audio, AudioFrame)
        samples = [np.abs(a.to_ndarray()).max() for a in [await viewer.frame("audio") for _ in range(10)]]
        assert max(samples) > 1000, "the tone must survive forwarding"

    video.set_color(BLUE)
    await asyncio.gather(first.wait_for_color(BLUE), second.wait_for_color(BLUE))

    # Forwarding goes on: the counts pass 30 packets each (soon, however loaded the machine is).
    deadline = time.monotonic() + 5
    stats = engine.stream_stats(stream)
    while stats.packets["video"] <= 30 or stats.packets["audio"] <= 30:
        assert time.monotonic() < deadline, stats
        await asyncio.sleep(0.1)
        stats = engine.stream_stats(stream)
    assert stats.viewers == 2
    assert stats.plis_sent >= 1, "the late viewer's keyframe must come from a PLI to the publisher"
    assert engine.counters().peer_connections == 3
    assert engine.counters().threads == 2  # one forwarding worker per publisher track, nothing per viewer
    print(f"first frame {first_frame_ms:.0f} ms after view(); stats {stats}")

    await engine.unpublish(stream)
    assert await first.ended() and await second.ended()
    with pytest.raises(UnknownStream):
        await engine.view(stream, "viewer-3", await offer(clients.viewer().pc))
    await clients.close()
    await assert_nothing_left(engine, threads_before, tasks_before)


async def test_trickle_while_publishing_and_unpublish_while_negotiating(
    engine: MediaEngine, clients: Clients
) -> None:
    threads_before, tasks_before = media_threads(), set(asyncio.all_tasks())
    stream = key("race")
    pc = clients.publisher(SolidColorTrack(RED), audio=False)
    sdp, candidates = split_candidates(await offer(pc))
    publishing = asyncio.ensure_future(engine.publish(stream, sdp, StreamKind.CAM))
    await asyncio.sleep(0)
    assert engine.stream_stats(stream).state is SessionState.NEGOTIATING
    await engine.add_publisher_candidates(stream, candidates)  # held until the answer exists
    await accept(pc, await publishing)
    viewer = clients.viewer(("video",))
    await viewer.join(engine, stream, "v")
    assert close_to(await viewer.video_color(), RED)

    other = clients.publisher(SolidColorTrack(RED), audio=False)
    publishing = asyncio.ensure_future(engine.publish(key("race-2"), await offer(other), StreamKind.CAM))
    await asyncio.sleep(0)
    await engine.unpublish(key("race-2"))
    with pytest.raises(UnknownStream):
        await publishing

    await engine.close_all()
    await clients.close()
    await assert_nothing_left(engine, threads_before, tasks_before)


async def test_publisher_without_viewers_is_drained(engine: MediaEngine, clients: Clients) -> None:
    stream = key("cam-idle")
    await publish(engine, clients, stream, StreamKind.CAM)
    await eventually(lambda: engine.stream_stats(stream).packets["video"] > 15)
    tracks = [r.track for r in engine._publishers[stream].pc.getReceivers()]
    # The receiver's own (unbounded) queue stays drained by the always-running fanout pump.
    assert tracks and all(isinstance(t, RemoteStreamTrack) and t._queue.qsize() <= 2 for t in tracks)
    assert engine.stream_stats(stream).viewer_drops == 0


async def test_stop_view_and_viewer_replacement(engine: MediaEngine, clients: Clients) -> None:
    stream = key("screen-1")
    await publish(engine, clients, stream, StreamKind.SCREEN, GREEN)
    viewer = clients.viewer(("video",))
    await viewer.join(engine, stream, "v")
    assert close_to(await viewer.video_color(), GREEN)

    again = clients.viewer(("video",))  # same viewer id: a reconnect replaces the old leg
    await again.join(engine, stream, "v")
    assert close_to(await again.video_color(), GREEN)
    assert await viewer.ended()
    assert engine.viewer_ids(stream) == ["v"]

    await engine.stop_view(stream, "v")
    assert await again.ended()
    with pytest.raises(UnknownViewer):
        await engine.stop_view(stream, "v")
    await eventually(lambda: engine.counters().peer_connections == 1)


async def test_close_conference_tears_everything_down(engine: MediaEngine, clients: Clients) -> None:
    threads_before, tasks_before = media_threads(), set(asyncio.all_tasks())
    cam, mic, other = key("cam"), key("mic"), key("cam", conference="conf-2")
    await publish(engine, clients, cam, StreamKind.CAM)
    await publish(engine, clients, mic, StreamKind.MIC)
    await publish(engine, clients, other, StreamKind.CAM, GREEN)
    viewers = {name: clients.viewer() for name in ("cam", "mic", "other")}
    await viewers["cam"].join(engine, cam, "a")
    await viewers["mic"].join(engine, mic, "a")
    await viewers["other"].join(engine, other, "a")
    assert isinstance(await viewers["mic"].frame("audio"), AudioFrame)
    assert close_to(await viewers["other"].video_color(), GREEN)
    assert engine.counters().peer_connections == 6
    forwarded = engine.forwarding_totals()
    assert forwarded.packets > 0 and forwarded.bytes > forwarded.packets

    await engine.close_conference("org-1", "conf-1")
    assert engine.streams() == [other]
    assert await viewers["cam"].ended() and await viewers["mic"].ended()
    assert close_to(await viewers["other"].video_color(), GREEN), "other conferences are untouched"

    await engine.close_all()
    assert await viewers["other"].ended()
    # The node's metrics are counters: what closed streams forwarded stays counted.
    closed = engine.forwarding_totals()
    assert engine.streams() == []
    assert closed.packets >= forwarded.packets and closed.bytes >= forwarded.bytes
    assert closed.plis_sent >= 1  # each viewer's join asked its publisher for a keyframe
    await clients.close()
    await assert_nothing_left(engine, threads_before, tasks_before)


async def test_publisher_disconnect_is_reported(engine: MediaEngine, clients: Clients) -> None:
    stream = key("cam-lost")
    events = engine.subscribe()
    pc, _ = await publish(engine, clients, stream, StreamKind.CAM)
    viewer = clients.viewer(("video",))
    await viewer.join(engine, stream, "v")
    await viewer.video_color()

    await pc.close()  # the browser tab goes away
    event = await asyncio.wait_for(anext(events), 10)
    assert isinstance(event, StreamEnded) and event.stream == stream
    assert event.reason in ("connection-closed", "connection-failed", "tracks-ended")
    assert await viewer.ended()
    assert engine.streams() == []
    events.close()
    await eventually(lambda: engine.counters().peer_connections == 0 and engine.counters().tasks == 0)


async def test_still_jpeg(engine: MediaEngine, clients: Clients) -> None:
    stream = key("cam-still")
    _, video = await publish(engine, clients, stream, StreamKind.CAM, GREEN)
    assert video is not None
    await eventually(lambda: engine.stream_stats(stream).packets["video"] > 10)

    started = time.perf_counter()
    jpeg = await engine.still_jpeg(stream)
    first_ms = (time.perf_counter() - started) * 1000
    assert jpeg[:2] == b"\xff\xd8"
    assert close_to(decode_jpeg(jpeg), GREEN)

    video.set_color(RED)
    await asyncio.sleep(0.3)
    started = time.perf_counter()
    jpeg = await engine.still_jpeg(stream)
    next_ms = (time.perf_counter() - started) * 1000
    assert close_to(decode_jpeg(jpeg), RED)
    print(f"still: first {first_ms:.1f} ms (decoder start + GOP priming), next {next_ms:.1f} ms")
    assert first_ms < 300 and next_ms < 100

    await publish(engine, clients, key("mic-still"), StreamKind.MIC)
    with pytest.raises(NoVideo):
        await engine.still_jpeg(key("mic-still"))
    with pytest.raises(UnknownStream):
        await engine.still_jpeg(key("nope"))
    await engine.unpublish(stream)
    await eventually(lambda: engine.counters().threads == 1)  # only the MIC stream's worker remains


def decode_jpeg(data: bytes) -> tuple[int, int, int]:
    with av.open(io.BytesIO(data), mode="r") as container:
        frame = next(container.decode(video=0))
        return mean_color(frame)


async def test_recording_remuxes_webm_from_a_keyframe(engine: MediaEngine, clients: Clients) -> None:
    stream = key("cam-rec")
    await publish(engine, clients, stream, StreamKind.MIC_AND_CAM, BLUE)
    await eventually(lambda: engine.stream_stats(stream).packets["video"] > 15)  # past the first keyframe

    sink = io.BytesIO()
    await engine.start_recording(stream, sink)
    await asyncio.sleep(1.5)
    info = await engine.stop_recording(stream)
    assert info.mime_type == "video/webm"
    assert info.bytes == len(sink.getvalue()) > 10_000
    assert 1.0 < info.duration < 1.6 and info.video_frames > 25 and info.audio_packets > 40

    sink.seek(0)
    with av.open(sink, mode="r") as container:
        assert container.streams.video[0].codec_context.name == "vp8"
        assert container.streams.audio[0].codec_context.name in ("opus", "libopus")
        frames = list(container.decode(video=0))
    assert frames[0].key_frame, "a recording must start on a keyframe"
    assert len(frames) == info.video_frames
    assert close_to(mean_color(frames[-1]), BLUE)
    sink.seek(0)
    with av.open(sink, mode="r") as container:
        assert sum(1 for _ in container.decode(audio=0)) > 40


async def test_audio_recording_to_path_finishes_on_unpublish(
    engine: MediaEngine, clients: Clients, tmp_path: Path
) -> None:
    stream = key("mic-rec")
    events = engine.subscribe()
    await publish(engine, clients, stream, StreamKind.MIC)
    path = tmp_path / "mic.webm"
    await engine.start_recording(stream, path)
    await asyncio.sleep(0.6)
    await engine.unpublish(stream)  # finalises the file and reports it
    event = await asyncio.wait_for(anext(events), 2)
    events.close()
    info = getattr(event, "info", None)
    assert info is not None and info.mime_type == "audio/webm"
    assert info.bytes == path.stat().st_size > 0
    with av.open(str(path), mode="r") as container:
        assert sum(1 for _ in container.decode(audio=0)) > 10


async def test_errors_are_typed_and_leave_nothing_behind(engine: MediaEngine, clients: Clients) -> None:
    with pytest.raises(InvalidSdp):
        await engine.publish(key("x"), "not sdp", StreamKind.CAM)
    audio_only = await offer(clients.publisher(None, audio=True))
    with pytest.raises(InvalidSdp):
        await engine.publish(key("x"), audio_only, StreamKind.CAM)
    with pytest.raises(InvalidCandidate):
        await engine.add_publisher_candidates(key("x"), [IceCandidate("candidate:garbage", "0", 0)])
    with pytest.raises(UnknownStream):
        await engine.unpublish(key("x"))
    with pytest.raises(UnknownStream):
        await engine.add_viewer_candidates(key("x"), "v", [])
    assert engine.counters().peer_connections == 0

    await publish(engine, clients, key("mic"), StreamKind.MIC)
    with pytest.raises(StreamAlreadyPublished):
        await engine.publish(key("mic"), audio_only, StreamKind.MIC)
    video_only_viewer = clients.viewer(("video",))
    with pytest.raises(InvalidSdp):  # asks for video from an audio-only stream
        await engine.view(key("mic"), "v", await offer(video_only_viewer.pc))
    assert engine.viewer_ids(key("mic")) == []
    await eventually(lambda: engine.counters().peer_connections == 1)
