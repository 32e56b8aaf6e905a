"""NATS, object store and conference-service adapters of the snapshot service."""
