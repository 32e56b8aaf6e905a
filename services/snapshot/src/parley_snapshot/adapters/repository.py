"""Snapshots and camera requests in the document store, each with the effects its last commits still owe.

A record is one document: the state, its version (the optimistic-concurrency check: a write names the
version it decided on and fails if another writer got there first) and `effects`, what must happen after
the commit (events to publish, pushes, an image to delete). State and effects are written together, so a
command that was acknowledged cannot lose its event even if the process dies right after the write: each
`Records` is an `OutboxStore` of the shared outbox (`parley_common.outbox`), which carries out whatever is
still `pending` on its next recovery.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, Generic, Protocol, TypeVar

import msgspec
from parley_common.clock import utcnow
from parley_common.contracts.snapshot import Snapshot
from parley_common.outbox import DeleteObject, Owed, PublishEvent, PushToEndpoint
from parley_common.storage import DESCENDING, Collection, DocumentStore, DuplicateKeyError, Index

from parley_snapshot.domain import CameraRequest


class Versioned(Protocol):
    @property
    def id(self) -> str: ...

    @property
    def version(self) -> int: ...

    @property
    def organization_id(self) -> str: ...


T = TypeVar("T", bound=Versioned)


# ---------------------------------------------------------------- effects owed after a commit


# The shared outbox's effect kinds this service stores (tagged, so a record's list decodes to its types).
Effect = PublishEvent | PushToEndpoint | DeleteObject


class Conflict(Exception):
    """Another writer changed the record since it was read."""


def as_document(value: object) -> Any:
    """Plain JSON values (lists, not tuples; ISO strings, not datetimes) as the storage port requires."""
    return msgspec.json.decode(msgspec.json.encode(value))


class Records(Generic[T]):
    """One collection of versioned records of type `state_type`, and the outbox store of their effects."""

    def __init__(
        self,
        collection: Collection,
        state_type: type[T],
        index_fields: Callable[[T], dict[str, Any]] = lambda _: {},
    ) -> None:
        self._collection = collection
        self._type = state_type
        self._index_fields = index_fields
        self._locks: dict[str, _LockEntry] = {}

    @property
    def name(self) -> str:
        return self._collection.name

    def lock(self, record_id: str) -> _RecordLock:
        """Serialises this process's commands on one record, so they rarely conflict."""
        return _RecordLock(self._locks, record_id)

    async def get(self, record_id: str) -> tuple[T, list[Effect]] | None:
        doc = await self._collection.get(record_id)
        if doc is None:
            return None
        return msgspec.convert(doc["state"], self._type), msgspec.convert(doc["effects"], list[Effect])

    async def state(self, record_id: str) -> T | None:
        found = await self.get(record_id)
        return None if found is None else found[0]

    async def find(
        self, where: dict[str, Any], *, sort: Sequence[tuple[str, int]] = (), limit: int | None = None
    ) -> list[T]:
        docs = await self._collection.find(where, sort=sort, limit=limit)
        return [msgspec.convert(doc["state"], self._type) for doc in docs]

    async def insert(self, state: T, effects: list[Effect]) -> None:
        try:
            await self._collection.insert(self._document(state, effects))
        except DuplicateKeyError as exc:
            raise Conflict(state.id) from exc

    async def replace(self, state: T, effects: list[Effect], *, expected_version: int) -> None:
        written = await self._collection.replace(
            self._document(state, effects), where={"version": expected_version}
        )
        if not written:
            raise Conflict(state.id)

    def owing(self, state: T, effects: list[Effect]) -> Owed:
        """What committing `state` with `effects` owes, for the outbox."""
        return Owed(
            store=self.name,
            key=state.id,
            version=state.version,
            committed_at=utcnow(),
            effects=tuple(effects),
        )

    # ------------------------------------------------------------ OutboxStore

    async def owed(self, limit: int = 100) -> list[Owed]:
        docs = await self._collection.find({"pending": True}, limit=limit)
        return [
            Owed(
                store=self.name,
                key=doc["_id"],
                version=doc["version"],
                # Records written before the field existed are old enough to recover.
                committed_at=datetime.fromtimestamp(doc.get("committedMs", 0) / 1000, UTC),
                effects=tuple(msgspec.convert(doc["effects"], list[Effect])),
            )
            for doc in docs
        ]

    async def done(self, done: Sequence[Owed]) -> None:
        for owed in done:
            await self.settle(owed.key, owed.version)

    async def settle(self, record_id: str, version: int) -> None:
        """The effects owed as of `version` are done (unless a newer commit has added its own since)."""
        await self._collection.update(
            record_id, {"effects": [], "pending": False}, where={"version": version}
        )

    def _document(self, state: T, effects: list[Effect]) -> dict[str, Any]:
        return {
            "_id": state.id,
            "org": state.organization_id,
            "version": state.version,
            "pending": bool(effects),
            "committedMs": int(utcnow().timestamp() * 1000),
            "effects": as_document(effects),
            "state": as_document(state),
            **self._index_fields(state),
        }


class _LockEntry:
    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.users = 0


class _RecordLock:
    """A per-record lock that is forgotten once nobody holds or waits for it (the table stays small)."""

    def __init__(self, locks: dict[str, _LockEntry], record_id: str) -> None:
        self._locks = locks
        self._id = record_id

    async def __aenter__(self) -> None:
        entry = self._locks.get(self._id)
        if entry is None:
            entry = self._locks[self._id] = _LockEntry()
        entry.users += 1
        try:
            await entry.lock.acquire()
        except BaseException:  # cancelled while waiting
            self._leave(entry)
            raise

    async def __aexit__(self, *_: object) -> None:
        entry = self._locks[self._id]
        entry.lock.release()
        self._leave(entry)

    def _leave(self, entry: _LockEntry) -> None:
        entry.users -= 1
        if entry.users == 0:
            del self._locks[self._id]


def _snapshot_fields(snapshot: Snapshot) -> dict[str, Any]:
    return {
        "interaction": snapshot.interaction_id,
        # Epoch milliseconds: sorts by time (ISO strings of varying precision would not).
        "createdMs": int(snapshot.created_at.timestamp() * 1000),
    }


async def open_records(store: DocumentStore) -> tuple[Records[Snapshot], Records[CameraRequest]]:
    snapshots = await store.collection(
        "snapshots", [Index(("org", "interaction", "createdMs")), Index(("pending",))]
    )
    camera_requests = await store.collection("snapshot_camera_requests", [Index(("pending",))])
    return (
        Records(snapshots, Snapshot, _snapshot_fields),
        Records(camera_requests, CameraRequest),
    )


NEWEST_FIRST = [("createdMs", DESCENDING)]
