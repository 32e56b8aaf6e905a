"""The bootstrap every service shares: `main()` (logging, settings, signals, loop) and the serve skeleton.

A service's `app.py` keeps only its wiring: a `wire(runtime)` coroutine building its adapters and use cases
on the storage and broker the skeleton opened, and registering what the skeleton must run and stop:

    async def wire(runtime: Runtime) -> None:
        repository = await Repository.open(runtime.store)
        outbox = runtime.use_outbox(Outbox(...))       # recovered before serving, drained at shutdown
        register(runtime.broker, Handlers(...))
        runtime.background(lambda: sweep_forever(...), name="timers")

    def main() -> None:
        run_service("chat", Settings.from_env, lambda s, stop: serve("chat", s.common, wire, stop))

Shutdown is orderly, whatever failed, and bounded (`SHUTDOWN_SECONDS`): stop taking requests, drain the
outbox (what was committed gets out), cancel background tasks, drain and close the NATS connection, run the
service's own closing steps, close storage; one log line names what the deadline cut short.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any, Protocol, TypeVar

from faststream.nats import NatsBroker
from nats.aio.client import Client
from nats.js import JetStreamContext

from parley_common import metrics
from parley_common.config import CommonSettings
from parley_common.log import configure_logging, get_logger
from parley_common.messaging.broker import CLOSE_SECONDS, make_broker, stop_broker
from parley_common.messaging.streams import JetStreamSetupError, ensure_streams
from parley_common.storage import DocumentStore, open_store

log = get_logger(__name__)
S = TypeVar("S")
# How long a stopping service takes at most, its outbox's drain and its NATS connection's included (under
# the 10 s a supervisor or `ServiceProcess.stop` waits before SIGKILL; Kubernetes waits 30 s).
SHUTDOWN_SECONDS = 7.0


class Drainable(Protocol):
    async def recover(self) -> int: ...

    async def run(self) -> None: ...

    async def drain(self) -> None: ...

    @property
    def pending(self) -> int: ...


class Stoppable(Protocol):
    async def stop(self) -> None: ...


D = TypeVar("D", bound=Drainable)
T = TypeVar("T", bound=Stoppable)


class Runtime:
    """What the skeleton opened for a service, and what the service asks it to run and stop."""

    def __init__(self, name: str, common: CommonSettings, store: DocumentStore, broker: NatsBroker) -> None:
        self.name = name
        self.common = common
        self.store = store
        self.broker = broker
        self.nc: Client = broker.connection
        self.js: JetStreamContext = self.nc.jetstream()
        self.outbox: Drainable | None = None
        self._requests: list[Stoppable] = []
        self._background: list[tuple[Callable[[], Coroutine[Any, Any, None]], str]] = []
        self._after_start: list[Callable[[], Awaitable[None]]] = []
        self._closing: list[Callable[[], Awaitable[object]]] = []
        self.tasks: list[asyncio.Task[None]] = []

    def use_outbox(self, outbox: D) -> D:
        """Recovered before the service serves, relaying while it runs, drained when it stops."""
        self.outbox = outbox
        return outbox

    def takes_requests(self, responders: T) -> T:
        """Request responders outside the broker (stopped first, with the broker's subscribers)."""
        self._requests.append(responders)
        return responders

    def background(self, factory: Callable[[], Coroutine[Any, Any, None]], *, name: str) -> None:
        """A task started once the service serves, cancelled when it stops."""
        self._background.append((factory, name))

    def after_start(self, step: Callable[[], Awaitable[None]]) -> None:
        """A step run once subscribed and before the background tasks (e.g. loading a read model)."""
        self._after_start.append(step)

    def on_close(self, step: Callable[[], Awaitable[object]]) -> None:
        """A closing step, run once the background tasks stopped, while the NATS connection is still open
        (it may release what it holds there), before storage closes; failures are only logged."""
        self._closing.append(step)


def process_age_ms() -> float | None:
    """How long ago this process was exec'd (Linux `/proc`; None elsewhere): with the steps' total, the
    part of a restart that is the interpreter's start-up and imports."""
    try:
        # Field 22 of /proc/self/stat (after the parenthesised name): start time in clock ticks since boot.
        fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        started = int(fields[19]) / os.sysconf("SC_CLK_TCK")
        uptime = float(Path("/proc/uptime").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return round((uptime - started) * 1e3, 1)


class StartupSteps:
    """The milliseconds each start-up step took, in order."""

    def __init__(self) -> None:
        self.ms: dict[str, float] = {}
        self._last = time.perf_counter()

    def done(self, step: str) -> None:
        now = time.perf_counter()
        self.ms[step] = round((now - self._last) * 1e3, 1)
        self._last = now


async def serve(
    name: str,
    common: CommonSettings,
    wire: Callable[[Runtime], Awaitable[None]],
    stop: asyncio.Event,
    *,
    no_echo: bool = False,
) -> None:
    """Open storage, connect the broker, ensure streams, wire, serve until `stop`, then shut down in order."""
    # Each start-up step's duration, logged with "ready": where a restart spends its time (issue 12).
    steps = StartupSteps()
    store = await open_store(mongo_url=common.mongo_url, sqlite_path=common.sqlite_path(name))
    steps.done("storage")
    broker: NatsBroker | None = None
    runtime: Runtime | None = None
    try:
        broker = make_broker(common.nats_url, name=f"parley-{name}", no_echo=no_echo)
        await broker.connect()
        steps.done("connect")
        runtime = Runtime(name, common, store, broker)
        await ensure_streams(runtime.js, replicas=common.nats_replicas)
        steps.done("streams")
        await wire(runtime)
        steps.done("wire")
        if runtime.outbox is not None:
            await runtime.outbox.recover()
            steps.done("recover")
        await broker.start()
        for step in runtime._after_start:
            await step()
        steps.done("subscribe")
        if runtime.outbox is not None:
            runtime.tasks.append(asyncio.create_task(runtime.outbox.run(), name="outbox"))
        for factory, task_name in runtime._background:
            runtime.tasks.append(asyncio.create_task(factory(), name=task_name))
        log.info(
            f"{name} service ready",
            nats=common.nats_url,
            storage="mongodb" if common.mongo_url else "sqlite",
            startup_ms=steps.ms,
            process_age_ms=process_age_ms(),
        )
        await stop.wait()
    finally:
        log.info(f"{name} service stopping")
        if runtime is not None:
            await _shutdown(runtime)
        elif broker is not None:
            await stop_broker(broker)
        await store.close()


async def _shutdown(runtime: Runtime, *, within: float = SHUTDOWN_SECONDS) -> None:
    """Stop in order, each step cut short at the shutdown's deadline (a NATS connection that reconnected to
    another cluster server, or a stream electing its leader, must not keep a stopping process for ever);
    one log line says what was abandoned, if anything."""
    deadline = Deadline(within)
    abandoned: list[str] = []
    # Stop taking requests, carry out what was committed, then close the connection.
    for responders in runtime._requests:
        await deadline.run("stopping responders", responders.stop(), abandoned, reserve=CLOSE_SECONDS)
    for subscriber in runtime.broker.subscribers:
        await deadline.run("stopping a subscriber", subscriber.stop(), abandoned, reserve=CLOSE_SECONDS)
    if runtime.outbox is not None and any(t.get_name() == "outbox" for t in runtime.tasks):
        outbox = runtime.outbox
        if not await deadline.run("draining the outbox", outbox.drain(), abandoned, reserve=CLOSE_SECONDS):
            # Still owed in storage: recovered on the next start.
            abandoned.append(f"outbox: {outbox.pending} commit(s) not carried out (recovered on next start)")
    # Background tasks before the connection: nothing reads their subscriptions once they are cancelled.
    for task in runtime.tasks:
        task.cancel()
    if runtime.tasks:
        _, running = await asyncio.wait(runtime.tasks, timeout=max(deadline.left(CLOSE_SECONDS), 0.1))
        abandoned.extend(f"task {t.get_name()} still running" for t in running)
    # Closing steps may still talk to NATS (the conference releases its timers lease: run after the broker
    # stopped, the release always failed and the next replica waited out the lease's TTL), so they run
    # before the connection closes, once the background tasks that could retake what they release stopped.
    for step in runtime._closing:
        await deadline.run("closing", step(), abandoned, reserve=CLOSE_SECONDS, floor=0.5)
    abandoned.extend(await stop_broker(runtime.broker, within=max(deadline.left(), 0.5)))
    report_shutdown(runtime.name, abandoned, within)


class Deadline:
    """The time a stopping service has left: each step gets what remains (less a `reserve` kept for the
    steps after it), and is abandoned, named, at its end."""

    def __init__(self, within: float) -> None:
        self._end = time.monotonic() + within

    def left(self, reserve: float = 0.0) -> float:
        return self._end - time.monotonic() - reserve

    async def run(
        self,
        what: str,
        step: Awaitable[object],
        abandoned: list[str],
        *,
        reserve: float = 0.0,
        floor: float = 0.1,
    ) -> bool:
        """`step` within the time left; False (and `what` added to `abandoned` if it ran out) otherwise."""
        try:
            async with asyncio.timeout(max(self.left(reserve), floor)):
                await step
        except TimeoutError:
            abandoned.append(f"{what}: past the shutdown deadline")
            return False
        except Exception as exc:
            log.warning(f"{what} failed", error=repr(exc))
            return False
        return True


def report_shutdown(name: str, abandoned: list[str], within: float) -> None:
    """The one line a stopped service writes about its shutdown: what it abandoned at its deadline."""
    if abandoned:
        log.warning(f"{name} service stopped, abandoning work", deadline=within, abandoned=abandoned)
    else:
        log.info(f"{name} service stopped")


def run_service(
    name: str,
    load_settings: Callable[[], S],
    serve: Callable[[S, asyncio.Event], Awaitable[None]],
    *,
    use_uvloop: bool = True,
    metrics_server: bool = True,
) -> None:
    """A service's `main()`: logging, settings, metrics, SIGTERM/SIGINT -> stop, the event loop.

    A setting the service cannot run with (`load_settings` raising ValueError) ends the process with one
    log line naming it and exit status 2, not a traceback. With `metrics_server` (every service but the
    gateway, which serves /metrics on its own HTTP port), `PARLEY_METRICS_PORT` serves the metrics.
    """
    configure_logging(name)
    metrics.describe_service(name)
    try:
        settings = load_settings()
        port = metrics.metrics_port() if metrics_server else None
    except ValueError as exc:
        log.error(f"{name} service cannot start", reason=str(exc))
        raise SystemExit(2) from None

    async def _main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        async with metrics.serve_metrics(port):
            await serve(settings, stop)

    try:
        with contextlib.suppress(KeyboardInterrupt):
            if use_uvloop:
                import uvloop

                uvloop.run(_main())
            else:
                asyncio.run(_main())
    except JetStreamSetupError as exc:
        # A configuration the NATS deployment cannot serve (R3 on one server): say so once, no traceback.
        log.error(f"{name} service cannot start", reason=str(exc))
        raise SystemExit(2) from None
