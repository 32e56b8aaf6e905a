"""The users directory's source: PARLEY_USERS, where gateways report each authenticated user.

A durable pull consumer (`chat-directory`, explicit acks) feeds the directory: a report is acknowledged
only once stored, so a restart resumes after the last stored one and loses none. On a directory miss the
handlers read the subject's last message directly (the report may still be on its way to the consumer).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

import msgspec
import nats.errors
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError
from parley_common.contracts.chat import UserSeen
from parley_common.log import get_logger
from parley_common.messaging import subjects
from parley_common.messaging.pull import fetch_ready
from parley_common.messaging.streams import USERS_STREAM
from parley_common.storage import StorageError

log = get_logger(__name__)
DURABLE = "chat-directory"
BATCH = 64
# A report that could not be stored is delivered again after this long.
REDELIVERY_SECONDS = 5.0


class SeenReportsOnStream:
    """`SeenReports` over PARLEY_USERS: the last report on a user's subject, or None."""

    def __init__(self, js: JetStreamContext) -> None:
        self._js = js

    async def last_seen(self, organization_id: str, user_id: str) -> UserSeen | None:
        try:
            msg = await self._js.get_last_msg(USERS_STREAM, subjects.users_seen(organization_id, user_id))
        except NotFoundError:
            return None
        except (nats.errors.Error, TimeoutError) as exc:
            # The directory's answer stands (unknown): NATS being away is no reason to fail the request.
            log.warning("users stream not answering", error=repr(exc))
            return None
        try:
            return msgspec.json.decode(msg.data or b"", type=UserSeen)
        except msgspec.DecodeError:
            return None


class DirectoryFeed:
    """Until stopped: every report on PARLEY_USERS, stored through `record`, then acknowledged.

    Stopped with the request responders, before the connection drains: a pull request left waiting would
    hold the drain up to its timeout.
    """

    def __init__(
        self, js: JetStreamContext, record: Callable[[UserSeen], Awaitable[None]], *, batch: int = BATCH
    ) -> None:
        self._js = js
        self._record = record
        self._batch = batch
        self._task: asyncio.Task[None] | None = None

    async def run(self) -> None:
        self._task = asyncio.current_task()
        subscription = await self._js.pull_subscribe(
            subjects.USERS_SEEN_ALL,
            durable=DURABLE,
            stream=USERS_STREAM,
            config=ConsumerConfig(
                ack_policy=AckPolicy.EXPLICIT, deliver_policy=DeliverPolicy.ALL, ack_wait=REDELIVERY_SECONDS
            ),
        )
        try:
            await self._consume(subscription)
        finally:
            with contextlib.suppress(Exception):
                await subscription.unsubscribe()

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _consume(self, subscription: JetStreamContext.PullSubscription) -> None:
        while True:
            try:
                messages = await fetch_ready(subscription, self._batch, timeout=1.0)
            except (nats.errors.TimeoutError, TimeoutError):
                continue
            except nats.errors.Error as exc:
                if isinstance(exc, nats.errors.ConnectionClosedError):
                    return  # the service is stopping: the durable consumer resumes from here next time
                log.warning("directory feed interrupted", error=repr(exc))
                await asyncio.sleep(1.0)
                continue
            for msg in messages:
                try:
                    seen = msgspec.json.decode(msg.data, type=UserSeen)
                except msgspec.DecodeError as exc:
                    log.warning("invalid user report dropped", error=str(exc))
                    await msg.term()
                    continue
                try:
                    await self._record(seen)
                except StorageError as exc:
                    log.warning("user report not stored, will come again", error=repr(exc))
                    await msg.nak(delay=REDELIVERY_SECONDS)
                    continue
                await msg.ack()
