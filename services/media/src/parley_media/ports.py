"""What the node's use cases need from the outside world; implemented in adapters/."""

from __future__ import annotations

from typing import IO, Protocol

from parley_common.contracts.base import Payload


class EventSink(Protocol):
    """Publishes a media event durably (JetStream), deduplicated by `msg_id`; retries until stored."""

    async def publish(self, subject: str, event: Payload, *, msg_id: str) -> None: ...


class RecordingStore(Protocol):
    """Keeps finished recordings (the JetStream object store bucket)."""

    @property
    def bucket(self) -> str: ...

    async def put(self, object_name: str, data: IO[bytes]) -> None:
        """Store `data` (read from its current position) under `object_name`; raises on failure."""
        ...
