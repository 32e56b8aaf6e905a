"""Prometheus metrics: the ones every service shares, and how they are served.

Everything lives in prometheus_client's default registry (one per process: each service is its own
process). The gateway serves it at `GET /metrics` on its HTTP port; every other service, when
`PARLEY_METRICS_PORT` is set, on that port (`serve_metrics`, started by `parley_common.service.run_service`).

Exposition always runs on the service's event loop (the gateway's aiohttp handler, or the small asyncio
server here), never on a thread of its own: collectors that read live asyncio state (the task count, a media
node's forwarding counts) read it from the loop that owns it, and the packet path pays nothing for it.

Labels stay bounded: an HTTP request is labelled by its OpenAPI operation id (never the raw path), a NATS
request by its subject's operation (`subject_operation`: the node id of a media subject dropped).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import re
from collections.abc import AsyncIterator, Mapping
from importlib.metadata import PackageNotFoundError, version

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, Gauge, Histogram, Info, generate_latest

from parley_common.log import get_logger

log = get_logger(__name__)

METRICS_PORT_ENV = "PARLEY_METRICS_PORT"
# Loopback unless told otherwise (a pod sets 0.0.0.0 for its scraper), like the gateway's PARLEY_HTTP_HOST.
METRICS_HOST_ENV = "PARLEY_METRICS_HOST"
# Latencies of a request path: sub-millisecond bus round trips up to the 5 s a client may wait.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# Commit to publish: usually milliseconds, seconds during a NATS outage or after a crash (recovery).
LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

SERVICE = Info("parley_service", "The Parley service this process runs, and its version")
ASYNCIO_TASKS = Gauge("parley_asyncio_tasks", "asyncio tasks alive on the service's event loop")

HTTP_REQUESTS = Counter(
    "parley_http_requests", "HTTP requests answered by the gateway", ["operation", "status"]
)
HTTP_SECONDS = Histogram(
    "parley_http_request_seconds",
    "Time to answer an HTTP request (a WebSocket: its whole life)",
    ["operation"],
    buckets=LATENCY_BUCKETS,
)
NATS_REQUEST_SECONDS = Histogram(
    "parley_nats_request_seconds",
    "NATS request/reply round trips sent by this process (outcome: accepted, rejected, unavailable, invalid)",
    ["operation", "outcome"],
    buckets=LATENCY_BUCKETS,
)
COMMANDS = Counter(
    "parley_commands",
    "NATS requests (commands and queries) handled by this service (outcome: accepted or rejected)",
    ["service", "operation", "outcome"],
)
OUTBOX_OWED = Gauge(
    "parley_outbox_owed_effects",
    "Effects committed by this process and not carried out yet (live relay, or failed and awaiting recovery)",
    ["outbox"],
)
OUTBOX_LAG_SECONDS = Histogram(
    "parley_outbox_lag_seconds",
    "From a commit to its effects carried out (events published)",
    ["outbox"],
    buckets=LAG_BUCKETS,
)

# Set by `describe_service`: the `service` label of what this process handles.
_service = "unknown"

_MEDIA_SUBJECT = re.compile(r"^parley\.media\.[^.]+\.([A-Za-z]+)$")
_OPERATION_SUBJECT = re.compile(r"^parley\.((?:cmd|qry)\.[a-z]+\.[A-Za-z]+|health\.[a-z]+)$")


@functools.lru_cache(maxsize=4096)  # a few dozen subjects, asked on every request
def subject_operation(subject: str) -> str:
    """The bounded label of a request subject: `cmd.conference.join`, `health.chat`, `media.publish`."""
    media = _MEDIA_SUBJECT.match(subject)
    if media is not None:
        return f"media.{media.group(1)}"
    known = _OPERATION_SUBJECT.match(subject)
    return known.group(1) if known is not None else "other"


def describe_service(name: str) -> None:
    """Name this process's service (the info metric, and the `service` label of handled commands)."""
    global _service
    _service = name
    try:
        package_version = version(f"parley-{name}")
    except PackageNotFoundError:
        package_version = "unknown"
    SERVICE.info({"service": name, "version": package_version})


def service_name() -> str:
    return _service


def exposition() -> bytes:
    """The text exposition of the default registry; call it on the event loop (see the module doc)."""
    with contextlib.suppress(RuntimeError):  # no running loop: leave the gauge as it was
        ASYNCIO_TASKS.set(len(asyncio.all_tasks()))
    return generate_latest(REGISTRY)


def metrics_port(environ: Mapping[str, str] | None = None) -> int | None:
    """`PARLEY_METRICS_PORT` (None when unset: no metrics server). Raises ValueError when not a port."""
    raw = (os.environ if environ is None else environ).get(METRICS_PORT_ENV, "").strip()
    if not raw:
        return None
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise ValueError(f"{METRICS_PORT_ENV} must be a TCP port, got {raw!r}")
    return int(raw)


# A scraper sends a short GET: anything longer, or slower, is not one.
_MAX_HEAD_BYTES = 8192
_READ_SECONDS = 5.0


async def _answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        async with asyncio.timeout(_READ_SECONDS):
            head = await reader.readuntil(b"\r\n\r\n")
        if len(head) > _MAX_HEAD_BYTES:
            raise ValueError("request head too large")
        method, _, rest = head.split(b"\r\n", 1)[0].partition(b" ")
        path = rest.split(b" ", 1)[0].split(b"?", 1)[0]
        if method == b"GET" and path == b"/metrics":
            status, content_type, body = b"200 OK", CONTENT_TYPE_LATEST.encode(), exposition()
        else:
            status, content_type, body = b"404 Not Found", b"text/plain; charset=utf-8", b"GET /metrics\n"
        writer.write(
            b"HTTP/1.1 "
            + status
            + b"\r\nContent-Type: "
            + content_type
            + b"\r\nContent-Length: "
            + str(len(body)).encode()
            + b"\r\nConnection: close\r\n\r\n"
            + body
        )
        await writer.drain()
    except (TimeoutError, ValueError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError):
        pass  # not a scrape, or the scraper went away: nothing to answer
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


@contextlib.asynccontextmanager
async def serve_metrics(port: int | None, host: str | None = None) -> AsyncIterator[bool]:
    """`GET /metrics` on `port` (nothing when None) while the context is open; yields whether it serves.

    A port it cannot bind is logged, not fatal: the service is worth more running unobserved than not at all.
    """
    server: asyncio.Server | None = None
    host = host or os.environ.get(METRICS_HOST_ENV, "").strip() or "127.0.0.1"
    if port is not None:
        try:
            server = await asyncio.start_server(
                _answer, host, port, limit=_MAX_HEAD_BYTES, reuse_address=True
            )
        except OSError as exc:
            log.error("metrics not served: cannot listen", port=port, error=str(exc))
        else:
            log.info("metrics served", url=f"http://{host}:{port}/metrics")
    try:
        yield server is not None
    finally:
        if server is not None:
            server.close()
            with contextlib.suppress(Exception):
                async with asyncio.timeout(1.0):
                    await server.wait_closed()
