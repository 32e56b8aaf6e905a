"""`UserSeen`: the gateway tells the chat directory who has called, at most every few minutes per user.

The chat service keeps the user directory from these reports (stream PARLEY_USERS, latest per user). A
report must never slow the request that triggered it: it is published by a background task with its own
error handling, and a bounded LRU of who was reported when keeps it to once per (org, user) per interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable

import nats.errors
from parley_common.contracts.chat import UserSeen, canonical_uuid
from parley_common.log import get_logger
from parley_common.messaging import subjects
from parley_common.messaging.codec import encode

from parley_gateway.identity import Principal

log = get_logger(__name__)
REPORT_INTERVAL_SECONDS = 300.0
REMEMBERED_USERS = 10_000
PUBLISH_TIMEOUT_SECONDS = 5.0
# publish(subject, payload): a JetStream publish in production.
Publish = Callable[[str, bytes], Awaitable[object]]


class SeenReporter:
    def __init__(
        self,
        publish: Publish,
        *,
        interval: float = REPORT_INTERVAL_SECONDS,
        capacity: int = REMEMBERED_USERS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._publish = publish
        self._interval = interval
        self._capacity = capacity
        self._clock = clock
        self._reported: OrderedDict[tuple[str, str], float] = OrderedDict()
        # Strong references: the event loop only keeps weak ones to its tasks.
        self._tasks: set[asyncio.Task[None]] = set()

    def seen(self, principal: Principal) -> None:
        """Report the caller unless it was reported within the interval. Never blocks, never raises."""
        user_id = canonical_uuid(principal.user_id)
        if user_id is None:  # not a chat user: the directory only knows UUID ids
            return
        key = (principal.organization_id, user_id)
        now = self._clock()
        last = self._reported.get(key)
        if last is not None and now - last < self._interval:
            return
        self._reported[key] = now
        self._reported.move_to_end(key)
        while len(self._reported) > self._capacity:
            self._reported.popitem(last=False)
        report = UserSeen(
            organization_id=principal.organization_id,
            user_id=user_id,
            name=principal.name,
            email=principal.email,
            type="guest" if principal.guest else "internal",
        )
        task = asyncio.get_running_loop().create_task(self._send(key, report), name="user-seen")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send(self, key: tuple[str, str], report: UserSeen) -> None:
        subject = subjects.users_seen(report.organization_id, report.user_id)
        try:
            await asyncio.wait_for(self._publish(subject, encode(report)), PUBLISH_TIMEOUT_SECONDS)
        except (nats.errors.Error, TimeoutError, OSError) as exc:
            # Forget it so that the user's next request tries again.
            if self._reported.get(key) is not None:
                del self._reported[key]
            log.warning("user seen report failed", error=repr(exc))

    async def flush(self) -> None:
        """Wait for the reports under way (tests, and a clean stop)."""
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*self._tasks, return_exceptions=True)
