"""The authorization sweep (issue 12): generated from the running stack's own `/openapi.json`.

Every operation of the document is swept, so a route added tomorrow is covered the day it lands:
- as organization B with organization A's ids: 404 `{message, traceId}` and nothing of A's changed;
- as a user of A without access (a non-member of a room, a meeting-token holder off the conference API, a
  SourceFuse token without the permission): 403 or 404 as the seed says;
- without a valid token (none, expired, wrong signature, `alg: none`, unknown `kid`): 401;
- with a 1 GiB `Content-Length` and a few bytes on a JSON route: 413 at once, the body never read whole;
- with `../`, `%2e%2e%2f`, NUL or 10,000 characters in a path parameter: a clean 4xx, never a 5xx or a hang.

Objects are made once per module by a table of factories keyed by path-parameter name: a parameter with no
factory fails the sweep (so a new kind of object must come with its factory). Each check is one test item
looping over the operations and reporting every offender at once. The stack is the fuzz test's (every API,
chat and meetings included); the module takes well under its 60 s budget.
"""

from __future__ import annotations

import base64
import http.client
import io
import json
import re
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jwt
import pypdfium2 as pdfium
import pytest
import requests

from tests.integration.helpers import ORG, SECRET, Stack, token
from tests.integration.test_openapi_fuzz import SOURCEFUSE, fuzz_stack

pytestmark = pytest.mark.timeout(120)

OTHER_ORG = "globex"
TIMEOUT = 5.0  # per request: anything slower is a hang as far as this sweep is concerned
METHODS = ("get", "put", "post", "patch", "delete")
# The operations anyone may call (the document says `security: []`), each for a reason of its own.
PUBLIC = {
    # Liveness and readiness probes of the orchestrator.
    ("GET", "/health"),
    ("GET", "/health/live"),
    ("GET", "/health/ready"),
    # Where tokens come from: the client authenticates with its id and secret instead.
    ("POST", "/security/oauth/token"),
    ("POST", "/v1/auth/token"),
    # The media provider's webhook: it carries its own shared secret, not a bearer token.
    ("POST", "/webhooks/session"),
    # A signed snapshot URL: the signature in the path is the credential (snapshot service).
    ("GET", "/rtc-api/snapshots/signed/{snapshotId}/{expiration}"),
}
# WebSocket upgrades: a plain HTTP request is refused by the handshake (400) once authenticated, so they
# take part in the 401 checks only (their own tests cover the channel).
WEBSOCKETS = {("GET", "/rtc-api/events/ws"), ("GET", "/events/ws")}


@dataclass(frozen=True)
class Op:
    method: str
    path: str
    spec: dict[str, Any]

    @property
    def params(self) -> list[str]:
        return re.findall(r"{(\w+)}", self.path)

    @property
    def media_types(self) -> list[str]:
        return list(self.spec.get("requestBody", {}).get("content", {}))

    @property
    def public(self) -> bool:
        return self.spec.get("security") == []

    def __str__(self) -> str:
        return f"{self.method} {self.path}"


class Client:
    """One identity (a bearer token, or none) against the gateway, with a per-request timeout."""

    def __init__(self, base_url: str, bearer: str | None, http_session: requests.Session) -> None:
        self.base_url = base_url
        self.bearer = bearer
        self.http = http_session

    def call(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        data: bytes | None = None,
        headers: dict[str, str] | None = None,
        params: dict[str, str] | None = None,
    ) -> requests.Response:
        sent = {"Authorization": f"Bearer {self.bearer}"} if self.bearer else {}
        return self.http.request(
            method,
            self.base_url + path,
            json=json_body,
            data=data,
            headers={**sent, **(headers or {})},
            params=params,
            timeout=TIMEOUT,
        )


def body_of(response: requests.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return response.content[:200]


def ok(response: requests.Response, *statuses: int) -> Any:
    assert response.status_code in (statuses or (200,)), (
        response.request.url,
        response.status_code,
        body_of(response),
    )
    return body_of(response) if response.content else None


def seed_error(response: requests.Response, *statuses: int) -> str | None:
    """Why the response is not one of `statuses` with the seed's error body `{message, traceId}`, or None."""
    body = body_of(response)
    if response.status_code not in statuses:
        return f"{response.status_code} {body!r}"
    if not (isinstance(body, dict) and set(body) == {"message", "traceId"} and body["message"]):
        return f"{response.status_code} with body {body!r}, not {{message, traceId}}"
    return None


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


@dataclass
class World:
    """Organization A's objects (ids by path-parameter name), the clients, and how to read A's state."""

    stack: Stack
    http: requests.Session
    ids: dict[str, str] = field(default_factory=dict)
    # Reads (as A's owner) whose answers must not change when B or an outsider calls anything.
    state_reads: list[str] = field(default_factory=list)
    users: dict[str, str] = field(default_factory=dict)

    def client(self, user: str, org: str = ORG, **claims: Any) -> Client:
        return Client(self.stack.url, token(user, org, permissions=SOURCEFUSE, **claims), self.http)

    @property
    def owner(self) -> Client:
        return self.client(self.users["owner"])

    def state(self) -> dict[str, Any]:
        owner = self.owner
        return {path: read_state(owner.call("GET", path)) for path in self.state_reads}


def read_state(response: requests.Response) -> tuple[int, str]:
    # A Coviu participant's entry_url carries a meeting token minted at each read (its `iat` moves).
    return response.status_code, re.sub(r"access_token=[\w.-]+", "access_token=...", response.text)


def eventually(probe: Callable[[], requests.Response], within: float = 15.0) -> requests.Response:
    """`probe` again while it answers 503: the stack is ready when the gateway and the conference service
    are; the other services may still be subscribing."""
    deadline = time.monotonic() + within
    while (response := probe()).status_code == 503 and time.monotonic() < deadline:
        time.sleep(0.1)
    return response


def known(world: World, org: str, *names: str) -> None:
    """New users of `org`, known to the chat directory from their first request (the gateway reports them
    in the background): each calls once, then the first waits until it can see them all."""
    clients = []
    for name in names:
        world.users[name] = str(uuid.uuid4())
        clients.append(client := world.client(world.users[name], org))
        ok(eventually(partial(client.call, "GET", "/users/capabilities")))
    deadline = time.monotonic() + 10
    for name in names:
        while clients[0].call("GET", f"/users/{world.users[name]}").status_code != 200:
            assert time.monotonic() < deadline, f"user {name} never became known"
            time.sleep(0.1)


# ---------------------------------------------------------------- factories, by path-parameter name
# Each makes organization A's object through the HTTP API, records its id(s) in `world.ids`, and the reads
# that show its state. A factory may need another's object first (a message needs a room).


def make_conference(world: World) -> None:
    # No one joins it: a joined endpoint that sends no keepalive is dropped after a while, which would read
    # as a change. Its events (`?v=0`) still hold its creation.
    conference = ok(world.owner.call("POST", "/rtc-api/conferences/create", json_body={}))["id"]
    world.ids["id"] = conference
    world.state_reads.append(f"/rtc-api/conferences/{conference}")


def make_recording(world: World) -> None:
    # A recording needs a media node, which this stack does not run: an id that A's conference does not
    # hold still has to be refused as 404 to B (the conference is what B may not see).
    if "id" not in world.ids:
        make_conference(world)
    world.ids["recordingId"] = "recording-of-a"


def make_snapshot(world: World) -> None:
    # A conference of its own, joined by the requester and the target (the snapshot's state is its own).
    conference = ok(world.owner.call("POST", "/rtc-api/conferences/create", json_body={}))["id"]
    for user, endpoint in (("owner", "ep-owner"), ("member", "ep-member")):
        joined = {"conferenceId": conference, "userEndpointId": endpoint}
        ok(world.client(world.users[user]).call("POST", "/rtc-api/conferences/join", json_body=joined))
    requested = ok(
        world.owner.call(
            "POST",
            "/rtc-api/snapshots/request",
            json_body={
                "sessionType": "CONFERENCE",
                "sessionId": conference,
                "userEndpointId": "ep-owner",
                "targetUserEndpointId": "ep-member",
                "snapshotType": "ID_CARD",
            },
        )
    )
    world.ids["snapshotId"] = requested["snapshotId"]
    world.state_reads.append(f"/rtc-api/snapshots/{requested['snapshotId']}")
    asked = world.owner.call(
        "POST",
        "/rtc-api/snapshots/cameraRequest",
        json_body={
            "cameraRequestType": "FLASH_ON",
            "sessionType": "CONFERENCE",
            "sessionId": conference,
            "userEndpointId": "ep-owner",
            "targetUserEndpointId": "ep-member",
        },
    )
    world.ids["snapshotCameraRequestId"] = ok(asked)


def make_room(world: World) -> None:
    owner = world.owner
    members = [world.users["member"], world.users["member2"]]
    room = ok(
        owner.call("POST", "/rooms", json_body={"type": "group", "name": "a", "membersIds": members}), 201
    )["id"]
    world.ids["roomId"] = room
    world.state_reads += [f"/rooms/{room}", f"/rooms/{room}/members", f"/rooms/{room}/messages"]


def make_workspace(world: World) -> None:
    owner = world.owner
    members = [world.users["member"], world.users["member2"]]
    workspace = ok(
        owner.call("POST", "/rooms", json_body={"type": "workspace", "name": "w", "membersIds": members}), 201
    )["id"]
    ok(
        owner.call(
            "POST",
            "/rooms",
            json_body={"type": "channel", "name": "c", "parentId": workspace, "membersIds": []},
        ),
        201,
    )
    world.ids["workspaceId"] = workspace
    world.state_reads.append(f"/rooms/{workspace}")


def make_user(world: World) -> None:
    # The room's other member: B must not see A's users, nor touch them in A's room.
    world.ids["userId"] = world.users["member"]
    world.state_reads.append(f"/users/{world.users['member']}")


def make_message(world: World) -> None:
    if "roomId" not in world.ids:
        make_room(world)
    sent = ok(
        world.owner.call("POST", f"/rooms/{world.ids['roomId']}/messages", json_body={"text": "hello"}), 201
    )
    world.ids["messageId"] = sent["id"]


def make_file(world: World) -> None:
    if "roomId" not in world.ids:
        make_room(world)
    uploaded = ok(
        world.owner.call(
            "POST",
            f"/rooms/{world.ids['roomId']}/attachments",
            data=PNG,
            headers=PNG_HEADERS,
        ),
        201,
    )
    world.ids["fileId"] = uploaded["id"]
    world.state_reads.append(f"/attachments/{uploaded['id']}")
    document = pdfium.PdfDocument.new()
    document.new_page(612, 792)
    out = io.BytesIO()
    document.save(out)
    uploaded = ok(
        world.owner.call(
            "POST",
            f"/rooms/{world.ids['roomId']}/attachments",
            data=out.getvalue(),
            headers={"fileName": "a.pdf", "mimeType": "application/pdf"},
        ),
        201,
    )
    world.ids["pdfFileId"] = uploaded["id"]
    world.state_reads.append(f"/attachments/{uploaded['id']}")
    # The room's picture and meeting, and its member's picture: what the room and user routes read.
    room = world.ids["roomId"]
    ok(world.owner.call("PUT", f"/rooms/{room}/picture", data=PNG, headers=PNG_HEADERS), 204)
    ok(world.owner.call("POST", f"/rooms/{room}/meeting"), 200, 201)
    member = world.client(world.users["member"])
    ok(member.call("PUT", f"/users/{world.users['member']}/picture", data=PNG, headers=PNG_HEADERS), 204)
    world.state_reads += [f"/rooms/{room}/meeting", f"/users/{world.users['member']}/picture"]


PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg=="
)
PNG_HEADERS = {"fileName": "a.png", "mimeType": "image/png", "Content-Type": "application/octet-stream"}


def make_area(world: World) -> None:
    world.ids["area"] = "16x16"  # not an object: the preview's size


def make_meeting_link(world: World) -> None:
    link = ok(world.owner.call("POST", "/session", json_body={"isScheduled": False}))
    world.ids["meetingLinkId"] = link
    world.state_reads.append(f"/session/{world.ids['meetingLinkId']}/attendees")


def make_archive(world: World) -> None:
    # An archive is a recording of a meeting with a media node, which this stack does not run (the
    # archives tests make real ones): an id B cannot tell from a real one of A's.
    world.ids["archiveId"] = "archive-of-a"


def make_coviu_session(world: World) -> None:
    start = datetime.now(UTC) + timedelta(hours=1)
    created = ok(
        world.owner.call(
            "POST",
            "/v1/sessions",
            json_body={"start_time": rfc3339(start), "end_time": rfc3339(start + timedelta(hours=1))},
        )
    )
    world.ids["session_id"] = created["session_id"]
    world.state_reads.append(f"/v1/sessions/{created['session_id']}?deleted_participants=true")


def make_participant(world: World) -> None:
    if "session_id" not in world.ids:
        make_coviu_session(world)
    added = ok(
        world.owner.call(
            "POST",
            f"/v1/sessions/{world.ids['session_id']}/participants",
            json_body={"display_name": "Guest", "role": "guest"},
        )
    )
    world.ids["participant_id"] = added["participant_id"]
    world.state_reads.append(f"/v1/participants/{added['participant_id']}")


def make_webhook(world: World) -> None:
    # For an event this stack never raises (it runs no media node): failed deliveries to its unreachable
    # URL, parked and shown by GET, would read as a change.
    created = ok(
        world.owner.call(
            "POST",
            "/rtc-api/webhooks",
            json_body={"url": "http://127.0.0.1:9/a", "eventTypes": ["RecordingStoredEvent"]},
        ),
        201,
    )
    world.ids["webhookId"] = created["webhookId"]
    world.state_reads.append(f"/rtc-api/webhooks/{created['webhookId']}")


FACTORIES: dict[str, Callable[[World], None]] = {
    "id": make_conference,
    "recordingId": make_recording,
    "snapshotId": make_snapshot,
    "roomId": make_room,
    "workspaceId": make_workspace,
    "userId": make_user,
    "messageId": make_message,
    "fileId": make_file,
    "area": make_area,
    "meetingLinkId": make_meeting_link,
    "archiveId": make_archive,
    "session_id": make_coviu_session,
    "participant_id": make_participant,
    "webhookId": make_webhook,
}

# A valid body per operation (the body A would send), so that B's 404 is not a 400 in disguise.
# `{name}` placeholders are filled with A's ids.
BODIES: dict[tuple[str, str], Any] = {
    # The event: a CamelCase type ending in Event, an ISO-8601 timestamp (rules stated in words only).
    ("POST", "/rtc-api/conferences/sendEvent"): {
        "conferenceId": "{id}",
        "event": {"type": "ParticipantMutedEvent", "timestamp": "2026-01-01T00:00:00Z"},
        "qos": "BEST_EFFORT",
    },
    ("PUT", "/rooms/workspaces/{workspaceId}/channels/rank"): [],
    ("PUT", "/rooms/{roomId}"): {"name": "renamed"},
    ("POST", "/rooms/{roomId}/members"): {"userId": "{newcomer}", "owner": False, "historyCleared": False},
    ("POST", "/rooms/{roomId}/messages"): {"text": "from b"},
    ("PUT", "/rooms/{roomId}/messages/{messageId}"): {"text": "edited by b"},
    ("POST", "/rooms/{roomId}/forward"): [{"originalMessage": "{messageId}"}],
    ("POST", "/session/{meetingLinkId}/token"): {},
    ("PATCH", "/session/{meetingLinkId}"): {"isScheduled": False},
    ("PUT", "/v1/sessions/{session_id}"): {"session_name": "renamed by b"},
    ("POST", "/v1/sessions/{session_id}/participants"): {"display_name": "Intruder", "role": "host"},
    ("PUT", "/v1/participants/{participant_id}"): {"display_name": "renamed by b"},
}
# Raw-body uploads: the headers and bytes A would send.
UPLOADS: dict[tuple[str, str], dict[str, str]] = {
    ("POST", "/rooms/{roomId}/attachments"): {"fileName": "b.bin", "mimeType": "application/octet-stream"},
    ("PUT", "/rooms/{roomId}/picture"): {"fileName": "b.png", "mimeType": "image/png"},
    ("PUT", "/users/{userId}/picture"): {"fileName": "b.png", "mimeType": "image/png"},
}


# The operations that need another object of the same kind than the factory's (a PDF's previews).
IDS_FOR: dict[str, dict[str, str]] = {"/preview/pdf/": {"fileId": "pdfFileId"}}
# Values of the required query parameters (e.g. the long poll's version).
QUERY: dict[str, str] = {
    "v": "0",
    "interactionId": "interaction-of-a",
    "userIds": "{userId}",
    "userEndpointId": "ep-owner",
}


def ids_for(op: Op, ids: dict[str, str]) -> dict[str, str]:
    for prefix, renamed in IDS_FOR.items():
        if op.path.startswith(prefix):
            return {**ids, **{name: ids[other] for name, other in renamed.items()}}
    return ids


def query_of(op: Op) -> dict[str, str]:
    required = [p["name"] for p in op.spec.get("parameters", []) if p["in"] == "query" and p.get("required")]
    missing = [name for name in required if name not in QUERY]
    assert not missing, f"{op}: required query parameters with no value in QUERY: {missing}"
    return {name: QUERY[name] for name in required}


# Where the seed answers organization B otherwise than 404, by a rule checked before any lookup, so the
# answer is the same for every id and tells B nothing: chat-carbonio.md, "PUT|DELETE /users/{id}/picture:
# not the caller's own id -> 403".
SEED_STATUS_FOR_B: dict[tuple[str, str], int] = {
    ("PUT", "/users/{userId}/picture"): 403,
    ("DELETE", "/users/{userId}/picture"): 403,
}
# Where the seed answers an oversize body otherwise than 413: chat-carbonio.md, pictures "Content-Length >
# max...ImageSizeInKb * 1024 -> 400" (checked from the header, the body unread, like the 413s).
SEED_STATUS_FOR_OVERSIZE: dict[tuple[str, str], int] = {
    ("PUT", "/rooms/{roomId}/picture"): 400,
    ("PUT", "/users/{userId}/picture"): 400,
}


def fill(value: Any, ids: dict[str, str]) -> Any:
    if isinstance(value, str):
        return re.sub(r"{(\w+)}", lambda m: ids[m.group(1)], value)
    if isinstance(value, list):
        return [fill(item, ids) for item in value]
    if isinstance(value, dict):
        return {key: fill(item, ids) for key, item in value.items()}
    return value


def send(client: Client, op: Op, ids: dict[str, str], path: str | None = None) -> requests.Response:
    """The operation as its caller would send it, with `ids` in the path (or `path` as given)."""
    ids = ids_for(op, ids)
    url = path if path is not None else fill(op.path, ids)
    key, params = (op.method, op.path), fill(query_of(op), ids)
    if key in UPLOADS:
        headers = {**UPLOADS[key], "Content-Type": "application/octet-stream"}
        return client.call(op.method, url, data=PNG, headers=headers, params=params)
    if "application/json" in op.media_types:
        if key in BODIES:
            body = BODIES[key]
        elif body_objects(op):
            body = example(body_schema(op), op.spec["__components__"])
        else:
            body = {}
        return client.call(op.method, url, json_body=fill(body, ids), params=params)
    return client.call(op.method, url, params=params)


# ---------------------------------------------------------------- the stack, the document, the objects


@pytest.fixture(scope="module")
def swept_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    running = fuzz_stack(Path(tmp_path_factory.mktemp("sweep")))
    running.start()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def http_session() -> Iterator[requests.Session]:
    with requests.Session() as session:
        yield session


@pytest.fixture(scope="module")
def operations(swept_stack: Stack, http_session: requests.Session) -> list[Op]:
    document = http_session.get(f"{swept_stack.url}/openapi.json", timeout=TIMEOUT).json()
    components = document["components"]["schemas"]
    found = [
        Op(method.upper(), path, {**spec, "__components__": components})
        for path, item in document["paths"].items()
        for method, spec in item.items()
        if method in METHODS
    ]
    assert len(found) > 90, "the document lost its operations"
    return found


@pytest.fixture(scope="module")
def world(swept_stack: Stack, http_session: requests.Session, operations: list[Op]) -> World:
    made = World(swept_stack, http_session)
    # The stack is ready when the gateway and the conference service are: wait for the snapshot service
    # too (the chat service is waited for by `known`).
    probe = made.client("probe")
    ok(eventually(partial(probe.call, "GET", "/rtc-api/snapshots", params={"interactionId": "probe"})))
    known(made, ORG, "owner", "member", "member2", "outsider", "newcomer")
    known(made, OTHER_ORG, "stranger")
    made.ids["newcomer"] = made.users["newcomer"]
    missing = sorted({p for op in operations if not op.public for p in op.params} - set(FACTORIES))
    assert not missing, f"path parameters with no factory (add one to FACTORIES): {missing}"
    for name, factory in FACTORIES.items():
        if name not in made.ids:
            factory(made)
    return made


def named(operations: list[Op]) -> list[Op]:
    """The operations that name an object, in their path or in a required field of their JSON body
    (the conference and snapshot commands), minus the public and the WebSocket ones."""
    return [
        op
        for op in operations
        if (op.params or body_objects(op)) and not op.public and (op.method, op.path) not in WEBSOCKETS
    ]


# Required body fields that name an object, and the factory id they take. Any other required `...Id` field
# must be listed in NOT_BODY_OBJECTS with its reason, or the sweep fails (a new command is covered).
BODY_OBJECTS = {
    "conferenceId": "id",
    "snapshotId": "snapshotId",
    "snapshotCameraRequestId": "snapshotCameraRequestId",
    "roomId": "roomId",
}
NOT_BODY_OBJECTS = {
    # A device or a stream within the conference the body names: the conference is what B may not see.
    "userEndpointId",
    "targetUserEndpointId",
    "lobbyEndpointId",
    "streamId",
    "viewerId",
    # A user added to the room of the path (covered by the path's roomId).
    "userId",
    # The media provider's session, in the public webhook that carries its own secret.
    "sessionId",
}


def body_schema(op: Op) -> dict[str, Any]:
    schema = op.spec.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema", {})
    if "$ref" in schema:
        schema = op.spec["__components__"][schema["$ref"].rsplit("/", 1)[-1]]
    return dict(schema)


def body_objects(op: Op) -> list[str]:
    """The required body fields of `op` that name an object (see BODY_OBJECTS)."""
    required = body_schema(op).get("required", [])
    unknown = [
        f for f in required if f.endswith("Id") and f not in BODY_OBJECTS and f not in NOT_BODY_OBJECTS
    ]
    assert not unknown, f"{op}: body fields naming an object with no entry in BODY_OBJECTS: {unknown}"
    return [f for f in required if f in BODY_OBJECTS]


def example(schema: dict[str, Any], components: dict[str, Any], name: str = "") -> Any:
    """A small valid value of `schema` (required fields only); an object-naming field gets A's id."""
    if name in BODY_OBJECTS:
        return "{" + BODY_OBJECTS[name] + "}"
    if name.endswith("EndpointId") or name in ("streamId", "viewerId"):
        return "ep-owner"
    if "$ref" in schema:
        return example(components[schema["$ref"].rsplit("/", 1)[-1]], components, name)
    if "enum" in schema:
        return schema["enum"][0]
    if "anyOf" in schema:
        return example(next(s for s in schema["anyOf"] if s.get("type") != "null"), components, name)
    kind = schema.get("type")
    if kind == "object":
        props = schema.get("properties", {})
        return {f: example(props.get(f, {}), components, f) for f in schema.get("required", [])}
    if kind == "array":
        return [example(schema["items"], components)] if schema.get("minItems") else []
    if kind in ("integer", "number"):
        return max(schema.get("minimum", 0), 0)
    if kind == "boolean":
        return False
    return "x"


# ---------------------------------------------------------------- 1. another organization


def test_the_public_operations_are_exactly_the_allow_list(operations: list[Op]) -> None:
    assert {(op.method, op.path) for op in operations if op.public} == PUBLIC


def test_another_organization_gets_404_and_changes_nothing(world: World, operations: list[Op]) -> None:
    owner, stranger = world.owner, world.client(world.users["stranger"], OTHER_ORG)
    missing = [
        str(op)
        for op in named(operations)
        if op.params and "application/json" in op.media_types and (op.method, op.path) not in BODIES
    ]
    assert not missing, f"operations with a JSON body and no entry in BODIES: {missing}"
    failures: list[str] = []
    initial = world.state()
    # Guard against a sweep that silently sweeps nothing (e.g. a document that lost its parameters).
    assert len(named(operations)) > 70, [str(op) for op in named(operations)]
    for op in named(operations):
        if op.method == "GET" and not {"recordingId", "archiveId"} & set(op.params):
            # The ids are live: the same read as A answers 2xx.
            as_owner = send(owner, op, world.ids)
            if not 200 <= as_owner.status_code < 300:
                failures.append(f"{op} as A: {as_owner.status_code} {body_of(as_owner)!r}")
        # A's state is read around each write (reads change nothing by contract: once per sweep).
        before = world.state() if op.method != "GET" else {}
        problem = seed_error(send(stranger, op, world.ids), SEED_STATUS_FOR_B.get((op.method, op.path), 404))
        if problem:
            failures.append(f"{op} as B: {problem}")
        after = world.state() if op.method != "GET" else {}
        changed = [path for path in before if before[path] != after[path]]
        if changed:
            failures.append(f"{op} as B changed {changed}")
    final = world.state()
    failures += [f"the sweep as B changed {path}" for path in initial if initial[path] != final[path]]
    assert not failures, "\n".join(failures)


# ---------------------------------------------------------------- 2. a user of A without access

# The objects whose routes are for members only: a user of the same organization outside the room is 403
# (chat-carbonio.md: non-member 403, unknown room 404).
MEMBERS_ONLY = {"roomId", "workspaceId", "messageId", "fileId"}
# The conference API, the one place a meeting token is valid (the gateway's rule).
CONFERENCE_API = ("/rtc-api/conferences/", "/rtc-api/events/ws")


def test_users_of_a_without_access_are_refused(world: World, operations: list[Op]) -> None:
    outsider = world.client(world.users["outsider"])
    meeting_token = ok(world.owner.call("POST", f"/session/{world.ids['meetingLinkId']}/token", json_body={}))
    meeting = Client(world.stack.url, meeting_token["token"], world.http)
    unpermitted = Client(world.stack.url, token(world.users["outsider"]), world.http)
    failures: list[str] = []
    initial = world.state()
    for op in operations:
        if op.public or (op.method, op.path) in WEBSOCKETS:
            continue
        checks: list[tuple[str, Client, int, str | None]] = []
        if MEMBERS_ONLY & set(op.params):
            checks.append(("a non-member", outsider, 403, None))
        if not op.path.startswith(CONFERENCE_API):
            checks.append(
                ("a meeting token", meeting, 403, "a meeting token is valid only on the conference API")
            )
        elif "id" in op.params or "conferenceId" in body_objects(op):
            # On the conference API, a meeting token is for its own conference only, not A's others.
            checks.append(("a meeting token of another conference", meeting, 403, None))
        if "SourceFuse" in op.spec.get("tags", []):
            checks.append(("no SourceFuse permission", unpermitted, 403, "Not Allowed Access"))
        for who, client, status, message in checks:
            before = world.state() if op.method != "GET" else {}
            response = send(client, op, world.ids)
            problem = seed_error(response, status)
            if problem is None and message is not None and body_of(response)["message"] != message:
                problem = f"message {body_of(response)['message']!r}, not {message!r}"
            if problem:
                failures.append(f"{op} as {who}: {problem}")
            after = world.state() if op.method != "GET" else {}
            changed = [path for path in before if before[path] != after[path]]
            if changed:
                failures.append(f"{op} as {who} changed {changed}")
    final = world.state()
    failures += [
        f"the sweep without access changed {path}" for path in initial if initial[path] != final[path]
    ]
    assert not failures, "\n".join(failures)


# ---------------------------------------------------------------- 3. no valid token


def bad_tokens(user: str) -> dict[str, str | None]:
    now = int(time.time())
    claims = {"sub": user, "org": ORG, "iat": now, "exp": now + 600}
    return {
        "no token": None,
        "an expired token": token(user, ttl=-3600),
        "a wrong signature": token(user, secret="not-the-secret-of-the-deployment-32b"),
        "alg none": jwt.encode(claims, None, algorithm="none"),
        "an unknown kid": jwt.encode(claims, SECRET, algorithm="HS256", headers={"kid": "no-such-key"}),
    }


def test_every_route_refuses_a_missing_or_invalid_token_with_401(world: World, operations: list[Op]) -> None:
    failures: list[str] = []
    for op in operations:
        if op.public:
            continue
        for what, bearer in bad_tokens(world.users["owner"]).items():
            problem = seed_error(send(Client(world.stack.url, bearer, world.http), op, world.ids), 401)
            if problem:
                failures.append(f"{op} with {what}: {problem}")
    assert not failures, "\n".join(failures)


# ---------------------------------------------------------------- 4. oversize bodies, never read whole

GIB = 1024**3


def raw_request(url: str, head: str, body: bytes = b"", *, within: float) -> tuple[int | None, bytes]:
    """Send a request's head and the first bytes of its body on a bare socket, and read the answer's status
    and first bytes, or (None, what came) if none arrives `within` seconds."""
    where = urlsplit(url)
    with socket.create_connection((where.hostname, where.port), timeout=within) as sock:
        sock.sendall(head.encode("latin-1") + body)
        received = b""
        deadline = time.monotonic() + within
        try:
            while b"\r\n\r\n" not in received and time.monotonic() < deadline:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                received += chunk
        except TimeoutError:
            return None, received
    match = re.match(rb"HTTP/1\.1 (\d{3})", received)
    return (int(match.group(1)) if match else None), received


def test_every_body_route_refuses_an_oversize_body_without_reading_it(
    world: World, operations: list[Op]
) -> None:
    failures: list[str] = []
    for op in operations:
        if not op.media_types:
            continue
        # The owner's own user: a user's picture is theirs only.
        path = fill(op.path, ids_for(op, world.ids) | {"userId": world.users["owner"]})
        head = (
            f"{op.method} {path} HTTP/1.1\r\nHost: gateway\r\n"
            f"Authorization: Bearer {world.owner.bearer}\r\n"
            f"Content-Type: {op.media_types[0]}\r\nContent-Length: {GIB}\r\n"
            + "".join(f"{name}: {value}\r\n" for name, value in UPLOADS.get((op.method, op.path), {}).items())
            + "\r\n"
        )
        started = time.monotonic()
        status, answer = raw_request(world.stack.url, head, b'{"a":', within=2.0)
        took = time.monotonic() - started
        if status != SEED_STATUS_FOR_OVERSIZE.get((op.method, op.path), 413):
            failures.append(f"{op}: {status} after {took:.1f} s, {answer[:120]!r}")
    assert not failures, "\n".join(failures)


# ---------------------------------------------------------------- 5. hostile ids

HOSTILE_IDS = {
    "../": "..%2F..%2Fx",
    "a raw ../": "../../x",
    "%2e%2e%2f": "%252e%252e%252fx",
    "a NUL": "a%00b",
    "10,000 characters": "a" * 10_000,
}


def test_hostile_ids_are_refused_cleanly(world: World, operations: list[Op]) -> None:
    failures: list[str] = []
    cases = 0
    where = urlsplit(world.stack.url)
    bearer = world.owner.bearer
    for op in operations:
        if not op.params:
            continue
        ids = ids_for(op, world.ids) | {"expiration": str(int(time.time()) + 600)}
        for param in op.params:
            for what, hostile in HOSTILE_IDS.items():
                # http.client sends the path as given: requests (urllib3) would resolve the dot segments.
                path = fill(op.path, ids | {param: hostile})
                cases += 1
                connection = http.client.HTTPConnection(where.hostname or "", where.port, timeout=TIMEOUT)
                try:
                    connection.request(op.method, path, headers={"Authorization": f"Bearer {bearer}"})
                    response = connection.getresponse()
                    status, raw = response.status, response.read()
                except TimeoutError:
                    failures.append(f"{op} {param}={what}: no answer within {TIMEOUT} s")
                    continue
                finally:
                    connection.close()
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = raw[:120]
                clean = isinstance(body, dict) and set(body) == {"message", "traceId"}
                if not (400 <= status < 500 and clean):
                    failures.append(f"{op} {param}={what}: {status} {body!r}")
    assert cases > 300, cases
    assert not failures, "\n".join(failures)
