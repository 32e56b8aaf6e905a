"""Snapshot service settings (`PARLEY_*` environment variables)."""

from __future__ import annotations

import msgspec
from parley_common.config import CommonSettings, env_float, env_int, env_opt

# The development signing key of snapshot URLs: never to be used in production (the Kubernetes manifests
# require PARLEY_SNAPSHOT_SIGNING_KEY from the Secret).
DEV_SIGNING_KEY = "parley-dev-snapshot-signing-key-change-me"
DEFAULT_MAX_BYTES = 10 * 1024 * 1024


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    common: CommonSettings
    # Largest image accepted (the gateway enforces it while reading; the service checks it again).
    max_bytes: int
    # How long a signed URL stays valid.
    url_ttl_seconds: float
    # HMAC key of signed URLs; None means the development key.
    signing_key: str | None
    # How long `request` waits for a frame of the target's camera before falling back to its client.
    capture_timeout_seconds: float

    @classmethod
    def from_env(cls) -> Settings:
        return cls(
            common=CommonSettings.from_env(),
            max_bytes=env_int("PARLEY_SNAPSHOT_MAX_BYTES", DEFAULT_MAX_BYTES),
            url_ttl_seconds=env_float("PARLEY_SNAPSHOT_URL_TTL_SECONDS", 15 * 60.0),
            signing_key=env_opt("PARLEY_SNAPSHOT_SIGNING_KEY"),
            capture_timeout_seconds=env_float("PARLEY_SNAPSHOT_CAPTURE_TIMEOUT_SECONDS", 2.0),
        )
