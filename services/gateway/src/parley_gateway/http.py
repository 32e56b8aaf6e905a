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
        whole = _with_whole_floats_as_ints(raw or b"{}", body_type)
        if whole is None:
            raise BadRequest(str(exc)) from None
        return whole
    except msgspec.DecodeError as exc:
        raise BadRequest(f"malformed JSON body: {exc}") from None


def _with_whole_floats_as_ints(raw: bytes, body_type: type[T]) -> T | None:
    """The body decoded with `2.0` read as the integer 2, or None when it is still invalid.

    JSON Schema, and so the OpenAPI document, counts 2.0 as an integer; msgspec refuses it for an int
    field. Only a body the strict decoder refused comes here, so valid bodies keep the one-pass decode.
    """
    try:
        return msgspec.convert(_whole_floats_as_ints(msgspec.json.decode(raw)), body_type)
    except (msgspec.DecodeError, RecursionError):
        return None


def _whole_floats_as_ints(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {key: _whole_floats_as_ints(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_whole_floats_as_ints(item) for item in value]
    return value
