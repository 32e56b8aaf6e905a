"""The AsyncAPI document: valid AsyncAPI 3.0.0, and no event type missing from it or from the catalogue."""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any

import jsonschema
import msgspec
import pytest
from parley_common import asyncapi
from parley_common.contracts import chat, conference, media, meeting, push, snapshot
from parley_common.contracts.catalogue import EVENT_KINDS, EVENT_TYPES
from parley_common.messaging import subjects
from parley_common.messaging.streams import STREAMS

# The official schema, vendored from npm @asyncapi/specs (see tests/asyncapi/README.md).
SCHEMA = Path(__file__).resolve().parents[3] / "tests" / "asyncapi" / "asyncapi-3.0.0.schema.json"
EVENT_BASES = (conference.ConferenceEvent, chat.ChatEvent, meeting.MeetingEvent, snapshot.SnapshotEvent)


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    # Through JSON, as subscribers read it.
    loaded: dict[str, Any] = json.loads(asyncapi.encode(asyncapi.asyncapi_document(version="1.0.0")))
    return loaded


def _concrete(base: type) -> set[type]:
    found: set[type] = set()
    for sub in base.__subclasses__():
        found |= _concrete(sub) or {sub}
    return found


def every_event_class() -> set[type]:
    """Every concrete event type in the contracts: subclasses of the event bases, and the `...Event`
    structs with no base (the media events), whatever union they are (or are not) in."""
    classes = set().union(*(_concrete(base) for base in EVENT_BASES))
    for module in (conference, chat, meeting, snapshot, media, push):
        for name, cls in inspect.getmembers(module, inspect.isclass):
            if (
                name.endswith("Event")
                and issubclass(cls, msgspec.Struct)
                and cls.__module__ == module.__name__
                and cls not in EVENT_BASES
                and cls is not push.PushedEvent  # a sendEvent envelope, its own channel (checked below)
            ):
                classes.add(cls)
    return classes


def test_the_document_is_valid_asyncapi_3(document: dict[str, Any]) -> None:
    schema = json.loads(SCHEMA.read_text())
    errors = [
        f"{'/'.join(map(str, error.absolute_path))}: {error.message[:200]}"
        for error in jsonschema.Draft7Validator(schema).iter_errors(document)
    ]
    assert errors == []
    assert document["asyncapi"] == "3.0.0"


def test_the_validation_catches_a_broken_document(document: dict[str, Any]) -> None:
    # The vendored schema really resolves its references: an AsyncAPI 2 `publish` action is refused.
    broken = json.loads(json.dumps(document))
    broken["operations"]["sendConferenceJoinedEvent"]["action"] = "publish"
    assert not jsonschema.Draft7Validator(json.loads(SCHEMA.read_text())).is_valid(broken)


def test_every_event_class_is_in_the_catalogue_and_the_document(document: dict[str, Any]) -> None:
    catalogued = {kind.payload for kind in EVENT_KINDS}
    missing = sorted(cls.__name__ for cls in every_event_class() - catalogued)
    assert missing == [], f"event types missing from contracts.catalogue (add them to their union): {missing}"
    assert len(every_event_class()) == len(EVENT_KINDS) >= 50
    for kind in EVENT_KINDS:
        channel = document["channels"][kind.type]
        assert channel["address"] == kind.subject
        assert channel["x-parley-stream"] == kind.stream
        message = document["components"]["messages"][kind.type]
        assert message["summary"] == kind.summary != "", kind.type
        operation = document["operations"][f"send{kind.type}"]
        assert operation["action"] == "send" and operation["x-parley-publisher"] == kind.publisher


def test_every_event_payload_schema_is_camel_case_with_its_type(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    for kind in EVENT_KINDS:
        ref = document["components"]["messages"][kind.type]["payload"]["$ref"]
        schema = schemas[ref.rsplit("/", 1)[-1]]
        properties = schema["properties"]
        # The tag subscribers filter on is in the payload, with the exact string of the subject's last token.
        assert (
            properties["type"]["enum"] == [kind.type]
            if "type" in properties
            else kind.stream == "PARLEY_MEDIA"
        )
        fields = msgspec.structs.fields(kind.payload)
        assert {field.encode_name for field in fields} <= set(properties), kind.type
        assert all("_" not in name for name in properties), kind.type


def test_every_stream_and_the_other_subjects_are_documented(document: dict[str, Any]) -> None:
    assert [stream["name"] for stream in document["x-parley-streams"]] == [config.name for config in STREAMS]
    addresses = {channel["address"] for channel in document["channels"].values()}
    for config in STREAMS:
        for pattern in config.subjects or ():
            prefix = pattern.removesuffix(">")
            assert any(address and address.startswith(prefix) for address in addresses), config.name
    for address in ["parley.push.durable.{endpoint}", "parley.users.seen.{org}.{user}", "parley.presence"]:
        assert address in addresses
    assert "parley.cmd.meeting.createMeeting" in addresses and "parley.qry.chat.listRoom" in addresses
    for pattern in [
        subjects.CONFERENCE_COMMAND,
        subjects.CONFERENCE_QUERY,
        subjects.SNAPSHOT_COMMAND,
        subjects.SNAPSHOT_QUERY,
        subjects.MEDIA_NODE,
        subjects.HEALTH,
    ]:
        assert pattern in addresses
    assert set(EVENT_TYPES) <= set(document["components"]["messages"])
