"""The limits every free-form JSON value obeys, wherever it enters (the gateway) or is kept (storage).

One rule, so a value the gateway accepts is a value every storage backend keeps unchanged:

- nesting of at most `MAX_DEPTH` levels (MongoDB's limit; msgspec's decoder recurses once per level and
  hits Python's recursion limit near 1,000);
- integers within 64 bits (BSON's integers), floats finite (JSON has no NaN or infinity). "Integer" as
  JSON Schema counts it: any whole number, `1e30` as much as `1000000000000000000000000000000`, so the rule
  the server applies is the one the OpenAPI document states (`JSON_VALUE_SCHEMA`).
"""

from __future__ import annotations

import math
import re
from typing import Any

MAX_DEPTH = 100
INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
_INT64 = range(INT64_MIN, INT64_MAX + 1)
# A JSON string (escapes included) or a bracket; brackets inside strings are matched as part of the string.
_TOKEN = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]')

# The rule as JSON Schema, the `JsonValue` component of the OpenAPI document (nesting depth has no keyword).
JSON_VALUE_REF = "#/components/schemas/JsonValue"
JSON_VALUE_SCHEMA: dict[str, Any] = {
    "description": f"any JSON value; integers within 64 bits, nested at most {MAX_DEPTH} levels",
    "anyOf": [
        {"type": ["string", "boolean", "null"]},
        {"type": "integer", "minimum": INT64_MIN, "maximum": INT64_MAX},
        {"type": "number", "not": {"type": "integer"}},
        {"type": "array", "items": {"$ref": JSON_VALUE_REF}},
        {"type": "object", "additionalProperties": {"$ref": JSON_VALUE_REF}},
    ],
}

# A path to a value: None for the root, else (parent path, key or index). Built as tuples while walking and
# formatted only when a value is refused, so a valid body pays one small tuple per value.
_Path = tuple[Any, str | int] | None


def too_deep(raw: bytes, limit: int = MAX_DEPTH) -> bool:
    """Whether the JSON text nests arrays/objects deeper than `limit`, found without recursing.

    Almost every body has fewer brackets than the limit in all, which two C-speed counts prove; only the
    others are scanned token by token (brackets outside strings).
    """
    if raw.count(b"[") + raw.count(b"{") <= limit:
        return False
    depth = 0
    for token in _TOKEN.finditer(raw):
        first = token.group()[0]
        if first == 0x5B or first == 0x7B:  # [ {
            depth += 1
            if depth > limit:
                return True
        elif first == 0x5D or first == 0x7D:  # ] }
            depth -= 1
    return False


def invalid_value(value: Any) -> str | None:
    """Why a decoded JSON value (builtins: dict, list, str, int, float, bool, None) breaks the rule, or None.

    The reason names the offending value's path (`$.metadata.scores[2]`). Iterative: no recursion limit.
    A first pass only checks, level by level, without building paths (what almost every value needs); paths
    are built when a value was found wrong.
    """
    if _fine(value):
        return None
    # (value, its path, the nesting level of the container holding it: the root is held by none)
    stack: list[tuple[Any, _Path, int]] = [(value, None, 0)]
    while stack:
        item, path, level = stack.pop()
        cls = item.__class__
        if item is None or cls is str or cls is bool:
            continue
        if cls is dict or cls is list:
            if level >= MAX_DEPTH:
                return f"{format_path(path)}: nested deeper than {MAX_DEPTH} levels"
            pairs = item.items() if cls is dict else enumerate(item)
            stack.extend((v, (path, k), level + 1) for k, v in pairs)
        elif isinstance(item, int) and not isinstance(item, bool):
            if item not in _INT64:
                return f"{format_path(path)}: integer {item} does not fit in 64 bits"
        elif isinstance(item, float) and not _fine_float(item):
            if not math.isfinite(item):
                return f"{format_path(path)}: {item} is not a JSON number"
            return f"{format_path(path)}: integer {item:.0f} does not fit in 64 bits"
    return None


def _fine(value: Any) -> bool:
    level = [value]
    depth = 1  # the nesting level of the values in `level`: the root container is level 1
    while level:
        children: list[Any] = []
        for item in level:
            cls = item.__class__
            if cls is str or item is None or cls is bool:
                continue
            if cls is dict or cls is list:
                if depth > MAX_DEPTH:
                    return False
                children.extend(item.values() if cls is dict else item)
            elif isinstance(item, int):
                if item not in _INT64:
                    return False
            elif isinstance(item, float) and not _fine_float(item):
                return False
        level = children
        depth += 1
    return True


def _fine_float(value: float) -> bool:
    """Finite, and within int64 when it is a whole number (JSON Schema's integer, however it is written)."""
    if not math.isfinite(value):
        return False
    return not value.is_integer() or INT64_MIN <= value <= INT64_MAX


def format_path(path: _Path) -> str:
    parts: list[str] = []
    while path is not None:
        path, key = path
        parts.append(f"[{key}]" if isinstance(key, int) else f".{key}")
    return "$" + "".join(reversed(parts))
