"""HTTP helpers: msgspec JSON bodies in and out, and the API's error body `{message, traceId}`."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import msgspec
from aiohttp import http_exceptions, web
from parley_common.contracts.base import Payload
from parley_common.jsonlimits import INT64_MAX, MAX_DEPTH, invalid_value, too_deep

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


def decode_json(raw: bytes, body_type: type[T]) -> T:
    """Decode a JSON body into `body_type` under the rules of all free-form JSON. Raises BadRequest.

    The body's nesting is bounded before msgspec recurses into it (a deep body would exhaust the recursion
    limit: 500); its numbers must fit the store (int64, finite), whichever field holds them, so a value is
    refused here with its path rather than deep in a service.
    """
    if too_deep(raw):
        raise BadRequest(f"malformed JSON body: nested deeper than {MAX_DEPTH} levels")
    decoder = _decoders.get(body_type)
    if decoder is None:
        decoder = _decoders[body_type] = msgspec.json.Decoder(body_type)
    try:
        value = decoder.decode(raw or b"{}")
    except msgspec.ValidationError as exc:
        whole = _with_whole_floats_as_ints(raw or b"{}", body_type)
        if whole is None:
            raise BadRequest(str(exc)) from None
        value = whole
    except msgspec.DecodeError as exc:
        raise BadRequest(f"malformed JSON body: {exc}") from None
    # Walk the value as it travels on (wire names), not the text: fields the type ignores are dropped.
    problem = invalid_value(msgspec.to_builtins(value))
    if problem is not None:
        raise BadRequest(problem)
    return value  # type: ignore[no-any-return]


async def read_body(request: web.Request, body_type: type[T]) -> T:
    """Decode the JSON body into `body_type`; an empty body counts as `{}`. Raises BadRequest."""
    return decode_json(await request.read(), body_type)


def parse_int(raw: str, what: str, *, minimum: int = 0, maximum: int = INT64_MAX) -> int:
    """A decimal integer from a query or path parameter, within [minimum, maximum]. Raises BadRequest.

    Every integer the API takes ends up in a 64-bit field (storage, msgspec), so none may exceed int64.
    """
    # int() also takes "1_000", " 7 " and non-ASCII digits; a parameter is plain ASCII digits.
    text = raw[1:] if raw.startswith("-") else raw
    if not (text.isascii() and text.isdigit()) or len(text) > 20:
        raise BadRequest(f"{what} must be an integer, got {raw[:40]!r}")
    value = int(raw)
    if not minimum <= value <= maximum:
        raise BadRequest(f"{what} must be between {minimum} and {maximum}, got {raw}")
    return value


@contextmanager
def multipart_errors() -> Iterator[None]:
    """Turn aiohttp's refusals of a malformed multipart body into BadRequest (400).

    The part headers go through aiohttp's HTTP header parser, which raises its `HttpProcessingError`s
    (`InvalidHeader`, `BadHttpMessage`, `LineTooLong`); the part reader raises `ValueError` (a bad
    boundary, charset or encoding), `LookupError` (an unknown charset) or `AssertionError`.
    """
    try:
        yield
    except http_exceptions.HttpProcessingError as exc:
        raise BadRequest(f"malformed multipart body: {type(exc).__name__}") from None
    except (ValueError, LookupError, AssertionError) as exc:
        raise BadRequest(f"malformed multipart body: {exc}") from None


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
