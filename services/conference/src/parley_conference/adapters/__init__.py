"""Adapters: storage, NATS and timers behind the conference use cases."""
