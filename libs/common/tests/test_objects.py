"""`parley_common.messaging.objects` on a real nats-server: streamed in and out byte for byte, readable by
nats-py's own `ObjectStore.get`, nothing stored when the source fails or outgrows its limit."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import pytest
from nats.aio.client import Client
from nats.js.errors import NotFoundError
from nats.js.object_store import ObjectStore
from parley_common.messaging import subjects
from parley_common.messaging.objects import (
    CHUNK_SIZE,
    ObjectTooLarge,
    delete_object,
    object_info,
    put_stream,
    read_stream,
)
from parley_common.messaging.streams import ensure_object_store

BUCKET = subjects.CHAT_FILES_BUCKET


async def pieces(data: bytes, size: int, *, fail_after: int | None = None) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        if fail_after is not None and start >= fail_after:
            raise ConnectionResetError("the client went away")
        yield data[start : start + size]


async def names(store: ObjectStore) -> list[str]:
    try:
        return sorted(info.name for info in await store.list(ignore_deletes=True))
    except NotFoundError:
        return []


async def stored_bytes(nc: Client) -> int:
    info = await nc.jetstream().stream_info(f"OBJ_{BUCKET}")
    return int(info.state.bytes)


async def test_streamed_in_and_out_byte_for_byte(nc: Client) -> None:
    js = nc.jetstream()
    store = await ensure_object_store(js, BUCKET)
    data = os.urandom(3 * CHUNK_SIZE + 12345)
    info = await put_stream(js, BUCKET, "attachments/a", pieces(data, 10_000), headers={"k": "v"})
    assert info.size == len(data) and info.chunks == 4
    # nats-py's own reader reads what we wrote (same protocol), and ours streams it back.
    assert (await store.get("attachments/a")).data == data
    found = await object_info(js, BUCKET, "attachments/a")
    assert found is not None and found.headers == {"k": "v"}
    assert b"".join([chunk async for chunk in read_stream(js, found)]) == data
    # Replaced: the new bytes, the old chunks gone.
    before = await stored_bytes(nc)
    await put_stream(js, BUCKET, "attachments/a", pieces(b"small", 2))
    assert (await store.get("attachments/a")).data == b"small"
    assert await stored_bytes(nc) < before - len(data) + 1000
    assert await delete_object(js, BUCKET, "attachments/a")
    assert not await delete_object(js, BUCKET, "attachments/a")
    assert await object_info(js, BUCKET, "attachments/a") is None


async def test_empty_object(nc: Client) -> None:
    js = nc.jetstream()
    await ensure_object_store(js, BUCKET)
    info = await put_stream(js, BUCKET, "attachments/empty", pieces(b"", 1))
    assert info.size == 0
    found = await object_info(js, BUCKET, "attachments/empty")
    assert found is not None
    assert [chunk async for chunk in read_stream(js, found)] == []


async def test_nothing_is_stored_when_too_large_or_the_source_fails(nc: Client) -> None:
    js = nc.jetstream()
    store = await ensure_object_store(js, BUCKET)
    before_names, before_bytes = await names(store), await stored_bytes(nc)
    data = os.urandom(5 * CHUNK_SIZE)
    with pytest.raises(ObjectTooLarge):
        await put_stream(js, BUCKET, "attachments/big", pieces(data, 50_000), max_bytes=4 * CHUNK_SIZE)
    with pytest.raises(ConnectionResetError):
        await put_stream(js, BUCKET, "attachments/cut", pieces(data, 50_000, fail_after=3 * CHUNK_SIZE))
    assert await names(store) == before_names
    # The chunks written before the failure were purged, not only left without a name.
    assert await stored_bytes(nc) == before_bytes
