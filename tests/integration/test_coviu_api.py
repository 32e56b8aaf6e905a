"""The Coviu session API (`/v1`) end to end: the gateway over HTTP, the conference service's meeting model, a
real nats-server.

First `coviu/coviu-js-sdk`'s own `test/index.js`, step by step with its assertions, through a client
credentials token from `POST /v1/auth/token`; then the seed's rules (start in the future, end after the
start, cancel only before the start, nothing changes after the end), paging, order, time filters and
`state`, organization isolation, the token endpoint's grants and errors, and `entry_url`: its meeting token
refused before the session opens, joining the conference inside the window, refused after it closes.
"""

from __future__ import annotations

import asyncio
import base64
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import jwt
import pytest

from tests.integration.helpers import SECRET, Api, Response, Stack, token

ORG = "acme"
CLIENT_ID = "coviu-client"
CLIENT_SECRET = "coviu-client-secret"
OTHER_CLIENT = "globex-client"


@pytest.fixture(scope="module")
def coviu_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    clients = f"{CLIENT_ID}:{CLIENT_SECRET}:{ORG},{OTHER_CLIENT}:globex-secret:globex"
    running = Stack(tmp_path_factory.mktemp("coviu"), env={"PARLEY_OAUTH_CLIENTS": clients}).start()
    yield running
    running.stop()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


def basic(client_id: str, secret: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()}


async def grant(
    session: aiohttp.ClientSession, stack: Stack, form: dict[str, str], client: tuple[str, str]
) -> tuple[int, dict[str, Any]]:
    async with session.post(f"{stack.url}/v1/auth/token", data=form, headers=basic(*client)) as response:
        return response.status, await response.json()


async def coviu_api(session: aiohttp.ClientSession, stack: Stack, client: tuple[str, str]) -> Api:
    status, body = await grant(session, stack, {"grant_type": "client_credentials"}, client)
    assert status == 200, body
    return Api(session, stack.url, body["access_token"])


@pytest.fixture
async def api(session: aiohttp.ClientSession, coviu_stack: Stack) -> Api:
    return await coviu_api(session, coviu_stack, (CLIENT_ID, CLIENT_SECRET))


def rfc1123(moment: datetime) -> str:
    """JavaScript's `Date.prototype.toUTCString()`, as the SDK's test sends times."""
    return format_datetime(moment.astimezone(UTC), usegmt=True)


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def ok(response: Response, status: int = 200) -> Any:
    assert response.status == status, response
    return response.body


async def new_session(api: Api, start_in: timedelta = timedelta(hours=1), **body: Any) -> dict[str, Any]:
    start = datetime.now(UTC) + start_in
    payload = {"start_time": rfc3339(start), "end_time": rfc3339(start + timedelta(hours=1))} | body
    return dict(ok(await api.request("POST", "/v1/sessions", json=payload)))


# --- coviu-js-sdk test/index.js, step by step ---------------------------------------------------------


async def test_the_sdk_test_suite(api: Api) -> None:
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=1)
    # "should create a session"
    created = ok(
        await api.request(
            "POST",
            "/v1/sessions",
            json={
                "session_name": "A test session",
                "start_time": rfc1123(start),
                "end_time": rfc1123(start + timedelta(hours=1)),
                "picture": "http://www.fillmurray.com/200/300",
                "participants": [],
            },
        )
    )
    assert created["team_id"] == ORG
    assert created["client_id"] == CLIENT_ID
    session_id = created["session_id"]
    assert uuid.UUID(session_id)
    # "should add a host participant"
    host = ok(
        await api.request(
            "POST",
            f"/v1/sessions/{session_id}/participants",
            json={"display_name": "Dr. Who", "role": "host", "picture": "http://x/y", "state": "test-state"},
        )
    )
    assert host["participant_id"] and host["entry_url"] and host["role"] == "HOST"
    # "should add a guest participant"
    guest = ok(
        await api.request(
            "POST",
            f"/v1/sessions/{session_id}/participants",
            json={
                "display_name": "Dr. Jones",
                "role": "guest",
                "picture": "http://x/z",
                "state": "test-state",
            },
        )
    )
    assert guest["participant_id"] and guest["entry_url"] and guest["role"] == "GUEST"
    # "should get a session by id"
    fetched = ok(await api.get(f"/v1/sessions/{session_id}"))
    assert fetched["session_id"] == session_id
    assert len(fetched["participants"]) == 2
    # "should update a participant" (guest to host)
    updated = ok(
        await api.request("PUT", f"/v1/participants/{guest['participant_id']}", json={"role": "host"})
    )
    assert updated["role"] == "HOST"
    # "should update a session": RFC 1123 times come back as the very strings; `display_name` is ignored.
    new_start, new_end = rfc1123(start + timedelta(hours=2)), rfc1123(start + timedelta(hours=3))
    changed = ok(
        await api.request(
            "PUT",
            f"/v1/sessions/{session_id}",
            json={"start_time": new_start, "end_time": new_end, "display_name": "ignored"},
        )
    )
    assert (changed["start_time"], changed["end_time"]) == (new_start, new_end)
    # "should get session participants"
    participants = ok(await api.get(f"/v1/sessions/{session_id}/participants"))
    assert len(participants["content"]) == 2
    # "should get a single participant"
    one = ok(await api.get(f"/v1/participants/{host['participant_id']}"))
    assert one["participant_id"] == host["participant_id"]
    assert one["session_id"] == session_id and one["client_id"] == CLIENT_ID
    # "should delete a participant": hidden unless deleted_participants=true
    assert ok(await api.request("DELETE", f"/v1/participants/{guest['participant_id']}")) == {"ok": True}
    after = ok(await api.get(f"/v1/sessions/{session_id}"))
    assert [p["participant_id"] for p in after["participants"]] == [host["participant_id"]]
    with_removed = ok(await api.get(f"/v1/sessions/{session_id}", params={"deleted_participants": "true"}))
    removed = [p for p in with_removed["participants"] if p["participant_id"] == guest["participant_id"]]
    assert len(removed) == 1 and removed[0]["deleted_at"]
    listed = ok(await api.get(f"/v1/sessions/{session_id}/participants"))
    assert len(listed["content"]) == 1
    # "should cancel a session": its GET fails, include_canceled=true still lists it
    assert ok(await api.request("DELETE", f"/v1/sessions/{session_id}")) == {"ok": True}
    gone = await api.get(f"/v1/sessions/{session_id}")
    assert gone.status == 404, gone
    page = ok(await api.get("/v1/sessions"))
    assert session_id not in [s["session_id"] for s in page["content"]]
    page = ok(await api.get("/v1/sessions", params={"include_canceled": "true"}))
    canceled = [s for s in page["content"] if s["session_id"] == session_id]
    assert len(canceled) == 1 and canceled[0]["canceled_time"]


# --- the rules ----------------------------------------------------------------------------------------------


async def test_start_in_the_future_and_end_after_start(api: Api) -> None:
    now = datetime.now(UTC)
    past = await api.request(
        "POST",
        "/v1/sessions",
        json={
            "start_time": rfc3339(now - timedelta(minutes=5)),
            "end_time": rfc3339(now + timedelta(hours=1)),
        },
    )
    assert past.status == 400 and past.body["message"] == "start_time must be in the future", past
    backwards = await api.request(
        "POST",
        "/v1/sessions",
        json={"start_time": rfc3339(now + timedelta(hours=2)), "end_time": rfc3339(now + timedelta(hours=1))},
    )
    assert backwards.status == 400 and backwards.body["message"] == "end_time must be after start_time"
    garbage = await api.request("POST", "/v1/sessions", json={"start_time": "soon", "end_time": "later"})
    assert garbage.status == 400 and "start_time" in garbage.body["message"]
    missing = await api.request("POST", "/v1/sessions", json={"session_name": "x"})
    assert missing.status == 400
    bad_role = await api.request(
        "POST", f"/v1/sessions/{(await new_session(api))['session_id']}/participants", json={"role": "owner"}
    )
    assert bad_role.status == 400 and bad_role.body["message"].startswith("Invalid role")


async def test_roles_in_any_case_and_guest_by_default(api: Api) -> None:
    created = await new_session(
        api, participants=[{"role": "HoSt"}, {"role": "GUEST"}, {"display_name": "no role"}]
    )
    assert [p["role"] for p in created["participants"]] == ["HOST", "GUEST", "GUEST"]


async def test_cancel_only_before_the_start_and_nothing_changes_after_the_end(api: Api) -> None:
    created = await new_session(
        api,
        start_time=rfc3339(datetime.now(UTC) + timedelta(seconds=2)),
        end_time=rfc3339(datetime.now(UTC) + timedelta(seconds=4)),
        participants=[{"role": "guest"}],
    )
    session_id = created["session_id"]
    participant_id = created["participants"][0]["participant_id"]
    await asyncio.sleep(2.5)
    started = await api.request("DELETE", f"/v1/sessions/{session_id}")
    assert (
        started.status == 400 and started.body["message"] == "a session can only be canceled before it starts"
    )
    # Started but not finished: a participant may still be added.
    ok(await api.request("POST", f"/v1/sessions/{session_id}/participants", json={"role": "host"}))
    await asyncio.sleep(2.0)
    for method, path, body in (
        ("PUT", f"/v1/sessions/{session_id}", {"session_name": "late"}),
        ("DELETE", f"/v1/sessions/{session_id}", None),
        ("POST", f"/v1/sessions/{session_id}/participants", {"role": "guest"}),
        ("PUT", f"/v1/participants/{participant_id}", {"display_name": "late"}),
        ("DELETE", f"/v1/participants/{participant_id}", None),
    ):
        refused = await api.request(method, path, json=body)
        assert refused.status == 400, (method, path, refused)
    # Still readable.
    assert ok(await api.get(f"/v1/sessions/{session_id}"))["session_id"] == session_id


async def test_another_organizations_sessions_are_404(
    api: Api, session: aiohttp.ClientSession, coviu_stack: Stack
) -> None:
    created = await new_session(api, participants=[{"role": "host"}])
    other = await coviu_api(session, coviu_stack, (OTHER_CLIENT, "globex-secret"))
    session_id, participant_id = created["session_id"], created["participants"][0]["participant_id"]
    for method, path, body in (
        ("GET", f"/v1/sessions/{session_id}", None),
        ("PUT", f"/v1/sessions/{session_id}", {"session_name": "x"}),
        ("DELETE", f"/v1/sessions/{session_id}", None),
        ("GET", f"/v1/sessions/{session_id}/participants", None),
        ("POST", f"/v1/sessions/{session_id}/participants", {"role": "guest"}),
        ("GET", f"/v1/participants/{participant_id}", None),
        ("PUT", f"/v1/participants/{participant_id}", {"role": "guest"}),
        ("DELETE", f"/v1/participants/{participant_id}", None),
    ):
        refused = await other.request(method, path, json=body)
        assert refused.status == 404, (method, path, refused)
    listed = ok(await other.get("/v1/sessions"))
    assert session_id not in [s["session_id"] for s in listed["content"]]


async def test_paging_order_time_filters_and_state(
    session: aiohttp.ClientSession, coviu_stack: Stack
) -> None:
    # An organization of its own, so the page holds only this test's sessions.
    org = f"org-{uuid.uuid4().hex[:8]}"
    api = Api(session, coviu_stack.url, token("client-x", org))
    base = datetime.now(UTC).replace(microsecond=0) + timedelta(days=1)
    # Created in this order, starting in the opposite order.
    ids = []
    for i in range(5):
        start = base + timedelta(hours=5 - i)
        created = await new_session(
            api,
            start_time=rfc3339(start),
            end_time=rfc3339(start + timedelta(minutes=30)),
            participants=[{"state": "odd" if i % 2 else "even"}],
        )
        ids.append(created["session_id"])
    first = ok(await api.get("/v1/sessions", params={"page_size": "2"}))
    assert [s["session_id"] for s in first["content"]] == ids[:2]
    assert (first["page"], first["page_size"], first["page_count"], first["more"]) == (0, 2, 3, True)
    last = ok(await api.get("/v1/sessions", params={"page_size": "2", "page": "2"}))
    assert [s["session_id"] for s in last["content"]] == ids[4:] and last["more"] is False
    reverse = ok(await api.get("/v1/sessions", params={"order": "reverse"}))
    assert [s["session_id"] for s in reverse["content"]] == ids[::-1]
    # A time filter orders by start time (the last created starts first).
    window = {
        "start_time": rfc3339(base + timedelta(hours=2)),
        "end_time": rfc1123(base + timedelta(hours=4)),
    }
    by_start = ok(await api.get("/v1/sessions", params=window))
    assert [s["session_id"] for s in by_start["content"]] == [ids[3], ids[2], ids[1]]
    backwards = ok(await api.get("/v1/sessions", params=window | {"order": "backwards"}))
    assert [s["session_id"] for s in backwards["content"]] == [ids[1], ids[2], ids[3]]
    odd = ok(await api.get("/v1/sessions", params={"state": "odd"}))
    assert [s["session_id"] for s in odd["content"]] == [ids[1], ids[3]]
    for name, value in (
        ("page", "-1"),
        ("page_size", "0"),
        ("page_size", "201"),
        ("include_canceled", "yes"),
        ("deleted_participants", "maybe"),
        ("order", "sideways"),
        ("start_time", "tomorrow"),
        ("end_time", "2030-02-30T00:00:00Z"),
    ):
        refused = await api.get("/v1/sessions", params={name: value})
        assert refused.status == 400 and refused.body["message"] == f"Invalid {name}", (name, refused)


# --- POST /v1/auth/token ---------------------------------------------------------------------------------


async def test_the_token_endpoint(session: aiohttp.ClientSession, coviu_stack: Stack) -> None:
    me = (CLIENT_ID, CLIENT_SECRET)
    status, pair = await grant(session, coviu_stack, {"grant_type": "client_credentials"}, me)
    assert status == 200, pair
    assert set(pair) == {"access_token", "refresh_token", "expires_in", "token_type", "scope"}
    assert pair["token_type"] == "Bearer" and pair["expires_in"] > 0
    status, renewed = await grant(
        session, coviu_stack, {"grant_type": "refresh_token", "refresh_token": pair["refresh_token"]}, me
    )
    assert status == 200, renewed
    fresh = Api(session, coviu_stack.url, renewed["access_token"])
    assert ok(await fresh.get("/v1/sessions"))["page"] == 0
    # A refresh token is no bearer; an access token is no refresh token.
    refused = await Api(session, coviu_stack.url, pair["refresh_token"]).get("/v1/sessions")
    assert refused.status == 401
    status, body = await grant(
        session, coviu_stack, {"grant_type": "refresh_token", "refresh_token": pair["access_token"]}, me
    )
    assert (status, body["error"]) == (400, "invalid_grant")
    # Another client cannot redeem it.
    status, body = await grant(
        session,
        coviu_stack,
        {"grant_type": "refresh_token", "refresh_token": pair["refresh_token"]},
        (OTHER_CLIENT, "globex-secret"),
    )
    assert (status, body["error"]) == (400, "invalid_grant")
    status, body = await grant(
        session, coviu_stack, {"grant_type": "client_credentials"}, (CLIENT_ID, "wrong")
    )
    assert (status, body["error"]) == (401, "invalid_client")
    status, body = await grant(session, coviu_stack, {"grant_type": "password"}, me)
    assert (status, body["error"]) == (400, "unsupported_grant_type")


# --- entry_url -------------------------------------------------------------------------------------------


def entry_token(participant: dict[str, Any]) -> str:
    url = urlsplit(participant["entry_url"])
    assert url.path == "/demo/"
    (value,) = parse_qs(url.query)["access_token"]
    return value


async def test_entry_url_works_only_inside_the_sessions_window(
    api: Api, session: aiohttp.ClientSession, coviu_stack: Stack
) -> None:
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=8)
    created = await new_session(
        api,
        start_time=rfc3339(start),
        end_time=rfc3339(start + timedelta(seconds=6)),
        participants=[{"role": "host", "display_name": "Dr Who"}],
    )
    host = created["participants"][0]
    assert host["entry_url"].startswith(f"{coviu_stack.url}/demo/?access_token=")
    meeting_token = entry_token(host)
    claims = jwt.decode(meeting_token, SECRET, algorithms=["HS256"], options={"verify_nbf": False})
    assert claims["meeting"]["meetingId"] == created["session_id"]
    assert (
        claims["meeting"]["role"] == "moderator" and claims["meeting"]["attendee"] == host["participant_id"]
    )
    assert claims["sub"] == host["participant_id"] and claims["name"] == "Dr Who"
    assert claims["nbf"] == int(start.timestamp())
    conference_id = claims["meeting"]["conferenceId"]
    holder = Api(session, coviu_stack.url, meeting_token)
    endpoint = f"e-{uuid.uuid4().hex[:8]}"
    # Before the start (beyond the verifier's clock-skew leeway): refused, saying when it opens.
    early = await holder.post("join", {"conferenceId": conference_id, "userEndpointId": endpoint})
    assert early.status == 401, early
    assert "open" in early.body["message"] or "not yet valid" in early.body["message"], early
    await asyncio.sleep(max(0.0, (start - datetime.now(UTC)).total_seconds()) + 0.5)
    joined = await holder.post("join", {"conferenceId": conference_id, "userEndpointId": endpoint})
    assert joined.status == 200, joined
    # After the end (and the leeway): refused, saying it has closed.
    await asyncio.sleep(max(0.0, (start + timedelta(seconds=6) - datetime.now(UTC)).total_seconds()) + 6.0)
    late = await holder.post("join", {"conferenceId": conference_id, "userEndpointId": f"{endpoint}-2"})
    assert late.status == 401, late
    assert "closed" in late.body["message"] or "expired" in late.body["message"], late


async def test_a_meeting_token_is_refused_on_v1(
    api: Api, session: aiohttp.ClientSession, coviu_stack: Stack
) -> None:
    # A participant's link must not read the organization's sessions (the gateway's identity: meeting
    # tokens only on the conference routes).
    created = await new_session(api, start_in=timedelta(seconds=2), participants=[{"role": "host"}])
    holder = Api(session, coviu_stack.url, entry_token(created["participants"][0]))
    await asyncio.sleep(2.5)  # inside the window: the token itself is valid
    for path in ("/v1/sessions", f"/v1/sessions/{created['session_id']}"):
        refused = await holder.get(path)
        assert refused.status == 403, (path, refused)
