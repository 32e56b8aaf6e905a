"""`fetch_ready` returns a message as soon as it is there (issues 12/13): nats-py's `fetch(batch, timeout)`
may hold a message that came alone until `batch` have come or `timeout` has passed."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import nats
import nats.errors
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig
from parley_common.messaging.pull import fetch_ready
from parley_common.processes import NatsServer

Fetch = Callable[[JetStreamContext.PullSubscription], Awaitable[list[Msg]]]


@pytest.fixture
async def nc(nats_server: NatsServer) -> AsyncIterator[Client]:
    client = await nats.connect(nats_server.url)
    yield client
    await client.close()


async def consumer(nc: Client) -> tuple[str, JetStreamContext.PullSubscription]:
    js = nc.jetstream()
    stream = f"PULL_{uuid.uuid4().hex[:8].upper()}"
    await js.add_stream(name=stream, subjects=[f"{stream}.>"])
    subscription = await js.pull_subscribe(
        f"{stream}.>", durable="reader", config=ConsumerConfig(ack_policy=AckPolicy.EXPLICIT)
    )
    return stream, subscription


async def trickled_delay(nc: Client, fetch: Fetch) -> float:
    """How long after its publication one message reaches `fetch`, on a consumer with a pull left on the
    server by an earlier fetch (here a cancelled one; nats-py also leaves one after a late 408, see pull.py):
    that pull takes the message, and nats-py's `fetch(64)` then waits for the rest of its batch."""
    stream, subscription = await consumer(nc)
    with contextlib.suppress(TimeoutError, nats.errors.TimeoutError):
        await asyncio.wait_for(subscription.fetch(1, timeout=5), 0.05)

    async def publish_later() -> float:
        await asyncio.sleep(0.1)
        published = time.monotonic()
        await nc.jetstream().publish(f"{stream}.one", b"1")
        return published

    publishing = asyncio.create_task(publish_later())
    messages = await fetch(subscription)
    returned = time.monotonic()
    assert [m.data for m in messages] == [b"1"]
    return returned - await publishing


async def test_a_trickled_message_is_returned_at_once(nc: Client) -> None:
    delay = await trickled_delay(nc, lambda s: fetch_ready(s, 64, timeout=5))
    assert delay < 0.1, delay  # measured ~1 ms


async def test_the_plain_fetch_it_replaces_holds_that_message_until_its_timeout(nc: Client) -> None:
    """Proves the condition above is the stalling one (should nats-py stop stalling, this fails: then
    `fetch_ready` may go)."""
    delay = await trickled_delay(nc, lambda s: s.fetch(64, timeout=1))
    assert delay > 0.5, delay  # measured ~0.9 s, the rest of the timeout


async def test_a_backlog_is_read_in_batches_of_at_most_batch(nc: Client) -> None:
    stream, subscription = await consumer(nc)
    js = nc.jetstream()
    for n in range(10):
        await js.publish(f"{stream}.many", str(n).encode())
    sizes = []
    for _ in range(3):
        messages = await fetch_ready(subscription, 4, timeout=1)
        sizes.append(len(messages))
        for msg in messages:
            await msg.ack()
    assert sizes == [4, 4, 2]
    with pytest.raises(nats.errors.TimeoutError):  # nothing left: the caller's timeout, not a hang
        await fetch_ready(subscription, 4, timeout=0.2)
