"""Webhooks out, the delivery: JetStream in, signed HTTP POSTs out.

Two stages, both durable JetStream consumers with explicit acks (at least once end to end):

1. Fan-out. One consumer per event stream (`catalogue.EVENT_STREAMS`, from the moment it is first created)
   reads each event, finds the endpoints that want it (the event's organization's and the deployment's,
   `catalogue.organization_of`), publishes one `WebhookDelivery` per endpoint on `parley.webhook.<id>`
   (stream PARLEY_WEBHOOK, `Nats-Msg-Id: <webhookId>:<eventId>`: a fan-out repeated after a crash stores
   each delivery once), and only then acks the event. Events are handled one after the other, so each
   endpoint's subject receives them in stream order.
2. Delivery. One consumer (and worker) per endpoint: deliveries are grouped by ordering key
   (`catalogue.ordering_key`: conference, room, meeting...), each key sent strictly in order, different
   keys concurrently (at most `window` deliveries held per endpoint). A failure is retried after
   `retry_base * 2**(n-1)` s (capped); after `max_attempts` it is parked (recorded, shown by GET) and the
   key moves on. Workers share nothing but the process: a failing endpoint never delays another.

Only one replica runs all this at a time: the holder of the lease `webhooks` (the conference service's
leader lease, `adapters.lease`). Two replicas reading one endpoint's consumer would break its order (one
holding key K's first delivery while the other sends K's second); the lease rules that out. When a holder
dies, what it held comes back after the consumers' ack wait, and JetStream serves those redeliveries
before newer messages: the new holder, if it finds deliveries still held, waits one ack wait before it
starts, so order survives the takeover. The cost: webhook throughput is one replica's, which the bench
(`bench/webhooks.py`) measures.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import aiohttp
import msgspec
import nats.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError
from parley_common.contracts import catalogue
from parley_common.contracts import webhook as api
from parley_common.log import get_logger
from parley_common.messaging import subjects
from parley_common.messaging.codec import encode
from parley_common.messaging.events import publish_event
from parley_common.messaging.pull import fetch_ready
from parley_common.messaging.streams import WEBHOOK_STREAM, WEBHOOK_STREAM_CONFIG, ensure_streams
from prometheus_client import Counter, Histogram

from parley_conference import webhooks
from parley_conference.adapters.lease import Lease
from parley_conference.adapters.webhook_store import WebhookDirectory
from parley_conference.settings import WebhookSettings
from parley_conference.webhooks import Endpoint

log = get_logger(__name__)

DELIVERIES = Counter(
    "parley_webhook_deliveries_total",
    "Webhook POST outcomes: delivered (2xx), failed (an attempt that will be retried or parked), parked",
    ["outcome"],
)
for _outcome in ("delivered", "failed", "parked"):
    DELIVERIES.labels(outcome=_outcome)
DELIVERY_SECONDS = Histogram(
    "parley_webhook_delivery_seconds",
    "From the event's commit (its timestamp) to its endpoint's 2xx answer",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)

FANOUT_BATCH = 64
# An endpoint worker keeps its held deliveries alive this often (well within the ack wait).
ACK_WAIT_SECONDS = 30.0
KEEPALIVE_SECONDS = ACK_WAIT_SECONDS / 3
# The supervisor refreshes the lease and reconciles workers with the endpoints at least this often.
ROUND_SECONDS = 1.0
MAX_ERROR_LENGTH = 500
_delivery_decoder = msgspec.json.Decoder(api.WebhookDelivery)


def fanout_consumer(stream: str) -> str:
    return f"webhooks-{stream.lower()}"


def endpoint_consumer(webhook_id: str) -> str:
    return f"webhook-{webhook_id}"


class Fanout:
    """Stage 1 for one event stream."""

    def __init__(self, js: JetStreamContext, directory: WebhookDirectory, stream: str) -> None:
        self._js = js
        self._directory = directory
        self._stream = stream
        family = next(f for f in catalogue.FAMILIES if f.stream == stream)
        self._subject = family.subject_pattern.format(type=">")

    async def declare(self) -> None:
        """Create the durable consumer (idempotent): from then on no event is missed, lease or not."""
        try:
            await self._js.consumer_info(self._stream, fanout_consumer(self._stream))
            return
        except NotFoundError:
            pass
        await self._js.add_consumer(
            self._stream,
            ConsumerConfig(
                durable_name=fanout_consumer(self._stream),
                filter_subject=self._subject,
                ack_policy=AckPolicy.EXPLICIT,
                # Webhooks start with the events after they are switched on, not with a month of history.
                deliver_policy=DeliverPolicy.NEW,
                ack_wait=ACK_WAIT_SECONDS,
                max_ack_pending=FANOUT_BATCH,
            ),
        )

    async def run(self) -> None:
        subscription = await self._js.pull_subscribe_bind(
            durable=fanout_consumer(self._stream), stream=self._stream
        )
        while True:
            try:
                messages = await fetch_ready(subscription, FANOUT_BATCH, timeout=1)
            except (nats.errors.TimeoutError, TimeoutError):
                continue
            for msg in messages:
                # In order, each acked once its deliveries are stored: a crash repeats, never skips.
                await self.fan_out(msg)
                await msg.ack()

    async def fan_out(self, msg: Msg) -> None:
        kind = catalogue.kind_of_subject(msg.subject)
        if kind is None:
            return
        try:
            event = msgspec.json.decode(msg.data, type=kind.payload)
        except msgspec.DecodeError as exc:
            log.warning("undecodable event not delivered", subject=msg.subject, error=str(exc))
            return
        organization_id = catalogue.organization_of(event)
        targets = [
            e
            for e in await self._directory.for_organization(organization_id)
            if e.wants(kind.type, organization_id)
        ]
        if not targets:
            return
        event_id = str(getattr(event, "id", ""))
        body = api.WebhookEvent(
            id=event_id,
            type=kind.type,
            created_at=webhooks.occurred_at(event),
            organization_id=organization_id,
            event=msgspec.Raw(msg.data),
        )
        key = catalogue.ordering_key(event)
        await asyncio.gather(
            *(
                publish_event(
                    self._js,
                    subjects.webhook_deliveries(e.webhook_id),
                    api.WebhookDelivery(webhook_id=e.webhook_id, ordering_key=key, body=body),
                    msg_id=f"{e.webhook_id}:{event_id}",
                )
                for e in targets
            )
        )


Park = Callable[[str, api.WebhookFailure], Awaitable[None]]


@dataclass
class _Held:
    msg: Msg
    delivery: api.WebhookDelivery


@dataclass
class EndpointWorker:
    """Stage 2 for one endpoint."""

    js: JetStreamContext
    endpoint: Endpoint
    settings: WebhookSettings
    http: aiohttp.ClientSession
    park: Park
    _keys: dict[str, deque[_Held]] = field(default_factory=dict)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    async def run(self) -> None:
        subscription = await self.js.pull_subscribe(
            subjects.webhook_deliveries(self.endpoint.webhook_id),
            durable=endpoint_consumer(self.endpoint.webhook_id),
            stream=WEBHOOK_STREAM,
            config=ConsumerConfig(
                ack_policy=AckPolicy.EXPLICIT,
                deliver_policy=DeliverPolicy.ALL,
                ack_wait=ACK_WAIT_SECONDS,
                max_ack_pending=self.settings.window,
            ),
        )
        keepalive = asyncio.create_task(self._keep_alive())
        try:
            while True:
                try:
                    messages = await fetch_ready(subscription, 64, timeout=1)
                except (nats.errors.TimeoutError, TimeoutError):
                    continue
                for msg in messages:
                    try:
                        delivery = _delivery_decoder.decode(msg.data)
                    except msgspec.DecodeError:
                        log.warning("undecodable webhook delivery dropped", webhook=self.endpoint.webhook_id)
                        await msg.ack()
                        continue
                    queue = self._keys.get(delivery.ordering_key)
                    if queue is None:
                        queue = self._keys[delivery.ordering_key] = deque()
                        task = asyncio.create_task(self._drain(delivery.ordering_key, queue))
                        self._tasks.add(task)
                        task.add_done_callback(self._tasks.discard)
                    queue.append(_Held(msg, delivery))
        finally:
            keepalive.cancel()
            tasks = list(self._tasks)
            for task in tasks:
                task.cancel()
            await asyncio.gather(keepalive, *tasks, return_exceptions=True)
            # Given back at once (not after the ack wait): the next holder starts with them, in order.
            for queue in self._keys.values():
                for held in queue:
                    with contextlib.suppress(Exception):
                        await held.msg.nak()

    async def _keep_alive(self) -> None:
        """Deliveries waiting behind a failing one of their key stay held, not redelivered."""
        while True:
            await asyncio.sleep(KEEPALIVE_SECONDS)
            for queue in list(self._keys.values()):
                for held in list(queue):
                    with contextlib.suppress(Exception):
                        await held.msg.in_progress()

    async def _drain(self, key: str, queue: deque[_Held]) -> None:
        try:
            while queue:
                held = queue[0]
                await self._deliver(held)
                queue.popleft()
        finally:
            if not queue and self._keys.get(key) is queue:
                del self._keys[key]

    async def _deliver(self, held: _Held) -> None:
        body = encode(held.delivery.body)
        event = held.delivery.body
        attempt = 0
        while True:
            attempt += 1
            error = await self._post(body, event)
            if error is None:
                DELIVERIES.labels(outcome="delivered").inc()
                DELIVERY_SECONDS.observe(max(0.0, time.time() - event.created_at.timestamp()))
                await held.msg.ack()
                return
            DELIVERIES.labels(outcome="failed").inc()
            if attempt >= self.settings.max_attempts:
                log.warning(
                    "webhook delivery parked",
                    webhook=self.endpoint.webhook_id,
                    event_id=event.id,
                    attempts=attempt,
                    error=error,
                )
                await self.park(
                    self.endpoint.webhook_id,
                    api.WebhookFailure(
                        event_id=event.id,
                        event_type=event.type,
                        attempts=attempt,
                        last_error=error,
                        parked_at=datetime.now(UTC),
                    ),
                )
                DELIVERIES.labels(outcome="parked").inc()
                await held.msg.ack()
                return
            await asyncio.sleep(
                webhooks.backoff(
                    attempt, base=self.settings.retry_base_seconds, cap=self.settings.retry_max_seconds
                )
            )

    async def _post(self, body: bytes, event: api.WebhookEvent) -> str | None:
        """None when the endpoint answered 2xx, else what went wrong (recorded if the delivery parks)."""
        headers = {
            "Content-Type": webhooks.CONTENT_TYPE,
            "Authorization": webhooks.sign(
                body, webhook_id=self.endpoint.webhook_id, secret=self.endpoint.secret, now=time.time()
            ),
            "Webhook-Id": event.id,
            "Webhook-Event-Type": event.type,
        }
        try:
            async with self.http.post(
                self.endpoint.url,
                data=body,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=self.settings.timeout_seconds),
                allow_redirects=False,
            ) as response:
                await response.read()
                if 200 <= response.status < 300:
                    return None
                return f"HTTP {response.status}"
        except asyncio.CancelledError:
            raise
        except TimeoutError:
            return f"no answer within {self.settings.timeout_seconds:g} s"
        except Exception as exc:  # any transport failure is the endpoint's: retried, then parked
            return repr(exc)[:MAX_ERROR_LENGTH]


class WebhookDeliveries:
    """The supervisor: holds the lease, runs fan-out and one worker per endpoint while it does."""

    def __init__(
        self,
        js: JetStreamContext,
        directory: WebhookDirectory,
        lease: Lease,
        settings: WebhookSettings,
    ) -> None:
        self._js = js
        self._directory = directory
        self._lease = lease
        self._settings = settings
        self._fanouts: list[asyncio.Task[None]] = []
        self._workers: dict[str, asyncio.Task[None]] = {}
        self._http: aiohttp.ClientSession | None = None

    async def declare(self) -> None:
        """The delivery stream and the fan-out consumers, declared at start-up by every replica: events
        committed while no replica holds the lease (or before the first takes it) wait for it."""
        await ensure_streams(self._js, (WEBHOOK_STREAM_CONFIG,))
        for stream in catalogue.EVENT_STREAMS:
            await Fanout(self._js, self._directory, stream).declare()

    async def run(self) -> None:
        try:
            while True:
                running = self._http is not None
                if await self._lease.refresh():
                    if not running:
                        await self._start()
                    await self._reconcile()
                elif running:
                    log.info("webhook lease lost: delivery stops here")
                    await self._stop()
                self._directory.wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._directory.wake.wait(), timeout=ROUND_SECONDS)
        finally:
            await self._stop()
            with contextlib.suppress(Exception):  # the connection may be closed already
                await self._lease.release()

    async def _start(self) -> None:
        # A previous holder that died still holds deliveries until the ack wait: they come back first then.
        if await self._held_elsewhere():
            log.info("webhook lease taken over: waiting for the previous holder's deliveries")
            await asyncio.sleep(ACK_WAIT_SECONDS)
        self._http = aiohttp.ClientSession()
        self._fanouts = [
            asyncio.create_task(
                self._forever(f"fan-out {stream}", Fanout(self._js, self._directory, stream).run)
            )
            for stream in catalogue.EVENT_STREAMS
        ]
        await self._drop_orphans()

    async def _held_elsewhere(self) -> bool:
        streams = [WEBHOOK_STREAM, *catalogue.EVENT_STREAMS]
        for stream in streams:
            with contextlib.suppress(NotFoundError):
                for info in await self._js.consumers_info(stream):
                    name = info.name or ""
                    if name.startswith("webhook") and info.num_ack_pending:
                        return True
        return False

    async def _drop_orphans(self) -> None:
        """Consumers (and queued deliveries) of endpoints deleted while no one held the lease."""
        wanted = {endpoint_consumer(e.webhook_id) for e in await self._directory.everyone()}
        for info in await self._js.consumers_info(WEBHOOK_STREAM):
            if info.name and info.name not in wanted and info.config.filter_subject:
                await self._forget(info.name, info.config.filter_subject)

    async def _forget(self, consumer: str, subject: str) -> None:
        with contextlib.suppress(NotFoundError):
            await self._js.delete_consumer(WEBHOOK_STREAM, consumer)
        with contextlib.suppress(NotFoundError):
            await self._js.purge_stream(WEBHOOK_STREAM, subject=subject)

    async def _reconcile(self) -> None:
        assert self._http is not None
        endpoints = {e.webhook_id: e for e in await self._directory.everyone()}
        for webhook_id in list(self._workers):
            if webhook_id not in endpoints:
                task = self._workers.pop(webhook_id)
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
                await self._forget(endpoint_consumer(webhook_id), subjects.webhook_deliveries(webhook_id))
        for webhook_id, endpoint in endpoints.items():
            if webhook_id not in self._workers:
                worker = EndpointWorker(
                    self._js, endpoint, self._settings, self._http, self._directory.repository.park
                )
                self._workers[webhook_id] = asyncio.create_task(
                    self._forever(f"webhook {webhook_id}", worker.run)
                )

    async def _stop(self) -> None:
        tasks = [*self._fanouts, *self._workers.values()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._fanouts, self._workers = [], {}
        if self._http is not None:
            await self._http.close()
            self._http = None

    @staticmethod
    async def _forever(name: str, step: Callable[[], Awaitable[None]]) -> None:
        """Run `step` again after a failure (NATS away for a moment, say), never silently dead."""
        while True:
            try:
                await step()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("webhook task failed; restarting", task=name)
                await asyncio.sleep(1.0)
