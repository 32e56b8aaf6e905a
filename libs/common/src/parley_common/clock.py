"""Time and identifiers: one place so tests, domain code and the gateway dialects agree on formats."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime


def utcnow() -> datetime:
    """Now, timezone-aware UTC, truncated to milliseconds (what JSON clients round-trip faithfully)."""
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def new_id() -> str:
    return str(uuid.uuid4())


def parse_instant(text: str | None, *, epoch_ms: bool = False) -> datetime | None:
    """An instant (UTC) from RFC 3339 / ISO 8601, RFC 1123 (`toUTCString()`) or, with `epoch_ms`, epoch
    milliseconds (digits: what a JavaScript client sends for a `Date` as a number); None when empty or
    unreadable (each caller words its own error).

    A time without a zone is UTC (the real services read ISO dates without one as the local time of a server
    that runs in UTC; RFC 1123's `-0000` is UTC too).
    """
    if text is None:
        return None
    text = text.strip()
    if not text:
        return None
    parsed: datetime | None = None
    if text.isdigit():
        if not epoch_ms:
            return None
        try:
            parsed = datetime.fromtimestamp(int(text) / 1000, UTC)
        except (OverflowError, ValueError, OSError):
            return None
    else:
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            try:
                parsed = parsedate_to_datetime(text)
            except (TypeError, ValueError, IndexError):
                return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def rfc3339(value: datetime) -> str:
    """`value` as RFC 3339 in UTC with a `Z` (a naive datetime is taken as UTC)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
