"""Webhooks out, the pure rules: what an endpoint may be, which events it wants, how a POST is signed, how
long to wait before trying a failed delivery again.

An endpoint is an organization's (registered over the API, receiving that organization's events) or the
deployment's (`PARLEY_WEBHOOKS`, receiving every organization's events). A POST is signed as LiveKit signs
its webhooks, so a receiver written for LiveKit verifies it unchanged: `Authorization: <JWT>` (no
`Bearer`), HS256 with the endpoint's secret, `iss` the endpoint id, claim `sha256` the base64 of the
SHA-256 of the exact body bytes, and a short `exp`.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, Final

import msgspec
from parley_common.contracts import catalogue
from parley_common.contracts import webhook as api
from parley_common.errors import Conflict, InvalidCommand
from parley_common.hs256 import HS256Key

CONTENT_TYPE: Final = "application/webhook+json"
# A signature is checked on arrival: a short life limits what a captured request is worth.
SIGNATURE_TTL_SECONDS: Final = 300
# Registered endpoints per organization: each costs a consumer and a worker.
MAX_ENDPOINTS_PER_ORGANIZATION: Final = 50
# Endpoint ids of the deployment's endpoints start with this, so they never collide with registered ones.
CONFIGURED_PREFIX: Final = "config-"


class Endpoint(msgspec.Struct, frozen=True, kw_only=True):
    """An endpoint as delivery knows it. `organization_id` None: the deployment's, for every organization.
    `secret` is the plain signing secret (sealed in storage, never logged: see `__repr__`)."""

    webhook_id: str
    organization_id: str | None
    url: str
    # Empty: every event type.
    event_types: tuple[str, ...]
    secret: str
    description: str | None = None
    created_at: datetime = datetime(1970, 1, 1, tzinfo=UTC)

    def __repr__(self) -> str:
        return f"Endpoint({self.webhook_id}, {self.url})"

    def wants(self, event_type: str, organization_id: str | None) -> bool:
        if self.organization_id is not None and self.organization_id != organization_id:
            return False
        return not self.event_types or event_type in self.event_types

    @property
    def view(self) -> api.Webhook:
        return api.Webhook(
            webhook_id=self.webhook_id,
            url=self.url,
            event_types=self.event_types,
            description=self.description,
            created_at=self.created_at,
        )


def check_url(url: str, where: str = "url") -> str:
    """An absolute http(s) URL by the contract's one rule (`contracts.webhook.URL_PATTERN`, which the
    OpenAPI document states); refused (400) otherwise. Also applied to the deployment's endpoints."""
    if len(url) > api.MAX_URL_LENGTH or not re.search(api.URL_PATTERN, url):
        raise InvalidCommand(
            f"{where}: must be an absolute http:// or https:// URL naming a host name or IPv4 address "
            "(no credentials, no spaces)"
        )
    return url


def check_event_types(types: Iterable[str], where: str = "eventTypes") -> tuple[str, ...]:
    """The types, each from the catalogue, without repeats (first occurrence kept)."""
    wanted = tuple(dict.fromkeys(types))
    unknown = [t for t in wanted if catalogue.kind_of_type(t) is None]
    if unknown:
        raise InvalidCommand(
            f"{where}: unknown event type {unknown[0]!r} (the event catalogue lists the types, "
            "e.g. ConferenceJoinedEvent, ROOM_CREATED)"
        )
    return wanted


def decide_create(
    organization_id: str, body: api.CreateWebhook, *, webhook_id: str, now: datetime, registered: int
) -> Endpoint:
    """A new endpoint of `organization_id`, which has `registered` endpoints already."""
    if registered >= MAX_ENDPOINTS_PER_ORGANIZATION:
        raise Conflict(f"an organization may register at most {MAX_ENDPOINTS_PER_ORGANIZATION} webhooks")
    return Endpoint(
        webhook_id=webhook_id,
        organization_id=organization_id,
        url=check_url(body.url),
        event_types=check_event_types(body.event_types),
        secret=new_secret(),
        description=body.description,
        created_at=now,
    )


def new_secret() -> str:
    return secrets.token_urlsafe(32)


class ConfiguredEndpoint(msgspec.Struct, frozen=True, rename="camel"):
    url: str
    secret: str
    event_types: tuple[str, ...] = ()


def configured(raw: str | None) -> tuple[Endpoint, ...]:
    """The deployment's endpoints from `PARLEY_WEBHOOKS` (a JSON list of `{url, secret, eventTypes}`).

    Their ids derive from the URL, so a restart (or another replica) resumes the same delivery consumer.
    A bad entry is a configuration error: raised (ValueError) at start-up, never skipped silently.
    """
    if not raw or not raw.strip():
        return ()
    try:
        entries = msgspec.json.decode(raw, type=list[ConfiguredEndpoint])
    except msgspec.DecodeError as exc:
        raise ValueError(f"PARLEY_WEBHOOKS: {exc}") from None
    endpoints: dict[str, Endpoint] = {}
    for i, entry in enumerate(entries):
        where = f"PARLEY_WEBHOOKS[{i}]"
        try:
            url = check_url(entry.url, f"{where}.url")
            types = check_event_types(entry.event_types, f"{where}.eventTypes")
        except InvalidCommand as exc:
            raise ValueError(exc.message) from None
        if not entry.secret:
            raise ValueError(f"{where}.secret: required")
        webhook_id = CONFIGURED_PREFIX + hashlib.sha256(url.encode()).hexdigest()[:16]
        endpoints[webhook_id] = Endpoint(
            webhook_id=webhook_id, organization_id=None, url=url, event_types=types, secret=entry.secret
        )
    return tuple(endpoints.values())


def body_digest(body: bytes) -> str:
    """The `sha256` claim: base64 (standard alphabet, padded) of the SHA-256 of the body bytes."""
    return base64.b64encode(hashlib.sha256(body).digest()).decode()


def sign(body: bytes, *, webhook_id: str, secret: str, now: float) -> str:
    """The `Authorization` header value of one POST (a JWT, as LiveKit sends it: without `Bearer`)."""
    return Signer(webhook_id, secret).sign(body, now=now)


class Signer:
    """Signs one endpoint's POSTs: the same JWT as `jwt.encode(claims, secret, "HS256")`, keyed once per
    endpoint (`parley_common.hs256`): a signature per delivery adds up."""

    __slots__ = ("_key", "_webhook_id")

    def __init__(self, webhook_id: str, secret: str) -> None:
        self._webhook_id = webhook_id
        self._key = HS256Key(secret.encode())

    def __repr__(self) -> str:  # never the secret
        return f"Signer({self._webhook_id})"

    def sign(self, body: bytes, *, now: float) -> str:
        claims = {
            "iss": self._webhook_id,
            "nbf": int(now) - 5,
            "exp": int(now) + SIGNATURE_TTL_SECONDS,
            "sha256": body_digest(body),
        }
        return self._key.sign(msgspec.json.encode(claims))


def backoff(attempt: int, *, base: float, cap: float) -> float:
    """Seconds before attempt `attempt + 1` after `attempt` failures: base, 2*base, 4*base... at most cap."""
    return float(min(cap, base * 2 ** max(0, attempt - 1)))


def occurred_at(event: Any) -> datetime:
    """When an event happened (conference, media, snapshot and meeting events say `timestamp`, chat ones
    `sentDate`)."""
    for name in ("timestamp", "sent_date"):
        value = getattr(event, name, None)
        if isinstance(value, datetime):
            return value if value.tzinfo else value.replace(tzinfo=UTC)
    return datetime.now(UTC)
