"""Finished recordings go into the JetStream object store bucket RECORDINGS_BUCKET (created if missing)."""

from __future__ import annotations

from typing import IO

from nats.js import JetStreamContext
from nats.js.object_store import ObjectStore
from parley_common.messaging.streams import ensure_object_store
from parley_common.messaging.subjects import RECORDINGS_BUCKET


class ObjectStoreRecordings:
    def __init__(self, store: ObjectStore, bucket: str) -> None:
        self._store = store
        self._bucket = bucket

    @classmethod
    async def open(cls, js: JetStreamContext, bucket: str = RECORDINGS_BUCKET) -> ObjectStoreRecordings:
        # Declared with the other buckets (OBJECT_STORES): description, storage, replicas.
        return cls(await ensure_object_store(js, bucket), bucket)

    @property
    def bucket(self) -> str:
        return self._bucket

    async def put(self, object_name: str, data: IO[bytes]) -> None:
        # nats-py reads file-like data in a worker thread, chunk by chunk: the loop never blocks on disk.
        await self._store.put(object_name, data)  # type: ignore[arg-type]
