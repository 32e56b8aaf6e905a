"""The transactional outbox every service uses: what a commit owes, carried out right after it, never lost.

A command commits its state change together with the *effects* it owes (`Owed`: typed effects such as
`PublishEvent`, `PushToEndpoint`, `DeleteObject`) in one storage write, then hands the `Owed` to the
`Outbox`. The outbox carries effects out in commit order, a batch at a time, each kind by the executor
registered for it (publishes pipelined on the connection, started in order so the stream stores them in
order, each with its `Nats-Msg-Id`). Recording them done is a storage write that would queue in front of the
next command's commit, so it is batched and flushed every `flush_interval` seconds (`OutboxStore.done`).

What a crash or a NATS outage leaves owed stays in storage: `recover` runs it again on start, and every
`recovery_interval` seconds after this process failed to carry something out or record it; with
`sweep=True` (a store whose listing is cheap) every `recovery_interval` seconds regardless, which also picks
up what a replica that died left behind before it restarts. A recovered publish first asks the stream
what it already stores (`parley_common.messaging.relay`): the restart may come after the duplicate window.

Storage stays the service's: its repository implements `OutboxStore` (list what is owed, record it done),
so the conference keeps its event log as the outbox (an event *is* its publish effect) while the snapshot
service keeps pending effects inside each record.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import msgspec
from nats.js import JetStreamContext

from parley_common import metrics
from parley_common.contracts.push import PushedEvent
from parley_common.log import get_logger
from parley_common.messaging.events import publish_event
from parley_common.messaging.relay import Outgoing, relay
from parley_common.messaging.streams import STREAMS

log = get_logger(__name__)

BATCH = 256
FLUSH_INTERVAL_SECONDS = 0.25
RECOVERY_INTERVAL_SECONDS = 5.0
# A periodic recovery leaves alone what was committed this recently: another replica's live relay is on it.
RECOVERY_MIN_AGE = timedelta(seconds=5)


# ---------------------------------------------------------------- effects


class PublishEvent(msgspec.Struct, frozen=True, kw_only=True, tag="publish"):
    """Publish `event` on `subject` with `Nats-Msg-Id: msg_id` (stored once per stream)."""

    subject: str
    msg_id: str
    # A Struct (encoded when published) or its plain-JSON document (as stored and read back).
    event: Any
    # The stream that stores `subject` (found from the subject when empty), and when the event was committed.
    stream: str = ""
    committed_at: datetime | None = None


class PushToEndpoint(msgspec.Struct, frozen=True, tag="push"):
    """Deliver an event to one endpoint's push channel."""

    pushed: PushedEvent


class DeleteObject(msgspec.Struct, frozen=True, tag="delete"):
    """Delete an object no committed state refers to any more (deleting one that is gone is fine)."""

    object_name: str


class Owed(msgspec.Struct, frozen=True, kw_only=True):
    """The effects one commit owes: kept by the `OutboxStore` named `store` under `key` as of `version`."""

    store: str
    key: str
    version: int = 0
    committed_at: datetime
    effects: tuple[Any, ...]


class OutboxStore(Protocol):
    """The bookkeeping a repository does for the outbox (in the same storage as the state it commits)."""

    @property
    def name(self) -> str: ...

    async def owed(self, limit: int) -> list[Owed]:
        """What committed changes still owe, oldest first."""
        ...

    async def done(self, done: Sequence[Owed]) -> None:
        """`done` was carried out: owed no more (unless a newer commit of the same key owes its own)."""
        ...


class Executor(Protocol):
    """Carries out a batch of effects of one kind, in order; raises if any failed (all stay owed)."""

    async def __call__(self, effects: Sequence[Any], *, recovering: bool) -> None: ...


def each(action: Callable[[Any], Awaitable[object]]) -> Executor:
    """An executor running `action` on every effect, one after the other."""

    async def execute(effects: Sequence[Any], *, recovering: bool) -> None:
        for effect in effects:
            await action(effect)

    return execute


def stream_of(subject: str) -> str:
    for config in STREAMS:
        for pattern in config.subjects or ():
            if subject.startswith(pattern.rstrip(">").rstrip("*")):
                return str(config.name)
    raise ValueError(f"no stream stores subject {subject}")


class Publisher:
    """Executes `PublishEvent`s: pipelined in order live; on recovery only what the stream lacks."""

    def __init__(self, js: JetStreamContext, *, attempts: int = 0) -> None:
        self._js = js
        # 0: retry until acknowledged (the relay waits out a NATS hiccup); n: give up, leave it owed.
        self._attempts = attempts

    async def __call__(self, effects: Sequence[PublishEvent], *, recovering: bool) -> None:
        if recovering:
            by_stream: dict[str, list[Outgoing]] = {}
            for effect in effects:
                outgoing = _outgoing(effect)
                by_stream.setdefault(effect.stream or stream_of(effect.subject), []).append(outgoing)
            for stream, outgoing_events in by_stream.items():
                await relay(self._js, stream, outgoing_events, attempts=self._attempts)
            return
        if len(effects) == 1:  # the usual batch: no task to pipeline it with others
            effect = effects[0]
            await publish_event(
                self._js, effect.subject, effect.event, msg_id=effect.msg_id, attempts=self._attempts
            )
            return
        await asyncio.gather(
            *(
                publish_event(self._js, e.subject, e.event, msg_id=e.msg_id, attempts=self._attempts)
                for e in effects
            )
        )


def _outgoing(effect: PublishEvent) -> Outgoing:
    committed_at = effect.committed_at
    if committed_at is None:  # stored before the field existed: the event's own timestamp is its commit time
        stamp = effect.event["timestamp"] if isinstance(effect.event, dict) else effect.event.timestamp
        committed_at = msgspec.convert(stamp, datetime)
    return Outgoing(
        subject=effect.subject, msg_id=effect.msg_id, committed_at=committed_at, payload=effect.event
    )


# ---------------------------------------------------------------- the outbox


class Outbox:
    """Carries out what commits owe, in commit order, and records it done in batches."""

    def __init__(
        self,
        stores: Sequence[OutboxStore],
        executors: Mapping[type, Executor],
        *,
        flush_interval: float = FLUSH_INTERVAL_SECONDS,
        recovery_interval: float = RECOVERY_INTERVAL_SECONDS,
        sweep: bool = True,
        batch: int = BATCH,
    ) -> None:
        self._stores = {store.name: store for store in stores}
        # Executed kind by kind in this order within a batch (events before the pushes that echo them).
        self._executors = dict(executors)
        self._flush_interval = flush_interval
        self._recovery_interval = recovery_interval
        self._sweep = sweep
        # Something this process committed failed and is owed in storage: recover until it is carried out.
        self._dirty = False
        self._batch = batch
        self._queue: asyncio.Queue[Owed] = asyncio.Queue()
        self._executed: list[Owed] = []
        # What this process's live relay holds (queued or executed, not yet recorded): recovery leaves it.
        self._in_flight: dict[tuple[str, str, int], int] = {}
        self._waiters: dict[int, asyncio.Future[bool]] = {}
        self._idle = asyncio.Event()
        self._idle.set()
        # Metrics per store (an outbox's stores are its outboxes for an operator: `chat`, `meetings`...).
        self._owed: dict[str, Any] = {}
        self._lag: dict[str, Any] = {}
        # Effects a failed live relay left owed (still counted in `_owed`) until a recovery clears them.
        self._failed: dict[str, int] = {}

    # ------------------------------------------------------------ the command path

    def committed(self, owed: Owed) -> None:
        """`owed` is committed: carry it out soon (never blocks the command)."""
        self._idle.clear()
        k = (owed.store, owed.key, owed.version)
        self._in_flight[k] = self._in_flight.get(k, 0) + 1
        self._owed_of(owed.store).inc(len(owed.effects))
        self._queue.put_nowait(owed)

    def watch(self, owed: Owed) -> asyncio.Future[bool]:
        """Before `committed(owed)`: a future the relay sets once `owed` is carried out (True) or failed
        (False). Registered now, so a relay that runs before the command waits cannot be missed."""
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._waiters[id(owed)] = future
        return future

    async def carried_out(self, owed: Owed, timeout: float) -> bool:
        """Wait (at most `timeout` s) until `owed`, just handed to `committed`, is carried out (`watch`ed
        before that if anything may run in between)."""
        future = self._waiters.get(id(owed)) or self.watch(owed)
        try:
            async with asyncio.timeout(timeout):
                return await asyncio.shield(future)
        except TimeoutError:
            return False
        finally:
            self._waiters.pop(id(owed), None)

    # ------------------------------------------------------------ the relay

    async def run(self) -> None:
        """The live relay, and recovery every `recovery_interval` seconds, until cancelled."""
        recovery = asyncio.create_task(self._recover_forever(), name="outbox-recovery")
        try:
            await self._relay_forever()
        finally:
            recovery.cancel()
            await asyncio.gather(recovery, return_exceptions=True)

    async def drain(self) -> None:
        """Until everything committed so far is carried out and recorded (for a clean shutdown)."""
        await self._idle.wait()

    @property
    def pending(self) -> int:
        """Commits this process holds not yet carried out and recorded (what a cut-short drain leaves)."""
        return sum(self._in_flight.values())

    async def _relay_forever(self) -> None:
        last_flush = time.monotonic()
        while True:
            try:
                # `asyncio.timeout`, not `wait_for`: no task per wait (this runs once per command).
                async with asyncio.timeout(self._flush_interval):
                    first = await self._queue.get()
            except TimeoutError:
                first = None
            batch = [] if first is None else [first]
            while not self._queue.empty() and len(batch) < self._batch:
                batch.append(self._queue.get_nowait())
            if batch:
                try:
                    await self._execute(batch, recovering=False)
                    self._executed.extend(batch)
                    self._observe(batch)
                    self._notify(batch, True)
                except Exception:
                    # Still owed in storage: the next recovery carries it out.
                    log.exception("outbox relay failed", commits=len(batch))
                    self._dirty = True
                    for owed in batch:
                        self._failed[owed.store] = self._failed.get(owed.store, 0) + len(owed.effects)
                    self._release(batch)
                    self._notify(batch, False)
            if self._executed and (
                first is None
                or len(self._executed) >= self._batch
                or time.monotonic() - last_flush >= self._flush_interval
            ):
                await self._flush()
                last_flush = time.monotonic()
            if self._queue.empty() and not self._executed:
                self._idle.set()

    async def _execute(self, batch: Sequence[Owed], *, recovering: bool) -> None:
        by_kind: dict[type, list[Any]] = {kind: [] for kind in self._executors}
        for owed in batch:
            for effect in owed.effects:
                same_kind = by_kind.get(type(effect))
                if same_kind is None:  # a store decoding effects to something no executor takes: a bug
                    raise TypeError(f"no executor for effect {type(effect).__name__} of {owed.key}")
                same_kind.append(effect)
        for kind, effects in by_kind.items():
            if effects:
                await self._executors[kind](effects, recovering=recovering)

    def _observe(self, batch: Sequence[Owed], *, live: bool = True) -> None:
        """`batch` was carried out: no longer owed (live ones), and its commit-to-publish lag."""
        now = time.time()
        for owed in batch:
            if live:
                self._owed_of(owed.store).dec(len(owed.effects))
            lag = self._lag.get(owed.store)
            if lag is None:
                lag = self._lag[owed.store] = metrics.OUTBOX_LAG_SECONDS.labels(owed.store)
            lag.observe(max(0.0, now - owed.committed_at.timestamp()))

    def _owed_of(self, store: str) -> Any:
        # Resolved once per store, and never raising on the command path (whatever `store` says).
        gauge = self._owed.get(store)
        if gauge is None:
            gauge = self._owed[store] = metrics.OUTBOX_OWED.labels(store)
        return gauge

    async def _flush(self) -> None:
        done, self._executed = self._executed, []
        try:
            await self._record(done)
        except Exception:
            # Still owed: recovery finds the events in the stream and does not publish them again.
            log.exception("outbox bookkeeping failed", commits=len(done))
            self._dirty = True
        finally:
            self._release(done)

    async def _record(self, done: Sequence[Owed]) -> None:
        by_store: dict[str, list[Owed]] = {}
        for owed in done:
            by_store.setdefault(owed.store, []).append(owed)
        for name, owed_list in by_store.items():
            await self._stores[name].done(owed_list)

    def _release(self, batch: Sequence[Owed]) -> None:
        for owed in batch:
            k = (owed.store, owed.key, owed.version)
            left = self._in_flight.get(k, 0) - 1
            if left > 0:
                self._in_flight[k] = left
            else:
                self._in_flight.pop(k, None)

    def _notify(self, batch: Sequence[Owed], outcome: bool) -> None:
        if not self._waiters:
            return
        for owed in batch:
            future = self._waiters.get(id(owed))
            if future is not None and not future.done():
                future.set_result(outcome)

    # ------------------------------------------------------------ recovery

    async def recover(self, *, min_age: timedelta = timedelta(0)) -> int:
        """Carry out what storage still owes (but the live relay does not hold); returns how many commits.

        `min_age` leaves what was committed more recently than that (another replica may be relaying it).
        """
        count = 0
        left = False
        for store in self._stores.values():
            while True:
                listed = await store.owed(self._batch)
                horizon = datetime.now(UTC) - min_age
                batch = [
                    owed
                    for owed in listed
                    if (owed.store, owed.key, owed.version) not in self._in_flight
                    and owed.committed_at <= horizon
                ]
                if batch:
                    await self._execute(batch, recovering=True)
                    self._observe(batch, live=False)
                    await store.done(batch)
                    count += len(batch)
                # A full listing may hide more behind it, unless part of it was left for others.
                if len(batch) < len(listed):
                    left = True
                    break
                if len(listed) < self._batch:
                    break
        if not left:
            self._dirty = False
            # What the live relay failed to carry out is carried out now (or was by another replica).
            for name, effects in self._failed.items():
                self._owed_of(name).dec(effects)
            self._failed.clear()
        if count:
            log.info("outbox recovered owed effects", commits=count)
        return count

    async def _recover_forever(self) -> None:
        while True:
            await asyncio.sleep(self._recovery_interval)
            if not (self._sweep or self._dirty):
                continue
            try:
                await self.recover(min_age=RECOVERY_MIN_AGE)
            except Exception:
                log.exception("outbox recovery failed")
