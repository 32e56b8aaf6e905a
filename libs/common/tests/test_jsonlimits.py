"""The one rule for free-form JSON: at most 100 levels, integers within int64, finite floats."""

from __future__ import annotations

from typing import Any

import pytest
from parley_common.jsonlimits import MAX_DEPTH, invalid_value, too_deep


def nested_lists(depth: int) -> Any:
    value: Any = 0
    for _ in range(depth):
        value = [value]
    return value


def test_depth_counts_containers_in_values_and_in_text_alike() -> None:
    assert invalid_value(nested_lists(MAX_DEPTH)) is None
    assert not too_deep(b"[" * MAX_DEPTH + b"0" + b"]" * MAX_DEPTH)
    reason = invalid_value(nested_lists(MAX_DEPTH + 1))
    assert reason is not None and reason.endswith(f"nested deeper than {MAX_DEPTH} levels")
    assert too_deep(b"[" * (MAX_DEPTH + 1) + b"0" + b"]" * (MAX_DEPTH + 1))
    # Brackets inside strings, escaped quotes included, are text.
    assert not too_deep(b'["' + b"[{" * 500 + b'\\"]"]')


@pytest.mark.parametrize(
    ("value", "path"),
    [
        ({"a": [1, {"b": 2**63}]}, "$.a[1].b: integer"),
        ({"a": -(2**63) - 1}, "$.a: integer"),
        ([float("inf")], "$[0]: inf"),
        ({"x": {"y": float("nan")}}, "$.x.y: nan"),
    ],
)
def test_numbers_outside_the_rule_are_named_by_path(value: Any, path: str) -> None:
    reason = invalid_value(value)
    assert reason is not None and reason.startswith(path), reason


def test_the_bounds_are_inside() -> None:
    assert invalid_value({"a": [-(2**63), 2**63 - 1, 9.2e18, 1.5e-300, 0.5, True, None, "x"]}) is None


@pytest.mark.parametrize("whole", [1e19, -1e19, 1.5e308, 9.223372036854776e18])
def test_a_whole_number_is_an_integer_however_it_is_written(whole: float) -> None:
    # JSON Schema's integer (and so the OpenAPI document's JsonValue): 1e19 is the integer 10**19.
    assert invalid_value({"a": whole}) == f"$.a: integer {whole:.0f} does not fit in 64 bits"
