"""Meeting grants on the conference aggregate: one conference, one role (subscriber, publisher, moderator)."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime

import pytest
from parley_common.contracts import conference as api
from parley_common.contracts.meeting import MeetingGrant, MeetingRole
from parley_common.contracts.rpc import Caller, Rejected, Request
from parley_conference import domain
from parley_conference.domain import Actor, Conference, EventContext
from parley_conference.handlers import rejecting

T0 = datetime(2026, 1, 1, tzinfo=UTC)
_ids = itertools.count()


def ctx() -> EventContext:
    return EventContext(event_id=f"e{next(_ids)}", now=T0)


def grant(role: MeetingRole, conference_id: str = "c1", *, lobby: bool = False) -> MeetingGrant:
    return MeetingGrant(meeting_id="m1", conference_id=conference_id, role=role, lobby=lobby)


def conference() -> Conference:
    event = domain.decide_create(
        organization_id="org",
        conference_id="c1",
        mode=None,
        creator="creator",
        creator_endpoint=None,
        metadata={},
        ctx=ctx(),
        meeting_id="m1",
    )
    return domain.create(event)


def join(c: Conference, actor: Actor) -> Conference:
    event = domain.decide_join(c, actor, {}, ctx())
    assert event is not None
    return domain.evolve(c, event)


def publish(c: Conference, actor: Actor) -> api.ConferenceStreamPublishedEvent:
    return domain.decide_publish_stream(
        c, actor, stream_id="s1", stream_type="CAM", metadata={}, video_bitrate=None, ctx=ctx()
    )


def test_a_join_records_the_grant_on_the_event_and_the_participant() -> None:
    actor = Actor("u1", "e1", grant=grant("publisher"))
    event = domain.decide_join(conference(), actor, {}, ctx())
    assert isinstance(event, api.ConferenceJoinedEvent) and event.grant == grant("publisher")
    participant = domain.evolve(conference(), event).participant("e1")
    assert participant is not None and participant.grant == grant("publisher")


def test_a_grant_for_another_conference_cannot_join_it() -> None:
    with pytest.raises(domain.NotAllowed, match="not valid for conference c1"):
        domain.decide_join(conference(), Actor("u1", "e1", grant=grant("moderator", "c2")), {}, ctx())


def test_check_grant_refuses_another_conference_and_lets_the_own_one_and_no_grant_through() -> None:
    with pytest.raises(domain.NotAllowed):
        domain.check_grant(grant("moderator", "c2"), "c1")
    domain.check_grant(grant("moderator"), "c1")
    domain.check_grant(None, "c1")
    domain.check_grant(grant("moderator"), None)  # no conference named (the push channel's query)


async def test_every_use_case_refuses_a_grant_for_another_conference_with_403() -> None:
    # The one wrapper every conference and media use case wears: the body names another conference.
    ran: list[str] = []

    class Handlers:
        @rejecting
        async def anything(self, request: Request[api.GetConferenceQuery]) -> Rejected:
            ran.append(request.body.conference_id)
            return Rejected.bad_request("unreachable")

    caller = Caller(organization_id="org", user_id="u1", request_id="r", grant=grant("moderator", "c2"))
    reply = await Handlers().anything(Request(caller=caller, body=api.GetConferenceQuery(conference_id="c1")))
    assert isinstance(reply, Rejected)
    assert (reply.status, reply.message) == (403, "this meeting token is not valid for conference c1")
    assert ran == []


def test_a_subscriber_may_not_publish() -> None:
    actor = Actor("u1", "e1", grant=grant("subscriber"))
    c = join(conference(), actor)
    with pytest.raises(domain.NotAllowed, match="a subscriber may not publish"):
        publish(c, actor)


@pytest.mark.parametrize("role", ["publisher", "moderator"])
def test_a_publisher_or_moderator_publishes(role: MeetingRole) -> None:
    actor = Actor("u1", "e1", grant=grant(role))
    assert publish(join(conference(), actor), actor).stream_id == "s1"


def test_without_a_grant_publishing_keeps_todays_rules() -> None:
    actor = Actor("u1", "e1")
    assert publish(join(conference(), actor), actor).stream_id == "s1"


@pytest.mark.parametrize("role", ["subscriber", "publisher"])
def test_only_a_moderator_ends_the_conference(role: MeetingRole) -> None:
    actor = Actor("u1", "e1", grant=grant(role))
    with pytest.raises(domain.NotAllowed, match="only a moderator may end the conference"):
        domain.decide_end(join(conference(), actor), actor, None, ctx())


def test_a_moderator_ends_it_and_a_user_without_a_grant_still_does() -> None:
    moderator = Actor("u1", "e1", grant=grant("moderator"))
    assert domain.decide_end(join(conference(), moderator), moderator, None, ctx()).reason is None
    plain = Actor("u2", "e2")
    assert domain.decide_end(join(conference(), plain), plain, "done", ctx()).reason == "done"
