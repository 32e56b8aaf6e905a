"""Snapshot service settings (`PARLEY_*` environment variables)."""

from __future__ import annotations

import msgspec
from parley_common.config import CommonSettings, development_secrets, env_float, env_int, env_opt

from parley_snapshot.signing import MAX_TTL_SECONDS

# The development signing key of snapshot URLs: never to be used in production (the Kubernetes manifests
# require PARLEY_SNAPSHOT_SIGNING_KEY from the Secret).
DEV_SIGNING_KEY = "parley-dev-snapshot-signing-key-change-me"
DEFAULT_MAX_BYTES = 10 * 1024 * 1024


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    common: CommonSettings
    # Largest image accepted (the gateway enforces it while reading; the service checks it again).
    max_bytes: int
    # How long a signed URL stays valid (at most the signer's cap, 7 days).
    url_ttl_seconds: float
    # HMAC key of signed URLs: the configured one, or the public development key under `make run` only.
    signing_key: str
    development_key: bool
    # How long `request` waits for a frame of the target's camera before falling back to its client.
    capture_timeout_seconds: float

    @classmethod
    def from_env(cls) -> Settings:
        """Raises ValueError, naming the variable, for a setting the service cannot run with."""
        signing_key = env_opt("PARLEY_SNAPSHOT_SIGNING_KEY")
        # Anyone can sign with the public development key: acceptable only where every secret is public.
        if signing_key is None and not development_secrets():
            raise ValueError(
                "PARLEY_SNAPSHOT_SIGNING_KEY is not set: a deployment (real secrets configured) must set it, "
                "e.g. to the output of: openssl rand -base64 32"
            )
        if signing_key is not None and len(signing_key.encode()) < 16:
            raise ValueError("PARLEY_SNAPSHOT_SIGNING_KEY must be at least 16 bytes")
        url_ttl = env_float("PARLEY_SNAPSHOT_URL_TTL_SECONDS", 15 * 60.0)
        if not 0 < url_ttl <= MAX_TTL_SECONDS:
            raise ValueError(
                f"PARLEY_SNAPSHOT_URL_TTL_SECONDS must be positive and at most {MAX_TTL_SECONDS} (7 days), "
                f"got {url_ttl:g}"
            )
        return cls(
            common=CommonSettings.from_env(),
            max_bytes=env_int("PARLEY_SNAPSHOT_MAX_BYTES", DEFAULT_MAX_BYTES),
            url_ttl_seconds=url_ttl,
            signing_key=signing_key or DEV_SIGNING_KEY,
            development_key=signing_key is None,
            capture_timeout_seconds=env_float("PARLEY_SNAPSHOT_CAPTURE_TIMEOUT_SECONDS", 2.0),
        )
