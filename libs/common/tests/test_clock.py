"""Instants as the dialects write them (`parley_common.clock`): one parser, one RFC 3339 writer."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from parley_common.clock import parse_instant, rfc3339


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-12-01T10:30:00Z", datetime(2026, 12, 1, 10, 30, tzinfo=UTC)),
        ("2026-12-01T11:30:00+01:00", datetime(2026, 12, 1, 10, 30, tzinfo=UTC)),
        ("2026-12-01T10:30:00.250Z", datetime(2026, 12, 1, 10, 30, 0, 250000, tzinfo=UTC)),
        ("2026-12-01T10:30:00", datetime(2026, 12, 1, 10, 30, tzinfo=UTC)),  # no zone: UTC
        ("Tue, 01 Dec 2026 10:30:00 GMT", datetime(2026, 12, 1, 10, 30, tzinfo=UTC)),
        ("Tue, 01 Dec 2026 10:30:00 -0000", datetime(2026, 12, 1, 10, 30, tzinfo=UTC)),
        ("1796121000000", datetime(2026, 12, 1, 10, 30, tzinfo=UTC)),
        ("  2026-12-01T10:30:00Z ", datetime(2026, 12, 1, 10, 30, tzinfo=UTC)),
        ("99999999999999999999999", None),  # epoch ms out of range
        ("not a time", None),
        ("", None),
        (None, None),
        ("2026-13-45T99:00:00Z", None),
    ],
)
def test_parse_instant_reads_rfc3339_rfc1123_and_epoch_ms(
    text: str | None, expected: datetime | None
) -> None:
    parsed = parse_instant(text, epoch_ms=True)
    assert parsed == expected
    assert parsed is None or parsed.tzinfo is UTC


def test_digits_are_a_time_only_where_epoch_milliseconds_are_allowed() -> None:
    # Coviu's times are date-times (its document says so): `0` is no time there; SourceFuse's clients send
    # JavaScript dates, numbers included.
    assert parse_instant("0") is None
    assert parse_instant("0", epoch_ms=True) == datetime(1970, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (datetime(2026, 12, 1, 10, 30, tzinfo=UTC), "2026-12-01T10:30:00Z"),
        (datetime(2026, 12, 1, 11, 30, tzinfo=timezone(timedelta(hours=1))), "2026-12-01T10:30:00Z"),
        (datetime(2026, 12, 1, 10, 30, 0, 250000, tzinfo=UTC), "2026-12-01T10:30:00.250000Z"),
        (datetime(2026, 12, 1, 10, 30), "2026-12-01T10:30:00Z"),  # naive: UTC
    ],
)
def test_rfc3339_writes_utc_with_z(value: datetime, text: str) -> None:
    assert rfc3339(value) == text
    assert parse_instant(rfc3339(value)) == value.replace(tzinfo=value.tzinfo or UTC)
