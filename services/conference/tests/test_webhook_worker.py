"""The endpoint worker's bookkeeping (no NATS is touched here): which stored deliveries it may purge, and
when it stops taking deliveries from fan-out. The end-to-end behaviour (a real nats-server, receivers,
a restart) is tests/integration/test_webhooks.py's."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import aiohttp
import msgspec
import pytest
from parley_common.contracts import webhook as api
from parley_common.processes import free_port
from parley_conference.adapters.webhook_delivery import EndpointWorker, _Held
from parley_conference.settings import WebhookSettings
from parley_conference.webhooks import Endpoint

pytestmark = pytest.mark.timeout(10)


def held(key: str) -> _Held:
    event = api.WebhookEvent(
        id=f"e-{key}",
        type="ConferenceCreatedEvent",
        created_at=datetime.now(UTC),
        organization_id="o",
        event=msgspec.Raw(b"{}"),
    )
    return _Held(0, key, event, b"{}")


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def worker(http: aiohttp.ClientSession, parked: list[Any], **settings: Any) -> EndpointWorker:
    # Nothing listens there: every POST fails at once (parked after `max_attempts`).
    endpoint = Endpoint(
        webhook_id="w1",
        organization_id="o",
        url=f"http://127.0.0.1:{free_port()}/",
        event_types=(),
        secret="s",
    )

    async def park(webhook_id: str, failure: api.WebhookFailure) -> None:
        parked.append(failure)

    made = EndpointWorker(None, endpoint, WebhookSettings(**settings), http, park)  # type: ignore[arg-type]
    made._live = True  # as after catching up with its consumer (which needs NATS)
    return made


async def until(done: Any) -> None:
    for _ in range(500):
        if done():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("not done in time")


async def test_the_purge_floor_never_passes_a_delivery_owed_or_still_being_stored(
    http: aiohttp.ClientSession,
) -> None:
    parked: list[Any] = []
    w = worker(http, parked, max_attempts=1)
    # Two fan-outs (two event streams) store a copy each; the later publish is acknowledged first.
    first, second = w.reserve(), w.reserve()
    w.hand_over(second, 12, held("b"))
    await until(lambda: len(parked) == 1)
    assert w._floor() == 1, "the first copy's sequence is not known yet: nothing may be purged"
    a = held("a")
    assert w.take_early(a)  # POSTed while being stored
    w.hand_over(first, 11, a, taken=True)
    await until(lambda: len(parked) == 2)
    assert w._floor() == 13
    retried = worker(http, [], max_attempts=3, retry_base_seconds=30)
    token = retried.reserve()
    retried.hand_over(token, 20, held("c"))
    assert retried._floor() == 20, "owed (waiting for its retry): kept in the stream"
    for task in retried._tasks:
        task.cancel()


async def test_a_worker_over_its_window_takes_nothing_more_and_purges_nothing(
    http: aiohttp.ClientSession,
) -> None:
    w = worker(http, [], window=2, max_attempts=3, retry_base_seconds=30)
    assert w.take_early(held("a")) and w.take_early(held("b"))
    assert not w.take_early(held("c"))
    w.hand_over(w.reserve(), 7, held("c"))
    assert w._overflow.is_set() and not w._live
    assert w._floor() is None  # the consumer brings the rest: the stream keeps everything
    for task in w._tasks:
        task.cancel()
