"""The chat files bucket (`subjects.CHAT_FILES_BUCKET`) as the chat service uses it.

The gateway streams uploads in and answers out (`parley_common.messaging.objects`). The service deletes
what no record refers to any more (a refused upload at once; a deleted attachment, picture, preview or
room's files as an outbox effect, `DeleteObject`, retried until done), and reads and writes the bytes a
rule needs in memory: a picture to decode, a file to preview, a rendered preview. Reads are capped, so a
stored object larger than expected is refused (400) rather than loaded.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from nats.js import JetStreamContext
from parley_common.errors import InvalidCommand
from parley_common.messaging import objects, subjects
from parley_common.messaging.objects import object_info, put_stream, read_stream
from parley_common.messaging.streams import ensure_object_store
from parley_common.outbox import DeleteObject

BUCKET = subjects.CHAT_FILES_BUCKET


async def _one(data: bytes) -> AsyncIterator[bytes]:
    yield data


class ChatFiles:
    def __init__(self, js: JetStreamContext) -> None:
        self._js = js
        self._ready = False

    async def _bucket(self) -> None:
        if not self._ready:
            await ensure_object_store(self._js, BUCKET)
            self._ready = True

    async def delete(self, object_name: str) -> None:
        """Delete an object; gone already is fine. NATS errors propagate (the outbox retries)."""
        await self._bucket()
        await objects.delete_object(self._js, BUCKET, object_name)

    async def copy(self, source: str, target: str) -> bool:
        """Copy an object's bytes, streamed chunk by chunk (a forwarded attachment); False: no source."""
        if not self._ready:
            await ensure_object_store(self._js, BUCKET)
            self._ready = True
        info = await object_info(self._js, BUCKET, source)
        if info is None:
            return False
        await put_stream(self._js, BUCKET, target, read_stream(self._js, info))
        return True

    async def execute(self, effect: DeleteObject) -> None:
        await self.delete(effect.object_name)

    async def read(self, name: str, max_bytes: int) -> bytes | None:
        """The object's bytes, None when it is not stored; larger than `max_bytes`: 400."""
        await self._bucket()
        info = await objects.object_info(self._js, BUCKET, name)
        if info is None:
            return None
        if (info.size or 0) > max_bytes:
            raise InvalidCommand(f"the file is larger than {max_bytes} bytes")
        return b"".join([chunk async for chunk in objects.read_stream(self._js, info)])

    async def exists(self, name: str) -> bool:
        await self._bucket()
        return await objects.object_info(self._js, BUCKET, name) is not None

    async def write(self, name: str, data: bytes, mime_type: str) -> None:
        await self._bucket()
        await objects.put_stream(self._js, BUCKET, name, _one(data), headers={"Content-Type": mime_type})
