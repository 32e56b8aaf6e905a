"""The JetStream streams, declared idempotently by every service at start-up.

Every stream, object store and KV bucket is kept in `PARLEY_NATS_REPLICAS` copies
(`CommonSettings.nats_replicas`), applied when declared: an existing R1 stream is scaled up on a cluster by
`update_stream` (the server copies it over), and durable consumers, created without `num_replicas`, follow
their stream's count (the server default).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from functools import partial
from typing import Any, TypeVar

from nats.errors import NoRespondersError
from nats.js import JetStreamContext
from nats.js.api import (
    DiscardPolicy,
    KeyValueConfig,
    ObjectStoreConfig,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import (
    APIError,
    BadRequestError,
    BucketNotFoundError,
    NoKeysError,
    NotFoundError,
    ServiceUnavailableError,
)
from nats.js.kv import KeyValue
from nats.js.object_store import ObjectStore

from parley_common.config import nats_replicas
from parley_common.log import get_logger
from parley_common.messaging import subjects

T = TypeVar("T")
log = get_logger(__name__)

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


# How long a starting service waits for a busy JetStream (a cluster electing leaders) to declare a stream.
SETUP_SECONDS = 60.0
# JetStream API error code: a stream of that name exists already (with another configuration).
STREAM_NAME_IN_USE = 10058


class JetStreamSetupError(RuntimeError):
    """The server refused a stream or bucket as configured (e.g. replicas > 1 on a single server): the
    service cannot start; `run_service` reports it in one line instead of a traceback."""


async def _declared(step: Awaitable[T], what: str, replicas: int) -> T:
    try:
        return await step
    except (NotFoundError, ServiceUnavailableError):
        raise
    except APIError as exc:
        hint = (
            f"; PARLEY_NATS_REPLICAS={replicas} needs a JetStream cluster of at least {replicas} servers "
            "(set PARLEY_NATS_REPLICAS=1 for a single server)"
            if replicas > 1
            else ""
        )
        raise JetStreamSetupError(
            f"NATS refused {what} with {replicas} replica(s): {exc.description or exc}{hint}"
        ) from exc


def _name_taken(exc: JetStreamSetupError) -> bool:
    """The stream was created by another process meanwhile (JetStream's "stream name already in use")."""
    return isinstance(exc.__cause__, BadRequestError) and exc.__cause__.err_code == STREAM_NAME_IN_USE


async def _patiently(step: Callable[[], Awaitable[T]], what: str, *, within: float) -> T:
    """`step` again while the JetStream API does not answer or answers "temporarily unavailable": a
    cluster electing leaders (all its servers just started, or one died) is slow for a few seconds, and
    a service starting meanwhile waits that out instead of dying. Each step is idempotent."""
    deadline = time.monotonic() + within
    delay = 0.2
    while True:
        try:
            return await step()
        except (TimeoutError, NoRespondersError, ServiceUnavailableError) as exc:
            if time.monotonic() + delay > deadline:
                raise JetStreamSetupError(
                    f"NATS did not declare {what} within {within:g} s: {exc!r}"
                ) from exc
            log.warning("jetstream busy; declaring again", what=what, error=repr(exc))
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)


async def _ensure_stream(js: JetStreamContext, config: StreamConfig, count: int) -> None:
    what = f"stream {config.name}"
    try:
        await js.stream_info(config.name or "")
    except NotFoundError:
        try:
            await _declared(js.add_stream(config), what, count)
        except JetStreamSetupError as exc:
            if not _name_taken(exc):
                raise
            # Another service created it in between: fall through to update.
            await _declared(js.update_stream(config), what, count)
    else:
        await _declared(js.update_stream(config), what, count)


async def ensure_streams(
    js: JetStreamContext,
    streams: tuple[StreamConfig, ...] = STREAMS,
    *,
    replicas: int | None = None,
    within: float = SETUP_SECONDS,
) -> None:
    """Create each stream, or bring an existing one's configuration (replica count included) up to date.
    `replicas` defaults to `PARLEY_NATS_REPLICAS`."""
    count = nats_replicas() if replicas is None else replicas
    for declared in streams:
        config = replace(declared, num_replicas=count)
        await _patiently(partial(_ensure_stream, js, config, count), f"stream {config.name}", within=within)


async def ensure_replicas(js: JetStreamContext, stream: str, replicas: int) -> None:
    """Scale the stream behind an existing KV bucket or object store to `replicas` copies (an R1 bucket
    of an older deployment, now on a cluster): the buckets' own APIs only set replicas on creation."""
    info = await js.stream_info(stream)
    if (info.config.num_replicas or 1) != replicas:
        await _declared(js.update_stream(replace(info.config, num_replicas=replicas)), stream, replicas)


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
    subjects.RECORDINGS_BUCKET: ObjectStoreConfig(
        description="Parley recordings: {organization}/{conference}/{recording id}.webm",
        storage=StorageType.FILE,
    ),
}


async def ensure_object_store(
    js: JetStreamContext, bucket: str, *, replicas: int | None = None
) -> ObjectStore:
    """Open one of the `OBJECT_STORES` buckets, creating it when missing (idempotent on the server), in
    `replicas` copies (default `PARLEY_NATS_REPLICAS`)."""
    count = nats_replicas() if replicas is None else replicas
    return await _patiently(
        partial(_open_object_store, js, bucket, count), f"object store {bucket}", within=SETUP_SECONDS
    )


async def _open_object_store(js: JetStreamContext, bucket: str, count: int) -> ObjectStore:
    try:
        store = await js.object_store(bucket)
    except BucketNotFoundError:
        config = replace(OBJECT_STORES[bucket], replicas=count)
        try:
            return await _declared(js.create_object_store(bucket, config), f"object store {bucket}", count)
        except JetStreamSetupError as exc:
            if not _name_taken(exc):
                raise
            # Created meanwhile by another process (or by an operator with other settings): use it.
            store = await js.object_store(bucket)
    await ensure_replicas(js, f"OBJ_{bucket}", count)
    return store


async def ensure_key_value(
    js: JetStreamContext,
    config: KeyValueConfig,
    *,
    replicas: int | None = None,
    within: float = SETUP_SECONDS,
) -> KeyValue:
    """Open the KV bucket `config` names, creating it when missing, in `replicas` copies (default
    `PARLEY_NATS_REPLICAS`), waiting out a cluster electing leaders like the streams and object stores."""
    count = nats_replicas() if replicas is None else replicas
    return await _patiently(
        partial(_open_key_value, js, replace(config, replicas=count), count),
        f"key-value bucket {config.bucket}",
        within=within,
    )


async def _open_key_value(js: JetStreamContext, config: KeyValueConfig, count: int) -> KeyValue:
    what = f"key-value bucket {config.bucket}"
    try:
        kv = await js.key_value(config.bucket)
    except (BucketNotFoundError, NotFoundError, NoKeysError):
        try:
            return await _declared(js.create_key_value(config), what, count)
        except JetStreamSetupError as exc:
            if not _name_taken(exc):
                raise
            kv = await js.key_value(config.bucket)  # created meanwhile by another replica
    await ensure_replicas(js, f"KV_{config.bucket}", count)
    return kv
