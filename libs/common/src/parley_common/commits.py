"""A commit log: several writes and the effects they owe, committed atomically on a port with no transactions.

A commit is ONE document of the commits collection holding every write the decision makes, as idempotent
operations (put a document, delete one, delete those matching a filter), and the effects it owes (events to
publish, ...). Its insert is the commit point. The writes are applied right after and the document marked
`applied`; the outbox carries the effects out and deletes it (`CommitLog` is its `OutboxStore`). A process
dying in between leaves the document: recovery (`owed`) applies its writes again (idempotent) once it is
older than `APPLY_GRACE`, then carries out its effects. So an acknowledged command never loses a write, an
event or an effect; a reader may see a commit half-applied for the few milliseconds it takes.

Optimistic concurrency: a `Put` may be guarded (`over_version`): it writes only over that stored `version`
of the document (0: the document must not exist yet). A commit holds at most one guarded put, applied
first; when its guard fails the commit is abandoned (its document deleted, nothing applied, nothing owed)
and `commit` raises `ChangedConcurrently` (a `Busy`): the caller decides again on the newer state. The
guarded document carries the id of the commit that wrote it (`commitId`), so a recovery knows whether an
unapplied commit's put landed (its id is there) or lost (another commit's is; whoever overwrites a
guarded document first marks the previous writer's commit applied, so a landed commit never looks lost).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec

from parley_common.clock import utcnow
from parley_common.errors import Busy
from parley_common.outbox import Owed
from parley_common.storage import Collection, DocumentStore, DuplicateKeyError

# A commit not yet marked applied this recently may still be applying in its process: recovery waits.
APPLY_GRACE = timedelta(seconds=5)
# On a guarded document: the commit that wrote it.
COMMIT_ID = "commitId"


class Put(msgspec.Struct, frozen=True, tag="put"):
    """Write `doc` (by its `_id`); with `over_version`, only over that stored `version` (0: none stored)."""

    collection: str
    doc: dict[str, Any]
    over_version: int | None = None


class Delete(msgspec.Struct, frozen=True, tag="delete"):
    collection: str
    id: str


class DeleteWhere(msgspec.Struct, frozen=True, tag="deleteWhere"):
    collection: str
    where: dict[str, Any]


Operation = Put | Delete | DeleteWhere


class ChangedConcurrently(Busy):
    """A guarded put's document changed since it was read: decide again."""

    def __init__(self, message: str = "changed concurrently, try again") -> None:
        super().__init__(message)


def as_document(value: object) -> Any:
    """Plain JSON values (lists, not tuples; ISO strings, not datetimes) as the storage port requires."""
    return msgspec.json.decode(msgspec.json.encode(value))


def _ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)


class CommitLog:
    """Commits over `targets` recorded in `commits`; the `OutboxStore` of the effects they owe.

    `effect_type`: the (tagged union of) effect Structs this log's commits owe, to read them back.
    """

    def __init__(self, commits: Collection, effect_type: Any, targets: Iterable[Collection] = ()) -> None:
        self._commits = commits
        self._last_stamp = 0
        self._targets: dict[str, Collection] = {}
        self._watchers: list[Callable[[Operation], None]] = []
        self._stored = msgspec.defstruct(
            "StoredCommit", [("operations", list[Operation]), ("effects", list[effect_type])], frozen=True
        )
        self.add_targets(*targets)

    @classmethod
    async def open(cls, store: DocumentStore, name: str, effect_type: Any) -> CommitLog:
        return cls(await store.collection(name), effect_type)

    @property
    def name(self) -> str:
        return self._commits.name

    def add_targets(self, *collections: Collection) -> None:
        """The collections this log's operations may write (each repository adds its own)."""
        self._targets.update((c.name, c) for c in collections)

    def watch(self, wrote: Callable[[Operation], None]) -> None:
        """Call `wrote(op)` after each write lands, a commit's or a recovery's: a cache over the targets
        (the chat room cache) drops what the write touched."""
        self._watchers.append(wrote)

    async def commit(self, operations: Sequence[Operation], effects: Sequence[Any] = ()) -> Owed:
        """Write `operations` and owe `effects` atomically (one commit document), then apply the writes.

        Returns what the commit owes, for the outbox (`Outbox.committed`). `ChangedConcurrently` when a
        guarded put's document changed since it was read (nothing written, nothing owed).
        """
        ops = _guard_first(operations)
        for op in ops:
            if op.collection not in self._targets:
                raise ValueError(f"{op.collection} is not a target of the commit log {self.name}")
        now = utcnow()
        commit_id = f"{self._stamp():020d}-{uuid.uuid4().hex}"
        stored = self._stored(operations=ops, effects=list(effects))
        await self._commits.insert(
            {"_id": commit_id, "committedMs": _ms(now), "applied": False, **as_document(stored)}
        )
        if not await self._apply(commit_id, ops):
            raise ChangedConcurrently()
        return Owed(store=self.name, key=commit_id, committed_at=now, effects=tuple(effects))

    def _stamp(self) -> int:
        """Microseconds since the epoch, strictly increasing in this process: commit ids sort in commit
        order (`utcnow()` keeps milliseconds only, and two commits often share one)."""
        stamp = max(time.time_ns() // 1000, self._last_stamp + 1)
        self._last_stamp = stamp
        return stamp

    async def _apply(self, commit_id: str, operations: Sequence[Operation]) -> bool:
        """Apply a commit's writes (again: idempotent) and mark it applied; False: its guard failed, the
        commit is abandoned (deleted)."""
        for op in operations:
            collection = self._targets[op.collection]
            if isinstance(op, Put):
                if op.over_version is not None:
                    if not await self._guarded_put(collection, op, commit_id):
                        await self._commits.delete(commit_id)
                        return False
                else:
                    await collection.replace(op.doc, upsert=True)
            elif isinstance(op, Delete):
                await collection.delete(op.id)
            else:
                await collection.delete_many(op.where)
            for wrote in self._watchers:
                wrote(op)
        await self._commits.update(commit_id, {"applied": True})
        return True

    async def _guarded_put(self, collection: Collection, op: Put, commit_id: str) -> bool:
        doc = {**op.doc, COMMIT_ID: commit_id}
        stored = await collection.get(doc["_id"])
        if stored is not None and stored.get(COMMIT_ID) == commit_id:
            return True  # landed before (a recovery applying it again)
        if stored is None:
            if op.over_version != 0:
                return False
            try:
                await collection.insert(doc)
            except DuplicateKeyError:
                return False
            return True
        if stored.get("version") != op.over_version:
            return False
        previous = stored.get(COMMIT_ID)
        if previous is not None:
            # Its put landed (we read it): recorded before it is overwritten, so its recovery never takes
            # it for a lost one (it still owes its effects).
            await self._commits.update(previous, {"applied": True})
        return await collection.replace(doc, where={"version": op.over_version, COMMIT_ID: previous})

    # ---------------------------------------------------------------- OutboxStore

    async def land_unapplied(self) -> int:
        """Before serving, in a single-writer service: land the writes of commits a stopped process left
        half-applied (before any new command, so an old commit's writes never land over a newer one's)."""
        docs = await self._commits.find({"applied": False}, sort=[("_id", 1)])
        for doc in docs:
            await self._apply(doc["_id"], self._read(doc).operations)
        return len(docs)

    async def owed(self, limit: int) -> list[Owed]:
        docs = await self._commits.find(None, sort=[("_id", 1)], limit=limit)
        owed: list[Owed] = []
        horizon = utcnow() - APPLY_GRACE
        for doc in docs:
            stored = self._read(doc)
            committed_at = datetime.fromtimestamp(doc["committedMs"] / 1000, UTC)
            if not doc.get("applied"):
                if committed_at > horizon:
                    continue  # its command may still be applying it
                # Its command died or failed while applying it: land the writes (idempotent).
                if not await self._apply(doc["_id"], stored.operations):
                    continue  # lost its guard: never acknowledged, owes nothing
            owed.append(
                Owed(
                    store=self.name, key=doc["_id"], committed_at=committed_at, effects=tuple(stored.effects)
                )
            )
        return owed

    async def done(self, done: Sequence[Owed]) -> None:
        for owed in done:
            await self._commits.delete(owed.key)

    def _read(self, doc: Mapping[str, Any]) -> Any:
        return msgspec.convert({"operations": doc["operations"], "effects": doc["effects"]}, self._stored)


def _guard_first(operations: Sequence[Operation]) -> list[Operation]:
    """The guarded put first (at most one: a second could fail after the first landed)."""
    guarded = [op for op in operations if isinstance(op, Put) and op.over_version is not None]
    if len(guarded) > 1:
        raise ValueError("a commit holds at most one guarded put")
    return [*guarded, *(op for op in operations if op not in guarded)]
