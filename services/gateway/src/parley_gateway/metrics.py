"""The gateway's metrics: requests by operation and status with their latency, and `GET /metrics`.

`/metrics` is an operator's route like `/docs`: no token (scrapers do not carry one; restrict it at the
ingress or network level) and not in the OpenAPI document, which describes the public API.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from aiohttp import web
from parley_common import metrics
from prometheus_client import CONTENT_TYPE_LATEST

AiohttpHandler = Callable[[web.Request], Awaitable[web.StreamResponse]]
METRICS_PATH = "/metrics"
# nginx's status for a request its client abandoned before the answer.
CLIENT_CLOSED = 499
# A request no route matched (404, 405): one label, whatever path was asked for.
UNMATCHED = "unmatched"


def operation_label(request: web.Request) -> str:
    """The operation id of the route (its resource's name), else its path template: never the raw path,
    so the label's values are the routes the gateway declares."""
    resource = request.match_info.route.resource
    if resource is None:
        return UNMATCHED
    return resource.name or resource.canonical


@web.middleware
async def measure(request: web.Request, handler: AiohttpHandler) -> web.StreamResponse:
    """Outermost: counts every answer by operation and status, and times it (a WebSocket: its whole life)."""
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:  # a redirect raised by a handler (errors are answered inside)
        status = exc.status
        raise
    except asyncio.CancelledError:  # the client went away mid-request: not a server error
        status = CLIENT_CLOSED
        raise
    finally:
        operation = operation_label(request)
        metrics.HTTP_REQUESTS.labels(operation, str(status)).inc()
        metrics.HTTP_SECONDS.labels(operation).observe(time.perf_counter() - started)


async def serve_metrics(_: web.Request) -> web.Response:
    # On the event loop: the task gauge and the collectors read the loop's own state (parley_common.metrics).
    response = web.Response(body=metrics.exposition())
    response.headers["Content-Type"] = CONTENT_TYPE_LATEST
    return response


def add_metrics_route(app: web.Application) -> None:
    app.router.add_get(METRICS_PATH, serve_metrics, name="metrics")
