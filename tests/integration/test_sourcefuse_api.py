"""The SourceFuse video-conferencing API end to end: the gateway's dialect over HTTP, the conference
service's meetings, attendance and archives, a real nats-server.

Every operation of `shared/seeds/sourcefuse-video-conferencing-service-api.txt`, positive and negative,
with the real service's exact messages (`@sourceloop/video-conferencing-service`,
`src/services/chat-session.service.ts`) and Parley's where the real service has none (archives, storage
target); the permission keys (403 `Not Allowed Access`), the webhook's secret (401); a meeting token
joining the meeting's conference, listed as an active attendee, then leaving; a subscriber's publish
refused; the early-start window; the end (tokens stop working, a new one is 400); another organization
answered 404 as if the meeting did not exist.
"""

from __future__ import annotations

import asyncio
import base64
import re
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import jwt
import pytest

from tests.integration.helpers import SECRET, Api, Response, Stack, token, unique

ORG = "acme"
OTHER_ORG = "globex"
EARLY_MINUTES = 15
WEBHOOK_SECRET = "integration-webhook-secret"
PERMISSIONS = [
    "CreateMeetingSession",
    "GenerateMeetingToken",
    "StopMeeting",
    "EditMeeting",
    "GetMeetingAttendees",
    "GetMeetingArchives",
    "DeleteMeetingArchive",
    "SetMeetingUploadTarget",
]
TOO_EARLY = f"Meeting can only be started {EARLY_MINUTES} minutes before\n         the scheduled time"
MEETING_LINK = re.compile(r"^[A-Za-z0-9_-]{10}$")


@pytest.fixture(scope="module")
def sf_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    running = Stack(
        tmp_path_factory.mktemp("sourcefuse"),
        env={
            "PARLEY_MEETING_EARLY_START_MINUTES": str(EARLY_MINUTES),
            "PARLEY_SESSION_WEBHOOK_SECRET": WEBHOOK_SECRET,
            "PARLEY_LONGPOLL_SECONDS": "1",
        },
    ).start()
    yield running
    running.stop()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


def admin_token(org: str = ORG, permissions: list[str] | None = None) -> str:
    return token(
        f"admin-{uuid.uuid4().hex[:8]}", org, permissions=PERMISSIONS if permissions is None else permissions
    )


@pytest.fixture
def sf(sf_stack: Stack, session: aiohttp.ClientSession) -> Api:
    """An administrator of `acme` holding every SourceFuse permission."""
    return Api(session, sf_stack.url, admin_token())


@pytest.fixture
def other(sf_stack: Stack, session: aiohttp.ClientSession) -> Api:
    """An administrator of another organization, with every permission too."""
    return Api(session, sf_stack.url, admin_token(OTHER_ORG))


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def from_now(**delta: float) -> str:
    return iso(datetime.now(UTC) + timedelta(**delta))


async def create(api: Api, **body: Any) -> str:
    response = await api.request("POST", "/session", json=body)
    assert response.status == 200, response
    assert isinstance(response.body, str) and MEETING_LINK.match(response.body), response
    return response.body


async def meeting_token(api: Api, link: str, **body: Any) -> dict[str, Any]:
    response = await api.request("POST", f"/session/{link}/token", json=body)
    assert response.status == 200, response
    assert set(response.body) == {"sessionId", "token"}, response
    return dict(response.body)


def assert_refused(response: Response, status: int, message: str) -> None:
    assert response.status == status, response
    assert response.body["message"] == message, response
    assert response.body["traceId"], response


async def eventually(check: Callable[[], Awaitable[Any]], expected: Any, timeout: float = 10.0) -> None:
    """Until `check()` answers `expected`: attendance follows the conference's events, a moment later."""
    deadline = time.monotonic() + timeout
    while (observed := await check()) != expected:
        assert time.monotonic() < deadline, f"still {observed!r}, never {expected!r}"
        await asyncio.sleep(0.1)


# --- POST /session ---------------------------------------------------------------------------------


async def test_create_answers_a_meeting_link_id_as_a_json_string(sf: Api) -> None:
    first = await create(sf)
    second = await create(sf, isScheduled=True, scheduleTime=from_now(hours=1))
    assert first != second
    response = await sf.request("POST", "/session", json={"enableArchiving": True})
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("application/json")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"isScheduled": True}, "Schedule time is not set."),
        ({"isScheduled": True, "scheduleTime": "next tuesday"}, "Scheduled time is not in correct format."),
        (
            {"isScheduled": True, "scheduleTime": "2001-01-01T00:00:00Z"},
            "Meeting can't be scheduled with schedule time in past!",
        ),
        (
            {"enableArchiving": True, "endToEndEncryption": True},
            "End to end Encryption along with archiving is not possible",
        ),
    ],
)
async def test_create_refusals(sf: Api, body: dict[str, Any], message: str) -> None:
    assert_refused(await sf.request("POST", "/session", json=body), 400, message)


async def test_bad_input_is_400_not_500(sf: Api) -> None:
    response = await sf.request("POST", "/session", data=b"{", headers={"Content-Type": "application/json"})
    assert response.status == 400
    response = await sf.request("POST", "/session", json={"isScheduled": "yes"})
    assert response.status == 400
    response = await sf.request("POST", "/session/x/token", json={"role": "owner"})
    assert response.status == 400


# --- permissions ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "permission"),
    [
        ("POST", "/session", "CreateMeetingSession"),
        ("POST", "/session/{link}/token", "GenerateMeetingToken"),
        ("PATCH", "/session/{link}/end", "StopMeeting"),
        ("PATCH", "/session/{link}", "EditMeeting"),
        ("GET", "/session/{link}/attendees", "GetMeetingAttendees"),
        ("GET", "/archives", "GetMeetingArchives"),
        ("GET", "/archives/{link}", "GetMeetingArchives"),
        ("DELETE", "/archives/{link}", "DeleteMeetingArchive"),
        ("PUT", "/archives/storage-target", "SetMeetingUploadTarget"),
    ],
)
async def test_each_operation_needs_its_permission(
    sf: Api, sf_stack: Stack, session: aiohttp.ClientSession, method: str, path: str, permission: str
) -> None:
    link = await create(sf)
    lacking = Api(session, sf_stack.url, admin_token(permissions=[p for p in PERMISSIONS if p != permission]))
    response = await lacking.request(method, path.format(link=link), json={})
    assert_refused(response, 403, "Not Allowed Access")
    # The meeting is untouched: the refused end did not end it.
    await meeting_token(sf, link)


async def test_a_meeting_token_is_refused_on_the_sourcefuse_routes(
    sf: Api, sf_stack: Stack, session: aiohttp.ClientSession
) -> None:
    link = await create(sf)
    issued = await meeting_token(sf, link, role="moderator")
    holder = Api(session, sf_stack.url, issued["token"])
    for method, path in [("POST", "/session"), ("PATCH", f"/session/{link}/end"), ("GET", "/archives")]:
        response = await holder.request(method, path, json={})
        assert response.status == 403, response


# --- POST /session/{id}/token ----------------------------------------------------------------------------


async def test_token_is_a_parley_jwt_for_the_meetings_conference(sf: Api) -> None:
    link = await create(sf)
    expires = datetime.now(UTC).replace(microsecond=0) + timedelta(minutes=20)
    issued = await meeting_token(sf, link, role="subscriber", data="bob", expireTime=iso(expires))
    claims = jwt.decode(issued["token"], SECRET, algorithms=["HS256"])
    assert claims["meeting"]["meetingId"] == link
    assert claims["meeting"]["conferenceId"] == issued["sessionId"]
    assert claims["meeting"]["role"] == "subscriber"
    assert claims["meeting"]["attendee"] == "bob"
    assert claims["org"] == ORG
    assert claims["name"] == "bob"
    assert claims["exp"] == int(expires.timestamp())
    uuid.UUID(claims["sub"])
    # Epoch milliseconds work too; the same meeting, the same conference.
    again = await meeting_token(sf, link, expireTime=int(expires.timestamp() * 1000))
    assert again["sessionId"] == issued["sessionId"]
    assert jwt.decode(again["token"], SECRET, algorithms=["HS256"])["meeting"]["role"] == "publisher"
    # The conference is a real Parley conference of the organization.
    response = await sf.as_user("alice").get(f"/rtc-api/conferences/{issued['sessionId']}")
    assert response.status == 200, response


@pytest.mark.parametrize(
    ("expire_time", "message"),
    [
        ("soon", "Expire time is not in correct format."),
        ("2001-01-01T00:00:00Z", "Expire time can not be in past."),
        (1000, "Expire time can not be in past."),
    ],
)
async def test_token_expire_time_refusals(sf: Api, expire_time: Any, message: str) -> None:
    link = await create(sf)
    response = await sf.request("POST", f"/session/{link}/token", json={"expireTime": expire_time})
    assert_refused(response, 400, message)
    # The format and the past are checked before the meeting is even looked up.
    response = await sf.request("POST", "/session/nosuchlink/token", json={"expireTime": expire_time})
    assert_refused(response, 400, message)


async def test_token_of_an_unknown_meeting_is_400_and_of_another_organizations_404(
    sf: Api, other: Api
) -> None:
    response = await sf.request("POST", "/session/nosuchlink/token", json={})
    assert_refused(response, 400, "Session does not exist")
    link = await create(other)
    response = await sf.request("POST", f"/session/{link}/token", json={})
    assert_refused(response, 404, "Session does not exist")


async def test_early_start_window(sf: Api) -> None:
    later = await create(sf, isScheduled=True, scheduleTime=from_now(minutes=EARLY_MINUTES + 30))
    assert_refused(await sf.request("POST", f"/session/{later}/token", json={}), 400, TOO_EARLY)
    soon = await create(sf, isScheduled=True, scheduleTime=from_now(minutes=EARLY_MINUTES - 5))
    await meeting_token(sf, soon)
    # Rescheduled into the window, the first meeting can start too.
    response = await sf.request(
        "PATCH", f"/session/{later}", json={"isScheduled": True, "scheduleTime": from_now(minutes=5)}
    )
    assert response.status == 204, response
    await meeting_token(sf, later)


# --- PATCH /session/{id} ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"isScheduled": True}, "Schedule Time is required if isScheduled is set to true"),
        ({"isScheduled": True, "scheduleTime": "tomorrow"}, "Schedule Time is Not in correct format"),
        (
            {"isScheduled": True, "scheduleTime": "2001-01-01T00:00:00Z"},
            "Schedule Time cannot be set in the past",
        ),
    ],
)
async def test_edit_refusals(sf: Api, body: dict[str, Any], message: str) -> None:
    link = await create(sf)
    assert_refused(await sf.request("PATCH", f"/session/{link}", json=body), 400, message)


async def test_edit_unknown_or_another_organizations_is_404(sf: Api, other: Api) -> None:
    body = {"isScheduled": False}
    assert_refused(
        await sf.request("PATCH", "/session/nosuchlink", json=body), 404, "Meeting link nosuchlink not found"
    )
    link = await create(other)
    assert_refused(
        await sf.request("PATCH", f"/session/{link}", json=body), 404, f"Meeting link {link} not found"
    )


async def test_edit_reschedules_as_the_real_service(sf: Api) -> None:
    link = await create(sf, isScheduled=True, scheduleTime=from_now(minutes=5))
    response = await sf.request(
        "PATCH", f"/session/{link}", json={"isScheduled": True, "scheduleTime": from_now(hours=3)}
    )
    assert response.status == 204, response
    assert_refused(await sf.request("POST", f"/session/{link}/token", json={}), 400, TOO_EARLY)
    # Not scheduled: the real service moves the schedule to now.
    response = await sf.request("PATCH", f"/session/{link}", json={"isScheduled": False})
    assert response.status == 204, response
    await meeting_token(sf, link)
    # The real service changes scheduleTime only, never isScheduled: an unscheduled meeting stays
    # startable whatever time it is given.
    unscheduled = await create(sf)
    response = await sf.request(
        "PATCH", f"/session/{unscheduled}", json={"isScheduled": True, "scheduleTime": from_now(hours=3)}
    )
    assert response.status == 204, response
    await meeting_token(sf, unscheduled)


# --- PATCH /session/{id}/end ------------------------------------------------------------------------


async def test_end_stops_the_meeting_and_its_tokens(
    sf: Api, sf_stack: Stack, session: aiohttp.ClientSession
) -> None:
    link = await create(sf)
    issued = await meeting_token(sf, link, data="dave")
    response = await sf.request("PATCH", f"/session/{link}/end")
    assert response.status == 204, response
    assert_refused(await sf.request("PATCH", f"/session/{link}/end"), 400, "Meeting has already been ended!")
    assert_refused(
        await sf.request("POST", f"/session/{link}/token", json={}), 400, "This meeting has been expired"
    )
    # The conference behind it has ended: the token issued before no longer joins.
    holder = Api(session, sf_stack.url, issued["token"])
    response = await holder.post(
        "join", {"conferenceId": issued["sessionId"], "userEndpointId": unique("ep")}
    )
    assert_refused(response, 409, "conference has ended")


async def test_end_unknown_or_another_organizations_is_404(sf: Api, other: Api) -> None:
    assert_refused(await sf.request("PATCH", "/session/nosuchlink/end"), 404, "Meeting Not Found")
    link = await create(other)
    assert_refused(await sf.request("PATCH", f"/session/{link}/end"), 404, "Meeting Not Found")
    # Still running for its own organization.
    await meeting_token(other, link)


# --- attendees ---------------------------------------------------------------------------------------


async def attendees(api: Api, link: str, active: str | None = None) -> list[dict[str, Any]]:
    params = {"active": active} if active is not None else None
    response = await api.request("GET", f"/session/{link}/attendees", params=params)
    assert response.status == 200, response
    return list(response.body)


async def test_a_meeting_token_joins_is_an_active_attendee_then_leaves(
    sf: Api, sf_stack: Stack, session: aiohttp.ClientSession
) -> None:
    link = await create(sf)
    issued = await meeting_token(sf, link, role="publisher", data="bob")
    conference_id = issued["sessionId"]
    bob = Api(session, sf_stack.url, issued["token"])
    endpoint = unique("ep")
    await bob.join(conference_id, endpoint)

    async def active() -> list[str]:
        return [a["attendee"] for a in await attendees(sf, link, "true")]

    # Keyed by the token's data.
    await eventually(active, ["bob"])
    [row] = await attendees(sf, link)
    assert row["sessionId"] == conference_id
    assert row["isDeleted"] is False
    assert row["createdOn"]
    response = await bob.post("leave", {"conferenceId": conference_id, "userEndpointId": endpoint})
    assert response.status == 204, response

    await eventually(active, [])
    [row] = await attendees(sf, link)
    assert row["attendee"] == "bob"
    assert row["isDeleted"] is True
    # Any value but "true" lists everyone.
    assert len(await attendees(sf, link, "false")) == 1


async def test_attendees_of_an_unknown_or_another_organizations_meeting_is_404(sf: Api, other: Api) -> None:
    response = await sf.request("GET", "/session/nosuchlink/attendees")
    assert_refused(response, 404, "Meeting Not Found")
    link = await create(other)
    assert_refused(await sf.request("GET", f"/session/{link}/attendees"), 404, "Meeting Not Found")


async def test_a_subscriber_may_join_but_not_publish(
    sf: Api, sf_stack: Stack, session: aiohttp.ClientSession
) -> None:
    link = await create(sf)
    publish = {"conferenceStreamType": "CAM", "sdpOffer": "v=0"}
    for role, allowed in [("subscriber", False), ("publisher", True)]:
        issued = await meeting_token(sf, link, role=role, data=role)
        holder = Api(session, sf_stack.url, issued["token"])
        endpoint = unique("ep")
        await holder.join(issued["sessionId"], endpoint)
        response = await holder.post(
            "publishStream", {"conferenceId": issued["sessionId"], "userEndpointId": endpoint, **publish}
        )
        if allowed:
            # Past the grant: no media node in this stack, so the media step's 503.
            assert response.status == 503, response
        else:
            assert response.status == 403, response


async def test_a_meeting_token_is_for_its_conference_alone(
    sf: Api, sf_stack: Stack, session: aiohttp.ClientSession
) -> None:
    link = await create(sf)
    issued = await meeting_token(sf, link)
    elsewhere = await sf.as_user("alice").create()
    holder = Api(session, sf_stack.url, issued["token"])
    response = await holder.post("join", {"conferenceId": elsewhere, "userEndpointId": unique("ep")})
    assert response.status == 403, response


# --- the webhook ----------------------------------------------------------------------------------------


async def webhook(
    sf_stack: Stack,
    session: aiohttp.ClientSession,
    body: Any,
    *,
    secret: str | None = WEBHOOK_SECRET,
    basic: bool = False,
) -> Response:
    anonymous = Api(session, sf_stack.url, None)
    if secret is None:
        return await anonymous.request("POST", "/webhooks/session", json=body)
    if basic:
        credentials = base64.b64encode(f"vonage:{secret}".encode()).decode()
        return await anonymous.request(
            "POST", "/webhooks/session", json=body, headers={"Authorization": f"Basic {credentials}"}
        )
    return await anonymous.request("POST", "/webhooks/session", json=body, params={"secret": secret})


async def test_the_webhook_drives_attendance(
    sf: Api, sf_stack: Stack, session: aiohttp.ClientSession
) -> None:
    link = await create(sf)
    conference_id = (await meeting_token(sf, link))["sessionId"]
    connection = {"id": "conn-1", "createdAt": 1, "data": "carol"}
    created = {
        "sessionId": conference_id,
        "projectId": "p",
        "event": "connectionCreated",
        "timestamp": 1,
        "connection": connection,
    }
    response = await webhook(sf_stack, session, created)
    assert response.status == 204, response

    async def active() -> list[str]:
        return [a["attendee"] for a in await attendees(sf, link, "true")]

    await eventually(active, ["carol"])
    destroyed = {**created, "event": "connectionDestroyed", "reason": "clientDisconnected"}
    response = await webhook(sf_stack, session, destroyed, basic=True)
    assert response.status == 204, response

    await eventually(active, [])
    # Unknown events and unknown sessions are ignored, 204.
    assert (await webhook(sf_stack, session, {**created, "event": "archiveStatus"})).status == 204
    assert (await webhook(sf_stack, session, {**created, "sessionId": str(uuid.uuid4())})).status == 204
    assert await attendees(sf, link, "true") == []


async def test_the_webhook_needs_the_secret(sf_stack: Stack, session: aiohttp.ClientSession) -> None:
    body = {"sessionId": str(uuid.uuid4()), "event": "connectionCreated"}
    for secret, basic in [(None, False), ("wrong", False), ("wrong", True)]:
        response = await webhook(sf_stack, session, body, secret=secret, basic=basic)
        assert response.status == 401, response
        assert response.body["traceId"]
    anonymous = Api(session, sf_stack.url, None)
    response = await anonymous.request(
        "POST",
        "/webhooks/session",
        data=b"{",
        params={"secret": WEBHOOK_SECRET},
        headers={"Content-Type": "application/json"},
    )
    assert response.status == 400, response


# --- archives and the storage target --------------------------------------------------------------------


async def test_archives_of_an_organization_without_recordings(sf: Api, other: Api) -> None:
    response = await other.request("GET", "/archives")
    assert response.status == 200, response
    assert set(response.body) == {"count", "items"}
    assert response.body["count"] == len(response.body["items"])
    assert_refused(await sf.request("GET", "/archives/nosuch"), 404, "Archive Not Found")
    assert_refused(await sf.request("DELETE", "/archives/nosuch"), 404, "Archive Not Found")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"name": "GCS", "bucket": "b"}, "Unsupported storage type"),
        ({}, "Unsupported storage type"),
        ({"name": "AWSS3"}, "S3 bucket name is required"),
        ({"name": "AZURE"}, "Azure account name is required"),
    ],
)
async def test_storage_target_refusals(other: Api, body: dict[str, Any], message: str) -> None:
    assert_refused(await other.request("PUT", "/archives/storage-target", json=body), 400, message)


async def test_storage_target_is_set(other: Api) -> None:
    # `other`'s organization records nothing here: the target is never used, only stored.
    body = {"name": "AWSS3", "bucket": "archives", "endpoint": "http://127.0.0.1:9"}
    response = await other.request("PUT", "/archives/storage-target", json=body)
    assert response.status == 200, response
    assert response.body is None
    body = {"name": "AZURE", "accountName": "devstoreaccount1"}
    response = await other.request("PUT", "/archives/storage-target", json=body)
    assert response.status == 200, response
