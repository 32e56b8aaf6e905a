"""The meeting aggregate, pure: a planned conference with a schedule and invitations (no I/O here).

One model for two dialects (`parley_common.contracts.meeting`): each rule answers with the asking
dialect's message (SourceFuse's verbatim from its source, `chat-session.service.ts`). The state is the
bus's own `MeetingView` (without its invitations) and `InvitationView`s: a decision returns the new state
and the event that announces it, and the use case commits both at once.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from datetime import datetime, timedelta

import msgspec
from parley_common.clock import parse_instant
from parley_common.contracts import meeting as api
from parley_common.errors import InvalidCommand, NotFound

# nanoid's alphabet: the real service's meetingLinkId is nanoid(10).
NANOID_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-"
MEETING_LINK_LENGTH = 10
EARLY_START_MINUTES = 15

# Conference end reasons of a meeting's conference.
MEETING_ENDED = "MEETING_ENDED"
MEETING_CANCELED = "MEETING_CANCELED"


def new_meeting_link() -> str:
    return "".join(secrets.choice(NANOID_ALPHABET) for _ in range(MEETING_LINK_LENGTH))


class Clock(msgspec.Struct, frozen=True):
    """What a decision needs from outside: now, and fresh ids for what it creates."""

    now: datetime
    event_id: str


# ---------------------------------------------------------------- views and events


def _base(meeting: api.MeetingView, clock: Clock) -> dict[str, object]:
    return {
        "id": clock.event_id,
        "organization_id": meeting.organization_id,
        "meeting_id": meeting.meeting_id,
        "conference_id": meeting.conference_id,
        "timestamp": clock.now,
    }


def visible(meeting: api.MeetingView | None, organization_id: str, dialect: api.Dialect) -> bool:
    """Another organization's meeting, or the other dialect's, is as unknown as a missing one."""
    return meeting is not None and meeting.organization_id == organization_id and meeting.dialect == dialect


def invitation_of(
    fields: api.InvitationFields, *, invitation_id: str, meeting_id: str, now: datetime
) -> api.InvitationView:
    return api.InvitationView(
        invitation_id=invitation_id,
        meeting_id=meeting_id,
        role=fields.role,
        lobby=fields.lobby,
        created_at=now,
        display_name=fields.display_name,
        picture=fields.picture,
        state=fields.state,
    )


# ---------------------------------------------------------------- create


def _coviu_window(starts: str | None, ends: str | None, now: datetime) -> tuple[datetime, datetime]:
    start = parse_instant(starts)
    end = parse_instant(ends)
    if starts is None:
        raise InvalidCommand("start_time is required")
    if start is None:
        raise InvalidCommand("start_time is not a valid RFC 3339 or RFC 1123 time")
    if ends is None:
        raise InvalidCommand("end_time is required")
    if end is None:
        raise InvalidCommand("end_time is not a valid RFC 3339 or RFC 1123 time")
    if start <= now:
        raise InvalidCommand("start_time must be in the future")
    if end <= start:
        raise InvalidCommand("end_time must be after start_time")
    return start, end


def decide_create(
    command: api.CreateMeeting,
    *,
    organization_id: str,
    created_by: str,
    meeting_id: str,
    conference_id: str,
    invitation_ids: Sequence[str],
    clock: Clock,
) -> tuple[api.MeetingView, tuple[api.InvitationView, ...], api.MeetingCreatedEvent]:
    now = clock.now
    if command.dialect == "sourcefuse":
        # The real service's checks, in its order.
        starts_at = now
        if command.scheduled:
            if not command.starts_at:
                raise InvalidCommand("Schedule time is not set.")
            parsed = parse_instant(command.starts_at, epoch_ms=True)
            if parsed is None:
                raise InvalidCommand("Scheduled time is not in correct format.")
            if now > parsed:
                raise InvalidCommand("Meeting can't be scheduled with schedule time in past!")
            starts_at = parsed
        if command.archiving and command.end_to_end_encryption:
            raise InvalidCommand("End to end Encryption along with archiving is not possible")
        meeting = api.MeetingView(
            meeting_id=meeting_id,
            conference_id=conference_id,
            organization_id=organization_id,
            dialect="sourcefuse",
            created_by=created_by,
            created_at=now,
            name=command.name,
            picture=command.picture,
            feature_flags=command.feature_flags,
            scheduled=command.scheduled,
            starts_at=starts_at,
            archiving=command.archiving,
            end_to_end_encryption=command.end_to_end_encryption,
        )
    else:
        start, end = _coviu_window(command.starts_at, command.ends_at, now)
        meeting = api.MeetingView(
            meeting_id=meeting_id,
            conference_id=conference_id,
            organization_id=organization_id,
            dialect="coviu",
            created_by=created_by,
            created_at=now,
            name=command.name,
            picture=command.picture,
            feature_flags=command.feature_flags,
            scheduled=True,
            starts_at=start,
            ends_at=end,
            # As the client wrote them: Coviu echoes the very string (RFC 1123 included).
            starts_at_text=command.starts_at,
            ends_at_text=command.ends_at,
            archiving=command.archiving,
            end_to_end_encryption=command.end_to_end_encryption,
        )
    if len(invitation_ids) < len(command.invitations):
        raise ValueError("an id per invitation is needed")
    invitations = tuple(
        invitation_of(fields, invitation_id=invitation_id, meeting_id=meeting_id, now=now)
        for fields, invitation_id in zip(command.invitations, invitation_ids, strict=False)
    )
    event = api.MeetingCreatedEvent(
        **_base(meeting, clock),  # type: ignore[arg-type]
        meeting=msgspec.structs.replace(meeting, invitations=invitations),
    )
    return meeting, invitations, event


# ---------------------------------------------------------------- update, end, cancel


def _finished(meeting: api.MeetingView, now: datetime) -> bool:
    """Nothing changes once a session is over: ended, canceled or past its end."""
    return (
        meeting.ended_at is not None
        or meeting.canceled_at is not None
        or (meeting.ends_at is not None and now >= meeting.ends_at)
    )


def require_meeting(
    meeting: api.MeetingView | None, organization_id: str, command: api.MeetingRef, message: str | None = None
) -> api.MeetingView:
    if meeting is None or not visible(meeting, organization_id, command.dialect):
        raise NotFound(message or f"Meeting {command.meeting_id} not found")
    if command.dialect == "coviu" and meeting.canceled_at is not None:
        # A canceled Coviu session is gone for GET and every change (its SDK's tests rely on it).
        raise NotFound(message or f"Meeting {command.meeting_id} not found")
    return meeting


def decide_update(
    meeting: api.MeetingView, command: api.UpdateMeeting, clock: Clock
) -> tuple[api.MeetingView, api.MeetingUpdatedEvent]:
    now = clock.now
    if meeting.dialect == "sourcefuse":
        starts_at = meeting.starts_at
        if command.scheduled and not command.starts_at:
            raise InvalidCommand("Schedule Time is required if isScheduled is set to true")
        parsed = parse_instant(command.starts_at, epoch_ms=True) if command.starts_at else None
        if command.starts_at and parsed is None:
            raise InvalidCommand("Schedule Time is Not in correct format")
        if parsed is not None and now > parsed:
            raise InvalidCommand("Schedule Time cannot be set in the past")
        # As the real service: `isScheduled` in the body picks the given time, else the schedule is now
        # (it never stores `isScheduled` itself).
        starts_at = parsed if command.scheduled else now
        changed = msgspec.structs.replace(
            meeting,
            starts_at=starts_at,
            name=command.name if command.name is not None else meeting.name,
            picture=command.picture if command.picture is not None else meeting.picture,
        )
    else:
        if _finished(meeting, now):
            raise InvalidCommand("the session has finished and can no longer be changed")
        starts_text = command.starts_at if command.starts_at is not None else meeting.starts_at_text
        ends_text = command.ends_at if command.ends_at is not None else meeting.ends_at_text
        start, end = parse_instant(starts_text), parse_instant(ends_text)
        if command.starts_at is not None:
            if start is None:
                raise InvalidCommand("start_time is not a valid RFC 3339 or RFC 1123 time")
            if start != meeting.starts_at and start <= now:
                raise InvalidCommand("start_time must be in the future")
        if command.ends_at is not None and end is None:
            raise InvalidCommand("end_time is not a valid RFC 3339 or RFC 1123 time")
        if start is None or end is None or end <= start:
            raise InvalidCommand("end_time must be after start_time")
        if command.ends_at is not None and end <= now:
            raise InvalidCommand("end_time must be in the future")
        changed = msgspec.structs.replace(
            meeting,
            starts_at=start,
            ends_at=end,
            starts_at_text=starts_text,
            ends_at_text=ends_text,
            name=command.name if command.name is not None else meeting.name,
            picture=command.picture if command.picture is not None else meeting.picture,
        )
    return changed, api.MeetingUpdatedEvent(**_base(changed, clock), meeting=changed)  # type: ignore[arg-type]


def decide_end(meeting: api.MeetingView, clock: Clock) -> tuple[api.MeetingView, api.MeetingEndedEvent]:
    if meeting.ended_at is not None:
        raise InvalidCommand("Meeting has already been ended!")
    ended = msgspec.structs.replace(meeting, ended_at=clock.now)
    return ended, api.MeetingEndedEvent(**_base(ended, clock))  # type: ignore[arg-type]


def decide_cancel(meeting: api.MeetingView, clock: Clock) -> tuple[api.MeetingView, api.MeetingCanceledEvent]:
    if meeting.canceled_at is not None or meeting.ended_at is not None:
        raise InvalidCommand("the session has already finished")
    if meeting.starts_at is not None and clock.now >= meeting.starts_at:
        raise InvalidCommand("a session can only be canceled before it starts")
    canceled = msgspec.structs.replace(meeting, canceled_at=clock.now)
    return canceled, api.MeetingCanceledEvent(**_base(canceled, clock))  # type: ignore[arg-type]


def decide_expire(meeting: api.MeetingView, now: datetime) -> bool:
    """The lease holder's sweep: a session past its end has its conference ended (once)."""
    return (
        meeting.ends_at is not None
        and now >= meeting.ends_at
        and meeting.ended_at is None
        and meeting.canceled_at is None
    )


# ---------------------------------------------------------------- invitations


def decide_invite(
    meeting: api.MeetingView, fields: api.InvitationFields, *, invitation_id: str, clock: Clock
) -> tuple[api.InvitationView, api.InvitationAddedEvent]:
    if _finished(meeting, clock.now):
        raise InvalidCommand("the session has finished: no one can be invited any more")
    invitation = invitation_of(
        fields, invitation_id=invitation_id, meeting_id=meeting.meeting_id, now=clock.now
    )
    return invitation, api.InvitationAddedEvent(**_base(meeting, clock), invitation=invitation)  # type: ignore[arg-type]


def require_invitation(
    invitation: api.InvitationView | None,
    meeting: api.MeetingView | None,
    organization_id: str,
    command: api.InvitationRef,
) -> tuple[api.InvitationView, api.MeetingView]:
    if (
        invitation is None
        or meeting is None
        or not visible(meeting, organization_id, command.dialect)
        or meeting.canceled_at is not None
    ):
        raise NotFound(f"Participant {command.invitation_id} not found")
    return invitation, meeting


def decide_update_invitation(
    meeting: api.MeetingView, invitation: api.InvitationView, command: api.UpdateInvitation, clock: Clock
) -> tuple[api.InvitationView, api.InvitationUpdatedEvent]:
    if _finished(meeting, clock.now):
        raise InvalidCommand("the session has finished and can no longer be changed")
    if invitation.removed_at is not None:
        raise InvalidCommand("the participant has been removed")
    changed = msgspec.structs.replace(
        invitation,
        role=command.role if command.role is not None else invitation.role,
        lobby=command.lobby if command.lobby is not None else invitation.lobby,
        display_name=command.display_name if command.display_name is not None else invitation.display_name,
        picture=command.picture if command.picture is not None else invitation.picture,
        state=command.state if command.state is not None else invitation.state,
    )
    return changed, api.InvitationUpdatedEvent(**_base(meeting, clock), invitation=changed)  # type: ignore[arg-type]


def decide_remove_invitation(
    meeting: api.MeetingView, invitation: api.InvitationView, clock: Clock
) -> tuple[api.InvitationView, api.InvitationRemovedEvent | None]:
    if _finished(meeting, clock.now):
        raise InvalidCommand("the session has finished and can no longer be changed")
    if invitation.removed_at is not None:  # removing twice is fine: nothing changes
        return invitation, None
    removed = msgspec.structs.replace(invitation, removed_at=clock.now)
    event = api.InvitationRemovedEvent(**_base(meeting, clock), invitation_id=invitation.invitation_id)  # type: ignore[arg-type]
    return removed, event


# ---------------------------------------------------------------- passes


def check_expire_time(text: str | None, now: datetime) -> datetime | None:
    """SourceFuse's first two checks, before the meeting is even looked up."""
    if not text:
        return None
    expires = parse_instant(text, epoch_ms=True)
    if expires is None:
        raise InvalidCommand("Expire time is not in correct format.")
    if now > expires:
        raise InvalidCommand("Expire time can not be in past.")
    return expires


def decide_pass(
    meeting: api.MeetingView,
    command: api.IssuePass,
    expires_at: datetime | None,
    *,
    early_start_minutes: float,
    clock: Clock,
) -> tuple[api.MeetingPass, api.MeetingView | None, api.MeetingStartedEvent | None]:
    """The pass, and the meeting started by it (None when it had started already)."""
    now = clock.now
    if meeting.ended_at is not None or meeting.canceled_at is not None:
        raise InvalidCommand("This meeting has been expired")
    if (
        meeting.scheduled
        and meeting.starts_at is not None
        and now + timedelta(minutes=early_start_minutes) < meeting.starts_at
    ):
        minutes = int(early_start_minutes) if float(early_start_minutes).is_integer() else early_start_minutes
        # The real message, line break and indentation included.
        raise InvalidCommand(
            f"Meeting can only be started {minutes} minutes before\n         the scheduled time"
        )
    grant = api.MeetingGrant(
        meeting_id=meeting.meeting_id,
        conference_id=meeting.conference_id,
        role=command.role,
        attendee=command.data,
    )
    meeting_pass = api.MeetingPass(grant=grant, expires_at=expires_at)
    if meeting.started_at is not None:
        return meeting_pass, None, None
    started = msgspec.structs.replace(meeting, started_at=now)
    return meeting_pass, started, api.MeetingStartedEvent(**_base(started, clock))  # type: ignore[arg-type]


# ---------------------------------------------------------------- reading


def with_invitations(
    meeting: api.MeetingView, invitations: Sequence[api.InvitationView], *, include_removed: bool
) -> api.MeetingView:
    shown = tuple(i for i in invitations if include_removed or i.removed_at is None)
    return msgspec.structs.replace(meeting, invitations=shown)


def states_of(invitations: Sequence[api.InvitationView]) -> frozenset[str]:
    """The `state` values a meeting is found by (its non-removed invitations')."""
    return frozenset(i.state for i in invitations if i.state is not None and i.removed_at is None)


def page_count(total: int, page_size: int) -> int:
    return (total + page_size - 1) // page_size
