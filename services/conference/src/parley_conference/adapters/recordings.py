"""Where each finished recording is stored, so the gateway can serve it to callers of its organization.

The conference metadata lists recordings for clients; the object-store location stays internal, here.
"""

from __future__ import annotations

import msgspec
from parley_common.contracts.media import RecordingLocation
from parley_common.storage import DocumentStore
from parley_common.storage.port import Collection

from parley_conference.adapters.repository import as_document, key


class RecordingLocations:
    def __init__(self, locations: Collection) -> None:
        self._locations = locations

    @classmethod
    async def open(cls, store: DocumentStore) -> RecordingLocations:
        return cls(await store.collection("recordings"))

    async def put(self, organization_id: str, conference_id: str, location: RecordingLocation) -> None:
        """Idempotent: the same recording reported twice is stored once."""
        doc = {"_id": key(organization_id, conference_id, location.recording_id), **as_document(location)}
        await self._locations.replace(doc, upsert=True)

    async def get(
        self, organization_id: str, conference_id: str, recording_id: str
    ) -> RecordingLocation | None:
        doc = await self._locations.get(key(organization_id, conference_id, recording_id))
        if doc is None:
            return None
        return msgspec.convert({k: v for k, v in doc.items() if k != "_id"}, RecordingLocation)

    async def remove(self, organization_id: str, conference_id: str, recording_id: str) -> None:
        """Its archive was deleted: the recording is no longer served (gone already is fine)."""
        await self._locations.delete(key(organization_id, conference_id, recording_id))
