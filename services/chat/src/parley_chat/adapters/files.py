"""The chat service's files in the JetStream object store `CHAT_FILES_BUCKET` (`parley_attachments`).

Reads and writes go through `parley_common.messaging.objects` (chunk by chunk, never nats-py's
whole-object `get`); the bytes a rule needs in memory (a picture to decode, a file to preview) are read
with a cap, so a stored object larger than expected is refused rather than loaded.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from nats.js import JetStreamContext
from parley_common.errors import InvalidCommand
from parley_common.messaging import objects, subjects
from parley_common.messaging.streams import ensure_object_store
from parley_common.outbox import DeleteObject

BUCKET = subjects.CHAT_FILES_BUCKET


async def _one(data: bytes) -> AsyncIterator[bytes]:
    yield data


class ObjectFiles:
    """`FilesPort` over the bucket (created on first use, as every bucket is: `ensure_object_store`)."""

    def __init__(self, js: JetStreamContext) -> None:
        self._js = js
        self._ready = False

    async def _bucket(self) -> None:
        if not self._ready:
            await ensure_object_store(self._js, BUCKET)
            self._ready = True

    async def read(self, name: str, max_bytes: int) -> bytes | None:
        """The object's bytes, None when it is not stored; larger than `max_bytes`: 400."""
        await self._bucket()
        info = await objects.object_info(self._js, BUCKET, name)
        if info is None:
            return None
        if (info.size or 0) > max_bytes:
            raise InvalidCommand(f"the file is larger than {max_bytes} bytes")
        chunks = [chunk async for chunk in objects.read_stream(self._js, info)]
        return b"".join(chunks)

    async def exists(self, name: str) -> bool:
        await self._bucket()
        return await objects.object_info(self._js, BUCKET, name) is not None

    async def write(self, name: str, data: bytes, mime_type: str) -> None:
        await self._bucket()
        await objects.put_stream(self._js, BUCKET, name, _one(data), headers={"Content-Type": mime_type})

    async def delete(self, name: str) -> None:
        await self._bucket()
        await objects.delete_object(self._js, BUCKET, name)

    async def execute_delete(self, effect: DeleteObject) -> None:
        """The outbox's executor of `DeleteObject` (gone already counts as done)."""
        await self.delete(effect.object_name)
