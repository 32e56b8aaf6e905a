"""Wake-ups for long polls: a poll of a conference's event feed sleeps until that conference changes.

Every gateway process hears every conference event (core subscription, no queue group), so a poll is
answered promptly whichever gateway or conference-service replica handled the command.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager

ConferenceKey = tuple[str, str]  # (organization id, conference id)


class ConferenceWaiters:
    def __init__(self) -> None:
        self._waiting: dict[ConferenceKey, set[asyncio.Event]] = {}

    @contextmanager
    def watch(self, organization_id: str, conference_id: str) -> Iterator[asyncio.Event]:
        """An event that is set whenever the conference changes while the block runs."""
        key = (organization_id, conference_id)
        changed = asyncio.Event()
        self._waiting.setdefault(key, set()).add(changed)
        try:
            yield changed
        finally:
            waiting = self._waiting.get(key)
            if waiting is not None:
                waiting.discard(changed)
                if not waiting:
                    del self._waiting[key]

    def notify(self, organization_id: str, conference_id: str) -> None:
        for changed in self._waiting.get((organization_id, conference_id), ()):
            changed.set()

    def __len__(self) -> int:
        return sum(len(w) for w in self._waiting.values())
