"""The meeting use cases: one per operation of `contracts.meeting.OPERATIONS` this module serves.

Each takes the bus `Request`, loads what the rule needs, asks the pure domain (`meetings`), commits the
new state with its events and effects in one write (`MeetingRepository.commit`) and answers `Accepted`,
or `Rejected` with the rule's status (`rejecting`). The conference behind a meeting is created in the
same use case, in-process (this service owns both aggregates), before the meeting is committed: a meeting
never names a conference that does not exist. Ending or canceling one owes its conference's end
(`EndMeetingConference`), carried out by the outbox and retried until done.

Meeting commands run one at a time in this process (`lock`): a decision is taken on state no other
command of this process is changing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, Protocol

from parley_common import errors
from parley_common.clock import new_id, utcnow
from parley_common.contracts import meeting as api
from parley_common.contracts.rpc import Accepted, Request
from parley_common.errors import InvalidCommand, NotFound
from parley_common.log import get_logger
from parley_common.outbox import Outbox, Owed

from parley_conference import meetings
from parley_conference.adapters.meetings import EndMeetingConference, MeetingRepository
from parley_conference.domain import RECORDER_KEY
from parley_conference.meetings import Clock

log = get_logger(__name__)
rejecting = errors.rejecting(context={"meeting_id": "meeting_id", "invitation_id": "invitation_id"})
# How long a command's answer waits for its events to be out (they stay owed after).
EFFECTS_WAIT_SECONDS = 2.0
RECORDING_ON = '{"on":true}'


class Conferences(Protocol):
    """The conference use cases a meeting needs (in-process: `ConferenceHandlers`)."""

    async def create_for_meeting(
        self,
        organization_id: str,
        conference_id: str,
        *,
        creator: str,
        meeting_id: str,
        metadata: dict[str, str],
    ) -> None: ...

    async def end_for_meeting(self, organization_id: str, conference_id: str, reason: str) -> None: ...


class MeetingHandlers:
    def __init__(
        self,
        repository: MeetingRepository,
        outbox: Outbox,
        conferences: Conferences,
        *,
        early_start_minutes: float = meetings.EARLY_START_MINUTES,
        wait_seconds: float = EFFECTS_WAIT_SECONDS,
        clock: Callable[[], datetime] = utcnow,
        ids: Callable[[], str] = new_id,
        meeting_links: Callable[[], str] = meetings.new_meeting_link,
    ) -> None:
        self._repo = repository
        self._outbox = outbox
        self._conferences = conferences
        self._early = early_start_minutes
        self._wait = wait_seconds
        self._now = clock
        self._ids = ids
        self._links = meeting_links
        self.lock = asyncio.Lock()

    def use_cases(self) -> dict[str, Callable[[Any], Awaitable[Any]]]:
        """operationId -> use case, for the bus (attendance and archives register their own)."""
        return {
            "createMeeting": self.create_meeting,
            "getMeeting": self.get_meeting,
            "listMeetings": self.list_meetings,
            "updateMeeting": self.update_meeting,
            "endMeeting": self.end_meeting,
            "cancelMeeting": self.cancel_meeting,
            "invite": self.invite,
            "getInvitation": self.get_invitation,
            "listInvitations": self.list_invitations,
            "updateInvitation": self.update_invitation,
            "removeInvitation": self.remove_invitation,
            "issuePass": self.issue_pass,
        }

    def _clock(self) -> Clock:
        return Clock(now=self._now(), event_id=self._ids())

    async def _handed_over(self, owed: Owed) -> None:
        self._outbox.committed(owed)
        # The answer leaves once the events are out (a client hears its own change first), or after the wait.
        await self._outbox.carried_out(owed, self._wait)

    async def _meeting(
        self, organization_id: str, ref: api.MeetingRef, message: str | None = None
    ) -> api.MeetingView:
        return meetings.require_meeting(
            await self._repo.meeting(ref.meeting_id), organization_id, ref, message
        )

    async def _invitations(self, meeting_id: str) -> list[api.InvitationView]:
        return (await self._repo.invitations([meeting_id]))[meeting_id]

    # ---------------------------------------------------------------- meetings

    @rejecting
    async def create_meeting(self, request: Request[api.CreateMeeting]) -> Accepted[api.MeetingView]:
        caller, body = request.caller, request.body
        meeting_id = self._links() if body.dialect == "sourcefuse" else self._ids()
        conference_id = self._ids()
        meeting, invitations, event = meetings.decide_create(
            body,
            organization_id=caller.organization_id,
            created_by=caller.user_id,
            meeting_id=meeting_id,
            conference_id=conference_id,
            invitation_ids=[self._ids() for _ in body.invitations],
            clock=self._clock(),
        )
        # The conference first: a committed meeting always has its conference. With archiving, the
        # existing recorder records it from the first publish.
        await self._conferences.create_for_meeting(
            caller.organization_id,
            conference_id,
            creator=caller.user_id,
            meeting_id=meeting_id,
            metadata={RECORDER_KEY: RECORDING_ON} if meeting.archiving else {},
        )
        async with self.lock:
            owed = await self._repo.commit(
                meeting, invitations=invitations, changed_invitations=invitations, events=[event]
            )
        await self._handed_over(owed)
        log.info("meeting created", meeting_id=meeting_id, conference_id=conference_id)
        return Accepted(value=event.meeting)

    @rejecting
    async def get_meeting(self, request: Request[api.GetMeeting]) -> Accepted[api.MeetingView]:
        caller, body = request.caller, request.body
        meeting = await self._meeting(caller.organization_id, body)
        invitations = await self._invitations(meeting.meeting_id)
        return Accepted(
            value=meetings.with_invitations(meeting, invitations, include_removed=body.include_removed)
        )

    @rejecting
    async def list_meetings(self, request: Request[api.ListMeetings]) -> Accepted[api.MeetingPage]:
        caller, body = request.caller, request.body
        page, total = await self._repo.page(caller.organization_id, body)
        invitations = await self._repo.invitations([m.meeting_id for m in page])
        items = tuple(
            meetings.with_invitations(m, invitations[m.meeting_id], include_removed=body.include_removed)
            for m in page
        )
        count = meetings.page_count(total, body.page_size)
        return Accepted(
            value=api.MeetingPage(
                items=items,
                page=body.page,
                page_size=body.page_size,
                page_count=count,
                more=body.page + 1 < count,
            )
        )

    @rejecting
    async def update_meeting(self, request: Request[api.UpdateMeeting]) -> Accepted[api.MeetingView]:
        caller, body = request.caller, request.body
        async with self.lock:
            meeting = await self._meeting(
                caller.organization_id,
                body,
                f"Meeting link {body.meeting_id} not found" if body.dialect == "sourcefuse" else None,
            )
            changed, event = meetings.decide_update(meeting, body, self._clock())
            invitations = await self._invitations(meeting.meeting_id)
            owed = await self._repo.commit(changed, invitations=invitations, events=[event])
        await self._handed_over(owed)
        return Accepted(value=meetings.with_invitations(changed, invitations, include_removed=False))

    @rejecting
    async def end_meeting(self, request: Request[api.MeetingRef]) -> Accepted[api.MeetingView]:
        caller, body = request.caller, request.body
        async with self.lock:
            meeting = await self._meeting(
                caller.organization_id, body, "Meeting Not Found" if body.dialect == "sourcefuse" else None
            )
            ended, event = meetings.decide_end(meeting, self._clock())
            owed = await self._repo.commit(
                ended,
                invitations=await self._invitations(meeting.meeting_id),
                events=[event],
                effects=[self._end_conference(ended, meetings.MEETING_ENDED)],
            )
        await self._handed_over(owed)
        return Accepted(value=ended)

    @rejecting
    async def cancel_meeting(self, request: Request[api.MeetingRef]) -> Accepted[api.MeetingView]:
        caller, body = request.caller, request.body
        async with self.lock:
            meeting = await self._meeting(caller.organization_id, body)
            canceled, event = meetings.decide_cancel(meeting, self._clock())
            owed = await self._repo.commit(
                canceled,
                invitations=await self._invitations(meeting.meeting_id),
                events=[event],
                effects=[self._end_conference(canceled, meetings.MEETING_CANCELED)],
            )
        await self._handed_over(owed)
        return Accepted(value=canceled)

    @staticmethod
    def _end_conference(meeting: api.MeetingView, reason: str) -> EndMeetingConference:
        return EndMeetingConference(
            organization_id=meeting.organization_id, conference_id=meeting.conference_id, reason=reason
        )

    # ---------------------------------------------------------------- passes

    @rejecting
    async def issue_pass(self, request: Request[api.IssuePass]) -> Accepted[api.MeetingPass]:
        caller, body = request.caller, request.body
        clock = self._clock()
        # The real service's order: the expire time first, then the meeting.
        expires_at = meetings.check_expire_time(body.expire_time, clock.now)
        async with self.lock:
            found = await self._repo.meeting(body.meeting_id)
            if found is None or found.dialect != body.dialect:
                raise InvalidCommand("Session does not exist")
            if found.organization_id != caller.organization_id:
                raise NotFound("Session does not exist")
            meeting_pass, started, event = meetings.decide_pass(
                found, body, expires_at, early_start_minutes=self._early, clock=clock
            )
            owed = None
            if started is not None and event is not None:
                owed = await self._repo.commit(started, events=[event])
        if owed is not None:
            await self._handed_over(owed)
        return Accepted(value=meeting_pass)

    # ---------------------------------------------------------------- invitations

    @rejecting
    async def invite(self, request: Request[api.Invite]) -> Accepted[api.InvitationView]:
        caller, body = request.caller, request.body
        async with self.lock:
            meeting = await self._meeting(caller.organization_id, body)
            invitation, event = meetings.decide_invite(
                meeting, body.invitation, invitation_id=self._ids(), clock=self._clock()
            )
            invitations = [*await self._invitations(meeting.meeting_id), invitation]
            owed = await self._repo.commit(
                meeting, invitations=invitations, changed_invitations=[invitation], events=[event]
            )
        await self._handed_over(owed)
        return Accepted(value=invitation)

    async def _invitation(
        self, organization_id: str, ref: api.InvitationRef
    ) -> tuple[api.InvitationView, api.MeetingView]:
        invitation = await self._repo.invitation(ref.invitation_id)
        meeting = None if invitation is None else await self._repo.meeting(invitation.meeting_id)
        return meetings.require_invitation(invitation, meeting, organization_id, ref)

    @rejecting
    async def get_invitation(self, request: Request[api.InvitationRef]) -> Accepted[api.InvitationView]:
        invitation, _ = await self._invitation(request.caller.organization_id, request.body)
        return Accepted(value=invitation)

    @rejecting
    async def list_invitations(self, request: Request[api.ListInvitations]) -> Accepted[api.InvitationPage]:
        caller, body = request.caller, request.body
        meeting = await self._meeting(caller.organization_id, body)
        shown = meetings.with_invitations(
            meeting, await self._invitations(meeting.meeting_id), include_removed=body.include_removed
        ).invitations
        # A meeting's invitations fit one page (they are few); the page fields keep Coviu's shape.
        return Accepted(
            value=api.InvitationPage(
                items=shown, page=0, page_size=max(len(shown), 1), page_count=1 if shown else 0, more=False
            )
        )

    @rejecting
    async def update_invitation(self, request: Request[api.UpdateInvitation]) -> Accepted[api.InvitationView]:
        caller, body = request.caller, request.body
        async with self.lock:
            invitation, meeting = await self._invitation(caller.organization_id, body)
            changed, event = meetings.decide_update_invitation(meeting, invitation, body, self._clock())
            others = [
                i
                for i in await self._invitations(meeting.meeting_id)
                if i.invitation_id != changed.invitation_id
            ]
            owed = await self._repo.commit(
                meeting, invitations=[*others, changed], changed_invitations=[changed], events=[event]
            )
        await self._handed_over(owed)
        return Accepted(value=changed)

    @rejecting
    async def remove_invitation(self, request: Request[api.InvitationRef]) -> Accepted[api.InvitationView]:
        caller, body = request.caller, request.body
        owed = None
        async with self.lock:
            invitation, meeting = await self._invitation(caller.organization_id, body)
            removed, event = meetings.decide_remove_invitation(meeting, invitation, self._clock())
            if event is not None:
                others = [
                    i
                    for i in await self._invitations(meeting.meeting_id)
                    if i.invitation_id != removed.invitation_id
                ]
                owed = await self._repo.commit(
                    meeting, invitations=[*others, removed], changed_invitations=[removed], events=[event]
                )
        if owed is not None:
            await self._handed_over(owed)
        return Accepted(value=removed)

    # ---------------------------------------------------------------- timers

    async def sweep(self) -> None:
        """Coviu sessions past their end: their conference ends (run by the lease holder)."""
        now = self._now()
        for meeting in await self._repo.due(now):
            if not meetings.decide_expire(meeting, now):
                continue
            async with self.lock:
                # Recorded as ended by the schedule (the view keeps `ended_at` unset: the end is `ends_at`),
                # so the sweep does not find it again; its conference end is owed with it.
                owed = await self._repo.commit(
                    meeting,
                    effects=[self._end_conference(meeting, meetings.MEETING_ENDED)],
                    swept=True,
                )
            self._outbox.committed(owed)
            log.info("meeting past its end: conference ended", meeting_id=meeting.meeting_id)
