"""Every NATS subject Parley uses, in one place (the README's subject table mirrors this file).

Commands and queries are core request/reply subjects and never fall under a stream's subjects: a stream
capturing a request subject would answer the caller with its PubAck instead of the handler's reply.
"""

from __future__ import annotations

import hashlib

# Request/reply, served by a queue group of the owning service.
CONFERENCE_COMMAND = "parley.cmd.conference.{op}"
CONFERENCE_QUERY = "parley.qry.conference.{op}"
HEALTH = "parley.health.{service}"

# JetStream stream PARLEY_CONFERENCE, one subject per event type:
# parley.events.conference.ConferenceJoinedEvent, ...
CONFERENCE_EVENTS = "parley.events.conference.{type}"
CONFERENCE_EVENTS_ALL = "parley.events.conference.>"

# Events sent to one user endpoint (sendEvent). AT_LEAST_ONCE ones are stored in stream PARLEY_PUSH until the
# endpoint acknowledges them; BEST_EFFORT ones are plain core messages, gone if nobody listens.
PUSH_DURABLE = "parley.push.durable.{endpoint}"
PUSH_DURABLE_ALL = "parley.push.durable.>"
PUSH_LIVE = "parley.push.live.{endpoint}"

# Core fan-out: the gateway reports which endpoints are connected or active (keep-alive).
PRESENCE = "parley.presence"

# Media nodes: request/reply to one node, heartbeats (core fan-out), events (JetStream PARLEY_MEDIA).
MEDIA_NODE = "parley.media.{node}.{op}"
MEDIA_HEARTBEAT = "parley.media.heartbeat"
MEDIA_EVENTS = "parley.events.media.{type}"
MEDIA_EVENTS_ALL = "parley.events.media.>"
# JetStream object store bucket of recordings.
RECORDINGS_BUCKET = "parley_recordings"

# Snapshot service: request/reply like the conference service, events on JetStream stream PARLEY_SNAPSHOT.
SNAPSHOT_COMMAND = "parley.cmd.snapshot.{op}"
SNAPSHOT_QUERY = "parley.qry.snapshot.{op}"
SNAPSHOT_EVENTS = "parley.events.snapshot.{type}"
SNAPSHOT_EVENTS_ALL = "parley.events.snapshot.>"
# Object store buckets: snapshot images, and uploads the gateway staged for the service to check (expiring).
SNAPSHOTS_BUCKET = "parley_snapshots"
SNAPSHOT_STAGING_BUCKET = "parley_snapshot_staging"

# Chat service: request/reply (queue group `chat`), one subject per seed operationId; events once on
# JetStream stream PARLEY_CHAT, and one copy per recipient user on PARLEY_USER_PUSH (the gateway's
# `GET /events/ws` reads a user's subject).
CHAT_QUEUE = "chat"
CHAT_COMMAND = "parley.cmd.chat.{op}"
CHAT_QUERY = "parley.qry.chat.{op}"
CHAT_EVENTS = "parley.events.chat.{type}"
CHAT_EVENTS_ALL = "parley.events.chat.>"
USER_PUSH = "parley.push.user.{org}.{user}"
USER_PUSH_ALL = "parley.push.user.>"
# A room's messages, stored ONCE (not a copy per member) in the same stream, so that a socket's one
# ordered consumer (filter: its user subject + its rooms' subjects) reads both in stream order. Four
# tokens: no user subject (three) can match it.
ROOM_PUSH = "parley.push.user.{org}.room.{room}"
# The gateway's report of an authenticated user; stream PARLEY_USERS keeps the latest one per user.
USERS_SEEN = "parley.users.seen.{org}.{user}"
USERS_SEEN_ALL = "parley.users.seen.>"
# JetStream object store bucket of chat files: `attachments/{fileId}`, `pictures/rooms/{roomId}`,
# `pictures/users/{userId}`, rendered previews `previews/{fileId}/{key}` (ids are UUIDs, unique across
# organizations; the chat service's records say whose each one is).
CHAT_FILES_BUCKET = "parley_attachments"
# Asked by the conference service on every join of a guarded conference (a room meeting).
CHAT_ADMIT = "parley.qry.chat.admit"
# Internal: create a conference whose joins are checked against an admission subject
# (`parley_common.contracts.conference.CreateGuardedConference`). A service ends it with the ordinary
# `parley.cmd.conference.end` and drops a user with `parley.cmd.conference.removeParticipant`.
CONFERENCE_CREATE_GUARDED = "parley.cmd.conference.createGuarded"

# Scheduled meetings (the SourceFuse and Coviu APIs), served by the conference service (queue group
# `conference`), one subject per `parley_common.contracts.meeting.OPERATIONS` entry; events on JetStream
# stream PARLEY_MEETING.
MEETING_COMMAND = "parley.cmd.meeting.{op}"
MEETING_QUERY = "parley.qry.meeting.{op}"
MEETING_EVENTS = "parley.events.meeting.{type}"
MEETING_EVENTS_ALL = "parley.events.meeting.>"


def conference_command(op: str) -> str:
    return CONFERENCE_COMMAND.format(op=op)


def conference_query(op: str) -> str:
    return CONFERENCE_QUERY.format(op=op)


def health(service: str) -> str:
    return HEALTH.format(service=service)


def conference_event(event_type: str) -> str:
    return CONFERENCE_EVENTS.format(type=event_type)


def media_node(node_id: str, op: str) -> str:
    return MEDIA_NODE.format(node=node_id, op=op)


def media_event(event_type: str) -> str:
    return MEDIA_EVENTS.format(type=event_type)


def snapshot_command(op: str) -> str:
    return SNAPSHOT_COMMAND.format(op=op)


def snapshot_query(op: str) -> str:
    return SNAPSHOT_QUERY.format(op=op)


def snapshot_event(event_type: str) -> str:
    return SNAPSHOT_EVENTS.format(type=event_type)


def meeting_command(op: str) -> str:
    return MEETING_COMMAND.format(op=op)


def meeting_query(op: str) -> str:
    return MEETING_QUERY.format(op=op)


def meeting_event(event_type: str) -> str:
    return MEETING_EVENTS.format(type=event_type)


def endpoint_token(organization_id: str, user_endpoint_id: str) -> str:
    """A subject- and consumer-name-safe token for an endpoint (ids are client-chosen, any characters)."""
    digest = hashlib.sha256(f"{organization_id}\x00{user_endpoint_id}".encode()).hexdigest()
    return digest[:32]


def push_durable(organization_id: str, user_endpoint_id: str) -> str:
    return PUSH_DURABLE.format(endpoint=endpoint_token(organization_id, user_endpoint_id))


def push_live(organization_id: str, user_endpoint_id: str) -> str:
    return PUSH_LIVE.format(endpoint=endpoint_token(organization_id, user_endpoint_id))


def chat_command(op: str) -> str:
    return CHAT_COMMAND.format(op=op)


def chat_query(op: str) -> str:
    return CHAT_QUERY.format(op=op)


def chat_event(event_type: str) -> str:
    return CHAT_EVENTS.format(type=event_type)


def subject_token(value: str) -> str:
    """A subject-safe token for one value (an organization or user id may hold `.`, `*`, `>`, spaces)."""
    return hashlib.sha256(value.encode()).hexdigest()[:32]


def user_push(organization_id: str, user_id: str) -> str:
    """The push subject of one user: every chat event that concerns them, from every room."""
    return USER_PUSH.format(org=subject_token(organization_id), user=subject_token(user_id))


def room_push(organization_id: str, room_id: str) -> str:
    """The push subject of one room's messages (sent, edited, deleted), read by each member's socket."""
    return ROOM_PUSH.format(org=subject_token(organization_id), room=subject_token(room_id))


def users_seen(organization_id: str, user_id: str) -> str:
    return USERS_SEEN.format(org=subject_token(organization_id), user=subject_token(user_id))


def user_push_msg_id(event_id: str, user_id: str) -> str:
    """Nats-Msg-Id of one recipient's copy: dedup is per stream and one event goes to several users."""
    return f"{event_id}.{user_id}"


# Webhooks out (`parley_common.contracts.webhook`), served by the conference service (queue group
# `conference`): ops createWebhook, deleteWebhook (cmd), listWebhooks, getWebhook (qry). Deliveries owed to
# one endpoint wait on JetStream stream PARLEY_WEBHOOK (work queue), one subject per endpoint.
WEBHOOK_COMMAND = "parley.cmd.webhook.{op}"
WEBHOOK_QUERY = "parley.qry.webhook.{op}"
WEBHOOK_DELIVERIES = "parley.webhook.{webhook}"
WEBHOOK_DELIVERIES_ALL = "parley.webhook.>"
# Core fan-out to the conference replicas: an endpoint was registered or deleted (drop cached lists now).
# Plural `webhooks`: outside the delivery stream's `parley.webhook.>`.
WEBHOOKS_CHANGED = "parley.webhooks.changed"


def webhook_command(op: str) -> str:
    return WEBHOOK_COMMAND.format(op=op)


def webhook_query(op: str) -> str:
    return WEBHOOK_QUERY.format(op=op)


def webhook_deliveries(webhook_id: str) -> str:
    return WEBHOOK_DELIVERIES.format(webhook=webhook_id)
