"""Webhooks out, the delivery: JetStream in, signed HTTP POSTs out.

Two stages, at least once end to end:

1. Fan-out. One durable consumer per event stream (`catalogue.EVENT_STREAMS`, from the moment it is first
   created) reads each event, finds the endpoints that want it (the event's organization's and the
   deployment's, `catalogue.organization_of`), encodes the POST body once, stores one `WebhookDelivery`
   per endpoint on `parley.webhook.<id>` (stream PARLEY_WEBHOOK, `Nats-Msg-Id: <webhookId>:<eventId>`:
   a fan-out repeated after a crash stores each delivery once), and only then acks the event. Events are
   handled one after the other, so each endpoint receives them in stream order.
2. Delivery. One worker per endpoint, in this process: fan-out hands it each delivery directly (a live
   worker starts the POST while the copy is being stored), so a delivery costs one JetStream publish,
   not also a fetch and an ack. The stored copy is the durable record: the worker purges its subject
   below the lowest delivery it still owes; what it was not handed (left by a previous run or holder)
   its durable consumer brings when it starts (`EndpointWorker`). Deliveries are grouped by ordering key
   (`catalogue.ordering_key`: conference, room, meeting...), each key sent strictly in order, different
   keys concurrently (at most `window` held per endpoint). A failure is retried after
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


def fanout_consumer(stream: str) -> str:
    return f"webhooks-{stream.lower()}"


def endpoint_consumer(webhook_id: str) -> str:
    return f"webhook-{webhook_id}"


class _Stored(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """`api.WebhookDelivery` as stored, its body kept as the exact bytes fan-out encoded once per event:
    every endpoint's copy carries them and the worker POSTs them as they are (no re-encoding)."""

    webhook_id: str
    ordering_key: str
    body: msgspec.Raw


_stored_decoder = msgspec.json.Decoder(_Stored)
_event_decoder = msgspec.json.Decoder(api.WebhookEvent)


class Fanout:
    """Stage 1 for one event stream."""

    def __init__(
        self,
        js: JetStreamContext,
        directory: WebhookDirectory,
        stream: str,
        route: Callable[[Endpoint], EndpointWorker] | None = None,
    ) -> None:
        self._js = js
        self._directory = directory
        self._stream = stream
        # The lease holder's worker of an endpoint: each stored delivery is handed to it directly.
        self._route = route
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
        try:
            while True:
                try:
                    messages = await fetch_ready(subscription, FANOUT_BATCH, timeout=1)
                except (nats.errors.TimeoutError, TimeoutError):
                    continue
                for msg in messages:
                    # In order, each acked once its deliveries are stored: a crash repeats, never skips.
                    await self.fan_out(msg)
                    await msg.ack()
        finally:
            with contextlib.suppress(Exception):
                await subscription.unsubscribe()

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
        webhook_event = api.WebhookEvent(
            id=event_id,
            type=kind.type,
            created_at=webhooks.occurred_at(event),
            organization_id=organization_id,
            event=msgspec.Raw(msg.data),
        )
        # One body for every endpoint (each signs it with its own secret).
        body = encode(webhook_event)
        key = catalogue.ordering_key(event)
        workers = [self._route(e) if self._route else None for e in targets]
        # Reserved before the publish: a worker never removes a stored delivery it has not been given yet.
        tokens = [w.reserve() if w else 0 for w in workers]
        # A live worker POSTs while its copy is being stored (not after the PubAck: storing ten copies is
        # a few ms). At least once still holds: this event is acked only once every copy is stored, so a
        # crash before then brings it back, stored and POSTed again.
        held = [_Held(0, key, webhook_event, body) for _ in targets]
        early = [w.take_early(h) if w else False for w, h in zip(workers, held, strict=True)]
        if any(early):
            await asyncio.sleep(0)  # the POSTs go out first: storing the copies does not delay them
        try:
            acks = await asyncio.gather(
                *(
                    publish_event(
                        self._js,
                        subjects.webhook_deliveries(e.webhook_id),
                        encode(_Stored(webhook_id=e.webhook_id, ordering_key=key, body=msgspec.Raw(body))),
                        msg_id=f"{e.webhook_id}:{event_id}",
                    )
                    for e in targets
                )
            )
        except BaseException:
            for worker, token in zip(workers, tokens, strict=True):
                if worker:
                    worker.release(token)
            raise
        for worker, token, ack, copy, taken in zip(workers, tokens, acks, held, early, strict=True):
            if worker:
                worker.hand_over(token, ack.seq, copy, taken=taken)


Park = Callable[[str, api.WebhookFailure], Awaitable[None]]


@dataclass
class _Held:
    seq: int  # in PARLEY_WEBHOOK (0: not known yet, its PubAck has not come)
    key: str
    event: api.WebhookEvent
    body: bytes
    # Read from the endpoint's consumer (acked there once done); None: handed over by fan-out (purged).
    msg: Msg | None = None
    finished: bool = False
    run: int = 0  # the worker's run that took it


# A catching-up worker asks its consumer for more this often, and checks whether it is done when none came.
CATCH_UP_POLL_SECONDS = 0.2
# A live worker removes the deliveries it is done with from the stream at most this often (one purge).
PURGE_SECONDS = 0.1


@dataclass
class EndpointWorker:
    """Stage 2 for one endpoint.

    Each delivery is stored in PARLEY_WEBHOOK (the durable record) and, on this replica, handed to the
    worker by fan-out the moment its PubAck comes: the worker POSTs it at once, with no second JetStream
    hop (a fetch per delivery was a third of the path's cost and a round trip of its latency). Stored
    deliveries the worker is done with leave the stream in one purge of its subject below the lowest one
    still owed (`_floor`), every `PURGE_SECONDS`; a crash before that sends them again (at least once).

    The durable consumer brings what no live worker was given: when the worker starts (what a previous
    holder or run left) it reads the consumer first (catching up) while keeping what fan-out hands over;
    once the consumer has nothing more (everything stored up to its last delivered sequence came through
    it), it takes the kept handovers it did not read already and goes live. A live worker owing more than
    `window` deliveries (a dead endpoint) stops taking handovers and starts over from the consumer, so
    memory stays bounded: the stream holds the rest.
    """

    js: JetStreamContext
    endpoint: Endpoint
    settings: WebhookSettings
    http: aiohttp.ClientSession
    park: Park
    _signer: webhooks.Signer = field(init=False)
    # Across runs: which deliveries are done (not sent again) and below which sequence all were purged.
    _done: set[int] = field(default_factory=set)
    _purged: int = 0
    _reservations: dict[int, int] = field(default_factory=dict)
    _next_token: int = 1
    # One run's state (`_reset`).
    _live: bool = False
    _keys: dict[str, deque[_Held]] = field(default_factory=dict)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _owed: set[int] = field(default_factory=set)
    _holding: int = 0
    _run: int = 0
    _highest: int = 0
    _kept: deque[_Held] = field(default_factory=deque)
    _dropped: int = 0
    _overflow: asyncio.Event = field(default_factory=asyncio.Event)
    _dirty: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self._signer = webhooks.Signer(self.endpoint.webhook_id, self.endpoint.secret)
        self._reset()

    def _reset(self) -> None:
        self._live = False
        self._keys, self._tasks, self._owed = {}, set(), set()
        self._holding = 0
        self._run += 1
        self._highest = 0
        self._kept = deque(maxlen=max(1, self.settings.window))
        self._dropped = 0
        self._overflow = asyncio.Event()

    # Fan-out's side.

    def reserve(self) -> int:
        """Before a publish: its sequence will exceed every one handed over so far, so none at or above
        this bound is purged until `hand_over` (or `release`)."""
        token, self._next_token = self._next_token, self._next_token + 1
        self._reservations[token] = self._highest_known() + 1
        return token

    def release(self, token: int) -> None:
        self._reservations.pop(token, None)

    def take_early(self, held: _Held) -> bool:
        """Before its copy is stored: a live worker under its window takes the delivery at once."""
        if not self._live or self._holding >= self.settings.window:
            return False
        self._accept(held)
        return True

    def hand_over(self, token: int, seq: int, held: _Held, *, taken: bool = False) -> None:
        """After its copy is stored as `seq` (`taken`: by `take_early`)."""
        self.release(token)
        if taken and (held.finished or held.run == self._run):
            held.seq = seq
            self._highest = max(self._highest, seq)
            if held.finished:
                self._finish(seq)
            else:
                self._owed.add(seq)
            return
        # Not taken, or taken by a run that ended before finishing it: like any stored delivery.
        held.seq, held.run = seq, 0
        if self._seen(seq):  # a repeated publish (PubAck `duplicate`) names the stored one
            return
        if not self._live:
            if len(self._kept) == self._kept.maxlen:
                self._dropped = max(self._dropped, self._kept[0].seq)
            self._kept.append(held)
            return
        if self._holding >= self.settings.window:
            # Stored: the consumer brings it (and what follows) once this run is over.
            log.warning(
                "webhook endpoint over its window: reading its stream", webhook=self.endpoint.webhook_id
            )
            self._live = False
            self._overflow.set()
            return
        self._accept(held)

    # The worker's side.

    async def run(self) -> None:
        self._reset()
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
        helpers = [asyncio.create_task(self._keep_alive()), asyncio.create_task(self._purging())]
        try:
            await self._catch_up(subscription)
            await self._overflow.wait()
        finally:
            floor = self._floor()  # before the cancelled deliveries' state goes
            self._live = False
            tasks = [*helpers, *self._tasks]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for queue in self._keys.values():
                for held in queue:
                    if held.msg is not None:
                        # Given back at once (not after the ack wait): the next run starts with them.
                        with contextlib.suppress(Exception):
                            await held.msg.nak()
            with contextlib.suppress(Exception):
                await self._purge(floor)  # done ones leave now: the next run does not send them again
            with contextlib.suppress(Exception):
                await subscription.unsubscribe()

    async def _catch_up(self, subscription: JetStreamContext.PullSubscription) -> None:
        while True:
            try:
                messages = await fetch_ready(subscription, 64, timeout=CATCH_UP_POLL_SECONDS)
            except (nats.errors.TimeoutError, TimeoutError):
                if await self._go_live():
                    return
                continue
            for msg in messages:
                seq = msg.metadata.sequence.stream
                if self._seen(seq):
                    await msg.ack()
                    continue
                try:
                    stored = _stored_decoder.decode(msg.data)
                    event = _event_decoder.decode(stored.body)
                except msgspec.DecodeError:
                    log.warning("undecodable webhook delivery dropped", webhook=self.endpoint.webhook_id)
                    await msg.ack()
                    continue
                self._accept(_Held(seq, stored.ordering_key, event, bytes(stored.body), msg))

    async def _go_live(self) -> bool:
        """When the consumer has delivered everything stored (its last delivered sequence D) and every
        handover above D was kept: take the kept ones not read already, in order, and go live."""
        info = await self.js.consumer_info(WEBHOOK_STREAM, endpoint_consumer(self.endpoint.webhook_id))
        if info.num_pending:
            return False
        delivered = (info.delivered.stream_seq or 0) if info.delivered else 0
        if self._dropped > delivered:
            return False  # some handed over later were not kept: the consumer brings them
        for held in sorted(self._kept, key=lambda h: h.seq):
            if not self._seen(held.seq):
                self._accept(held)
        self._kept.clear()
        self._live = True
        return True

    def _seen(self, seq: int) -> bool:
        return seq < self._purged or seq in self._owed or seq in self._done

    def _accept(self, held: _Held) -> None:
        held.run = self._run
        self._holding += 1
        if held.seq:
            self._owed.add(held.seq)
            self._highest = max(self._highest, held.seq)
        queue = self._keys.get(held.key)
        if queue is None:
            queue = self._keys[held.key] = deque()
            task = asyncio.create_task(self._drain(held.key, queue))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        queue.append(held)

    def _finish(self, seq: int) -> None:
        self._owed.discard(seq)
        self._done.add(seq)
        self._dirty.set()

    def _highest_known(self) -> int:
        return max(self._highest, max((h.seq for h in self._kept), default=0))

    def _floor(self) -> int | None:
        """Every stored delivery below this one is done: none owed, reserved or kept. Only while live
        (catching up, the consumer's acks remove what it brought)."""
        if not self._live:
            return None
        bounds = [min(self._owed, default=self._highest + 1), *self._reservations.values()]
        return min(bounds)

    async def _purging(self) -> None:
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            try:
                await self._purge(self._floor())
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # NATS away for a moment: the next round purges the same and more
                log.warning("webhook purge failed", webhook=self.endpoint.webhook_id, error=repr(exc))
                self._dirty.set()
            await asyncio.sleep(PURGE_SECONDS)

    async def _purge(self, floor: int | None) -> None:
        if floor is None or floor <= self._purged:
            return
        await self.js.purge_stream(
            WEBHOOK_STREAM, subject=subjects.webhook_deliveries(self.endpoint.webhook_id), seq=floor
        )
        self._purged = floor
        self._done = {seq for seq in self._done if seq >= floor}

    async def _keep_alive(self) -> None:
        """Deliveries read from the consumer and waiting behind a failing one of their key stay held,
        not redelivered."""
        while True:
            await asyncio.sleep(KEEPALIVE_SECONDS)
            for queue in list(self._keys.values()):
                for held in list(queue):
                    if held.msg is not None:
                        with contextlib.suppress(Exception):
                            await held.msg.in_progress()

    async def _drain(self, key: str, queue: deque[_Held]) -> None:
        try:
            while queue:
                held = queue[0]
                await self._deliver(held)
                queue.popleft()
                held.finished = True
                self._holding -= 1
                if held.seq:  # else its PubAck, when it comes, finishes it
                    self._finish(held.seq)
        finally:
            if not queue and self._keys.get(key) is queue:
                del self._keys[key]

    async def _deliver(self, held: _Held) -> None:
        event = held.event
        attempt = 0
        while True:
            attempt += 1
            error = await self._post(held.body, event)
            if error is None:
                DELIVERIES.labels(outcome="delivered").inc()
                DELIVERY_SECONDS.observe(max(0.0, time.time() - event.created_at.timestamp()))
                if held.msg is not None:
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
                if held.msg is not None:
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
            "Authorization": self._signer.sign(body, now=time.time()),
            "Webhook-Id": event.id,
            "Webhook-Event-Type": event.type,
        }
        try:
            async with self.http.post(
                self.endpoint.url,
                data=body,
                headers=headers,
                timeout=self._timeout,
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

    @property
    def _timeout(self) -> aiohttp.ClientTimeout:
        return aiohttp.ClientTimeout(total=self.settings.timeout_seconds)


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
        # Every endpoint's worker object, made by whichever comes first: fan-out handing it a delivery
        # (kept until it runs) or the round that starts its task.
        self._endpoint_workers: dict[str, EndpointWorker] = {}
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
                self._forever(
                    f"fan-out {stream}", Fanout(self._js, self._directory, stream, self._worker).run
                )
            )
            for stream in catalogue.EVENT_STREAMS
        ]
        await self._drop_orphans()

    def _worker(self, endpoint: Endpoint) -> EndpointWorker:
        worker = self._endpoint_workers.get(endpoint.webhook_id)
        if worker is None:
            assert self._http is not None
            worker = self._endpoint_workers[endpoint.webhook_id] = EndpointWorker(
                self._js, endpoint, self._settings, self._http, self._directory.repository.park
            )
        return worker

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
                self._endpoint_workers.pop(webhook_id, None)
                await self._forget(endpoint_consumer(webhook_id), subjects.webhook_deliveries(webhook_id))
        for webhook_id, endpoint in endpoints.items():
            if webhook_id not in self._workers:
                self._workers[webhook_id] = asyncio.create_task(
                    self._forever(f"webhook {webhook_id}", self._worker(endpoint).run)
                )

    async def _stop(self) -> None:
        tasks = [*self._fanouts, *self._workers.values()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._fanouts, self._workers, self._endpoint_workers = [], {}, {}
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
