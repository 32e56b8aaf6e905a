"""The gateway's HTTP protocol handler: aiohttp's, with JSON error bodies for what its parser refuses.

A request line over 8,190 bytes, an oversize or malformed header, a bad method: aiohttp's parser refuses these
before any application code runs (no middleware sees them) and answers through `RequestHandler.handle_error`,
which writes a text/plain body made of the parser's message and logs it with a traceback at ERROR. That
message quotes the first bytes of the offending line, which may be an `Authorization` header. aiohttp has no
setting for either, so the gateway runs its own `RequestHandler` subclass: the error is answered
`{message, traceId}` like every other, and logged by its class only, never by its text.
"""

from __future__ import annotations

from aiohttp import http_exceptions, web
from parley_common.clock import new_id
from parley_common.log import get_logger

from parley_gateway.http import ErrorBody, json_response

log = get_logger(__name__)


def refusal_message(status: int, exc: BaseException | None) -> str:
    """What the client is told: chosen by the error class, never copied from its text (which quotes input)."""
    if status >= 500:
        return "internal error"
    if isinstance(exc, http_exceptions.LineTooLong):
        return "the request line or a header is too long"
    if isinstance(exc, http_exceptions.BadHttpMethod):
        return "malformed HTTP request: bad method"
    if isinstance(exc, http_exceptions.InvalidHeader):
        return "malformed HTTP request: invalid header"
    if isinstance(exc, http_exceptions.InvalidURLError):
        return "malformed HTTP request: invalid URL"
    return "malformed HTTP request"


class JsonErrorRequestHandler(web.RequestHandler):
    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        trace_id = new_id()
        error = type(exc).__name__ if exc is not None else None
        if status >= 500:
            # A bug past the middleware (which answers the application's own errors): keep the traceback.
            log.error("unhandled error", trace_id=trace_id, error=error, exc_info=exc)
        else:
            log.info("malformed request refused", trace_id=trace_id, status=status, error=error)
        if request.writer.output_size > 0:
            # Part of a response is out already: the connection is broken, as in aiohttp's own handler.
            raise ConnectionError("response already started, cannot send an error body")
        response = json_response(
            ErrorBody(message=refusal_message(status, exc), trace_id=trace_id),
            status=status,
            headers={"X-Request-Id": trace_id},
        )
        response.force_close()
        return response


class GatewayServer(web.Server):
    """aiohttp's `Server` (the protocol factory the sites listen with), making `JsonErrorRequestHandler`s."""

    def __call__(self) -> web.RequestHandler:
        return JsonErrorRequestHandler(self, loop=self._loop, **self._kwargs)


class GatewayRunner(web.AppRunner):
    """`AppRunner` whose server speaks through `JsonErrorRequestHandler` (same settings, same application).

    aiohttp offers no setting for the handler class, so the server the application made is rebuilt as a
    `GatewayServer` from the same arguments (`_loop` and `_kwargs` are aiohttp internals: the parser-refusal
    tests in test_bad_input.py fail if an upgrade changes them).
    """

    async def _make_server(self) -> web.Server:
        made = await super()._make_server()
        return GatewayServer(
            made.request_handler,
            request_factory=made.request_factory,
            handler_cancellation=made.handler_cancellation,
            loop=made._loop,
            **made._kwargs,
        )
