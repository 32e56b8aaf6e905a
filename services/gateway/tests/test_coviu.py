"""The Coviu dialect at the gateway (`/v1`): parameters checked with the seed's wording, the HTTP shapes
translated to the model's bus operations and back (roles, times as sent, `entry_url`), and the token
endpoint's two grants.

The application is the real one (`build_app`); the conference service is stood in for by a small bus of
canned answers that records what the gateway sends (unit tests of the gateway's layer; the integration
tests in `tests/integration/test_coviu_*.py` run the real stack).
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, cast
from urllib.parse import parse_qs, urlsplit

import jwt
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from parley_common.contracts import meeting as m
from parley_common.contracts.rpc import Accepted, Rejected, Request
from parley_common.messaging import subjects
from parley_gateway.app import build_app
from parley_gateway.coviu import coviu_operations
from parley_gateway.identity import OAuthClients, TokenIssuer, TokenVerifier
from parley_gateway.settings import Settings

SECRET = "test-secret-that-is-long-enough-for-hs256!"
ORG = "acme"
CLIENT = "svc"
CLIENT_SECRET = "svc-secret"
MEETING = "0b5c7c62-4a57-4c55-9a1a-6f5d7f6f9a01"
CONFERENCE = "7e0a3a6e-1d1c-4d2b-8f38-6c8e3c1d2b10"
INVITATION = "5d4c3b2a-1f0e-4d9c-8b7a-6f5e4d3c2b1a"
START = datetime(2030, 1, 2, 10, 0, tzinfo=UTC)
END = START + timedelta(hours=1)
START_TEXT = "Wed, 02 Jan 2030 10:00:00 GMT"


def invitation(role: m.MeetingRole = "moderator", lobby: bool = False, **fields: Any) -> m.InvitationView:
    values: dict[str, Any] = {
        "invitation_id": INVITATION,
        "meeting_id": MEETING,
        "role": role,
        "lobby": lobby,
        "created_at": START - timedelta(days=1),
        "display_name": "Dr Who",
    }
    return m.InvitationView(**(values | fields))


def meeting(**fields: Any) -> m.MeetingView:
    values: dict[str, Any] = {
        "meeting_id": MEETING,
        "conference_id": CONFERENCE,
        "organization_id": ORG,
        "dialect": "coviu",
        "created_by": CLIENT,
        "created_at": START - timedelta(days=1),
        "scheduled": True,
        "starts_at": START,
        "ends_at": END,
        "starts_at_text": START_TEXT,
        "ends_at_text": "2030-01-02T11:00:00Z",
        "invitations": (invitation(), invitation("publisher", True, invitation_id="guest-1")),
    }
    return m.MeetingView(**(values | fields))


class Bus:
    """Stands in for the RpcClient: records each request and answers from `answers` (op -> answer)."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, Request[Any]]] = []
        self.answers: dict[str, Callable[[Any], Accepted[Any] | Rejected]] = {
            "getMeeting": lambda _: Accepted(value=meeting()),
            "createMeeting": lambda _: Accepted(value=meeting()),
            "updateMeeting": lambda _: Accepted(value=meeting()),
            "cancelMeeting": lambda _: Accepted(value=meeting(canceled_at=START - timedelta(hours=2))),
            "listMeetings": lambda body: Accepted(
                value=m.MeetingPage(
                    items=(meeting(),), page=body.page, page_size=body.page_size, page_count=1, more=False
                )
            ),
            "invite": lambda _: Accepted(value=invitation("publisher", True)),
            "getInvitation": lambda _: Accepted(value=invitation()),
            "updateInvitation": lambda _: Accepted(value=invitation()),
            "removeInvitation": lambda _: Accepted(value=invitation(removed_at=START - timedelta(hours=1))),
            "listInvitations": lambda _: Accepted(
                value=m.InvitationPage(items=(invitation(),), page=0, page_size=200, page_count=1, more=False)
            ),
        }

    def bodies(self, op: str) -> list[Any]:
        return [request.body for subject, request in self.sent if subject.endswith(f".meeting.{op}")]

    async def request(
        self, subject: str, request: Any, value_type: Any, *, timeout: float | None = None
    ) -> Accepted[Any] | Rejected:
        self.sent.append((subject, request))
        op = subject.rsplit(".", 1)[1]
        return self.answers[op](request.body)


def bearer() -> dict[str, str]:
    return {
        "Authorization": f"Bearer {TokenIssuer(secret=SECRET).issue(user_id=CLIENT, organization_id=ORG)}"
    }


def basic(client_id: str = CLIENT, secret: str = CLIENT_SECRET) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()}


def coviu_app(bus: Bus, public_url: str | None = None) -> web.Application:
    clients = OAuthClients.parse(f"{CLIENT}:{CLIENT_SECRET}:{ORG},other:other-secret:globex")
    operations = coviu_operations(cast(Any, bus), TokenIssuer(secret=SECRET), clients, public_url)
    return build_app(operations, TokenVerifier(secret=SECRET), Settings.from_env())


@pytest.fixture
def bus() -> Bus:
    return Bus()


@pytest.fixture
async def client(bus: Bus) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    async with TestClient(TestServer(coviu_app(bus))) as test_client:
        yield test_client


Client = TestClient[web.Request, web.Application]


# --- translation in: roles, bodies, parameters ----------------------------------------------------------


@pytest.mark.parametrize(
    ("role", "grant"),
    [
        ("host", ("moderator", False)),
        ("HOST", ("moderator", False)),
        ("Guest", ("publisher", True)),
        (None, ("publisher", True)),
    ],
)
async def test_roles_in_any_case_become_grants(
    client: Client, bus: Bus, role: str | None, grant: tuple[str, bool]
) -> None:
    body = {"display_name": "x"} | ({"role": role} if role else {})
    response = await client.post(f"/v1/sessions/{MEETING}/participants", json=body, headers=bearer())
    assert response.status == 200, await response.text()
    (sent,) = bus.bodies("invite")
    assert sent == m.Invite(dialect="coviu", meeting_id=MEETING, invitation=sent.invitation)
    assert (sent.invitation.role, sent.invitation.lobby) == grant


async def test_an_unknown_role_is_400_and_reaches_no_service(client: Client, bus: Bus) -> None:
    response = await client.post(
        "/v1/sessions",
        json={"start_time": "a", "end_time": "b", "participants": [{"role": "owner"}]},
        headers=bearer(),
    )
    assert response.status == 400
    assert (await response.json())["message"].startswith("Invalid role")
    assert bus.sent == []


async def test_create_sends_the_times_as_written(client: Client, bus: Bus) -> None:
    body = {
        "start_time": START_TEXT,
        "end_time": "2030-01-02T11:00:00Z",
        "session_name": "consult",
        "participants": [{"role": "host", "display_name": "Dr Who"}, {"display_name": "Patient"}],
    }
    response = await client.post("/v1/sessions", json=body, headers=bearer())
    assert response.status == 200, await response.text()
    (sent,) = bus.bodies("createMeeting")
    assert sent.dialect == "coviu" and sent.scheduled
    assert (sent.starts_at, sent.ends_at, sent.name) == (START_TEXT, "2030-01-02T11:00:00Z", "consult")
    assert [(i.role, i.lobby) for i in sent.invitations] == [("moderator", False), ("publisher", True)]


async def test_update_ignores_fields_the_seed_does_not_have(client: Client, bus: Bus) -> None:
    # Coviu's own SDK test sends `display_name` in a session update.
    body = {"start_time": START_TEXT, "end_time": "Wed, 02 Jan 2030 11:00:00 GMT", "display_name": "x"}
    response = await client.put(f"/v1/sessions/{MEETING}", json=body, headers=bearer())
    assert response.status == 200, await response.text()
    assert bus.bodies("updateMeeting") == [
        m.UpdateMeeting(
            dialect="coviu", meeting_id=MEETING, starts_at=START_TEXT, ends_at="Wed, 02 Jan 2030 11:00:00 GMT"
        )
    ]


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("page=-1", "Invalid page"),
        ("page=x", "Invalid page"),
        ("page_size=0", "Invalid page_size"),
        ("page_size=201", "Invalid page_size"),
        ("include_canceled=maybe", "Invalid include_canceled"),
        ("deleted_participants=2", "Invalid deleted_participants"),
        ("order=sideways", "Invalid order"),
        ("start_time=yesterday", "Invalid start_time"),
        ("end_time=2030-13-40", "Invalid end_time"),
    ],
)
async def test_bad_page_parameters_are_400_in_the_seeds_words(
    client: Client, bus: Bus, query: str, message: str
) -> None:
    response = await client.get(f"/v1/sessions?{query}", headers=bearer())
    assert response.status == 400, await response.text()
    assert (await response.json())["message"] == message
    assert bus.sent == []


async def test_page_parameters_become_the_model_query(client: Client, bus: Bus) -> None:
    query = (
        "page=2&page_size=50&start_time=2030-01-01T00:00:00Z&end_time=Thu, 03 Jan 2030 00:00:00 GMT"
        "&include_canceled=true&deleted_participants=false&state=abc&order=backwards"
    )
    response = await client.get(f"/v1/sessions?{query}", headers=bearer())
    assert response.status == 200, await response.text()
    assert bus.bodies("listMeetings") == [
        m.ListMeetings(
            dialect="coviu",
            page=2,
            page_size=50,
            starts_from=datetime(2030, 1, 1, tzinfo=UTC),
            starts_until=datetime(2030, 1, 3, tzinfo=UTC),
            include_canceled=True,
            include_removed=False,
            state="abc",
            reverse=True,
        )
    ]
    page = await response.json()
    assert (page["page"], page["page_size"], page["more"]) == (2, 50, False)


async def test_page_defaults(client: Client, bus: Bus) -> None:
    response = await client.get("/v1/sessions", headers=bearer())
    assert response.status == 200
    assert bus.bodies("listMeetings") == [m.ListMeetings(dialect="coviu")]


# --- translation out: shapes, entry_url ------------------------------------------------------------------


async def test_a_session_in_coviu_words(client: Client) -> None:
    response = await client.get(f"/v1/sessions/{MEETING}", headers=bearer())
    assert response.status == 200
    session = await response.json()
    assert session["session_id"] == MEETING
    assert (session["team_id"], session["client_id"]) == (ORG, CLIENT)
    assert (session["start_time"], session["end_time"]) == (START_TEXT, "2030-01-02T11:00:00Z")
    assert [p["role"] for p in session["participants"]] == ["HOST", "GUEST"]
    assert {p["session_id"] for p in session["participants"]} == {MEETING}
    assert {p["client_id"] for p in session["participants"]} == {CLIENT}


async def test_entry_url_carries_the_participants_meeting_token(client: Client) -> None:
    response = await client.get(f"/v1/participants/{INVITATION}", headers=bearer())
    assert response.status == 200
    participant = await response.json()
    url = urlsplit(participant["entry_url"])
    assert f"{url.scheme}://{url.netloc}" == str(client.make_url("")).rstrip("/")
    assert url.path == "/demo/"
    (token,) = parse_qs(url.query)["access_token"]
    claims = jwt.decode(token, SECRET, algorithms=["HS256"], options={"verify_nbf": False})
    assert claims["meeting"] == {
        "meetingId": MEETING,
        "conferenceId": CONFERENCE,
        "role": "moderator",
        "lobby": False,
        "attendee": INVITATION,
    }
    assert (claims["sub"], claims["org"], claims["name"]) == (INVITATION, ORG, "Dr Who")
    assert (claims["nbf"], claims["exp"]) == (int(START.timestamp()), int(END.timestamp()))


async def test_entry_url_uses_the_public_url(bus: Bus) -> None:
    async with TestClient(TestServer(coviu_app(bus, "https://meet.example.com"))) as client:
        response = await client.get(f"/v1/participants/{INVITATION}", headers=bearer())
        participant = await response.json()
    assert participant["entry_url"].startswith("https://meet.example.com/demo/?access_token=")


async def test_deletes_answer_ok(client: Client) -> None:
    for path in (f"/v1/sessions/{MEETING}", f"/v1/participants/{INVITATION}"):
        response = await client.delete(path, headers=bearer())
        assert response.status == 200
        assert await response.json() == {"ok": True}


async def test_a_refusal_of_the_model_comes_back_as_is(client: Client, bus: Bus) -> None:
    bus.answers["getMeeting"] = lambda _: Rejected(status=404, message="Session not found")
    response = await client.get(f"/v1/sessions/{MEETING}", headers=bearer())
    assert response.status == 404
    assert (await response.json())["message"] == "Session not found"


async def test_v1_needs_a_bearer(client: Client) -> None:
    response = await client.get("/v1/sessions")
    assert response.status == 401


# --- POST /v1/auth/token -----------------------------------------------------------------------------------


async def token_request(client: Client, form: dict[str, str], **headers: str) -> tuple[int, dict[str, Any]]:
    response = await client.post("/v1/auth/token", data=form, headers=headers or basic())
    return response.status, await response.json()


async def test_client_credentials_answer_a_pair(client: Client) -> None:
    status, body = await token_request(client, {"grant_type": "client_credentials"})
    assert status == 200, body
    assert body["token_type"] == "Bearer"
    assert set(body) == {"access_token", "refresh_token", "expires_in", "token_type", "scope"}
    verified = TokenVerifier(secret=SECRET).verify(body["access_token"])
    assert (verified.user_id, verified.organization_id) == (CLIENT, ORG)
    sessions = await client.get("/v1/sessions", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert sessions.status == 200


async def test_a_refresh_token_trades_for_a_new_pair(client: Client) -> None:
    _, first = await token_request(client, {"grant_type": "client_credentials"})
    status, second = await token_request(
        client, {"grant_type": "refresh_token", "refresh_token": first["refresh_token"]}
    )
    assert status == 200, second
    assert second["refresh_token"] and second["access_token"]
    assert TokenVerifier(secret=SECRET).verify(second["access_token"]).user_id == CLIENT


async def test_a_refresh_token_is_not_a_bearer(client: Client) -> None:
    _, pair = await token_request(client, {"grant_type": "client_credentials"})
    response = await client.get("/v1/sessions", headers={"Authorization": f"Bearer {pair['refresh_token']}"})
    assert response.status == 401
    assert (await response.json())["message"] == "a refresh token is not an access token"


@pytest.mark.parametrize("which", ["access_token", "other_client", "garbage"])
async def test_only_a_refresh_token_of_the_client_is_a_grant(client: Client, which: str) -> None:
    _, mine = await token_request(client, {"grant_type": "client_credentials"})
    _, theirs = await token_request(
        client, {"grant_type": "client_credentials"}, **basic("other", "other-secret")
    )
    presented = {
        "access_token": mine["access_token"],
        "other_client": theirs["refresh_token"],
        "garbage": "x.y.z",
    }
    status, body = await token_request(
        client, {"grant_type": "refresh_token", "refresh_token": presented[which]}
    )
    assert (status, body["error"]) == (400, "invalid_grant")


async def test_token_errors_as_rfc_6749(client: Client) -> None:
    status, body = await token_request(client, {"grant_type": "client_credentials"}, **basic(secret="wrong"))
    assert (status, body["error"]) == (401, "invalid_client")
    status, body = await token_request(client, {"grant_type": "password"})
    assert (status, body["error"]) == (400, "unsupported_grant_type")
    status, body = await token_request(client, {"grant_type": "refresh_token"})
    assert (status, body["error"]) == (400, "invalid_request")


def test_operation_ids_follow_the_seed() -> None:
    ids = {
        op.operation_id
        for op in coviu_operations(cast(Any, Bus()), TokenIssuer(secret=SECRET), OAuthClients(), None)
    }
    assert ids == {
        "coviuToken",
        "createSession",
        "getSessionPage",
        "getSessionById",
        "updateSession",
        "deleteSession",
        "addSessionParticipant",
        "getSessionParticipants",
        "getSessionParticipant",
        "updateSessionParticipant",
        "deleteSessionParticipant",
    }
    assert subjects.meeting_command("createMeeting").endswith("createMeeting")
