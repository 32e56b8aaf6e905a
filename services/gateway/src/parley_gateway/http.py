"""HTTP helpers: msgspec JSON bodies in and out, and the API's error body `{message, traceId}`."""

from __future__ import annotations

from typing import Any, TypeVar

import msgspec
from aiohttp import web
from parley_common.contracts.base import Payload

T = TypeVar("T")
REQUEST_ID = web.AppKey("request_id", str)
_encoder = msgspec.json.Encoder()


class ErrorBody(Payload, frozen=True):
    message: str
    trace_id: str


class BadRequest(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def json_response(value: Any, *, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        body=_encoder.encode(value), status=status, content_type="application/json", headers=headers
    )


def request_id(request: web.Request) -> str:
    return str(request.get("request_id", ""))


def error_response(
    request: web.Request, status: int, message: str, *, headers: dict[str, str] | None = None
) -> web.Response:
    return json_response(
        ErrorBody(message=message, trace_id=request_id(request)), status=status, headers=headers
    )


_decoders: dict[Any, msgspec.json.Decoder[Any]] = {}


async def read_body(request: web.Request, body_type: type[T]) -> T:
    """Decode the JSON body into `body_type`; an empty body counts as `{}`. Raises BadRequest."""
    raw = await request.read()
    decoder = _decoders.get(body_type)
    if decoder is None:
        decoder = _decoders[body_type] = msgspec.json.Decoder(body_type)
    try:
        return decoder.decode(raw or b"{}")  # type: ignore[no-any-return]
    except msgspec.ValidationError as exc:
        raise BadRequest(str(exc)) from None
    except msgspec.DecodeError as exc:
        raise BadRequest(f"malformed JSON body: {exc}") from None
