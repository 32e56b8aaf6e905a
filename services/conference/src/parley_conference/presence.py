"""Liveness of user endpoints, for participant state and the keep-alive timeout.

An endpoint is HEALTHY while it was seen (push channel heartbeat, command or poll) within the keep-alive
window, SICK after it, and is removed (ConferenceLeftEvent, reason TIMEOUT) once a further grace period
passes. Nothing here is persisted: after a restart every endpoint counts as seen at start-up, so a restart
never times anyone out by itself.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from parley_common.contracts.conference import ParticipantState

EndpointKey = tuple[str, str]  # (organization id, user endpoint id)


class Presence:
    def __init__(
        self, *, keepalive_seconds: float, grace_seconds: float, clock: Callable[[], float] = time.monotonic
    ):
        self._keepalive = keepalive_seconds
        self._grace = grace_seconds
        self._clock = clock
        self._started = clock()
        self._seen: dict[EndpointKey, float] = {}

    def seen(self, organization_id: str, endpoint_id: str) -> None:
        self._seen[(organization_id, endpoint_id)] = self._clock()

    def forget(self, organization_id: str, endpoint_id: str) -> None:
        self._seen.pop((organization_id, endpoint_id), None)

    def _idle(self, organization_id: str, endpoint_id: str) -> float:
        return self._clock() - self._seen.get((organization_id, endpoint_id), self._started)

    def state(self, organization_id: str, endpoint_id: str) -> ParticipantState:
        return "HEALTHY" if self._idle(organization_id, endpoint_id) <= self._keepalive else "SICK"

    def expired(self, organization_id: str, endpoint_id: str) -> bool:
        return self._idle(organization_id, endpoint_id) > self._keepalive + self._grace
