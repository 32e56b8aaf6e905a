"""Conference service settings (`PARLEY_*` environment variables)."""

from __future__ import annotations

import msgspec
from parley_common.config import CommonSettings, env_float, env_int, env_opt, env_str


class ArchiveSettings(msgspec.Struct, frozen=True, kw_only=True):
    """Uploads of archives to an organization's storage target. Credentials: never logged."""

    s3_access_key: str | None = None
    s3_secret_key: str | None = None
    azure_account_key: str | None = None
    azure_container: str = "archives"
    # An upload is tried this many times, waiting `retry_base * 2**(n-1)` s (at most 60) between tries.
    upload_attempts: int = 5
    retry_base_seconds: float = 2.0

    def __repr__(self) -> str:
        return "ArchiveSettings(<hidden>)"

    @classmethod
    def from_env(cls) -> ArchiveSettings:
        return cls(
            s3_access_key=env_opt("PARLEY_ARCHIVE_S3_ACCESS_KEY"),
            s3_secret_key=env_opt("PARLEY_ARCHIVE_S3_SECRET_KEY"),
            azure_account_key=env_opt("PARLEY_ARCHIVE_AZURE_ACCOUNT_KEY"),
            azure_container=env_str("PARLEY_ARCHIVE_AZURE_CONTAINER", "archives"),
            upload_attempts=max(1, env_int("PARLEY_ARCHIVE_UPLOAD_ATTEMPTS", 5)),
            retry_base_seconds=env_float("PARLEY_ARCHIVE_RETRY_BASE_SECONDS", 2.0),
        )


class WebhookSettings(msgspec.Struct, frozen=True, kw_only=True):
    """Webhooks out. `endpoints`: the deployment's endpoints, `PARLEY_WEBHOOKS` (a JSON list of
    `{url, secret, eventTypes}`: secrets, never logged)."""

    endpoints: str | None = None
    # Attempts before a delivery is parked (shown by GET /rtc-api/webhooks/{id}).
    max_attempts: int = 8
    # Waits between attempts: retry_base * 2**(n-1) s, at most retry_max.
    retry_base_seconds: float = 1.0
    retry_max_seconds: float = 60.0
    # One POST's whole time (connect, send, answer).
    timeout_seconds: float = 5.0
    # Deliveries one endpoint's worker holds at most (its consumer's max_ack_pending): how many ordering
    # keys (conferences, rooms...) progress concurrently behind a slow one.
    window: int = 1000

    def __repr__(self) -> str:
        return f"WebhookSettings(max_attempts={self.max_attempts}, <endpoints hidden>)"

    @classmethod
    def from_env(cls) -> WebhookSettings:
        return cls(
            endpoints=env_opt("PARLEY_WEBHOOKS"),
            max_attempts=max(1, env_int("PARLEY_WEBHOOK_MAX_ATTEMPTS", 8)),
            retry_base_seconds=env_float("PARLEY_WEBHOOK_RETRY_BASE_SECONDS", 1.0),
            retry_max_seconds=env_float("PARLEY_WEBHOOK_RETRY_MAX_SECONDS", 60.0),
            timeout_seconds=env_float("PARLEY_WEBHOOK_TIMEOUT_SECONDS", 5.0),
            window=max(1, env_int("PARLEY_WEBHOOK_WINDOW", 1000)),
        )


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    common: CommonSettings
    # An endpoint not seen for this long is SICK...
    keepalive_seconds: float
    # ...and is removed (ConferenceLeftEvent, reason TIMEOUT) after this much longer.
    keepalive_grace_seconds: float
    # A conference nobody is in ends by itself (reason EMPTY_TIMEOUT) after this long.
    empty_timeout_seconds: float
    sweep_interval_seconds: float
    # How long the service waits for a media node's SDP work before answering 503.
    media_request_timeout_seconds: float
    # A media node not heard for this long is lost: its streams end with reason MEDIA_NODE_LOST.
    media_node_timeout_seconds: float
    # A publish that finds no media node (a fresh stack whose nodes have not announced themselves yet)
    # waits this long at most for a heartbeat before answering 503.
    media_node_wait_seconds: float
    # How long a join of a guarded conference waits for its guard's answer at most (also bounded by the
    # join's own deadline) before answering 503.
    admission_timeout_seconds: float
    archives: ArchiveSettings = ArchiveSettings()
    # A scheduled meeting may start (a token issued) this long before its time (SourceFuse's timeToStart).
    meeting_early_start_minutes: float = 15.0
    webhooks: WebhookSettings = WebhookSettings()

    @classmethod
    def from_env(cls) -> Settings:
        return cls(
            common=CommonSettings.from_env(),
            keepalive_seconds=env_float("PARLEY_KEEPALIVE_SECONDS", 30.0),
            keepalive_grace_seconds=env_float("PARLEY_KEEPALIVE_GRACE_SECONDS", 120.0),
            empty_timeout_seconds=env_float("PARLEY_EMPTY_TIMEOUT_SECONDS", 300.0),
            sweep_interval_seconds=env_float("PARLEY_SWEEP_INTERVAL_SECONDS", 1.0),
            media_request_timeout_seconds=env_float("PARLEY_MEDIA_REQUEST_TIMEOUT_SECONDS", 5.0),
            media_node_timeout_seconds=env_float("PARLEY_MEDIA_NODE_TIMEOUT_SECONDS", 5.0),
            media_node_wait_seconds=env_float("PARLEY_MEDIA_NODE_WAIT_SECONDS", 2.0),
            admission_timeout_seconds=env_float("PARLEY_ADMISSION_TIMEOUT_SECONDS", 1.0),
            archives=ArchiveSettings.from_env(),
            meeting_early_start_minutes=env_float("PARLEY_MEETING_EARLY_START_MINUTES", 15.0),
            webhooks=WebhookSettings.from_env(),
        )
