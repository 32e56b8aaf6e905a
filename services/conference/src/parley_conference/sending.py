"""Rules of `sendEvent`: what a client-defined event must look like, and masking of stored/logged copies."""

from __future__ import annotations

import copy
import re
from datetime import datetime
from typing import Any

from jsonpath_ng.exceptions import JsonPathLexerError, JsonPathParserError
from jsonpath_ng.ext.parser import parse as parse_jsonpath
from parley_common.contracts.conference import EVENT_TYPE_PATTERN, INSTANT_PATTERN

from parley_conference.domain import InvalidCommand

# The patterns the OpenAPI document states for the event (one rule, in the contracts).
_EVENT_TYPE = re.compile(EVENT_TYPE_PATTERN)
_INSTANT = re.compile(INSTANT_PATTERN)


def validate_event(event: dict[str, Any]) -> None:
    kind = event.get("type")
    if not isinstance(kind, str) or not _EVENT_TYPE.match(kind) or kind == "Event":
        raise InvalidCommand(
            "event.type must start with a capital, end with Event and be camel case of at least two words,"
            " e.g. ParticipantMutedEvent"
        )
    timestamp = event.get("timestamp")
    if not isinstance(timestamp, str) or not _INSTANT.match(timestamp) or not _parses(timestamp):
        raise InvalidCommand("event.timestamp must be an ISO-8601 instant, e.g. 2011-12-03T10:15:30Z")


def _parses(timestamp: str) -> bool:
    # Python < 3.11 fromisoformat rejects some fractions; 3.11 accepts Z and up to 6 fraction digits.
    head, _, fraction_zone = timestamp.partition(".")
    candidate = timestamp
    if fraction_zone:
        digits = re.match(r"\d+", fraction_zone)
        assert digits is not None
        candidate = f"{head}.{digits.group()[:6].ljust(6, '0')}{fraction_zone[digits.end() :]}"
    try:
        datetime.fromisoformat(candidate.replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


class Masks:
    """Compiled JSONPath masks; `apply` returns a copy with matched string fields starred out."""

    def __init__(self, expressions: list[str]) -> None:
        self._paths = []
        for expression in expressions:
            try:
                self._paths.append(parse_jsonpath(expression))
            except (JsonPathLexerError, JsonPathParserError, Exception) as exc:
                raise InvalidCommand(
                    f"masks: {expression!r} is not a valid JSONPath expression ({exc})"
                ) from None

    def __bool__(self) -> bool:
        return bool(self._paths)

    def apply(self, event: dict[str, Any]) -> dict[str, Any]:
        masked = copy.deepcopy(event)
        for path in self._paths:
            for match in path.find(masked):
                if isinstance(match.value, str):
                    match.full_path.update(masked, "*" * len(match.value))
        return masked
