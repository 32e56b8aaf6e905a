"""The shared outbox against a real nats-server (JetStream) and a real SQLite store.

`Ledger` is the smallest `OutboxStore`: one document per commit, its effects, a `pending` flag. The
services' own stores (the conference's event log, the snapshot records) are tested in their services.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import nats
import pytest
from nats.aio.client import Client
from parley_common.messaging import subjects
from parley_common.messaging.events import publish_event
from parley_common.messaging.streams import SNAPSHOT_STREAM, STREAMS, ensure_streams
from parley_common.outbox import (
    DeleteObject,
    Outbox,
    Owed,
    Publisher,
    PublishEvent,
    each,
    stream_of,
)
from parley_common.processes import NatsServer
from parley_common.storage import Collection, SqliteStore
from prometheus_client import REGISTRY

SHORT_WINDOW = 1.0
Effect = PublishEvent | DeleteObject
_ids = itertools.count()


class Ledger:
    """An `OutboxStore` over one collection: what each commit owes, until recorded done."""

    def __init__(self, collection: Collection) -> None:
        self._collection = collection
        self.done_calls: list[int] = []

    @property
    def name(self) -> str:
        return "ledger"

    async def commit(self, effects: Sequence[Effect], committed_at: datetime | None = None) -> Owed:
        owed = Owed(
            store=self.name,
            key=f"commit-{next(_ids)}",
            committed_at=committed_at or datetime.now(UTC),
            effects=tuple(effects),
        )
        await self._collection.insert(
            {
                "_id": owed.key,
                "pending": True,
                "owed": msgspec.json.decode(msgspec.json.encode(owed)),
            }
        )
        return owed

    async def owed(self, limit: int) -> list[Owed]:
        docs = await self._collection.find({"pending": True}, sort=[("_id", 1)], limit=limit)
        # Effects decode to their kinds through the tagged union (as each service's store does).
        return [
            msgspec.structs.replace(
                msgspec.convert(doc["owed"], Owed),
                effects=tuple(msgspec.convert(doc["owed"]["effects"], list[Effect])),
            )
            for doc in docs
        ]

    async def done(self, done: Sequence[Owed]) -> None:
        self.done_calls.append(len(done))
        await self._collection.update_many({"_id": {"$in": [o.key for o in done]}}, {"pending": False})


def event(n: int) -> PublishEvent:
    event_id = f"ev-{next(_ids)}"
    return PublishEvent(
        subject=subjects.snapshot_event("OutboxTestEvent"),
        msg_id=event_id,
        event={"id": event_id, "n": n, "timestamp": datetime.now(UTC).isoformat()},
    )


@pytest.fixture
async def nc(nats_server: NatsServer) -> AsyncIterator[Client]:
    connection = await nats.connect(nats_server.url)
    await ensure_streams(
        connection.jetstream(), tuple(replace(s, duplicate_window=SHORT_WINDOW) for s in STREAMS)
    )
    yield connection
    await connection.close()


@pytest.fixture
async def ledger(tmp_path: Path) -> AsyncIterator[Ledger]:
    store = SqliteStore(str(tmp_path / "outbox.sqlite3"))
    await store.start()
    yield Ledger(await store.collection("ledger"))
    await store.close()


async def stored(nc: Client, ids: set[str]) -> list[str]:
    """The ids among `ids` the snapshot stream stores, in stream order (read without a consumer)."""
    js = nc.jetstream()
    info = await js.stream_info(SNAPSHOT_STREAM)
    found = []
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        msg = await js.get_msg(SNAPSHOT_STREAM, seq)
        event_id = msgspec.json.decode(msg.data or b"{}").get("id")
        if event_id in ids:
            found.append(event_id)
    return found


class Objects:
    """A stand-in object store for `DeleteObject`: records deletions; while `deleted` is None it is away."""

    def __init__(self, deleted: list[str] | None) -> None:
        self.deleted = deleted

    async def delete(self, effect: DeleteObject) -> None:
        if self.deleted is None:
            raise RuntimeError("object store away")
        self.deleted.append(effect.object_name)


def owed_effects() -> float:
    return REGISTRY.get_sample_value("parley_outbox_owed_effects", {"outbox": "ledger"}) or 0.0


def lag_count() -> float:
    return REGISTRY.get_sample_value("parley_outbox_lag_seconds_count", {"outbox": "ledger"}) or 0.0


def outbox(nc: Client, ledger: Ledger, objects: Objects, **options: Any) -> Outbox:
    return Outbox(
        [ledger],
        {PublishEvent: Publisher(nc.jetstream(), attempts=2), DeleteObject: each(objects.delete)},
        **options,
    )


async def test_live_relay_publishes_in_commit_order_and_records_done_in_batches(
    nc: Client, ledger: Ledger
) -> None:
    deleted: list[str] = []
    box = outbox(nc, ledger, Objects(deleted), flush_interval=0.2)
    relay = asyncio.create_task(box.run())
    commits = [await ledger.commit([event(n)]) for n in range(50)]
    last = await ledger.commit([event(50), DeleteObject(object_name="old.jpg")])
    for owed in [*commits, last]:
        box.committed(owed)
    assert await box.carried_out(last, timeout=5)
    await asyncio.wait_for(box.drain(), 5)
    relay.cancel()

    ids = [o.effects[0].msg_id for o in [*commits, last]]
    assert await stored(nc, set(ids)) == ids
    assert deleted == ["old.jpg"]
    assert await ledger.owed(100) == []
    assert len(ledger.done_calls) < 51  # bookkeeping batched, not one write per commit


async def test_recovery_after_the_duplicate_window_publishes_each_event_once(
    nc: Client, ledger: Ledger
) -> None:
    js = nc.jetstream()
    first, second = event(1), event(2)
    await ledger.commit([first])
    await ledger.commit([second])
    # The first was published, then the process died before recording it; the restart comes after the
    # stream forgot the dedup id.
    await publish_event(js, first.subject, first.event, msg_id=first.msg_id)
    await asyncio.sleep(SHORT_WINDOW + 0.5)

    assert await outbox(nc, ledger, Objects([])).recover() == 2
    assert await stored(nc, {first.msg_id, second.msg_id}) == [first.msg_id, second.msg_id]
    assert await ledger.owed(100) == []


async def test_a_failed_effect_stays_owed_and_is_recovered_once_the_failure_is_over(
    nc: Client, ledger: Ledger
) -> None:
    # No sweep: only this process's own failure makes the periodic recovery run.
    objects = Objects(None)
    box = outbox(nc, ledger, objects, flush_interval=0.05, recovery_interval=0.1, sweep=False)
    relay = asyncio.create_task(box.run())
    owed_before, lag_before = owed_effects(), lag_count()
    owed = await ledger.commit([event(1), DeleteObject(object_name="gone.jpg")])
    box.committed(owed)
    assert await box.carried_out(owed, timeout=5) is False
    assert [o.key for o in await ledger.owed(100)] == [owed.key]
    # The metrics say so: two effects owed, nothing carried out.
    assert owed_effects() - owed_before == 2
    assert lag_count() == lag_before

    deleted: list[str] = []
    objects.deleted = deleted  # the object store is back
    # Recovery leaves what was committed a moment ago (another replica's relay may be on it)...
    await asyncio.sleep(0.5)
    assert deleted == []
    # ...and carries out what has been owed for a while, once.
    await ledger.commit([DeleteObject(object_name="old.jpg")], datetime.now(UTC) - timedelta(minutes=1))
    for _ in range(50):
        if "old.jpg" in deleted:
            break
        await asyncio.sleep(0.1)
    relay.cancel()
    assert deleted == ["old.jpg"]
    assert await box.recover() == 1  # the failed commit, once old enough for nobody else to hold it
    assert deleted == ["old.jpg", "gone.jpg"]
    assert await ledger.owed(100) == []
    assert owed_effects() == owed_before  # owed no more
    assert lag_count() == lag_before + 2  # old.jpg and the failed commit, with their commit-to-done lag
    assert await stored(nc, {owed.effects[0].msg_id}) == [owed.effects[0].msg_id]


async def test_without_sweep_and_without_failure_recovery_runs_only_when_asked(
    nc: Client, ledger: Ledger
) -> None:
    deleted: list[str] = []
    box = outbox(nc, ledger, Objects(deleted), recovery_interval=0.1, sweep=False)
    relay = asyncio.create_task(box.run())
    await ledger.commit([DeleteObject(object_name="left.jpg")], datetime.now(UTC) - timedelta(minutes=1))
    await asyncio.sleep(0.5)
    relay.cancel()
    assert deleted == []  # left by a replica that died: recovered when it restarts
    assert await box.recover() == 1
    assert deleted == ["left.jpg"]


async def test_recovery_leaves_what_the_live_relay_holds(nc: Client, ledger: Ledger) -> None:
    deleted: list[str] = []
    box = outbox(nc, ledger, Objects(deleted))
    owed = await ledger.commit([DeleteObject(object_name="in-flight.jpg")])
    box.committed(owed)  # queued, the relay not running yet
    assert await box.recover() == 0
    assert deleted == []


def test_a_publish_without_a_stream_is_routed_by_its_subject() -> None:
    assert stream_of(subjects.snapshot_event("SnapshotRequestedEvent")) == SNAPSHOT_STREAM
    with pytest.raises(ValueError, match="no stream stores subject nowhere"):
        stream_of("nowhere.at.all")
