"""The contracts' patterns mean the same to the server (Python's `re`, through msgspec) and to the
OpenAPI document's readers (ECMA-262, here jsonschema-rs, the validator schemathesis uses)."""

from __future__ import annotations

import re

import jsonschema_rs
import msgspec
import pytest
from parley_common.contracts.base import ID_MAX_LENGTH, ID_PATTERN, Id
from parley_common.contracts.conference import EVENT_TYPE_PATTERN, INSTANT_PATTERN

# Every code point where the two dialects are known to part (whitespace, line ends, C1 controls, BOM), and
# a sample of the rest.
TRICKY = [*range(0x00, 0x300), 0x1680, *range(0x2000, 0x2030), 0x205F, 0x3000, 0xFEFF, 0xFFFF, 0x1F600]


@pytest.mark.parametrize("pattern", [ID_PATTERN, EVENT_TYPE_PATTERN, INSTANT_PATTERN])
def test_python_and_ecma_read_each_pattern_alike(pattern: str) -> None:
    python = re.compile(pattern)
    ecma = jsonschema_rs.validator_for({"type": "string", "pattern": pattern})
    samples = ["a", "FooEvent", "2011-12-03T10:15:30Z", "2024-02-29T00:00:00.5+01:00"]
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
