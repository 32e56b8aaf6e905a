"""Webhooks out: an organization's HTTP endpoints that receive Parley's events as signed JSON POSTs.

Commands and queries on `parley.cmd|qry.webhook.<op>` (served by the conference service, queue group
`conference`); the HTTP routes `/rtc-api/webhooks...` carry the same bodies. What an endpoint receives is a
`WebhookEvent` (LiveKit's WebhookEvent envelope around the event exactly as it is on the bus).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Final

import msgspec

from parley_common.contracts.base import Id, Payload
from parley_common.contracts.catalogue import EVENT_TYPES

MAX_URL_LENGTH: Final = 2048
MAX_DESCRIPTION_LENGTH: Final = 500
# More than the catalogue has (55 today) but bounded: a body cannot make the service compare a huge list.
MAX_EVENT_TYPES: Final = 256

# An absolute http(s) URL: a host name or IPv4 address (no user:password@, no IPv6 literal), an optional
# port up to 65535, then anything but spaces and control characters. The document states it and the
# gateway decodes with it, so a body the document calls valid is one the service accepts (Python's `re`
# and ECMA-262 read it the same way).
_PORT = r"(?::(?:6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[0-9]{1,4}))?"
URL_PATTERN: Final = (
    r"^[Hh][Tt][Tt][Pp][Ss]?://[^\x00-\x20\x7f/?#@:\[\]\\]+" + _PORT + r"(?:[/?#][^\x00-\x20\x7f]*)?$(?!\n)"
)
WebhookUrl = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=MAX_URL_LENGTH,
        pattern=URL_PATTERN,
        description="an absolute http:// or https:// URL (a host name or IPv4 address, optional port)",
    ),
]
# The catalogue's types, stated in the document; checked by the service (400 naming an unknown type).
EventTypeName = Annotated[
    str, msgspec.Meta(min_length=1, max_length=128, extra_json_schema={"enum": list(EVENT_TYPES)})
]


class CreateWebhook(Payload, frozen=True):
    """`POST /rtc-api/webhooks`: where to POST, and which event types (empty: every type)."""

    url: WebhookUrl
    event_types: Annotated[
        tuple[EventTypeName, ...],
        msgspec.Meta(
            max_length=MAX_EVENT_TYPES,
            description="event types from the event catalogue (`type` of each event); empty: all",
        ),
    ] = ()
    description: Annotated[str, msgspec.Meta(max_length=MAX_DESCRIPTION_LENGTH)] | None = None


class WebhookRef(Payload, frozen=True):
    webhook_id: Id


class Webhook(Payload, frozen=True):
    """A registered endpoint, as listed (never with its secret)."""

    webhook_id: str
    url: str
    event_types: tuple[str, ...]
    description: str | None
    created_at: datetime


class CreatedWebhook(Webhook, frozen=True):
    """The answer to a registration: the endpoint and its signing secret, returned this once only."""

    secret: str


class Webhooks(Payload, frozen=True):
    items: tuple[Webhook, ...]


class WebhookFailure(Payload, frozen=True):
    """A delivery given up after the configured number of attempts (parked): the endpoint never got it."""

    event_id: str
    event_type: str
    attempts: int
    last_error: str
    parked_at: datetime


class WebhookDetails(Webhook, frozen=True):
    """One endpoint with its most recent parked deliveries (newest first)."""

    failures: tuple[WebhookFailure, ...]


class WebhookEvent(Payload, frozen=True):
    """The body POSTed to an endpoint (`Content-Type: application/webhook+json`).

    `id` is the event's id (also the `Webhook-Id` header: deduplicate on it, delivery is at least once),
    `type` its catalogue type (also `Webhook-Event-Type`), `createdAt` when it happened, `event` the event
    exactly as subscribers read it on the bus.
    """

    id: str
    type: str
    created_at: datetime
    organization_id: str | None
    event: msgspec.Raw


class WebhookDelivery(Payload, frozen=True):
    """One event owed to one endpoint, on the delivery stream (`parley.webhook.<webhookId>`)."""

    webhook_id: str
    # Deliveries with the same key reach the endpoint in order (`catalogue.ordering_key`).
    ordering_key: str
    body: WebhookEvent
