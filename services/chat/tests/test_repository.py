"""The storage repository on real SQLite: `rooms_of_user` costs a fixed number of queries; commits are
recovered in commit order."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path
from typing import Any, ClassVar

import msgspec
import pytest
from parley_chat.adapters.repository import OUTBOX, StorageChatRepository
from parley_chat.domain import Decision, Room, RoomMember, WorkspaceRank
from parley_common import clock
from parley_common.contracts import chat as api
from parley_common.outbox import DeleteObject, Outbox
from parley_common.storage import Collection, SqliteStore

ORG = "org"
NOW = datetime(2026, 1, 1, tzinfo=UTC)


class Counting:
    """A collection of the real store that counts the queries made through it."""

    def __init__(self, inner: Collection, counts: dict[str, int]) -> None:
        self._inner = inner
        self._counts = counts
        self.name = inner.name

    def __getattr__(self, attr: str) -> Any:
        method = getattr(self._inner, attr)

        async def counted(*args: Any, **kwargs: Any) -> Any:
            self._counts[attr] = self._counts.get(attr, 0) + 1
            return await method(*args, **kwargs)

        return counted


def _room(kind: Any, members: tuple[str, ...], parent: str | None = None) -> Room:
    return Room(
        id=str(uuid.uuid4()),
        organization_id=ORG,
        type=kind,
        created_at=NOW,
        updated_at=NOW,
        name="r",
        parent_id=parent,
        members=tuple(RoomMember(m, owner=i == 0) for i, m in enumerate(members)),
    )


async def _queries_for(tmp_path: Path, groups: int, workspaces: int) -> tuple[int, int]:
    store = SqliteStore(str(tmp_path / f"chat-{groups}.sqlite3"))
    await store.start()
    try:
        repository = await StorageChatRepository.open(store)
        me = str(uuid.uuid4())
        others = tuple(str(uuid.uuid4()) for _ in range(5))
        rooms = [_room("group", (me, *others)) for _ in range(groups)]
        spaces = [_room("workspace", (me, *others)) for _ in range(workspaces)]
        channels = [_room("channel", (), parent=w.id) for w in spaces for _ in range(2)]
        ranks = tuple(WorkspaceRank(me, w.id, i + 1) for i, w in enumerate(spaces))
        await repository.commit(
            ORG, Decision(result=None, put_rooms=(*rooms, *spaces, *channels), put_workspace_ranks=ranks)
        )
        counts: dict[str, int] = {}
        counting = StorageChatRepository({name: Counting(c, counts) for name, c in repository._c.items()})
        listed = await counting.rooms_of_user(ORG, me)
        assert len([r for r in listed.rooms if r.type != "channel"]) == groups + workspaces
        assert len([r for r in listed.rooms if r.type == "channel"]) == 2 * workspaces
        assert all(len(r.members) == 6 for r in listed.rooms if r.type != "channel")
        return sum(counts.values()), len(listed.workspace_ranks)
    finally:
        await store.close()


async def test_rooms_of_user_takes_the_same_queries_for_3_or_60_rooms(tmp_path: Path) -> None:
    few, few_ranks = await _queries_for(tmp_path, groups=2, workspaces=1)
    many, many_ranks = await _queries_for(tmp_path, groups=50, workspaces=10)
    assert (few_ranks, many_ranks) == (1, 10)
    assert few == many <= 6


async def test_attachments_page_newest_first_ties_by_id_and_go_with_their_room(tmp_path: Path) -> None:
    """(createdAt, id) descending, even for files created in the same microsecond (one paging key)."""
    store = SqliteStore(str(tmp_path / "attachments.sqlite3"))
    await store.start()
    try:
        repository = await StorageChatRepository.open(store)
        room, other = _room("group", ("a", "b", "c")), _room("group", ("a", "b", "c"))
        times = [datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 1, 0, 0, 0, 1, tzinfo=UTC)]
        files = [
            api.Attachment(
                id=str(uuid.uuid4()),
                name=f"f{i}",
                size=i,
                mime_type="text/plain",
                user_id="a",
                room_id=room.id,
                created_at=times[i % 2],
            )
            for i in range(7)
        ]
        elsewhere = msgspec.structs.replace(files[0], id=str(uuid.uuid4()), room_id=other.id)
        await repository.commit(
            ORG, Decision(result=None, put_rooms=(room, other), put_attachments=(*files, elsewhere))
        )
        expected = sorted(files, key=lambda f: (f.created_at, f.id), reverse=True)
        walked: list[api.Attachment] = []
        before = None
        while page := await repository.room_attachments(ORG, room.id, before=before, limit=3):
            walked += page
            before = (page[-1].created_at, page[-1].id)
        assert walked == expected
        assert await repository.attachment("another-org", files[0].id) is None
        assert await repository.attachment(ORG, files[0].id) == files[0]
        names = await repository.files_of_rooms(ORG, [room.id])
        assert sorted(names) == sorted(api.attachment_object(f.id) for f in files)
        await repository.commit(ORG, Decision(result=None, delete_rooms=(room.id,)))
        assert await repository.attachment(ORG, files[0].id) is None
        assert await repository.files_of_rooms(ORG, [room.id]) == []
        assert await repository.attachment(ORG, elsewhere.id) == elsewhere
    finally:
        await store.close()


async def test_a_room_is_read_from_storage_once_until_a_commit_changes_it(tmp_path: Path) -> None:
    """The room cache: a second read makes no query; every commit touching the room or its members
    (member added, removed, room deleted) is seen by the next read."""
    store = SqliteStore(str(tmp_path / "chat-cache.sqlite3"))
    await store.start()
    try:
        counts: dict[str, int] = {}
        plain = await StorageChatRepository.open(store)
        repository = StorageChatRepository({name: Counting(c, counts) for name, c in plain._c.items()})
        a, b, c = (str(uuid.uuid4()) for _ in range(3))
        room = _room("group", (a, b))
        await repository.commit(ORG, Decision(result=None, put_rooms=(room,)))
        assert (await repository.room(ORG, room.id)) == room
        counts.clear()
        assert (await repository.room(ORG, room.id)) == room
        assert counts == {}  # from memory
        assert await repository.room("another-org", room.id) is None
        grown = msgspec.structs.replace(room, members=(*room.members, RoomMember(c, owner=False)))
        await repository.commit(ORG, Decision(result=None, put_rooms=(grown,)))
        assert (await repository.room(ORG, room.id)) == grown
        shrunk = msgspec.structs.replace(room, members=room.members[:1])
        await repository.commit(ORG, Decision(result=None, put_rooms=(shrunk,)))
        assert (await repository.room(ORG, room.id)) == shrunk
        await repository.commit(ORG, Decision(result=None, delete_rooms=(room.id,)))
        assert await repository.room(ORG, room.id) is None
    finally:
        await store.close()


async def test_a_room_read_while_a_commit_applies_is_not_kept(tmp_path: Path) -> None:
    """A read that began before a commit touching the room finished may have seen it half-applied: the
    next read goes to storage again."""
    store = SqliteStore(str(tmp_path / "chat-race.sqlite3"))
    await store.start()
    try:
        repository = await StorageChatRepository.open(store)
        a, b, c = (str(uuid.uuid4()) for _ in range(3))
        room = _room("group", (a, b))
        await repository.commit(ORG, Decision(result=None, put_rooms=(room,)))
        grown = msgspec.structs.replace(room, members=(*room.members, RoomMember(c, owner=False)))
        # The read takes its storage reads, then the commit applies while it is still in flight.
        members = repository._members
        committed: list[bool] = []

        class Interleaved:
            def __getattr__(self, attr: str) -> Any:
                return getattr(members, attr)

            async def find(self, *args: Any, **kwargs: Any) -> Any:
                found = await members.find(*args, **kwargs)
                if not committed:
                    committed.append(True)
                    await repository.commit(ORG, Decision(result=None, put_rooms=(grown,)))
                return found

        repository._members = Interleaved()  # type: ignore[assignment]
        assert (await repository.room(ORG, room.id)) == room  # what storage held when it was read
        repository._members = members
        assert (await repository.room(ORG, room.id)) == grown
    finally:
        await store.close()


class _Stuck(datetime):
    """`datetime.now()` stuck at `at` (what `utcnow()` reads): every commit made meanwhile falls in one
    millisecond, as commits a few hundred microseconds apart often do."""

    at: ClassVar[datetime] = NOW

    @classmethod
    def now(cls, tz: tzinfo | None = None) -> _Stuck:
        return cls.fromtimestamp(cls.at.timestamp(), tz)


async def test_commits_of_one_millisecond_are_recovered_in_commit_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A crash leaves commits of one millisecond owed and their writes not landed: the restarted process
    lands the writes and carries out the effects in the order they were committed (not by a random tie
    break: a ROOM_MEMBER_ADDED before its ROOM_CREATED, an older rename landing last)."""
    monkeypatch.setattr(clock, "datetime", _Stuck)
    store = SqliteStore(str(tmp_path / "chat-crash.sqlite3"))
    await store.start()
    carried: list[str] = []

    async def record(effects: Sequence[DeleteObject], *, recovering: bool) -> None:
        carried.extend(effect.object_name for effect in effects)

    try:
        repository = await StorageChatRepository.open(store)
        room = _room("group", ("a", "b"))
        for n in range(20):
            renamed = msgspec.structs.replace(room, name=f"v{n}")
            decision = Decision(result=None, put_rooms=(renamed,))
            await repository.commit(ORG, decision, [DeleteObject(object_name=f"c{n}")])
        # The process dies before its outbox carried anything out, the writes not landed.
        commits, rooms = repository._c[OUTBOX], repository._c["chat_rooms"]
        for doc in await commits.find(None):
            await commits.update(doc["_id"], {"applied": False})
        await rooms.delete(room.id)

        _Stuck.at = NOW + timedelta(minutes=1)  # restarted later
        restarted = await StorageChatRepository.open(store)
        assert await restarted.log.land_unapplied() == 20
        landed = await restarted.room(ORG, room.id)
        assert landed is not None and landed.name == "v19"  # the last commit's write last
        assert await Outbox([restarted.log], {DeleteObject: record}).recover() == 20
        assert carried == [f"c{n}" for n in range(20)]
    finally:
        await store.close()
