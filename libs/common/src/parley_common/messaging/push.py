"""Delivery of events addressed to one user endpoint (sendEvent, snapshot requests) to its push channel.

The gateway's push hub reads both: a durable consumer per endpoint on PARLEY_PUSH, and the live subject.
"""

from __future__ import annotations

from typing import Any

import msgspec
import nats.errors
from nats.aio.client import Client
from nats.js import JetStreamContext

from parley_common import errors
from parley_common.contracts.push import PushedEvent
from parley_common.messaging import subjects
from parley_common.messaging.codec import encode
from parley_common.messaging.events import publish_event
from parley_common.sealing import Sealer


class NatsEndpointMessenger:
    """sendEvent delivery: AT_LEAST_ONCE into the PARLEY_PUSH stream, BEST_EFFORT as a core message."""

    def __init__(self, nc: Client, js: JetStreamContext, sealer: Sealer) -> None:
        self._nc = nc
        self._js = js
        self._sealer = sealer

    def seal(self, event: dict[str, Any]) -> str:
        return self._sealer.seal(msgspec.json.encode(event))

    async def deliver(self, pushed: PushedEvent) -> None:
        if pushed.qos == "AT_LEAST_ONCE":
            subject = subjects.push_durable(pushed.organization_id, pushed.user_endpoint_id)
            endpoint = subjects.endpoint_token(pushed.organization_id, pushed.user_endpoint_id)
            msg_id = f"{pushed.event_id}:{endpoint}"
            try:
                await publish_event(self._js, subject, pushed, msg_id=msg_id, attempts=5)
            except (nats.errors.Error, TimeoutError) as exc:
                # PARLEY_PUSH not answering (a cluster electing its leader, NATS down) is a dependency
                # down, like storage's: the caller answers 503 (retry), not a 500; an outbox retries it.
                raise errors.Unavailable("service unavailable: the push stream is not answering") from exc
        else:
            await self._nc.publish(
                subjects.push_live(pushed.organization_id, pushed.user_endpoint_id), encode(pushed)
            )
