"""Conferences persisted as an event log, with snapshots as a cache.

The commit point of every state change is the insert of its event into `conference_events`, whose unique
index on (organization, conference, seq) is the optimistic-concurrency check: two commands decided on the
same version both try to insert the same seq, and exactly one succeeds. The loser gets
`ConcurrencyConflict`, reloads and decides again. `seq` is the version *after* the event (creation is 0).

The event log is also the conference's outbox store (`parley_common.outbox.OutboxStore`): an event owes
its own publication until it is marked `published`, so nothing is written twice. Snapshots (`conferences`)
are written when the outbox records a batch done; they may lag, so loading a conference folds any newer
events over the snapshot.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import msgspec
from parley_common.contracts.conference import (
    AnyConferenceEvent,
    ConferenceCreatedEvent,
    ConferenceEndedEvent,
)
from parley_common.jsonlimits import INT64_MAX
from parley_common.messaging import subjects
from parley_common.messaging.streams import CONFERENCE_STREAM
from parley_common.outbox import Owed, PublishEvent
from parley_common.storage import DocumentStore, DuplicateKeyError, Index
from parley_common.storage.port import Collection

from parley_conference.domain import Conference, create, evolve

CACHE_SIZE = 10_000
# Snapshots only shorten loading (newer events are folded over them), so one now and then suffices.
SNAPSHOT_EVERY = 16
OUTBOX = "conference_events"


class ConcurrencyConflict(Exception):
    """Another writer committed this conference's next version first."""


class ConferenceExists(Exception):
    pass


class EndpointOwnedByAnotherUser(Exception):
    pass


def key(*parts: str) -> str:
    """A document id from several client-chosen ids, unambiguous whatever characters they contain."""
    return msgspec.json.encode(parts).decode()


def as_document(value: object) -> Any:
    """Plain JSON values (lists, not tuples; ISO strings, not datetimes) as the storage port requires."""
    return msgspec.json.decode(msgspec.json.encode(value))


def seq_of(event: AnyConferenceEvent) -> int:
    return 0 if event.conference_version is None else event.conference_version + 1


def event_from_doc(doc: dict[str, Any]) -> AnyConferenceEvent:
    event: AnyConferenceEvent = msgspec.convert(doc["event"], AnyConferenceEvent)
    return event


class ConferenceRepository:
    def __init__(self, conferences: Collection, events: Collection, endpoints: Collection) -> None:
        self._conferences = conferences
        self._events = events
        self._endpoints = endpoints
        self._cache: OrderedDict[str, Conference] = OrderedDict()
        self._locks: dict[str, asyncio.Lock] = {}
        # Endpoint -> user never changes once recorded, so it can be cached without expiry checks.
        self._owners: OrderedDict[str, str] = OrderedDict()

    @classmethod
    async def open(cls, store: DocumentStore) -> ConferenceRepository:
        return cls(
            conferences=await store.collection("conferences", [Index(("ended",))]),
            events=await store.collection(
                "conference_events",
                [Index(("org", "conference", "seq"), unique=True), Index(("published",))],
            ),
            endpoints=await store.collection("endpoints"),
        )

    # ------------------------------------------------------------ loading

    def lock(self, organization_id: str, conference_id: str) -> asyncio.Lock:
        """Serialises this process's commands on one conference, so they rarely conflict."""
        k = key(organization_id, conference_id)
        lock = self._locks.get(k)
        if lock is None:
            lock = self._locks[k] = asyncio.Lock()
        return lock

    async def get(self, organization_id: str, conference_id: str, *, fresh: bool = True) -> Conference | None:
        """The conference at its latest version.

        With `fresh=False` a cached state is returned without looking for newer events: right for deciding a
        command, since committing it fails with `ConcurrencyConflict` if another writer got there first.
        """
        k = key(organization_id, conference_id)
        state = self._cache.get(k)
        if state is not None and not fresh:
            self._cache.move_to_end(k)
            return state
        if state is None:
            snapshot = await self._conferences.get(k)
            if snapshot is not None:
                state = msgspec.convert(snapshot["state"], Conference)
        newer = await self._events.find(
            {
                "org": organization_id,
                "conference": conference_id,
                "seq": {"$gte": state.version + 1 if state else 0},
            },
            sort=[("seq", 1)],
        )
        for doc in newer:
            state = _fold(state, event_from_doc(doc))
        if state is not None:
            self._remember(k, state)
        return state

    async def events(
        self, organization_id: str, conference_id: str, from_version: int
    ) -> list[AnyConferenceEvent]:
        """Events whose conferenceVersion >= from_version, in order (the creation event has none)."""
        if from_version >= INT64_MAX:
            # `seq` is a 64-bit integer: no event lies beyond, and `from_version + 1` would not fit a filter.
            return []
        docs = await self._events.find(
            {"org": organization_id, "conference": conference_id, "seq": {"$gte": max(from_version, 0) + 1}},
            sort=[("seq", 1)],
        )
        return [event_from_doc(doc) for doc in docs]

    async def live_conference_ids(self) -> list[tuple[str, str]]:
        docs = await self._conferences.find({"ended": False})
        return [(doc["org"], doc["conference"]) for doc in docs]

    async def endpoint_owner(self, organization_id: str, endpoint_id: str) -> str | None:
        k = key(organization_id, endpoint_id)
        owner = self._owners.get(k)
        if owner is None:
            doc = await self._endpoints.get(k)
            if doc is None:
                return None
            owner = str(doc["userId"])
            self._remember_owner(k, owner)
        return owner

    # ------------------------------------------------------------ committing

    async def add(self, event: ConferenceCreatedEvent) -> Conference:
        state = create(event)
        try:
            await self._events.insert(self._event_doc(event))
        except DuplicateKeyError as exc:
            raise ConferenceExists(event.conference_id) from exc
        self._remember(key(event.organization_id, event.conference_id), state)
        return state

    async def append(self, conference: Conference, event: AnyConferenceEvent) -> Conference:
        state = evolve(conference, event)
        k = key(conference.organization_id, conference.id)
        try:
            await self._events.insert(self._event_doc(event))
        except DuplicateKeyError as exc:
            self._cache.pop(k, None)
            raise ConcurrencyConflict(conference.id) from exc
        self._remember(k, state)
        return state

    async def claim_endpoint(self, organization_id: str, endpoint_id: str, user_id: str) -> None:
        """Record that an endpoint belongs to a user; an endpoint never changes hands."""
        k = key(organization_id, endpoint_id)
        owner = self._owners.get(k)
        if owner is not None:
            if owner != user_id:
                raise EndpointOwnedByAnotherUser(endpoint_id)
            return
        try:
            await self._endpoints.insert(
                {"_id": k, "org": organization_id, "endpoint": endpoint_id, "userId": user_id}
            )
        except DuplicateKeyError:
            owner = await self.endpoint_owner(organization_id, endpoint_id)
            if owner != user_id:
                raise EndpointOwnedByAnotherUser(endpoint_id) from None
        self._remember_owner(k, user_id)

    # ------------------------------------------------------------ after the commit (the outbox store)

    @property
    def name(self) -> str:
        return OUTBOX

    async def owed(self, limit: int = 1000) -> list[Owed]:
        """Events committed and not yet marked published, each conference's in order."""
        return [owing(event) for event in await self.unpublished(limit)]

    async def done(self, done: Sequence[Owed]) -> None:
        """Mark the events published, then snapshot the conferences that are due one.

        Due: at creation and end (the timers list live conferences from snapshots) and every SNAPSHOT_EVERY
        versions. The snapshot is the latest committed state (cached), which may be newer than the batch.
        """
        events: list[AnyConferenceEvent] = [owed.effects[0].event for owed in done]
        await self.mark_published(events)
        due: set[tuple[str, str]] = set()
        for event in events:
            seq = seq_of(event)
            if seq % SNAPSHOT_EVERY == 0 or isinstance(event, ConferenceEndedEvent):
                due.add((event.organization_id, event.conference_id))
        for organization_id, conference_id in due:
            state = await self.get(organization_id, conference_id, fresh=False)
            if state is not None:
                await self.save_snapshot(state)

    async def unpublished(self, limit: int = 1000) -> list[AnyConferenceEvent]:
        docs = await self._events.find(
            {"published": False}, sort=[("org", 1), ("conference", 1), ("seq", 1)], limit=limit
        )
        return [event_from_doc(doc) for doc in docs]

    async def mark_published(self, events: Sequence[AnyConferenceEvent]) -> None:
        await self._events.update_many({"_id": {"$in": [event.id for event in events]}}, {"published": True})

    async def save_snapshot(self, state: Conference) -> None:
        doc = {
            "_id": key(state.organization_id, state.id),
            "org": state.organization_id,
            "conference": state.id,
            "version": state.version,
            "ended": state.ended,
            "state": as_document(state),
        }
        await self._conferences.replace(doc, where={"version": {"$lt": state.version}}, upsert=True)

    # ------------------------------------------------------------ helpers

    def forget(self, organization_id: str, conference_id: str) -> None:
        self._cache.pop(key(organization_id, conference_id), None)

    def _remember(self, k: str, state: Conference) -> None:
        self._cache[k] = state
        self._cache.move_to_end(k)
        while len(self._cache) > CACHE_SIZE:
            evicted, _ = self._cache.popitem(last=False)
            lock = self._locks.get(evicted)
            if lock is not None and not lock.locked():
                del self._locks[evicted]

    def _remember_owner(self, k: str, user_id: str) -> None:
        self._owners[k] = user_id
        self._owners.move_to_end(k)
        while len(self._owners) > CACHE_SIZE * 10:
            self._owners.popitem(last=False)

    @staticmethod
    def _event_doc(event: AnyConferenceEvent) -> dict[str, Any]:
        return {
            "_id": event.id,
            "org": event.organization_id,
            "conference": event.conference_id,
            "seq": seq_of(event),
            "published": False,
            "event": as_document(event),
        }


def owing(event: AnyConferenceEvent) -> Owed:
    """What committing `event` owes: its publication on PARLEY_CONFERENCE (the event is its own record)."""
    return Owed(
        store=OUTBOX,
        key=event.id,
        committed_at=event.timestamp,
        effects=(
            PublishEvent(
                subject=subjects.conference_event(type(event).__name__),
                msg_id=event.id,
                event=event,
                stream=CONFERENCE_STREAM,
                committed_at=event.timestamp,
            ),
        ),
    )


def _fold(state: Conference | None, event: AnyConferenceEvent) -> Conference:
    if isinstance(event, ConferenceCreatedEvent):
        return create(event)
    if state is None:
        raise ValueError(f"event log of conference {event.conference_id} does not start with its creation")
    return evolve(state, event)
