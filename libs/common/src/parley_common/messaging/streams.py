"""The JetStream streams, declared idempotently by every service at start-up."""

from __future__ import annotations

from dataclasses import replace

from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, ObjectStoreConfig, RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import BadRequestError, BucketNotFoundError, NotFoundError
from nats.js.object_store import ObjectStore

from parley_common.messaging import subjects

DAY = 24 * 3600.0
CONFERENCE_STREAM = "PARLEY_CONFERENCE"
SNAPSHOT_STREAM = "PARLEY_SNAPSHOT"
PUSH_STREAM = "PARLEY_PUSH"

STREAMS: tuple[StreamConfig, ...] = (
    StreamConfig(
        name=CONFERENCE_STREAM,
        description="Conference domain events, one subject per event type",
        subjects=[subjects.CONFERENCE_EVENTS_ALL],
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        max_age=30 * DAY,
        duplicate_window=120.0,
        discard=DiscardPolicy.OLD,
    ),
    StreamConfig(
        name="PARLEY_MEDIA",
        description="What media nodes report about their streams: ended, recording stored",
        subjects=[subjects.MEDIA_EVENTS_ALL],
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        max_age=7 * DAY,
        duplicate_window=120.0,
        discard=DiscardPolicy.OLD,
    ),
    StreamConfig(
        name=SNAPSHOT_STREAM,
        description="Snapshot domain events, one subject per event type",
        subjects=[subjects.SNAPSHOT_EVENTS_ALL],
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        max_age=30 * DAY,
        duplicate_window=120.0,
        discard=DiscardPolicy.OLD,
    ),
    StreamConfig(
        name=PUSH_STREAM,
        description="AT_LEAST_ONCE events addressed to one user endpoint, kept until acknowledged",
        subjects=[subjects.PUSH_DURABLE_ALL],
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        max_age=1 * DAY,
        duplicate_window=120.0,
        discard=DiscardPolicy.OLD,
    ),
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
