"""Fixtures: one shared stack (nats-server, conference service, two gateways) for the API tests."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest

from tests.integration.helpers import Api, Stack, token


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    root: Path = tmp_path_factory.mktemp("stack")
    running = Stack(root, gateways=2, env={"PARLEY_LONGPOLL_SECONDS": "1"})
    running.start()
    yield running
    running.stop()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


@pytest.fixture
def api(stack: Stack, session: aiohttp.ClientSession) -> Api:
    return Api(session, stack.url, token("alice"))
