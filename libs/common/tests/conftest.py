"""Fixtures for the storage contract suite: a fresh store per test, for every adapter that can run here."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from parley_common.storage import DocumentStore, MongoStore, SqliteStore
from pymongo import AsyncMongoClient

MONGO_IMAGE = "mongo:7.0"


def _docker_problem() -> str | None:
    """Why no Docker engine answers, or None when one does (the CLI being installed proves nothing)."""
    try:
        import docker

        client = docker.from_env()
        try:
            client.ping()
        finally:
            client.close()
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def _mongo_container_class() -> Any:
    try:
        from testcontainers.community.mongodb import MongoDbContainer
    except ImportError:  # testcontainers before the `community` package split
        from testcontainers.mongodb import MongoDbContainer
    return MongoDbContainer


@pytest.fixture(scope="session")
def mongo_url() -> Iterator[str]:
    """`TEST_MONGO_URL`, else a throwaway MongoDB container, else skip the MongoDB cases."""
    url = os.environ.get("TEST_MONGO_URL")
    if url:
        yield url
        return
    problem = _docker_problem()
    if problem is not None:
        pytest.skip(f"MongoDB cases need TEST_MONGO_URL or a running Docker engine ({problem})")
    with _mongo_container_class()(MONGO_IMAGE) as container:
        yield container.get_connection_url()


@pytest.fixture(params=["sqlite-file", "sqlite-memory", "mongo"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[DocumentStore]:
    """A started store on a database no other test uses."""
    if request.param != "mongo":
        path = str(tmp_path / "store.sqlite3") if request.param == "sqlite-file" else ":memory:"
        sqlite = SqliteStore(path)
        await sqlite.start()
        yield sqlite
        await sqlite.close()
        return
    url = request.getfixturevalue("mongo_url")
    database = f"parley_test_{uuid.uuid4().hex[:12]}"
    mongo = MongoStore(url, database=database)
    await mongo.start()
    yield mongo
    await mongo.close()
    admin: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(url)
    await admin.drop_database(database)
    await admin.close()


@pytest.fixture
def name() -> str:
    """A collection name unique to the test."""
    return f"c_{uuid.uuid4().hex[:10]}"
