"""A stopping service's NATS connection drains within a bound (issue 12): what it cannot finish by then is
abandoned and named, and a subscription nobody reads any more does not hold the drain at all."""

from __future__ import annotations

import asyncio
import time

from parley_common.messaging.broker import make_broker, stop_broker
from parley_common.processes import NatsServer


async def test_a_drain_past_its_deadline_is_cut_short_naming_what_it_abandoned(
    nats_server: NatsServer,
) -> None:
    broker = make_broker(nats_server.url, name="stop-test")
    await broker.connect()
    nc = broker.connection
    handling = asyncio.Event()

    async def stuck(_: object) -> None:  # a handler that never finishes (a request hung on a lost server)
        handling.set()
        await asyncio.Event().wait()

    await nc.subscribe("parley.test.stuck", cb=stuck)
    await nc.publish("parley.test.stuck", b"1")
    await nc.publish("parley.test.stuck", b"2")
    await asyncio.wait_for(handling.wait(), timeout=5)

    started = time.monotonic()
    abandoned = await asyncio.wait_for(stop_broker(broker, within=0.5), timeout=5)
    assert time.monotonic() - started < 2.0  # nats-py's own drain waits 30 s
    assert nc.is_closed
    assert len(abandoned) == 1 and "parley.test.stuck" in abandoned[0], abandoned


async def test_a_subscription_nobody_reads_does_not_hold_the_drain(nats_server: NatsServer) -> None:
    """A pull consumer or `next_msg` reader whose task is cancelled leaves messages nobody will read
    (nats-py's pull `fetch` even leaves its leftovers counted as unhandled): the drain skips them."""
    broker = make_broker(nats_server.url, name="stop-test")
    await broker.connect()
    nc = broker.connection
    await nc.subscribe("parley.test.unread")  # no callback: read with next_msg, by nobody now
    await nc.publish("parley.test.unread", b"never read")
    await nc.flush()

    started = time.monotonic()
    abandoned = await asyncio.wait_for(stop_broker(broker, within=3.0), timeout=6)
    assert abandoned == []
    assert time.monotonic() - started < 1.0
    assert nc.is_closed
