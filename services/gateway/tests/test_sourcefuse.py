"""The SourceFuse dialect's gateway-only parts: permission keys, the webhook's secret, the token it signs,
the translation into the model's bus operations, and the OpenAPI document.

The application is the real one (`build_app`); the conference service is stood in for by a recorder of
the requests the gateway would send, answering what each test sets (unit tests of the gateway's layer;
the real stack is in `tests/integration/test_sourcefuse_api.py`).
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import jwt
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from parley_common.contracts import meeting
from parley_common.contracts.base import Empty
from parley_common.contracts.rpc import Accepted, Rejected, Request
from parley_common.messaging import subjects
from parley_gateway import token_cli
from parley_gateway.app import build_app
from parley_gateway.identity import TokenIssuer, TokenVerifier
from parley_gateway.settings import Settings
from parley_gateway.sourcefuse import sourcefuse_operations

SECRET = "test-secret-that-is-long-enough-for-hs256!"
WEBHOOK_SECRET = "hook-secret"
ALL = (
    "CreateMeetingSession",
    "GenerateMeetingToken",
    "StopMeeting",
    "EditMeeting",
    "GetMeetingAttendees",
    "GetMeetingArchives",
    "DeleteMeetingArchive",
    "SetMeetingUploadTarget",
)
CONFERENCE = str(uuid.uuid4())


class Recorder:
    """Stands in for the RpcClient: records each request, answers `reply` (a rejection by default)."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, Request[Any]]] = []
        self.reply: Accepted[Any] | Rejected = Rejected(status=418, message="recorded")

    async def request(
        self, subject: str, request: Any, value_type: Any, *, timeout: float | None = None
    ) -> Accepted[Any] | Rejected:
        self.sent.append((subject, request))
        return self.reply


def bearer(*permissions: str, **claims: Any) -> dict[str, str]:
    token = TokenIssuer(secret=SECRET).issue(
        user_id="alice", organization_id="acme", permissions=permissions, **claims
    )
    return {"Authorization": f"Bearer {token}"}


def app(rpc: Recorder, webhook_secret: str | None = None) -> web.Application:
    operations = sourcefuse_operations(cast(Any, rpc), TokenIssuer(secret=SECRET), webhook_secret)
    return build_app(operations, TokenVerifier(secret=SECRET), Settings.from_env())


@pytest.fixture
def rpc() -> Recorder:
    return Recorder()


@pytest.fixture
async def client(rpc: Recorder) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    async with TestClient(TestServer(app(rpc))) as test_client:
        yield test_client


@pytest.fixture
async def guarded(rpc: Recorder) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    async with TestClient(TestServer(app(rpc, WEBHOOK_SECRET))) as test_client:
        yield test_client


ROUTES = [
    ("POST", "/session", "CreateMeetingSession"),
    ("POST", "/session/abc123XYZ_/token", "GenerateMeetingToken"),
    ("PATCH", "/session/abc123XYZ_/end", "StopMeeting"),
    ("PATCH", "/session/abc123XYZ_", "EditMeeting"),
    ("GET", "/session/abc123XYZ_/attendees", "GetMeetingAttendees"),
    ("GET", "/archives", "GetMeetingArchives"),
    ("GET", "/archives/a1", "GetMeetingArchives"),
    ("DELETE", "/archives/a1", "DeleteMeetingArchive"),
    ("PUT", "/archives/storage-target", "SetMeetingUploadTarget"),
]


# --- permissions ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "path", "permission"), ROUTES)
async def test_each_route_needs_its_permission_key(
    client: Any, rpc: Recorder, method: str, path: str, permission: str
) -> None:
    others = tuple(p for p in ALL if p != permission)
    response = await client.request(method, path, json={}, headers=bearer(*others))
    assert response.status == 403
    assert (await response.json())["message"] == "Not Allowed Access"
    assert rpc.sent == []
    response = await client.request(method, path, json={}, headers=bearer(permission))
    assert response.status == 418, await response.text()
    assert len(rpc.sent) == 1


async def test_a_token_without_the_claim_is_refused_and_anonymous_is_401(client: Any, rpc: Recorder) -> None:
    response = await client.post("/session", json={}, headers=bearer())
    assert response.status == 403
    response = await client.post("/session", json={})
    assert response.status == 401
    assert rpc.sent == []


@pytest.mark.parametrize("claim", ["CreateMeetingSession", [1], {"a": 1}, None])
async def test_a_malformed_permissions_claim_is_401(client: Any, claim: Any) -> None:
    token = jwt.encode(
        {"sub": "alice", "org": "acme", "exp": int(datetime.now(UTC).timestamp()) + 60, "permissions": claim},
        SECRET,
        algorithm="HS256",
    )
    response = await client.post("/session", json={}, headers={"Authorization": f"Bearer {token}"})
    assert response.status == 401
    assert (await response.json())["message"] == "token has a malformed permissions claim"


async def test_a_meeting_token_is_refused_on_the_sourcefuse_routes(client: Any, rpc: Recorder) -> None:
    grant = meeting.MeetingGrant(meeting_id="abc123XYZ_", conference_id=CONFERENCE, role="moderator")
    response = await client.post("/session", json={}, headers=bearer(grant=grant))
    assert response.status == 403
    assert rpc.sent == []


def test_parley_token_mints_permissions(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PARLEY_JWT_SECRET", SECRET)
    monkeypatch.delenv("PARLEY_JWT_ISSUER", raising=False)
    monkeypatch.delenv("PARLEY_JWT_AUDIENCE", raising=False)
    code = token_cli.main(
        ["--user", "u", "--org", "o", "--permission", "CreateMeetingSession", "--permission", "StopMeeting"]
    )
    assert code == 0
    principal = TokenVerifier(secret=SECRET).verify(capsys.readouterr().out.strip())
    assert principal.permissions == ("CreateMeetingSession", "StopMeeting")


# --- the translation into the model ------------------------------------------------------------------


def meeting_view(**fields: Any) -> meeting.MeetingView:
    return meeting.MeetingView(
        meeting_id="abc123XYZ_",
        conference_id=CONFERENCE,
        organization_id="acme",
        dialect="sourcefuse",
        created_by="alice",
        created_at=datetime.now(UTC),
        **fields,
    )


async def test_create_answers_the_meeting_link_id_as_a_json_string(client: Any, rpc: Recorder) -> None:
    rpc.reply = Accepted(value=meeting_view())
    body = {"isScheduled": True, "scheduleTime": "2030-01-01T10:00:00Z", "enableArchiving": True}
    response = await client.post("/session", json=body, headers=bearer("CreateMeetingSession"))
    assert response.status == 200
    assert response.content_type == "application/json"
    assert await response.text() == '"abc123XYZ_"'
    subject, request = rpc.sent[-1]
    assert subject == subjects.meeting_command("createMeeting")
    assert request.body == meeting.CreateMeeting(
        dialect="sourcefuse", scheduled=True, starts_at="2030-01-01T10:00:00Z", archiving=True
    )
    assert request.caller.organization_id == "acme"


async def test_a_rejection_is_its_message_and_trace_id(client: Any, rpc: Recorder) -> None:
    rpc.reply = Rejected(status=400, message="Schedule time is not set.")
    response = await client.post("/session", json={"isScheduled": True}, headers=bearer(*ALL))
    assert response.status == 400
    body = await response.json()
    assert body["message"] == "Schedule time is not set."
    assert body["traceId"]


async def test_the_token_carries_the_grant_the_service_gave(client: Any, rpc: Recorder) -> None:
    expires = (datetime.now(UTC) + timedelta(minutes=30)).replace(microsecond=0)
    grant = meeting.MeetingGrant(
        meeting_id="abc123XYZ_", conference_id=CONFERENCE, role="subscriber", attendee="bob"
    )
    rpc.reply = Accepted(value=meeting.MeetingPass(grant=grant, expires_at=expires))
    body = {"expireTime": 1893456000000, "role": "subscriber", "data": "bob"}
    response = await client.post("/session/abc123XYZ_/token", json=body, headers=bearer(*ALL))
    assert response.status == 200, await response.text()
    answer = await response.json()
    assert answer["sessionId"] == CONFERENCE
    claims = jwt.decode(answer["token"], SECRET, algorithms=["HS256"])
    assert claims["meeting"] == {
        "meetingId": "abc123XYZ_",
        "conferenceId": CONFERENCE,
        "role": "subscriber",
        "lobby": False,
        "attendee": "bob",
    }
    assert claims["org"] == "acme"
    assert claims["name"] == "bob"
    assert claims["exp"] == int(expires.timestamp())
    assert str(uuid.UUID(claims["sub"])) == claims["sub"]
    assert "permissions" not in claims
    subject, request = rpc.sent[-1]
    assert subject == subjects.meeting_command("issuePass")
    # Epoch milliseconds travel as their digits; the domain reads them.
    assert request.body == meeting.IssuePass(
        dialect="sourcefuse",
        meeting_id="abc123XYZ_",
        role="subscriber",
        data="bob",
        expire_time="1893456000000",
    )


async def test_the_token_without_expiry_lives_the_issuers_ttl_and_defaults_to_publisher(
    client: Any, rpc: Recorder
) -> None:
    grant = meeting.MeetingGrant(meeting_id="abc123XYZ_", conference_id=CONFERENCE, role="publisher")
    rpc.reply = Accepted(value=meeting.MeetingPass(grant=grant))
    response = await client.post("/session/abc123XYZ_/token", headers=bearer(*ALL))
    assert response.status == 200, await response.text()
    claims = jwt.decode((await response.json())["token"], SECRET, algorithms=["HS256"])
    assert claims["exp"] - claims["iat"] == TokenIssuer(secret=SECRET).ttl_seconds
    assert rpc.sent[-1][1].body.role == "publisher"


async def test_no_signing_key_is_503_before_the_pass_starts_the_meeting(rpc: Recorder) -> None:
    operations = sourcefuse_operations(cast(Any, rpc), TokenIssuer(secret=None), None)
    application = build_app(operations, TokenVerifier(secret=SECRET), Settings.from_env())
    async with TestClient(TestServer(application)) as client:
        response = await client.post("/session/abc123XYZ_/token", headers=bearer(*ALL))
        assert response.status == 503
        assert rpc.sent == []


@pytest.mark.parametrize(
    ("query", "active_only"), [("?active=true", True), ("?active=yes", False), ("", False)]
)
async def test_attendees_active_only_when_exactly_true(
    client: Any, rpc: Recorder, query: str, active_only: bool
) -> None:
    now = datetime.now(UTC)
    view = meeting.AttendeeView(
        id="t1",
        meeting_id="abc123XYZ_",
        conference_id=CONFERENCE,
        attendee="bob",
        created_on=now,
        is_deleted=False,
    )
    rpc.reply = Accepted(value=meeting.Attendees(items=(view,)))
    response = await client.get(f"/session/abc123XYZ_/attendees{query}", headers=bearer(*ALL))
    assert response.status == 200
    [row] = await response.json()
    assert row["sessionId"] == CONFERENCE
    assert row["attendee"] == "bob"
    assert row["isDeleted"] is False
    assert rpc.sent[-1][1].body == meeting.ListAttendees(
        dialect="sourcefuse", meeting_id="abc123XYZ_", active_only=active_only
    )


async def test_edit_acts_on_the_schedule_and_end_is_204(client: Any, rpc: Recorder) -> None:
    rpc.reply = Accepted(value=meeting_view())
    body = {"isScheduled": True, "scheduleTime": "2030-01-01T10:00:00Z", "extId": "x"}
    response = await client.patch("/session/abc123XYZ_", json=body, headers=bearer(*ALL))
    assert response.status == 204
    assert rpc.sent[-1] == (
        subjects.meeting_command("updateMeeting"),
        rpc.sent[-1][1],
    )
    assert rpc.sent[-1][1].body == meeting.UpdateMeeting(
        dialect="sourcefuse", meeting_id="abc123XYZ_", scheduled=True, starts_at="2030-01-01T10:00:00Z"
    )
    response = await client.patch("/session/abc123XYZ_/end", headers=bearer(*ALL))
    assert response.status == 204
    assert rpc.sent[-1][0] == subjects.meeting_command("endMeeting")


async def test_archives_are_listed_with_an_absolute_url(client: Any, rpc: Recorder) -> None:
    view = meeting.ArchiveView(
        archive_id="r1",
        meeting_id="abc123XYZ_",
        conference_id=CONFERENCE,
        name=None,
        created_at=datetime.now(UTC),
        recording_id="r1",
        stream_id="s1",
        mime_type="video/webm",
        bytes=10,
        duration_seconds=1.5,
        url=f"/rtc-api/conferences/{CONFERENCE}/recordings/r1",
    )
    rpc.reply = Accepted(value=meeting.Archives(items=(view,)))
    response = await client.get("/archives", headers=bearer(*ALL))
    assert response.status == 200
    body = await response.json()
    assert body["count"] == 1
    [item] = body["items"]
    assert item["id"] == "r1"
    assert item["sessionId"] == CONFERENCE
    assert item["metaData"]["url"] == str(client.make_url(f"/rtc-api/conferences/{CONFERENCE}/recordings/r1"))
    assert item["metaData"]["bytes"] == 10
    rpc.reply = Accepted(value=Empty())
    response = await client.delete("/archives/r1", headers=bearer(*ALL))
    assert response.status == 200
    assert await response.read() == b""
    assert rpc.sent[-1][1].body == meeting.ArchiveRef(archive_id="r1")
    response = await client.put(
        "/archives/storage-target", json={"name": "AWSS3", "bucket": "b"}, headers=bearer(*ALL)
    )
    assert response.status == 200
    assert rpc.sent[-1][1].body == meeting.StorageTarget(name="AWSS3", bucket="b")


# --- the webhook ------------------------------------------------------------------------------------

HOOK = {"sessionId": CONFERENCE, "event": "connectionCreated", "connection": {"id": "c1", "data": "bob"}}


async def test_the_webhook_is_open_without_a_configured_secret(client: Any, rpc: Recorder) -> None:
    rpc.reply = Accepted(value=Empty())
    response = await client.post("/webhooks/session", json=HOOK)
    assert response.status == 204
    subject, request = rpc.sent[-1]
    assert subject == subjects.meeting_command("attendanceWebhook")
    assert request.body.session_id == CONFERENCE
    assert request.body.connection == meeting.ProviderConnection(id="c1", data="bob")


def basic(password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"vonage:{password}".encode()).decode()}


@pytest.mark.parametrize(
    ("params", "headers"),
    [({}, {}), ({"secret": "wrong"}, {}), ({}, basic("wrong")), ({}, {"Authorization": "Basic !!"})],
)
async def test_the_webhook_without_the_secret_is_401(
    guarded: Any, rpc: Recorder, params: dict[str, str], headers: dict[str, str]
) -> None:
    response = await guarded.post("/webhooks/session", json=HOOK, params=params, headers=headers)
    assert response.status == 401
    assert "secret" in (await response.json())["message"]
    # Refused before its body is read: malformed JSON without the secret is 401 too, not 400.
    response = await guarded.post("/webhooks/session", data=b"{", params=params, headers=headers)
    assert response.status == 401
    assert rpc.sent == []


@pytest.mark.parametrize(
    ("params", "headers"), [({"secret": WEBHOOK_SECRET}, {}), ({}, basic(WEBHOOK_SECRET))]
)
async def test_the_webhook_with_the_secret_is_204(
    guarded: Any, rpc: Recorder, params: dict[str, str], headers: dict[str, str]
) -> None:
    rpc.reply = Accepted(value=Empty())
    response = await guarded.post("/webhooks/session", json=HOOK, params=params, headers=headers)
    assert response.status == 204
    response = await guarded.post("/webhooks/session", data=b"{", params=params, headers=headers)
    assert response.status == 400
    assert len(rpc.sent) == 1


# --- the document ------------------------------------------------------------------------------------


async def test_openapi_documents_each_sourcefuse_route(client: Any) -> None:
    document = await (await client.get("/openapi.json")).json()
    paths = document["paths"]
    for method, path in [
        ("post", "/session"),
        ("post", "/session/{meetingLinkId}/token"),
        ("patch", "/session/{meetingLinkId}/end"),
        ("patch", "/session/{meetingLinkId}"),
        ("get", "/session/{meetingLinkId}/attendees"),
        ("post", "/webhooks/session"),
        ("get", "/archives"),
        ("get", "/archives/{archiveId}"),
        ("delete", "/archives/{archiveId}"),
        ("put", "/archives/storage-target"),
    ]:
        operation = paths[path][method]
        assert operation["tags"] == ["SourceFuse"]
        if path != "/webhooks/session":
            assert "403" in operation["responses"]
            assert "security" not in operation or operation["security"]
    assert paths["/webhooks/session"]["post"].get("security") == []
    token_op = paths["/session/{meetingLinkId}/token"]["post"]
    assert token_op["requestBody"]["content"]["application/json"]["schema"]
    assert "200" in token_op["responses"]
    assert "204" in paths["/session/{meetingLinkId}/end"]["patch"]["responses"]
