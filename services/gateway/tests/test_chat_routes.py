"""The chat routes at the gateway: the routing table, parameters folded into command bodies, cookie auth,
`GET /auth/token`, and the throttled `UserSeen` report.

The application is the real one (`build_app`); the chat service is stood in for by a recorder of the
requests the gateway would send (these are unit tests of the gateway's layer, not of the bus).
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any, cast

import jsonschema
import msgspec
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from parley_common.contracts import chat
from parley_common.contracts.rpc import Accepted, Rejected, Request
from parley_common.messaging import subjects
from parley_gateway.app import build_app, routing_order
from parley_gateway.chats import CHAT_ROUTES, STREAMED_OPERATIONS, chat_operations
from parley_gateway.identity import Principal, TokenIssuer, TokenVerifier
from parley_gateway.operations import Operation
from parley_gateway.seen import SeenReporter
from parley_gateway.settings import Settings
from parley_gateway.user_push import UserPushChannels, user_push_operation

SECRET = "test-secret-that-is-long-enough-for-hs256!"
USER = "6F1C4D3A-0B7E-4E2A-9D4C-1A2B3C4D5E6F"
ROOM = "c3631f02-ff67-42b8-8775-18c47f52a678"
OTHER = "497f6eca-6276-4993-bfeb-53cbbbba6f08"


class Recorder:
    """Stands in for the RpcClient: records each request, answers a rejection the test can recognise."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, Request[Any]]] = []

    async def request(
        self, subject: str, request: Any, value_type: Any, *, timeout: float | None = None
    ) -> Accepted[Any] | Rejected:
        self.sent.append((subject, request))
        return Rejected(status=418, message="recorded")


def token(user_id: str = USER, **claims: Any) -> str:
    return TokenIssuer(secret=SECRET).issue(user_id=user_id, organization_id="acme", **claims)


def bearer(user_id: str = USER) -> dict[str, str]:
    return {"Authorization": f"Bearer {token(user_id)}"}


class Published:
    def __init__(self) -> None:
        self.subjects: list[str] = []
        self.payloads: list[bytes] = []

    async def __call__(self, subject: str, payload: bytes) -> None:
        self.subjects.append(subject)
        self.payloads.append(payload)


def chat_app(rpc: Recorder, seen: SeenReporter | None = None) -> web.Application:
    operations = [
        *chat_operations(cast(Any, rpc)),
        user_push_operation(UserPushChannels(cast(Any, None), cast(Any, _Limits()), cast(Any, rpc))),
    ]
    return build_app(operations, TokenVerifier(secret=SECRET), Settings.from_env(), seen)


class _Limits:
    channels_per_user = 10


@pytest.fixture
def rpc() -> Recorder:
    return Recorder()


@pytest.fixture
async def client(rpc: Recorder) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    async with TestClient(TestServer(chat_app(rpc))) as test_client:
        yield test_client


# --- the routing table ----------------------------------------------------------------------------------


def test_every_chat_operation_is_routed_once() -> None:
    served = Counter(route.op for route in CHAT_ROUTES)
    # createMeeting has two doors: Parley's POST /rooms/{roomId}/meeting and Carbonio's POST /meetings.
    # admit is the conference service's; an upload's two operations are asked by its streaming handler;
    # listPushRooms by the push channel `/events/ws`.
    routed = chat.OPERATIONS.keys() - {"admit", "listPushRooms"} - STREAMED_OPERATIONS
    expected = Counter({op: 1 for op in routed} | {"createMeeting": 2})
    assert served == expected
    routes = [(route.method, route.path) for route in CHAT_ROUTES]
    assert len(routes) == len(set(routes))
    ids = [op.operation_id for op in chat_operations(cast(Any, Recorder()))]
    assert len(ids) == len(set(ids))
    assert {"insertAttachment", "updateRoomPicture", "updateUserPicture"} <= set(ids)


def test_success_statuses_follow_the_seed() -> None:
    statuses = {(route.method, route.path): route.status for route in CHAT_ROUTES}
    assert statuses[("POST", "/rooms")] == 201
    assert statuses[("POST", "/rooms/{roomId}/members")] == 201
    assert statuses[("POST", "/rooms/{roomId}/meeting")] == 201
    assert statuses[("POST", "/meetings")] == 200
    assert statuses[("DELETE", "/rooms/{roomId}")] == 204
    assert statuses[("PUT", "/rooms/workspaces/rank")] == 204
    assert statuses[("PUT", "/rooms/{roomId}/clear")] == 200
    assert statuses[("GET", "/rooms")] == 200


def test_static_paths_are_routed_before_templated_ones() -> None:
    assert routing_order("/users/capabilities") < routing_order("/users/{userId}")
    assert routing_order("/rooms/workspaces/rank") < routing_order("/rooms/{roomId}/mute")


async def test_capabilities_is_not_read_as_a_user_id(rpc: Recorder) -> None:
    # Declared in reverse (templated first) on purpose: routing must not depend on declaration order.
    operations = list(reversed(chat_operations(cast(Any, rpc))))
    app = build_app(operations, TokenVerifier(secret=SECRET), Settings.from_env())
    async with TestClient(TestServer(app)) as client:
        response = await client.get("/users/capabilities", headers=bearer())
        assert response.status == 418, await response.text()
        assert rpc.sent[-1][0] == subjects.chat_query("getCapabilities")
        response = await client.put(
            "/rooms/workspaces/rank", json=[{"roomId": ROOM, "rank": 1}], headers=bearer()
        )
        assert response.status == 418, await response.text()
        subject, request = rpc.sent[-1]
        assert subject == subjects.chat_command("updateWorkspacesRank")
        assert request.body == chat.UpdateWorkspacesRank(ranks=(chat.RoomRank(room_id=ROOM, rank=1),))


async def test_openapi_documents_each_chat_route(client: Any) -> None:
    document = await (await client.get("/openapi.json")).json()
    for route in CHAT_ROUTES:
        entry = document["paths"][route.path][route.method.lower()]
        assert entry["operationId"] == (route.operation_id or route.op)
        assert str(route.status) in entry["responses"]
    users = document["paths"]["/users"]["get"]["parameters"][0]
    assert users["name"] == "userIds"
    assert users["schema"]["maxItems"] == 10


def _creation(**fields: Any) -> dict[str, Any]:
    return {"type": "group", "name": "g", "membersIds": [ROOM, OTHER], **fields}


# Bodies the use case refuses (400) without looking at stored state: the document must refuse them too,
# or a client (and the fuzzer) reading it sends them in good faith.
REFUSED_CREATIONS = [
    _creation(name=None),
    _creation(type="temporary", name=None, membersIds=[]),
    _creation(membersIds=[ROOM]),
    _creation(membersIds=[ROOM, ROOM]),
    _creation(membersIds=[str(uuid.UUID(int=i)) for i in range(129)]),
    _creation(parentId=ROOM),
    _creation(type="one_to_one", name=None, membersIds=[ROOM, OTHER]),
    {"type": "one_to_one", "name": "x", "membersIds": [ROOM]},
    {"type": "one_to_one", "description": "x", "membersIds": [ROOM]},
    {"type": "one_to_one"},
    {"type": "workspace", "name": "w", "membersIds": [ROOM]},
    {"type": "channel", "name": "c"},
    {"type": "channel", "name": "c", "parentId": ROOM, "membersIds": [OTHER]},
]
ACCEPTED_CREATIONS = [
    _creation(),
    {"type": "one_to_one", "membersIds": [ROOM]},
    {"type": "one_to_one", "name": None, "membersIds": [ROOM]},
    {"type": "temporary", "name": "t"},
    {"type": "workspace", "name": "w", "membersIds": [ROOM, OTHER]},
    {"type": "channel", "name": "c", "parentId": ROOM},
]


async def test_the_document_states_the_room_creation_rules(client: Any) -> None:
    document = await (await client.get("/openapi.json")).json()
    content = document["paths"]["/rooms"]["post"]["requestBody"]["content"]["application/json"]
    validator = jsonschema.Draft202012Validator({**content["schema"], "components": document["components"]})
    for body in REFUSED_CREATIONS:
        assert not validator.is_valid(body), body
    for body in ACCEPTED_CREATIONS:
        assert validator.is_valid(body), body


# --- parameters folded into the command body ------------------------------------------------------------


async def test_path_and_body_fold_into_one_command(client: Any, rpc: Recorder) -> None:
    response = await client.put(f"/rooms/{ROOM.upper()}", json={"name": "n"}, headers=bearer())
    assert response.status == 418
    subject, request = rpc.sent[-1]
    assert subject == subjects.chat_command("updateRoom")
    assert request.body == chat.UpdateRoom(room_id=ROOM, name="n")
    # The caller's id is the token's sub, lower-cased (as ids decoded from a path or body are).
    assert request.caller.user_id == USER.lower()

    await client.post(
        f"/rooms/{ROOM}/members",
        json={"userId": OTHER, "owner": True, "historyCleared": False},
        headers=bearer(),
    )
    assert rpc.sent[-1][1].body == chat.InsertRoomMember(
        room_id=ROOM, user_id=OTHER, owner=True, history_cleared=False
    )
    await client.delete(f"/rooms/{ROOM}/members/{OTHER}/owner", headers=bearer())
    assert rpc.sent[-1] == (
        subjects.chat_command("deleteOwner"),
        rpc.sent[-1][1],
    )
    assert rpc.sent[-1][1].body == chat.MemberRef(room_id=ROOM, user_id=OTHER)
    await client.post(f"/rooms/{ROOM}/meeting", headers=bearer())
    assert rpc.sent[-1][0] == subjects.chat_command("createMeeting")
    assert rpc.sent[-1][1].body == chat.MeetingCreation(room_id=ROOM)


async def test_extra_fields_repeated_or_comma_separated_any_case(client: Any, rpc: Recorder) -> None:
    for query in ("extraFields=members&extraFields=SETTINGS", "extraFields=Members,settings"):
        response = await client.get(f"/rooms?{query}", headers=bearer())
        assert response.status == 418, await response.text()
        assert rpc.sent[-1][1].body == chat.ListRooms(extra_fields=("members", "settings"))
    response = await client.get("/rooms?extraFields=members,pictures", headers=bearer())
    assert response.status == 400
    await client.get("/rooms", headers=bearer())
    assert rpc.sent[-1][1].body == chat.ListRooms()


class Pager(Recorder):
    """Answers `listRoom` with the pages it is given, in turn (recording the cursor each was asked after)."""

    def __init__(self, pages: list[chat.RoomsPage]) -> None:
        super().__init__()
        self.pages = pages

    async def request(
        self, subject: str, request: Any, value_type: Any, *, timeout: float | None = None
    ) -> Accepted[Any] | Rejected:
        self.sent.append((subject, request))
        return Accepted(value=self.pages[len(self.sent) - 1])


def a_room(room_id: str) -> chat.Room:
    now = datetime.now(UTC)
    return chat.Room(id=room_id, type="group", created_at=now, updated_at=now, name=room_id[:4])


async def test_get_rooms_assembles_the_service_pages() -> None:
    # Each bus reply is one NATS message at most: the service pages, the HTTP answer is the whole list.
    rooms = [a_room(ROOM), a_room(OTHER)]
    pager = Pager([chat.RoomsPage(items=(rooms[0],), after=ROOM), chat.RoomsPage(items=(rooms[1],))])
    async with TestClient(TestServer(chat_app(cast(Any, pager)))) as test_client:
        response = await test_client.get("/rooms?extraFields=members", headers=bearer())
        assert response.status == 200, await response.text()
        assert [r["id"] for r in await response.json()] == [ROOM, OTHER]
    assert [request.body.after for _, request in pager.sent] == [None, ROOM]
    assert all(request.body.extra_fields == ("members",) for _, request in pager.sent)


async def test_get_rooms_pages_that_do_not_move_on_are_502_not_a_loop() -> None:
    stuck = chat.RoomsPage(items=(a_room(ROOM),), after=ROOM)
    pager = Pager([stuck, stuck, stuck])
    async with TestClient(TestServer(chat_app(cast(Any, pager)))) as test_client:
        response = await test_client.get("/rooms", headers=bearer())
        assert response.status == 502
        assert set(await response.json()) == {"message", "traceId"}
    assert len(pager.sent) == 2


@pytest.mark.parametrize("query", ["extraFields=", "extraFields=members,", "extraFields=,settings"])
async def test_an_empty_extra_field_is_400_not_ignored(client: Any, rpc: Recorder, query: str) -> None:
    # The document says each item is members or settings: an empty one is bad input, as the fuzzer sends.
    sent = len(rpc.sent)
    response = await client.get(f"/rooms?{query}", headers=bearer())
    assert response.status == 400, await response.text()
    assert "extraFields" in (await response.json())["message"]
    assert len(rpc.sent) == sent


async def test_user_ids_repeated_at_most_ten(client: Any, rpc: Recorder) -> None:
    ids = [f"00000000-0000-4000-8000-{n:012d}" for n in range(11)]
    query = "&".join(f"userIds={i}" for i in ids[:10])
    response = await client.get(f"/users?{query}", headers=bearer())
    assert response.status == 418
    assert rpc.sent[-1][1].body == chat.GetUsers(user_ids=tuple(ids[:10]))
    sent = len(rpc.sent)
    response = await client.get(f"/users?{query}&userIds={ids[10]}", headers=bearer())
    assert response.status == 400
    assert (await response.json())["traceId"]
    response = await client.get("/users", headers=bearer())
    assert response.status == 400
    assert len(rpc.sent) == sent


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/rooms/not-a-uuid"),
        ("DELETE", f"/rooms/{ROOM}/members/42"),
        ("GET", "/users/alice"),
        ("PUT", "/rooms/workspaces/nope/channels/rank"),
        ("GET", "/users?userIds=alice"),
    ],
)
async def test_malformed_uuid_is_400(client: Any, rpc: Recorder, method: str, path: str) -> None:
    response = await client.request(method, path, json=[], headers=bearer())
    assert response.status == 400, await response.text()
    assert set(await response.json()) == {"message", "traceId"}
    assert rpc.sent == []


async def test_unknown_body_field_is_400(client: Any, rpc: Recorder) -> None:
    response = await client.put(f"/rooms/{ROOM}", json={"roomId": OTHER}, headers=bearer())
    assert response.status == 400
    assert rpc.sent == []


async def test_chat_needs_a_uuid_user(client: Any, rpc: Recorder) -> None:
    response = await client.get("/rooms", headers=bearer("alice"))
    assert response.status == 403
    assert "UUID" in (await response.json())["message"]
    response = await client.get("/events/ws", headers=bearer("alice"))
    assert response.status == 403
    assert rpc.sent == []


# --- cookie auth and /auth/token ------------------------------------------------------------------------


async def test_cookie_authenticates_and_auth_token_echoes_it(client: Any, rpc: Recorder) -> None:
    jwt = token()
    response = await client.get("/auth/token", cookies={"ZM_AUTH_TOKEN": jwt})
    assert response.status == 200
    assert await response.json() == {"zmToken": jwt}
    response = await client.get("/users/capabilities", cookies={"ZM_AUTH_TOKEN": jwt})
    assert response.status == 418
    response = await client.get("/auth/token", headers=bearer())
    assert (await response.json())["zmToken"] == bearer()["Authorization"].removeprefix("Bearer ")


async def test_bad_cookie_is_401(client: Any) -> None:
    response = await client.get("/auth/token", cookies={"ZM_AUTH_TOKEN": "not.a.jwt"})
    assert response.status == 401
    response = await client.get("/auth/token")
    assert response.status == 401


# --- UserSeen -------------------------------------------------------------------------------------------


def principal(user_id: str = USER, **fields: Any) -> Principal:
    return msgspec.convert(
        {"userId": user_id, "organizationId": "acme", "expiresAt": "2030-01-01T00:00:00Z", **fields},
        Principal,
    )


async def test_user_seen_at_most_once_per_interval() -> None:
    now = [1000.0]
    published = Published()
    reporter = SeenReporter(published, interval=300.0, clock=lambda: now[0])
    reporter.seen(principal(name="Alice", email="a@x.io"))
    reporter.seen(principal())
    await reporter.flush()
    assert published.subjects == [subjects.users_seen("acme", USER.lower())]
    report = msgspec.json.decode(published.payloads[0], type=chat.UserSeen)
    assert report == chat.UserSeen(
        organization_id="acme", user_id=USER.lower(), name="Alice", email="a@x.io", type="internal"
    )
    now[0] += 299.0
    reporter.seen(principal())
    await reporter.flush()
    assert len(published.subjects) == 1
    now[0] += 2.0
    reporter.seen(principal(guest=True))
    await reporter.flush()
    assert len(published.subjects) == 2
    assert msgspec.json.decode(published.payloads[1], type=chat.UserSeen).type == "guest"
    reporter.seen(principal("alice"))  # not a UUID: not a chat user
    await reporter.flush()
    assert len(published.subjects) == 2


async def test_user_seen_memory_is_bounded_and_a_failure_retries() -> None:
    failing = True

    async def publish(subject: str, payload: bytes) -> None:
        if failing:
            raise TimeoutError
        published.append(subject)

    published: list[str] = []
    reporter = SeenReporter(publish, capacity=2)
    reporter.seen(principal())
    await reporter.flush()
    failing = False
    reporter.seen(principal())  # the failed report is forgotten: tried again
    await reporter.flush()
    assert len(published) == 1
    reporter.seen(principal(OTHER))
    reporter.seen(principal(ROOM))  # evicts USER, the least recently reported
    reporter.seen(principal())
    await reporter.flush()
    assert len(published) == 4


async def test_user_seen_never_delays_the_request(rpc: Recorder) -> None:
    release = asyncio.Event()
    subjects_seen: list[str] = []

    async def stalled(subject: str, payload: bytes) -> None:
        subjects_seen.append(subject)
        await release.wait()

    reporter = SeenReporter(stalled)
    async with TestClient(TestServer(chat_app(rpc, reporter))) as client:
        response = await asyncio.wait_for(client.get("/auth/token", headers=bearer()), 2.0)
        assert response.status == 200
        assert subjects_seen == [subjects.users_seen("acme", USER.lower())]
        release.set()
        await reporter.close()


def test_chat_routes_are_operations() -> None:
    assert all(isinstance(op, Operation) for op in chat_operations(cast(Any, Recorder())))
