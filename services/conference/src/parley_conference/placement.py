"""Which media node a conference lives on: the nodes heard from, their load, and when one counts as lost.

Pure: heartbeats and the clock come in as values. Every replica keeps its own registry from the heartbeats
it hears; the choice it makes for a conference is pinned in storage (see adapters/placements.py), so a
restarted replica, or another one, keeps sending that conference to the same node.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from parley_common.contracts.media import MediaNodeHeartbeat


@dataclass
class NodeStatus:
    node_id: str
    # A node's start time tells a restarted node (which lost every stream it had) from the one pinned.
    incarnation: str
    publishers: int
    viewers: int
    capacity: int
    last_seen: float
    # Placements made here since the last heartbeat, so a burst does not pile onto one node.
    placed_since_heartbeat: int = 0

    @property
    def load(self) -> int:
        return self.publishers + self.placed_since_heartbeat

    @property
    def full(self) -> bool:
        return self.capacity > 0 and self.load >= self.capacity


def incarnation_of(heartbeat: MediaNodeHeartbeat) -> str:
    return heartbeat.started_at.isoformat()


class MediaNodes:
    """The media nodes this replica has heard, alive while their heartbeats keep coming."""

    def __init__(self, *, timeout_seconds: float, clock: Callable[[], float]) -> None:
        self._timeout = timeout_seconds
        self._clock = clock
        self._started = clock()
        self._nodes: dict[str, NodeStatus] = {}

    def heard(self, heartbeat: MediaNodeHeartbeat) -> None:
        self._nodes[heartbeat.node_id] = NodeStatus(
            node_id=heartbeat.node_id,
            incarnation=incarnation_of(heartbeat),
            publishers=heartbeat.publishers,
            viewers=heartbeat.viewers,
            capacity=heartbeat.capacity,
            last_seen=self._clock(),
        )

    def alive(self, node_id: str) -> NodeStatus | None:
        node = self._nodes.get(node_id)
        if node is None or self._clock() - node.last_seen > self._timeout:
            return None
        return node

    def any_alive(self) -> bool:
        """Is there a node to place a stream on (heard within the timeout)?"""
        return any(self.alive(node_id) is not None for node_id in self._nodes)

    def lost(self, node_id: str, incarnation: str) -> bool:
        """Are the streams a node held in `incarnation` gone? Not judged until a full timeout after start."""
        node = self.alive(node_id)
        if node is not None:
            return node.incarnation != incarnation
        return self._clock() - self._started > self._timeout

    def choose(self) -> NodeStatus | None:
        """The least loaded live node with room (publishers, then viewers, then id to break ties)."""
        candidates = [
            n for n in self._nodes.values() if not n.full and self._clock() - n.last_seen <= self._timeout
        ]
        if not candidates:
            return None
        chosen = min(candidates, key=lambda n: (n.load, n.viewers, n.node_id))
        chosen.placed_since_heartbeat += 1
        return chosen
