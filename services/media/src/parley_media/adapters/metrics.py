"""A media node's Prometheus metrics, read from its engine when scraped (the packet path counts as before).

Counters (`rate()` gives packets and bytes per second): packets and bytes forwarded (received from
publishers and fanned out), PLIs sent to publishers, packets dropped from viewer queues; a gauge: peers by
role. Every series is labelled with the node id. Collected on the event loop, which serves the metrics
(`parley_common.metrics`), so the engine's dicts are never read from another thread.

One collector per process, over the nodes it runs (one in a deployment; tests may start several).
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import REGISTRY
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from parley_media.engine import ForwardingTotals, MediaEngine

PEERS = "parley_media_peers"
PACKETS = "parley_media_forwarded_packets"
BYTES = "parley_media_forwarded_bytes"
PLIS = "parley_media_plis_sent"
DROPPED = "parley_media_dropped_packets"


class _Node:
    def __init__(self, engine: MediaEngine) -> None:
        self.engine = engine
        # The highest totals reported: a stream being closed is briefly in neither the engine's live nor
        # its closed sums, and a counter must never go down (Prometheus would read a restart).
        self.reported = ForwardingTotals()

    def totals(self) -> ForwardingTotals:
        now = self.engine.forwarding_totals()
        seen = self.reported
        seen.packets = max(seen.packets, now.packets)
        seen.bytes = max(seen.bytes, now.bytes)
        seen.plis_sent = max(seen.plis_sent, now.plis_sent)
        seen.dropped = max(seen.dropped, now.dropped)
        return seen


class MediaNodesCollector(Collector):
    def __init__(self) -> None:
        self._nodes: dict[str, _Node] = {}

    def add(self, engine: MediaEngine, node_id: str) -> None:
        self._nodes[node_id] = _Node(engine)

    def remove(self, node_id: str) -> None:
        self._nodes.pop(node_id, None)

    def collect(self) -> Iterator[Metric]:
        peers = GaugeMetricFamily(
            PEERS, "Peer connections on this media node, by role", labels=["node", "role"]
        )
        packets = CounterMetricFamily(
            PACKETS, "RTP packets received from publishers and forwarded", labels=["node"]
        )
        sizes = CounterMetricFamily(
            BYTES, "Payload bytes received from publishers and forwarded", labels=["node"]
        )
        plis = CounterMetricFamily(PLIS, "Keyframe requests (PLI) sent to publishers", labels=["node"])
        dropped = CounterMetricFamily(
            DROPPED,
            "Packets dropped from viewer queues (slow viewers, waiting for a keyframe)",
            labels=["node"],
        )
        for node_id, node in list(self._nodes.items()):
            counters = node.engine.counters()
            peers.add_metric([node_id, "publisher"], counters.publishers)
            peers.add_metric([node_id, "viewer"], counters.viewers)
            totals = node.totals()
            packets.add_metric([node_id], totals.packets)
            sizes.add_metric([node_id], totals.bytes)
            plis.add_metric([node_id], totals.plis_sent)
            dropped.add_metric([node_id], totals.dropped)
        yield from (peers, packets, sizes, plis, dropped)


NODES = MediaNodesCollector()
REGISTRY.register(NODES)
