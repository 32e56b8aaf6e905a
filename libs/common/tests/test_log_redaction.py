"""Credentials never reach a log line, whoever writes it: structlog loggers, and stdlib ones (aiohttp)."""

from __future__ import annotations

import io
import logging
import sys

import pytest
import structlog
from parley_common.log import configure_logging, get_logger, redact_text

TOKEN = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlU0VDUkVU"


@pytest.mark.parametrize(
    "text",
    [
        f"Got more than 8190 bytes when reading: b'Authorization: Bearer {TOKEN}\\r\\nHost: x'.",
        "Authorization: Basic YWxpY2U6U0VDUkVUU0VDUkVU",
        "cookie=session=SECRETSECRET; theme=dark",
        f"token {TOKEN} in a message",
        f"a truncated JWT {TOKEN[:30]}",
    ],
)
def test_credential_shaped_text_is_redacted(text: str) -> None:
    redacted = redact_text(text)
    assert "SECRET" not in redacted and "U0VDUkVU" not in redacted and "eyJ" not in redacted, redacted
    assert "[redacted]" in redacted


def test_ordinary_text_is_left_alone() -> None:
    text = "join refused: endpoint e1 belongs to another user (authorization failed)"
    assert redact_text(text) == text


def test_structlog_and_stdlib_lines_and_tracebacks_are_redacted(monkeypatch: pytest.MonkeyPatch) -> None:
    out = io.StringIO()
    monkeypatch.setattr(sys, "stderr", out)
    root = logging.getLogger()
    saved = root.handlers[:]
    root.handlers = []  # so configure_logging installs its stdlib handler here
    try:
        configure_logging("test", json=True)
        try:
            raise ValueError(f"bad header b'Authorization: Bearer {TOKEN}'")
        except ValueError:
            get_logger("redaction-test").exception("failed", detail=f"Bearer {TOKEN}")
            logging.getLogger("aiohttp.server").exception("Error handling request")
    finally:
        for handler in root.handlers:
            root.removeHandler(handler)
        root.handlers = saved
        structlog.reset_defaults()
    logged = out.getvalue()
    assert "failed" in logged and "Error handling request" in logged
    assert "Traceback" in logged  # the tracebacks are there, minus the credential
    assert TOKEN not in logged and TOKEN[:20] not in logged, logged
