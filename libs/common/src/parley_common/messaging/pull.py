"""Reading a JetStream pull consumer without batching delay.

nats-py 2.16's `fetch(batch > 1, timeout)` first sends a `no_wait` pull, which the server answers as soon
as it has any message, so one message reaching an idle consumer is usually returned within ~2 ms. But a
message taken by a pull that an earlier fetch left on the server reaches the new fetch as if its own, and
the new fetch then waits for the rest of its batch (a status that never comes) until its timeout. nats-py
leaves such pulls itself: when a fetch times out just before its pull's 408 arrives, the next fetch takes
that late 408 for the answer to its first pull and sends a second, lingering pull of `batch`; it returns
with the next message (taken by its first pull), leaving the lingering pull to take the one after (traced
with the pulls logged; a cancelled fetch leaves one too). Measured: a reader looping on
`fetch(64, timeout=0.2)` held 3 of 60 single messages 90-150 ms, the gateway's push loop on
`fetch(64, timeout=2)` held the second of two events after a quiet spell ~1.66 s
(tests/integration/test_push_channel.py), `fetch(64, timeout=5)` after a cancelled fetch 4.9 s;
`fetch_ready` returned every one within 13 ms (100 ms end to end).

`fetch_ready` asks for one message (`fetch(1)`: one lingering pull of 1, which a stale status does not
cut short, and a pull of 1 left behind only ever holds the one message it delivers), then for only as
many more as the first message's metadata says the consumer holds (a batch that fills at once, bounded
by GATHER_SECONDS): a trickle costs one round trip per message and a backlog is read in batches.
"""

from __future__ import annotations

import contextlib

import nats.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext

# The follow-up pull asks only for messages known to be waiting; this bounds it if they went meanwhile
# (another reader of the consumer took them).
GATHER_SECONDS = 0.05


async def fetch_ready(
    subscription: JetStreamContext.PullSubscription, batch: int, timeout: float
) -> list[Msg]:
    """The first message to come within `timeout` (raises nats' TimeoutError if none), plus up to
    `batch - 1` more that are available now."""
    messages = await subscription.fetch(1, timeout=timeout)
    waiting = min(batch - 1, messages[-1].metadata.num_pending or 0) if messages else 0
    if waiting > 0:
        with contextlib.suppress(nats.errors.TimeoutError, TimeoutError):
            messages += await subscription.fetch(waiting, timeout=GATHER_SECONDS)
    return messages
