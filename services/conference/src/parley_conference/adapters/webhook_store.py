"""Webhook endpoints in the document store: `webhooks` (one document per registered endpoint, its secret
sealed with the data key: readable to sign, unreadable in the database) and `webhook_failures` (the
parked deliveries, one per endpoint and event). Also the directory delivery reads: an organization's
endpoints plus the deployment's, cached for a second (fan-out asks once per event)."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime

from parley_common.contracts import webhook as api
from parley_common.sealing import Sealer
from parley_common.storage import DESCENDING, Collection, DocumentStore, Index

from parley_conference.webhooks import Endpoint

# GET shows this many parked deliveries (the newest), and this many are kept per endpoint.
FAILURES_SHOWN = 100
FAILURES_KEPT = 1000


class WebhookRepository:
    def __init__(self, endpoints: Collection, failures: Collection, sealer: Sealer) -> None:
        self._endpoints = endpoints
        self._failures = failures
        self._sealer = sealer

    @classmethod
    async def open(cls, store: DocumentStore, sealer: Sealer) -> WebhookRepository:
        return cls(
            await store.collection("webhooks", [Index(("org", "createdMs"))]),
            await store.collection("webhook_failures", [Index(("webhookId", "parkedMs"))]),
            sealer,
        )

    def _endpoint(self, doc: dict[str, object]) -> Endpoint:
        return Endpoint(
            webhook_id=str(doc["_id"]),
            organization_id=str(doc["org"]),
            url=str(doc["url"]),
            event_types=tuple(doc["eventTypes"]),  # type: ignore[arg-type]
            secret=self._sealer.open(str(doc["secret"])).decode(),
            description=doc.get("description"),  # type: ignore[arg-type]
            created_at=datetime.fromisoformat(str(doc["createdAt"])),
        )

    async def add(self, endpoint: Endpoint) -> None:
        assert endpoint.organization_id is not None, "only an organization's endpoints are stored"
        await self._endpoints.insert(
            {
                "_id": endpoint.webhook_id,
                "org": endpoint.organization_id,
                "url": endpoint.url,
                "eventTypes": list(endpoint.event_types),
                "description": endpoint.description,
                "secret": self._sealer.seal(endpoint.secret.encode()),
                "createdAt": endpoint.created_at.isoformat(),
                "createdMs": int(endpoint.created_at.timestamp() * 1000),
            }
        )

    async def count(self, organization_id: str) -> int:
        return await self._endpoints.count({"org": organization_id})

    async def of_organization(self, organization_id: str) -> list[Endpoint]:
        docs = await self._endpoints.find({"org": organization_id}, sort=[("createdMs", 1)])
        return [self._endpoint(doc) for doc in docs]

    async def all(self) -> list[Endpoint]:
        return [self._endpoint(doc) for doc in await self._endpoints.find()]

    async def get(self, organization_id: str, webhook_id: str) -> Endpoint | None:
        doc = await self._endpoints.get(webhook_id)
        # Another organization's endpoint is as unknown as a missing one.
        return None if doc is None or doc["org"] != organization_id else self._endpoint(doc)

    async def remove(self, organization_id: str, webhook_id: str) -> bool:
        gone = await self._endpoints.delete(webhook_id, where={"org": organization_id})
        if gone:
            await self._failures.delete_many({"webhookId": webhook_id})
        return gone

    async def park(self, webhook_id: str, failure: api.WebhookFailure) -> None:
        """Record a delivery given up; a redelivered event parked again replaces its record."""
        await self._failures.replace(
            {
                "_id": f"{webhook_id}:{failure.event_id}",
                "webhookId": webhook_id,
                "eventId": failure.event_id,
                "eventType": failure.event_type,
                "attempts": failure.attempts,
                "lastError": failure.last_error,
                "parkedAt": failure.parked_at.isoformat(),
                "parkedMs": int(failure.parked_at.timestamp() * 1000),
            },
            upsert=True,
        )
        # Bounded: an endpoint down for days keeps its newest failures only.
        old = await self._failures.find(
            {"webhookId": webhook_id}, sort=[("parkedMs", DESCENDING)], skip=FAILURES_KEPT, limit=100
        )
        for doc in old:
            await self._failures.delete(doc["_id"])

    async def failures(self, webhook_id: str) -> tuple[api.WebhookFailure, ...]:
        docs = await self._failures.find(
            {"webhookId": webhook_id}, sort=[("parkedMs", DESCENDING)], limit=FAILURES_SHOWN
        )
        return tuple(
            api.WebhookFailure(
                event_id=doc["eventId"],
                event_type=doc["eventType"],
                attempts=doc["attempts"],
                last_error=doc["lastError"],
                parked_at=datetime.fromisoformat(doc["parkedAt"]),
            )
            for doc in docs
        )


class WebhookDirectory:
    """Which endpoints exist: for fan-out (an organization's, cached `ttl` seconds) and for the delivery
    supervisor (all of them). `changed()` after a registration or deletion here drops the cache and wakes
    the supervisor; another replica's change is seen within `ttl` (fan-out) or one supervisor round."""

    def __init__(
        self, repository: WebhookRepository, configured: tuple[Endpoint, ...], *, ttl: float = 1.0
    ) -> None:
        self.repository = repository
        self.configured = configured
        self._ttl = ttl
        self._cache: dict[str, tuple[float, list[Endpoint]]] = {}
        self.wake = asyncio.Event()

    def changed(self) -> None:
        self._cache.clear()
        self.wake.set()

    async def for_organization(self, organization_id: str | None) -> list[Endpoint]:
        if organization_id is None:
            return list(self.configured)
        now = time.monotonic()
        cached = self._cache.get(organization_id)
        if cached is None or now - cached[0] > self._ttl:
            cached = (now, await self.repository.of_organization(organization_id))
            self._cache[organization_id] = cached
        return [*self.configured, *cached[1]]

    async def everyone(self) -> list[Endpoint]:
        return [*self.configured, *await self.repository.all()]
