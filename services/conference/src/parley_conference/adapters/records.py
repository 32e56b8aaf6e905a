"""Versioned records (attendees, archives) committed through the meeting model's commit log.

A record's change and the events it raises are one commit of `meeting_commits` (`parley_common.commits`),
as a meeting's are: the record is a guarded put over the version it was decided on (a concurrent change of
the same record makes the loser decide again: `ChangedConcurrently`, a `Busy`), the events are owed by the
commit and published by the outbox (event id as `Nats-Msg-Id`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from parley_common.commits import CommitLog, Put, as_document
from parley_common.outbox import Owed
from parley_common.storage import Collection


class Records:
    """One collection of versioned records, written through `log`."""

    def __init__(self, collection: Collection, log: CommitLog) -> None:
        self._c = collection
        self._log = log
        self.name = collection.name
        log.add_targets(collection)

    async def get(self, record_id: str) -> dict[str, Any] | None:
        return await self._c.get(record_id)

    async def find(self, where: dict[str, Any], **options: Any) -> list[dict[str, Any]]:
        return await self._c.find(where, **options)

    async def write(
        self, record_id: str, version: int, state: Any, fields: dict[str, Any], effects: Sequence[Any]
    ) -> Owed:
        """Store `state` as `version` (over the stored `version - 1`) with the effects it owes.

        Returns what the outbox must carry out. `Busy` (`ChangedConcurrently`) when another change won.
        """
        doc = {"_id": record_id, "version": version, "state": as_document(state), **fields}
        return await self._log.commit([Put(self.name, doc, over_version=version - 1)], effects)
