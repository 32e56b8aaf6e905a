"""Snapshot images in the JetStream object store.

Two buckets (declared in parley_common.messaging.streams): `parley_snapshots` holds the images snapshots
refer to; `parley_snapshot_staging` holds what the gateway received and the service has not yet checked.
Staged objects expire, so an upload abandoned half-way (a process dying between the steps) cleans itself
up.
Moving a checked image is a copy then a delete: the object store has no rename, and the service reads the
bytes anyway to decode them.
"""

from __future__ import annotations

import contextlib

import nats.errors
from nats.js import JetStreamContext
from nats.js.errors import ObjectNotFoundError
from nats.js.object_store import ObjectStore
from parley_common.log import get_logger
from parley_common.messaging import subjects
from parley_common.messaging.streams import ensure_object_store

log = get_logger(__name__)


class StagedImageMissing(Exception):
    pass


class ImageStore:
    def __init__(self, images: ObjectStore, staging: ObjectStore) -> None:
        self._images = images
        self._staging = staging

    @classmethod
    async def open(cls, js: JetStreamContext) -> ImageStore:
        return cls(
            await ensure_object_store(js, subjects.SNAPSHOTS_BUCKET),
            await ensure_object_store(js, subjects.SNAPSHOT_STAGING_BUCKET),
        )

    @property
    def bucket(self) -> str:
        return subjects.SNAPSHOTS_BUCKET

    async def put(self, object_name: str, data: bytes) -> None:
        await self._images.put(object_name, data)

    async def get(self, object_name: str) -> bytes | None:
        try:
            found = await self._images.get(object_name)
        except ObjectNotFoundError:
            return None
        return found.data or b""

    async def delete(self, object_name: str) -> None:
        """Delete an image; one that is already gone is fine."""
        with contextlib.suppress(ObjectNotFoundError):
            await self._images.delete(object_name)

    async def read_staged(self, staged_name: str) -> bytes:
        try:
            found = await self._staging.get(staged_name)
        except ObjectNotFoundError:
            raise StagedImageMissing(staged_name) from None
        return found.data or b""

    async def drop_staged(self, staged_name: str) -> None:
        """Best effort: whatever is left expires with the staging bucket's TTL."""
        try:
            await self._staging.delete(staged_name)
        except ObjectNotFoundError:
            pass
        except (nats.errors.Error, TimeoutError) as exc:
            log.warning("staged image not deleted (it expires)", staged=staged_name, error=repr(exc))
