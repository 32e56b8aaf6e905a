"""The base every payload derives from: frozen, keyword-only, camelCase on the wire."""

from __future__ import annotations

import msgspec


class Payload(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """A plain immutable message. Field names are snake_case in Python and camelCase in JSON."""


class Empty(Payload, frozen=True):
    """The `{}` body of commands that return nothing of interest."""
