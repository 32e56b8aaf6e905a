"""The lease holder's sweep ends the conference of a Coviu session past its end (real nats-server, SQLite).

Its own module, so its own nats-server: the timers' lease is free from the start (a lease another test's
service held stays taken until its key expires).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from parley_common.contracts import conference as conference_api
from parley_common.contracts import meeting as api

from .test_meetings_bus import Service, coviu_session, eventually, later
from .test_meetings_bus import service as service  # the fixture


async def test_a_session_past_its_end_has_its_conference_ended_by_the_sweep(service: Service) -> None:
    session = await service.ok(
        "createMeeting", coviu_session(starts=later(seconds=2), length=timedelta(seconds=1))
    )
    assert session.ends_at is not None

    async def conference_ended() -> Any:
        events = await service.conference_events(session.conference_id)
        return [e for e in events if isinstance(e, conference_api.ConferenceEndedEvent)]

    (end,) = await eventually(conference_ended, timeout=10.0)
    assert end.reason == "MEETING_ENDED"
    assert end.timestamp >= session.ends_at
    # Over: nothing changes any more.
    status, _ = await service.refused(
        "invite",
        api.Invite(dialect="coviu", meeting_id=session.meeting_id, invitation=api.InvitationFields()),
    )
    assert status == 400
