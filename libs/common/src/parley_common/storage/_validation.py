"""Argument checks shared by both adapters, so they accept exactly the same documents and query language.

Collection names and field paths are identifiers (dotted for paths): they end up inside SQL text, where no
bound parameter can stand in for them, so nothing else may reach it. Invalid arguments raise `ValueError`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from parley_common.jsonlimits import INT64_MAX, INT64_MIN
from parley_common.storage.port import ASCENDING, DESCENDING, Doc, Filter, Index, InvalidValue

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_PATH = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*")
_RANGE_OPS = frozenset({"$gt", "$gte", "$lt", "$lte"})
_OPS = _RANGE_OPS | {"$ne", "$in"}
# BSON integers are 64-bit; bigger ones would be stored differently (or refused) by each backend.
_INT64 = range(INT64_MIN, INT64_MAX + 1)


class Condition(NamedTuple):
    """One normalised filter term: `op` is "$eq" or a port operator; `$in` carries a tuple of scalars."""

    path: str
    op: str
    value: Any


def check_name(name: str) -> str:
    valid = isinstance(name, str) and _IDENT.fullmatch(name) and len(name) <= 63
    # SQLite reserves `sqlite_*` table names.
    if not valid or name.lower().startswith("sqlite_"):
        raise ValueError(f"invalid collection name {name!r}: expected an identifier of at most 63 chars")
    return name


def check_path(path: str) -> str:
    if not isinstance(path, str) or not _PATH.fullmatch(path):
        raise ValueError(f"invalid field path {path!r}: expected dotted identifiers")
    return path


def check_id(doc_id: object) -> str:
    if not isinstance(doc_id, str):
        raise ValueError(f"document ids are strings, got {type(doc_id).__name__}")
    return doc_id


def check_doc(doc: Doc) -> str:
    """Validate a whole document and return its `_id`."""
    if not isinstance(doc, dict):
        raise ValueError(f"a document is a dict, got {type(doc).__name__}")
    for key in doc:
        # `$` names are operators to MongoDB at the top level, and dots would be unreachable by filters.
        if not isinstance(key, str) or key.startswith("$") or "." in key:
            raise ValueError(f"document: invalid top-level field name {key!r}")
    _check_value(doc, "document")
    return check_id(doc.get("_id"))


def check_fields(fields: Doc) -> None:
    """`update` sets top-level fields; `_id` is immutable."""
    if not isinstance(fields, dict) or not fields:
        raise ValueError("update needs a non-empty dict of fields")
    for key, value in fields.items():
        if key == "_id" or not isinstance(key, str) or not _IDENT.fullmatch(key):
            raise ValueError(f"cannot update field {key!r}: expected a top-level identifier other than _id")
        _check_value(value, key)


def parse_filter(where: Filter | None) -> list[Condition]:
    if where is None:
        return []
    if not isinstance(where, Mapping):
        raise ValueError(f"a filter is a mapping, got {type(where).__name__}")
    conditions = []
    for path, spec in where.items():
        check_path(path)
        if not isinstance(spec, Mapping):
            conditions.append(Condition(path, "$eq", _scalar(spec, path)))
            continue
        if not spec:
            raise ValueError(f"empty operator object for {path!r}")
        for op, operand in spec.items():
            conditions.append(Condition(path, op, _operand(op, operand, path)))
    return conditions


def check_sort(sort: Sequence[tuple[str, int]]) -> list[tuple[str, int]]:
    """The sort keys, with `_id` appended as the final tie-breaker so both adapters order ties alike."""
    keys: list[tuple[str, int]] = []
    for path, direction in sort:
        check_path(path)
        if isinstance(direction, bool) or direction not in (ASCENDING, DESCENDING):
            raise ValueError(f"sort direction for {path!r} must be ASCENDING or DESCENDING")
        if any(path == seen for seen, _ in keys):
            raise ValueError(f"{path!r} appears twice in sort")
        keys.append((path, direction))
    if all(path != "_id" for path, _ in keys):
        keys.append(("_id", ASCENDING))
    return keys


def check_limit(limit: int | None) -> None:
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        raise ValueError(f"limit must be None or an int >= 0, got {limit!r}")


def check_skip(skip: int) -> None:
    if isinstance(skip, bool) or not isinstance(skip, int) or skip < 0:
        raise ValueError(f"skip must be an int >= 0, got {skip!r}")


def check_index(index: Index) -> None:
    if not index.fields or len(set(index.fields)) != len(index.fields):
        raise ValueError(f"an index needs distinct fields, got {index.fields!r}")
    for path in index.fields:
        check_path(path)


def _operand(op: str, operand: Any, path: str) -> Any:
    if op == "$in":
        if not isinstance(operand, list | tuple):
            raise ValueError(f"$in on {path!r} takes a list")
        return tuple(_scalar(item, path) for item in operand)
    if op == "$ne":
        return _scalar(operand, path)
    if op not in _OPS:
        raise ValueError(f"unsupported operator {op!r} on {path!r}; allowed: {sorted(_OPS)}")
    # Range bounds compare within one type (as MongoDB does); null and booleans have no useful range.
    if isinstance(operand, bool) or not isinstance(operand, int | float | str):
        raise ValueError(f"{op} on {path!r} takes a number or a string, got {operand!r}")
    return _scalar(operand, path)


def _scalar(value: Any, path: str) -> Any:
    if value is not None and not isinstance(value, str | int | float):
        raise ValueError(f"filter values are str, int, float, bool or None; got {value!r} for {path!r}")
    _check_value(value, path)
    return value


def _check_value(value: Any, where: str) -> None:
    """JSON values only, else `InvalidValue`. Nested field names are any strings (MongoDB >= 5 stores dotted
    and `$` names; only top-level fields, checked in `check_doc`, are addressed by filters). Paths are
    formatted only on failure: this runs on every write."""
    stack = [value]
    while stack:
        item = stack.pop()
        if item is None or item.__class__ is str or item.__class__ is bool:
            continue
        if isinstance(item, int):
            if item not in _INT64:
                raise InvalidValue(f"{where}: integer {item} does not fit in 64 bits")
        elif isinstance(item, float):
            if not math.isfinite(item):
                raise InvalidValue(f"{where}: {item} is not a JSON number")
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, dict):
            for key in item:
                if not isinstance(key, str):
                    raise InvalidValue(f"{where}: field names are strings, got {key!r}")
            stack.extend(item.values())
        else:
            raise InvalidValue(f"{where}: {type(item).__name__} is not JSON-compatible")
