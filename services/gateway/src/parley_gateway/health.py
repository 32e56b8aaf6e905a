"""`/health`, `/health/live`, `/health/ready` in the Zextras health shape, covering NATS and every service."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Literal

import nats.errors
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


def judge(
    nats_ok: bool,
    reports: Mapping[str, ServiceHealth | None],
    *,
    essential: tuple[str, ...],
    optional: tuple[str, ...],
) -> HealthResponse:
    """The health verdict from what each service reported (None: it did not answer, or NATS is down).

    A pure decision, so that any outage (no NATS, no responder, a timeout) yields a report, never an
    exception. A service judges itself (`is_healthy` covers its storage, say); its dependencies other than
    the bus are listed under its name. A dependency named after another probed service (the conference
    service's view of the media nodes it heard) is a witness for that service: media is ready only when a
    node answers and the conference service knows a node to place streams on, so the first publish after
    "ready" finds one. Unprobed, such a dependency is only listed (the reporter's own verdict ignores it).
    """
    names = (*essential, *optional)
    witnesses: dict[str, list[bool]] = {name: [] for name in names}
    own: dict[str, list[Dependency]] = {}
    for name in names:
        report = reports.get(name) if nats_ok else None
        inner: list[Dependency] = []
        for d in report.dependencies if report is not None else ():
            if d.name == "nats":
                continue
            if d.name in witnesses and d.name != name:
                witnesses[d.name].append(d.is_healthy)
            inner.append(Dependency(name=f"{name}.{d.name}", is_healthy=d.is_healthy))
        own[name] = inner
    dependencies = [Dependency(name="nats", is_healthy=nats_ok)]
    essential_ok = nats_ok
    optional_ok = True
    for name in names:
        report = reports.get(name) if nats_ok else None
        healthy = report is not None and report.is_healthy and all(witnesses[name])
        dependencies.append(Dependency(name=name, is_healthy=healthy))
        dependencies.extend(own[name])
        if name in essential:
            essential_ok = essential_ok and healthy
        else:
            optional_ok = optional_ok and healthy
    status: Literal["ok", "warn", "error"] = (
        "error" if not essential_ok else ("ok" if optional_ok else "warn")
    )
    return HealthResponse(is_live=True, status=status, dependencies=dependencies)


class HealthCheck:
    def __init__(
        self, nc: Client, rpc: RpcClient, *, essential: tuple[str, ...], optional: tuple[str, ...]
    ) -> None:
        self._nc = nc
        self._rpc = rpc
        self._essential = essential
        self._optional = optional

    async def _probe(self, name: str) -> ServiceHealth | None:
        """What `name` reports, or None when it cannot be asked (bus lost mid-probe included)."""
        try:
            reply = await self._rpc.request(
                subjects.health(name), HealthQuery(), ServiceHealth, timeout=PROBE_TIMEOUT
            )
        except nats.errors.Error:
            return None
        return None if isinstance(reply, Rejected) else reply.value

    async def check(self) -> HealthResponse:
        names = (*self._essential, *self._optional)
        # No probe while the bus is down: each would wait out its timeout (or fail) for a known answer.
        nats_ok = self._nc.is_connected
        replies = await asyncio.gather(*(self._probe(name) for name in names)) if nats_ok else []
        reports = dict(zip(names, replies, strict=False))
        return judge(nats_ok, reports, essential=self._essential, optional=self._optional)

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
