"""The node's outside world: NATS (requests, events, heartbeats) and the recordings object store."""
