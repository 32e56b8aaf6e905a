"""The commit log (`parley_common.commits`) on a real SQLite store, with the real `Outbox` carrying out
what its commits owe.

A crash is a storage write that fails at a chosen point (`Crashing` wraps the real collection and raises
`StorageUnavailable` on the named method): the commit document is then left as a dead process leaves it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import msgspec
import pytest
from parley_common import commits
from parley_common.commits import ChangedConcurrently, CommitLog, Delete, DeleteWhere, Put
from parley_common.errors import Busy
from parley_common.outbox import Outbox, each
from parley_common.storage import Collection, SqliteStore, StorageUnavailable


class Note(msgspec.Struct, frozen=True, tag="note"):
    text: str


class Crashing:
    """A real collection whose `method` fails while `crash` is set (the process dying at that write)."""

    def __init__(self, inner: Collection, method: str) -> None:
        self._inner = inner
        self._method = method
        self.name = inner.name
        self.crash = True

    def __getattr__(self, attribute: str) -> Any:
        if attribute == self._method and self.crash:

            async def crashed(*args: Any, **kwargs: Any) -> Any:
                raise StorageUnavailable("the process died here")

            return crashed
        return getattr(self._inner, attribute)


class World:
    def __init__(self, store: SqliteStore) -> None:
        self.store = store
        self.carried_out: list[str] = []

    async def collection(self, name: str) -> Collection:
        return await self.store.collection(name)

    async def log(self, commits_collection: Any = None, *targets: Any) -> CommitLog:
        log = CommitLog(commits_collection or await self.collection("commits"), Note)
        log.add_targets(*targets)
        return log

    def outbox(self, log: CommitLog) -> Outbox:
        async def carry_out(note: Note) -> None:
            self.carried_out.append(note.text)

        return Outbox([log], {Note: each(carry_out)})


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    store = SqliteStore(str(tmp_path / "commits.sqlite3"))
    await store.start()
    yield World(store)
    await store.close()


@pytest.fixture
def no_grace(monkeypatch: pytest.MonkeyPatch) -> None:
    """Recovery takes unapplied commits at once (rather than after `APPLY_GRACE`)."""
    monkeypatch.setattr(commits, "APPLY_GRACE", timedelta(0))


async def test_a_commit_applies_its_writes_and_owes_its_effects(world: World) -> None:
    docs = await world.collection("docs")
    await docs.insert({"_id": "old", "group": "g"})
    log = await world.log(None, docs)
    owed = await log.commit(
        [Put("docs", {"_id": "a", "n": 1}), DeleteWhere("docs", {"group": "g"})], [Note("one")]
    )
    assert owed.store == "commits" and owed.effects == (Note("one"),)
    assert await docs.get("a") == {"_id": "a", "n": 1} and await docs.get("old") is None
    outbox = world.outbox(log)
    assert await outbox.recover() == 1
    assert world.carried_out == ["one"]
    assert await outbox.recover() == 0 and world.carried_out == ["one"]


async def test_a_crash_between_insert_and_apply_is_recovered_once(world: World, no_grace: None) -> None:
    docs = await world.collection("docs")
    await docs.insert({"_id": "gone", "n": 0})
    crashing = Crashing(docs, "replace")
    log = await world.log(None, crashing)
    with pytest.raises(StorageUnavailable):
        await log.commit([Put("docs", {"_id": "a", "n": 1}), Delete("docs", "gone")], [Note("a written")])
    assert await docs.get("a") is None and await docs.get("gone") is not None  # nothing applied
    crashing.crash = False  # the restarted process
    outbox = world.outbox(log)
    assert await outbox.recover() == 1
    assert await docs.get("a") == {"_id": "a", "n": 1} and await docs.get("gone") is None
    assert world.carried_out == ["a written"]
    assert await outbox.recover() == 0 and world.carried_out == ["a written"]


async def test_recovery_waits_out_the_apply_grace(world: World) -> None:
    docs = await world.collection("docs")
    crashing = Crashing(docs, "replace")
    log = await world.log(None, crashing)
    with pytest.raises(StorageUnavailable):
        await log.commit([Put("docs", {"_id": "a"})], [Note("a")])
    crashing.crash = False
    # Committed just now: its own command may still be applying it.
    assert await log.owed(10) == [] and await docs.get("a") is None


async def test_reapplying_a_landed_commit_is_idempotent(world: World, no_grace: None) -> None:
    docs, records = await world.collection("docs"), await world.collection("records")
    await docs.insert({"_id": "x", "group": "g"})
    commits_collection = Crashing(await world.collection("commits"), "update")  # dies before `applied`
    log = await world.log(commits_collection, docs, records)
    with pytest.raises(StorageUnavailable):
        await log.commit(
            [
                Put("docs", {"_id": "a", "n": 1}),
                DeleteWhere("docs", {"group": "g"}),
                Put("records", {"_id": "r", "version": 1}, over_version=0),
            ],
            [Note("landed")],
        )
    landed = await records.get("r")
    assert landed is not None and landed["version"] == 1  # every write landed; not marked applied
    commits_collection.crash = False
    outbox = world.outbox(log)
    assert await outbox.recover() == 1
    # The guarded put recognised its own write: not taken for a lost race, effects carried out once.
    assert world.carried_out == ["landed"]
    assert await records.get("r") == landed and await docs.get("a") == {"_id": "a", "n": 1}


async def test_a_guarded_put_writes_only_over_the_version_it_was_decided_on(world: World) -> None:
    records = await world.collection("records")
    log = await world.log(None, records)
    await log.commit([Put("records", {"_id": "r", "version": 1, "v": "first"}, over_version=0)])
    with pytest.raises(ChangedConcurrently) as refused:
        await log.commit([Put("records", {"_id": "r", "version": 1, "v": "also first"}, over_version=0)])
    assert isinstance(refused.value, Busy)
    await log.commit([Put("records", {"_id": "r", "version": 2, "v": "second"}, over_version=1)])
    with pytest.raises(ChangedConcurrently):  # decided on version 1, stored is 2
        await log.commit(
            [Put("records", {"_id": "r", "version": 2, "v": "stale"}, over_version=1)], [Note("no")]
        )
    stored = await records.get("r")
    assert stored is not None and stored["v"] == "second"
    outbox = world.outbox(log)
    await outbox.recover()
    assert world.carried_out == []  # the refused commits owe nothing and left no document
    assert await (await world.collection("commits")).count() == 0


async def test_a_lost_guarded_commit_left_by_a_crash_owes_nothing(world: World, no_grace: None) -> None:
    records = await world.collection("records")
    crashing = Crashing(records, "replace")
    log = await world.log(None, crashing)
    await log.commit([Put("records", {"_id": "r", "version": 1}, over_version=0)], [Note("created")])
    with pytest.raises(StorageUnavailable):  # decided on version 1; dies before writing
        await log.commit(
            [Put("records", {"_id": "r", "version": 2, "v": "lost"}, over_version=1)], [Note("lost")]
        )
    crashing.crash = False
    # Another writer moves the record on meanwhile.
    await log.commit([Put("records", {"_id": "r", "version": 2, "v": "won"}, over_version=1)], [Note("won")])
    outbox = world.outbox(log)
    await outbox.recover()
    assert world.carried_out == ["created", "won"]
    stored = await records.get("r")
    assert stored is not None and stored["v"] == "won"


async def test_a_landed_guarded_commit_overwritten_before_recovery_still_owes(
    world: World, no_grace: None
) -> None:
    records = await world.collection("records")
    commits_collection = Crashing(await world.collection("commits"), "update")
    log = await world.log(commits_collection, records)
    with pytest.raises(StorageUnavailable):  # its write lands, the process dies before marking it applied
        await log.commit([Put("records", {"_id": "r", "version": 1}, over_version=0)], [Note("created")])
    commits_collection.crash = False
    # The next writer reads version 1 and overwrites it before any recovery ran.
    await log.commit([Put("records", {"_id": "r", "version": 2}, over_version=1)], [Note("changed")])
    outbox = world.outbox(log)
    await outbox.recover()
    assert world.carried_out == ["created", "changed"]


async def test_a_commit_holds_one_guarded_put_on_its_own_targets(world: World) -> None:
    records = await world.collection("records")
    log = await world.log(None, records)
    with pytest.raises(ValueError, match="at most one guarded put"):
        await log.commit(
            [
                Put("records", {"_id": "a", "version": 1}, over_version=0),
                Put("records", {"_id": "b", "version": 1}, over_version=0),
            ]
        )
    with pytest.raises(ValueError, match="not a target"):
        await log.commit([Put("elsewhere", {"_id": "a"})])


async def test_watchers_hear_each_write_once_landed_a_recoverys_too(world: World, no_grace: None) -> None:
    """A cache over the targets (the chat service's rooms) is told of every write after it lands, also of
    the writes a recovery lands for a commit its process left half-applied."""
    docs = await world.collection("docs")
    crashing = Crashing(docs, "delete_many")
    log = await world.log(None, crashing)
    heard: list[Any] = []
    log.watch(heard.append)
    operations = [Put("docs", {"_id": "a"}), Delete("docs", "b"), DeleteWhere("docs", {"group": "g"})]
    with pytest.raises(StorageUnavailable):
        await log.commit(operations, [Note("n")])
    assert heard == operations[:2]  # the third never landed: not heard
    crashing.crash = False
    heard.clear()
    assert await world.outbox(log).recover() == 1
    assert heard == operations and world.carried_out == ["n"]
