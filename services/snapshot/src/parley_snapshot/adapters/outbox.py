"""What a snapshot commit owes, and the shared outbox that carries it out (`parley_common.outbox`).

Events go onto PARLEY_SNAPSHOT, some are pushed to endpoints, an image no longer referenced is deleted.
The records keep their pending effects (`Records` is the outbox store); the handler waits a moment for them
after a commit, so the pushed event is on its way when the command is answered. Whatever fails (NATS briefly
away, the process dying) stays pending and the outbox's recovery runs it again, publishing only the events
the stream does not store yet. Pushes carry a per-endpoint `Nats-Msg-Id` too; repeated after the duplicate
window, one reaches the endpoint twice, which AT_LEAST_ONCE allows. Deleting an image that is gone is fine.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from nats.js import JetStreamContext
from parley_common.contracts.push import PushedEvent
from parley_common.contracts.snapshot import AnySnapshotEvent
from parley_common.messaging import subjects
from parley_common.messaging.streams import SNAPSHOT_STREAM
from parley_common.outbox import (
    DeleteObject,
    Outbox,
    OutboxStore,
    Publisher,
    PublishEvent,
    PushToEndpoint,
    each,
)

from parley_snapshot.adapters.images import ImageStore
from parley_snapshot.adapters.repository import Effect, as_document
from parley_snapshot.domain import Decision

# A live publish gives up after this many tries: the effect stays pending and recovery retries it later.
PUBLISH_ATTEMPTS = 3


class EndpointMessenger(Protocol):
    async def deliver(self, pushed: PushedEvent) -> None: ...


def effects_of(decision: Decision[Any]) -> list[Effect]:
    """What committing `decision` owes: publish every event, push some to endpoints, maybe delete an image."""
    effects: list[Effect] = [
        PublishEvent(
            subject=subjects.snapshot_event(type(event).__name__),
            msg_id=event.id,
            event=as_document(event),
            stream=SNAPSHOT_STREAM,
            committed_at=event.timestamp,
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


def snapshot_outbox(
    js: JetStreamContext,
    messenger: EndpointMessenger,
    images: ImageStore,
    stores: Sequence[OutboxStore],
    **options: Any,
) -> Outbox:
    """The outbox of the snapshot service: events, then pushes, then image deletions."""

    async def push(effect: PushToEndpoint) -> None:
        await messenger.deliver(effect.pushed)

    async def delete(effect: DeleteObject) -> None:
        await images.delete(effect.object_name)

    return Outbox(
        stores,
        {
            PublishEvent: Publisher(js, attempts=PUBLISH_ATTEMPTS),
            PushToEndpoint: each(push),
            DeleteObject: each(delete),
        },
        **options,
    )
