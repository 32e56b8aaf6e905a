"""The snapshot service's start-up settings: no public signing key outside development, a capped URL life."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from parley_common.config import DEV_JWT_SECRET
from parley_snapshot.settings import DEV_SIGNING_KEY, Settings
from parley_snapshot.signing import MAX_TTL_SECONDS

REAL_SECRET = "a-real-jwt-secret-of-a-deployment-0123456789"
SETTINGS = (
    "PARLEY_JWT_SECRET",
    "PARLEY_JWT_PUBLIC_KEY",
    "PARLEY_JWT_PUBLIC_KEY_FILE",
    "PARLEY_DATA_KEY",
    "PARLEY_SNAPSHOT_SIGNING_KEY",
    "PARLEY_SNAPSHOT_URL_TTL_SECONDS",
)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in SETTINGS:
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize("secret", [None, DEV_JWT_SECRET])
def test_development_falls_back_to_the_development_key(
    monkeypatch: pytest.MonkeyPatch, secret: str | None
) -> None:
    if secret is not None:
        monkeypatch.setenv("PARLEY_JWT_SECRET", secret)
    settings = Settings.from_env()
    assert (settings.signing_key, settings.development_key) == (DEV_SIGNING_KEY, True)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("PARLEY_JWT_SECRET", REAL_SECRET),
        ("PARLEY_JWT_PUBLIC_KEY_FILE", "/etc/parley/idp.pem"),
        ("PARLEY_DATA_KEY", "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="),
    ],
)
def test_any_real_secret_makes_the_signing_key_required(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValueError, match="PARLEY_SNAPSHOT_SIGNING_KEY is not set"):
        Settings.from_env()
    monkeypatch.setenv("PARLEY_SNAPSHOT_SIGNING_KEY", "a-configured-signing-key")
    settings = Settings.from_env()
    assert (settings.signing_key, settings.development_key) == ("a-configured-signing-key", False)


@pytest.mark.parametrize("ttl", ["0", "-5", str(MAX_TTL_SECONDS + 1), str(365 * 86400)])
def test_a_url_life_beyond_the_cap_is_refused(monkeypatch: pytest.MonkeyPatch, ttl: str) -> None:
    monkeypatch.setenv("PARLEY_SNAPSHOT_URL_TTL_SECONDS", ttl)
    with pytest.raises(ValueError, match="PARLEY_SNAPSHOT_URL_TTL_SECONDS"):
        Settings.from_env()


def test_a_short_configured_key_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PARLEY_SNAPSHOT_SIGNING_KEY", "short")
    with pytest.raises(ValueError, match="at least 16 bytes"):
        Settings.from_env()


def test_the_service_refuses_to_start_with_one_clear_line() -> None:
    """With a real JWT secret and no signing key the process exits non-zero before touching NATS."""
    env = {k: v for k, v in os.environ.items() if k not in SETTINGS}
    env.update(PARLEY_JWT_SECRET=REAL_SECRET, PARLEY_NATS_URL="nats://127.0.0.1:9")
    done = subprocess.run(
        [sys.executable, "-m", "parley_snapshot"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode != 0
    lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert "PARLEY_SNAPSHOT_SIGNING_KEY is not set" in lines[0] and "Traceback" not in lines[0]
