"""Settings shared by every service, read from the environment (`PARLEY_*`)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import msgspec

DEFAULT_NATS_URL = "nats://127.0.0.1:4222"
# The development signing secret: printed by `make run`, never to be used in production.
DEV_JWT_SECRET = "parley-dev-secret-change-me"


def env_str(name: str, default: str) -> str:
    value = os.environ.get(name, "").strip()
    return value or default


def env_opt(name: str) -> str | None:
    value = os.environ.get(name, "").strip()
    return value or None


def env_float(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return float(raw)
    except ValueError as exc:
        raise ValueError(f"{name} must be a number, got {raw!r}") from exc


def env_int(name: str, default: int) -> int:
    return int(env_float(name, default))


class CommonSettings(msgspec.Struct, frozen=True, kw_only=True):
    """What every service process needs: where NATS is and where its data lives."""

    nats_url: str
    data_dir: Path
    mongo_url: str | None
    # Request/reply deadline for commands between services; the gateway answers 503 past it.
    request_timeout: float

    @classmethod
    def from_env(cls) -> CommonSettings:
        return cls(
            nats_url=env_str("PARLEY_NATS_URL", DEFAULT_NATS_URL),
            data_dir=Path(env_str("PARLEY_DATA_DIR", ".data")),
            mongo_url=env_opt("PARLEY_MONGO_URL"),
            request_timeout=env_float("PARLEY_REQUEST_TIMEOUT_SECONDS", 1.5),
        )

    def sqlite_path(self, service: str) -> str:
        return str(self.data_dir / f"{service}.sqlite3")


def development_secrets(environ: Mapping[str, str] | None = None) -> bool:
    """No real secret configured (`make run` territory): PARLEY_JWT_SECRET unset or the development
    default, no external IdP key, no PARLEY_DATA_KEY. Only then may a public development key stand in for
    a missing one; any real secret means a deployment, where a missing key must stop the service instead."""
    env = os.environ if environ is None else environ

    def given(name: str) -> str:
        return env.get(name, "").strip()

    if given("PARLEY_JWT_SECRET") not in ("", DEV_JWT_SECRET):
        return False
    return not any(
        given(n) for n in ("PARLEY_JWT_PUBLIC_KEY", "PARLEY_JWT_PUBLIC_KEY_FILE", "PARLEY_DATA_KEY")
    )
