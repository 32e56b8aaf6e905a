"""Structured logging: JSON lines off a terminal, coloured console on one.

Every line carries the ids bound in the current context (request id, organization, conference id, user
endpoint id) through structlog's contextvars. Values under secret-looking keys are redacted, and so is
anything credential-shaped inside any logged text (an `Authorization`/`Cookie` header quoted by a library's
error message, a bearer token, a JWT), in structlog's lines and in the stdlib's (aiohttp, nats) alike.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from typing import Any

import structlog

_SECRET_KEYS = frozenset(
    {"authorization", "password", "secret", "token", "access_token", "client_secret", "signature", "jwt"}
)


# Credentials as they appear in text: a header line (also inside a repr, where its end is a quote or an
# escaped \r\n), an Authorization scheme and its token, a JWT (or the start of one).
_CREDENTIAL_TEXT = re.compile(
    r"(?i)\b((?:proxy-)?authorization|cookie|set-cookie|x-api-key)(\s*[:=]\s*)[^\r\n'\"\\]*"
    r"|\b(bearer|basic|digest)\s+[A-Za-z0-9._~+/=-]+"
    r"|\beyJ[A-Za-z0-9_-]{6,}(?:\.[A-Za-z0-9_-]*){0,2}"
)


def _redact_match(match: re.Match[str]) -> str:
    if match.group(1):
        return f"{match.group(1)}{match.group(2)}[redacted]"
    if match.group(3):
        return f"{match.group(3)} [redacted]"
    return "[redacted]"


def redact_text(text: str) -> str:
    """`text` with every credential-shaped part replaced by `[redacted]`."""
    return _CREDENTIAL_TEXT.sub(_redact_match, text)


def _redact_secrets(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key in event_dict:
        if key.lower() in _SECRET_KEYS:
            event_dict[key] = "[redacted]"
    return event_dict


def _redact_credential_text(
    _: Any, __: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    # After format_exc_info, so a rendered traceback is covered too. Strings only: cheap on ordinary lines.
    for key, value in event_dict.items():
        if isinstance(value, str):
            event_dict[key] = redact_text(value)
    return event_dict


class RedactingFormatter(logging.Formatter):
    """A stdlib formatter whose output (message, traceback, stack) goes through `redact_text`."""

    def format(self, record: logging.LogRecord) -> str:
        return redact_text(super().format(record))


def configure_logging(service: str, *, level: str | None = None, json: bool | None = None) -> None:
    """Configure structlog (and stdlib logging underneath) once per process."""
    level_name = (level or os.environ.get("PARLEY_LOG_LEVEL", "INFO")).upper()
    as_json = (not sys.stderr.isatty()) if json is None else json
    renderer: Any = structlog.processors.JSONRenderer() if as_json else structlog.dev.ConsoleRenderer()
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _redact_secrets,
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            _redact_credential_text,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level_name)),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    structlog.contextvars.bind_contextvars(service=service)
    # Libraries logging through stdlib (aiohttp, nats, aiortc) go to stderr at WARNING and above.
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(RedactingFormatter("%(levelname)s %(name)s %(message)s"))
    logging.basicConfig(level=logging.WARNING, handlers=[handler])


def get_logger(name: str | None = None) -> structlog.stdlib.BoundLogger:
    return structlog.get_logger(name)  # type: ignore[no-any-return]


@contextmanager
def log_context(**ids: str | None) -> Iterator[None]:
    """Bind ids (request_id, organization, conference_id, user_endpoint_id, user_id) for a block."""
    present = {k: v for k, v in ids.items() if v is not None}
    with structlog.contextvars.bound_contextvars(**present):
        yield
