"""faststream codec: msgspec JSON out, raw bytes in (handlers decode into their own Struct types)."""

from __future__ import annotations

from typing import Any

import msgspec

_encoder = msgspec.json.Encoder()


class MsgspecCodec:
    """Encodes Structs (or anything msgspec handles) as JSON; hands handlers the undecoded body.

    Decoding is left to each handler because only it knows the target type, and a payload that fails to
    decode must become an explicit rejection reply, not an exception (which would leave the caller waiting).
    """

    async def decode(self, msg: Any) -> Any:
        return msg.body

    async def encode(self, msg: Any, serializer: Any = None) -> tuple[bytes, str | None]:
        if isinstance(msg, bytes):
            return msg, "application/json"
        return _encoder.encode(msg), "application/json"


def encode(value: Any) -> bytes:
    return _encoder.encode(value)
