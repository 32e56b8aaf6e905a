"""The storage port: a small document store every service persists through.

Two adapters implement it (`sqlite.SqliteStore`, the embedded default, and `mongo.MongoStore`) and both pass
the contract suite in `libs/common/tests/test_storage_contract.py`. Documents are JSON-compatible dicts
(str, int, float, bool, None, list, dict) keyed by a string `_id`. Filters are a deliberately small subset of
MongoDB's query language so that both adapters can honour them exactly:

    {"field": value}                      equality (value may be None: matches null or missing)
    {"a.b": value}                        dotted paths reach into nested objects
    {"field": {"$gt"|"$gte"|"$lt"|"$lte"|"$ne": value}}
    {"field": {"$in": [v1, v2]}}

Several keys are ANDed. Optimistic concurrency is a conditional write: `replace(doc, where={"version": 3})`
writes only if the stored document still has version 3, and reports whether it did.

Details both adapters share (MongoDB's semantics, enforced by the contract suite):

- Collection names and field paths are identifiers (`[A-Za-z_][A-Za-z0-9_]*`, dotted for paths; collection
  names at most 63 chars, not `sqlite_*`). Filter values are scalars (str, int, float, bool, None); range
  bounds are numbers or strings and only match values of that kind; booleans never equal numbers; 1 == 1.0.
  `$ne` and `$in: [None, ...]` also match a missing field. Filtering, sorting and indexing address scalar
  (or missing) values; how array-valued fields behave there is not part of the contract.
- `find` orders null/missing < numbers < strings < objects < arrays < booleans, and breaks ties by `_id`
  (without `sort`, results come in `_id` order). `limit=0` returns nothing (it is not "no limit").
- A unique index treats null and missing alike, so at most one document may lack its fields (as MongoDB).
- `_id` must be a string; documents hold JSON values only (64-bit ints, finite floats, no `$`-prefixed or
  dotted keys). Invalid arguments raise `ValueError`, not `StorageError`; a value that is not such JSON
  (out-of-range integer, non-finite float, other type) raises its subclass `InvalidValue`, which services
  answer as the client's error (400), since such values come from requests.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import msgspec

Doc = dict[str, Any]
Filter = Mapping[str, Any]
ASCENDING = 1
DESCENDING = -1


class Index(msgspec.Struct, frozen=True):
    """A secondary index over one or more (dotted) fields."""

    fields: tuple[str, ...]
    unique: bool = False


class StorageError(Exception):
    """Base of every error the port raises."""


class DuplicateKeyError(StorageError):
    """An insert (or upsert) collided with an existing `_id` or a unique index."""


class StorageUnavailable(StorageError):
    """The backing database cannot be reached."""


class InvalidValue(ValueError):
    """A document or filter value outside the JSON the store keeps (see the module docstring)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class Collection(Protocol):
    name: str

    async def insert(self, doc: Doc) -> None:
        """Insert a new document; `DuplicateKeyError` if its `_id` or a unique index value exists."""
        ...

    async def get(self, id: str) -> Doc | None: ...

    async def find(
        self,
        where: Filter | None = None,
        *,
        sort: Sequence[tuple[str, int]] = (),
        limit: int | None = None,
        skip: int = 0,
    ) -> list[Doc]:
        """Matching documents in `sort` order, leaving out the first `skip` of them (paging)."""
        ...

    async def count(self, where: Filter | None = None) -> int: ...

    async def replace(self, doc: Doc, *, where: Filter | None = None, upsert: bool = False) -> bool:
        """Replace the document with `doc["_id"]` if it also matches `where`.

        Returns True when a document was written. With `upsert=True` a missing document is inserted (a
        document that exists but does not match `where` is left alone and False is returned).
        """
        ...

    async def update(self, id: str, fields: Doc, *, where: Filter | None = None) -> bool:
        """Set top-level `fields` on the document `id` if it matches `where`; True when it did."""
        ...

    async def update_many(self, where: Filter, fields: Doc) -> int:
        """Set top-level `fields` on every document matching `where`; how many matched."""
        ...

    async def delete(self, id: str, *, where: Filter | None = None) -> bool: ...

    async def delete_many(self, where: Filter) -> int: ...


class DocumentStore(Protocol):
    async def collection(self, name: str, indexes: Sequence[Index] = ()) -> Collection:
        """Open (creating if needed) a collection and its indexes. Idempotent."""
        ...

    async def ping(self) -> None:
        """Raise `StorageUnavailable` unless the database answers."""
        ...

    async def close(self) -> None: ...
