"""Engine events the service turns into conference events (e.g. ConferenceStreamUnpublishedEvent)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

from .model import StreamKey
from .recording import RecordingInfo

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class StreamEnded:
    """The publisher went away without unpublish(): connection failed/closed, timeout, tracks ended."""

    stream: StreamKey
    reason: str


@dataclass(frozen=True, slots=True)
class ViewerEnded:
    """A viewer's connection failed, closed or timed out (not raised for stop_view/unpublish)."""

    stream: StreamKey
    viewer_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class RecordingFinished:
    """A recording was finalised because its stream closed (stop_recording() returns its info directly)."""

    stream: StreamKey
    info: RecordingInfo


MediaEvent = StreamEnded | ViewerEnded | RecordingFinished
Listener = Callable[[MediaEvent], None]


class EventSubscription:
    """Async iterator over events; bounded (drops the oldest) so a forgotten subscriber cannot grow memory."""

    def __init__(self, hub: EventHub, capacity: int) -> None:
        self._hub = hub
        self._queue: asyncio.Queue[MediaEvent | None] = asyncio.Queue(maxsize=capacity)

    def _put(self, event: MediaEvent | None) -> None:
        if self._queue.full():
            self._queue.get_nowait()
        self._queue.put_nowait(event)

    def close(self) -> None:
        self._hub._unsubscribe(self)
        self._put(None)

    def __aiter__(self) -> EventSubscription:
        return self

    async def __anext__(self) -> MediaEvent:
        event = await self._queue.get()
        if event is None:
            raise StopAsyncIteration
        return event


class EventHub:
    def __init__(self) -> None:
        self._listeners: list[Listener] = []
        self._subscriptions: list[EventSubscription] = []

    def add_listener(self, listener: Listener) -> Callable[[], None]:
        """Synchronous callback per event; returns a function that removes it."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    def subscribe(self, capacity: int = 1000) -> EventSubscription:
        subscription = EventSubscription(self, capacity)
        self._subscriptions.append(subscription)
        return subscription

    def _unsubscribe(self, subscription: EventSubscription) -> None:
        if subscription in self._subscriptions:
            self._subscriptions.remove(subscription)

    def emit(self, event: MediaEvent) -> None:
        for listener in tuple(self._listeners):
            try:
                listener(event)
            except Exception:
                logger.exception("media event listener failed")
        for subscription in tuple(self._subscriptions):
            subscription._put(event)

    def close(self) -> None:
        for subscription in tuple(self._subscriptions):
            subscription.close()
