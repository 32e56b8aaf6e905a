"""Attendance of a meeting: from real joins and leaves through the conference bus, from its events
(a grant's attendee key, redelivery, the end), and from the Vonage-shaped webhook; another organization and
an unknown meeting get 404. The conference service in this process on a real nats-server and SQLite."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest
from parley_common.clock import new_id
from parley_common.contracts.base import Empty
from parley_common.contracts.conference import (
    ConferenceEndedEvent,
    ConferenceJoinedEvent,
    JoinConferenceWebCommand,
    LeaveConferenceWebCommand,
)
from parley_common.contracts.meeting import (
    AttendanceWebhook,
    Attendees,
    AttendeeView,
    Dialect,
    ListAttendees,
    MeetingGrant,
    ProviderConnection,
)
from parley_common.contracts.rpc import Rejected
from parley_common.messaging import subjects
from parley_common.messaging.codec import encode
from parley_common.messaging.streams import MEETING_STREAM

from .conftest import Service, caller, eventually, not_rejected

pytestmark = pytest.mark.timeout(60)


async def attendees(
    service: Service,
    meeting_id: str,
    *,
    active_only: bool = False,
    organization_id: str = "org-a",
    dialect: Dialect = "sourcefuse",
) -> Any:
    return await service.ask(
        subjects.meeting_query("listAttendees"),
        caller(organization_id),
        ListAttendees(dialect=dialect, meeting_id=meeting_id, active_only=active_only),
        Attendees,
    )


async def until(service: Service, meeting_id: str, check: Any) -> tuple[AttendeeView, ...]:
    async def attendance_settled() -> list[tuple[AttendeeView, ...]] | None:
        reply = await attendees(service, meeting_id)
        if isinstance(reply, Rejected):  # the meeting's creation not consumed yet
            return None
        items: tuple[AttendeeView, ...] = reply.value.items
        return [items] if check(items) else None  # a list: truthy even when no attendee is listed

    found: list[tuple[AttendeeView, ...]] = await eventually(attendance_settled)
    return found[0]


async def meeting_events(service: Service, meeting_id: str) -> list[str]:
    """The types of `meeting_id`'s attendee events in PARLEY_MEETING, in stream order."""
    js = service.nc.jetstream()
    info = await js.stream_info(MEETING_STREAM)
    found = []
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        event = msgspec.json.decode((await js.get_msg(MEETING_STREAM, seq)).data or b"{}")
        if event.get("meetingId") == meeting_id and event["type"].startswith("Attendee"):
            found.append(event["type"])
    return found


async def publish(service: Service, event: Any) -> None:
    # A plain publish (the replicas subscribe to conference events too), its id as the dedup id.
    await service.nc.publish(
        subjects.conference_event(type(event).__name__), encode(event), headers={"Nats-Msg-Id": event.id}
    )
    await service.nc.flush()


async def test_a_join_and_leave_with_a_meeting_grant(service: Service) -> None:
    meet_1, conference_id = await service.create_meeting("org-a")
    grant = MeetingGrant(meeting_id=meet_1, conference_id=conference_id, role="publisher")
    alice = caller(user_id="alice", grant=grant)
    join = JoinConferenceWebCommand(conference_id=conference_id, user_endpoint_id="alice-ep")
    not_rejected(await service.ask(subjects.conference_command("join"), alice, join, Empty))

    present = await until(service, meet_1, lambda items: len(items) == 1)
    assert (present[0].attendee, present[0].is_deleted, present[0].conference_id) == (
        "alice",
        False,
        conference_id,
    )
    active = not_rejected(await attendees(service, meet_1, active_only=True)).items
    assert [a.attendee for a in active] == ["alice"]

    leave = LeaveConferenceWebCommand(conference_id=conference_id, user_endpoint_id="alice-ep")
    not_rejected(await service.ask(subjects.conference_command("leave"), alice, leave, Empty))

    gone = await until(service, meet_1, lambda items: items and items[0].is_deleted)
    assert gone[0].modified_on is not None
    assert not_rejected(await attendees(service, meet_1, active_only=True)).items == ()

    async def both_published() -> list[str] | None:
        types = await meeting_events(service, meet_1)
        return types if len(types) == 2 else None

    assert await eventually(both_published) == ["AttendeeJoinedEvent", "AttendeeLeftEvent"]


async def test_another_organization_dialect_or_an_unknown_meeting_is_not_found(service: Service) -> None:
    meet_2, _ = await service.create_meeting("org-a")
    await until(service, meet_2, lambda items: True)  # known to its own organization
    cases: list[tuple[str, str, Dialect]] = [
        ("org-b", meet_2, "sourcefuse"),
        ("org-a", "no-such-meeting", "sourcefuse"),
        ("org-a", meet_2, "coviu"),  # a meeting is seen by its own dialect only
    ]
    for organization_id, meeting_id, dialect in cases:
        reply = await attendees(service, meeting_id, organization_id=organization_id, dialect=dialect)
        assert isinstance(reply, Rejected)
        assert (reply.status, reply.message) == (404, "Meeting Not Found")


async def test_the_grant_keys_the_attendee_redelivery_changes_nothing_and_the_end_marks_all_gone(
    service: Service,
) -> None:
    meet_3, conference_id = await service.create_meeting("org-a")
    grant = MeetingGrant(meeting_id=meet_3, conference_id=conference_id, role="publisher", attendee="data-7")
    now = datetime.now(UTC)

    def joined(endpoint: str) -> ConferenceJoinedEvent:
        return ConferenceJoinedEvent(
            id=new_id(),
            conference_id=conference_id,
            conference_version=1,
            organization_id="org-a",
            timestamp=now,
            user_endpoint_id=endpoint,
            user_id="bob",
            grant=grant,
        )

    first = joined("bob-ep-1")
    await publish(service, first)
    # The same join delivered again (another message id: not deduplicated by the stream), and a second
    # endpoint of the same attendee.
    await publish(service, msgspec.structs.replace(first, id=new_id()))
    await publish(service, joined("bob-ep-2"))
    await publish(
        service,
        ConferenceEndedEvent(
            id=new_id(),
            conference_id=conference_id,
            conference_version=3,
            organization_id="org-a",
            timestamp=now,
        ),
    )

    gone = await until(service, meet_3, lambda items: items and items[0].is_deleted)
    assert [(a.attendee, a.is_deleted) for a in gone] == [("data-7", True)]

    async def settled() -> list[str] | None:
        types = await meeting_events(service, meet_3)
        return types if "AttendeeLeftEvent" in types else None

    assert await eventually(settled) == ["AttendeeJoinedEvent", "AttendeeLeftEvent"]


async def webhook(service: Service, body: AttendanceWebhook) -> None:
    # The gateway calls it with no user: an empty caller of no organization.
    reply = await service.ask(subjects.meeting_command("attendanceWebhook"), caller("", ""), body, Empty)
    not_rejected(reply)


async def test_the_session_webhook(service: Service) -> None:
    meet_4, conference_id = await service.create_meeting("org-a")

    def event(name: str, data: str = "carol", reason: str | None = None) -> AttendanceWebhook:
        connection = ProviderConnection(id="conn-1", created_at=1, data=data)
        return AttendanceWebhook(session_id=conference_id, event=name, reason=reason, connection=connection)

    async def rows() -> list[tuple[str, bool]]:
        items = not_rejected(await attendees(service, meet_4)).items
        return [(a.attendee, a.is_deleted) for a in items]

    await until(service, meet_4, lambda items: True)  # the meeting's conference is known
    # Only connectionCreated creates; unknown events and unknown sessions are ignored.
    await webhook(service, event("streamCreated", data="dave"))
    await webhook(service, event("sessionCreated"))
    await webhook(service, AttendanceWebhook(session_id="no-such-session", event="connectionCreated"))
    assert await rows() == []

    await webhook(service, event("connectionCreated"))
    created = not_rejected(await attendees(service, meet_4)).items[0]
    assert (created.attendee, created.is_deleted, created.ext_id) == ("carol", False, "conn-1")
    assert created.ext_metadata is not None
    assert created.ext_metadata["webhookPayload"]["event"] == "connectionCreated"

    await webhook(service, event("streamDestroyed", reason="forceUnpublished"))
    assert await rows() == [("carol", False)]
    await webhook(service, event("streamDestroyed", reason="clientDisconnected"))
    assert await rows() == [("carol", True)]
    await webhook(service, event("connectionCreated"))
    assert await rows() == [("carol", False)]
    await webhook(service, event("connectionDestroyed"))
    assert await rows() == [("carol", True)]
    touched = not_rejected(await attendees(service, meet_4)).items[0]
    assert touched.ext_metadata is not None
    assert touched.ext_metadata["webhookPayload"]["event"] == "connectionDestroyed"
