"""Guarded conferences (room meetings) over the real stack: the conference service asks an admission
responder (here the test's own, on real NATS, answering from a set the test controls) on every join."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import msgspec
import nats
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from parley_common.contracts import conference as contracts
from parley_common.contracts.base import Empty
from parley_common.contracts.chat import AdmissionQuery, Admitted
from parley_common.contracts.rpc import Accepted, Caller, Rejected, Request
from parley_common.messaging import subjects
from parley_common.messaging.codec import encode
from parley_common.messaging.rpc import RpcClient

from tests.integration.helpers import ORG, Api, Stack, unique

_query_decoder = msgspec.json.Decoder(Request[AdmissionQuery])


class Guard:
    """An admission responder: admits the users in `admitted`, records every query it is asked."""

    def __init__(self, nc: Client) -> None:
        self.nc = nc
        self.subject = f"test.admit.{uuid.uuid4().hex}"
        self.admitted: set[str] = set()
        self.asked: list[AdmissionQuery] = []
        self._sub: Subscription | None = None

    async def start(self) -> Guard:
        async def answer(msg: Msg) -> None:
            query = _query_decoder.decode(msg.data).body
            self.asked.append(query)
            await msg.respond(encode(Accepted(value=Admitted(admitted=query.user_id in self.admitted))))

        self._sub = await self.nc.subscribe(self.subject, cb=answer)
        return self

    async def stop(self) -> None:
        assert self._sub is not None
        await self._sub.unsubscribe()
        await self.nc.flush()


@pytest.fixture
async def nc(stack: Stack) -> AsyncIterator[Client]:
    connection = await nats.connect(stack.nats_url)
    yield connection
    await connection.drain()


@pytest.fixture
async def guard(nc: Client) -> Guard:
    return await Guard(nc).start()


def caller(user: str = "alice", *scopes: str) -> Caller:
    return Caller(organization_id=ORG, user_id=user, request_id=uuid.uuid4().hex, scopes=scopes)


async def create_guarded(nc: Client, subject: str, resource: str = "room-1", **kw: str) -> str:
    conference_id = kw.get("conference_id") or unique("meeting")
    body = contracts.CreateGuardedConference(
        conference_id=conference_id,
        admission=contracts.Admission(subject=subject, resource=resource),
        metadata={"roomId": resource},
    )
    reply = await RpcClient(nc, timeout=5).request(
        subjects.CONFERENCE_CREATE_GUARDED, Request(caller=caller(), body=body), contracts.ConferenceSummary
    )
    assert isinstance(reply, Accepted), reply
    assert reply.value.id == conference_id
    return conference_id


async def join(api_: Api, conference_id: str, endpoint: str) -> int:
    body = {"conferenceId": conference_id, "userEndpointId": endpoint}
    return (await api_.post("join", body)).status


async def service_end(nc: Client, conference_id: str) -> Accepted[Empty] | Rejected:
    body = contracts.EndConferenceWebCommand(
        conference_id=conference_id, user_endpoint_id="chat", reason="ROOM_DELETED"
    )
    request = Request(caller=caller("parley-chat", contracts.SERVICE_SCOPE), body=body)
    return await RpcClient(nc, timeout=5).request(subjects.conference_command("end"), request, Empty)


async def test_an_admitted_user_joins_and_a_refused_one_gets_403(api: Api, nc: Client, guard: Guard) -> None:
    guard.admitted.add("bob")
    meeting = await create_guarded(nc, guard.subject, resource="room-42")
    assert await join(api.as_user("bob"), meeting, "bob-1") == 200
    refused = await api.as_user("mallory").post("join", {"conferenceId": meeting, "userEndpointId": "m-1"})
    assert refused.status == 403
    assert "mallory" in refused.body["message"] and meeting in refused.body["message"]
    assert refused.body["traceId"]
    assert [(q.organization_id, q.user_id, q.resource) for q in guard.asked] == [
        (ORG, "bob", "room-42"),
        (ORG, "mallory", "room-42"),
    ]
    participants = (await api.conference(meeting))["participants"]
    assert [(p["userId"], p["id"]) for p in participants] == [("bob", "bob-1")]
    assert participants[0]["joinedAt"].endswith("Z")


async def test_a_guarded_conference_id_taken_conflicts(api: Api, nc: Client, guard: Guard) -> None:
    meeting = await create_guarded(nc, guard.subject)
    body = contracts.CreateGuardedConference(
        conference_id=meeting, admission=contracts.Admission(subject=guard.subject, resource="room-1")
    )
    reply = await RpcClient(nc, timeout=5).request(
        subjects.CONFERENCE_CREATE_GUARDED, Request(caller=caller(), body=body), contracts.ConferenceSummary
    )
    assert isinstance(reply, Rejected) and reply.status == 409


async def test_create_guarded_is_not_served_over_http(api: Api) -> None:
    conference_id = unique()
    body = {"conferenceId": conference_id, "admission": {"subject": "x.y", "resource": "r"}}
    # No POST route: the path only matches GET /rtc-api/conferences/{id}.
    assert (await api.post("createGuarded", body)).status == 405
    assert (await api.get(f"/rtc-api/conferences/{conference_id}")).status == 404


async def test_a_guard_that_does_not_answer_makes_the_join_503(api: Api, nc: Client, guard: Guard) -> None:
    guard.admitted.add("bob")
    meeting = await create_guarded(nc, guard.subject)
    await guard.stop()
    response = await api.as_user("bob").post("join", {"conferenceId": meeting, "userEndpointId": "bob-1"})
    assert response.status == 503
    assert response.body["traceId"]
    assert (await api.conference(meeting))["participants"] == []


async def test_a_removed_member_cannot_rejoin_even_with_the_same_endpoint(
    api: Api, nc: Client, guard: Guard
) -> None:
    guard.admitted.update({"bob", "carol"})
    meeting = await create_guarded(nc, guard.subject)
    bob = api.as_user("bob")
    assert await join(bob, meeting, "bob-1") == 200
    assert await join(api.as_user("carol"), meeting, "carol-1") == 200
    guard.admitted.discard("bob")  # removed from the room
    assert await join(bob, meeting, "bob-1") == 403  # a rejoin is asked again
    assert await join(bob, meeting, "bob-2") == 403
    # ...and the service takes him out of the meeting at once.
    request = Request(
        caller=caller("parley-chat", contracts.SERVICE_SCOPE),
        body=contracts.RemoveParticipantCommand(conference_id=meeting, user_id="bob"),
    )
    reply = await RpcClient(nc, timeout=5).request(
        subjects.conference_command("removeParticipant"), request, Empty
    )
    assert isinstance(reply, Accepted), reply
    participants = (await api.conference(meeting))["participants"]
    assert [p["userId"] for p in participants] == ["carol"]
    events = (await api.events(meeting, 0)).body  # the seed's events answer: a list
    removals = [e for e in events if e["type"] == "ConferenceLeftEvent"]
    assert [(e["userId"], e["reason"]) for e in removals] == [("bob", "REMOVED")]


async def test_a_user_cannot_remove_participants(api: Api, nc: Client, guard: Guard) -> None:
    guard.admitted.add("bob")
    meeting = await create_guarded(nc, guard.subject)
    assert await join(api.as_user("bob"), meeting, "bob-1") == 200
    request = Request(
        caller=caller("alice"), body=contracts.RemoveParticipantCommand(conference_id=meeting, user_id="bob")
    )
    reply = await RpcClient(nc, timeout=5).request(
        subjects.conference_command("removeParticipant"), request, Empty
    )
    assert isinstance(reply, Rejected) and reply.status == 403


async def test_unguarded_conferences_never_ask_a_guard(api: Api, guard: Guard) -> None:
    conference_id = await api.create(conferenceId=unique())
    assert await join(api.as_user("mallory"), conference_id, "m-1") == 200
    assert await join(api.as_user("mallory"), conference_id, "m-1") == 200
    assert guard.asked == []


async def test_a_service_ends_the_conference_a_user_outside_it_cannot(
    api: Api, nc: Client, guard: Guard
) -> None:
    guard.admitted.add("bob")
    meeting = await create_guarded(nc, guard.subject)
    assert await join(api.as_user("bob"), meeting, "bob-1") == 200
    # Over HTTP, today's rule: only a participant's own endpoint ends it.
    outsider = await api.as_user("carol").post("end", {"conferenceId": meeting, "userEndpointId": "carol-1"})
    assert outsider.status == 403
    ended = await service_end(nc, meeting)
    assert isinstance(ended, Accepted), ended
    events = (await api.events(meeting, 0)).body
    assert events[-1]["type"] == "ConferenceEndedEvent" and events[-1]["reason"] == "ROOM_DELETED"
    # Again, or an unknown conference: what the chat outbox counts as done.
    again = await service_end(nc, meeting)
    assert isinstance(again, Rejected) and again.status == 409
    unknown = await service_end(nc, unique("gone"))
    assert isinstance(unknown, Rejected) and unknown.status == 404


async def test_a_stored_event_gets_only_the_streams_ack_not_a_reply_from_a_replica(nc: Client) -> None:
    """Replicas listen to each other's events on a plain subscription. A JetStream publish is a request: the
    listener must not answer it (an empty reply racing the stream's PubAck fails the publisher's outbox)."""
    inbox = nc.new_inbox()
    replies: list[bytes] = []

    async def collect(msg: Msg) -> None:
        replies.append(msg.data)

    sub = await nc.subscribe(inbox, cb=collect)
    # An event the replica's read model ignores (unknown conference), stored by the stream.
    event = contracts.ConferenceLeftEvent(
        id=uuid.uuid4().hex,
        conference_id=unique("nobody"),
        conference_version=1,
        organization_id=ORG,
        timestamp=datetime.now(UTC),
        user_endpoint_id="e1",
    )
    await nc.publish(
        subjects.conference_event("ConferenceLeftEvent"),
        encode(event),
        reply=inbox,
        headers={"Nats-Msg-Id": event.id},
    )
    await asyncio.sleep(1.0)
    await sub.unsubscribe()
    assert len(replies) == 1, replies
    assert b'"stream"' in replies[0]
