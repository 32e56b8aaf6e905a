"""Unit tests of the engine's building blocks (no network)."""

from __future__ import annotations

import asyncio
import fractions

import pytest
from aiortc import RTCRtpCodecParameters
from aiortc.mediastreams import MediaStreamError
from aiortc.rtp import RtpPacket
from aiortc.sdp import SessionDescription
from parley_media import IceCandidate, InvalidCandidate
from parley_media.forwarding import (
    ForwardedTrack,
    MarkerJitterBuffer,
    PassThroughAudioBuffer,
    TrackFanout,
    is_keyframe,
    to_packet,
)
from parley_media.ice import CandidateGate, EarlyCandidates, announce_address, parse_candidate
from parley_media.keyframes import KeyframeRequester, SignalledSsrcs
from parley_media.model import Packet
from parley_media.negotiation import primary_ssrc_first
from parley_media.recording import vp8_dimensions

VP8 = RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=96)
# A VP8 keyframe header: frame tag (bit 0 = 0), start code, 640x480.
VP8_KEY = (
    bytes([0x10, 0x02, 0x00, 0x9D, 0x01, 0x2A]) + (640).to_bytes(2, "little") + (480).to_bytes(2, "little")
)
VP8_DELTA = bytes([0x11, 0x02, 0x00, 0x00])


def packet(key: bool, pts: int = 0) -> Packet:
    return to_packet(VP8, VP8_KEY if key else VP8_DELTA, pts)


def test_to_packet_carries_rtp_timing_and_keyframe_flag() -> None:
    p = to_packet(VP8, VP8_KEY, 123456)
    assert (p.pts, p.time_base, p.is_keyframe, bytes(p)) == (
        123456,
        fractions.Fraction(1, 90000),
        True,
        VP8_KEY,
    )
    assert not packet(key=False).is_keyframe
    assert is_keyframe("video/H264", b"\x00\x00\x00\x01\x67\x42") and not is_keyframe(
        "video/H264", b"\x00\x00\x01\x41"
    )
    assert is_keyframe("audio/opus", b"\x78")
    assert vp8_dimensions(VP8_KEY) == (640, 480) and vp8_dimensions(VP8_DELTA) == (0, 0)


def rtp(seq: int, timestamp: int, data: bytes, marker: bool) -> RtpPacket:
    packet = RtpPacket(sequence_number=seq, timestamp=timestamp, marker=int(marker))
    packet._data = data  # type: ignore[attr-defined]  # what the receiver's depayloader sets
    return packet


def test_marker_jitter_buffer_emits_a_frame_on_its_last_packet() -> None:
    buffer = MarkerJitterBuffer(capacity=128, is_video=True)
    assert buffer.add(rtp(100, 3000, b"a", marker=False)) == (False, None)
    _, frame = buffer.add(rtp(101, 3000, b"b", marker=True))  # no need to wait for the next frame
    assert frame is not None and (frame.data, frame.timestamp) == (b"ab", 3000)

    # A gap holds the frame back, even once its marker packet is in; the retransmission completes it.
    assert buffer.add(rtp(102, 6000, b"c", marker=False))[1] is None
    assert buffer.add(rtp(104, 6000, b"e", marker=True))[1] is None
    _, frame = buffer.add(rtp(103, 6000, b"d", marker=False))
    assert frame is not None and (frame.data, frame.timestamp) == (b"cde", 6000)

    # A sender without marker bits: complete when the next frame starts, as in aiortc's buffer.
    assert buffer.add(rtp(105, 9000, b"f", marker=False))[1] is None
    _, frame = buffer.add(rtp(106, 12000, b"g", marker=False))
    assert frame is not None and (frame.data, frame.timestamp) == (b"f", 9000)
    # A late duplicate of an emitted frame is dropped; padding (no payload) is never a frame.
    assert buffer.add(rtp(101, 3000, b"b", marker=True))[1] is None
    assert buffer.add(rtp(107, 12000, b"", marker=True))[1] is not None  # "g" + padding: still "g"
    assert buffer.add(rtp(108, 12000, b"", marker=True))[1] is None


def test_forwarded_audio_passes_each_packet_on_at_once_and_never_stalls_on_a_loss() -> None:
    buffer = PassThroughAudioBuffer(capacity=16)
    _, frame = buffer.add(rtp(65535, 960, b"a", marker=True))
    assert frame is not None and (frame.data, frame.timestamp) == (b"a", 960)
    # 0 and 1 lost: the next one still goes straight through (across the sequence wrap).
    _, frame = buffer.add(rtp(2, 3840, b"d", marker=True))
    assert frame is not None and frame.data == b"d"
    # Late, duplicate or empty: dropped.
    assert buffer.add(rtp(1, 2880, b"c", marker=True))[1] is None
    assert buffer.add(rtp(2, 3840, b"d", marker=True))[1] is None
    assert buffer.add(rtp(3, 4800, b"", marker=True))[1] is None


async def test_forwarded_video_waits_for_keyframe_and_drops_own_backlog_on_overflow() -> None:
    requests: list[int] = []
    track = ForwardedTrack("video", capacity=5, request_keyframe=lambda: requests.append(1))
    track.push(packet(key=False))
    assert track.waiting_for_keyframe and track._queue.qsize() == 0

    track.push(packet(key=True, pts=1))
    for pts in range(2, 5):
        track.push(packet(key=False, pts=pts))
    assert (await track.recv()).pts == 1  # the sender started reading

    for pts in range(5, 30):  # a stalled sender: the queue never grows past its capacity
        track.push(packet(key=False, pts=pts))
        assert track._queue.qsize() <= 5
    assert track.waiting_for_keyframe and track.overflows == 1 and requests == [1]

    track.push(packet(key=True, pts=40))
    assert not track.waiting_for_keyframe
    assert (await track.recv()).pts == 40

    track.end()
    with pytest.raises(MediaStreamError):
        await track.recv()
    assert track.readyState == "ended"


async def test_unstarted_video_track_keeps_only_the_newest_gop() -> None:
    track = ForwardedTrack("video", capacity=50, request_keyframe=lambda: None)
    for pts, key in enumerate([True, False, False, True, False]):
        track.push(packet(key=key, pts=pts))
    assert [(await track.recv()).pts for _ in range(2)] == [3, 4]


def test_forwarded_audio_drops_oldest() -> None:
    track = ForwardedTrack("audio", capacity=3, request_keyframe=lambda: None)
    opus = RTCRtpCodecParameters(mimeType="audio/opus", clockRate=48000, payloadType=111)
    for pts in range(10):
        track.push(to_packet(opus, b"\x78", pts * 960))
    assert [track._queue.get_nowait().pts for _ in range(3)] == [7 * 960, 8 * 960, 9 * 960]  # type: ignore[union-attr]


async def test_keyframe_requests_are_rate_limited_and_coalesced() -> None:
    sent: list[float] = []
    loop = asyncio.get_running_loop()

    async def send() -> bool:
        sent.append(loop.time())
        return True

    requester = KeyframeRequester(send, min_interval=0.1)
    runner = asyncio.create_task(requester.run())
    try:
        for _ in range(10):  # a burst of viewer PLIs within ~50 ms
            requester.request()
            await asyncio.sleep(0.005)
        await asyncio.sleep(0.15)
        assert len(sent) == 2 and sent[1] - sent[0] >= 0.095  # first at once, the rest coalesced

        requester.request()
        requester.keyframe_seen()  # someone else's keyframe arrived: nothing more to send
        await asyncio.sleep(0.15)
        assert len(sent) == 2
    finally:
        runner.cancel()


def test_pli_targets_come_from_fid_primaries() -> None:
    sdp = (
        "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n"
        "m=video 9 UDP/TLS/RTP/SAVPF 96 97\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\na=sendonly\r\n"
        "a=rtpmap:96 VP8/90000\r\na=rtpmap:97 rtx/90000\r\na=fmtp:97 apt=96\r\n"
        "a=ssrc-group:FID 1111 2222\r\na=ssrc:2222 cname:x\r\na=ssrc:1111 cname:x\r\n"
    )
    ssrcs = SignalledSsrcs.from_media(SessionDescription.parse(sdp).media[0])
    assert ssrcs == SignalledSsrcs(media=frozenset({1111}), rtx=frozenset({2222}))


def test_parse_candidate() -> None:
    line = "candidate:1 1 udp 2130706431 192.0.2.7 50000 typ host"
    c = parse_candidate(IceCandidate(line, "0", 0))
    assert c is not None and (c.ip, c.port, c.type, c.sdpMid) == ("192.0.2.7", 50000, "host", "0")
    assert parse_candidate(IceCandidate("a=" + line, None, None)).sdpMLineIndex == 0  # type: ignore[union-attr]
    assert parse_candidate(IceCandidate("", "0", 0)) is None
    assert parse_candidate(IceCandidate("a=end-of-candidates", None, None)) is None
    with pytest.raises(InvalidCandidate):
        parse_candidate(IceCandidate("candidate:1 1 udp", "0", 0))


async def test_candidate_gate_buffers_until_open() -> None:
    added: list[str] = []

    class FakePc:
        async def addIceCandidate(self, candidate: object) -> None:
            added.append(str(getattr(candidate, "ip", "")))

    gate = CandidateGate()
    first = parse_candidate(IceCandidate("candidate:1 1 udp 1 192.0.2.1 1 typ host", "0", 0))
    second = parse_candidate(IceCandidate("candidate:2 1 udp 1 192.0.2.2 2 typ host", "0", 0))
    assert first is not None and second is not None
    await gate.add([first])
    assert added == []
    await gate.open(FakePc())  # type: ignore[arg-type]
    await gate.add([second])
    assert added == ["192.0.2.1", "192.0.2.2"]


def test_early_candidates_expire() -> None:
    now = [0.0]
    early: EarlyCandidates[str] = EarlyCandidates(ttl=30, clock=lambda: now[0], max_per_key=2)
    c = parse_candidate(IceCandidate("candidate:1 1 udp 1 192.0.2.1 1 typ host", "0", 0))
    assert c is not None
    early.add("a", [c, c, c])
    assert len(early.take("a")) == 2 and early.take("a") == []
    early.add("b", [c])
    now[0] = 31.0
    assert early.take("b") == [] and len(early) == 0


def test_announce_address_rewrites_host_candidates_only() -> None:
    sdp = "\r\n".join(
        [
            "c=IN IP4 10.0.0.5",
            "a=candidate:1 1 udp 2130706431 10.0.0.5 40000 typ host",
            "a=candidate:2 1 udp 1694498815 198.51.100.1 40000 typ srflx raddr 10.0.0.5 rport 40000",
            "a=candidate:3 1 udp 2130706431 fe80::1 40001 typ host",
        ]
    )
    out = announce_address(sdp, "203.0.113.9").split("\r\n")
    assert out[0] == "c=IN IP4 203.0.113.9"
    assert out[1] == "a=candidate:1 1 udp 2130706431 203.0.113.9 40000 typ host"
    assert out[2:] == sdp.split("\r\n")[2:]
    assert announce_address(sdp, None) == sdp


def test_primary_ssrc_is_listed_before_rtx() -> None:
    section = [
        "m=video 9 UDP/TLS/RTP/SAVPF 96 97",
        "a=ssrc-group:FID 1111 2222",
        "a=ssrc:2222 cname:x",
        "a=ssrc:2222 msid:s t",
        "a=ssrc:1111 cname:x",
        "a=ssrc:1111 msid:s t",
    ]
    sdp = "\r\n".join(["v=0", "s=-", *section, "m=audio 9 UDP/TLS/RTP/SAVPF 111", "a=ssrc:3 cname:x", ""])
    media = SessionDescription.parse(primary_ssrc_first(sdp)).media
    assert [s.ssrc for s in media[0].ssrc] == [1111, 2222]
    assert [s.ssrc for s in media[1].ssrc] == [3]


def test_fast_start_replays_a_short_gop_to_a_joining_viewer_only() -> None:
    fanout = TrackFanout("video", ForwardedTrack("video", 1, lambda: None), fast_start_frames=3)
    frames = [packet(True, 0), packet(False, 3000), packet(False, 6000)]
    for frame in frames:
        fanout._keep_gop(frame)
    joined = ForwardedTrack("video", 10, lambda: None)
    fanout.add(joined, replay_gop=True)
    assert joined._queue.qsize() == 3 and not joined.waiting_for_keyframe
    unprimed = ForwardedTrack("video", 10, lambda: None)
    fanout.add(unprimed)
    assert unprimed._queue.qsize() == 0 and unprimed.waiting_for_keyframe
    # A GOP grown past the limit is not replayed: the joiner waits for a fresh keyframe.
    fanout._keep_gop(packet(False, 9000))
    late = ForwardedTrack("video", 10, lambda: None)
    fanout.add(late, replay_gop=True)
    assert late._queue.qsize() == 0 and late.waiting_for_keyframe
