"""The MongoDB adapter, on PyMongo's native asyncio client (`AsyncMongoClient`; motor is end of life).

Filters are already MongoDB queries; they are only validated, so this adapter accepts exactly the language
the SQLite one implements. Create and use a store on one event loop (one client per loop).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import pymongo.errors
from pymongo import AsyncMongoClient
from pymongo.asynchronous.collection import AsyncCollection

from parley_common.storage._validation import (
    check_doc,
    check_fields,
    check_id,
    check_index,
    check_limit,
    check_name,
    check_skip,
    check_sort,
    parse_filter,
)
from parley_common.storage.port import (
    ASCENDING,
    Doc,
    DuplicateKeyError,
    Filter,
    Index,
    StorageError,
    StorageUnavailable,
)

DEFAULT_DATABASE = "parley"


class MongoStore:
    """A `DocumentStore` in one MongoDB database: `database`, else the URL's path, else "parley"."""

    def __init__(
        self, url: str, *, database: str | None = None, server_selection_timeout: float = 2.0
    ) -> None:
        with _translate():
            # A short server selection timeout turns "no server" into StorageUnavailable quickly.
            self._client: AsyncMongoClient[Doc] = AsyncMongoClient(
                url, serverSelectionTimeoutMS=int(server_selection_timeout * 1000)
            )
            self._db = (
                self._client[database] if database else self._client.get_default_database(DEFAULT_DATABASE)
            )
        self._collections: dict[str, MongoCollection] = {}
        self._indexes: set[tuple[str, Index]] = set()

    async def start(self) -> None:
        """Fail fast (`StorageUnavailable`) when the server cannot be reached."""
        await self.ping()

    async def close(self) -> None:
        await self._client.close()

    async def ping(self) -> None:
        with _translate():
            await self._client.admin.command("ping")

    async def collection(self, name: str, indexes: Sequence[Index] = ()) -> MongoCollection:
        # MongoDB creates a collection on its first write; only the indexes need creating here.
        coll = self._collections.get(check_name(name))
        if coll is None:
            coll = self._collections[name] = MongoCollection(self._db[name])
        for index in indexes:
            if (name, index) not in self._indexes:
                await coll.create_index(index)
                self._indexes.add((name, index))
        return coll


class MongoCollection:
    def __init__(self, raw: AsyncCollection[Doc]) -> None:
        self.name = raw.name
        self._raw = raw

    async def create_index(self, index: Index) -> None:
        check_index(index)
        if index.fields == ("_id",):
            return  # always there, and MongoDB rejects options on it
        with _translate():
            await self._raw.create_index([(path, ASCENDING) for path in index.fields], unique=index.unique)

    async def insert(self, doc: Doc) -> None:
        check_doc(doc)
        with _translate():
            await self._raw.insert_one(doc)

    async def get(self, id: str) -> Doc | None:
        with _translate():
            return await self._raw.find_one({"_id": check_id(id)})

    async def find(
        self,
        where: Filter | None = None,
        *,
        sort: Sequence[tuple[str, int]] = (),
        limit: int | None = None,
        skip: int = 0,
    ) -> list[Doc]:
        parse_filter(where)
        order = check_sort(sort)
        check_limit(limit)
        check_skip(skip)
        if limit == 0:
            return []  # MongoDB reads limit 0 as "no limit"
        with _translate():
            cursor = self._raw.find(dict(where or {}), sort=order, limit=limit or 0, skip=skip)
            return await cursor.to_list(None)

    async def count(self, where: Filter | None = None) -> int:
        parse_filter(where)
        with _translate():
            return await self._raw.count_documents(dict(where or {}))

    async def replace(self, doc: Doc, *, where: Filter | None = None, upsert: bool = False) -> bool:
        query = _scoped(check_doc(doc), where)
        with _translate():
            try:
                result = await self._raw.replace_one(query, doc, upsert=upsert)
            except pymongo.errors.DuplicateKeyError as exc:
                # The document exists but misses `where`, so the upsert tried to insert its `_id` again.
                if upsert and (exc.details or {}).get("keyPattern") == {"_id": 1}:
                    return False
                raise
        return result.matched_count == 1 or result.upserted_id is not None

    async def update(self, id: str, fields: Doc, *, where: Filter | None = None) -> bool:
        check_fields(fields)
        with _translate():
            result = await self._raw.update_one(_scoped(check_id(id), where), {"$set": fields})
        return result.matched_count == 1

    async def update_many(self, where: Filter, fields: Doc) -> int:
        parse_filter(where)
        check_fields(fields)
        with _translate():
            result = await self._raw.update_many(dict(where), {"$set": fields})
        return result.matched_count

    async def delete(self, id: str, *, where: Filter | None = None) -> bool:
        with _translate():
            result = await self._raw.delete_one(_scoped(check_id(id), where))
        return result.deleted_count == 1

    async def delete_many(self, where: Filter) -> int:
        parse_filter(where)
        with _translate():
            result = await self._raw.delete_many(dict(where))
        return result.deleted_count


def _scoped(doc_id: str, where: Filter | None) -> dict[str, Any]:
    parse_filter(where)
    # `$and` rather than merging keys, so a caller's own `_id` condition cannot replace the scope.
    return {"$and": [{"_id": doc_id}, dict(where)]} if where else {"_id": doc_id}


@contextmanager
def _translate() -> Iterator[None]:
    try:
        yield
    except pymongo.errors.DuplicateKeyError as exc:
        raise DuplicateKeyError(str(exc)) from exc
    except pymongo.errors.ConnectionFailure as exc:
        # Includes ServerSelectionTimeoutError, AutoReconnect and NetworkTimeout.
        raise StorageUnavailable(str(exc)) from exc
    except pymongo.errors.PyMongoError as exc:
        raise StorageError(str(exc)) from exc
