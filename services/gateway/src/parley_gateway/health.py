"""`/health`, `/health/live`, `/health/ready` in the Zextras health shape, covering NATS and every service."""

from __future__ import annotations

import asyncio
from typing import Literal

from aiohttp import web
from nats.aio.client import Client
from parley_common.contracts.base import Payload
from parley_common.contracts.health import Dependency, HealthQuery, ServiceHealth
from parley_common.contracts.rpc import Rejected
from parley_common.messaging import subjects
from parley_common.messaging.rpc import RpcClient

from parley_gateway.http import json_response
from parley_gateway.operations import Operation

PROBE_TIMEOUT = 1.0
TAG = "Health"


class HealthResponse(Payload, frozen=True):
    is_live: bool
    status: Literal["ok", "warn", "error"]
    dependencies: list[Dependency]


class HealthCheck:
    def __init__(
        self, nc: Client, rpc: RpcClient, *, essential: tuple[str, ...], optional: tuple[str, ...]
    ) -> None:
        self._nc = nc
        self._rpc = rpc
        self._essential = essential
        self._optional = optional

    async def _service(self, name: str) -> list[Dependency]:
        reply = await self._rpc.request(
            subjects.health(name), HealthQuery(), ServiceHealth, timeout=PROBE_TIMEOUT
        )
        if isinstance(reply, Rejected):
            return [Dependency(name=name, is_healthy=False)]
        own = Dependency(name=name, is_healthy=reply.value.is_healthy)
        # A service's own dependencies other than the bus (its storage, say) are reported under its name.
        inner = [
            Dependency(name=f"{name}.{d.name}", is_healthy=d.is_healthy) for d in reply.value.dependencies
        ]
        return [own, *(d for d in inner if d.name != f"{name}.nats")]

    async def check(self) -> HealthResponse:
        nats_ok = self._nc.is_connected
        names = (*self._essential, *self._optional)
        results = await asyncio.gather(*(self._service(name) for name in names)) if nats_ok else []
        dependencies = [Dependency(name="nats", is_healthy=nats_ok)]
        essential_ok = nats_ok
        optional_ok = True
        for name, deps in zip(names, results, strict=True):
            dependencies.extend(deps)
            healthy = all(d.is_healthy for d in deps)
            if name in self._essential:
                essential_ok = essential_ok and healthy
            else:
                optional_ok = optional_ok and healthy
        status: Literal["ok", "warn", "error"] = (
            "error" if not essential_ok else ("ok" if optional_ok else "warn")
        )
        return HealthResponse(is_live=True, status=status, dependencies=dependencies)

    def operations(self) -> list[Operation]:
        async def health(request: web.Request, _: object, __: object) -> web.StreamResponse:
            return json_response(await self.check())

        async def live(request: web.Request, _: object, __: object) -> web.StreamResponse:
            return web.Response(status=204)

        async def ready(request: web.Request, _: object, __: object) -> web.StreamResponse:
            report = await self.check()
            return web.Response(status={"ok": 204, "warn": 429, "error": 500}[report.status])

        return [
            Operation(
                "GET",
                "/health",
                "health",
                "Health of the gateway and everything behind it",
                TAG,
                health,
                response=HealthResponse,
                public=True,
                errors=(),
            ),
            Operation(
                "GET",
                "/health/live",
                "healthLive",
                "204 while the process runs",
                TAG,
                live,
                status=204,
                public=True,
                errors=(),
            ),
            Operation(
                "GET",
                "/health/ready",
                "healthReady",
                "204 when ready, 429 when a non-essential dependency is down, 500 when not ready",
                TAG,
                ready,
                status=204,
                public=True,
                errors=(),
                extra_responses={429: "a non-essential dependency is down", 500: "not ready"},
            ),
        ]
