"""Meeting tokens at the gateway: the grant claim, the conference API alone, the session window's messages,
and the push channel's filter for endpoints waiting in a lobby.

The application is the real one (`build_app`); services are stood in for by a recorder of the requests the
gateway would send (unit tests of the gateway's layer; the lobby end to end is in tests/integration).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import jwt
import msgspec
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from parley_common.contracts.meeting import MeetingGrant
from parley_common.contracts.rpc import Accepted, Rejected, Request
from parley_common.messaging import subjects
from parley_gateway.app import build_app
from parley_gateway.chats import chat_operations
from parley_gateway.conferences import conference_operations
from parley_gateway.identity import TokenIssuer, TokenVerifier, Unauthorized
from parley_gateway.push import EventRouting, PushConnection, PushHub
from parley_gateway.settings import Settings
from parley_gateway.waiters import ConferenceWaiters

SECRET = "test-secret-that-is-long-enough-for-hs256!"
GRANT = MeetingGrant(meeting_id="m1", conference_id="c1", role="publisher", lobby=True, attendee="p1")
ROOM = "c3631f02-ff67-42b8-8775-18c47f52a678"


class Recorder:
    def __init__(self) -> None:
        self.sent: list[tuple[str, Request[Any]]] = []

    async def request(
        self, subject: str, request: Any, value_type: Any, *, timeout: float | None = None
    ) -> Accepted[Any] | Rejected:
        self.sent.append((subject, request))
        return Rejected(status=418, message="recorded")


def meeting_token(grant: MeetingGrant = GRANT, **window: Any) -> str:
    return TokenIssuer(secret=SECRET).issue(user_id="guest-1", organization_id="acme", grant=grant, **window)


@pytest.fixture
def rpc() -> Recorder:
    return Recorder()


@pytest.fixture
async def client(rpc: Recorder) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    operations = [
        *conference_operations(
            cast(Any, rpc), ConferenceWaiters(), cast(Any, None), longpoll_seconds=0.1, media_timeout=1.0
        ),
        *chat_operations(cast(Any, rpc)),
    ]
    app = build_app(operations, TokenVerifier(secret=SECRET), Settings.from_env())
    async with TestClient(TestServer(app)) as test_client:
        yield test_client


# --- identity --------------------------------------------------------------------------------------------


def test_the_grant_claim_becomes_the_principals_grant() -> None:
    token = meeting_token()
    claims = jwt.decode(token, SECRET, algorithms=["HS256"])
    assert claims["meeting"] == {
        "meetingId": "m1",
        "conferenceId": "c1",
        "role": "publisher",
        "lobby": True,
        "attendee": "p1",
    }
    assert TokenVerifier(secret=SECRET).verify(token).grant == GRANT


def test_a_token_without_the_claim_has_no_grant() -> None:
    token = TokenIssuer(secret=SECRET).issue(user_id="u", organization_id="acme")
    assert TokenVerifier(secret=SECRET).verify(token).grant is None


@pytest.mark.parametrize(
    "claim", [{"conferenceId": "c1"}, "c1", {"meetingId": "m", "conferenceId": "c", "role": "x"}]
)
def test_a_malformed_grant_claim_is_401(claim: Any) -> None:
    now = int(time.time())
    token = jwt.encode(
        {"sub": "u", "org": "acme", "exp": now + 60, "meeting": claim}, SECRET, algorithm="HS256"
    )
    with pytest.raises(Unauthorized, match="token has a malformed meeting claim"):
        TokenVerifier(secret=SECRET).verify(token)


def test_before_its_window_a_meeting_token_says_when_the_session_opens() -> None:
    opens = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=2)
    token = meeting_token(not_before=opens, expires_at=opens + timedelta(hours=1))
    with pytest.raises(Unauthorized) as refused:
        TokenVerifier(secret=SECRET).verify(token)
    assert refused.value.message == f"the session opens at {opens.strftime('%Y-%m-%dT%H:%M:%SZ')}"


def test_after_its_window_a_meeting_token_says_the_session_has_closed() -> None:
    closed = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=10)
    token = meeting_token(not_before=closed - timedelta(hours=1), expires_at=closed)
    with pytest.raises(Unauthorized) as refused:
        TokenVerifier(secret=SECRET).verify(token)
    assert refused.value.message == f"the session closed at {closed.strftime('%Y-%m-%dT%H:%M:%SZ')}"


async def test_a_cached_meeting_token_that_expires_says_the_session_has_closed() -> None:
    expires = datetime.fromtimestamp(int(time.time()) + 2, UTC)
    token = meeting_token(expires_at=expires)
    verifier = TokenVerifier(secret=SECRET, leeway=0)
    assert verifier.verify(token).grant == GRANT  # verified once: the verdict is cached
    await asyncio.sleep(expires.timestamp() - time.time() + 0.1)
    with pytest.raises(Unauthorized) as refused:
        verifier.verify(token)
    assert refused.value.message == f"the session closed at {expires.strftime('%Y-%m-%dT%H:%M:%SZ')}"


def test_other_tokens_keep_the_generic_words() -> None:
    token = TokenIssuer(secret=SECRET).issue(
        user_id="u", organization_id="acme", expires_at=datetime.now(UTC) - timedelta(minutes=5)
    )
    with pytest.raises(Unauthorized, match=r"^token has expired$"):
        TokenVerifier(secret=SECRET).verify(token)


def test_a_forged_meeting_token_learns_nothing_about_the_window() -> None:
    opens = datetime.now(UTC) + timedelta(hours=2)
    token = TokenIssuer(secret="another-secret-that-is-long-enough-too!").issue(
        user_id="g", organization_id="acme", grant=GRANT, not_before=opens
    )
    with pytest.raises(Unauthorized, match=r"^invalid token signature$"):
        TokenVerifier(secret=SECRET).verify(token)


# --- routes ------------------------------------------------------------------------------------------------


async def test_a_meeting_token_on_a_chat_route_is_403(client: Any, rpc: Recorder) -> None:
    response = await client.get(f"/rooms/{ROOM}", headers={"Authorization": f"Bearer {meeting_token()}"})
    assert response.status == 403
    body = await response.json()
    assert body["message"] == "a meeting token is valid only on the conference API"
    assert rpc.sent == []


async def test_a_meeting_token_on_the_conference_api_carries_its_grant(client: Any, rpc: Recorder) -> None:
    response = await client.post(
        "/rtc-api/conferences/join",
        json={"conferenceId": "c1", "userEndpointId": "g1"},
        headers={"Authorization": f"Bearer {meeting_token()}"},
    )
    assert response.status == 418
    [(subject, request)] = rpc.sent
    assert subject == subjects.conference_command("join")
    assert request.caller.grant == GRANT


@pytest.mark.parametrize("op", ["admitLobbyEndpoint", "rejectLobbyEndpoint"])
async def test_the_lobby_commands_are_routed_and_documented(client: Any, rpc: Recorder, op: str) -> None:
    response = await client.post(
        f"/rtc-api/conferences/{op}",
        json={"conferenceId": "c1", "userEndpointId": "h1", "lobbyEndpointId": "g1"},
        headers={"Authorization": f"Bearer {meeting_token()}"},
    )
    assert response.status == 418
    assert [s for s, _ in rpc.sent] == [subjects.conference_command(op)]
    document = await (await client.get("/openapi.json")).json()
    operation = document["paths"][f"/rtc-api/conferences/{op}"]["post"]
    schema = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
    assert "lobbyEndpointId" in document["components"]["schemas"][schema]["required"]


# --- push: a waiting endpoint hears only its own fate ------------------------------------------------


def event(type_: str, endpoint: str | None, lobby_endpoint: str | None = None) -> tuple[EventRouting, bytes]:
    body = {"type": type_, "organizationId": "acme", "conferenceId": "c1", "userEndpointId": endpoint}
    if lobby_endpoint is not None:
        body["lobbyEndpointId"] = lobby_endpoint
    raw = msgspec.json.encode(body)
    return msgspec.json.decode(raw, type=EventRouting), raw


def test_a_waiting_endpoint_is_pushed_only_its_own_lobby_events_until_admitted() -> None:
    hub = PushHub(cast(Any, None), cast(Any, None), cast(Any, None), presence_interval=60)
    host = PushConnection(cast(Any, None), "acme", "h1", user_id="host")
    guest = PushConnection(cast(Any, None), "acme", "g1", user_id="guest")
    other = PushConnection(cast(Any, None), "acme", "g2", user_id="guest2")
    for conn in (host, guest, other):
        hub.attach(conn)
    host.conferences.add("c1")
    sequence = [
        event("ConferenceLobbyEnteredEvent", "g1"),
        event("ConferenceLobbyEnteredEvent", "g2"),
        event("ConferenceStreamPublishedEvent", "h1"),
        event("ConferenceLobbyRejectedEvent", "h1", "g2"),
        event("ConferenceLobbyAdmittedEvent", "h1", "g1"),
        event("ConferenceMetadataUpdatedEvent", "h1"),
    ]
    for routing, raw in sequence:
        hub.on_conference_event(routing, raw)

    def pushed(conn: PushConnection) -> list[tuple[str, str | None]]:
        frames = []
        while not conn._outgoing.empty():
            frame = msgspec.json.decode(conn._outgoing.get_nowait())
            frames.append((frame["type"], frame.get("lobbyEndpointId") or frame["userEndpointId"]))
        return frames

    assert pushed(guest) == [
        ("ConferenceLobbyEnteredEvent", "g1"),
        ("ConferenceLobbyAdmittedEvent", "g1"),
        ("ConferenceMetadataUpdatedEvent", "h1"),  # admitted: everything from now on
    ]
    assert pushed(other) == [("ConferenceLobbyEnteredEvent", "g2"), ("ConferenceLobbyRejectedEvent", "g2")]
    assert len(pushed(host)) == len(sequence)  # the moderator in the call hears every lobby event
