"""Owned asyncio tasks, so the engine can count and cancel everything it started."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Coroutine
from typing import Any

logger = logging.getLogger(__name__)


class TaskSet:
    """Keeps strong references to background tasks (asyncio only keeps weak ones) and logs crashes."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()

    def __len__(self) -> int:
        return len(self._tasks)

    def spawn(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("media task %s crashed", task.get_name(), exc_info=task.exception())

    async def cancel(self, task: asyncio.Task[None]) -> None:
        """Cancel one owned task and wait until it is gone."""
        if task is asyncio.current_task():
            return
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    async def wait_idle(self) -> None:
        """Wait for tasks spawned by closing sessions (teardown tasks) to finish."""
        while self._tasks:
            current = asyncio.current_task()
            pending = [t for t in self._tasks if t is not current]
            if not pending:
                return
            await asyncio.gather(*pending, return_exceptions=True)


class ThreadCounter:
    """Counts live worker threads started on the engine's behalf (updated from those threads)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._live = 0

    @property
    def live(self) -> int:
        with self._lock:
            return self._live

    def enter(self) -> None:
        with self._lock:
            self._live += 1

    def exit(self) -> None:
        with self._lock:
            self._live -= 1
