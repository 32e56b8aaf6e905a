"""After a commit: publish the event to JetStream at once; record that in storage a little later.

Events are relayed in commit order, a batch at a time: publishes of one batch are pipelined on the
connection (started in order, so the stream stores them in order) and each carries its event id as
`Nats-Msg-Id`, so a publish retried within the stream's duplicate window (120 s) is stored once. Marking
events published and writing snapshots are storage writes that would queue in front of the next command's
commit, so they are batched and flushed every `flush_interval` seconds instead. On start-up `recover`
relays whatever was committed but not yet marked published, except what the stream already stores (it
reads the stream's tail to find out, `parley_common.messaging.relay`): the process may have died after
publishing and before marking, and the restart may come long after the duplicate window has passed.
"""

from __future__ import annotations

import asyncio
import time

from nats.js import JetStreamContext
from parley_common.contracts.conference import AnyConferenceEvent
from parley_common.log import get_logger
from parley_common.messaging import subjects
from parley_common.messaging.codec import encode
from parley_common.messaging.events import publish_event
from parley_common.messaging.relay import Outgoing, relay
from parley_common.messaging.streams import CONFERENCE_STREAM
from parley_common.storage import StorageError

from parley_conference.adapters.repository import ConferenceRepository
from parley_conference.domain import Conference

log = get_logger(__name__)
BATCH = 256
SNAPSHOT_EVERY = 16

Committed = tuple[Conference | None, AnyConferenceEvent]


class Outbox:
    def __init__(
        self, repository: ConferenceRepository, js: JetStreamContext, *, flush_interval: float = 0.25
    ):
        self._repository = repository
        self._js = js
        self._flush_interval = flush_interval
        self._queue: asyncio.Queue[Committed] = asyncio.Queue()
        self._published: list[Committed] = []
        self._idle = asyncio.Event()
        self._idle.set()

    def committed(self, state: Conference, event: AnyConferenceEvent) -> None:
        self._idle.clear()
        self._queue.put_nowait((state, event))

    async def recover(self) -> int:
        """Relay events committed before a crash but never marked published; returns how many."""
        count = 0
        while batch := await self._repository.unpublished(limit=BATCH):
            await relay(self._js, CONFERENCE_STREAM, [_outgoing(event) for event in batch])
            await self._repository.mark_published(batch)
            for organization_id, conference_id in {(e.organization_id, e.conference_id) for e in batch}:
                latest = await self._repository.get(organization_id, conference_id)
                if latest is not None:
                    await self._repository.save_snapshot(latest)
            count += len(batch)
        if count:
            log.info("outbox recovered unpublished events", count=count)
        return count

    async def run(self) -> None:
        last_flush = time.monotonic()
        while True:
            try:
                # `asyncio.timeout`, not `wait_for`: no task per wait (this runs once per command).
                async with asyncio.timeout(self._flush_interval):
                    first = await self._queue.get()
            except TimeoutError:
                first = None
            batch = [] if first is None else [first]
            while not self._queue.empty() and len(batch) < BATCH:
                batch.append(self._queue.get_nowait())
            if batch:
                try:
                    await self._publish([event for _, event in batch])
                    self._published.extend(batch)
                except Exception:
                    # Still unpublished in storage: relayed on the next start unless the stream has it.
                    log.exception("outbox publish failed", events=len(batch))
            if self._published and (
                first is None
                or len(self._published) >= BATCH
                or time.monotonic() - last_flush >= self._flush_interval
            ):
                await self._flush()
                last_flush = time.monotonic()
            if self._queue.empty() and not self._published:
                self._idle.set()

    async def drain(self) -> None:
        """Until everything committed so far is published and recorded (for a clean shutdown)."""
        await self._idle.wait()

    async def _publish(self, events: list[AnyConferenceEvent]) -> None:
        if len(events) == 1:  # the usual batch: no task to pipeline it with others
            event = events[0]
            await publish_event(
                self._js, subjects.conference_event(type(event).__name__), event, msg_id=event.id
            )
            return
        await asyncio.gather(
            *(
                publish_event(
                    self._js, subjects.conference_event(type(event).__name__), event, msg_id=event.id
                )
                for event in events
            )
        )

    async def _flush(self) -> None:
        done, self._published = self._published, []
        try:
            await self._repository.mark_published([event for _, event in done])
            for state in _snapshots_due(done):
                await self._repository.save_snapshot(state)
        except StorageError:
            # Unmarked events are found in the stream on the next start and not published again.
            log.exception("outbox bookkeeping failed", events=len(done))


def _outgoing(event: AnyConferenceEvent) -> Outgoing:
    return Outgoing(
        subject=subjects.conference_event(type(event).__name__),
        msg_id=event.id,
        committed_at=event.timestamp,
        payload=encode(event),
    )


def _snapshots_due(batch: list[Committed]) -> list[Conference]:
    """The latest state of each conference in the batch that is worth a snapshot.

    Snapshots only shorten loading (newer events are folded over them), so one now and then suffices: at
    creation and end (the timers list live conferences from snapshots) and every SNAPSHOT_EVERY versions.
    """
    due: dict[tuple[str, str], Conference] = {}
    for state, _ in batch:
        if state is not None and (state.version == 0 or state.ended or state.version % SNAPSHOT_EVERY == 0):
            due[(state.organization_id, state.id)] = state
    return list(due.values())
