"""The gateway's operations, declared once: routing, authentication and the OpenAPI document read them."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from parley_common.contracts.rpc import Caller

# A handler gets the request, the authenticated caller (None on public operations) and the decoded body.
Handler = Callable[[web.Request, Caller | None, Any], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class QueryParam:
    name: str
    type: str  # OpenAPI primitive: "string" | "integer" | "boolean"
    required: bool = False
    description: str = ""


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    operation_id: str
    summary: str
    tag: str
    handler: Handler
    body: Any = None  # the msgspec type of the JSON request body
    # The msgspec type describing a multipart/form-data body (OpenAPI only: the handler reads the parts).
    form: Any = None
    response: Any = None  # the msgspec type of the 200 body; None with status 204
    status: int = 200
    public: bool = False
    # WebSockets from browsers cannot send headers: such operations also take `?access_token=`.
    token_in_query: bool = False
    query: tuple[QueryParam, ...] = ()
    errors: tuple[int, ...] = (400, 401, 403, 404, 409, 503)
    content_type: str = "application/json"
    # A success body that is a file of this media type (e.g. "video/webm"), not JSON.
    binary_response: str | None = None
    extra_responses: dict[int, str] = field(default_factory=dict)

    @property
    def path_params(self) -> list[str]:
        return re.findall(r"{(\w+)}", self.path)
