"""Which media node each conference is pinned to, in storage, so the choice survives restarts and is shared
by every replica. The first replica to pin a conference wins (insert with a unique `_id`); a pin is moved
only off a node that was lost, with the old node as a condition, so two replicas never move it apart.
"""

from __future__ import annotations

import msgspec
from parley_common.storage import DocumentStore, DuplicateKeyError
from parley_common.storage.port import Collection

from parley_conference.adapters.repository import as_document, key


class Pin(msgspec.Struct, frozen=True, kw_only=True):
    organization_id: str
    conference_id: str
    node_id: str
    # The node's start time when pinned: a node that restarted since lost the conference's streams.
    incarnation: str


class Placements:
    def __init__(self, pins: Collection) -> None:
        self._pins = pins

    @classmethod
    async def open(cls, store: DocumentStore) -> Placements:
        return cls(await store.collection("media_pins"))

    async def get(self, organization_id: str, conference_id: str) -> Pin | None:
        doc = await self._pins.get(key(organization_id, conference_id))
        return None if doc is None else _pin(doc)

    async def pin(self, pin: Pin) -> Pin:
        """Pin a conference that has no pin; when another replica pinned it first, theirs stands."""
        try:
            await self._pins.insert({"_id": key(pin.organization_id, pin.conference_id), **as_document(pin)})
        except DuplicateKeyError:
            existing = await self.get(pin.organization_id, pin.conference_id)
            if existing is not None:
                return existing
            return await self.pin(pin)  # removed in between: try again
        return pin

    async def move(self, old: Pin, new: Pin) -> Pin:
        """Re-pin off a lost node (or incarnation); if someone moved it already, their pin stands."""
        moved = await self._pins.replace(
            {"_id": key(new.organization_id, new.conference_id), **as_document(new)},
            where={"node_id": old.node_id, "incarnation": old.incarnation},
        )
        if moved:
            return new
        return await self.get(new.organization_id, new.conference_id) or await self.pin(new)

    async def remove(self, pin: Pin) -> None:
        await self._pins.delete(
            key(pin.organization_id, pin.conference_id),
            where={"node_id": pin.node_id, "incarnation": pin.incarnation},
        )

    async def all(self) -> list[Pin]:
        return [_pin(doc) for doc in await self._pins.find()]


def _pin(doc: dict[str, object]) -> Pin:
    return msgspec.convert({k: v for k, v in doc.items() if k != "_id"}, Pin)
