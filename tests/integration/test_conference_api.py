"""The conference API end to end: HTTP -> gateway -> NATS -> conference service -> storage, and back."""

from __future__ import annotations

import asyncio
import json
import time

import nats
import pytest
from parley_common.contracts.base import Empty
from parley_common.contracts.conference import JoinConferenceWebCommand
from parley_common.contracts.rpc import Caller, Rejected, Request, reply_decoder
from parley_common.messaging import subjects
from parley_common.messaging.codec import encode

from tests.integration.helpers import ORG, Api, Stack, token, unique

# ---------------------------------------------------------------- create


async def test_create_with_an_empty_body_answers_a_router_conference_at_version_zero(api: Api) -> None:
    response = await api.post("create", {})
    assert response.status == 200
    assert response.body["mode"] == "ROUTER"
    assert response.body["version"] == 0
    assert response.body["id"]


async def test_create_uses_a_supplied_id_and_a_taken_one_conflicts(api: Api) -> None:
    conference_id = unique()
    first = await api.post("create", {"conferenceId": conference_id})
    assert (first.status, first.body["id"]) == (200, conference_id)
    second = await api.post("create", {"conferenceId": conference_id})
    assert second.status == 409
    assert conference_id in second.body["message"]
    assert second.body["traceId"]


@pytest.mark.parametrize("mode", ["P2P", "UNKNOWN"])
async def test_create_refuses_modes_other_than_router(api: Api, mode: str) -> None:
    response = await api.post("create", {"mode": mode})
    assert response.status == 400
    # The document's enum for mode is ["ROUTER"]: the body is refused as it decodes.
    assert mode in response.body["message"] and "mode" in response.body["message"]


async def test_create_stores_metadata_as_metadata_entries(api: Api) -> None:
    conference_id = await api.create(
        conferenceId=unique(), metadata={"topic": "claims"}, creatorEndpoint="ep-0"
    )
    metadata = (await api.conference(conference_id))["metadata"]["topic"]
    assert metadata["value"] == "claims"
    assert metadata["userEndpointId"] == "ep-0"
    assert metadata["userId"] == "alice"
    assert metadata["lastModified"].endswith("Z")


# ---------------------------------------------------------------- join / leave / participants


async def test_join_answers_an_empty_object_and_the_endpoint_is_a_healthy_participant(api: Api) -> None:
    conference_id = await api.create()
    response = await api.post(
        "join",
        {"conferenceId": conference_id, "userEndpointId": "a1", "userId": "ignored", "metadata": {"x": 1}},
    )
    assert (response.status, response.body) == (200, {})
    conference = await api.conference(conference_id)
    assert conference["version"] == 1
    assert conference["empty"] is False
    assert conference["organizationId"] == ORG
    [participant] = conference["participants"]
    # joinedAt (Parley's addition to the seed's participant): when the endpoint joined, RFC 3339 UTC.
    assert participant.pop("joinedAt").endswith("Z")
    assert participant == {
        "id": "a1",
        "userId": "alice",
        "state": "HEALTHY",
        "metadata": {"x": 1},
        "streams": [],
    }


async def test_joining_twice_is_idempotent(api: Api) -> None:
    conference_id = await api.create()
    await api.join(conference_id, "a1")
    await api.join(conference_id, "a1")
    conference = await api.conference(conference_id)
    assert conference["version"] == 1
    assert len(conference["participants"]) == 1


async def test_an_endpoint_belongs_to_one_user(api: Api) -> None:
    conference_id = await api.create()
    endpoint = unique("ep")
    await api.join(conference_id, endpoint)
    bob = api.as_user("bob")
    response = await bob.post("join", {"conferenceId": conference_id, "userEndpointId": endpoint})
    assert response.status == 409
    # ...also in another conference of the same organization
    other = await bob.create()
    response = await bob.post("join", {"conferenceId": other, "userEndpointId": endpoint})
    assert response.status == 409


async def test_simple_view_groups_endpoints_under_their_user(api: Api) -> None:
    conference_id = await api.create()
    await api.join(conference_id, "alice-phone")
    await api.join(conference_id, "alice-laptop")
    await api.as_user("bob").join(conference_id, "bob-1")
    response = await api.get(f"/rtc-api/conferences/{conference_id}/simpleView")
    assert response.status == 200
    view = response.body
    assert (view["id"], view["mode"], view["version"]) == (conference_id, "ROUTER", 3)
    users = {p["id"]: sorted(e["id"] for e in p["endpoints"]) for p in view["participants"]}
    assert users == {"alice": ["alice-laptop", "alice-phone"], "bob": ["bob-1"]}
    assert all(e["state"] == "HEALTHY" for p in view["participants"] for e in p["endpoints"])


async def test_leave_answers_no_content_and_removes_the_endpoint(api: Api) -> None:
    conference_id = await api.create()
    await api.join(conference_id, "a1")
    response = await api.post(
        "leave", {"conferenceId": conference_id, "userEndpointId": "a1", "reason": "bye"}
    )
    assert (response.status, response.body) == (204, None)
    conference = await api.conference(conference_id)
    assert conference["participants"] == []
    assert conference["empty"] is True


async def test_commands_from_an_endpoint_that_has_not_joined_are_forbidden(api: Api) -> None:
    conference_id = await api.create()
    await api.join(conference_id, "a1")
    before = await api.conference(conference_id)
    for op, body in [
        ("leave", {}),
        ("updateMetadata", {"key": "k", "operation": "SET", "value": "v"}),
        ("updateParticipantMetadata", {"newMetadata": {"a": 1}}),
        ("end", {}),
    ]:
        response = await api.as_user("mallory").post(
            op, {"conferenceId": conference_id, "userEndpointId": "a1", **body}
        )
        assert response.status == 403, (op, response)
        response = await api.post(
            op, {"conferenceId": conference_id, "userEndpointId": "never-joined", **body}
        )
        assert response.status == 403, (op, response)
    assert await api.conference(conference_id) == before


async def test_unknown_conferences_answer_404_on_every_operation(api: Api) -> None:
    missing = unique("missing")
    for op in ["join", "leave", "end", "updateParticipantMetadata"]:
        response = await api.post(op, {"conferenceId": missing, "userEndpointId": "a1"})
        assert response.status == 404, (op, response)
    for path in ["", "/simpleView", "/events?v=0"]:
        response = await api.get(f"/rtc-api/conferences/{missing}{path}")
        assert response.status == 404, (path, response)
        assert missing in response.body["message"]


async def test_another_organizations_conference_is_indistinguishable_from_an_unknown_one(api: Api) -> None:
    conference_id = await api.create()
    await api.join(conference_id, "a1")
    outsider = api.as_user("eve", org="other-org")
    unknown = await outsider.get(f"/rtc-api/conferences/{unique()}")
    foreign = await outsider.get(f"/rtc-api/conferences/{conference_id}")
    assert foreign.status == unknown.status == 404
    assert (
        foreign.body["message"].replace(conference_id, "X")
        == unknown.body["message"].split(" not found")[0].rsplit(" ", 1)[0] + " X not found"
    )
    response = await outsider.post("join", {"conferenceId": conference_id, "userEndpointId": "e1"})
    assert response.status == 404
    # and the same id is free in the other organization
    assert await outsider.create(conferenceId=conference_id) == conference_id


# ---------------------------------------------------------------- metadata


async def test_update_metadata_sets_and_removes_keys(api: Api) -> None:
    conference_id = await api.create()
    await api.join(conference_id, "a1")
    base = {"conferenceId": conference_id, "userEndpointId": "a1", "key": "RECORDER"}
    response = await api.post("updateMetadata", {**base, "operation": "SET", "value": '{"on":true}'})
    assert response.status == 204
    entry = (await api.conference(conference_id))["metadata"]["RECORDER"]
    assert (entry["value"], entry["userEndpointId"], entry["userId"]) == ('{"on":true}', "a1", "alice")
    assert (await api.post("updateMetadata", {**base, "operation": "REMOVE"})).status == 204
    conference = await api.conference(conference_id)
    assert "RECORDER" not in conference["metadata"]
    assert conference["version"] == 3
    # removing a key that is not there changes nothing
    assert (await api.post("updateMetadata", {**base, "operation": "REMOVE"})).status == 204
    assert (await api.conference(conference_id))["version"] == 3


async def test_update_metadata_validates_operation_and_value(api: Api) -> None:
    conference_id = await api.create()
    await api.join(conference_id, "a1")
    base = {"conferenceId": conference_id, "userEndpointId": "a1", "key": "k"}
    missing_value = await api.post("updateMetadata", {**base, "operation": "SET"})
    assert missing_value.status == 400
    assert "value" in missing_value.body["message"]
    bad_operation = await api.post("updateMetadata", {**base, "operation": "UNKNOWN", "value": "v"})
    assert bad_operation.status == 400
    assert "operation" in bad_operation.body["message"]


async def test_update_participant_metadata_replaces_it(api: Api) -> None:
    conference_id = await api.create()
    await api.join(conference_id, "a1", metadata={"roles": ["AGENT"]})
    response = await api.post(
        "updateParticipantMetadata",
        {
            "conferenceId": conference_id,
            "userEndpointId": "a1",
            "newMetadata": {"name": "Alice", "a.b": {"$c": 1}},
        },
    )
    assert response.status == 204
    [participant] = (await api.conference(conference_id))["participants"]
    assert participant["metadata"] == {"name": "Alice", "a.b": {"$c": 1}}


# ---------------------------------------------------------------- end


async def test_end_closes_the_conference_but_reads_and_the_feed_keep_working(api: Api) -> None:
    conference_id = await api.create()
    await api.join(conference_id, "a1")
    bob = api.as_user("bob")
    await bob.join(conference_id, "b1")
    response = await api.post(
        "end", {"conferenceId": conference_id, "userEndpointId": "a1", "reason": "resolved"}
    )
    assert response.status == 204
    for op, client, endpoint in [("join", bob, "b2"), ("leave", bob, "b1"), ("end", api, "a1")]:
        later = await client.post(op, {"conferenceId": conference_id, "userEndpointId": endpoint})
        assert later.status == 409, (op, later)
        assert later.body["message"] == "conference has ended"
    later = await api.post(
        "sendEvent",
        {
            "conferenceId": conference_id,
            "qos": "BEST_EFFORT",
            "event": {"type": "ParticipantMutedEvent", "timestamp": "2026-01-01T00:00:00Z"},
        },
    )
    assert later.status == 409
    conference = await api.conference(conference_id)
    assert conference["participants"] == []
    events = (await api.events(conference_id, 0)).body
    assert events[-1]["type"] == "ConferenceEndedEvent"
    assert events[-1]["reason"] == "resolved"
    assert events[-1]["userEndpointId"] == "a1"


# ---------------------------------------------------------------- the event feed


async def test_the_feed_has_one_event_per_change_with_contiguous_versions(api: Api) -> None:
    conference_id = await api.create()
    await api.join(conference_id, "a1", metadata={"roles": ["CUSTOMER"]})
    bob = api.as_user("bob")
    await bob.join(conference_id, "b1")
    await api.post(
        "updateMetadata",
        {
            "conferenceId": conference_id,
            "userEndpointId": "a1",
            "key": "ON_HOLD",
            "operation": "SET",
            "value": "1",
        },
    )
    await bob.post("updateParticipantMetadata", {"conferenceId": conference_id, "userEndpointId": "b1"})
    await bob.post("leave", {"conferenceId": conference_id, "userEndpointId": "b1"})
    events = (await api.events(conference_id, 0)).body
    assert [e["type"] for e in events] == [
        "ConferenceJoinedEvent",
        "ConferenceJoinedEvent",
        "ConferenceMetadataUpdatedEvent",
        "ConferenceParticipantMetadataUpdatedEvent",
        "ConferenceLeftEvent",
    ]
    assert [e["conferenceVersion"] for e in events] == [0, 1, 2, 3, 4]
    assert (await api.conference(conference_id))["version"] == 5
    for event in events:
        assert event["conferenceId"] == conference_id
        assert event["organizationId"] == ORG
        assert event["id"]
        assert event["timestamp"].endswith("Z")
    assert events[0]["metadata"] == {"roles": ["CUSTOMER"]}
    assert (events[1]["userId"], events[1]["userEndpointId"]) == ("bob", "b1")
    assert (events[2]["key"], events[2]["operation"], events[2]["value"]) == ("ON_HOLD", "SET", "1")
    # from a version on
    tail = (await api.events(conference_id, 3)).body
    assert [e["conferenceVersion"] for e in tail] == [3, 4]


async def test_a_history_larger_than_a_bus_message_comes_a_page_at_a_time(api: Api) -> None:
    # 24 events of ~100 KB: 2.4 MB of history, more than a NATS message may carry (1 MiB); the whole
    # list at once was a reply the server refused, and every poll from 0 timed out with 503.
    conference_id = await api.create()
    await api.join(conference_id, "a1")
    base = {"conferenceId": conference_id, "userEndpointId": "a1", "operation": "SET"}
    for n in range(24):
        response = await api.post("updateMetadata", {**base, "key": f"k{n}", "value": "x" * 100_000})
        assert response.status == 204
    versions: list[int] = []
    while len(versions) < 25:
        response = await api.events(conference_id, len(versions))
        assert response.status == 200, response
        assert 0 < len(response.body) < 25, "one page, not the whole history"
        versions += [e["conferenceVersion"] for e in response.body]
    assert versions == list(range(25))


async def test_the_feed_waits_for_the_next_event_and_answers_within_100_ms_on_another_gateway(
    api: Api, stack: Stack
) -> None:
    conference_id = await api.create()
    await api.join(conference_id, "a1")
    other_gateway = api.on(stack.gateway_url(1))

    async def poll() -> tuple[float, list[dict[str, object]]]:
        response = await other_gateway.events(conference_id, 1)
        return time.perf_counter(), response.body

    polling = asyncio.create_task(poll())
    await asyncio.sleep(0.3)
    assert not polling.done()
    sent = time.perf_counter()
    response = await api.post(
        "updateMetadata",
        {"conferenceId": conference_id, "userEndpointId": "a1", "key": "k", "operation": "SET", "value": "v"},
    )
    acknowledged = time.perf_counter()
    assert response.status == 204
    answered, events = await polling
    assert [e["conferenceVersion"] for e in events] == [1]
    # within 100 ms of the commit (which happened between sending the command and its acknowledgement)
    assert answered - acknowledged < 0.1, answered - sent


async def test_the_feed_answers_an_empty_list_after_the_long_poll_window(api: Api) -> None:
    conference_id = await api.create()
    started = time.perf_counter()
    response = await api.events(conference_id, 0)
    elapsed = time.perf_counter() - started
    assert (response.status, response.body) == (200, [])
    assert 0.9 < elapsed < 3.0  # PARLEY_LONGPOLL_SECONDS=1 in this stack


async def test_the_feed_needs_an_integer_version(api: Api) -> None:
    conference_id = await api.create()
    missing = await api.get(f"/rtc-api/conferences/{conference_id}/events")
    assert missing.status == 400
    assert "v" in missing.body["message"]
    wrong = await api.get(f"/rtc-api/conferences/{conference_id}/events", params={"v": "abc"})
    assert wrong.status == 400


# ---------------------------------------------------------------- bad input


async def test_malformed_json_is_a_400_with_message_and_trace_id(api: Api) -> None:
    response = await api.post("create", data=b"{not json", headers={"Content-Type": "application/json"})
    assert response.status == 400
    assert set(response.body) == {"message", "traceId"}
    assert "JSON" in response.body["message"]
    assert response.headers["X-Request-Id"] == response.body["traceId"]


async def test_wrong_types_and_missing_fields_name_the_field(api: Api) -> None:
    wrong = await api.post("join", {"conferenceId": 42, "userEndpointId": "a1"})
    assert wrong.status == 400
    assert "conferenceId" in wrong.body["message"]
    missing = await api.post("join", {"conferenceId": "c"})
    assert missing.status == 400
    assert "userEndpointId" in missing.body["message"]
    nested = await api.post("create", {"metadata": {"a": 1}})
    assert nested.status == 400
    assert "metadata" in nested.body["message"]


async def test_a_supplied_request_id_is_the_trace_id(api: Api) -> None:
    response = await api.post("join", {}, headers={"X-Request-Id": "req-123"})
    assert response.status == 400
    assert response.body["traceId"] == "req-123"


async def test_unknown_routes_answer_json_404(api: Api) -> None:
    response = await api.post("/rtc-api/conferences/doesNotExist", {})
    assert response.status in (404, 405)
    assert "message" in response.body


async def test_oversize_bodies_are_refused(api: Api) -> None:
    response = await api.post("create", data=b'{"metadata":{"k":"' + b"x" * (2 * 1024 * 1024) + b'"}}')
    assert response.status == 413
    assert response.body["message"] == "request body too large"


# ---------------------------------------------------------------- hostile input (one rule for free-form JSON)

INT64_MAX = 2**63 - 1


def _free_form_bodies(conference_id: str, endpoint: str, value_json: str) -> dict[str, str]:
    """Each command with a free-form field, as JSON text with `value_json` in that field."""
    return {
        "join": f'{{"conferenceId":"{conference_id}","userEndpointId":"{endpoint}","metadata":{value_json}}}',
        "updateParticipantMetadata": (
            f'{{"conferenceId":"{conference_id}","userEndpointId":"{endpoint}","newMetadata":{value_json}}}'
        ),
        # sendEvent's event needs a type: the refusal below is the value's, not the type's.
        "sendEvent": (
            f'{{"conferenceId":"{conference_id}","qos":"BEST_EFFORT",'
            f'"event":{{"type":"ScoreChangedEvent","v":{value_json}}}}}'
        ),
        "publishStream": (
            f'{{"conferenceId":"{conference_id}","userEndpointId":"{endpoint}",'
            f'"conferenceStreamType":"CAM","sdpOffer":"v=0","metadata":{value_json}}}'
        ),
    }


async def test_json_nested_1000_levels_deep_is_a_400_in_every_free_form_field(api: Api) -> None:
    conference_id = await api.create()
    endpoint = unique("ep")
    await api.join(conference_id, endpoint)
    deep = '{"k":' * 1000 + "1" + "}" * 1000
    for op, text in _free_form_bodies(conference_id, endpoint, deep).items():
        response = await api.post(op, data=text.encode(), headers={"Content-Type": "application/json"})
        assert response.status == 400, (op, response)
        assert set(response.body) == {"message", "traceId"}
        assert "nested deeper than 100 levels" in response.body["message"], (op, response)


async def test_integers_outside_int64_are_a_400_naming_their_path_in_every_free_form_field(api: Api) -> None:
    conference_id = await api.create()
    endpoint = unique("ep")
    await api.join(conference_id, endpoint)
    for number in (2**63, 2**64, -(2**63) - 1):
        for op, text in _free_form_bodies(conference_id, endpoint, f'{{"n":[{number}]}}').items():
            response = await api.post(op, data=text.encode(), headers={"Content-Type": "application/json"})
            assert response.status == 400, (op, number, response)
            assert "[0]: integer" in response.body["message"], (op, response)
    # The bounds themselves are kept, on join (storage) and sendEvent alike.
    kept = {"low": -(2**63), "high": INT64_MAX}
    joined = await api.post(
        "join", {"conferenceId": conference_id, "userEndpointId": unique("ep"), "metadata": kept}
    )
    assert joined.status == 200, joined
    event = {"type": "ScoreChangedEvent", "timestamp": "2026-01-01T10:15:30Z", **kept}
    sent = await api.post("sendEvent", {"conferenceId": conference_id, "event": event, "qos": "BEST_EFFORT"})
    assert sent.status == 200, sent


async def test_the_conference_service_answers_400_for_a_value_its_store_refuses(
    api: Api, stack: Stack
) -> None:
    """Behind the gateway's rule, the service maps the store's refusal too (a caller on the bus, a bug)."""
    conference_id = await api.create()
    command = Request(
        caller=Caller(organization_id=ORG, user_id="alice", request_id=unique("r")),
        body=JoinConferenceWebCommand(
            conference_id=conference_id, user_endpoint_id=unique("ep"), metadata={"n": 2**64}
        ),
    )
    nc = await nats.connect(stack.nats_url)
    try:
        raw = await nc.request(subjects.conference_command("join"), encode(command), timeout=5)
    finally:
        await nc.close()
    reply = reply_decoder(Empty).decode(raw.data)
    assert isinstance(reply, Rejected), reply
    assert reply.status == 400
    assert "64 bits" in reply.message


async def test_the_feed_version_is_bounded_to_int64(api: Api) -> None:
    conference_id = await api.create()
    last = await api.events(conference_id, INT64_MAX)
    assert (last.status, last.body) == (200, [])
    for beyond in (INT64_MAX + 1, 2**64, -(2**63) - 1):
        response = await api.events(conference_id, beyond)
        assert response.status == 400, (beyond, response)
        assert "query parameter v" in response.body["message"]


async def test_a_405_keeps_its_allow_header(api: Api) -> None:
    response = await api.request("DELETE", "/rtc-api/conferences/create")
    assert response.status == 405
    assert set(response.body) == {"message", "traceId"}
    assert set(response.headers["Allow"].split(",")) == {"GET", "POST"}


async def _raw_exchange(port: int, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Bytes an HTTP client library would refuse to send, straight onto the gateway's socket."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        data = await asyncio.wait_for(reader.read(), timeout=10)
    finally:
        writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in header_lines)
    return int(status_line.split()[1]), headers, body


async def test_requests_the_http_parser_refuses_get_json_400s_and_no_credential_reaches_the_log(
    stack: Stack,
) -> None:
    secret = f"SECRET{unique('tok')}"
    logged_before = len(stack.logs(stack.gateway_names[0]))
    requests = [
        f"GET /{'a' * 9000} HTTP/1.1\r\nAuthorization: Bearer {secret}\r\n\r\n",
        f"GET /health HTTP/1.1\r\nAuthorization: Bearer {secret}{'y' * 9000}\r\n\r\n",
        f"GET /health HTTP/1.1\r\nAuthorization: Bearer {secret}\r\nBad\x01: x\r\n\r\n",
    ]
    for raw in requests:
        status, headers, body = await _raw_exchange(stack.ports[0], raw.encode())
        assert status == 400
        assert headers["content-type"].startswith("application/json")
        refusal = json.loads(body)
        assert set(refusal) == {"message", "traceId"}
        assert headers["x-request-id"] == refusal["traceId"]
        assert "SECRET" not in body.decode()
    await asyncio.sleep(0.5)  # the log lines are written by another process
    log = stack.logs(stack.gateway_names[0])[logged_before:]
    assert "malformed request refused" in log
    assert secret not in log and secret[:12] not in log
    assert "Traceback" not in log


# ---------------------------------------------------------------- identity


async def test_every_api_route_needs_a_valid_bearer_token(api: Api) -> None:
    anonymous = Api(api.session, api.base_url, None)
    expired = Api(api.session, api.base_url, token("alice", ttl=-60))
    forged = Api(api.session, api.base_url, token("alice", secret="not-the-secret-but-just-as-long-32"))
    garbage = Api(api.session, api.base_url, "not.a.jwt")
    for client in (anonymous, expired, forged, garbage):
        for response in (
            await client.post("create", {}),
            await client.get(f"/rtc-api/conferences/{unique()}"),
        ):
            assert response.status == 401, response
            assert response.body["message"]
            assert response.headers["WWW-Authenticate"].startswith("Bearer")


async def test_oauth_client_credentials_grant_yields_a_working_token(api: Api) -> None:
    anonymous = Api(api.session, api.base_url, None)
    response = await anonymous.request(
        "POST",
        "/security/oauth/token",
        data="grant_type=client_credentials",
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "Authorization": _basic("backoffice", "backoffice-secret"),
        },
    )
    assert response.status == 200, response
    assert response.body["token_type"] == "bearer"
    assert response.body["expires_in"] > 0
    backoffice = Api(api.session, api.base_url, response.body["access_token"])
    conference_id = await backoffice.create()
    assert (await backoffice.conference(conference_id))["creator"] == "backoffice"
    refused = await anonymous.request(
        "POST",
        "/security/oauth/token",
        data="grant_type=client_credentials",
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "Authorization": _basic("backoffice", "wrong"),
        },
    )
    assert refused.status == 401
    assert refused.body["error"] == "invalid_client"


def _basic(user: str, password: str) -> str:
    import base64

    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


# ---------------------------------------------------------------- documents and health


async def test_openapi_describes_every_route_and_the_docs_page_is_self_contained(api: Api) -> None:
    document = (await api.get("/openapi.json")).body
    assert document["openapi"].startswith("3.")
    paths = document["paths"]
    for op in ["create", "join", "leave", "end", "updateMetadata", "updateParticipantMetadata", "sendEvent"]:
        assert "post" in paths[f"/rtc-api/conferences/{op}"], op
    for path in [
        "/rtc-api/conferences/{id}",
        "/rtc-api/conferences/{id}/simpleView",
        "/rtc-api/conferences/{id}/events",
    ]:
        assert "get" in paths[path], path
    for path in ["/health", "/health/live", "/health/ready", "/security/oauth/token", "/rtc-api/events/ws"]:
        assert path in paths, path
    schemas = document["components"]["schemas"]
    assert {"JoinConferenceWebCommand", "ConferenceSummary", "Conference", "ErrorBody"} <= set(schemas)
    assert "conferenceId" in schemas["JoinConferenceWebCommand"]["properties"]
    page = await api.get("/docs")
    assert page.status == 200
    html = page.body.decode()
    assert "http://" not in html and "https://" not in html
    for asset in ["/docs/static/swagger-ui-bundle.js", "/docs/static/swagger-ui.css"]:
        assert asset in html
        assert (await api.get(asset)).status == 200


async def test_health_covers_nats_storage_and_services(api: Api) -> None:
    anonymous = Api(api.session, api.base_url, None)
    health = await anonymous.get("/health")
    assert health.status == 200
    assert health.body["isLive"] is True
    assert health.body["status"] == "ok"
    names = {d["name"]: d["isHealthy"] for d in health.body["dependencies"]}
    # No media node in this stack: listed under the conference service, not probed (media is not).
    assert names == {"nats": True, "conference": True, "conference.storage": True, "conference.media": False}
    assert (await anonymous.get("/health/live")).status == 204
    assert (await anonymous.get("/health/ready")).status == 204
