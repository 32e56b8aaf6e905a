"""NATS side of the media plane, as the conference service sees it: requests to one node, the nodes'
heartbeats, and the durable feed of what nodes report (PARLEY_MEDIA), shared by every replica.
"""

from __future__ import annotations

import asyncio
from typing import Any, TypeVar

import msgspec
import nats.errors
from faststream.nats import NatsBroker
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from parley_common.contracts.media import (
    MediaNodeHeartbeat,
    MediaOp,
    MediaStreamEndedEvent,
    RecordingStoredEvent,
)
from parley_common.contracts.rpc import Accepted, Caller, Rejected, Request
from parley_common.log import get_logger
from parley_common.messaging import subjects
from parley_common.messaging.pull import fetch_ready
from parley_common.messaging.rpc import RpcClient

from parley_conference.media import MediaHandlers
from parley_conference.placement import MediaNodes

log = get_logger(__name__)
T = TypeVar("T")
CONSUMER = "conference-media"
_heartbeat_decoder = msgspec.json.Decoder(MediaNodeHeartbeat)
_ended_decoder = msgspec.json.Decoder(MediaStreamEndedEvent)
_stored_decoder = msgspec.json.Decoder(RecordingStoredEvent)


class NatsMediaNodeClient:
    def __init__(self, rpc: RpcClient, *, timeout: float) -> None:
        self._rpc = rpc
        self._timeout = timeout

    async def request(
        self, node_id: str, op: MediaOp, caller: Caller, body: Any, value_type: type[T]
    ) -> Accepted[T] | Rejected:
        subject = subjects.media_node(node_id, op)
        reply = await self._rpc.request(
            subject, Request(caller=caller, body=body), value_type, timeout=self._timeout
        )
        if isinstance(reply, Rejected) and reply.status >= 500:
            # A node that is down or failed: the media service is unavailable to the client (never a 500).
            if reply.status != 503:
                log.error("media node failed a request", node_id=node_id, op=op, status=reply.status)
            return Rejected.unavailable(f"media node {node_id} is not answering")
        return reply


class Announcements:
    """Heartbeats as a signal for use cases waiting for a media node (see `MediaHandlers`).

    Each heartbeat sets the current event and puts a fresh one in its place, so every waiter wakes once
    per heartbeat and looks at the nodes again; nobody polls.
    """

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def heard(self) -> None:
        event, self._event = self._event, asyncio.Event()
        event.set()

    async def next(self, timeout: float) -> bool:
        event = self._event
        try:
            await asyncio.wait_for(event.wait(), timeout)
        except TimeoutError:
            return False
        return True


def follow_heartbeats(broker: NatsBroker, nodes: MediaNodes, announcements: Announcements) -> None:
    """Every replica hears every heartbeat (no queue group): each chooses nodes by what it heard."""

    async def on_heartbeat(body: bytes) -> None:
        try:
            nodes.heard(_heartbeat_decoder.decode(body))
        except msgspec.DecodeError:
            log.warning("undecodable media heartbeat")
            return
        announcements.heard()

    broker.subscriber(subjects.MEDIA_HEARTBEAT, no_reply=True)(on_heartbeat)


async def consume_media_events(js: JetStreamContext, handlers: MediaHandlers) -> None:
    """Apply node reports once across the replicas (one durable consumer); ack each when applied."""
    subscription = await js.pull_subscribe(
        subjects.MEDIA_EVENTS_ALL,
        durable=CONSUMER,
        stream="PARLEY_MEDIA",
        config=ConsumerConfig(
            ack_policy=AckPolicy.EXPLICIT, deliver_policy=DeliverPolicy.ALL, ack_wait=30, max_deliver=20
        ),
    )
    while True:
        try:
            messages = await fetch_ready(subscription, 16, timeout=5)
        except (nats.errors.TimeoutError, TimeoutError):
            continue
        for msg in messages:
            event_type = msg.subject.rsplit(".", 1)[-1]
            try:
                if event_type == "MediaStreamEndedEvent":
                    await handlers.on_stream_ended(_ended_decoder.decode(msg.data))
                elif event_type == "RecordingStoredEvent":
                    await handlers.on_recording_stored(_stored_decoder.decode(msg.data))
                else:
                    log.info("media event ignored", event_type=event_type)
            except msgspec.DecodeError:
                log.warning("undecodable media event", event_type=event_type)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("media event failed; redelivered later", event_type=event_type)
                await msg.nak(delay=2)
                continue
            await msg.ack()
