"""The lobby on the conference aggregate: a guest's join waits until a moderator admits or rejects it."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import msgspec
import pytest
from parley_common.contracts import conference as api
from parley_common.contracts.meeting import MeetingGrant
from parley_conference import domain, views
from parley_conference.domain import Actor, Conference, EventContext
from parley_conference.memberships import Memberships
from parley_conference.presence import Presence

T0 = datetime(2026, 1, 1, tzinfo=UTC)
_ids = itertools.count()
HOST = Actor("host", "h1", grant=MeetingGrant(meeting_id="m1", conference_id="c1", role="moderator"))
GUEST_GRANT = MeetingGrant(meeting_id="m1", conference_id="c1", role="publisher", lobby=True)
GUEST = Actor("guest", "g1", grant=GUEST_GRANT)
OTHER_GUEST = Actor("guest2", "g2", grant=GUEST_GRANT)


def ctx(at: datetime = T0) -> EventContext:
    return EventContext(event_id=f"e{next(_ids)}", now=at)


def conference() -> Conference:
    event = domain.decide_create(
        organization_id="org",
        conference_id="c1",
        mode=None,
        creator="host",
        creator_endpoint=None,
        metadata={},
        ctx=ctx(),
        meeting_id="m1",
    )
    return domain.create(event)


def apply(c: Conference, event: api.AnyConferenceEvent | None) -> Conference:
    assert event is not None
    return domain.evolve(c, event)


def with_host_and_waiting_guest() -> Conference:
    c = apply(conference(), domain.decide_join(conference(), HOST, {}, ctx()))
    return apply(c, domain.decide_join(c, GUEST, {"name": "Gus"}, ctx()))


def test_a_host_goes_straight_in() -> None:
    event = domain.decide_join(conference(), HOST, {}, ctx())
    assert isinstance(event, api.ConferenceJoinedEvent)


def test_a_guest_join_waits_in_the_lobby_not_among_the_participants() -> None:
    c = apply(conference(), domain.decide_join(conference(), HOST, {}, ctx()))
    event = domain.decide_join(c, GUEST, {"name": "Gus"}, ctx(T0 + timedelta(seconds=1)))
    assert isinstance(event, api.ConferenceLobbyEnteredEvent)
    assert (event.user_endpoint_id, event.grant) == ("g1", GUEST_GRANT)
    c = domain.evolve(c, event)
    assert c.participant("g1") is None
    assert c.lobby == (
        domain.Waiting(
            endpoint_id="g1",
            user_id="guest",
            since=T0 + timedelta(seconds=1),
            metadata={"name": "Gus"},
            grant=GUEST_GRANT,
        ),
    )
    assert domain.is_waiting(c, "g1")
    assert domain.decide_join(c, GUEST, {}, ctx()) is None  # knocking twice changes nothing
    view = views.conference_view(c, Presence(keepalive_seconds=10, grace_seconds=30))
    assert [(w.id, w.user_id, w.grant) for w in view.lobby] == [("g1", "guest", GUEST_GRANT)]
    assert [p.id for p in view.participants] == ["h1"]


def test_a_waiting_endpoint_may_neither_publish_nor_view() -> None:
    c = with_host_and_waiting_guest()
    c = apply(
        c,
        domain.decide_publish_stream(
            c, HOST, stream_id="s1", stream_type="CAM", metadata={}, video_bitrate=None, ctx=ctx()
        ),
    )
    with pytest.raises(domain.NotAllowed, match="g1 is waiting in the lobby of conference c1"):
        domain.decide_publish_stream(
            c, GUEST, stream_id="s2", stream_type="CAM", metadata={}, video_bitrate=None, ctx=ctx()
        )
    with pytest.raises(domain.NotAllowed, match="waiting in the lobby"):
        domain.check_view(c, GUEST, "s1")


def test_a_moderator_admits_a_waiting_endpoint_which_then_is_a_participant() -> None:
    c = with_host_and_waiting_guest()
    event = domain.decide_admit(c, HOST, "g1", ctx(T0 + timedelta(seconds=5)))
    assert (event.user_endpoint_id, event.lobby_endpoint_id, event.lobby_user_id) == ("h1", "g1", "guest")
    c = domain.evolve(c, event)
    assert c.lobby == ()
    participant = c.participant("g1")
    assert participant is not None
    assert (participant.user_id, participant.grant, participant.metadata) == (
        "guest",
        GUEST_GRANT,
        {"name": "Gus"},
    )
    assert participant.joined_at == T0 + timedelta(seconds=5)
    # Let in, it views and publishes like any publisher.
    domain.decide_publish_stream(
        c, GUEST, stream_id="s2", stream_type="CAM", metadata={}, video_bitrate=None, ctx=ctx()
    )


def test_a_moderator_rejects_and_the_rejected_endpoint_may_knock_again() -> None:
    c = with_host_and_waiting_guest()
    event = domain.decide_reject(c, HOST, "g1", "not today", ctx())
    assert (event.lobby_endpoint_id, event.reason) == ("g1", "not today")
    c = domain.evolve(c, event)
    assert c.lobby == () and c.participant("g1") is None
    assert isinstance(domain.decide_join(c, GUEST, {}, ctx()), api.ConferenceLobbyEnteredEvent)


@pytest.mark.parametrize("decide", ["admit", "reject"])
def test_only_a_moderator_in_the_call_admits_or_rejects(decide: str) -> None:
    publisher = Actor("pub", "p1", grant=MeetingGrant(meeting_id="m1", conference_id="c1", role="publisher"))
    c = with_host_and_waiting_guest()
    c = apply(c, domain.decide_join(c, publisher, {}, ctx()))
    c = apply(c, domain.decide_join(c, OTHER_GUEST, {}, ctx()))

    def run(actor: Actor, endpoint: str = "g1") -> object:
        if decide == "admit":
            return domain.decide_admit(c, actor, endpoint, ctx())
        return domain.decide_reject(c, actor, endpoint, None, ctx())

    with pytest.raises(domain.NotAllowed, match="only a moderator"):
        run(publisher)
    with pytest.raises(domain.NotAllowed, match="waiting in the lobby"):
        run(OTHER_GUEST)  # a waiting guest does not let another in
    absent = Actor("host", "h9", grant=HOST.grant)
    with pytest.raises(domain.NotAllowed, match="has not joined"):
        run(absent)
    with pytest.raises(domain.NotFound, match="nobody is not waiting in the lobby of conference c1"):
        run(HOST, "nobody")
    # A conference API user (no grant) who has joined runs the call too.
    plain = Actor("agent", "a1")
    c = apply(c, domain.decide_join(c, plain, {}, ctx()))
    assert run(plain) is not None


def test_a_waiting_endpoint_that_leaves_is_rejected_with_reason_left() -> None:
    c = with_host_and_waiting_guest()
    event = domain.decide_leave(c, GUEST, None, ctx())
    assert isinstance(event, api.ConferenceLobbyRejectedEvent)
    assert (event.user_endpoint_id, event.lobby_endpoint_id, event.reason) == ("g1", "g1", domain.LEFT)
    assert domain.evolve(c, event).lobby == ()


def test_keep_alive_applies_to_waiting_endpoints() -> None:
    c = with_host_and_waiting_guest()
    event = domain.decide_timeout(c, "g1", ctx())
    assert isinstance(event, api.ConferenceLobbyRejectedEvent)
    assert (event.lobby_endpoint_id, event.reason) == ("g1", domain.KEEPALIVE_TIMEOUT)
    assert domain.evolve(c, event).lobby == ()


def test_the_end_empties_the_lobby() -> None:
    c = with_host_and_waiting_guest()
    c = apply(c, domain.decide_end(c, HOST, None, ctx()))
    assert c.lobby == ()


def test_the_lobby_survives_the_event_log_and_the_snapshot() -> None:
    c = with_host_and_waiting_guest()
    snapshot = msgspec.convert(msgspec.to_builtins(c), Conference)
    assert snapshot.lobby == c.lobby
    entered = msgspec.json.decode(
        msgspec.json.encode(domain.decide_join(conference(), GUEST, {}, ctx())), type=api.AnyConferenceEvent
    )
    assert isinstance(entered, api.ConferenceLobbyEnteredEvent) and entered.grant == GUEST_GRANT


def test_an_admitted_endpoint_is_a_member_for_the_push_channel() -> None:
    memberships = Memberships()
    c = with_host_and_waiting_guest()
    memberships.apply(domain.decide_join(conference(), HOST, {}, ctx()))  # type: ignore[arg-type]
    memberships.apply(domain.decide_join(c, OTHER_GUEST, {}, ctx()))  # type: ignore[arg-type]
    assert memberships.conferences_of("org", "g2") == []  # waiting: not a member
    memberships.apply(domain.decide_admit(c, HOST, "g1", ctx()))
    assert memberships.conferences_of("org", "g1") == ["c1"]
