"""The contracts' patterns mean the same to the server (Python's `re`, through msgspec) and to the
OpenAPI document's readers (ECMA-262, here jsonschema-rs, the validator schemathesis uses)."""

from __future__ import annotations

import re

import jsonschema_rs
import msgspec
import pytest
from parley_common.contracts.base import ID_MAX_LENGTH, ID_PATTERN, Id
from parley_common.contracts.chat import (
    MEETING_TYPES,
    ROOM_EXTRA_FIELDS,
    ROOM_TYPES,
    USER_TYPES,
    UUID_PATTERN,
    _choice_pattern,
)
from parley_common.contracts.conference import EVENT_TYPE_PATTERN, INSTANT_PATTERN

# Every code point where the two dialects are known to part (whitespace, line ends, C1 controls, BOM), and
# a sample of the rest.
TRICKY = [*range(0x00, 0x300), 0x1680, *range(0x2000, 0x2030), 0x205F, 0x3000, 0xFEFF, 0xFFFF, 0x1F600]


CHAT_CHOICES = [
    _choice_pattern(values) for values in (ROOM_TYPES, ROOM_EXTRA_FIELDS, MEETING_TYPES, USER_TYPES)
]
PATTERNS = [ID_PATTERN, EVENT_TYPE_PATTERN, INSTANT_PATTERN, UUID_PATTERN, *CHAT_CHOICES]
SAMPLES = [
    "a",
    "FooEvent",
    "2011-12-03T10:15:30Z",
    "2024-02-29T00:00:00.5+01:00",
    "0b9c6a1e-3f2d-4c5b-8a7e-1d2c3b4a5f6e",
    "0B9C6A1E-3F2D-4C5B-8A7E-1D2C3B4A5F6E",
    *ROOM_TYPES,
    *(value.upper() for value in ROOM_TYPES),
    "Members",
    "settings",
    "PERMANENT",
    "Guest",
]


@pytest.mark.parametrize("pattern", PATTERNS)
def test_python_and_ecma_read_each_pattern_alike(pattern: str) -> None:
    python = re.compile(pattern)
    ecma = jsonschema_rs.validator_for({"type": "string", "pattern": pattern})
    samples = SAMPLES
    for code in TRICKY:
        c = chr(code)
        for base in samples:
            for value in (c, base + c, c + base, base + c + "\n", base + "\n"):
                assert bool(python.search(value)) == ecma.is_valid(value), (pattern, value)


@pytest.mark.parametrize(
    "value",
    ["", " ", "\u3000", ".", "..", "a/b", "a\\b", "a\n", "a\x00", "a\x85", "x" * (ID_MAX_LENGTH + 1)],
)
def test_the_id_rule_refuses(value: str) -> None:
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert(value, Id)


@pytest.mark.parametrize(
    "value", ["a", "alice@example.com", "a b", "v1.2 (ios)", "ü", "😀", "x" * ID_MAX_LENGTH]
)
def test_the_id_rule_accepts(value: str) -> None:
    assert msgspec.convert(value, Id) == value


@pytest.mark.parametrize(
    ("pattern", "accepted", "refused"),
    [
        (
            UUID_PATTERN,
            ["0b9c6a1e-3f2d-4c5b-8a7e-1d2c3b4a5f6e", "0B9C6A1E-3f2d-4C5B-8a7e-1D2C3B4A5F6E"],
            ["0b9c6a1e3f2d4c5b8a7e1d2c3b4a5f6e", "0b9c6a1e-3f2d-4c5b-8a7e-1d2c3b4a5f6g", "x"],
        ),
        (CHAT_CHOICES[0], ["group", "GROUP", "One_To_One", "channel"], ["groups", "one-to-one", ""]),
        (CHAT_CHOICES[1], ["members", "SETTINGS"], ["members,settings", "member"]),
    ],
)
def test_the_chat_patterns_accept_any_case_and_nothing_else(
    pattern: str, accepted: list[str], refused: list[str]
) -> None:
    for value in accepted:
        assert re.search(pattern, value), value
    for value in [*refused, *(value + "\n" for value in accepted)]:
        assert not re.search(pattern, value), value
