"""NATS plumbing: the faststream broker, request/reply, JetStream streams and event publication."""
