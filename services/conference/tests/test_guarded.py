"""Guarded conferences (room meetings): admission kept by the aggregate, ends and removals by a service."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import msgspec
import pytest
from parley_common.contracts import conference as api
from parley_conference import domain, views
from parley_conference.domain import Actor, Conference, EventContext
from parley_conference.presence import Presence

T0 = datetime(2026, 1, 1, tzinfo=UTC)
GUARD = api.Admission(subject="parley.qry.chat.admit", resource="room-1")
CHAT = Actor("chat", "chat", service=True)
_ids = itertools.count()


def ctx(at: datetime = T0) -> EventContext:
    return EventContext(event_id=f"e{next(_ids)}", now=at)


def created(admission: api.Admission | None = GUARD) -> api.ConferenceCreatedEvent:
    return domain.decide_create(
        organization_id="org",
        conference_id="meeting-1",
        mode=None,
        creator="alice",
        creator_endpoint=None,
        metadata={"roomId": "room-1"},
        ctx=ctx(),
        admission=admission,
    )


def joined(conference: Conference, user: str, endpoint: str, at: datetime = T0) -> Conference:
    event = domain.decide_join(conference, Actor(user, endpoint), {}, ctx(at))
    assert event is not None
    return domain.evolve(conference, event)


def test_guarded_creation_stores_the_admission_in_the_event_and_the_state() -> None:
    event = created()
    assert event.admission == GUARD
    state = domain.create(event)
    assert state.guarded and state.admission == GUARD
    assert not domain.create(created(admission=None)).guarded


def test_the_admission_survives_the_event_log_and_the_snapshot() -> None:
    event = created()
    logged = msgspec.json.decode(msgspec.json.encode(event), type=api.AnyConferenceEvent)
    assert isinstance(logged, api.ConferenceCreatedEvent) and logged.admission == GUARD
    state = joined(domain.create(logged), "bob", "b1")
    snapshot = msgspec.convert(msgspec.to_builtins(state), Conference)
    assert snapshot.admission == GUARD


def test_a_creation_event_logged_before_guards_loads_unguarded() -> None:
    old = msgspec.to_builtins(created(admission=None))
    del old["admission"]  # what events written before guarded conferences look like
    event = msgspec.convert(old, api.AnyConferenceEvent)
    assert isinstance(event, api.ConferenceCreatedEvent)
    assert not domain.create(event).guarded
    snapshot = msgspec.to_builtins(domain.create(event))
    del snapshot["admission"]
    assert msgspec.convert(snapshot, Conference).admission is None


@pytest.mark.parametrize("subject", ["", "parley.qry.>", "a.*.b", "a b", "a..b", ".a"])
def test_an_admission_subject_must_be_one_to_send_requests_to(subject: str) -> None:
    body = {"conferenceId": "m", "admission": {"subject": subject, "resource": "r"}}
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert(body, api.CreateGuardedConference)


def test_a_service_ends_a_conference_it_has_not_joined() -> None:
    c = joined(domain.create(created()), "bob", "b1")
    event = domain.decide_end(c, CHAT, "ROOM_DELETED", ctx())
    assert (event.user_id, event.user_endpoint_id, event.reason) == ("chat", None, "ROOM_DELETED")
    ended = domain.evolve(c, event)
    assert ended.ended and ended.empty
    with pytest.raises(domain.ConferenceHasEnded):
        domain.decide_end(ended, CHAT, None, ctx())


def test_a_user_who_has_not_joined_still_cannot_end_it() -> None:
    c = joined(domain.create(created()), "bob", "b1")
    with pytest.raises(domain.NotAllowed):
        domain.decide_end(c, Actor("mallory", "m1"), None, ctx())


def test_a_service_removes_each_endpoint_of_a_user_one_event_at_a_time() -> None:
    c = joined(joined(joined(domain.create(created()), "bob", "b1"), "bob", "b2"), "carol", "c1")
    for _ in range(2):
        event = domain.decide_remove(c, CHAT, "bob", None, ctx())
        assert event is not None and event.reason == domain.REMOVED and event.user_id == "bob"
        c = domain.evolve(c, event)
    assert domain.decide_remove(c, CHAT, "bob", None, ctx()) is None
    assert [p.user_id for p in c.participants] == ["carol"]


def test_only_a_service_removes_participants() -> None:
    c = joined(domain.create(created()), "bob", "b1")
    with pytest.raises(domain.NotAllowed):
        domain.decide_remove(c, Actor("carol", "c1"), "bob", None, ctx())


def test_the_view_gives_each_participant_its_join_time() -> None:
    later = T0 + timedelta(seconds=42)
    c = joined(domain.create(created()), "bob", "b1", at=later)
    view = views.conference_view(c, Presence(keepalive_seconds=30, grace_seconds=120))
    assert view.participants[0].joined_at == later
    assert msgspec.to_builtins(view)["participants"][0]["joinedAt"] == "2026-01-01T00:00:42Z"
