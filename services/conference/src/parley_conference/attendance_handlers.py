"""Use cases of attendance: the conference's events and the provider webhook change attendees; a query lists
them. Each change is decided on the latest record and committed with the event it raises (the shared outbox
publishes it on PARLEY_MEETING); a concurrent change of the same record makes it decide again.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import msgspec
from parley_common.clock import new_id, utcnow
from parley_common.contracts import conference as api
from parley_common.contracts.base import Empty
from parley_common.contracts.meeting import AttendanceWebhook, Attendees, Dialect, ListAttendees
from parley_common.contracts.rpc import Accepted, Request
from parley_common.errors import Busy, NotFound, Reply, rejecting
from parley_common.log import get_logger
from parley_common.outbox import Owed

from parley_conference import attendance
from parley_conference.adapters.attendees import AttendeeRepository, MeetingConference
from parley_conference.attendance import Attendee, Change, MeetingInfo

log = get_logger(__name__)
MEETING_NOT_FOUND = "Meeting Not Found"
COMMIT_TRIES = 8


class MeetingLookup(Protocol):
    """The meeting aggregate as attendance and archives need it (its owner's repository implements it)."""

    async def meeting(self, organization_id: str, meeting_id: str) -> MeetingInfo | None: ...


class KnownMeetings:
    """A lookup from the meetings' conferences alone (their creation events): no dialect, no name.

    Stands in until the meeting repository is wired in its place (`app.wire_meeting_records`).
    """

    def __init__(self, attendees: AttendeeRepository) -> None:
        self._attendees = attendees

    async def meeting(self, organization_id: str, meeting_id: str) -> MeetingInfo | None:
        return MeetingInfo() if await self._attendees.has_meeting(organization_id, meeting_id) else None


async def visible_meeting(
    meetings: MeetingLookup, organization_id: str, meeting_id: str, dialect: Dialect
) -> MeetingInfo:
    """The meeting as `dialect` sees it: another organization's or dialect's is unknown (404)."""
    info = await meetings.meeting(organization_id, meeting_id)
    if info is None or (info.dialect is not None and info.dialect != dialect):
        raise NotFound(MEETING_NOT_FOUND)
    return info


class AttendanceHandlers:
    def __init__(
        self, attendees: AttendeeRepository, meetings: MeetingLookup, committed: Callable[[Owed], None]
    ) -> None:
        self._attendees = attendees
        self._meetings = meetings
        self._committed = committed

    # ------------------------------------------------------------ changing one attendee

    async def _change(
        self, record_id: str, fresh: Callable[[], Attendee], decide: Callable[[Attendee], Change | None]
    ) -> Attendee | None:
        for _ in range(COMMIT_TRIES):
            current = await self._attendees.get(record_id) or fresh()
            change = decide(current)
            if change is None:
                return current
            try:
                owed = await self._attendees.commit(change)
            except Busy:
                continue  # another replica or event changed it: decide again on the newer record
            if owed is not None:
                self._committed(owed)
            return change.attendee
        raise Busy("attendee changing too fast, try again")

    async def _joined(
        self, link: MeetingConference, endpoint_id: str | None, key: str | None, timestamp: Any
    ) -> None:
        if endpoint_id is None or key is None:
            return
        record_id = AttendeeRepository.attendee_id(link.organization_id, link.meeting_id, key)
        # Mapped first: a leave handled after this join always finds its attendee.
        await self._attendees.map_endpoint(link.conference_id, endpoint_id, record_id)

        def fresh() -> Attendee:
            return attendance.new_attendee(
                record_id, link.organization_id, link.meeting_id, link.conference_id, key, utcnow()
            )

        await self._change(
            record_id, fresh, lambda a: attendance.decide_joined(a, endpoint_id, new_id(), utcnow())
        )

    # ------------------------------------------------------------ the conference's events

    async def on_conference_event(self, event: api.AnyConferenceEvent) -> None:
        """Idempotent: a redelivered event changes nothing the second time."""
        if isinstance(event, api.ConferenceCreatedEvent):
            if event.meeting_id is not None:
                await self._attendees.remember_conference(
                    MeetingConference(event.organization_id, event.meeting_id, event.conference_id)
                )
            return
        if not isinstance(
            event,
            api.ConferenceJoinedEvent
            | api.ConferenceLobbyAdmittedEvent
            | api.ConferenceLeftEvent
            | api.ConferenceEndedEvent,
        ):
            return
        link = await self._attendees.conference(event.conference_id)
        if link is None or link.organization_id != event.organization_id:
            return  # not a meeting's conference
        if isinstance(event, api.ConferenceJoinedEvent):
            key = event.grant.attendee if event.grant and event.grant.attendee else event.user_id
            await self._joined(link, event.user_endpoint_id, key, event.timestamp)
        elif isinstance(event, api.ConferenceLobbyAdmittedEvent):
            key = event.grant.attendee if event.grant and event.grant.attendee else event.lobby_user_id
            await self._joined(link, event.lobby_endpoint_id, key, event.timestamp)
        elif isinstance(event, api.ConferenceLeftEvent):
            await self._left(link, event.user_endpoint_id)
        else:
            for attendee in await self._attendees.of_conference(link.conference_id):
                await self._change(
                    attendee.id,
                    lambda known=attendee: known,  # type: ignore[misc]
                    lambda a: attendance.decide_ended(a, new_id(), utcnow()),
                )

    async def _left(self, link: MeetingConference, endpoint_id: str | None) -> None:
        if endpoint_id is None:
            return
        record_id = await self._attendees.attendee_of_endpoint(link.conference_id, endpoint_id)
        if record_id is None:
            return  # joined before attendance was kept, or not a meeting attendee
        existing = await self._attendees.get(record_id)
        if existing is None:
            return
        await self._change(
            record_id, lambda: existing, lambda a: attendance.decide_left(a, endpoint_id, new_id(), utcnow())
        )

    # ------------------------------------------------------------ bus operations

    @rejecting
    async def list_attendees(self, request: Request[ListAttendees]) -> Reply:
        caller, body = request.caller, request.body
        await visible_meeting(self._meetings, caller.organization_id, body.meeting_id, body.dialect)
        found = await self._attendees.of_meeting(caller.organization_id, body.meeting_id)
        items = tuple(attendance.view(a) for a in found if not (body.active_only and a.is_deleted))
        return Accepted(value=Attendees(items=items))

    @rejecting
    async def webhook(self, request: Request[AttendanceWebhook]) -> Reply:
        """The provider's session webhook: unknown conferences and events are ignored (204)."""
        body = request.body
        link = await self._attendees.conference(body.session_id)
        key = attendance.webhook_key(body)
        if link is None or key is None:
            log.info("session webhook ignored", webhook_event=body.event)
            return Accepted(value=Empty())
        record_id = AttendeeRepository.attendee_id(link.organization_id, link.meeting_id, key)
        payload = msgspec.to_builtins(body)

        def fresh() -> Attendee:
            return attendance.new_attendee(
                record_id, link.organization_id, link.meeting_id, link.conference_id, key, utcnow()
            )

        await self._change(
            record_id, fresh, lambda a: attendance.decide_webhook(a, body, payload, new_id(), utcnow())
        )
        return Accepted(value=Empty())


ConferenceEventHandler = Callable[[api.AnyConferenceEvent], Awaitable[None]]
