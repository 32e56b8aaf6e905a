"""The storage contract: every adapter passes every test here (the `store` fixture is parametrised).

Expected results follow MongoDB's semantics; the SQLite adapter has to reproduce them.
"""

from __future__ import annotations

import asyncio
import datetime
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from parley_common.storage import (
    ASCENDING,
    DESCENDING,
    Collection,
    Doc,
    DocumentStore,
    DuplicateKeyError,
    Index,
    InvalidValue,
    MongoStore,
    SqliteStore,
    StorageError,
    StorageUnavailable,
    open_store,
)
from parley_common.storage.sqlite import _where

# Inserted out of `_id` order, so the default (`_id`) order of `find` is something the adapter did.
SAMPLE: list[Doc] = [
    {"_id": "c", "n": 3, "s": "cherry", "meta": {"kind": "x"}},
    {"_id": "a", "n": 1, "s": "apple", "flag": True, "meta": {"kind": "x", "rank": 3}},
    {"_id": "f", "n": 0, "flag": 0},
    {"_id": "b", "n": 2.5, "s": "banana", "flag": False, "meta": {"kind": "y", "rank": 1}},
    {"_id": "e", "n": "2", "flag": 1, "meta": {"kind": "z", "rank": "2"}},
    {"_id": "d", "n": None, "s": "date", "flag": None, "meta": None},
]


async def sample(store: DocumentStore, name: str) -> Collection:
    coll = await store.collection(name)
    for doc in SAMPLE:
        await coll.insert(dict(doc))
    return coll


async def ids(coll: Collection, where: Any = None, **kwargs: Any) -> list[str]:
    return [doc["_id"] for doc in await coll.find(where, **kwargs)]


async def test_insert_and_get_round_trip(store: DocumentStore, name: str) -> None:
    coll = await store.collection(name)
    doc = {
        "_id": "u1",
        "name": "Ada",
        "tags": ["a", 1, 2.5, True, None, {"k": "v"}],
        "profile": {"age": 36, "score": 1.5, "active": False, "note": None, "big": 2**62},
    }
    await coll.insert(doc)
    assert await coll.get("u1") == doc
    assert await coll.get("missing") is None
    assert coll.name == name


async def test_insert_duplicate_id_fails_and_keeps_original(store: DocumentStore, name: str) -> None:
    coll = await store.collection(name)
    await coll.insert({"_id": "a", "v": 1})
    with pytest.raises(DuplicateKeyError):
        await coll.insert({"_id": "a", "v": 2})
    assert await coll.get("a") == {"_id": "a", "v": 1}


async def test_unique_compound_index(store: DocumentStore, name: str) -> None:
    coll = await store.collection(name, [Index(("room", "seq"), unique=True)])
    await coll.insert({"_id": "1", "room": "r1", "seq": 1})
    await coll.insert({"_id": "2", "room": "r1", "seq": 2})
    await coll.insert({"_id": "3", "room": "r2", "seq": 1})
    await coll.insert({"_id": "4", "room": "r1", "seq": True})  # a boolean is not the number 1
    await coll.insert({"_id": "5", "room": "r1", "seq": "1"})  # nor is a string
    for clash in ({"_id": "6", "room": "r1", "seq": 1}, {"_id": "6", "room": "r1", "seq": 1.0}):
        with pytest.raises(DuplicateKeyError):
            await coll.insert(clash)
    with pytest.raises(DuplicateKeyError):
        await coll.update("2", {"seq": 1})
    with pytest.raises(DuplicateKeyError):
        await coll.replace({"_id": "2", "room": "r2", "seq": 1})
    with pytest.raises(DuplicateKeyError):
        await coll.replace({"_id": "new", "room": "r2", "seq": 1}, upsert=True)
    assert await coll.count() == 5
    assert await coll.get("2") == {"_id": "2", "room": "r1", "seq": 2}


async def test_unique_index_treats_missing_as_null(store: DocumentStore, name: str) -> None:
    coll = await store.collection(name, [Index(("email",), unique=True)])
    await coll.insert({"_id": "a"})
    with pytest.raises(DuplicateKeyError):
        await coll.insert({"_id": "b"})
    with pytest.raises(DuplicateKeyError):
        await coll.insert({"_id": "c", "email": None})
    await coll.insert({"_id": "d", "email": "d@example.org"})
    assert await ids(coll) == ["a", "d"]


async def test_non_unique_indexes_allow_duplicates(store: DocumentStore, name: str) -> None:
    coll = await store.collection(name, [Index(("room",)), Index(("meta.kind", "n")), Index(("_id",))])
    for i in range(4):
        await coll.insert({"_id": str(i), "room": "r1", "n": i % 2, "meta": {"kind": "k"}})
    assert await coll.count({"room": "r1"}) == 4
    assert await ids(coll, {"meta.kind": "k", "n": 1}) == ["1", "3"]


async def test_redefining_index_uniqueness_fails(store: DocumentStore, name: str) -> None:
    await store.collection(name, [Index(("room",))])
    with pytest.raises(StorageError):
        await store.collection(name, [Index(("room",), unique=True)])


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        (None, ["a", "b", "c", "d", "e", "f"]),
        ({}, ["a", "b", "c", "d", "e", "f"]),
        # equality: numbers compare across int/float, never with strings or booleans
        ({"n": 1}, ["a"]),
        ({"n": 3.0}, ["c"]),
        ({"n": "2"}, ["e"]),
        ({"n": 2}, []),
        ({"s": "apple"}, ["a"]),
        ({"flag": True}, ["a"]),
        ({"flag": 1}, ["e"]),
        ({"flag": False}, ["b"]),
        ({"flag": 0}, ["f"]),
        # None matches null and missing, also below a null or missing parent
        ({"flag": None}, ["c", "d"]),
        ({"n": None}, ["d"]),
        ({"s": None}, ["e", "f"]),
        ({"meta.rank": None}, ["c", "d", "f"]),
        ({"meta.kind": "x"}, ["a", "c"]),
        ({"meta.kind": "x", "n": {"$gt": 1}}, ["c"]),
        # $ne also matches missing fields
        ({"flag": {"$ne": True}}, ["b", "c", "d", "e", "f"]),
        ({"flag": {"$ne": None}}, ["a", "b", "e", "f"]),
        ({"n": {"$ne": 1}}, ["b", "c", "d", "e", "f"]),
        ({"meta.kind": {"$ne": "x"}}, ["b", "d", "e", "f"]),
        # ranges stay within the bound's type
        ({"n": {"$gt": 1}}, ["b", "c"]),
        ({"n": {"$gte": 1}}, ["a", "b", "c"]),
        ({"n": {"$lt": 3}}, ["a", "b", "f"]),
        ({"n": {"$lte": 0}}, ["f"]),
        ({"n": {"$gt": 0, "$lt": 3}}, ["a", "b"]),
        ({"n": {"$gte": ""}}, ["e"]),
        ({"s": {"$gt": "b"}}, ["b", "c", "d"]),
        ({"s": {"$lt": "banana"}}, ["a"]),
        ({"s": {"$lte": "banana"}}, ["a", "b"]),
        ({"flag": {"$gte": 0}}, ["e", "f"]),
        ({"meta.rank": {"$gte": 1}}, ["a", "b"]),
        ({"meta.rank": {"$lt": "3"}}, ["e"]),
        # $in
        ({"n": {"$in": [1, 3]}}, ["a", "c"]),
        ({"n": {"$in": [None, "2"]}}, ["d", "e"]),
        ({"s": {"$in": [None]}}, ["e", "f"]),
        ({"flag": {"$in": [True, 0]}}, ["a", "f"]),
        ({"n": {"$in": []}}, []),
        ({"meta.kind": {"$in": ["y", "z"]}}, ["b", "e"]),
        ({"_id": {"$in": ["a", "zz", "f"]}}, ["a", "f"]),
        ({"_id": {"$gt": "d"}}, ["e", "f"]),
    ],
)
async def test_find_filters(store: DocumentStore, name: str, where: Any, expected: list[str]) -> None:
    coll = await sample(store, name)
    assert await ids(coll, where) == expected
    assert await coll.count(where) == len(expected)


async def test_filter_values_are_bound_not_interpolated(store: DocumentStore, name: str) -> None:
    coll = await store.collection(name, [Index(("s",))])
    tricky = "x' OR '1'='1"
    await coll.insert({"_id": "t", "s": tricky})
    await coll.insert({"_id": "u", "s": "plain"})
    assert await ids(coll, {"s": tricky}) == ["t"]
    assert await ids(coll, {"s": "' OR 1=1 --"}) == []


@pytest.mark.parametrize(
    ("sort", "expected"),
    [
        ([("n", ASCENDING)], ["d", "f", "a", "b", "c", "e"]),
        ([("n", DESCENDING)], ["e", "c", "b", "a", "f", "d"]),
        # null and missing tie (broken by _id), then numbers, then booleans
        ([("flag", ASCENDING)], ["c", "d", "f", "e", "b", "a"]),
        ([("flag", DESCENDING)], ["a", "b", "e", "f", "c", "d"]),
        ([("meta.rank", ASCENDING)], ["c", "d", "f", "b", "a", "e"]),
        ([("meta.kind", ASCENDING), ("n", DESCENDING)], ["f", "d", "c", "a", "b", "e"]),
        ([("_id", DESCENDING)], ["f", "e", "d", "c", "b", "a"]),
    ],
)
async def test_find_sort(store: DocumentStore, name: str, sort: Any, expected: list[str]) -> None:
    coll = await sample(store, name)
    assert await ids(coll, sort=sort) == expected


@pytest.mark.parametrize(
    ("where", "sort", "skip", "limit", "expected"),
    [
        # several ranks in one $in, sorted across them
        (
            {"flag": {"$in": [True, 0, None, False]}},
            [("flag", DESCENDING)],
            0,
            None,
            ["a", "b", "f", "c", "d"],
        ),
        ({"flag": {"$in": [True, False]}}, [("flag", ASCENDING)], 0, None, ["b", "a"]),
        ({"flag": {"$in": [1, 0]}}, [("flag", DESCENDING)], 0, None, ["e", "f"]),
        # a range pins its field to numbers (or strings), sorted either way
        ({"n": {"$gt": 0}}, [("n", DESCENDING)], 0, None, ["c", "b", "a"]),
        ({"n": {"$lt": 3}}, [("n", ASCENDING)], 1, 2, ["a", "b"]),
        ({"s": {"$gt": "b"}}, [("s", DESCENDING)], 1, 1, ["c"]),
        # an equality pins the first sort key; the next one orders
        ({"meta.kind": "x"}, [("meta.kind", ASCENDING), ("n", DESCENDING)], 0, None, ["c", "a"]),
        ({"flag": None}, [("flag", ASCENDING), ("n", ASCENDING)], 0, None, ["d", "c"]),
        # $ne pins nothing
        ({"flag": {"$ne": None}}, [("flag", ASCENDING)], 0, None, ["f", "e", "b", "a"]),
    ],
)
async def test_find_sort_on_filtered_indexed_fields(
    store: DocumentStore, name: str, where: Any, sort: Any, skip: int, limit: int | None, expected: list[str]
) -> None:
    # What a filter implies about a sorted field (its type, its value) never changes the order, whether an
    # index serves the query or not.
    indexes = [Index(("n",)), Index(("flag", "n")), Index(("meta.kind", "n")), Index(("s",))]
    for coll in (await sample(store, name), await store.collection(f"{name}_ix", indexes)):
        if coll.name.endswith("_ix"):
            for doc in SAMPLE:
                await coll.insert(dict(doc))
        assert await ids(coll, where, sort=sort, skip=skip, limit=limit) == expected, coll.name


async def test_find_limit(store: DocumentStore, name: str) -> None:
    coll = await sample(store, name)
    assert await ids(coll, sort=[("n", ASCENDING)], limit=2) == ["d", "f"]
    assert await ids(coll, {"meta.kind": "x"}, limit=1) == ["a"]
    assert await ids(coll, limit=10) == ["a", "b", "c", "d", "e", "f"]
    assert await ids(coll, limit=0) == []


async def test_find_skip(store: DocumentStore, name: str) -> None:
    # Paging: skip the first pages in sort order (ties by `_id`), with or without a limit.
    coll = await sample(store, name)
    assert await ids(coll, sort=[("n", ASCENDING)], skip=2, limit=2) == ["a", "b"]
    assert await ids(coll, sort=[("n", ASCENDING)], skip=4) == ["c", "e"]
    assert await ids(coll, {"meta.kind": "x"}, skip=1) == ["c"]
    assert await ids(coll, skip=6) == []
    assert await ids(coll, skip=10, limit=3) == []
    assert await ids(coll, skip=1, limit=0) == []


async def test_in_takes_thousands_of_values_with_other_conditions(store: DocumentStore, name: str) -> None:
    # The chat service loads the members of every room of a user in one query: `room $in [500 ids]`,
    # and more (beyond SQLite's historical limit of 999 bound parameters) must work as well.
    coll = await store.collection(name, [Index(("room", "pos"))])
    for i in range(300):
        await coll.insert(
            {"_id": f"m{i:04d}", "room": f"r{i % 30:02d}", "pos": i, "org": "o" if i % 2 else "p"}
        )
    wanted = [f"r{i:02d}" for i in range(0, 30, 3)] + [f"missing{i}" for i in range(5000)]
    found = await coll.find(
        {"org": "o", "room": {"$in": wanted}}, sort=[("room", ASCENDING), ("pos", ASCENDING)]
    )
    expected = sorted((f"r{i % 30:02d}", i) for i in range(300) if i % 2 and (i % 30) % 3 == 0)
    assert [(doc["room"], doc["pos"]) for doc in found] == expected
    assert await coll.count({"room": {"$in": wanted}}) == 100


async def test_count(store: DocumentStore, name: str) -> None:
    coll = await store.collection(name)
    assert await coll.count() == 0
    coll = await sample(store, name)
    assert await coll.count() == 6
    assert await coll.count({"meta.kind": "x"}) == 2


async def test_replace_without_where(store: DocumentStore, name: str) -> None:
    coll = await store.collection(name)
    await coll.insert({"_id": "a", "old": 1})
    assert await coll.replace({"_id": "a", "new": 2}) is True
    assert await coll.get("a") == {"_id": "a", "new": 2}
    assert await coll.replace({"_id": "missing", "x": 1}) is False
    assert await coll.get("missing") is None


async def test_replace_compare_and_set(store: DocumentStore, name: str) -> None:
    coll = await store.collection(name)
    await coll.insert({"_id": "a", "version": 1, "v": "one"})
    assert await coll.replace({"_id": "a", "version": 2, "v": "two"}, where={"version": 1}) is True
    assert await coll.replace({"_id": "a", "version": 2, "v": "stale"}, where={"version": 1}) is False
    # A caller's own `_id` condition narrows the write; it cannot redirect it.
    assert await coll.replace({"_id": "a", "version": 3}, where={"_id": "b", "version": 2}) is False
    assert await coll.get("a") == {"_id": "a", "version": 2, "v": "two"}


async def test_replace_upsert(store: DocumentStore, name: str) -> None:
    coll = await store.collection(name)
    assert await coll.replace({"_id": "a", "version": 1}, upsert=True) is True
    assert await coll.replace({"_id": "b", "version": 1}, where={"version": 0}, upsert=True) is True
    assert await coll.get("b") == {"_id": "b", "version": 1}
    # Exists but does not match: nothing written.
    assert await coll.replace({"_id": "a", "version": 9}, where={"version": 5}, upsert=True) is False
    assert await coll.get("a") == {"_id": "a", "version": 1}
    assert await coll.replace({"_id": "a", "version": 2}, where={"version": 1}, upsert=True) is True
    assert await coll.replace({"_id": "a", "version": 3}, upsert=True) is True
    assert await coll.get("a") == {"_id": "a", "version": 3}
    assert await coll.count() == 2


async def test_update(store: DocumentStore, name: str) -> None:
    coll = await store.collection(name)
    await coll.insert({"_id": "a", "version": 1, "keep": "me", "s": "x"})
    fields = {"version": 2, "s": "123", "flag": True, "none": None, "nested": {"list": [1, False, None, "x"]}}
    assert await coll.update("a", fields, where={"version": 1}) is True
    assert await coll.get("a") == {"_id": "a", "keep": "me", **fields}
    assert await ids(coll, {"flag": True, "s": "123"}) == ["a"]
    assert await coll.update("a", {"version": 3}, where={"version": 1}) is False
    assert await coll.update("a", {"version": 3}) is True
    assert await coll.update("missing", {"version": 1}) is False
    assert (await coll.get("a") or {})["version"] == 3


async def test_delete(store: DocumentStore, name: str) -> None:
    coll = await store.collection(name)
    await coll.insert({"_id": "a", "version": 1})
    await coll.insert({"_id": "b", "version": 1})
    assert await coll.delete("a", where={"version": 2}) is False
    assert await coll.get("a") is not None
    assert await coll.delete("a", where={"version": 1}) is True
    assert await coll.delete("a") is False
    assert await coll.delete("b") is True
    assert await coll.count() == 0


async def test_delete_many(store: DocumentStore, name: str) -> None:
    coll = await sample(store, name)
    assert await coll.delete_many({"meta.kind": "x"}) == 2
    assert await coll.delete_many({"meta.kind": "x"}) == 0
    assert await ids(coll) == ["b", "d", "e", "f"]
    assert await coll.delete_many({}) == 4
    assert await coll.count() == 0


async def test_collection_is_idempotent_and_cached(store: DocumentStore, name: str) -> None:
    unique = Index(("k",), unique=True)
    first = await store.collection(name, [unique])
    again = await store.collection(name, [unique])
    assert again is first
    await first.insert({"_id": "a", "k": 1})
    grown = await store.collection(name, [unique, Index(("other",))])
    assert grown is first
    assert await grown.get("a") == {"_id": "a", "k": 1}
    with pytest.raises(DuplicateKeyError):
        await grown.insert({"_id": "b", "k": 1})
    other = await store.collection(f"{name}_2")
    await other.insert({"_id": "a", "k": 1})  # collections are separate namespaces
    assert await other.count() == 1


async def test_concurrent_compare_and_set_has_one_winner(store: DocumentStore, name: str) -> None:
    coll = await store.collection(name)
    await coll.insert({"_id": "k", "version": 1})
    results = await asyncio.gather(
        *(coll.replace({"_id": "k", "version": 2, "writer": i}, where={"version": 1}) for i in range(20))
    )
    assert results.count(True) == 1
    assert await coll.get("k") == {"_id": "k", "version": 2, "writer": results.index(True)}
    updates = await asyncio.gather(
        *(coll.update("k", {"version": 3}, where={"version": 2}) for _ in range(20))
    )
    assert updates.count(True) == 1


@pytest.mark.parametrize(
    "where",
    [
        {"$or": [{"a": 1}]},
        {"a": {"$regex": "x"}},
        {"a": {"$eq": 1}},
        {"a": {"$gt": None}},
        {"a": {"$lt": True}},
        {"a": {"$in": "ab"}},
        {"a": {"$in": [[1]]}},
        {"a": {}},
        {"a": {"b": 1}},
        {"a": [1, 2]},
        {"a": float("nan")},
        {"a b": 1},
        {"a..b": 1},
        {"a'); DROP TABLE x; --": 1},
    ],
)
async def test_both_adapters_reject_the_same_filters(store: DocumentStore, name: str, where: Any) -> None:
    coll = await store.collection(name)
    with pytest.raises(ValueError):  # noqa: PT011 - the message varies by mistake
        await coll.find(where)
    with pytest.raises(ValueError):  # noqa: PT011
        await coll.delete_many(where)
    with pytest.raises(ValueError):  # noqa: PT011
        await coll.update("a", {"x": 1}, where=where)


async def test_update_many_sets_fields_on_every_match(store: DocumentStore, name: str) -> None:
    coll = await store.collection(name)
    for i, flag in enumerate([False, False, True]):
        await coll.insert({"_id": f"d{i}", "published": flag, "n": i})
    assert await coll.update_many({"_id": {"$in": ["d0", "d2"]}}, {"published": True, "at": "now"}) == 2
    assert [d["_id"] for d in await coll.find({"published": True}, sort=[("_id", 1)])] == ["d0", "d2"]
    assert (await coll.get("d0")) == {"_id": "d0", "published": True, "n": 0, "at": "now"}
    assert await coll.update_many({"n": {"$gt": 10}}, {"published": False}) == 0
    with pytest.raises(ValueError):  # noqa: PT011 - _id is immutable
        await coll.update_many({"n": 1}, {"_id": "x"})


async def test_nested_field_names_may_be_any_string(store: DocumentStore, name: str) -> None:
    # Client metadata is stored as given: dotted and `$` names are fine below the top level.
    coll = await store.collection(name)
    doc = {"_id": "a", "metadata": {"a.b": 1, "$weird": {"x.y": [True]}, "": None}}
    await coll.insert(doc)
    assert await coll.get("a") == doc


@pytest.mark.parametrize(
    "doc",
    [
        {"v": 1},
        {"_id": 1},
        {"_id": "a", "at": datetime.datetime(2026, 1, 1)},
        {"_id": "a", "$set": 1},
        {"_id": "a", "a.b": 1},
        {"_id": "a", "big": 2**64},
        {"_id": "a", "f": float("inf")},
        {"_id": "a", "t": (1, 2)},
    ],
)
async def test_both_adapters_reject_the_same_documents(store: DocumentStore, name: str, doc: Any) -> None:
    coll = await store.collection(name)
    with pytest.raises(ValueError):  # noqa: PT011
        await coll.insert(doc)
    with pytest.raises(ValueError):  # noqa: PT011
        await coll.replace(doc, upsert=True)
    assert await coll.count() == 0


async def test_invalid_names_and_arguments(store: DocumentStore, name: str) -> None:
    for bad in ("users; DROP TABLE x", "1abc", "", "a.b", "sqlite_master", "x" * 64, 'q"q'):
        with pytest.raises(ValueError, match="collection name"):
            await store.collection(bad)
    with pytest.raises(ValueError, match="index"):
        await store.collection(name, [Index(())])
    coll = await store.collection(name)
    with pytest.raises(ValueError, match="sort"):
        await coll.find(sort=[("a", 0)])
    with pytest.raises(ValueError, match="limit"):
        await coll.find(limit=-1)
    with pytest.raises(ValueError, match="skip"):
        await coll.find(skip=-1)
    for fields in ({}, {"_id": "b"}, {"a.b": 1}):
        with pytest.raises(ValueError, match="update"):
            await coll.update("a", fields)
    with pytest.raises(ValueError, match="ids are strings"):
        await coll.get(1)  # type: ignore[arg-type]


async def test_ping(store: DocumentStore) -> None:
    await store.ping()


# --- adapter specifics --------------------------------------------------------------------------------


async def test_sqlite_stores_sharing_a_file_see_writes_and_cas_correctly(tmp_path: Path) -> None:
    path = str(tmp_path / "shared.sqlite3")
    one, two = SqliteStore(path), SqliteStore(path)
    await one.start()
    await two.start()
    try:
        a = await one.collection("rooms", [Index(("slug",), unique=True)])
        b = await two.collection("rooms")
        await a.insert({"_id": "r", "slug": "main", "version": 1})
        assert await b.get("r") == {"_id": "r", "slug": "main", "version": 1}
        with pytest.raises(DuplicateKeyError):  # the index lives in the file, not in the store
            await b.insert({"_id": "s", "slug": "main"})
        assert await b.update("r", {"version": 2}, where={"version": 1}) is True
        assert await a.find({"version": 2}) == [{"_id": "r", "slug": "main", "version": 2}]
        results = await asyncio.gather(
            *(
                coll.replace({"_id": "r", "slug": "main", "version": 3, "by": i}, where={"version": 2})
                for i in range(10)
                for coll in (a, b)
            )
        )
        assert results.count(True) == 1
        assert (await a.get("r") or {})["version"] == (await b.get("r") or {})["version"] == 3
    finally:
        await one.close()
        await two.close()
    with sqlite3.connect(path) as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone() == ("wal",)


async def test_sqlite_statement_waits_for_a_lock_held_elsewhere_off_the_loop(tmp_path: Path) -> None:
    # Statements run on the event loop; one that finds the file locked by another connection must wait for
    # it on the store's thread (the loop keeps running) and later statements must queue behind it, in order.
    path = str(tmp_path / "locked.sqlite3")
    store = SqliteStore(path)
    await store.start()
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        things = await store.collection("things")
        holder.execute("BEGIN IMMEDIATE")
        first = asyncio.create_task(things.insert({"_id": "a", "n": 1}))
        await asyncio.sleep(0.1)  # the loop is not blocked while the insert waits
        assert not first.done()
        second = asyncio.create_task(things.update("a", {"n": 2}))
        await asyncio.sleep(0.05)
        assert not second.done()
        holder.execute("COMMIT")
        await asyncio.wait_for(asyncio.gather(first, second), timeout=5)
        assert await things.get("a") == {"_id": "a", "n": 2}
        # Lock released: statements run on the loop again.
        await things.insert({"_id": "b"})
        assert await things.count() == 2
    finally:
        holder.close()
        await store.close()


async def test_sqlite_lock_held_beyond_the_busy_timeout_is_unavailable(tmp_path: Path) -> None:
    path = str(tmp_path / "stuck.sqlite3")
    store = SqliteStore(path, busy_timeout=0.2)
    await store.start()
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        things = await store.collection("things")
        holder.execute("BEGIN IMMEDIATE")
        with pytest.raises(StorageUnavailable):
            await things.insert({"_id": "a"})
        holder.execute("ROLLBACK")
        await things.insert({"_id": "a"})
        assert await things.get("a") == {"_id": "a"}
    finally:
        holder.close()
        await store.close()


async def test_sqlite_checkpoints_the_log_into_the_database(tmp_path: Path) -> None:
    # Automatic checkpoints are off (they would run inside a commit, on the loop); the store runs its own.
    path = tmp_path / "checkpointed.sqlite3"
    store = SqliteStore(str(path))
    store.CHECKPOINT_EVERY = 50
    await store.start()
    try:
        things = await store.collection("things")
        for i in range(60):  # the 50th write (the table's creation is the first) starts a checkpoint
            await things.insert({"_id": f"t{i}", "pad": "x" * 1000})
        for _ in range(250):
            if store._checkpointing is None:
                break
            await asyncio.sleep(0.02)
        assert path.stat().st_size >= 49 * 1000  # the rows written before it left the WAL for the file
    finally:
        await store.close()


async def test_sqlite_queries_use_the_expression_indexes(tmp_path: Path) -> None:
    # Filters and indexes must spell a field's key expression identically, or SQLite scans silently.
    path = str(tmp_path / "plan.sqlite3")
    store = SqliteStore(path)
    await store.start()
    await store.collection("events", [Index(("room", "seq"), unique=True), Index(("meta.kind",))])
    await store.close()
    with sqlite3.connect(path) as raw:
        for where in (
            {"room": "r", "seq": 3},
            {"room": "r", "seq": {"$gt": 3}},
            {"meta.kind": {"$in": ["a", None]}},
        ):
            clause, params = _where(where)
            plan = raw.execute(
                f'EXPLAIN QUERY PLAN SELECT doc FROM "events" WHERE {clause}', params
            ).fetchall()
            assert "USING INDEX" in str(plan), (where, plan)


async def test_sqlite_replaces_indexes_built_on_older_expressions(tmp_path: Path) -> None:
    # A database from before the (rank, key) index columns: its `ix:` indexes no query can use are dropped
    # and the current ones built; an old unique index still may not be redefined as non-unique.
    path = str(tmp_path / "old.sqlite3")
    with sqlite3.connect(path) as raw:
        raw.execute('CREATE TABLE "events" (id TEXT PRIMARY KEY, doc TEXT NOT NULL)')
        raw.execute("""INSERT INTO "events" VALUES ('a', '{"_id": "a", "room": "r", "code": 1}')""")
        raw.execute("""CREATE INDEX "ix:events:room" ON "events" (json_extract(doc, '$.room'))""")
        raw.execute("""CREATE UNIQUE INDEX "ix:events:code" ON "events" (json_extract(doc, '$.code'))""")
    store = SqliteStore(path)
    await store.start()
    try:
        coll = await store.collection("events", [Index(("room",))])
        with pytest.raises(StorageError):
            await store.collection("events", [Index(("code",))])
        assert await ids(coll, {"room": "r"}, sort=[("room", ASCENDING)]) == ["a"]
    finally:
        await store.close()
    with sqlite3.connect(path) as raw:
        names = {row[0] for row in raw.execute("SELECT name FROM pragma_index_list('events')")}
    assert "ix:events:room" not in names
    assert "ix2:events:room" in names
    assert "ix:events:code" in names  # refused, so left alone


async def test_sqlite_store_unavailable_once_closed(tmp_path: Path) -> None:
    store = SqliteStore(str(tmp_path / "closed.sqlite3"))
    await store.start()
    coll = await store.collection("things")
    await store.close()
    with pytest.raises(StorageUnavailable):
        await store.ping()
    with pytest.raises(StorageUnavailable):
        await coll.get("a")


async def test_sqlite_unopenable_file_is_unavailable(tmp_path: Path) -> None:
    with pytest.raises(StorageUnavailable):
        await SqliteStore(str(tmp_path / "no" / "such" / "dir.sqlite3")).start()


async def test_open_store_sqlite_creates_the_directory(tmp_path: Path) -> None:
    path = tmp_path / "data" / "nested" / "svc.sqlite3"
    store = await open_store(mongo_url=None, sqlite_path=str(path))
    try:
        assert isinstance(store, SqliteStore)
        await (await store.collection("things")).insert({"_id": "a"})
    finally:
        await store.close()
    assert path.exists()
    memory = await open_store(mongo_url=None, sqlite_path=":memory:")
    await memory.ping()
    await memory.close()


async def test_mongo_unreachable_is_storage_unavailable() -> None:
    store = MongoStore("mongodb://127.0.0.1:9/parley", server_selection_timeout=0.2)
    try:
        with pytest.raises(StorageUnavailable):
            await store.ping()
        with pytest.raises(StorageUnavailable):
            await (await store.collection("things")).get("a")
    finally:
        await store.close()


async def test_open_store_mongo_fails_fast_when_unreachable() -> None:
    with pytest.raises(StorageUnavailable):
        await open_store(mongo_url="mongodb://127.0.0.1:9/parley", sqlite_path="unused.sqlite3")


@pytest.mark.parametrize(
    "value", [2**63, -(2**63) - 1, 2**64, float("inf"), float("nan"), {"deep": [1, {"x": 2**70}]}]
)
async def test_values_outside_json_raise_invalid_value_on_writes_and_filters(
    store: DocumentStore, name: str, value: Any
) -> None:
    """Such values come from requests: services answer `InvalidValue` 400, so both adapters must raise it."""
    coll = await store.collection(name)
    await coll.insert({"_id": "a", "n": 1})
    with pytest.raises(InvalidValue):
        await coll.insert({"_id": "b", "meta": value})
    with pytest.raises(InvalidValue):
        await coll.update("a", {"meta": value})
    if not isinstance(value, dict):
        with pytest.raises(InvalidValue):
            await coll.find({"n": {"$gte": value}})
    assert await coll.count() == 1


# The listing shapes the services page with (conference `MeetingRepository.page`, `due`, `invitations`,
# the commit log's `owed`): each must read its index in order, never sort every match (a temp B-tree),
# or deep pages (`skip`) cost the whole match.
LISTING_INDEXES = [
    Index(("org", "dialect", "canceled", "createdMs")),
    Index(("org", "dialect", "createdMs")),
    Index(("org", "dialect", "startsMs")),
    Index(("meeting", "createdMs")),
    Index(("endsMs",)),
]
LISTING = {"org": "o", "dialect": "coviu"}
SORTED_QUERIES: list[tuple[Any, Any, str]] = [
    ({**LISTING, "canceled": False}, [("createdMs", ASCENDING)], "org,dialect,canceled,createdMs"),
    ({**LISTING, "canceled": False}, [("createdMs", DESCENDING)], "org,dialect,canceled,createdMs"),
    (LISTING, [("createdMs", ASCENDING)], "org,dialect,createdMs"),
    ({**LISTING, "startsMs": {"$gte": 10, "$lte": 5000}}, [("startsMs", ASCENDING)], "org,dialect,startsMs"),
    (
        {"meeting": {"$in": ["m1", "m7"]}},
        [("meeting", ASCENDING), ("createdMs", ASCENDING)],
        "meeting,createdMs",
    ),
    ({"endsMs": {"$lte": 5000}}, [("endsMs", ASCENDING)], "endsMs"),
    (None, [("endsMs", ASCENDING)], "endsMs"),
]


async def _plans(tmp_path: Path, where: Any, sort: Any) -> tuple[list[str], list[str]]:
    """The query plans (detail column) of the `find` and the `count` this store runs for `where`."""
    path = str(tmp_path / "plan.sqlite3")
    store = SqliteStore(path)
    await store.start()
    statements: list[tuple[str, list[Any]]] = []
    read = store._read

    async def recording(sql: str, params: Any) -> list[Any]:
        statements.append((sql, list(params)))
        return await read(sql, params)

    try:
        coll = await store.collection("meetings", LISTING_INDEXES)
        for i in range(300):
            await coll.insert(
                {
                    "_id": f"{i:04d}",
                    "org": "o" if i % 3 else "p",
                    "dialect": "coviu",
                    "canceled": i % 5 == 0,
                    "createdMs": i,
                    "startsMs": (i * 37) % 300,
                    "endsMs": None if i % 4 else i * 10,
                    "meeting": f"m{i % 10}",
                }
            )
        store._read = recording  # type: ignore[method-assign]
        await coll.find(where, sort=sort, skip=20, limit=10)
        await coll.count(where)
    finally:
        await store.close()
    (find_sql, find_params), (count_sql, count_params) = statements[-2:]
    with sqlite3.connect(path) as raw:
        find_plan = [row[3] for row in raw.execute(f"EXPLAIN QUERY PLAN {find_sql}", find_params)]
        count_plan = [row[3] for row in raw.execute(f"EXPLAIN QUERY PLAN {count_sql}", count_params)]
    return find_plan, count_plan


@pytest.mark.parametrize(("where", "sort", "fields"), SORTED_QUERIES)
async def test_sqlite_sorted_queries_read_their_index_in_order(
    tmp_path: Path, where: Any, sort: Any, fields: str
) -> None:
    find_plan, count_plan = await _plans(tmp_path, where, sort)
    assert any(f"INDEX ix2:meetings:{fields} " in f"{step} " for step in find_plan), find_plan
    assert "USE TEMP B-TREE FOR ORDER BY" not in find_plan, find_plan
    if all(direction == ASCENDING for _, direction in sort):
        # Not even the `_id` tie-breaker is sorted apart ("RIGHT PART OF ORDER BY"): it ends the index.
        # (Descending sorts still break ties by ascending `_id`, so they sort each run of ties.)
        assert not any("TEMP B-TREE" in step for step in find_plan), find_plan
    if where is not None:
        assert any("USING" in step and "INDEX" in step for step in count_plan), count_plan
