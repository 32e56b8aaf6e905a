"""After a commit: publish the event to JetStream, then bring snapshot and indexes up to date.

Events are relayed in commit order, a batch at a time: publishes of one batch are pipelined on the
connection (started in order, so the stream stores them in order) and each carries its event id as
`Nats-Msg-Id`, so a relay repeated after a crash is stored once. On start-up `recover` relays whatever was
committed but not yet marked published.
"""

from __future__ import annotations

import asyncio

from nats.js import JetStreamContext
from parley_common.contracts.conference import AnyConferenceEvent
from parley_common.log import get_logger
from parley_common.messaging import subjects
from parley_common.messaging.events import publish_event
from parley_common.storage import StorageError

from parley_conference.adapters.repository import ConferenceRepository
from parley_conference.domain import Conference

log = get_logger(__name__)
BATCH = 256
SNAPSHOT_EVERY = 16


class Outbox:
    def __init__(self, repository: ConferenceRepository, js: JetStreamContext) -> None:
        self._repository = repository
        self._js = js
        self._queue: asyncio.Queue[tuple[Conference | None, AnyConferenceEvent]] = asyncio.Queue()

    def committed(self, state: Conference, event: AnyConferenceEvent) -> None:
        self._queue.put_nowait((state, event))

    async def recover(self) -> int:
        """Relay events committed before a crash but never published; returns how many."""
        count = 0
        while batch := await self._repository.unpublished(limit=BATCH):
            await self._relay([(None, event) for event in batch])
            count += len(batch)
        if count:
            log.info("outbox recovered unpublished events", count=count)
        return count

    async def run(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while not self._queue.empty() and len(batch) < BATCH:
                batch.append(self._queue.get_nowait())
            try:
                await self._relay(batch)
            except Exception:
                # The events stay unpublished in storage and are relayed again on the next start.
                log.exception("outbox relay failed", events=len(batch))
            finally:
                for _ in batch:
                    self._queue.task_done()

    async def drain(self) -> None:
        await self._queue.join()

    async def _relay(self, batch: list[tuple[Conference | None, AnyConferenceEvent]]) -> None:
        events = [event for _, event in batch]
        await asyncio.gather(
            *(
                publish_event(
                    self._js, subjects.conference_event(type(event).__name__), event, msg_id=event.id
                )
                for event in events
            )
        )
        try:
            await self._repository.mark_published(events)
            for event in events:
                await self._repository.record_membership(event)
            for state in _snapshots_due(batch):
                await self._repository.save_snapshot(state)
        except StorageError:
            # Unmarked events are published again (deduplicated by id) on the next start.
            log.exception("post-publish bookkeeping failed", events=len(events))
        if any(state is None for state, _ in batch):
            # Recovered events carry no state: snapshot the conferences they belong to, once each.
            for organization_id, conference_id in {(e.organization_id, e.conference_id) for e in events}:
                latest = await self._repository.get(organization_id, conference_id)
                if latest is not None:
                    await self._repository.save_snapshot(latest)


def _snapshots_due(batch: list[tuple[Conference | None, AnyConferenceEvent]]) -> list[Conference]:
    """The latest state of each conference in the batch that is worth a snapshot.

    Snapshots only shorten loading (newer events are folded over them), so one now and then suffices: at
    creation and end (the timers list live conferences from snapshots) and every SNAPSHOT_EVERY versions.
    """
    due: dict[tuple[str, str], Conference] = {}
    for state, _ in batch:
        if state is not None and (state.version == 0 or state.ended or state.version % SNAPSHOT_EVERY == 0):
            due[(state.organization_id, state.id)] = state
    return list(due.values())
