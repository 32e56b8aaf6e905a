"""The chat files bucket (`subjects.CHAT_FILES_BUCKET`) as the chat service uses it: deleting objects.

The gateway streams the bytes in and out (`parley_common.messaging.objects`); the service only deletes
what no record refers to any more: a refused upload at once, a deleted attachment or room's files as an
outbox effect (`DeleteObject`, retried until done).
"""

from __future__ import annotations

from nats.js import JetStreamContext
from parley_common.messaging import subjects
from parley_common.messaging.objects import delete_object, object_info, put_stream, read_stream
from parley_common.messaging.streams import ensure_object_store
from parley_common.outbox import DeleteObject

BUCKET = subjects.CHAT_FILES_BUCKET


class ChatFiles:
    def __init__(self, js: JetStreamContext) -> None:
        self._js = js
        self._ready = False

    async def delete(self, object_name: str) -> None:
        """Delete an object; gone already is fine. NATS errors propagate (the outbox retries)."""
        if not self._ready:
            await ensure_object_store(self._js, BUCKET)
            self._ready = True
        await delete_object(self._js, BUCKET, object_name)

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
