"""Versioned records that keep the events they owe, for the shared outbox (`parley_common.outbox`).

The storage port has no transactions, so a record and the events its change raises are ONE document (as
the snapshot service's records): `pending` marks a record whose `effects` are not yet published. The write
is a compare-and-set on `version` (a concurrent change of the same record makes the loser decide again);
the outbox publishes the effects (event id as `Nats-Msg-Id`) and clears them as of that version.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import msgspec
from parley_common.clock import utcnow
from parley_common.errors import Busy
from parley_common.messaging import subjects
from parley_common.outbox import DeleteObject, Owed, PublishEvent
from parley_common.storage import Collection, DuplicateKeyError

from parley_conference.adapters.repository import as_document


def publish(event: Any) -> PublishEvent:
    """A meeting event owed on PARLEY_MEETING."""
    return PublishEvent(
        subject=subjects.MEETING_EVENTS.format(type=type(event).__name__),
        msg_id=event.id,
        event=event,
        committed_at=utcnow(),
    )


class Records:
    """One collection of versioned records with owed effects; also its `OutboxStore`."""

    def __init__(self, collection: Collection) -> None:
        self._c = collection
        self.name = collection.name

    async def get(self, record_id: str) -> dict[str, Any] | None:
        return await self._c.get(record_id)

    async def find(self, where: dict[str, Any], **options: Any) -> list[dict[str, Any]]:
        return await self._c.find(where, **options)

    async def write(
        self, record_id: str, version: int, state: Any, fields: dict[str, Any], effects: Sequence[Any]
    ) -> Owed | None:
        """Store `state` as `version` (the previous one being `version - 1`) with the effects it owes.

        Returns what the outbox must carry out (None: nothing). `Busy` when another change won the race.
        """
        now = utcnow()
        doc = {
            "_id": record_id,
            "version": version,
            "pending": bool(effects),
            "committedMs": int(now.timestamp() * 1000),
            "effects": as_document(list(effects)),
            "state": as_document(state),
            **fields,
        }
        if version == 1:
            try:
                await self._c.insert(doc)
            except DuplicateKeyError as exc:
                raise Busy("changed concurrently, try again") from exc
        elif not await self._c.replace(doc, where={"version": version - 1}):
            raise Busy("changed concurrently, try again")
        if not effects:
            return None
        return Owed(store=self.name, key=record_id, version=version, committed_at=now, effects=tuple(effects))

    # ------------------------------------------------------------ OutboxStore

    async def owed(self, limit: int = 100) -> list[Owed]:
        docs = await self._c.find({"pending": True}, limit=limit)
        return [
            Owed(
                store=self.name,
                key=doc["_id"],
                version=doc["version"],
                committed_at=datetime.fromtimestamp(doc["committedMs"] / 1000, UTC),
                effects=tuple(msgspec.convert(doc["effects"], list[PublishEvent | DeleteObject])),
            )
            for doc in docs
        ]

    async def done(self, done: Sequence[Owed]) -> None:
        for owed in done:
            await self._c.update(owed.key, {"effects": [], "pending": False}, where={"version": owed.version})
