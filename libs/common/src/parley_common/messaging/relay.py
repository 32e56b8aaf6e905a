"""Relaying events recovered after a crash so that each is stored once, however long the outage lasted.

An outbox publishes an event, then records that it did. A process dying in between leaves the event
"unpublished" in storage although the stream holds it; recovery relays it again. `Nats-Msg-Id` makes the
server drop that repeat only within the stream's duplicate window (120 s), and a restart may come much later.
So recovery first asks the stream which candidates it already stores (`stored_ids`) and relays only the
others (`relay`). Live publishes keep their `Nats-Msg-Id`: the window still covers a retry of a publish
whose acknowledgement was lost.

The question is answered by reading the stream's tail: an ephemeral, headers-only pull consumer filtered on
the candidates' subjects, starting at the oldest candidate's commit time (less a margin for the clocks of
the committing process and the server) and read to the end. It reads only what was stored since the oldest
unpublished event, without the bodies.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import msgspec
import nats.errors
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from parley_common.log import get_logger
from parley_common.messaging.events import publish_event

log = get_logger(__name__)

# How far the committing process's clock may run ahead of the server's: the scan starts this much earlier
# than the oldest candidate's commit time (a publish is always stored after its commit).
CLOCK_SKEW = timedelta(seconds=30)
SCAN_BATCH = 1024
# The scan's consumer is deleted when done; should the process die mid-scan, the server drops it after this.
SCAN_INACTIVE_SECONDS = 30.0
MSG_ID = "Nats-Msg-Id"


class Outgoing(msgspec.Struct, frozen=True, kw_only=True):
    """An event an outbox owes to a stream: where, under which dedup id, committed when, and its bytes."""

    subject: str
    msg_id: str
    committed_at: datetime
    payload: Any  # bytes as published, or a Struct/dict `publish_event` encodes


async def stored_ids(
    js: JetStreamContext,
    stream: str,
    candidates: Sequence[Outgoing],
    *,
    skew: timedelta = CLOCK_SKEW,
    timeout: float = 5.0,
) -> set[str]:
    """The `msg_id`s among `candidates` that `stream` already stores."""
    if not candidates:
        return set()
    wanted = {c.msg_id for c in candidates}
    since = min(c.committed_at for c in candidates) - skew
    config = ConsumerConfig(
        name=f"relay-scan-{uuid.uuid4().hex}",
        deliver_policy=DeliverPolicy.BY_START_TIME,
        opt_start_time=since,
        ack_policy=AckPolicy.NONE,
        headers_only=True,  # ids only: the bodies stay on the server
        filter_subjects=sorted({c.subject for c in candidates}),
        inactive_threshold=SCAN_INACTIVE_SECONDS,
        mem_storage=True,
    )
    info = await js.add_consumer(stream, config, timeout=timeout)
    found: set[str] = set()
    scanned = 0
    try:
        subscription = await js.pull_subscribe_bind(info.name, stream=stream)
        try:
            remaining = info.num_pending or 0
            while remaining > 0:
                try:
                    messages = await subscription.fetch(batch=min(remaining, SCAN_BATCH), timeout=timeout)
                except (nats.errors.TimeoutError, TimeoutError):
                    break  # what was pending went away meanwhile (age limit, purge): nothing more to read
                for msg in messages:
                    msg_id = (msg.headers or {}).get(MSG_ID)
                    if msg_id in wanted:
                        found.add(msg_id)
                scanned += len(messages)
                # What is still ahead, including what arrived since the scan began: read to the end.
                remaining = messages[-1].metadata.num_pending if messages else 0
        finally:
            await subscription.unsubscribe()
    finally:
        # Should the deletion fail, the consumer expires on its own (SCAN_INACTIVE_SECONDS).
        with contextlib.suppress(nats.errors.Error, TimeoutError):
            await js.delete_consumer(stream, info.name)
    log.debug("stream scanned for relayed events", stream=stream, scanned=scanned, found=len(found))
    return found


async def relay(
    js: JetStreamContext, stream: str, events: Sequence[Outgoing], *, attempts: int = 0
) -> list[Outgoing]:
    """Publish those of `events` that `stream` does not store yet, in order; returns the ones published.

    Publishes are pipelined (started in order, so the stream stores them in order) and keep their
    `Nats-Msg-Id`. `attempts` as in `publish_event` (0: retry until acknowledged).
    """
    stored = await stored_ids(js, stream, events)
    missing = [e for e in events if e.msg_id not in stored]
    if stored:
        log.info("recovered events already in the stream, not relayed", stream=stream, count=len(stored))
    await asyncio.gather(
        *(publish_event(js, e.subject, e.payload, msg_id=e.msg_id, attempts=attempts) for e in missing)
    )
    return missing
