"""Group commit (`ChatUnitOfWork.commit_grouped`) on real SQLite with the real outbox: sends decided while
others wait for the lock share one commit document; each answers only once its message is stored and its
effects carried out; commits keep the order they were decided in, a plain commit included."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from parley_chat.adapters.repository import OUTBOX, StorageChatRepository
from parley_chat.domain import Decision, StoredMessage
from parley_chat.handlers import ChatUnitOfWork
from parley_common.outbox import DeleteObject, Outbox
from parley_common.storage import Collection, SqliteStore

ORG = "org"
ROOM = str(uuid.uuid4())


class CountingInserts:
    def __init__(self, inner: Collection, counts: list[int]) -> None:
        self._inner = inner
        self._counts = counts

    def __getattr__(self, attr: str) -> Any:
        return getattr(self._inner, attr)

    async def insert(self, doc: Any) -> None:
        self._counts.append(1)
        await self._inner.insert(doc)


def message(n: int) -> StoredMessage:
    return StoredMessage(
        id=str(uuid.uuid4()),
        organization_id=ORG,
        room_id=ROOM,
        user_id=str(uuid.uuid4()),
        text=f"m{n}",
        sent_at=datetime(2026, 1, 1, tzinfo=UTC),
    )


async def test_concurrent_sends_share_commits_in_decision_order(tmp_path: Path) -> None:
    store = SqliteStore(str(tmp_path / "chat.sqlite3"))
    await store.start()
    carried: list[str] = []

    # The effect each decision owes here is a DeleteObject naming its message (what the outbox carries
    # out, in order): the executor records the order.
    async def record(effects: Sequence[DeleteObject], *, recovering: bool) -> None:
        carried.extend(effect.object_name for effect in effects)

    try:
        plain = await StorageChatRepository.open(store)
        commits: list[int] = []
        collections = dict(plain._c)
        collections[OUTBOX] = CountingInserts(plain._c[OUTBOX], commits)  # type: ignore[assignment]
        repository = StorageChatRepository(collections)
        outbox = Outbox([repository.log], {DeleteObject: record})
        relay = asyncio.create_task(outbox.run())
        uow = ChatUnitOfWork(repository, outbox)
        answered: list[str] = []

        async def send(n: int) -> None:
            async with uow.deciding():
                await asyncio.sleep(0)  # a read: the others queue for the lock meanwhile
                sent = message(n)
                decision = Decision(result=None, put_messages=(sent,), delete_objects=(sent.text,))
                if n == 10:
                    await uow.commit(ORG, decision)  # a plain commit amid the group
                else:
                    await uow.commit_grouped(ORG, decision)
            # Answered: the message is stored and its effect carried out.
            assert sent.text in carried
            assert (await repository.message(ORG, sent.id)) == sent
            answered.append(sent.text)

        await asyncio.gather(*(send(n) for n in range(20)))
        relay.cancel()
        await asyncio.gather(relay, return_exceptions=True)
        assert sorted(answered) == sorted(f"m{n}" for n in range(20))
        assert carried == [f"m{n}" for n in range(20)]  # decision order, the plain commit in its place
        assert len(commits) <= 4  # not one per send
    finally:
        await store.close()
