"""The push writer's batched frames are byte for byte what aiohttp's own writer sends (RFC 6455 text
frames of every length class), so a client reads each event as one text message."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp import WSMsgType
from aiohttp._websocket.writer import WebSocketWriter
from parley_gateway.push import _text_frame


class Captured:
    """A transport that keeps what is written (only the writer's framing is under test here)."""

    def __init__(self) -> None:
        self.written = bytearray()

    def write(self, data: bytes) -> None:
        self.written += data

    def is_closing(self) -> bool:
        return False


class Protocol:
    _paused = False


@pytest.mark.parametrize("size", [0, 1, 125, 126, 127, 65535, 65536, 70000])
async def test_a_batched_text_frame_is_what_aiohttp_sends(size: int) -> None:
    payload = b'{"a":"' + b"x" * max(0, size - 8) + b'"}'
    payload = payload[:size] if size < 8 else payload
    transport: Any = Captured()
    writer = WebSocketWriter(Protocol(), transport)  # type: ignore[arg-type]
    await writer.send_frame(payload, WSMsgType.TEXT)
    assert _text_frame(payload) == bytes(transport.written)
