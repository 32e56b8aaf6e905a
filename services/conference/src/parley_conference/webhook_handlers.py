"""Webhooks out, the use cases: register, list, show (with the parked deliveries), delete an
organization's endpoints. Delivery itself runs in `adapters.webhook_delivery`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from parley_common.clock import new_id, utcnow
from parley_common.contracts import webhook as api
from parley_common.contracts.base import Empty
from parley_common.contracts.rpc import Accepted, Request
from parley_common.errors import NotFound, Reply, rejecting

from parley_conference import webhooks
from parley_conference.webhooks import Endpoint


class Endpoints(Protocol):
    async def add(self, endpoint: Endpoint) -> None: ...
    async def count(self, organization_id: str) -> int: ...
    async def of_organization(self, organization_id: str) -> list[Endpoint]: ...
    async def get(self, organization_id: str, webhook_id: str) -> Endpoint | None: ...
    async def remove(self, organization_id: str, webhook_id: str) -> bool: ...
    async def failures(self, webhook_id: str) -> tuple[api.WebhookFailure, ...]: ...


class WebhookHandlers:
    def __init__(self, endpoints: Endpoints, changed: Callable[[], Awaitable[None]]) -> None:
        self._endpoints = endpoints
        # Every replica's fan-out cache and the delivery supervisor learn of a change at once.
        self._changed = changed

    def use_cases(self) -> dict[str, tuple[str, type[Any], Callable[[Request[Any]], Awaitable[Reply]]]]:
        """op -> (cmd|qry, body type, handler), served on `parley.cmd|qry.webhook.<op>`."""
        return {
            "createWebhook": ("cmd", api.CreateWebhook, self.create),
            "deleteWebhook": ("cmd", api.WebhookRef, self.delete),
            "listWebhooks": ("qry", Empty, self.list_webhooks),
            "getWebhook": ("qry", api.WebhookRef, self.get),
        }

    @rejecting
    async def create(self, request: Request[api.CreateWebhook]) -> Reply:
        organization_id = request.caller.organization_id
        endpoint = webhooks.decide_create(
            organization_id,
            request.body,
            webhook_id=new_id(),
            now=utcnow(),
            registered=await self._endpoints.count(organization_id),
        )
        await self._endpoints.add(endpoint)
        await self._changed()
        view = endpoint.view
        return Accepted(
            value=api.CreatedWebhook(
                webhook_id=view.webhook_id,
                url=view.url,
                event_types=view.event_types,
                description=view.description,
                created_at=view.created_at,
                secret=endpoint.secret,
            )
        )

    @rejecting
    async def list_webhooks(self, request: Request[Empty]) -> Reply:
        found = await self._endpoints.of_organization(request.caller.organization_id)
        return Accepted(value=api.Webhooks(items=tuple(e.view for e in found)))

    @rejecting
    async def get(self, request: Request[api.WebhookRef]) -> Reply:
        endpoint = await self._visible(request)
        view = endpoint.view
        return Accepted(
            value=api.WebhookDetails(
                webhook_id=view.webhook_id,
                url=view.url,
                event_types=view.event_types,
                description=view.description,
                created_at=view.created_at,
                failures=await self._endpoints.failures(endpoint.webhook_id),
            )
        )

    @rejecting
    async def delete(self, request: Request[api.WebhookRef]) -> Reply:
        if not await self._endpoints.remove(request.caller.organization_id, request.body.webhook_id):
            raise NotFound(f"webhook {request.body.webhook_id} not found")
        await self._changed()
        return Accepted(value=Empty())

    async def _visible(self, request: Request[api.WebhookRef]) -> Endpoint:
        found = await self._endpoints.get(request.caller.organization_id, request.body.webhook_id)
        if found is None:
            raise NotFound(f"webhook {request.body.webhook_id} not found")
        return found
