"""NATS side of a media node: its request subjects, health, heartbeats, events out, conference events in."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import re
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

import msgspec
import nats.errors
from faststream.nats import NatsBroker
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError
from parley_common.contracts.base import Payload
from parley_common.contracts.conference import AnyConferenceEvent
from parley_common.contracts.health import Dependency, HealthQuery, ServiceHealth
from parley_common.contracts.media import (
    AddMediaCandidates,
    GrabStill,
    MediaNodeHeartbeat,
    PublishMedia,
    StopViewMedia,
    UnpublishMedia,
    ViewMedia,
)
from parley_common.contracts.rpc import Accepted, Rejected, Request
from parley_common.log import get_logger
from parley_common.messaging import subjects
from parley_common.messaging.codec import encode
from parley_common.messaging.events import publish_event
from parley_common.messaging.pull import fetch_ready
from parley_common.messaging.rpc import serve

from parley_media.engine import MediaEngine
from parley_media.handlers import MediaNodeHandlers

log = get_logger(__name__)

SERVICE = "media"
CONFERENCE_STREAM = "PARLEY_CONFERENCE"


def register(broker: NatsBroker, handlers: MediaNodeHandlers, node_id: str, nc: Client) -> None:
    """Serve `parley.media.<node_id>.<op>` (queue group = node id) and `parley.health.media`."""
    ops: dict[str, tuple[Any, Any]] = {
        "publish": (Request[PublishMedia], handlers.publish),
        "view": (Request[ViewMedia], handlers.view),
        "candidates": (Request[AddMediaCandidates], handlers.candidates),
        "stopView": (Request[StopViewMedia], handlers.stop_view),
        "unpublish": (Request[UnpublishMedia], handlers.unpublish),
        "still": (Request[GrabStill], handlers.still),
    }
    for op, (request_type, handler) in ops.items():
        serve(broker, subjects.media_node(node_id, op), request_type, handler, queue=node_id)

    async def health(_: HealthQuery) -> Accepted[ServiceHealth] | Rejected:
        # Answered by any node of the queue group: the media plane is up if one node is.
        nats_ok = nc.is_connected
        return Accepted(
            value=ServiceHealth(
                service=SERVICE,
                is_healthy=nats_ok,
                dependencies=[Dependency(name="nats", is_healthy=nats_ok)],
            )
        )

    serve(broker, subjects.health(SERVICE), HealthQuery, health, queue=SERVICE, parallelism=1)


class JetStreamEvents:
    """EventSink on JetStream: `Nats-Msg-Id` dedup, retried until the server acknowledges."""

    def __init__(self, js: JetStreamContext) -> None:
        self._js = js

    async def publish(self, subject: str, event: Payload, *, msg_id: str) -> None:
        await publish_event(self._js, subject, event, msg_id=msg_id)


class Heartbeats:
    """`MediaNodeHeartbeat` on the core subject MEDIA_HEARTBEAT: once at start, then every interval."""

    def __init__(
        self, nc: Client, engine: MediaEngine, *, node_id: str, started_at: datetime, capacity: int
    ) -> None:
        self._nc = nc
        self._engine = engine
        self._node_id = node_id
        self._started_at = started_at
        self._capacity = capacity

    def current(self) -> MediaNodeHeartbeat:
        counters = self._engine.counters()
        return MediaNodeHeartbeat(
            node_id=self._node_id,
            started_at=self._started_at,
            publishers=counters.publishers,
            viewers=counters.viewers,
            capacity=self._capacity,
        )

    async def beat(self) -> None:
        try:
            await self._nc.publish(subjects.MEDIA_HEARTBEAT, encode(self.current()))
        except nats.errors.Error as exc:  # reconnecting: the next beat will do
            log.warning("heartbeat not sent", error=repr(exc))

    async def run(self, interval: float) -> None:
        while True:
            await self.beat()
            await asyncio.sleep(interval)


def consumer_name(node_id: str) -> str:
    """A JetStream consumer name for the node: safe characters, and a hash so two ids never collide."""
    safe = re.sub(r"[^A-Za-z0-9_-]", "_", node_id)[:64]
    digest = hashlib.sha256(node_id.encode()).hexdigest()[:10]
    return f"media-node-{safe}-{digest}"


class ConferenceEvents:
    """This node's own consumer of PARLEY_CONFERENCE, starting at new messages.

    The node's state lives in memory, so history is of no use: on start the consumer is (re)created with
    DeliverPolicy.NEW. It is durable so that a NATS reconnect resumes where it stopped; a node that is
    gone for good leaves it behind for `inactive_threshold` at most. Events are applied one at a time,
    in stream order, and acknowledged explicitly (also when applying one failed: it would fail again).
    """

    def __init__(
        self,
        js: JetStreamContext,
        node_id: str,
        apply: Callable[[AnyConferenceEvent], Awaitable[None]],
        *,
        event_types: tuple[str, ...],
        inactive_threshold: float = 600.0,
    ) -> None:
        self._js = js
        self._name = consumer_name(node_id)
        self._apply = apply
        self._config = ConsumerConfig(
            durable_name=self._name,
            description=f"media node {node_id}: teardown and recorder events",
            deliver_policy=DeliverPolicy.NEW,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=30.0,
            filter_subjects=[subjects.conference_event(t) for t in event_types],
            inactive_threshold=inactive_threshold,
            max_ack_pending=1000,
        )
        self._decoder = msgspec.json.Decoder(AnyConferenceEvent)
        self._subscription: JetStreamContext.PullSubscription | None = None

    async def start(self) -> None:
        """Create the consumer afresh: from here on, every followed event reaches this node."""
        with contextlib.suppress(NotFoundError):
            await self._js.delete_consumer(CONFERENCE_STREAM, self._name)
        await self._js.add_consumer(CONFERENCE_STREAM, self._config)
        self._subscription = await self._js.pull_subscribe_bind(self._name, stream=CONFERENCE_STREAM)

    async def run(self) -> None:
        while True:
            try:
                await self._pull()
            except asyncio.CancelledError:
                raise
            except NotFoundError:
                # Deleted while this node was cut off longer than inactive_threshold: events were missed.
                log.error("conference event consumer was gone: recreated, events meanwhile missed")
                await self._recreate()
            except Exception as exc:
                log.warning("conference event pull failed", error=repr(exc))
                await asyncio.sleep(1.0)

    async def _recreate(self) -> None:
        try:
            if self._subscription is not None:
                await self._subscription.unsubscribe()
            await self.start()
        except Exception as exc:
            log.warning("recreating the conference event consumer failed", error=repr(exc))
            await asyncio.sleep(1.0)

    async def _pull(self) -> None:
        assert self._subscription is not None, "start() first"
        try:
            messages = await fetch_ready(self._subscription, 32, timeout=1.0)
        except (nats.errors.TimeoutError, TimeoutError):
            return
        for message in messages:
            try:
                event = self._decoder.decode(message.data)
            except msgspec.DecodeError as exc:
                log.warning("undecodable conference event", subject=message.subject, error=str(exc))
            else:
                try:
                    await self._apply(event)
                except Exception:
                    log.exception(
                        "applying a conference event failed", event_id=event.id, type=type(event).__name__
                    )
            await message.ack()

    async def stop(self) -> None:
        if self._subscription is not None:
            try:
                await self._subscription.unsubscribe()
            except Exception as exc:
                log.debug("unsubscribe failed", error=repr(exc))
            self._subscription = None
        # Gone with the node: nothing for it to keep.
        try:
            await self._js.delete_consumer(CONFERENCE_STREAM, self._name)
        except Exception as exc:
            log.debug("consumer not deleted", error=repr(exc))
