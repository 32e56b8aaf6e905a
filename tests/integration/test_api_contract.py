"""One id rule for every id the API takes (issue 8, defect 16), and an OpenAPI document that states every
rule the server enforces, from the same msgspec types (defect 17)."""

from __future__ import annotations

import re
from typing import Any

import pytest
from parley_common.contracts.base import ID_MAX_LENGTH, ID_PATTERN
from parley_common.contracts.chat import UUID_PATTERN
from parley_gateway.chats import HEADER_TEXT as HEADER_TEXT_PATTERN

from tests.integration.helpers import Api, unique

CONFERENCES = "/rtc-api/conferences"


def refused(response: Any, *words: str) -> bool:
    """A 400 with the API's error body, naming what was wrong."""
    body = response.body if isinstance(response.body, dict) else {}
    message = str(body.get("message", ""))
    return response.status == 400 and bool(body.get("traceId")) and all(w in message for w in words)


# ---------------------------------------------------------------- defect 16: one id rule


@pytest.mark.parametrize(
    "endpoint",
    ["e" * 5000, "e" * (ID_MAX_LENGTH + 1), "", "   ", "a/b", "a\\b", "..", ".", "a\nb", "a\x00b"],
    ids=["5000", "257", "empty", "blank", "slash", "backslash", "dotdot", "dot", "newline", "nul"],
)
async def test_join_refuses_an_endpoint_id_outside_the_id_rule(api: Api, endpoint: str) -> None:
    conference_id = await api.create()
    response = await api.post("join", {"conferenceId": conference_id, "userEndpointId": endpoint})
    assert refused(response, "userEndpointId"), response


@pytest.mark.parametrize(
    "endpoint",
    ["e" * ID_MAX_LENGTH, "a1", "alice@example.com", "0b6e8c1e-6f8a-4c0e-9d4e-2f9f5b0c1a77", "v1.2 (ios)"],
)
async def test_ids_that_clients_use_are_accepted(api: Api, endpoint: str) -> None:
    conference_id = await api.create()
    await api.join(conference_id, endpoint)
    assert endpoint in {p["id"] for p in (await api.conference(conference_id))["participants"]}


async def test_the_same_rule_holds_for_every_id_of_every_body(api: Api) -> None:
    conference_id = await api.create()
    await api.join(conference_id, "owner")
    long = "x" * (ID_MAX_LENGTH + 1)
    cases: list[tuple[str, dict[str, Any], str]] = [
        ("create", {"creatorEndpoint": long}, "creatorEndpoint"),
        ("create", {"conferenceId": "a/b"}, "conferenceId"),
        ("leave", {"conferenceId": long, "userEndpointId": "owner"}, "conferenceId"),
        ("viewStream", {"conferenceId": conference_id, "userEndpointId": "owner", "streamId": {"id": long},
                        "sdpOffer": "v=0"}, "id"),
        ("unpublishStream", {"conferenceId": conference_id, "userEndpointId": "owner", "streamId": " "},
         "streamId"),
        ("/rtc-api/snapshots/request", {"targetUserEndpointId": long, "userEndpointId": "owner"},
         "targetUserEndpointId"),
        ("/rtc-api/snapshots/approve", {"snapshotId": ".."}, "snapshotId"),
    ]  # fmt: skip
    for op, body, field in cases:
        response = await api.post(op, body)
        assert refused(response, field), (op, body, response)


async def test_path_and_query_ids_follow_the_same_rule(api: Api) -> None:
    conference_id = await api.create()
    long = "x" * (ID_MAX_LENGTH + 1)
    for path, name in [
        (f"{CONFERENCES}/{long}", "path parameter id"),
        (f"{CONFERENCES}/a%00b/simpleView", "path parameter id"),
        (f"{CONFERENCES}/{conference_id}/recordings/%20", "path parameter recordingId"),
        (f"{CONFERENCES}/{conference_id}?userEndpointId={long}", "query parameter userEndpointId"),
        (f"{CONFERENCES}/{conference_id}/events?v=0&userEndpointId=a%2Fb", "query parameter userEndpointId"),
        (f"/rtc-api/snapshots/{long}", "path parameter snapshotId"),
        (f"/rtc-api/snapshots?interactionId={long}", "query parameter interactionId"),
        ("/rtc-api/snapshots/signed/s1/soon?signature=x", "path parameter expiration"),
    ]:
        response = await api.get(path)
        assert refused(response, name), (path, response)


# ---------------------------------------------------------------- defect 17: the document states the rules


def _resolve(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = document["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
    return schema


def _request_schema(document: dict[str, Any], path: str) -> dict[str, Any]:
    content = document["paths"][path]["post"]["requestBody"]["content"]
    return _resolve(document, next(iter(content.values()))["schema"])


def _string_schemas(schema: dict[str, Any]) -> list[dict[str, Any]]:
    options = schema.get("anyOf", [schema])
    return [option for option in options if option.get("type") == "string"]


async def test_every_id_in_the_document_states_the_id_rule(api: Api) -> None:
    document = (await api.get("/openapi.json")).body
    checked = 0
    for path, item in document["paths"].items():
        for operation in item.values():
            for parameter in operation.get("parameters", []):
                schema = parameter["schema"]
                assert "type" in schema, (path, parameter)
                if parameter["in"] == "header":
                    # An id in a header is visible ASCII (what HTTP carries; Carbonio escapes the rest):
                    # a narrower rule than the id rule, stated by the upload's own parameters.
                    if parameter["name"].endswith("Id"):
                        assert schema.get("pattern") == HEADER_TEXT_PATTERN, (path, parameter)
                        checked += 1
                    continue
                if parameter["name"].endswith(("id", "Id")):
                    if schema.get("format") == "uuid":  # the chat API's ids are UUIDs (issue 9)
                        assert schema["pattern"] == UUID_PATTERN, (path, parameter)
                    else:
                        assert schema["pattern"] == ID_PATTERN, (path, parameter)
                        assert (schema["minLength"], schema["maxLength"]) == (1, ID_MAX_LENGTH)
                    checked += 1
            for content in operation.get("requestBody", {}).get("content", {}).values():
                body = _resolve(document, content["schema"])
                for name, field in body.get("properties", {}).items():
                    if name.endswith("Id") or name == "creatorEndpoint":
                        for string in _string_schemas(field):
                            if string.get("format") == "uuid":
                                assert string.get("pattern") == UUID_PATTERN, (path, name, field)
                                continue
                            assert string.get("pattern") == ID_PATTERN, (path, name, field)
                            assert string.get("maxLength") == ID_MAX_LENGTH, (path, name, field)
                            checked += 1
    assert checked > 40
    stream_id = document["components"]["schemas"]["StreamId"]["properties"]["id"]
    assert stream_id["pattern"] == ID_PATTERN
    # The pattern says what the server does: blank ids are refused by both.
    assert re.search(ID_PATTERN, "   ") is None and re.search(ID_PATTERN, "a b") is not None


async def test_the_document_states_the_rules_the_server_enforces(api: Api) -> None:
    document = (await api.get("/openapi.json")).body
    paths = document["paths"]
    create = _request_schema(document, f"{CONFERENCES}/create")
    assert create["properties"]["mode"]["anyOf"][0]["enum"] == ["ROUTER"]
    assert paths[f"{CONFERENCES}/create"]["post"]["requestBody"]["required"] is False  # `{}` is a body
    assert paths[f"{CONFERENCES}/join"]["post"]["requestBody"]["required"] is True
    publish = _request_schema(document, f"{CONFERENCES}/publishStream")
    assert set(publish["properties"]["conferenceStreamType"]["enum"]) == {
        "MIC",
        "CAM",
        "SCREEN",
        "MIC_AND_CAM",
    }
    assert publish["properties"]["videoBitrate"]["anyOf"][0]["minimum"] == 0
    bitrate = _request_schema(document, f"{CONFERENCES}/updatePublishedStreamBitrate")
    assert "streamId" in bitrate["required"]
    assert _request_schema(document, f"{CONFERENCES}/updateMetadata")["properties"]["key"]["minLength"] == 1
    send = _request_schema(document, f"{CONFERENCES}/sendEvent")
    assert send["properties"]["event"]["required"] == ["type", "timestamp"]
    assert send["properties"]["masks"]["items"]["minLength"] == 1
    request = paths["/rtc-api/snapshots/request"]["post"]["requestBody"]["content"]["application/json"]
    assert request["schema"]["then"]["required"] == ["sessionId"]  # a CONFERENCE session names its conference
    approve = _request_schema(document, "/rtc-api/snapshots/approve")
    assert approve["properties"]["snapshotType"]["anyOf"][0]["maxLength"] == 1024
    events = {p["name"]: p["schema"] for p in paths[f"{CONFERENCES}/{{id}}/events"]["get"]["parameters"]}
    # every integer the gateway takes is held to int64 (http.parse_int, jsonlimits): the document says so
    assert events["v"] == {"type": "integer", "minimum": -(2**63), "maximum": 2**63 - 1}
    signed = paths["/rtc-api/snapshots/signed/{snapshotId}/{expiration}"]["get"]["parameters"]
    assert {p["name"]: p["schema"]["type"] for p in signed}["expiration"] == "integer"
    token = paths["/security/oauth/token"]["post"]
    form = token["requestBody"]["content"]["application/x-www-form-urlencoded"]["schema"]
    assert _resolve(document, form)["properties"]["grant_type"]["enum"] == ["client_credentials"]
    assert token["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/TokenResponse"
    )
    assert token["responses"]["401"]["content"]["application/json"]["schema"]["$ref"].endswith("/OAuthError")
    # Whatever takes parameters or a body can answer 400, and whatever needs a token 401.
    recording = paths[f"{CONFERENCES}/{{id}}/recordings/{{recordingId}}"]["get"]["responses"]
    assert {"400", "401"} <= set(recording)


async def test_integers_written_with_a_zero_fraction_are_integers(api: Api) -> None:
    # JSON Schema, and so the document, counts 300000.0 as an integer: the server must too.
    conference_id = await api.create(conferenceId=unique())
    await api.join(conference_id, "owner")
    body = {"conferenceId": conference_id, "userEndpointId": "owner", "streamId": "none", "videoBitrate": 3e5}
    response = await api.post("updatePublishedStreamBitrate", body)
    assert response.status == 404, response  # the stream does not exist: the body itself was fine
    fraction = await api.post("updatePublishedStreamBitrate", {**body, "videoBitrate": 3.5})
    assert refused(fraction, "videoBitrate"), fraction
