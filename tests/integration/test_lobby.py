"""Meeting grants and the lobby end to end: real gateway, conference service, media node and aiortc peers.

A host (grant moderator) joins and publishes; a guest (grant publisher + lobby) joins and waits: it is told
so, gets no events but its own, may not view; the host is pushed the lobby event and admits it; the guest
then views the host's stream and decodes its frames. Tokens are minted with the gateway's `TokenIssuer` and
a grant, as the meeting APIs mint them.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
from parley_common.contracts.meeting import MeetingGrant, MeetingRole
from parley_gateway.identity import TokenIssuer

from tests.integration.helpers import ORG, SECRET, Api, Stack, token, unique
from tests.integration.media_api import publish, view
from tests.integration.peers import GREEN, Peers, close_to, skip_without_interface
from tests.integration.test_media import node_ready
from tests.integration.test_push_channel import nothing_arrives, receive_type

skip_without_interface()
KEEPALIVE = 3.0


@pytest.fixture(scope="module")
def lobby_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    running = Stack(
        tmp_path_factory.mktemp("lobby"),
        media=1,
        env={
            "PARLEY_LONGPOLL_SECONDS": "1",
            "PARLEY_OPTIONAL_SERVICES": "media",
            # Short keep-alive, so a guest that stops knocking leaves the lobby within the test.
            "PARLEY_KEEPALIVE_SECONDS": str(KEEPALIVE),
            "PARLEY_KEEPALIVE_GRACE_SECONDS": str(KEEPALIVE),
            "PARLEY_SWEEP_INTERVAL_SECONDS": "0.2",
            "PARLEY_PRESENCE_INTERVAL_SECONDS": "0.3",
        },
    )
    running.start()
    asyncio.run(node_ready(running))
    yield running
    running.stop()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


@pytest.fixture
async def peers() -> AsyncIterator[Peers]:
    running = Peers()
    yield running
    await running.close()


def meeting_token(
    conference_id: str, role: MeetingRole, *, lobby: bool = False, user: str | None = None, **window: Any
) -> str:
    grant = MeetingGrant(meeting_id="m-1", conference_id=conference_id, role=role, lobby=lobby)
    return TokenIssuer(secret=SECRET).issue(
        user_id=user or str(uuid.uuid4()), organization_id=ORG, grant=grant, **window
    )


async def meeting(stack: Stack, session: aiohttp.ClientSession) -> str:
    """A conference created by a conference API user (the meeting core creates it so, in-process)."""
    return await Api(session, stack.url, token("organizer")).create(conferenceId=str(uuid.uuid4()))


@asynccontextmanager
async def channel(api: Api, endpoint: str) -> AsyncIterator[aiohttp.ClientWebSocketResponse]:
    url = api.base_url.replace("http", "ws") + "/rtc-api/events/ws"
    params = {"userEndpointId": endpoint, "access_token": api.bearer or ""}
    async with api.session.ws_connect(url, params=params) as ws:
        yield ws


async def test_a_guest_waits_in_the_lobby_until_the_host_admits_it_then_views_the_host(
    lobby_stack: Stack, session: aiohttp.ClientSession, peers: Peers
) -> None:
    conference_id = await meeting(lobby_stack, session)
    host_ep, guest_ep = unique("host"), unique("guest")
    host = Api(session, lobby_stack.url, meeting_token(conference_id, "moderator"))
    guest = Api(session, lobby_stack.url, meeting_token(conference_id, "publisher", lobby=True))

    joined = await host.join(conference_id, host_ep)
    assert joined.body == {}  # a host goes straight in
    stream_id = await publish(host, conference_id, host_ep, peers.publisher(GREEN))

    async with channel(host, host_ep) as host_ws, channel(guest, guest_ep) as guest_ws:
        waiting = await guest.join(conference_id, guest_ep, metadata={"name": "Gus"})
        assert waiting.body == {"lobby": True}

        # The guest is told it waits (its own lobby event, pushed and polled) and nothing else.
        entered = await receive_type(guest_ws, "ConferenceLobbyEnteredEvent")
        assert entered["userEndpointId"] == guest_ep
        polled = await guest.events(conference_id, 0, endpoint=guest_ep)
        assert polled.status == 200, polled
        assert [e["type"] for e in polled.body] == ["ConferenceLobbyEnteredEvent"]
        # No media while waiting.
        refused = await guest.post(
            "viewStream",
            {
                "conferenceId": conference_id,
                "userEndpointId": guest_ep,
                "streamId": {"id": stream_id},
                "sdpOffer": await peers.viewer().offer(),
            },
        )
        assert refused.status == 403, refused
        assert (
            refused.body["message"]
            == f"userEndpointId {guest_ep} is waiting in the lobby of conference {conference_id}"
        )

        # The host is pushed the lobby event and sees the waiting guest in the conference.
        pushed = await receive_type(host_ws, "ConferenceLobbyEnteredEvent", userEndpointId=guest_ep)
        assert pushed["grant"]["lobby"] is True
        lobby = (await host.conference(conference_id))["lobby"]
        assert [(w["id"], w["metadata"]) for w in lobby] == [(guest_ep, {"name": "Gus"})]

        # A change in the call while the guest waits: the guest hears nothing of it.
        changed = await host.post(
            "updateParticipantMetadata",
            {"conferenceId": conference_id, "userEndpointId": host_ep, "newMetadata": {"hand": "up"}},
        )
        assert changed.status == 204, changed
        await receive_type(host_ws, "ConferenceParticipantMetadataUpdatedEvent")
        assert await nothing_arrives(guest_ws, within=0.5)

        # Only a moderator admits: the waiting guest itself may not.
        self_admit = await guest.post(
            "admitLobbyEndpoint",
            {"conferenceId": conference_id, "userEndpointId": guest_ep, "lobbyEndpointId": guest_ep},
        )
        assert self_admit.status == 403, self_admit
        admitted = await host.post(
            "admitLobbyEndpoint",
            {"conferenceId": conference_id, "userEndpointId": host_ep, "lobbyEndpointId": guest_ep},
        )
        assert admitted.status == 204, admitted
        event = await receive_type(guest_ws, "ConferenceLobbyAdmittedEvent")
        assert (event["lobbyEndpointId"], event["userEndpointId"]) == (guest_ep, host_ep)
        conference = await host.conference(conference_id)
        assert conference["lobby"] == []
        assert guest_ep in [p["id"] for p in conference["participants"]]

        # Let in, the guest views the host's stream and decodes its frames.
        viewer = peers.viewer(("video",))
        await view(guest, conference_id, guest_ep, stream_id, viewer)
        await viewer.wait_frames(10, timeout=15)
        assert close_to(viewer.average_color(), GREEN), viewer.average_color()
        # And now it hears the call's events like any participant.
        polled = await guest.events(conference_id, 0, endpoint=guest_ep)
        assert "ConferenceStreamPublishedEvent" in [e["type"] for e in polled.body]


async def test_a_rejected_guest_leaves_the_lobby_and_may_knock_again(
    lobby_stack: Stack, session: aiohttp.ClientSession
) -> None:
    conference_id = await meeting(lobby_stack, session)
    host_ep, guest_ep = unique("host"), unique("guest")
    host = Api(session, lobby_stack.url, meeting_token(conference_id, "moderator"))
    guest = Api(session, lobby_stack.url, meeting_token(conference_id, "publisher", lobby=True))
    await host.join(conference_id, host_ep)
    async with channel(guest, guest_ep) as guest_ws:
        await guest.join(conference_id, guest_ep)
        rejected = await host.post(
            "rejectLobbyEndpoint",
            {"conferenceId": conference_id, "userEndpointId": host_ep, "lobbyEndpointId": guest_ep},
        )
        assert rejected.status == 204, rejected
        await receive_type(guest_ws, "ConferenceLobbyRejectedEvent", lobbyEndpointId=guest_ep)
    assert (await host.conference(conference_id))["lobby"] == []
    unknown = await host.post(
        "admitLobbyEndpoint",
        {"conferenceId": conference_id, "userEndpointId": host_ep, "lobbyEndpointId": guest_ep},
    )
    assert unknown.status == 404, unknown
    again = await guest.join(conference_id, guest_ep)
    assert again.body == {"lobby": True}


async def test_grant_rules_over_http(
    lobby_stack: Stack, session: aiohttp.ClientSession, peers: Peers
) -> None:
    conference_id = await meeting(lobby_stack, session)
    sub_ep = unique("sub")
    other_id = await meeting(lobby_stack, session)
    subscriber = Api(session, lobby_stack.url, meeting_token(conference_id, "subscriber"))
    await subscriber.join(conference_id, sub_ep)

    # A subscriber may not publish.
    refused = await subscriber.post(
        "publishStream",
        {
            "conferenceId": conference_id,
            "userEndpointId": sub_ep,
            "conferenceStreamType": "CAM",
            "sdpOffer": await peers.publisher(audio=False).offer(),
        },
    )
    assert (refused.status, refused.body["message"]) == (403, "a subscriber may not publish")
    # Nor end the conference (only a moderator does).
    ended = await subscriber.post("end", {"conferenceId": conference_id, "userEndpointId": sub_ep})
    assert (ended.status, ended.body["message"]) == (403, "only a moderator may end the conference")

    # A grant for another conference: 403 on its commands and queries.
    for response in (
        await subscriber.post("join", {"conferenceId": other_id, "userEndpointId": sub_ep}),
        await subscriber.get(f"/rtc-api/conferences/{other_id}"),
        await subscriber.events(other_id, 0),
    ):
        assert response.status == 403, response
        assert response.body["message"] == f"this meeting token is not valid for conference {other_id}"

    # A meeting token is for the conference API only: a chat route answers 403.
    chat = await subscriber.get("/rooms")
    assert (chat.status, chat.body["message"]) == (403, "a meeting token is valid only on the conference API")


async def test_a_meeting_token_outside_its_window_says_when_the_session_opens_or_closed(
    lobby_stack: Stack, session: aiohttp.ClientSession
) -> None:
    conference_id = await meeting(lobby_stack, session)
    now = datetime.now(UTC).replace(microsecond=0)
    opens = now + timedelta(hours=1)
    early = Api(
        session,
        lobby_stack.url,
        meeting_token(conference_id, "publisher", not_before=opens, expires_at=opens + timedelta(hours=1)),
    )
    closed = now - timedelta(hours=1)
    late = Api(
        session,
        lobby_stack.url,
        meeting_token(conference_id, "publisher", not_before=closed - timedelta(hours=1), expires_at=closed),
    )
    body = {"conferenceId": conference_id, "userEndpointId": unique("ep")}
    too_early = await early.post("join", body)
    assert (too_early.status, too_early.body["message"]) == (
        401,
        f"the session opens at {opens.strftime('%Y-%m-%dT%H:%M:%SZ')}",
    )
    too_late = await late.post("join", body)
    assert (too_late.status, too_late.body["message"]) == (
        401,
        f"the session closed at {closed.strftime('%Y-%m-%dT%H:%M:%SZ')}",
    )


async def test_keep_alive_applies_to_a_waiting_guest(
    lobby_stack: Stack, session: aiohttp.ClientSession
) -> None:
    conference_id = await meeting(lobby_stack, session)
    organizer = Api(session, lobby_stack.url, token("organizer"))
    guest = Api(session, lobby_stack.url, meeting_token(conference_id, "publisher", lobby=True))
    guest_ep = unique("guest")
    assert (await guest.join(conference_id, guest_ep)).body == {"lobby": True}
    assert [w["id"] for w in (await organizer.conference(conference_id))["lobby"]] == [guest_ep]
    # The guest goes silent (no push channel, no polls): after keep-alive and grace it leaves the lobby.
    deadline = time.monotonic() + 4 * KEEPALIVE
    lobby = (await organizer.conference(conference_id))["lobby"]
    while lobby and time.monotonic() < deadline:
        await asyncio.sleep(0.3)
        lobby = (await organizer.conference(conference_id))["lobby"]
    assert lobby == []
    events = (await organizer.events(conference_id, 0)).body
    (rejected,) = [e for e in events if e["type"] == "ConferenceLobbyRejectedEvent"]
    assert (rejected["lobbyEndpointId"], rejected["reason"]) == (guest_ep, "TIMEOUT")
