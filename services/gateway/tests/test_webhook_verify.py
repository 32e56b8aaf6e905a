"""`parley-token verify-webhook` and `verify_webhook`: the receivers' reference check of a webhook."""

from __future__ import annotations

import base64
import hashlib
import time
from pathlib import Path

import jwt
import pytest
from parley_gateway.token_cli import InvalidWebhook, main, verify_webhook

SECRET = "webhook-secret-of-at-least-32-bytes"
BODY = b'{"id":"e1","type":"ROOM_CREATED","event":{}}'


def signed(
    body: bytes = BODY, *, secret: str = SECRET, iss: str = "w1", ttl: int = 300, **extra: object
) -> str:
    """A header as LiveKit's server makes it (and the conference service's webhooks.sign)."""
    claims = {
        "iss": iss,
        "exp": int(time.time()) + ttl,
        "sha256": base64.b64encode(hashlib.sha256(body).digest()).decode(),
    }
    return jwt.encode({**claims, **extra}, secret, algorithm="HS256")


def test_a_valid_webhook_gives_its_claims() -> None:
    claims = verify_webhook(BODY, signed(), SECRET, webhook_id="w1")
    assert claims["iss"] == "w1"
    assert verify_webhook(BODY, "Bearer " + signed(), SECRET)["iss"] == "w1"


@pytest.mark.parametrize(
    ("body", "header", "webhook_id", "reason"),
    [
        (BODY + b" ", signed(), None, "sha256"),
        (BODY, signed(secret="another-secret-of-enough-length-32b"), None, "Signature verification failed"),
        (BODY, signed(ttl=-60), None, "expired"),
        (BODY, signed(iss="w2"), "w1", "issuer"),
        (BODY, signed(sha256=None), None, "sha256"),
        (BODY, "not-a-jwt", None, "bad signature token"),
    ],
)
def test_anything_else_is_refused(body: bytes, header: str, webhook_id: str | None, reason: str) -> None:
    with pytest.raises(InvalidWebhook, match=reason):
        verify_webhook(body, header, SECRET, webhook_id=webhook_id)


def test_the_cli_checks_a_saved_request(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    saved = tmp_path / "body.json"
    saved.write_bytes(BODY)
    args = ["verify-webhook", "--secret", SECRET, "--body-file", str(saved), "--webhook-id", "w1"]
    assert main([*args, "--authorization", signed()]) == 0
    assert '"iss": "w1"' in capsys.readouterr().out
    assert main([*args, "--authorization", signed(secret="another-secret-of-enough-length-32b")]) == 1
    assert "invalid:" in capsys.readouterr().err
    # Minting tokens works as before.
    assert main(["--user", "alice", "--org", "acme"]) == 0
    assert capsys.readouterr().out.count(".") == 2
