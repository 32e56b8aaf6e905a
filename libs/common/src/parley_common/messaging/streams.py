"""The JetStream streams, declared idempotently by every service at start-up."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, ObjectStoreConfig, RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import BadRequestError, BucketNotFoundError, NotFoundError
from nats.js.object_store import ObjectStore

from parley_common.messaging import subjects

DAY = 24 * 3600.0
CONFERENCE_STREAM = "PARLEY_CONFERENCE"
SNAPSHOT_STREAM = "PARLEY_SNAPSHOT"
PUSH_STREAM = "PARLEY_PUSH"
CHAT_STREAM = "PARLEY_CHAT"
USER_PUSH_STREAM = "PARLEY_USER_PUSH"
USERS_STREAM = "PARLEY_USERS"
MEETING_STREAM = "PARLEY_MEETING"


def _stream(*, name: str, description: str, subjects: list[str], **limits: Any) -> StreamConfig:
    """A file-backed stream that keeps messages by its limits (age, count per subject) and drops the oldest;
    publishes carry `Nats-Msg-Id`, deduplicated within two minutes."""
    return StreamConfig(
        name=name,
        description=description,
        subjects=subjects,
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        duplicate_window=120.0,
        discard=DiscardPolicy.OLD,
        **limits,
    )


STREAMS: tuple[StreamConfig, ...] = (
    _stream(
        name=CONFERENCE_STREAM,
        description="Conference domain events, one subject per event type",
        subjects=[subjects.CONFERENCE_EVENTS_ALL],
        max_age=30 * DAY,
    ),
    _stream(
        name="PARLEY_MEDIA",
        description="What media nodes report about their streams: ended, recording stored",
        subjects=[subjects.MEDIA_EVENTS_ALL],
        max_age=7 * DAY,
    ),
    _stream(
        name=SNAPSHOT_STREAM,
        description="Snapshot domain events, one subject per event type",
        subjects=[subjects.SNAPSHOT_EVENTS_ALL],
        max_age=30 * DAY,
    ),
    _stream(
        name=PUSH_STREAM,
        description="AT_LEAST_ONCE events addressed to one user endpoint, kept until acknowledged",
        subjects=[subjects.PUSH_DURABLE_ALL],
        max_age=1 * DAY,
    ),
    _stream(
        name=CHAT_STREAM,
        description="Chat domain events, once each, one subject per event type",
        subjects=[subjects.CHAT_EVENTS_ALL],
        max_age=30 * DAY,
    ),
    _stream(
        name=MEETING_STREAM,
        description="Scheduled meeting events (SourceFuse and Coviu APIs), one subject per event type",
        subjects=[subjects.MEETING_EVENTS_ALL],
        max_age=30 * DAY,
    ),
    _stream(
        name=USER_PUSH_STREAM,
        description="Chat events, one copy per recipient user, read by the gateway's /events/ws",
        subjects=[subjects.USER_PUSH_ALL],
        # A client away longer than a week starts again from GET /rooms; a busy user keeps the newest.
        max_age=7 * DAY,
        max_msgs_per_subject=10_000,
    ),
    _stream(
        name=USERS_STREAM,
        description="The latest report of each authenticated user: the chat user directory's source",
        subjects=[subjects.USERS_SEEN_ALL],
        # Only the last report of a user matters.
        max_msgs_per_subject=1,
    ),
)


WEBHOOK_STREAM = "PARLEY_WEBHOOK"
# Not in STREAMS: an internal queue of the conference service (which declares it), not events anyone
# subscribes to. One subject per endpoint; a delivery leaves when its endpoint's worker acknowledges it.
WEBHOOK_STREAM_CONFIG: StreamConfig = replace(
    _stream(
        name=WEBHOOK_STREAM,
        description="Webhook deliveries owed to each endpoint (parley.webhook.<webhookId>)",
        subjects=[subjects.WEBHOOK_DELIVERIES_ALL],
        max_age=7 * DAY,
    ),
    retention=RetentionPolicy.WORK_QUEUE,
)


async def ensure_streams(js: JetStreamContext, streams: tuple[StreamConfig, ...] = STREAMS) -> None:
    """Create each stream, or bring an existing one's configuration up to date."""
    for config in streams:
        try:
            await js.stream_info(config.name or "")
        except NotFoundError:
            try:
                await js.add_stream(config)
            except BadRequestError:
                # Another service created it in between: fall through to update.
                await js.update_stream(config)
        else:
            await js.update_stream(config)


# Object store buckets, declared like the streams: whoever opens one first creates it.
OBJECT_STORES: dict[str, ObjectStoreConfig] = {
    subjects.SNAPSHOTS_BUCKET: ObjectStoreConfig(description="Snapshot images", storage=StorageType.FILE),
    subjects.CHAT_FILES_BUCKET: ObjectStoreConfig(
        description="Chat files: attachments, room and user pictures, rendered previews",
        storage=StorageType.FILE,
    ),
    # What the gateway received and the snapshot service has not checked yet; an upload abandoned half-way
    # (a process dying between the two steps) expires.
    subjects.SNAPSHOT_STAGING_BUCKET: ObjectStoreConfig(
        description="Snapshot uploads waiting for the snapshot service's check",
        storage=StorageType.FILE,
        ttl=3600.0,
    ),
}


async def ensure_object_store(js: JetStreamContext, bucket: str) -> ObjectStore:
    """Open one of the `OBJECT_STORES` buckets, creating it when missing (idempotent on the server)."""
    try:
        return await js.object_store(bucket)
    except BucketNotFoundError:
        return await js.create_object_store(bucket, replace(OBJECT_STORES[bucket]))
