"""The meeting use cases over a real nats-server and SQLite, asked on the bus as the gateway asks them.

The conference service runs in-process (`serve_conference`, what `python -m parley_conference` runs);
requests go through `RpcClient` as `Request(caller, body)` on `parley.{cmd,qry}.meeting.<op>`; the
conference behind a meeting is read back with the conference's own `events` query, and the meeting's
events from PARLEY_MEETING.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import nats
import pytest
from nats.aio.client import Client
from nats.js.api import DeliverPolicy
from parley_common.config import CommonSettings
from parley_common.contracts import conference as conference_api
from parley_common.contracts import meeting as api
from parley_common.contracts.health import HealthQuery, ServiceHealth
from parley_common.contracts.rpc import Accepted, Caller, Rejected, Request
from parley_common.messaging import subjects
from parley_common.messaging.rpc import RpcClient
from parley_common.messaging.streams import CONFERENCE_STREAM, MEETING_STREAM
from parley_common.processes import NatsServer
from parley_conference.app import serve_conference
from parley_conference.settings import Settings

ORG = "org-a"
OTHER_ORG = "org-b"


def uid() -> str:
    return str(uuid.uuid4())


def iso(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


def later(**delta: float) -> datetime:
    return datetime.now(UTC) + timedelta(**delta)


class Service:
    """The conference service running in this process, and a client asking it as the gateway does."""

    def __init__(self, nc: Client, nats_url: str, data_dir: Path, *, sweep: float = 0.2) -> None:
        self.rpc = RpcClient(nc, timeout=5.0)
        self.js = nc.jetstream()
        self.data_dir = data_dir
        self.settings = Settings(
            common=CommonSettings(nats_url=nats_url, data_dir=data_dir, mongo_url=None, request_timeout=3.0),
            keepalive_seconds=30.0,
            keepalive_grace_seconds=120.0,
            empty_timeout_seconds=0.2,
            sweep_interval_seconds=sweep,
            media_request_timeout_seconds=1.0,
            media_node_timeout_seconds=5.0,
            media_node_wait_seconds=0.1,
            admission_timeout_seconds=1.0,
            meeting_early_start_minutes=15.0,
        )
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(serve_conference(self.settings, self._stop))
        for _ in range(200):
            reply = await self.rpc.request(
                subjects.health("conference"), HealthQuery(), ServiceHealth, timeout=0.5
            )
            if isinstance(reply, Accepted):
                return
            if self._task.done():
                self._task.result()
            await asyncio.sleep(0.05)
        raise AssertionError("the conference service did not start")

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            await self._task

    async def ask(self, op: str, body: Any, *, org: str = ORG, user: str = "user-1") -> Any:
        caller = Caller(organization_id=org, user_id=user, request_id=uid())
        operation = api.OPERATIONS[op]
        subject = subjects.meeting_command(op) if operation.kind == "cmd" else subjects.meeting_query(op)
        return await self.rpc.request(subject, Request(caller=caller, body=body), operation.result)

    async def ok(self, op: str, body: Any, **kwargs: Any) -> Any:
        reply = await self.ask(op, body, **kwargs)
        assert isinstance(reply, Accepted), reply
        return reply.value

    async def refused(self, op: str, body: Any, **kwargs: Any) -> tuple[int, str]:
        reply = await self.ask(op, body, **kwargs)
        assert isinstance(reply, Rejected), reply
        return reply.status, reply.message

    async def conference_events(self, conference_id: str) -> list[Any]:
        """The conference's events as published on PARLEY_CONFERENCE (its creation included)."""
        decoded = [
            msgspec.convert(doc, conference_api.AnyConferenceEvent)
            for doc in await self._read(CONFERENCE_STREAM, subjects.CONFERENCE_EVENTS_ALL)
            if doc.get("conferenceId") == conference_id
        ]
        return decoded

    async def meeting_events(self) -> list[dict[str, Any]]:
        return await self._read(MEETING_STREAM, subjects.MEETING_EVENTS_ALL)

    async def _read(self, stream: str, subject: str) -> list[dict[str, Any]]:
        subscription = await self.js.subscribe(
            subject,
            stream=stream,
            ordered_consumer=True,
            deliver_policy=DeliverPolicy.ALL,
        )
        found: list[dict[str, Any]] = []
        try:
            while True:
                try:
                    msg = await subscription.next_msg(timeout=0.3)
                except (TimeoutError, nats.errors.TimeoutError):
                    return found
                found.append(msgspec.json.decode(msg.data))
        finally:
            await subscription.unsubscribe()


@pytest.fixture
async def service(nc: Client, nats_server: NatsServer, tmp_path: Path) -> AsyncIterator[Service]:
    running = Service(nc, nats_server.url, tmp_path)
    await running.start()
    yield running
    await running.stop()


async def eventually(check: Any, timeout: float = 5.0) -> Any:
    for _ in range(int(timeout / 0.05)):
        result = await check()
        if result:
            return result
        await asyncio.sleep(0.05)
    raise AssertionError("condition not reached")


# ---------------------------------------------------------------- SourceFuse


async def test_create_makes_the_conference_with_the_meeting_and_its_recorder(service: Service) -> None:
    meeting = await service.ok("createMeeting", api.CreateMeeting(dialect="sourcefuse", archiving=True))
    assert len(meeting.meeting_id) == 10 and meeting.organization_id == ORG
    events = await service.conference_events(meeting.conference_id)
    created = events[0]
    assert isinstance(created, conference_api.ConferenceCreatedEvent)
    assert created.meeting_id == meeting.meeting_id
    assert created.metadata["RECORDER"].value == '{"on":true}'
    # The empty timeout (0.2 s here) leaves a meeting's conference alone.
    await asyncio.sleep(0.8)
    assert not any(
        isinstance(e, conference_api.ConferenceEndedEvent)
        for e in await service.conference_events(meeting.conference_id)
    )
    published = await service.meeting_events()
    assert [e["type"] for e in published if e["meetingId"] == meeting.meeting_id] == ["MeetingCreatedEvent"]


async def test_pass_then_end_ends_the_conference_and_expires_tokens(service: Service) -> None:
    meeting = await service.ok("createMeeting", api.CreateMeeting(dialect="sourcefuse"))
    ref = api.MeetingRef(dialect="sourcefuse", meeting_id=meeting.meeting_id)
    meeting_pass = await service.ok(
        "issuePass",
        api.IssuePass(dialect="sourcefuse", meeting_id=meeting.meeting_id, role="moderator", data="alice"),
    )
    assert meeting_pass.grant == api.MeetingGrant(
        meeting_id=meeting.meeting_id, conference_id=meeting.conference_id, role="moderator", attendee="alice"
    )
    got = await service.ok("getMeeting", api.GetMeeting(dialect="sourcefuse", meeting_id=meeting.meeting_id))
    assert got.started_at is not None
    ended = await service.ok("endMeeting", ref)
    assert ended.ended_at is not None

    async def conference_ended() -> Any:
        events = await service.conference_events(meeting.conference_id)
        return [e for e in events if isinstance(e, conference_api.ConferenceEndedEvent)]

    (end,) = await eventually(conference_ended)
    assert end.reason == "MEETING_ENDED"
    assert await service.refused("endMeeting", ref) == (400, "Meeting has already been ended!")
    assert await service.refused(
        "issuePass", api.IssuePass(dialect="sourcefuse", meeting_id=meeting.meeting_id)
    ) == (400, "This meeting has been expired")
    types = [e["type"] for e in await service.meeting_events() if e["meetingId"] == meeting.meeting_id]
    assert types == ["MeetingCreatedEvent", "MeetingStartedEvent", "MeetingEndedEvent"]


async def test_pass_checks_in_the_real_services_order(service: Service) -> None:
    scheduled = await service.ok(
        "createMeeting",
        api.CreateMeeting(dialect="sourcefuse", scheduled=True, starts_at=iso(later(hours=1))),
    )
    pass_of = api.IssuePass(dialect="sourcefuse", meeting_id=scheduled.meeting_id)
    assert await service.refused("issuePass", msgspec.structs.replace(pass_of, expire_time="x")) == (
        400,
        "Expire time is not in correct format.",
    )
    past = str(int(later(minutes=-1).timestamp() * 1000))
    assert await service.refused(
        "issuePass", api.IssuePass(dialect="sourcefuse", meeting_id="nosuchmeet", expire_time=past)
    ) == (400, "Expire time can not be in past.")
    unknown = api.IssuePass(dialect="sourcefuse", meeting_id="nosuchmeet")
    assert await service.refused("issuePass", unknown) == (400, "Session does not exist")
    assert await service.refused("issuePass", pass_of, org=OTHER_ORG) == (404, "Session does not exist")
    assert await service.refused("issuePass", pass_of) == (
        400,
        "Meeting can only be started 15 minutes before\n         the scheduled time",
    )
    expires = iso(later(hours=2))
    soon = await service.ok(
        "createMeeting",
        api.CreateMeeting(dialect="sourcefuse", scheduled=True, starts_at=iso(later(minutes=10))),
    )
    ok = await service.ok(
        "issuePass", api.IssuePass(dialect="sourcefuse", meeting_id=soon.meeting_id, expire_time=expires)
    )
    assert ok.grant.role == "publisher" and ok.expires_at is not None


async def test_update_and_end_messages(service: Service) -> None:
    assert await service.refused(
        "updateMeeting", api.UpdateMeeting(dialect="sourcefuse", meeting_id="nosuchmeet", scheduled=False)
    ) == (404, "Meeting link nosuchmeet not found")
    assert await service.refused(
        "endMeeting", api.MeetingRef(dialect="sourcefuse", meeting_id="nosuchmeet")
    ) == (
        404,
        "Meeting Not Found",
    )
    meeting = await service.ok("createMeeting", api.CreateMeeting(dialect="sourcefuse"))
    at = later(days=1).replace(microsecond=0)
    updated = await service.ok(
        "updateMeeting",
        api.UpdateMeeting(
            dialect="sourcefuse", meeting_id=meeting.meeting_id, scheduled=True, starts_at=iso(at)
        ),
    )
    assert updated.starts_at == at
    # Another organization's meeting, or the other dialect asking, is unknown.
    ref = api.GetMeeting(dialect="sourcefuse", meeting_id=meeting.meeting_id)
    assert (await service.refused("getMeeting", ref, org=OTHER_ORG))[0] == 404
    assert (
        await service.refused("getMeeting", api.GetMeeting(dialect="coviu", meeting_id=meeting.meeting_id))
    )[0] == 404


# ---------------------------------------------------------------- Coviu


def coviu_session(
    *invitations: api.InvitationFields, starts: datetime | None = None, length: timedelta = timedelta(hours=1)
) -> api.CreateMeeting:
    start = (starts or later(hours=1)).replace(microsecond=0)
    return api.CreateMeeting(
        dialect="coviu",
        starts_at=start.strftime("%a, %d %b %Y %H:%M:%S GMT"),
        ends_at=iso(start + length),
        invitations=invitations,
    )


async def test_coviu_session_lifecycle(service: Service) -> None:
    session = await service.ok(
        "createMeeting",
        coviu_session(api.InvitationFields(role="moderator", state="a"), api.InvitationFields(lobby=True)),
    )
    assert session.starts_at_text is not None and session.starts_at_text.endswith("GMT")
    assert [i.role for i in session.invitations] == ["moderator", "publisher"]
    ref = api.MeetingRef(dialect="coviu", meeting_id=session.meeting_id)
    added = await service.ok(
        "invite",
        api.Invite(
            dialect="coviu", meeting_id=session.meeting_id, invitation=api.InvitationFields(state="b")
        ),
    )
    got = await service.ok(
        "getInvitation", api.InvitationRef(dialect="coviu", invitation_id=added.invitation_id)
    )
    assert got == added
    removed = await service.ok(
        "removeInvitation", api.InvitationRef(dialect="coviu", invitation_id=added.invitation_id)
    )
    assert removed.removed_at is not None
    listed = await service.ok(
        "listInvitations", api.ListInvitations(dialect="coviu", meeting_id=session.meeting_id)
    )
    assert len(listed.items) == 2
    with_removed = await service.ok(
        "listInvitations",
        api.ListInvitations(dialect="coviu", meeting_id=session.meeting_id, include_removed=True),
    )
    assert len(with_removed.items) == 3
    canceled = await service.ok("cancelMeeting", ref)
    assert canceled.canceled_at is not None
    assert (
        await service.refused("getMeeting", api.GetMeeting(dialect="coviu", meeting_id=session.meeting_id))
    )[0] == 404
    page = await service.ok("listMeetings", api.ListMeetings(dialect="coviu", include_canceled=True))
    assert [m.meeting_id for m in page.items] == [session.meeting_id]
    assert (await service.ok("listMeetings", api.ListMeetings(dialect="coviu"))).items == ()

    async def conference_ended() -> Any:
        events = await service.conference_events(session.conference_id)
        return [e for e in events if isinstance(e, conference_api.ConferenceEndedEvent)]

    (end,) = await eventually(conference_ended)
    assert end.reason == "MEETING_CANCELED"


async def test_coviu_paging_order_and_state_filter(service: Service) -> None:
    created = []
    for n in range(5):
        state = "odd" if n % 2 else "even"
        created.append(
            await service.ok(
                "createMeeting", coviu_session(api.InvitationFields(state=state), starts=later(hours=10 - n))
            )
        )
    ids = [m.meeting_id for m in created]
    first = await service.ok("listMeetings", api.ListMeetings(dialect="coviu", page_size=2))
    assert [m.meeting_id for m in first.items] == ids[:2]
    assert (first.page_count, first.more) == (3, True)
    last = await service.ok("listMeetings", api.ListMeetings(dialect="coviu", page_size=2, page=2))
    assert [m.meeting_id for m in last.items] == ids[4:] and not last.more
    newest = await service.ok("listMeetings", api.ListMeetings(dialect="coviu", page_size=2, reverse=True))
    assert [m.meeting_id for m in newest.items] == [ids[4], ids[3]]
    # A time filter orders by start time (created later = starting earlier here).
    by_start = await service.ok("listMeetings", api.ListMeetings(dialect="coviu", starts_from=later(hours=7)))
    assert [m.meeting_id for m in by_start.items] == [ids[2], ids[1], ids[0]]
    odd = await service.ok("listMeetings", api.ListMeetings(dialect="coviu", state="odd"))
    assert [m.meeting_id for m in odd.items] == [ids[1], ids[3]] and odd.page_count == 1
    # Removing the invitation that carried the state drops the meeting from the filter.
    await service.ok(
        "removeInvitation",
        api.InvitationRef(dialect="coviu", invitation_id=created[1].invitations[0].invitation_id),
    )
    odd = await service.ok("listMeetings", api.ListMeetings(dialect="coviu", state="odd"))
    assert [m.meeting_id for m in odd.items] == [ids[3]]
    # Another organization sees none of them.
    assert (await service.ok("listMeetings", api.ListMeetings(dialect="coviu"), org=OTHER_ORG)).items == ()
