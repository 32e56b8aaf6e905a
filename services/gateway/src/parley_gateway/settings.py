"""Gateway settings (`PARLEY_*` environment variables)."""

from __future__ import annotations

import msgspec
from parley_common.config import CommonSettings, env_float, env_int, env_opt, env_str


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    common: CommonSettings
    host: str
    port: int
    # A long poll of the event feed with nothing new answers [] after this long.
    longpoll_seconds: float
    # Push-channel endpoints are reported alive this often (well inside the keep-alive window).
    presence_interval_seconds: float
    max_body_bytes: int
    # Services whose health /health reports; the essential ones make /health/ready fail when down.
    essential_services: tuple[str, ...]
    optional_services: tuple[str, ...]
    # Media commands wait on a media node's SDP work: longer than other commands, and a little longer than
    # the conference service waits for the node, so its own 503 arrives first.
    media_request_timeout_seconds: float
    # The gateway's address as browsers reach it (`https://parley.example.com`), for links it hands out
    # (Coviu's `entry_url`); None: the scheme and host of the request that asks for the link.
    public_url: str | None = None
    # What `POST /webhooks/session` (the media provider's call, no bearer) must carry when set: query
    # `secret` or the HTTP Basic password. None: the webhook is open, as the real SourceFuse service's is.
    session_webhook_secret: str | None = None

    @classmethod
    def from_env(cls) -> Settings:
        return cls(
            common=CommonSettings.from_env(),
            host=env_str("PARLEY_HTTP_HOST", "127.0.0.1"),
            port=env_int("PARLEY_HTTP_PORT", 8080),
            longpoll_seconds=env_float("PARLEY_LONGPOLL_SECONDS", 5.0),
            presence_interval_seconds=env_float("PARLEY_PRESENCE_INTERVAL_SECONDS", 10.0),
            max_body_bytes=env_int("PARLEY_MAX_BODY_BYTES", 1024 * 1024),
            essential_services=_names(env_str("PARLEY_ESSENTIAL_SERVICES", "conference")),
            optional_services=_names(env_str("PARLEY_OPTIONAL_SERVICES", "")),
            media_request_timeout_seconds=env_float("PARLEY_MEDIA_REQUEST_TIMEOUT_SECONDS", 5.0) + 1.0,
            public_url=_public_url(env_opt("PARLEY_PUBLIC_URL")),
            session_webhook_secret=env_opt("PARLEY_SESSION_WEBHOOK_SECRET"),
        )


def _names(raw: str) -> tuple[str, ...]:
    return tuple(name.strip() for name in raw.split(",") if name.strip())


def _public_url(raw: str | None) -> str | None:
    """`PARLEY_PUBLIC_URL` without its trailing slash; refused at start-up unless an absolute http(s) URL."""
    if raw is None:
        return None
    url = raw.strip().rstrip("/")
    if not url.startswith(("http://", "https://")) or len(url.split("://", 1)[1]) == 0:
        raise ValueError(f"PARLEY_PUBLIC_URL must be an absolute http(s) URL, got {raw!r}")
    return url
