"""Publishing domain events to JetStream with a dedup id, retried until the server acknowledges."""

from __future__ import annotations

import asyncio
from typing import Any

import nats.errors
from nats.js import JetStreamContext
from nats.js.api import PubAck

from parley_common.log import get_logger
from parley_common.messaging.codec import encode

log = get_logger(__name__)


async def publish_event(
    js: JetStreamContext,
    subject: str,
    payload: Any,
    *,
    msg_id: str,
    attempts: int = 0,
    timeout: float = 2.0,
) -> PubAck:
    """Publish with `Nats-Msg-Id: msg_id` so a retry (or a replay after a crash) is stored once.

    `attempts=0` retries forever with capped backoff: the caller holds an acknowledged fact that must reach
    the stream. A finite `attempts` re-raises the last error.
    """
    data = payload if isinstance(payload, bytes) else encode(payload)
    delay = 0.05
    attempt = 0
    while True:
        attempt += 1
        try:
            return await js.publish(subject, data, timeout=timeout, headers={"Nats-Msg-Id": msg_id})
        except (nats.errors.Error, TimeoutError) as exc:
            if attempts and attempt >= attempts:
                raise
            log.warning("event publish failed, retrying", subject=subject, msg_id=msg_id, error=repr(exc))
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)
