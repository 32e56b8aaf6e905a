"""The conference rules, on the pure aggregate: no storage, no bus."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest
from parley_common.contracts import conference as api
from parley_conference import domain
from parley_conference.domain import Actor, Conference, EventContext

T0 = datetime(2026, 1, 1, tzinfo=UTC)
_ids = itertools.count()


def ctx(at: datetime = T0) -> EventContext:
    return EventContext(event_id=f"e{next(_ids)}", now=at)


def new_conference(**overrides: object) -> Conference:
    event = domain.decide_create(
        organization_id="org",
        conference_id="c1",
        mode=None,
        creator="creator",
        creator_endpoint=None,
        metadata={"topic": "claims"},
        ctx=ctx(),
    )
    return domain.create(event)


def joined(conference: Conference, user: str, endpoint: str, at: datetime = T0) -> Conference:
    event = domain.decide_join(conference, Actor(user, endpoint), {"roles": ["AGENT"]}, ctx(at))
    assert event is not None
    return domain.evolve(conference, event)


def test_create_defaults_to_router_with_version_zero_and_stores_metadata_entries() -> None:
    event = domain.decide_create(
        organization_id="org",
        conference_id="c1",
        mode=None,
        creator="u",
        creator_endpoint="ep",
        metadata={"k": "v"},
        ctx=ctx(),
    )
    assert event.conference_version is None
    state = domain.create(event)
    assert (state.version, state.mode, state.empty) == (0, "ROUTER", True)
    assert state.metadata["k"] == api.Metadata(
        value="v", last_modified=T0, user_endpoint_id="ep", user_id="u"
    )


@pytest.mark.parametrize("mode", ["P2P", "UNKNOWN", "router"])
def test_create_rejects_every_mode_but_router(mode: str) -> None:
    with pytest.raises(domain.InvalidCommand, match="only ROUTER is supported"):
        domain.decide_create(
            organization_id="o",
            conference_id="c",
            mode=mode,
            creator="u",
            creator_endpoint=None,
            metadata={},
            ctx=ctx(),
        )


@pytest.mark.parametrize("conference_id", ["", "   ", "a\nb", "x" * 257])
def test_create_rejects_unusable_ids(conference_id: str) -> None:
    with pytest.raises(domain.InvalidCommand):
        domain.validate_conference_id(conference_id)


def test_each_change_raises_the_version_by_one_and_events_carry_the_version_before() -> None:
    c = new_conference()
    e1 = domain.decide_join(c, Actor("alice", "a1"), {}, ctx())
    assert e1 is not None and e1.conference_version == 0
    c = domain.evolve(c, e1)
    e2 = domain.decide_update_metadata(
        c, Actor("alice", "a1"), key="ON_HOLD", operation="SET", value="1", ctx=ctx()
    )
    assert e2 is not None and e2.conference_version == 1
    c = domain.evolve(c, e2)
    assert c.version == 2


def test_evolve_refuses_an_event_for_another_version() -> None:
    c = new_conference()
    event = domain.decide_join(c, Actor("alice", "a1"), {}, ctx())
    assert event is not None
    c = domain.evolve(c, event)
    with pytest.raises(ValueError, match="does not apply"):
        domain.evolve(c, event)


def test_join_twice_is_idempotent_and_an_endpoint_of_another_user_conflicts() -> None:
    c = joined(new_conference(), "alice", "a1")
    assert domain.decide_join(c, Actor("alice", "a1"), {}, ctx()) is None
    with pytest.raises(domain.Conflict, match="belongs to another user"):
        domain.decide_join(c, Actor("bob", "a1"), {}, ctx())


def test_commands_from_an_endpoint_that_has_not_joined_are_forbidden() -> None:
    c = joined(new_conference(), "alice", "a1")
    with pytest.raises(domain.NotAllowed):
        domain.decide_leave(c, Actor("bob", "b1"), None, ctx())
    with pytest.raises(domain.NotAllowed):
        # alice's endpoint, but claimed by bob
        domain.decide_update_participant_metadata(c, Actor("bob", "a1"), {}, ctx())


def test_leave_removes_the_endpoint_and_empties_the_conference() -> None:
    c = joined(new_conference(), "alice", "a1", T0)
    assert c.empty_since is None
    later = T0 + timedelta(seconds=5)
    event = domain.decide_leave(c, Actor("alice", "a1"), "bye", ctx(later))
    c = domain.evolve(c, event)
    assert c.empty and c.empty_since == later
    assert event.reason == "bye"


def test_end_closes_the_conference_for_everyone_and_later_commands_conflict() -> None:
    c = joined(joined(new_conference(), "alice", "a1"), "bob", "b1")
    event = domain.decide_end(c, Actor("alice", "a1"), "done", ctx())
    c = domain.evolve(c, event)
    assert c.ended and c.participants == () and c.end_reason == "done"
    for attempt in (
        lambda: domain.decide_join(c, Actor("carol", "c1"), {}, ctx()),
        lambda: domain.decide_leave(c, Actor("alice", "a1"), None, ctx()),
        lambda: domain.decide_end(c, Actor("alice", "a1"), None, ctx()),
    ):
        with pytest.raises(domain.ConferenceHasEnded, match="conference has ended"):
            attempt()


def test_only_a_joined_endpoint_may_end_even_the_creators_own_conference() -> None:
    c = new_conference()
    with pytest.raises(domain.NotAllowed):
        domain.decide_end(c, Actor("creator", "any"), None, ctx())
    c = joined(c, "creator", "c-1")
    assert isinstance(domain.decide_end(c, Actor("creator", "c-1"), None, ctx()), api.ConferenceEndedEvent)


def test_metadata_set_requires_a_value_and_remove_of_a_missing_key_changes_nothing() -> None:
    c = joined(new_conference(), "alice", "a1")
    with pytest.raises(domain.InvalidCommand, match="value is required"):
        domain.decide_update_metadata(
            c, Actor("alice", "a1"), key="k", operation="SET", value=None, ctx=ctx()
        )
    assert (
        domain.decide_update_metadata(
            c, Actor("alice", "a1"), key="nope", operation="REMOVE", value=None, ctx=ctx()
        )
        is None
    )
    removed = domain.decide_update_metadata(
        c, Actor("alice", "a1"), key="topic", operation="REMOVE", value="x", ctx=ctx()
    )
    assert removed is not None and removed.value is None
    assert "topic" not in domain.evolve(c, removed).metadata


def test_metadata_set_records_who_and_when() -> None:
    c = joined(new_conference(), "alice", "a1")
    at = T0 + timedelta(minutes=1)
    event = domain.decide_update_metadata(
        c, Actor("alice", "a1"), key="RECORDER", operation="SET", value='{"on":true}', ctx=ctx(at)
    )
    assert event is not None
    entry = domain.evolve(c, event).metadata["RECORDER"]
    assert (entry.value, entry.last_modified, entry.user_endpoint_id, entry.user_id) == (
        '{"on":true}',
        at,
        "a1",
        "alice",
    )


def test_participant_metadata_is_replaced() -> None:
    c = joined(new_conference(), "alice", "a1")
    event = domain.decide_update_participant_metadata(c, Actor("alice", "a1"), {"name": "Alice"}, ctx())
    participant = domain.evolve(c, event).participant("a1")
    assert participant is not None and participant.metadata == {"name": "Alice"}


def test_empty_conference_ends_only_after_the_timeout() -> None:
    c = new_conference()
    assert (
        domain.decide_end_if_empty(c, now=T0 + timedelta(seconds=299), timeout_seconds=300, ctx=ctx()) is None
    )
    event = domain.decide_end_if_empty(c, now=T0 + timedelta(seconds=300), timeout_seconds=300, ctx=ctx())
    assert event is not None and event.reason == "EMPTY_TIMEOUT" and event.user_id is None
    occupied = joined(c, "alice", "a1")
    assert (
        domain.decide_end_if_empty(occupied, now=T0 + timedelta(days=1), timeout_seconds=300, ctx=ctx())
        is None
    )


def test_timeout_removes_the_endpoint_with_reason_timeout() -> None:
    c = joined(new_conference(), "alice", "a1")
    event = domain.decide_timeout(c, "a1", ctx())
    assert event is not None and event.reason == "TIMEOUT" and event.user_endpoint_id == "a1"
    assert domain.decide_timeout(domain.evolve(c, event), "a1", ctx()) is None


def test_streams_are_modelled_per_endpoint_with_unique_ids() -> None:
    c = joined(joined(new_conference(), "alice", "a1"), "bob", "b1")
    alice = Actor("alice", "a1")
    published = domain.decide_publish_stream(
        c, alice, stream_id="s1", stream_type="CAM", metadata={}, video_bitrate=None, ctx=ctx()
    )
    c = domain.evolve(c, published)
    with pytest.raises(domain.Conflict):
        domain.decide_publish_stream(
            c,
            Actor("bob", "b1"),
            stream_id="s1",
            stream_type="MIC",
            metadata={},
            video_bitrate=None,
            ctx=ctx(),
        )
    with pytest.raises(domain.NotAllowed):
        domain.decide_unpublish_stream(c, Actor("bob", "b1"), "s1", None, ctx())
    with pytest.raises(domain.NotFound):
        domain.decide_unpublish_stream(c, alice, "nope", None, ctx())
    c = domain.evolve(c, domain.decide_update_stream_bitrate(c, alice, "s1", 300_000, ctx()))
    c = domain.evolve(c, domain.decide_update_stream_metadata(c, alice, "s1", {"muted": True}, ctx()))
    found = c.stream("s1")
    assert found is not None and found[1].video_bitrate == 300_000 and found[1].metadata == {"muted": True}
    c = domain.evolve(c, domain.decide_unpublish_stream(c, alice, "s1", None, ctx()))
    assert c.stream("s1") is None


def test_leaving_takes_the_endpoints_streams_with_it() -> None:
    c = joined(new_conference(), "alice", "a1")
    alice = Actor("alice", "a1")
    c = domain.evolve(
        c,
        domain.decide_publish_stream(
            c, alice, stream_id="s1", stream_type="CAM", metadata={}, video_bitrate=None, ctx=ctx()
        ),
    )
    c = domain.evolve(c, domain.decide_leave(c, alice, None, ctx()))
    assert c.stream("s1") is None
