"""The AsyncAPI 3.0 document of what Parley puts on NATS, generated from the code's own tables.

Events come from `contracts.catalogue` (every event type, its stream, subject and publisher) and their
JSON Schemas from the msgspec types themselves (camelCase, as on the wire); the streams from
`messaging.streams.STREAMS`, the subjects from `messaging.subjects`; the request/reply operations from
the chat and meeting `OPERATIONS` tables. Nothing here lists an event type a second time: a new event type
in a service's union appears in the document by itself. The gateway serves it at `/asyncapi.json`.
"""

from __future__ import annotations

import inspect
import re
from typing import Any, Final, NamedTuple, get_args

import msgspec
from nats.js.api import StreamConfig

from parley_common.contracts import chat, meeting
from parley_common.contracts.catalogue import EVENT_KINDS
from parley_common.contracts.health import HealthQuery, ServiceHealth
from parley_common.contracts.media import MediaNodeHeartbeat, MediaOp
from parley_common.contracts.push import PresenceReport, PushedEvent
from parley_common.contracts.rpc import Accepted, Rejected, Request
from parley_common.messaging import streams, subjects

ASYNCAPI_VERSION: Final = "3.0.0"
_REF: Final = "#/components/schemas/{name}"
_MSG_ID_HEADERS: Final[dict[str, Any]] = {
    "type": "object",
    "properties": {
        "Nats-Msg-Id": {
            "type": "string",
            "description": "The event's id (a per-recipient copy: `<eventId>.<userId>`). JetStream drops a "
            "repeat within the stream's 2-minute window; a subscriber deduplicates on it.",
        }
    },
}
_DESCRIPTION: Final = """\
What Parley's services put on NATS. **Events** are JetStream messages, one subject per event type
(`parley.events.<family>.<type>`), each published once by its service's outbox with `Nats-Msg-Id` = the
event id: subscribe with a durable consumer on the stream, filtered by subject. **Commands and queries**
are core NATS request/reply subjects answered by a queue group with `{"outcome": "accepted", "value"}` or
`{"outcome": "rejected", "status", "message"}`. Generated from the code's msgspec types and subject tables
(`parley_common.asyncapi`)."""


def _summary(cls: type) -> str:
    """A type's docstring, first paragraph, on one line."""
    doc = inspect.cleandoc(cls.__doc__ or "")
    return " ".join(doc.split("\n\n", 1)[0].split())


def _stream_info(config: StreamConfig) -> dict[str, Any]:
    info: dict[str, Any] = {"name": config.name, "subjects": list(config.subjects or ())}
    if config.description:
        info["description"] = config.description
    if config.max_age:
        info["maxAgeSeconds"] = config.max_age
    if config.max_msgs_per_subject and config.max_msgs_per_subject > 0:
        info["maxMessagesPerSubject"] = config.max_msgs_per_subject
    info["duplicateWindowSeconds"] = config.duplicate_window
    return info


def _message(name: str, *, title: str, summary: str, payload: Any, headers: bool) -> dict[str, Any]:
    message: dict[str, Any] = {
        "name": name,
        "title": title,
        "contentType": "application/json",
        "payload": payload,
    }
    if summary:
        message["summary"] = summary
    if headers:
        message["headers"] = _MSG_ID_HEADERS
    return message


def _parameters(address: str, described: dict[str, str]) -> dict[str, Any]:
    return {name: {"description": described.get(name, name)} for name in re.findall(r"{(\w+)}", address)}


def _fix_schema(node: Any) -> Any:
    """msgspec writes OpenAPI's `discriminator` object; an AsyncAPI schema's is the property's name."""
    if isinstance(node, dict):
        fixed = {key: _fix_schema(value) for key, value in node.items()}
        if isinstance(fixed.get("description"), str):
            # A docstring as msgspec copies it, its indentation included.
            fixed["description"] = inspect.cleandoc(fixed["description"])
        if isinstance(fixed.get("discriminator"), dict):
            fixed["discriminator"] = fixed["discriminator"]["propertyName"]
        return fixed
    if isinstance(node, list):
        return [_fix_schema(item) for item in node]
    return node


class _Rpc(NamedTuple):
    """One request/reply subject the document describes: its channel id, address and bodies."""

    channel: str
    address: str
    queue: str | None
    summary: str
    request: Any
    reply: Any
    # The address's `{name}` tokens, as AsyncAPI parameter objects.
    parameters: dict[str, dict[str, Any]] = {}


def _rpcs() -> list[_Rpc]:
    """The operations whose bodies the contracts type (chat, meetings), one channel each."""
    rpcs: list[_Rpc] = []
    for family, table, queue in (
        ("chat", chat.OPERATIONS, "chat"),
        ("meeting", meeting.OPERATIONS, "conference"),
    ):
        for name, op in table.items():
            rpcs.append(
                _Rpc(
                    channel=f"{family}.{name}",
                    address=f"parley.{op.kind}.{family}.{name}",
                    queue=queue,
                    summary=_summary(op.body) if op.body.__doc__ else f"The {family} operation `{name}`.",
                    request=Request[op.body],  # type: ignore[name-defined]
                    reply=Accepted[op.result] | Rejected,  # type: ignore[name-defined]
                )
            )
    # The services whose operations have no typed table in the contracts: one channel per subject pattern,
    # the body left open (the conference bodies are the seed's web commands, `contracts/conference.py`).
    any_reply = Accepted[Any] | Rejected
    by_op = {"op": {"description": "the operation's name"}}
    rpcs += [
        _Rpc(
            "conference.command",
            subjects.CONFERENCE_COMMAND,
            "conference",
            "Conference commands: `op` is the seed's web command (`join`, `leave`, `end`, `sendEvent`, ...), "
            "the body its web command; `createGuarded` and `removeParticipant` are for services only.",
            Request[Any],
            any_reply,
            by_op,
        ),
        _Rpc(
            "conference.query",
            subjects.CONFERENCE_QUERY,
            "conference",
            "Conference queries: `get`, `simpleView`, `events`, `endpointConferences`, `streamStill`, ...",
            Request[Any],
            any_reply,
            by_op,
        ),
        _Rpc(
            "snapshot.command",
            subjects.SNAPSHOT_COMMAND,
            "snapshot",
            "Snapshot commands (the snapshot API's operations).",
            Request[Any],
            any_reply,
            by_op,
        ),
        _Rpc(
            "snapshot.query",
            subjects.SNAPSHOT_QUERY,
            "snapshot",
            "Snapshot queries.",
            Request[Any],
            any_reply,
            by_op,
        ),
        _Rpc(
            "media.node",
            subjects.MEDIA_NODE,
            "<node id>",
            "One media node's operations (`contracts/media.py`), sent by the conference service.",
            Request[Any],
            any_reply,
            {"node": {"description": "the media node's id"}, "op": {"enum": list(get_args(MediaOp))}},
        ),
        _Rpc(
            "health",
            subjects.HEALTH,
            None,
            "A service's health, gathered by the gateway's `/health`.",
            HealthQuery,
            Accepted[ServiceHealth] | Rejected,
            {"service": {"description": "the service's name (`conference`, `snapshot`, `chat`, `media`)"}},
        ),
    ]
    return rpcs


def asyncapi_document(*, version: str, nats_host: str = "127.0.0.1:4222") -> dict[str, Any]:
    """The whole document: servers, channels (one per subject), messages, operations, schemas."""
    rpcs = _rpcs()
    # Every payload type: event types, then the other streams' and the request/reply bodies.
    types: list[Any] = [kind.payload for kind in EVENT_KINDS]
    types += [PushedEvent, chat.UserSeen, PresenceReport, MediaNodeHeartbeat]
    types += [t for rpc in rpcs for t in (rpc.request, rpc.reply)]
    roots, components = msgspec.json.schema_components(types, ref_template=_REF)
    schema_of = dict(zip(map(id, types), roots, strict=True))

    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}

    def msg_ref(name: str) -> dict[str, str]:
        return {"$ref": f"#/components/messages/{name}"}

    # -- domain events: one channel per event type, sent by its publisher
    for kind in EVENT_KINDS:
        messages[kind.type] = _message(
            kind.type,
            title=kind.type,
            summary=kind.summary,
            payload=schema_of[id(kind.payload)],
            headers=True,
        )
        if (full := inspect.cleandoc(kind.payload.__doc__ or "")) and " ".join(full.split()) != kind.summary:
            # The rest of the docstring (the summary is its first paragraph).
            messages[kind.type]["description"] = full
        messages[kind.type]["tags"] = [{"name": kind.stream}, {"name": f"publisher:{kind.publisher}"}]
        channels[kind.type] = {
            "address": kind.subject,
            "title": kind.type,
            "description": f"JetStream stream `{kind.stream}`. {kind.summary}",
            "messages": {kind.type: msg_ref(kind.type)},
            "x-parley-stream": kind.stream,
            "x-parley-publisher": kind.publisher,
        }
        operations[f"send{kind.type}"] = {
            "action": "send",
            "channel": {"$ref": f"#/channels/{kind.type}"},
            "messages": [{"$ref": f"#/channels/{kind.type}/messages/{kind.type}"}],
            "summary": f"The {kind.publisher} service publishes {kind.type}.",
            "tags": [{"name": f"publisher:{kind.publisher}"}],
            "x-parley-publisher": kind.publisher,
        }

    # -- the other streams and core subjects
    chat_types = [kind for kind in EVENT_KINDS if kind.stream == streams.CHAT_STREAM]
    # The room subject carries a room's messages once; every other chat event goes to each recipient.
    room_types = [kind for kind in chat_types if kind.type.startswith("ROOM_MESSAGE_")]
    others: list[tuple[str, str, str | None, str, str, list[str]]] = [
        # channel id, address, stream (None: core NATS), publisher, description, message names
        (
            "pushDurable",
            subjects.PUSH_DURABLE,
            streams.PUSH_STREAM,
            "conference",
            "AT_LEAST_ONCE sendEvent events for one endpoint, kept until the endpoint acknowledges them.",
            ["PushedEvent"],
        ),
        (
            "pushLive",
            subjects.PUSH_LIVE,
            None,
            "conference",
            "BEST_EFFORT sendEvent events for one endpoint (core NATS: gone if nobody listens).",
            ["PushedEvent"],
        ),
        (
            "userPush",
            subjects.USER_PUSH,
            streams.USER_PUSH_STREAM,
            "chat",
            "One copy of each chat event per recipient user (without `organizationId`), read by the "
            "gateway's `GET /events/ws`.",
            [kind.type for kind in chat_types],
        ),
        (
            "roomPush",
            subjects.ROOM_PUSH,
            streams.USER_PUSH_STREAM,
            "chat",
            "A room's messages ONCE (not per member, without `organizationId`), read by each member's "
            "`GET /events/ws`.",
            [kind.type for kind in room_types],
        ),
        (
            "usersSeen",
            subjects.USERS_SEEN,
            streams.USERS_STREAM,
            "gateway",
            "The latest report of each authenticated user: the chat user directory's source.",
            ["UserSeen"],
        ),
        (
            "presence",
            subjects.PRESENCE,
            None,
            "gateway",
            "Endpoints seen alive (keep-alive), fanned out to every conference service replica.",
            ["PresenceReport"],
        ),
        (
            "mediaHeartbeat",
            subjects.MEDIA_HEARTBEAT,
            None,
            "media",
            "Each media node's heartbeat every second: node id, start time, load.",
            ["MediaNodeHeartbeat"],
        ),
    ]
    for cls in (PushedEvent, chat.UserSeen, PresenceReport, MediaNodeHeartbeat):
        messages[cls.__name__] = _message(
            cls.__name__,
            title=cls.__name__,
            summary=_summary(cls),
            payload=schema_of[id(cls)],
            headers=cls is not PresenceReport and cls is not MediaNodeHeartbeat,
        )
    tokens = {
        "endpoint": "sha256(organization NUL userEndpointId), first 32 hex digits",
        "org": "sha256(organization id), first 32 hex digits",
        "user": "sha256(user id), first 32 hex digits",
        "room": "sha256(room id), first 32 hex digits",
    }
    for channel_id, address, stream, publisher, description, names in others:
        where = f"JetStream stream `{stream}`" if stream else "Core NATS (no stream)"
        channel: dict[str, Any] = {
            "address": address,
            "description": f"{where}. {description}",
            "messages": {name: msg_ref(name) for name in names},
            "x-parley-publisher": publisher,
        }
        if stream:
            channel["x-parley-stream"] = stream
        if parameters := _parameters(address, tokens):
            channel["parameters"] = parameters
        channels[channel_id] = channel
        operations[f"send_{channel_id}"] = {
            "action": "send",
            "channel": {"$ref": f"#/channels/{channel_id}"},
            "messages": [{"$ref": f"#/channels/{channel_id}/messages/{name}"} for name in names],
            "summary": f"The {publisher} service publishes on `{address}`.",
            "x-parley-publisher": publisher,
        }

    # -- request/reply: Parley receives the request and answers on the caller's inbox
    messages["Rejected"] = _message(
        "Rejected",
        title="Rejected",
        summary="The request was refused: `status` is the HTTP status the gateway answers, `message` why.",
        payload=schema_of[id(rpcs[0].reply)]["anyOf"][1] if rpcs else {},
        headers=False,
    )
    for rpc in rpcs:
        request_name, reply_name = f"{rpc.channel}.request", f"{rpc.channel}.accepted"
        messages[request_name] = _message(
            request_name,
            title=f"{rpc.channel} request",
            summary="",
            payload=schema_of[id(rpc.request)],
            headers=False,
        )
        messages[reply_name] = _message(
            reply_name,
            title=f"{rpc.channel} accepted",
            summary="",
            payload=schema_of[id(rpc.reply)]["anyOf"][0],
            headers=False,
        )
        queue = f", queue group `{rpc.queue}`" if rpc.queue else ""
        channels[rpc.channel] = {
            "address": rpc.address,
            "description": f"Request/reply{queue}. {rpc.summary}",
            "messages": {"request": msg_ref(request_name)},
        }
        if rpc.parameters:
            channels[rpc.channel]["parameters"] = rpc.parameters
        channels[f"{rpc.channel}.reply"] = {
            "address": None,
            "description": "The requester's inbox.",
            "messages": {"accepted": msg_ref(reply_name), "rejected": msg_ref("Rejected")},
        }
        operations[rpc.channel] = {
            "action": "receive",
            "summary": f"The {rpc.queue or 'addressed'} service answers `{rpc.address}`.",
            "channel": {"$ref": f"#/channels/{rpc.channel}"},
            "messages": [{"$ref": f"#/channels/{rpc.channel}/messages/request"}],
            "reply": {
                "channel": {"$ref": f"#/channels/{rpc.channel}.reply"},
                "messages": [
                    {"$ref": f"#/channels/{rpc.channel}.reply/messages/accepted"},
                    {"$ref": f"#/channels/{rpc.channel}.reply/messages/rejected"},
                ],
            },
        }
        if rpc.queue:
            operations[rpc.channel]["bindings"] = {"nats": {"queue": rpc.queue, "bindingVersion": "0.1.0"}}

    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": "Parley events and NATS subjects",
            "version": version,
            "description": _DESCRIPTION,
        },
        "servers": {
            "nats": {
                "host": nats_host,
                "protocol": "nats",
                "description": "The deployment's NATS server (JetStream enabled).",
            }
        },
        "defaultContentType": "application/json",
        "channels": channels,
        "operations": operations,
        "components": {"schemas": _fix_schema(components), "messages": messages},
        "x-parley-streams": [_stream_info(config) for config in streams.STREAMS],
    }


def encode(document: dict[str, Any]) -> bytes:
    return msgspec.json.format(msgspec.json.encode(document), indent=2)
