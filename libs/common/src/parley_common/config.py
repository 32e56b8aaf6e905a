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
    # Copies of every stream, KV bucket and object store on a JetStream cluster (3 in production, so that
    # losing one server loses nothing); 1 on a single server, which refuses more.
    nats_replicas: int = 1

    @classmethod
    def from_env(cls) -> CommonSettings:
        return cls(
            nats_url=env_str("PARLEY_NATS_URL", DEFAULT_NATS_URL),
            data_dir=Path(env_str("PARLEY_DATA_DIR", ".data")),
            mongo_url=env_opt("PARLEY_MONGO_URL"),
            request_timeout=env_float("PARLEY_REQUEST_TIMEOUT_SECONDS", 1.5),
            nats_replicas=nats_replicas(),
        )

    @property
    def nats_servers(self) -> list[str]:
        return nats_servers(self.nats_url)

    def sqlite_path(self, service: str) -> str:
        return str(self.data_dir / f"{service}.sqlite3")


def nats_replicas(environ: Mapping[str, str] | None = None) -> int:
    """`PARLEY_NATS_REPLICAS`: 1 to 5 (JetStream's limit), default 1."""
    env = os.environ if environ is None else environ
    raw = env.get("PARLEY_NATS_REPLICAS", "").strip() or "1"
    if not raw.isdigit() or not 1 <= int(raw) <= 5:
        raise ValueError(f"PARLEY_NATS_REPLICAS must be a whole number from 1 to 5, got {raw!r}")
    return int(raw)


def nats_servers(url: str) -> list[str]:
    """`PARLEY_NATS_URL` may list a cluster's servers, comma-separated: the client needs one of them up to
    connect and then learns the others from the cluster."""
    return [part.strip() for part in url.split(",") if part.strip()]


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
