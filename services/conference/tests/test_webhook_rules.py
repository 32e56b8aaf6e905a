"""Webhooks out, the pure rules: URLs, event types, the deployment's endpoints, signing, backoff."""

from __future__ import annotations

import base64
import hashlib
import json
import time

import jwt
import pytest
from parley_common.contracts import webhook as api
from parley_common.contracts.catalogue import EVENT_TYPES
from parley_common.errors import Conflict, InvalidCommand
from parley_conference import webhooks
from parley_conference.webhooks import Endpoint


@pytest.mark.parametrize(
    "url", ["http://example.com/hook", "https://hooks.example.com:8443/a?b=c", "http://127.0.0.1:9/x"]
)
def test_http_and_https_urls_with_a_host_are_accepted(url: str) -> None:
    assert webhooks.check_url(url) == url


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.com/x",
        "example.com/hook",
        "http:///no-host",
        "http://exa mple.com/",
        " http://example.com/",
        "http://example.com:99999/",
        "javascript:alert(1)",
    ],
)
def test_other_urls_are_refused_naming_the_field(url: str) -> None:
    with pytest.raises(InvalidCommand, match=r"^url: "):
        webhooks.check_url(url)


def test_event_types_come_from_the_catalogue_without_repeats() -> None:
    assert webhooks.check_event_types(["ROOM_CREATED", "ConferenceJoinedEvent", "ROOM_CREATED"]) == (
        "ROOM_CREATED",
        "ConferenceJoinedEvent",
    )
    with pytest.raises(InvalidCommand, match="eventTypes: unknown event type 'Nope'"):
        webhooks.check_event_types(["ROOM_CREATED", "Nope"])


def test_an_endpoint_wants_its_types_of_its_organization_and_a_configured_one_every_organization() -> None:
    mine = Endpoint(
        webhook_id="w",
        organization_id="acme",
        url="http://x",
        event_types=("ROOM_CREATED",),
        secret="hidden-secret-value",
    )
    assert mine.wants("ROOM_CREATED", "acme")
    assert not mine.wants("ROOM_DELETED", "acme")
    assert not mine.wants("ROOM_CREATED", "globex")
    everyone = Endpoint(webhook_id="c", organization_id=None, url="http://x", event_types=(), secret="s")
    assert all(everyone.wants(t, org) for t in EVENT_TYPES for org in ("acme", None))
    assert "hidden-secret-value" not in repr(mine)  # the secret never reaches a log line


def test_an_organization_has_a_bounded_number_of_endpoints() -> None:
    body = api.CreateWebhook(url="https://example.com/")
    created = webhooks.decide_create(
        "acme", body, webhook_id="w", now=webhooks.occurred_at(None), registered=0
    )
    assert created.organization_id == "acme" and len(created.secret) >= 32 and created.event_types == ()
    with pytest.raises(Conflict):
        webhooks.decide_create(
            "acme",
            body,
            webhook_id="w",
            now=created.created_at,
            registered=webhooks.MAX_ENDPOINTS_PER_ORGANIZATION,
        )


def test_configured_endpoints_parse_with_stable_ids_and_refuse_mistakes() -> None:
    assert webhooks.configured(None) == () == webhooks.configured("  ")
    raw = json.dumps(
        [
            {"url": "https://a.example.com/h", "secret": "s1"},
            {"url": "https://b.example.com/h", "secret": "s2", "eventTypes": ["ROOM_CREATED"]},
        ]
    )
    first, second = webhooks.configured(raw)
    assert first.webhook_id.startswith(webhooks.CONFIGURED_PREFIX) and first.organization_id is None
    assert [e.webhook_id for e in webhooks.configured(raw)] == [first.webhook_id, second.webhook_id]
    assert second.event_types == ("ROOM_CREATED",) and second.secret == "s2"
    for bad, message in [
        ("{", "PARLEY_WEBHOOKS"),
        ('[{"url": "ftp://x", "secret": "s"}]', r"PARLEY_WEBHOOKS\[0\].url"),
        ('[{"url": "http://x", "secret": ""}]', r"PARLEY_WEBHOOKS\[0\].secret"),
        ('[{"url": "http://x", "secret": "s", "eventTypes": ["Nope"]}]', r"PARLEY_WEBHOOKS\[0\].eventTypes"),
    ]:
        with pytest.raises(ValueError, match=message):
            webhooks.configured(bad)


def test_a_post_is_signed_as_livekit_signs_webhooks() -> None:
    body = b'{"id":"e1","type":"ROOM_CREATED"}'
    now = time.time()
    token = webhooks.sign(body, webhook_id="w1", secret="secret-1-of-at-least-32-bytes-long", now=now)
    claims = jwt.decode(token, "secret-1-of-at-least-32-bytes-long", algorithms=["HS256"], issuer="w1")
    assert claims["sha256"] == base64.b64encode(hashlib.sha256(body).digest()).decode()
    assert 0 < claims["exp"] - now <= webhooks.SIGNATURE_TTL_SECONDS
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(token, "another-secret-of-at-least-32-bytes", algorithms=["HS256"])


def test_the_cached_signer_makes_the_token_pyjwt_makes() -> None:
    # The delivery path signs with a per-endpoint `Signer` (an HMAC keyed once), not PyJWT: same bytes.
    body = b'{"id":"e2","type":"ConferenceJoinedEvent"}'
    secret = "secret-2-of-at-least-32-bytes-long"
    signer = webhooks.Signer("w2", secret)
    for now in (1_700_000_000.5, time.time()):
        claims = {"iss": "w2", "nbf": int(now) - 5, "exp": int(now) + webhooks.SIGNATURE_TTL_SECONDS}
        claims["sha256"] = base64.b64encode(hashlib.sha256(body).digest()).decode()
        assert signer.sign(body, now=now) == jwt.encode(claims, secret, algorithm="HS256")
    assert secret not in repr(signer)


def test_backoff_doubles_up_to_its_cap() -> None:
    waits = [webhooks.backoff(n, base=1.0, cap=10.0) for n in range(1, 7)]
    assert waits == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
