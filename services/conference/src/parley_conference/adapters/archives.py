"""Archives in the document store: `meeting_archives` (one versioned record per archive with its copies'
upload state, committed with the events and effects it owes through the meeting model's commit log) and
`meeting_storage_targets` (one per organization)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec
from parley_common.commits import CommitLog
from parley_common.outbox import Owed
from parley_common.storage import DocumentStore, Index

from parley_conference.adapters.meetings import event_effect
from parley_conference.adapters.records import Records
from parley_conference.archives import Archive, Target


class ArchiveRepository:
    def __init__(self, records: Records, targets: Any) -> None:
        self.records = records
        self._targets = targets

    @classmethod
    async def open(cls, store: DocumentStore, log: CommitLog) -> ArchiveRepository:
        archives = await store.collection("meeting_archives", [Index(("org", "deleted", "createdMs"))])
        return cls(Records(archives, log), await store.collection("meeting_storage_targets"))

    async def get(self, archive_id: str) -> Archive | None:
        """The archive, deleted ones included (their tombstone)."""
        doc = await self.records.get(archive_id)
        return None if doc is None else msgspec.convert(doc["state"], Archive)

    async def of_organization(self, organization_id: str) -> list[Archive]:
        docs = await self.records.find({"org": organization_id, "deleted": False}, sort=[("createdMs", 1)])
        return [msgspec.convert(doc["state"], Archive) for doc in docs]

    async def commit(self, archive: Archive, events: Sequence[Any], effects: Sequence[Any] = ()) -> Owed:
        fields = {
            "org": archive.organization_id,
            "deleted": archive.deleted,
            "createdMs": int(archive.view.created_at.timestamp() * 1000),
        }
        return await self.records.write(
            archive.view.archive_id,
            archive.version,
            archive,
            fields,
            [*(event_effect(e) for e in events), *effects],
        )

    # ------------------------------------------------------------ storage targets

    async def set_target(self, target: Target) -> None:
        await self._targets.replace(
            {"_id": target.organization_id, "state": msgspec.to_builtins(target)}, upsert=True
        )

    async def target(self, organization_id: str) -> Target | None:
        doc = await self._targets.get(organization_id)
        return None if doc is None else msgspec.convert(doc["state"], Target)
