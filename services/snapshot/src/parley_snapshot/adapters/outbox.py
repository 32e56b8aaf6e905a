"""Carrying out what a commit owes: events onto PARLEY_SNAPSHOT, pushes to endpoints, image deletions.

Right after a commit the handler runs the record's effects itself (`settle`), so the pushed event is on
its way when the command is answered. Whatever fails there (NATS briefly away, the process dying) stays
`pending` in storage, and `recover_forever` runs it again. Events carry their id as `Nats-Msg-Id`, which
makes a repeat within the stream's duplicate window (120 s) a no-op; a recovery may come later than that
(the process died after publishing, before marking the record settled), so it first reads which pending
events PARLEY_SNAPSHOT already stores and publishes only the others (`parley_common.messaging.relay`).
Pushes carry a per-endpoint `Nats-Msg-Id` too; repeated after the window, one reaches the endpoint twice,
which AT_LEAST_ONCE allows. Deleting an image that is gone is fine.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any, Protocol

import msgspec
from nats.js import JetStreamContext
from parley_common.contracts.push import PushedEvent
from parley_common.contracts.snapshot import AnySnapshotEvent
from parley_common.log import get_logger
from parley_common.messaging import subjects
from parley_common.messaging.codec import encode
from parley_common.messaging.events import publish_event
from parley_common.messaging.relay import Outgoing, stored_ids
from parley_common.messaging.streams import SNAPSHOT_STREAM

from parley_snapshot.adapters.images import ImageStore
from parley_snapshot.adapters.repository import (
    DeleteObject,
    Effect,
    Pending,
    PublishEvent,
    PushToEndpoint,
    Records,
    as_document,
)
from parley_snapshot.domain import Decision

log = get_logger(__name__)
PUBLISH_ATTEMPTS = 3


class EndpointMessenger(Protocol):
    async def deliver(self, pushed: PushedEvent) -> None: ...


def effects_of(decision: Decision[Any]) -> list[Effect]:
    """What committing `decision` owes: publish every event, push some to endpoints, maybe delete an image."""
    effects: list[Effect] = [
        PublishEvent(
            subject=subjects.snapshot_event(type(event).__name__), msg_id=event.id, event=as_document(event)
        )
        for event in decision.events
    ]
    for push in decision.pushes:
        event: AnySnapshotEvent = decision.events[push.event_index]
        effects.append(
            PushToEndpoint(
                pushed=PushedEvent(
                    organization_id=event.organization_id,
                    user_endpoint_id=push.user_endpoint_id,
                    conference_id=event.session_id or "",
                    event_id=event.id,
                    qos="AT_LEAST_ONCE",
                    event=as_document(event),
                )
            )
        )
    if decision.delete_object is not None:
        effects.append(DeleteObject(object_name=decision.delete_object))
    return effects


class Outbox:
    def __init__(self, js: JetStreamContext, messenger: EndpointMessenger, images: ImageStore) -> None:
        self._js = js
        self._messenger = messenger
        self._images = images

    async def settle(
        self, records: Records[Any], record_id: str, version: int, effects: list[Effect]
    ) -> bool:
        """Carry out `effects` and mark them done; False (and left pending) when one failed."""
        try:
            for effect in effects:
                await self._run(effect)
            await records.settle(record_id, version)
        except Exception as exc:
            log.warning("effects left pending", record=record_id, version=version, error=repr(exc))
            return False
        return True

    async def recover(self, every: list[Records[Any]]) -> int:
        """One pass over whatever is still pending in storage; returns how many records it settled."""
        settled = 0
        for records in every:
            pending: list[Pending] = await records.pending()
            published = await stored_ids(
                self._js,
                SNAPSHOT_STREAM,
                [_outgoing(e) for item in pending for e in item.effects if isinstance(e, PublishEvent)],
            )
            for item in pending:
                effects = [
                    e for e in item.effects if not (isinstance(e, PublishEvent) and e.msg_id in published)
                ]
                if await self.settle(records, item.id, item.version, effects):
                    settled += 1
        if settled:
            log.info("outbox settled pending effects", records=settled)
        return settled

    async def recover_forever(self, every: list[Records[Any]], interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await self.recover(every)
            except Exception:
                log.exception("outbox recovery failed")

    async def _run(self, effect: Effect) -> None:
        if isinstance(effect, PublishEvent):
            await publish_event(
                self._js,
                effect.subject,
                encode(effect.event),
                msg_id=effect.msg_id,
                attempts=PUBLISH_ATTEMPTS,
            )
        elif isinstance(effect, PushToEndpoint):
            await self._messenger.deliver(effect.pushed)
        else:
            assert isinstance(effect, DeleteObject)
            await self._images.delete(effect.object_name)


def _outgoing(effect: PublishEvent) -> Outgoing:
    # The event's own timestamp is its commit time (decided just before the record was written).
    committed_at = msgspec.convert(effect.event["timestamp"], datetime)
    return Outgoing(
        subject=effect.subject, msg_id=effect.msg_id, committed_at=committed_at, payload=effect.event
    )
