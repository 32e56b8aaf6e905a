"""The JetStream streams, declared idempotently by every service at start-up."""

from __future__ import annotations

from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import BadRequestError, NotFoundError

from parley_common.messaging import subjects

DAY = 24 * 3600.0

STREAMS: tuple[StreamConfig, ...] = (
    StreamConfig(
        name="PARLEY_CONFERENCE",
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
        name="PARLEY_PUSH",
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
