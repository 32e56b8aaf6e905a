"""What this node holds and for whom: each publisher's and viewer's user endpoint.

The engine knows sessions; only the node knows which endpoint each belongs to, which is what a trickle or
stop-view request is checked against and what a ConferenceLeftEvent tears down. Trickled candidates may
overtake their publish/view request (the two travel through different services), so a lookup can wait
a moment for the session to appear.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import Callable, Iterator

from parley_media.model import StreamKey

Conference = tuple[str, str]  # (organization_id, conference_id)
ViewerKey = tuple[StreamKey, str]  # (stream, viewer_id)


def conference_of(stream: StreamKey) -> Conference:
    return stream.organization_id, stream.conference_id


class Holdings:
    def __init__(self) -> None:
        self._publishers: dict[StreamKey, str] = {}
        self._viewers: dict[ViewerKey, str] = {}
        self._by_conference: dict[Conference, set[StreamKey]] = defaultdict(set)
        # Set (and replaced) whenever a session is added: lookups that wait re-check then.
        self._waiters: set[asyncio.Event] = set()

    # -- publishers ---------------------------------------------------------------------------------

    def publisher_owner(self, stream: StreamKey) -> str | None:
        return self._publishers.get(stream)

    def add_publisher(self, stream: StreamKey, endpoint: str) -> None:
        self._publishers[stream] = endpoint
        self._by_conference[conference_of(stream)].add(stream)
        self._notify()

    def remove_publisher(self, stream: StreamKey, endpoint: str | None = None) -> bool:
        """Forget a publisher and its viewers; with `endpoint`, only if it still belongs to it."""
        owner = self._publishers.get(stream)
        if owner is None or (endpoint is not None and owner != endpoint):
            return False
        del self._publishers[stream]
        for key in [k for k in self._viewers if k[0] == stream]:
            del self._viewers[key]
        conference = conference_of(stream)
        streams = self._by_conference.get(conference)
        if streams is not None:
            streams.discard(stream)
            if not streams:
                del self._by_conference[conference]
        return True

    async def wait_publisher(self, stream: StreamKey, timeout: float) -> str | None:
        return await self._wait(lambda: self._publishers.get(stream), timeout)

    # -- viewers ------------------------------------------------------------------------------------

    def viewer_owner(self, stream: StreamKey, viewer_id: str) -> str | None:
        return self._viewers.get((stream, viewer_id))

    def add_viewer(self, stream: StreamKey, viewer_id: str, endpoint: str) -> None:
        self._viewers[(stream, viewer_id)] = endpoint
        self._notify()

    def remove_viewer(self, stream: StreamKey, viewer_id: str, endpoint: str | None = None) -> bool:
        owner = self._viewers.get((stream, viewer_id))
        if owner is None or (endpoint is not None and owner != endpoint):
            return False
        del self._viewers[(stream, viewer_id)]
        return True

    async def wait_viewer(self, stream: StreamKey, viewer_id: str, timeout: float) -> str | None:
        return await self._wait(lambda: self._viewers.get((stream, viewer_id)), timeout)

    # -- conferences --------------------------------------------------------------------------------

    def holds(self, organization_id: str, conference_id: str) -> bool:
        return (organization_id, conference_id) in self._by_conference

    def streams_of(self, organization_id: str, conference_id: str) -> list[StreamKey]:
        return sorted(
            self._by_conference.get((organization_id, conference_id), ()), key=lambda k: k.stream_id
        )

    def endpoint_sessions(
        self, organization_id: str, conference_id: str, endpoint: str
    ) -> tuple[list[StreamKey], list[ViewerKey]]:
        """The publishers and the viewers an endpoint has in a conference."""
        streams = set(self.streams_of(organization_id, conference_id))
        published = [s for s in streams if self._publishers.get(s) == endpoint]
        viewing = [k for k, owner in self._viewers.items() if owner == endpoint and k[0] in streams]
        return published, viewing

    def forget_conference(self, organization_id: str, conference_id: str) -> list[StreamKey]:
        streams = self.streams_of(organization_id, conference_id)
        for stream in streams:
            self.remove_publisher(stream)
        return streams

    def __iter__(self) -> Iterator[StreamKey]:
        return iter(list(self._publishers))

    # -- waiting ------------------------------------------------------------------------------------

    def _notify(self) -> None:
        waiters, self._waiters = self._waiters, set()
        for waiter in waiters:
            waiter.set()

    async def _wait(self, lookup: Callable[[], str | None], timeout: float) -> str | None:
        deadline = asyncio.get_running_loop().time() + timeout
        while (found := lookup()) is None:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                return None
            changed = asyncio.Event()
            self._waiters.add(changed)
            try:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(changed.wait(), remaining)
            finally:
                self._waiters.discard(changed)
        return found
