"""The gateway's operations, declared once: routing, authentication and the OpenAPI document read them."""

from __future__ import annotations

import re
import typing
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Annotated, Any

import msgspec
from aiohttp import web
from parley_common.contracts.base import Empty, Id
from parley_common.contracts.rpc import Caller, Rejected, Request
from parley_common.messaging.rpc import RpcClient

from parley_gateway.http import BadRequest, error_response, json_response

# loopback4-authorization's refusal, which the real SourceFuse service answers with.
PERMISSION_REFUSED = "Not Allowed Access"

# A handler gets the request, the authenticated caller (None on public operations) and the decoded body.
Handler = Callable[[web.Request, Caller | None, Any], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class QueryParam:
    name: str
    # The msgspec type the value must convert to (e.g. `Id`, `int`): the route checks it (400) and the
    # OpenAPI document states it, so the two cannot drift apart.
    type: Any
    required: bool = False
    description: str = ""
    # An array parameter (`type` a list/tuple) comes repeated (`?a=x&a=y`, how OpenAPI clients send arrays);
    # with `comma_separated`, each occurrence may also hold several values (`?a=x,y`).
    comma_separated: bool = False
    # The refusal of a value that does not convert, when an API words it its own way (Coviu's
    # `Invalid page_size`); None: the type's own message.
    error: str | None = None

    @property
    def is_array(self) -> bool:
        target = self.type
        if typing.get_origin(target) is Annotated:
            target = typing.get_args(target)[0]
        return typing.get_origin(target) in (list, tuple)

    def raw_value(self, request: web.Request) -> Any:
        """The parameter as sent (a list of strings for an array), or None when absent."""
        if not self.is_array:
            return request.query.get(self.name)
        values = request.query.getall(self.name, [])
        if self.comma_separated:
            # Empty parts are kept, not dropped: `?a=` or `?a=x,` is bad input the type check refuses
            # (400), as the document says, rather than a silently different request.
            values = [part.strip() for value in values for part in value.split(",")]
        return values or None


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    operation_id: str
    summary: str
    tag: str
    handler: Handler
    body: Any = None  # the msgspec type of the JSON request body
    # The msgspec type describing a form body (OpenAPI only: the handler reads the fields itself), and the
    # media types it comes in.
    form: Any = None
    form_media_types: tuple[str, ...] = ("multipart/form-data",)
    # A raw body of this media type the handler streams itself (never read whole by the route wrapper).
    binary_body: str | None = None
    response: Any = None  # the msgspec type of the 200 body; None with status 204
    status: int = 200
    public: bool = False
    # WebSockets from browsers cannot send headers: such operations also take `?access_token=`.
    token_in_query: bool = False
    # A meeting token (grant claim) is for its conference alone: only the conference API's operations take
    # it; every other operation answers it 403.
    meeting_tokens: bool = False
    query: tuple[QueryParam, ...] = ()
    # Request headers the operation reads (e.g. an upload's file name), checked and documented like the
    # query parameters.
    headers: tuple[QueryParam, ...] = ()
    errors: tuple[int, ...] = (400, 401, 403, 404, 409, 503)
    content_type: str = "application/json"
    # A success body that is a file of this media type (e.g. "video/webm"), not JSON.
    binary_response: str | None = None
    extra_responses: dict[int, str] = field(default_factory=dict)
    # The msgspec type of the JSON body of `extra_responses` (None: no body documented).
    extra_response_body: Any = None
    # Types of path parameters that are not ids (every other `{name}` in the path is an `Id`).
    path_types: dict[str, Any] = field(default_factory=dict)
    # A permission key the token's `permissions` claim must hold (SourceFuse's routes), else 403
    # `PERMISSION_REFUSED`; checked by the route wrapper before anything else runs.
    permission: str | None = None

    @property
    def streams_body(self) -> bool:
        """Whether the handler reads the body itself, part by part under a limit of its own (a raw upload, a
        multipart form), rather than whole (JSON, url-encoded forms) under the gateway's body limit."""
        return self.binary_body is not None or (
            self.form is not None and "multipart/form-data" in self.form_media_types
        )

    @property
    def path_params(self) -> list[str]:
        return self.params_of(self.path)

    @staticmethod
    def params_of(path: str) -> list[str]:
        return re.findall(r"{(\w+)}", path)

    def path_type(self, name: str) -> Any:
        return self.path_types.get(name, Id)

    def check_parameters(self, request: web.Request) -> None:
        """Refuse (BadRequest) path and query parameters that do not convert to their declared types.

        Handlers still read the raw strings; this only guarantees they hold what the document says.
        """
        for name in self.path_params:
            _convert("path", name, request.match_info[name], self.path_type(name))
        for param in self.query:
            raw = param.raw_value(request)
            if raw is None:
                if param.required:
                    raise BadRequest(f"query parameter {param.name} is required")
                continue
            try:
                _convert("query", param.name, raw, param.type)
            except BadRequest:
                if param.error is None:
                    raise
                raise BadRequest(param.error) from None
        for param in self.headers:
            value = request.headers.get(param.name)
            if value is None:
                if param.required:
                    raise BadRequest(f"header {param.name} is required")
                continue
            _convert("header", param.name, value, param.type)


def _convert(where: str, name: str, raw: Any, type_: Any) -> None:
    try:
        # strict=False: a query string holds text, so "42" must convert to an int parameter.
        msgspec.convert(raw, type_, strict=False)
    except msgspec.ValidationError as exc:
        raise BadRequest(f"{where} parameter {name}: {exc}") from None


def authenticated(caller: Caller | None) -> Caller:
    """The caller of an operation that is not public (the route wrapper has refused anonymous calls)."""
    assert caller is not None, "only public operations run without a caller"
    return caller


def reply_response(request: web.Request, reply: Any, status: int) -> web.StreamResponse:
    """A service's reply as HTTP: its rejection as `{message, traceId}`, else the value (or 204)."""
    if isinstance(reply, Rejected):
        return error_response(request, reply.status, reply.message)
    if status == 204:
        return web.Response(status=204)
    return json_response(reply.value, status=status)


def rpc_command(
    rpc: RpcClient,
    subject: str,
    *,
    path: str,
    operation_id: str,
    summary: str,
    tag: str,
    body: Any,
    response: Any = None,
    status: int = 204,
    timeout: float | None = None,
    meeting_tokens: bool = False,
) -> Operation:
    """A POST whose JSON body goes to a service's command subject as is, its reply coming back as HTTP."""
    value_type = response if response is not None else Empty

    async def handle(request: web.Request, caller: Caller | None, decoded: Any) -> web.StreamResponse:
        reply = await rpc.request(
            subject, Request(caller=authenticated(caller), body=decoded), value_type, timeout=timeout
        )
        return reply_response(request, reply, status)

    return Operation(
        method="POST",
        path=path,
        operation_id=operation_id,
        summary=summary,
        tag=tag,
        handler=handle,
        body=body,
        response=response,
        status=status,
        meeting_tokens=meeting_tokens,
    )
