"""Document storage: the port, its two adapters and the factory services open their store with."""

from __future__ import annotations

from pathlib import Path

from parley_common.storage.mongo import MongoStore
from parley_common.storage.port import (
    ASCENDING,
    DESCENDING,
    Collection,
    Doc,
    DocumentStore,
    DuplicateKeyError,
    Filter,
    Index,
    InvalidValue,
    StorageError,
    StorageUnavailable,
)
from parley_common.storage.sqlite import SqliteStore

__all__ = [
    "ASCENDING",
    "DESCENDING",
    "Collection",
    "Doc",
    "DocumentStore",
    "DuplicateKeyError",
    "Filter",
    "Index",
    "InvalidValue",
    "MongoStore",
    "SqliteStore",
    "StorageError",
    "StorageUnavailable",
    "open_store",
]


async def open_store(*, mongo_url: str | None, sqlite_path: str) -> DocumentStore:
    """An open store: MongoDB when a URL is configured, else the SQLite file (its directory created).

    Raises `StorageUnavailable` when the database cannot be reached, so a service fails at start-up.
    """
    store: MongoStore | SqliteStore
    if mongo_url:
        store = MongoStore(mongo_url)
    else:
        if sqlite_path != ":memory:":
            Path(sqlite_path).parent.mkdir(parents=True, exist_ok=True)
        store = SqliteStore(sqlite_path)
    try:
        await store.start()
    except BaseException:
        await store.close()
        raise
    return store
