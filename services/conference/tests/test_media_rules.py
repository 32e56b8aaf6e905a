"""Media rules on the pure aggregate and the node registry: no storage, no bus, a fake clock."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest
from parley_common.contracts.media import MediaNodeHeartbeat, Recording
from parley_conference import domain
from parley_conference.domain import Actor, Conference, EventContext
from parley_conference.placement import MediaNodes

T0 = datetime(2026, 1, 1, tzinfo=UTC)
_ids = itertools.count()


def ctx() -> EventContext:
    return EventContext(event_id=f"e{next(_ids)}", now=T0)


def conference_with(*streams: tuple[str, str, str]) -> Conference:
    """(endpoint, stream id, type) triples, each endpoint joined by user `u-<endpoint>`."""
    state = domain.create(
        domain.decide_create(
            organization_id="org",
            conference_id="c1",
            mode=None,
            creator="u",
            creator_endpoint=None,
            metadata={},
            ctx=ctx(),
        )
    )
    for endpoint, stream_id, stream_type in streams:
        actor = Actor(f"u-{endpoint}", endpoint)
        if state.participant(endpoint) is None:
            joined = domain.decide_join(state, actor, {}, ctx())
            assert joined is not None
            state = domain.evolve(state, joined)
        state = domain.evolve(
            state,
            domain.decide_publish_stream(
                state,
                actor,
                stream_id=stream_id,
                stream_type=stream_type,  # type: ignore[arg-type]
                metadata={},
                video_bitrate=None,
                ctx=ctx(),
            ),
        )
    return state


def test_viewing_needs_a_member_and_an_existing_stream() -> None:
    state = conference_with(("a", "s1", "CAM"))
    with pytest.raises(domain.NotAllowed):
        domain.check_view(state, Actor("u-b", "b"), "s1")  # b has not joined
    assert domain.check_view(state, Actor("u-a", "a"), "s1").id == "s1"
    with pytest.raises(domain.NotFound, match="stream nope not found"):
        domain.check_view(state, Actor("u-a", "a"), "nope")


def test_publisher_candidates_for_another_endpoints_stream_are_forbidden() -> None:
    state = conference_with(("a", "s1", "CAM"), ("b", "s2", "MIC"))
    with pytest.raises(domain.NotAllowed, match="not published by userEndpointId b"):
        domain.check_publisher_candidates(state, Actor("u-b", "b"), "s1")
    # Not committed yet (still negotiating): allowed through, the media node decides.
    assert domain.check_publisher_candidates(state, Actor("u-b", "b"), "s3") is None


def test_camera_stream_prefers_cam_over_mic_and_cam_and_refuses_audio_only() -> None:
    state = conference_with(("a", "both", "MIC_AND_CAM"), ("a", "cam", "CAM"), ("b", "mic", "MIC"))
    assert domain.camera_stream(state, "a").id == "cam"
    with pytest.raises(domain.NotFound, match="publishes no camera stream"):
        domain.camera_stream(state, "b")
    with pytest.raises(domain.NotFound):
        domain.camera_stream(state, "nobody")


def test_recorder_is_on_only_for_the_documented_value() -> None:
    state = conference_with(("e", "s1", "MIC"))
    assert not domain.recorder_on(state)
    for value, on in [('{"on":true}', True), ('{"on":false}', False), ("yes", False), ('{"on":1}', False)]:
        event = domain.decide_update_metadata(
            state,
            Actor("u-e", "e"),
            key="RECORDER",
            operation="SET",
            value=value,
            ctx=ctx(),
        )
        assert event is not None
        assert domain.recorder_on(domain.evolve(state, event)) is on


def test_recordings_are_listed_once_each_even_after_the_end() -> None:
    state = conference_with(("a", "s1", "CAM"))
    state = domain.evolve(state, domain.decide_end(state, Actor("u-a", "a"), None, ctx()))
    recording = Recording(
        recording_id="r1",
        stream_id="s1",
        mime_type="video/webm",
        bytes=10,
        duration_seconds=1.5,
        started_at=T0,
        url="/rtc-api/conferences/c1/recordings/r1",
    )
    event = domain.decide_add_recording(state, recording, ctx())
    assert event is not None and event.key == "RECORDINGS"
    state = domain.evolve(state, event)
    assert domain.recordings(state) == [recording]
    assert domain.decide_add_recording(state, recording, ctx()) is None


def test_clients_cannot_write_the_recordings_list() -> None:
    state = conference_with(("a", "s1", "CAM"))
    with pytest.raises(domain.NotAllowed, match="read-only"):
        domain.decide_update_metadata(
            state, Actor("u-a", "a"), key="RECORDINGS", operation="SET", value="[]", ctx=ctx()
        )


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def heartbeat(
    node: str, publishers: int = 0, started: datetime = T0, capacity: int = 0
) -> MediaNodeHeartbeat:
    return MediaNodeHeartbeat(
        node_id=node, started_at=started, publishers=publishers, viewers=0, capacity=capacity
    )


def test_nodes_are_chosen_by_load_and_placements_count_until_the_next_heartbeat() -> None:
    clock = Clock()
    nodes = MediaNodes(timeout_seconds=5, clock=clock)
    assert nodes.choose() is None
    nodes.heard(heartbeat("n1", publishers=3))
    nodes.heard(heartbeat("n2", publishers=1))
    chosen = [getattr(nodes.choose(), "node_id", None) for _ in range(4)]
    assert chosen == ["n2", "n2", "n1", "n2"]  # n2: 1, 2, then 3 ties with n1 (id order), ...
    nodes.heard(heartbeat("n1", publishers=0, capacity=1))
    assert getattr(nodes.choose(), "node_id", None) == "n1"
    nodes.heard(heartbeat("n1", publishers=1, capacity=1))
    assert getattr(nodes.choose(), "node_id", None) == "n2"  # n1 is full


def test_a_node_is_lost_when_silent_past_the_timeout_or_restarted() -> None:
    clock = Clock()
    nodes = MediaNodes(timeout_seconds=5, clock=clock)
    incarnation = T0.isoformat()
    # Never heard since this replica started: not judged before a full timeout.
    assert not nodes.lost("n1", incarnation)
    nodes.heard(heartbeat("n1"))
    clock.now += 4
    assert not nodes.lost("n1", incarnation) and nodes.alive("n1") is not None
    clock.now += 2
    assert nodes.lost("n1", incarnation) and nodes.alive("n1") is None
    nodes.heard(heartbeat("n1", started=T0 + timedelta(seconds=30)))
    assert nodes.lost("n1", incarnation)  # restarted: what it held is gone
    assert not nodes.lost("n1", (T0 + timedelta(seconds=30)).isoformat())
