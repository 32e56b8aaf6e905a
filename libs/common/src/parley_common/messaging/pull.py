"""Reading a JetStream pull consumer without batching delay.

nats-py 2.16's `fetch(batch > 1, timeout)` first sends a `no_wait` pull, which the server answers as soon
as it has any message, so one message reaching an idle consumer is usually returned within ~2 ms. But when
that first pull is answered by a status instead (a 408 left over from the previous fetch's pull, expiring
on the server as the client gave up on it; a 408 "requests pending" while another pull of the consumer
waits; ...), `_fetch_n` sends a second, lingering pull of `batch` and, once a message has come, waits for
the rest until `timeout`. And a pull abandoned by a cancelled fetch takes the next message itself, leaving
the new fetch waiting for the rest until `timeout`. Measured: a reader looping on `fetch(64, timeout=0.2)`
returned 3 of 60 single messages 90-150 ms late, one looping on `fetch(64, timeout=1)` with a second
reader 2 of 15 up to 0.47 s late, and `fetch(64, timeout=5)` after an abandoned pull 4.9 s late;
`fetch_ready` returned every one within 13 ms (libs/common/tests/test_pull.py).

`fetch_ready` asks for one message (`fetch(1)`: one lingering pull of 1, which a stale status does not
cut short and which returns with its message), then for only as many more as the first message's metadata
says the consumer holds (a batch that fills at once): a trickle costs one round trip per message and a
backlog is read in batches.
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
