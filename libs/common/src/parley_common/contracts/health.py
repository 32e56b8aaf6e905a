"""Health of a service as it reports it over NATS, in the Zextras health shape."""

from __future__ import annotations

from parley_common.contracts.base import Payload


class HealthQuery(Payload, frozen=True):
    pass


class Dependency(Payload, frozen=True):
    name: str
    is_healthy: bool


class ServiceHealth(Payload, frozen=True):
    service: str
    is_healthy: bool
    dependencies: list[Dependency] = []
