"""The meeting aggregate's rules and messages, pure (no I/O): SourceFuse verbatim, Coviu's clear ones."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import msgspec
import pytest
from parley_common.contracts import meeting as api
from parley_common.errors import InvalidCommand, NotFound
from parley_conference import meetings
from parley_conference.meetings import Clock

NOW = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
CLOCK = Clock(now=NOW, event_id="ev-1")


def create(body: api.CreateMeeting, *, ids: tuple[str, ...] = ()) -> api.MeetingView:
    meeting, _, _ = meetings.decide_create(
        body,
        organization_id="org",
        created_by="user",
        meeting_id="abcdEFGH_-",
        conference_id="conf-1",
        invitation_ids=ids or tuple(f"inv-{n}" for n in range(len(body.invitations))),
        clock=CLOCK,
    )
    return meeting


def refused(message: str) -> pytest.RaisesContext[InvalidCommand]:
    return pytest.raises(InvalidCommand, match=f"^{re.escape(message)}$")


def sf_meeting(**fields: object) -> api.MeetingView:
    base = api.MeetingView(
        meeting_id="abcdEFGH_-",
        conference_id="conf-1",
        organization_id="org",
        dialect="sourcefuse",
        created_by="user",
        created_at=NOW,
        starts_at=NOW,
    )
    return msgspec.structs.replace(base, **fields)


def coviu_meeting(**fields: object) -> api.MeetingView:
    base = api.MeetingView(
        meeting_id="c-1",
        conference_id="conf-1",
        organization_id="org",
        dialect="coviu",
        created_by="client",
        created_at=NOW,
        scheduled=True,
        starts_at=NOW + timedelta(hours=1),
        ends_at=NOW + timedelta(hours=2),
        starts_at_text="Tue, 01 Dec 2026 11:00:00 GMT",
        ends_at_text="2026-12-01T12:00:00Z",
    )
    return msgspec.structs.replace(base, **fields)


def test_meeting_links_are_ten_nanoid_characters() -> None:
    links = {meetings.new_meeting_link() for _ in range(50)}
    assert len(links) == 50
    assert all(len(link) == 10 and set(link) <= set(meetings.NANOID_ALPHABET) for link in links)


# ---------------------------------------------------------------- SourceFuse create


def test_sourcefuse_create_unscheduled_starts_now() -> None:
    meeting = create(api.CreateMeeting(dialect="sourcefuse"))
    assert meeting.starts_at == NOW and not meeting.scheduled and meeting.meeting_id == "abcdEFGH_-"


def test_sourcefuse_create_scheduled_keeps_its_time() -> None:
    meeting = create(
        api.CreateMeeting(dialect="sourcefuse", scheduled=True, starts_at="2026-12-02T10:00:00Z")
    )
    assert meeting.scheduled and meeting.starts_at == datetime(2026, 12, 2, 10, tzinfo=UTC)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (api.CreateMeeting(dialect="sourcefuse", scheduled=True), "Schedule time is not set."),
        (
            api.CreateMeeting(dialect="sourcefuse", scheduled=True, starts_at="tomorrow"),
            "Scheduled time is not in correct format.",
        ),
        (
            api.CreateMeeting(dialect="sourcefuse", scheduled=True, starts_at="2026-11-30T10:00:00Z"),
            "Meeting can't be scheduled with schedule time in past!",
        ),
        (
            api.CreateMeeting(dialect="sourcefuse", archiving=True, end_to_end_encryption=True),
            "End to end Encryption along with archiving is not possible",
        ),
    ],
)
def test_sourcefuse_create_refusals(body: api.CreateMeeting, message: str) -> None:
    with refused(message):
        create(body)


# ---------------------------------------------------------------- Coviu create


def test_coviu_create_keeps_the_times_as_written_and_makes_the_invitations() -> None:
    body = api.CreateMeeting(
        dialect="coviu",
        starts_at="Tue, 01 Dec 2026 11:00:00 GMT",
        ends_at="2026-12-01T12:00:00Z",
        invitations=(api.InvitationFields(role="moderator", state="s1"), api.InvitationFields(lobby=True)),
    )
    meeting, invitations, event = meetings.decide_create(
        body,
        organization_id="org",
        created_by="client",
        meeting_id="c-1",
        conference_id="conf-1",
        invitation_ids=("i1", "i2"),
        clock=CLOCK,
    )
    assert meeting.starts_at_text == "Tue, 01 Dec 2026 11:00:00 GMT"
    assert meeting.ends_at_text == "2026-12-01T12:00:00Z"
    assert meeting.starts_at == NOW + timedelta(hours=1) and meeting.scheduled
    assert [(i.invitation_id, i.role, i.lobby, i.state) for i in invitations] == [
        ("i1", "moderator", False, "s1"),
        ("i2", "publisher", True, None),
    ]
    assert event.meeting.invitations == invitations and event.id == "ev-1"


@pytest.mark.parametrize(
    ("starts", "ends", "message"),
    [
        (None, "2026-12-01T12:00:00Z", "start_time is required"),
        ("nope", "2026-12-01T12:00:00Z", "start_time is not a valid RFC 3339 or RFC 1123 time"),
        ("2026-12-01T11:00:00Z", None, "end_time is required"),
        ("2026-12-01T11:00:00Z", "later", "end_time is not a valid RFC 3339 or RFC 1123 time"),
        ("2026-12-01T09:00:00Z", "2026-12-01T12:00:00Z", "start_time must be in the future"),
        ("2026-12-01T11:00:00Z", "2026-12-01T11:00:00Z", "end_time must be after start_time"),
    ],
)
def test_coviu_create_refusals(starts: str | None, ends: str | None, message: str) -> None:
    with refused(message):
        create(api.CreateMeeting(dialect="coviu", starts_at=starts, ends_at=ends))


# ---------------------------------------------------------------- visibility


def test_other_organization_or_dialect_is_not_found() -> None:
    meeting = sf_meeting()
    ref = api.MeetingRef(dialect="sourcefuse", meeting_id=meeting.meeting_id)
    assert meetings.require_meeting(meeting, "org", ref) is meeting
    with pytest.raises(NotFound):
        meetings.require_meeting(meeting, "other-org", ref)
    with pytest.raises(NotFound):
        meetings.require_meeting(meeting, "org", api.MeetingRef(dialect="coviu", meeting_id="abcdEFGH_-"))
    with pytest.raises(NotFound, match=r"^Meeting Not Found$"):
        meetings.require_meeting(None, "org", ref, "Meeting Not Found")


def test_a_canceled_coviu_session_is_not_found() -> None:
    ref = api.MeetingRef(dialect="coviu", meeting_id="c-1")
    with pytest.raises(NotFound):
        meetings.require_meeting(coviu_meeting(canceled_at=NOW), "org", ref)


# ---------------------------------------------------------------- SourceFuse update and end


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            api.UpdateMeeting(dialect="sourcefuse", meeting_id="m", scheduled=True),
            "Schedule Time is required if isScheduled is set to true",
        ),
        (
            api.UpdateMeeting(dialect="sourcefuse", meeting_id="m", scheduled=True, starts_at="soon"),
            "Schedule Time is Not in correct format",
        ),
        (
            api.UpdateMeeting(dialect="sourcefuse", meeting_id="m", starts_at="2026-11-30T00:00:00Z"),
            "Schedule Time cannot be set in the past",
        ),
    ],
)
def test_sourcefuse_update_refusals(body: api.UpdateMeeting, message: str) -> None:
    with refused(message):
        meetings.decide_update(sf_meeting(), body, CLOCK)


def test_sourcefuse_update_takes_the_time_only_when_scheduled_else_now() -> None:
    later = "2026-12-03T10:00:00Z"
    meeting = sf_meeting(starts_at=NOW - timedelta(days=1))
    scheduled, event = meetings.decide_update(
        meeting,
        api.UpdateMeeting(dialect="sourcefuse", meeting_id="m", scheduled=True, starts_at=later),
        CLOCK,
    )
    assert scheduled.starts_at == datetime(2026, 12, 3, 10, tzinfo=UTC) and event.meeting == scheduled
    unscheduled, _ = meetings.decide_update(
        meeting, api.UpdateMeeting(dialect="sourcefuse", meeting_id="m", starts_at=later), CLOCK
    )
    assert unscheduled.starts_at == NOW


def test_sourcefuse_end_once() -> None:
    ended, event = meetings.decide_end(sf_meeting(), CLOCK)
    assert ended.ended_at == NOW and event.conference_id == "conf-1"
    with refused("Meeting has already been ended!"):
        meetings.decide_end(ended, CLOCK)


# ---------------------------------------------------------------- SourceFuse passes


def test_expire_time_checks() -> None:
    with refused("Expire time is not in correct format."):
        meetings.check_expire_time("whenever", NOW)
    with refused("Expire time can not be in past."):
        meetings.check_expire_time("2026-12-01T09:59:59Z", NOW)
    assert meetings.check_expire_time("1796122800000", NOW) == datetime(2026, 12, 1, 11, tzinfo=UTC)
    assert meetings.check_expire_time(None, NOW) is None


def test_pass_starts_the_meeting_once_with_the_grant() -> None:
    body = api.IssuePass(dialect="sourcefuse", meeting_id="abcdEFGH_-", role="subscriber", data="alice")
    meeting_pass, started, event = meetings.decide_pass(
        sf_meeting(), body, None, early_start_minutes=15, clock=CLOCK
    )
    assert meeting_pass.grant == api.MeetingGrant(
        meeting_id="abcdEFGH_-", conference_id="conf-1", role="subscriber", attendee="alice"
    )
    assert started is not None and started.started_at == NOW and event is not None
    again, restarted, no_event = meetings.decide_pass(
        started, body, None, early_start_minutes=15, clock=CLOCK
    )
    assert again.grant == meeting_pass.grant and restarted is None and no_event is None


def test_pass_of_an_ended_meeting_is_expired() -> None:
    body = api.IssuePass(dialect="sourcefuse", meeting_id="m")
    with refused("This meeting has been expired"):
        meetings.decide_pass(sf_meeting(ended_at=NOW), body, None, early_start_minutes=15, clock=CLOCK)


def test_pass_too_early_has_the_real_message_verbatim() -> None:
    body = api.IssuePass(dialect="sourcefuse", meeting_id="m")
    meeting = sf_meeting(scheduled=True, starts_at=NOW + timedelta(minutes=16))
    with pytest.raises(InvalidCommand) as refusal:
        meetings.decide_pass(meeting, body, None, early_start_minutes=15, clock=CLOCK)
    assert (
        refusal.value.message == "Meeting can only be started 15 minutes before\n         the scheduled time"
    )
    # Within the window it starts.
    inside = sf_meeting(scheduled=True, starts_at=NOW + timedelta(minutes=15))
    _, started, _ = meetings.decide_pass(inside, body, None, early_start_minutes=15, clock=CLOCK)
    assert started is not None


# ---------------------------------------------------------------- Coviu update, cancel, invitations


def test_coviu_update_rechecks_the_window_and_keeps_the_text() -> None:
    meeting = coviu_meeting()
    body = api.UpdateMeeting(dialect="coviu", meeting_id="c-1", ends_at="Tue, 01 Dec 2026 13:00:00 GMT")
    changed, _ = meetings.decide_update(meeting, body, CLOCK)
    assert changed.ends_at_text == "Tue, 01 Dec 2026 13:00:00 GMT" and changed.ends_at == NOW + timedelta(
        hours=3
    )
    assert changed.starts_at_text == meeting.starts_at_text
    with refused("end_time must be after start_time"):
        meetings.decide_update(
            meeting,
            api.UpdateMeeting(dialect="coviu", meeting_id="c-1", ends_at="2026-12-01T10:30:00Z"),
            CLOCK,
        )
    with refused("start_time must be in the future"):
        meetings.decide_update(
            meeting,
            api.UpdateMeeting(dialect="coviu", meeting_id="c-1", starts_at="2026-12-01T09:00:00Z"),
            CLOCK,
        )
    finished = coviu_meeting(starts_at=NOW - timedelta(hours=2), ends_at=NOW - timedelta(hours=1))
    with refused("the session has finished and can no longer be changed"):
        meetings.decide_update(
            finished, api.UpdateMeeting(dialect="coviu", meeting_id="c-1", name="x"), CLOCK
        )


def test_coviu_cancel_only_before_the_start() -> None:
    canceled, event = meetings.decide_cancel(coviu_meeting(), CLOCK)
    assert canceled.canceled_at == NOW and event.meeting_id == "c-1"
    started = coviu_meeting(starts_at=NOW - timedelta(minutes=1))
    with refused("a session can only be canceled before it starts"):
        meetings.decide_cancel(started, CLOCK)
    with refused("the session has already finished"):
        meetings.decide_cancel(canceled, CLOCK)


def test_invite_until_the_end_then_refused() -> None:
    invitation, event = meetings.decide_invite(
        coviu_meeting(starts_at=NOW - timedelta(minutes=5)),
        api.InvitationFields(role="moderator"),
        invitation_id="i9",
        clock=CLOCK,
    )
    assert invitation.invitation_id == "i9" and event.invitation == invitation
    finished = coviu_meeting(starts_at=NOW - timedelta(hours=2), ends_at=NOW)
    with refused("the session has finished: no one can be invited any more"):
        meetings.decide_invite(finished, api.InvitationFields(), invitation_id="i10", clock=CLOCK)


def test_remove_invitation_sets_removed_at_and_is_refused_once_finished() -> None:
    invitation = meetings.invitation_of(
        api.InvitationFields(state="x"), invitation_id="i1", meeting_id="c-1", now=NOW
    )
    removed, event = meetings.decide_remove_invitation(coviu_meeting(), invitation, CLOCK)
    assert removed.removed_at == NOW and event is not None and event.invitation_id == "i1"
    assert meetings.decide_remove_invitation(coviu_meeting(), removed, CLOCK) == (removed, None)
    assert meetings.states_of([removed]) == frozenset() and meetings.states_of([invitation]) == {"x"}
    finished = coviu_meeting(starts_at=NOW - timedelta(hours=2), ends_at=NOW - timedelta(seconds=1))
    with refused("the session has finished and can no longer be changed"):
        meetings.decide_remove_invitation(finished, invitation, CLOCK)


def test_update_invitation_changes_only_what_is_given() -> None:
    invitation = meetings.invitation_of(
        api.InvitationFields(display_name="Ada", state="a"), invitation_id="i1", meeting_id="c-1", now=NOW
    )
    body = api.UpdateInvitation(dialect="coviu", invitation_id="i1", role="moderator")
    changed, _ = meetings.decide_update_invitation(coviu_meeting(), invitation, body, CLOCK)
    assert (changed.role, changed.display_name, changed.state) == ("moderator", "Ada", "a")


def test_expiry_is_due_once_past_the_end() -> None:
    assert not meetings.decide_expire(coviu_meeting(), NOW)
    past = coviu_meeting(starts_at=NOW - timedelta(hours=2), ends_at=NOW - timedelta(seconds=1))
    assert meetings.decide_expire(past, NOW)
    assert not meetings.decide_expire(msgspec.structs.replace(past, canceled_at=NOW), NOW)


def test_page_count() -> None:
    assert [meetings.page_count(n, 200) for n in (0, 1, 200, 201)] == [0, 1, 1, 2]
