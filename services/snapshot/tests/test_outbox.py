"""What a commit owes survives a crash: real nats-server (JetStream, object store) and a real SQLite store."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import nats
import pytest
from nats.aio.client import Client
from parley_common.contracts import snapshot as api
from parley_common.messaging import subjects
from parley_common.messaging.codec import encode
from parley_common.messaging.events import publish_event
from parley_common.messaging.push import NatsEndpointMessenger
from parley_common.messaging.streams import STREAMS, ensure_streams
from parley_common.outbox import PublishEvent
from parley_common.processes import NatsServer
from parley_common.sealing import Sealer
from parley_common.storage import SqliteStore
from parley_snapshot import domain
from parley_snapshot.adapters.images import ImageStore
from parley_snapshot.adapters.outbox import effects_of, snapshot_outbox
from parley_snapshot.adapters.repository import Conflict, Records, open_records
from parley_snapshot.domain import Actor, EventContext, StoredImage

_ids = itertools.count()
ALICE = Actor("org", "alice", "alice-ep")
BOB = Actor("org", "bob", "bob-ep")
SHORT_WINDOW = 1.0


@pytest.fixture
async def nc(nats_server: NatsServer) -> AsyncIterator[Client]:
    connection = await nats.connect(nats_server.url)
    await ensure_streams(connection.jetstream())
    yield connection
    await connection.close()


@pytest.fixture
async def short_window(nats_server: NatsServer) -> AsyncIterator[Client]:
    """Like `nc`, with the event streams' duplicate window far shorter than production's 120 s."""
    connection = await nats.connect(nats_server.url)
    await ensure_streams(
        connection.jetstream(), tuple(replace(s, duplicate_window=SHORT_WINDOW) for s in STREAMS)
    )
    yield connection
    await ensure_streams(connection.jetstream())  # back to production settings for the other tests
    await connection.close()


@pytest.fixture
async def snapshots(tmp_path: Path) -> AsyncIterator[Records[api.Snapshot]]:
    store = SqliteStore(str(tmp_path / "snapshot.sqlite3"))
    await store.start()
    records, _ = await open_records(store)
    yield records
    await store.close()


def ctx() -> EventContext:
    return EventContext(event_ids=(f"event-{next(_ids)}", f"event-{next(_ids)}"), now=datetime.now(UTC))


def requested(snapshot_id: str) -> domain.Decision[api.Snapshot]:
    body = api.SnapshotRequestWebCommand(target_user_endpoint_id="bob-ep", user_endpoint_id="alice-ep")
    return domain.decide_request(
        snapshot_id=snapshot_id, requester=ALICE, body=body, target_user_id="bob", ctx=ctx()
    )


async def stream_messages(nc: Client, stream: str, subject: str) -> list[dict[str, Any]]:
    """Every message stored on `subject` of `stream`, read without a consumer."""
    js = nc.jetstream()
    info = await js.stream_info(stream)
    found = []
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        try:
            msg = await js.get_msg(stream, seq)
        except nats.js.errors.NotFoundError:
            continue
        if msg.subject == subject:
            found.append(msgspec.json.decode(msg.data or b"{}"))
    return found


async def test_effects_left_by_a_crash_are_carried_out_once_on_recovery(
    nc: Client, snapshots: Records[api.Snapshot]
) -> None:
    js = nc.jetstream()
    images = await ImageStore.open(js)
    outbox = snapshot_outbox(js, NatsEndpointMessenger(nc, js, Sealer.from_env()), images, [snapshots])
    snapshot_id = f"s-{next(_ids)}"
    decision = requested(snapshot_id)
    # Committed, then the process died before carrying out the effects.
    await snapshots.insert(decision.state, effects_of(decision))
    assert [p.key for p in await snapshots.owed()] == [snapshot_id]

    # Recovery, twice (two replicas, or a recovery racing a late settle): one event, one push.
    assert await outbox.recover() == 1
    await snapshots.replace(decision.state, effects_of(decision), expected_version=0)  # owed again
    assert await outbox.recover() == 1
    assert await snapshots.owed() == []

    (event_id,) = {e.id for e in decision.events}
    published = await stream_messages(
        nc, "PARLEY_SNAPSHOT", subjects.snapshot_event("SnapshotRequestedEvent")
    )
    assert [e["snapshotId"] for e in published if e["id"] == event_id] == [snapshot_id]
    pushed = await stream_messages(nc, "PARLEY_PUSH", subjects.push_durable("org", "bob-ep"))
    assert [p["eventId"] for p in pushed if p["event"]["snapshotId"] == snapshot_id] == [event_id]


async def test_recovery_after_the_duplicate_window_publishes_each_event_once(
    short_window: Client, snapshots: Records[api.Snapshot]
) -> None:
    js = short_window.jetstream()
    images = await ImageStore.open(js)
    outbox = snapshot_outbox(
        js, NatsEndpointMessenger(short_window, js, Sealer.from_env()), images, [snapshots]
    )
    snapshot_id = f"s-{next(_ids)}"
    decision = requested(snapshot_id)
    await snapshots.insert(decision.state, effects_of(decision))
    # The event was published, then the process died before marking the record settled; it comes back
    # after the stream has forgotten the dedup ids.
    for effect in effects_of(decision):
        if isinstance(effect, PublishEvent):
            await publish_event(js, effect.subject, encode(effect.event), msg_id=effect.msg_id)
    await asyncio.sleep(SHORT_WINDOW + 0.5)

    assert await outbox.recover() == 1
    assert await snapshots.owed() == []

    (event_id,) = {e.id for e in decision.events}
    published = await stream_messages(
        short_window, "PARLEY_SNAPSHOT", subjects.snapshot_event("SnapshotRequestedEvent")
    )
    assert [e["snapshotId"] for e in published if e["id"] == event_id] == [snapshot_id]


async def test_a_discard_owes_the_deletion_of_its_image(nc: Client, snapshots: Records[api.Snapshot]) -> None:
    js = nc.jetstream()
    images = await ImageStore.open(js)
    outbox = snapshot_outbox(js, NatsEndpointMessenger(nc, js, Sealer.from_env()), images, [snapshots])
    snapshot_id = f"s-{next(_ids)}"
    name = domain.object_name(None, snapshot_id, "jpg")
    await images.put(name, b"\xff\xd8\xff picture")
    image = StoredImage(object_name=name, mime_type="image/jpeg", suffix="jpg")
    uploaded = domain.decide_acquire(requested(snapshot_id).state, BOB, image, None, ctx())
    await snapshots.insert(uploaded.state, [])
    discarded = domain.decide_discard(uploaded.state, ALICE, ctx())
    await snapshots.replace(discarded.state, effects_of(discarded), expected_version=uploaded.state.version)

    assert await images.get(name) is not None
    assert await outbox.recover() == 1
    assert await images.get(name) is None
    assert await outbox.recover() == 0  # nothing owed any more


async def test_a_stale_write_is_refused(snapshots: Records[api.Snapshot]) -> None:
    decision = requested(f"s-{next(_ids)}")
    await snapshots.insert(decision.state, [])
    with pytest.raises(Conflict):
        await snapshots.insert(decision.state, [])
    first = domain.decide_discard(decision.state, ALICE, ctx())
    await snapshots.replace(first.state, [], expected_version=0)
    with pytest.raises(Conflict):  # decided on version 0, which is gone
        await snapshots.replace(first.state, [], expected_version=0)
