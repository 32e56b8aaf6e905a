"""The conference's event log as the shared outbox's store, after a crash: real nats-server and SQLite."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import nats
import pytest
from nats.aio.client import Client
from parley_common.contracts.conference import (
    AnyConferenceEvent,
    ConferenceCreatedEvent,
    ConferenceJoinedEvent,
)
from parley_common.messaging import subjects
from parley_common.messaging.events import publish_event
from parley_common.messaging.streams import CONFERENCE_STREAM, STREAMS, ensure_streams
from parley_common.processes import NatsServer
from parley_common.storage import SqliteStore
from parley_conference.adapters.outbox import conference_outbox
from parley_conference.adapters.repository import ConferenceRepository

# Far shorter than the 120 s of production, so the test can outlast it.
DUPLICATE_WINDOW = 1.0


@pytest.fixture
async def nc(nats_server: NatsServer) -> AsyncIterator[Client]:
    connection = await nats.connect(nats_server.url)
    await ensure_streams(
        connection.jetstream(), tuple(replace(s, duplicate_window=DUPLICATE_WINDOW) for s in STREAMS)
    )
    yield connection
    await connection.close()


@pytest.fixture
async def repository(tmp_path: Path) -> AsyncIterator[ConferenceRepository]:
    store = SqliteStore(str(tmp_path / "conference.sqlite3"))
    await store.start()
    yield await ConferenceRepository.open(store)
    await store.close()


async def stored_ids(nc: Client, conference_id: str) -> list[str]:
    """The ids of every event of `conference_id` in the stream, in stream order, read without a consumer."""
    js = nc.jetstream()
    info = await js.stream_info(CONFERENCE_STREAM)
    found = []
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        msg = await js.get_msg(CONFERENCE_STREAM, seq)
        event = msgspec.json.decode(msg.data or b"{}")
        if event["conferenceId"] == conference_id:
            found.append(event["id"])
    return found


async def test_recovery_after_the_duplicate_window_relays_each_event_once(
    nc: Client, repository: ConferenceRepository
) -> None:
    js = nc.jetstream()
    created = ConferenceCreatedEvent(
        id="ev-created",
        conference_id="c-1",
        conference_version=None,
        organization_id="org",
        timestamp=datetime.now(UTC),
        mode="ROUTER",
    )
    state = await repository.add(created)
    joined = ConferenceJoinedEvent(
        id="ev-joined",
        conference_id="c-1",
        conference_version=0,
        organization_id="org",
        timestamp=datetime.now(UTC),
        user_endpoint_id="alice-ep",
        user_id="alice",
    )
    await repository.append(state, joined)
    left_unpublished = ConferenceJoinedEvent(
        id="ev-joined-bob",
        conference_id="c-1",
        conference_version=1,
        organization_id="org",
        timestamp=datetime.now(UTC),
        user_endpoint_id="bob-ep",
        user_id="bob",
    )
    await repository.append(await repository.get("org", "c-1") or state, left_unpublished)
    # The first two were published, then the process died before marking them published; the third
    # was committed and never published.
    relayed: list[AnyConferenceEvent] = [created, joined]
    for event in relayed:
        await publish_event(js, subjects.conference_event(type(event).__name__), event, msg_id=event.id)
    unpublished = [e.id for e in await repository.unpublished()]
    assert unpublished == ["ev-created", "ev-joined", "ev-joined-bob"]
    # The restart comes after the stream forgot the dedup ids.
    await asyncio.sleep(DUPLICATE_WINDOW + 0.5)

    assert await conference_outbox(repository, js).recover() == 3

    assert await stored_ids(nc, "c-1") == ["ev-created", "ev-joined", "ev-joined-bob"]
    assert await repository.unpublished() == []
