"""The base every payload derives from: frozen, keyword-only, camelCase on the wire; and the API's id rule."""

from __future__ import annotations

from typing import Annotated, Any, Final

import msgspec

from parley_common.jsonlimits import JSON_VALUE_REF

# Largest integer the storage layer holds (BSON and SQLite int64).
MAX_INT64: Final = 2**63 - 1
ID_MAX_LENGTH: Final = 256
# Characters an id may never hold: control characters, C0 and C1 (they break logs and headers), and the
# path separators `/` and `\` (ids become URL path segments and object-store names such as
# `interactions/{interactionId}/...`, so an id must stay one segment).
_NEVER = r"\x00-\x1f\x7f-\x9f/\\"
# Whitespace, spelled out: Python's `\s` and ECMA-262's (the dialect of OpenAPI readers) differ.
_SPACE = r"\x20\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"
# At least one character must be neither whitespace nor a dot: that refuses blank ids and the `.`/`..`
# path segments. Python's `re` and ECMA-262 read this pattern the same way (Python's `$` also matches
# before a final newline, hence the lookahead).
ID_PATTERN: Final = rf"^[^{_NEVER}]*[^{_NEVER}{_SPACE}.][^{_NEVER}]*$(?!\n)"

Id = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=ID_MAX_LENGTH,
        pattern=ID_PATTERN,
        description=(
            f"an id: 1 to {ID_MAX_LENGTH} characters, no control characters, no / or \\, "
            "not blank and not only dots"
        ),
    ),
]
"""Every id the API takes (conference, endpoint, user, stream, viewer, snapshot, interaction, ...).

The one rule for ids, in request bodies and in path and query parameters alike: the gateway decodes
both with it (400 on a mismatch) and the OpenAPI document states it, from this very type.
"""


class Payload(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """A plain immutable message. Field names are snake_case in Python and camelCase in JSON."""


class Empty(Payload, frozen=True):
    """The `{}` body of commands that return nothing of interest."""


# Free-form JSON (metadata, events, extMetadata): any object whose values obey the one rule of all
# free-form JSON (`parley_common.jsonlimits`: the gateway enforces it, the document states it as the
# JsonValue component).
JSON_VALUE = {"$ref": JSON_VALUE_REF}
JsonObject = Annotated[dict[str, Any], msgspec.Meta(extra_json_schema={"additionalProperties": JSON_VALUE})]
