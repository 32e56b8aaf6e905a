"""Request/reply over core NATS with the `Request` / `Accepted | Rejected` envelope.

`serve` registers a handler that always answers: a payload that does not decode is rejected with 400 and
an unexpected exception with 500, so a caller never waits out its timeout on a bug. `RpcClient` turns "no
responder" and timeouts into 503 rejections, so an unavailable service is reported within the deadline.

A 503 means "not done", so a request must not be executed after its sender has given up on it: the client
stamps a deadline on every request envelope (`Deadlined`) and publishes nothing while the connection is
down (nats-py would buffer it and send it on reconnect, seconds later); the serving side refuses a request
whose deadline has passed without running its handler. A request sent while serving another one inherits
that one's deadline when it is earlier: nobody waits for its answer past it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import Any, TypeVar

import msgspec
import nats.errors
from faststream.nats import NatsBroker
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from parley_common import metrics
from parley_common.contracts.rpc import Accepted, Deadlined, Rejected
from parley_common.log import get_logger, log_context
from parley_common.messaging.codec import encode

Req = TypeVar("Req")
T = TypeVar("T")
AnyReply = Accepted[Any] | Rejected
Handler = Callable[[Req], Awaitable[AnyReply]]

log = get_logger(__name__)

# A request's deadline is this much before its sender stops waiting (at most half a short timeout), so
# work a service starts just before the deadline can still be answered before the sender gives up.
DEADLINE_MARGIN = 0.25

# NATS refuses a message over the server's max_payload (1 MiB unless configured otherwise), and a reply it
# refuses never reaches its caller, who then waits out its timeout: `answering` replaces a larger reply
# with a rejection. A list that could outgrow it is answered a page at a time, within REPLY_BUDGET_BYTES.
MAX_REPLY_BYTES = 1024 * 1024
REPLY_BUDGET_BYTES = 512 * 1024

# The deadline of the request being handled in this context, for the requests its handler sends.
_serving_deadline: ContextVar[float | None] = ContextVar("parley_serving_deadline", default=None)


def answering(
    subject: str, request_type: type[Req], handler: Handler[Req]
) -> Callable[[bytes], Awaitable[bytes]]:
    """The request body -> reply body function both `serve` and `Responders` run: it always answers."""
    decoder = msgspec.json.Decoder(request_type)
    # The counters of this subject, resolved once (not per request).
    operation = metrics.subject_operation(subject)
    accepted = metrics.COMMANDS.labels(metrics.service_name(), operation, "accepted")
    rejected = metrics.COMMANDS.labels(metrics.service_name(), operation, "rejected")

    async def on_request(body: bytes) -> bytes:
        started = time.perf_counter()
        try:
            request = decoder.decode(body)
        except msgspec.DecodeError as exc:
            log.info("request rejected", subject=subject, status=400, reason=str(exc))
            rejected.inc()
            return encode(Rejected.bad_request(str(exc)))
        caller = getattr(request, "caller", None)
        deadline: float | None = getattr(request, "deadline", None)
        with log_context(
            request_id=getattr(caller, "request_id", None),
            organization=getattr(caller, "organization_id", None),
            user_id=getattr(caller, "user_id", None),
        ):
            if deadline is not None and time.time() > deadline:
                # Its sender has answered for it already (503): doing it now would do it behind its back.
                late_ms = round((time.time() - deadline) * 1e3, 1)
                log.warning("request refused: deadline passed", subject=subject, late_ms=late_ms)
                rejected.inc()
                return encode(Rejected.unavailable("service unavailable: the request's deadline passed"))
            token = _serving_deadline.set(deadline)
            try:
                reply = await handler(request)
            except Exception:
                log.exception("handler failed", subject=subject)
                reply = Rejected(status=500, message="internal error")
            finally:
                _serving_deadline.reset(token)
            if isinstance(reply, Rejected):
                rejected.inc()
                log.info("request rejected", subject=subject, status=reply.status, reason=reply.message)
            else:
                accepted.inc()
                log.debug(
                    "request served", subject=subject, ms=round((time.perf_counter() - started) * 1e3, 3)
                )
        encoded = encode(reply)
        if len(encoded) > MAX_REPLY_BYTES:
            log.error("reply too large for the bus", subject=subject, bytes=len(encoded))
            return encode(Rejected(status=502, message="the reply was too large to send"))
        return encoded

    return on_request


def serve(
    broker: NatsBroker,
    subject: str,
    request_type: type[Req],
    handler: Handler[Req],
    *,
    queue: str,
    parallelism: int = 16,
) -> None:
    """Answer requests on `subject` (load-balanced across the `queue` group) with `handler`, on faststream.

    Concurrency comes from `parallelism` subscriptions in the queue group, each handling one request at a
    time: NATS spreads requests over them. Measured here, that serves 2.6x the requests per second of one
    subscription with faststream's `max_workers` pool, whose per-message task bookkeeping costs more than
    the concurrency gives (and adds ~0.1 ms to every request). A latency-sensitive service uses
    `Responders` instead (plain nats-py subscriptions, see there).
    """
    on_request = answering(subject, request_type, handler)
    for _ in range(parallelism):
        broker.subscriber(subject, queue=queue)(on_request)


class Responders:
    """Request handlers on plain nats-py subscriptions of the broker's connection.

    faststream stays the broker of the service (connection, lifecycle, event subscribers); only request
    handling bypasses its consume path (parser, middlewares, dependency wrappers, fake publisher), which
    cost about as much as the conference service's own join handler. Measured with bench/
    conference_commands.py --direct (one client, join+leave sent straight to the service, 2 busy cores):
    p50 1.19-1.32 ms on faststream subscribers, 0.98-1.07 ms on these, against 0.46-0.51 ms for a raw
    nats-py echo in the same runs.
    Like `serve`, `parallelism` subscriptions in the queue group each handle one request at a time.
    """

    def __init__(self, connection: Client) -> None:
        self._nc = connection
        self._subscriptions: list[Subscription] = []

    async def serve(
        self,
        subject: str,
        request_type: type[Req],
        handler: Handler[Req],
        *,
        queue: str,
        parallelism: int = 16,
    ) -> None:
        on_request = answering(subject, request_type, handler)

        async def on_message(msg: Msg) -> None:
            reply = await on_request(msg.data)
            if msg.reply:
                await self._nc.publish(msg.reply, reply)

        for _ in range(parallelism):
            self._subscriptions.append(await self._nc.subscribe(subject, queue=queue, cb=on_message))

    async def stop(self) -> None:
        """Stop taking requests; the ones already received are handled and answered first."""
        subscriptions, self._subscriptions = self._subscriptions, []
        with contextlib.suppress(nats.errors.Error):
            await asyncio.gather(*(sub.drain() for sub in subscriptions))  # type: ignore[no-untyped-call]


def fit_reply(items: list[T], budget: int) -> list[T]:
    """The longest prefix of `items` whose JSON fits in `budget` bytes (at least one item: a client asking
    from there must progress). Callers answer it as a page; the client asks again from where it ends."""
    size = 0
    for index, item in enumerate(items):
        size += len(encode(item)) + 1
        if size > budget and index > 0:
            return items[:index]
    return items


def serving_deadline() -> float | None:
    """The deadline (epoch seconds) of the request being handled here, if any: work for it ends by then."""
    return _serving_deadline.get()


class RpcClient:
    """Sends requests and decodes replies; never raises for transport problems.

    Every `Deadlined` request (the `Request` envelope) leaves with a deadline: `DEADLINE_MARGIN` before
    this client's timeout, or the deadline of the request being served, whichever is earlier.
    """

    def __init__(self, connection: Client, *, timeout: float) -> None:
        self._nc = connection
        self._timeout = timeout
        self._decoders: dict[Any, msgspec.json.Decoder[Any]] = {}

    def _decoder(self, value_type: Any) -> msgspec.json.Decoder[Any]:
        decoder = self._decoders.get(value_type)
        if decoder is None:
            decoder = msgspec.json.Decoder(Accepted[value_type] | Rejected)
            self._decoders[value_type] = decoder
        return decoder

    async def request(
        self, subject: str, request: Any, value_type: type[T], *, timeout: float | None = None
    ) -> Accepted[T] | Rejected:
        wait = timeout or self._timeout
        now = time.time()
        deadline = now + wait - min(DEADLINE_MARGIN, wait / 2)
        for earlier in (_serving_deadline.get(), getattr(request, "deadline", None)):
            if earlier is not None and earlier < deadline:
                deadline = earlier
                wait = min(wait, deadline - now + DEADLINE_MARGIN)
        if deadline <= now:
            return Rejected.unavailable(f"service unavailable: no time left to ask {subject}")
        if not self._nc.is_connected:
            # Reconnecting: nats-py would buffer the request and send it when the bus is back, long after
            # this answer. Closed: it would raise. Either way nothing is sent.
            return Rejected.unavailable("service unavailable: message bus connection lost")
        if isinstance(request, Deadlined):
            request = msgspec.structs.replace(request, deadline=deadline)
        started = time.perf_counter()
        reply: Accepted[T] | Rejected
        outcome = "unavailable"
        try:
            msg = await self._nc.request(subject, encode(request), timeout=wait)
        except nats.errors.NoRespondersError:
            reply = Rejected.unavailable(f"service unavailable: no responder for {subject}")
        except (nats.errors.TimeoutError, TimeoutError):
            reply = Rejected.unavailable(f"service unavailable: {subject} did not answer in time")
        except (
            nats.errors.ConnectionClosedError,
            nats.errors.ConnectionReconnectingError,
            nats.errors.ConnectionDrainingError,
            nats.errors.OutboundBufferLimitError,
        ):
            reply = Rejected.unavailable("service unavailable: message bus connection lost")
        else:
            try:
                reply = self._decoder(value_type).decode(msg.data)
                outcome = "rejected" if isinstance(reply, Rejected) else "accepted"
            except msgspec.DecodeError as exc:
                log.error("undecodable reply", subject=subject, error=str(exc))
                reply = Rejected(status=502, message="invalid reply from service")
                outcome = "invalid"
        metrics.NATS_REQUEST_SECONDS.labels(metrics.subject_operation(subject), outcome).observe(
            time.perf_counter() - started
        )
        return reply
