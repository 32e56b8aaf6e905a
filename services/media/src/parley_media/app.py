"""Bootstrap of a media node: engine, NATS wiring, followers; serve until SIGTERM/SIGINT, then close all."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable

from faststream.nats import NatsBroker
from parley_common.clock import utcnow
from parley_common.log import get_logger, log_context
from parley_common.messaging.broker import make_broker, stop_broker
from parley_common.messaging.streams import ensure_streams
from parley_common.service import run_service

from parley_media.adapters import metrics
from parley_media.adapters.bus import ConferenceEvents, Heartbeats, JetStreamEvents, register
from parley_media.adapters.recordings import ObjectStoreRecordings
from parley_media.engine import MediaEngine
from parley_media.following import FOLLOWED_EVENTS, ConferenceFollower, EngineFollower
from parley_media.handlers import MediaNodeHandlers
from parley_media.holdings import Holdings
from parley_media.recordings import Recordings
from parley_media.settings import Settings

log = get_logger(__name__)

# On shutdown, how long finished recordings may take to reach the object store, and events the stream.
STORE_GRACE_SECONDS = 20.0
EVENT_GRACE_SECONDS = 5.0


class MediaNode:
    """One media node process (also started in-process by tests, which read `engine` and `holdings`)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.node_id = settings.node_id
        # Fixed for the process lifetime: tells the conference service a restarted node from this one.
        self.started_at = utcnow()
        self.engine = MediaEngine(settings.media_config())
        self.holdings = Holdings()
        self._broker: NatsBroker | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._stopped = False

    async def start(self) -> None:
        settings = self.settings
        broker = make_broker(settings.common.nats_url, name=f"parley-media-{self.node_id}")
        self._broker = broker
        await broker.connect()
        nc = broker.connection
        js = nc.jetstream()
        await ensure_streams(js, replicas=settings.common.nats_replicas)
        events = JetStreamEvents(js)
        self.recordings = Recordings(self.engine, await ObjectStoreRecordings.open(js), events, self.node_id)
        self.handlers = MediaNodeHandlers(
            self.engine,
            self.holdings,
            self.recordings,
            node_id=self.node_id,
            capacity=settings.capacity,
            candidate_wait=settings.candidate_wait_seconds,
        )
        self._engine_follower = EngineFollower(self.holdings, self.recordings, events, self.node_id)
        self._remove_listener = self.engine.add_listener(self._engine_follower)
        follower = ConferenceFollower(self.engine, self.holdings, self.recordings)
        # Following conference events starts before requests are served: no stream can miss its teardown.
        self._conference_events = ConferenceEvents(
            js, self.node_id, follower.apply, event_types=FOLLOWED_EVENTS
        )
        await self._conference_events.start()
        register(broker, self.handlers, self.node_id, nc)
        metrics.NODES.add(self.engine, self.node_id)
        await broker.start()
        heartbeats = Heartbeats(
            nc, self.engine, node_id=self.node_id, started_at=self.started_at, capacity=settings.capacity
        )
        self._tasks = [
            asyncio.create_task(self._conference_events.run(), name="conference-events"),
            asyncio.create_task(heartbeats.run(settings.heartbeat_seconds), name="heartbeats"),
        ]
        log.info(
            "media node ready",
            nats=settings.common.nats_url,
            ice_servers=len(settings.ice_servers),
            announced_address=settings.announced_address,
            capacity=settings.capacity,
        )

    async def stop(self) -> None:
        """Stop taking requests, close every stream, store the recordings that finishes, disconnect.

        Never raises: on Ctrl-C the NATS server may be stopping at the same moment, and the streams must be
        closed (and their recordings tried, and logged if lost) all the same.
        """
        if self._stopped or self._broker is None:
            return
        self._stopped = True
        broker = self._broker
        log.info("media node stopping", publishers=self.engine.counters().publishers)
        for subscriber in broker.subscribers:
            await _quietly("stopping a subscriber", subscriber.stop())
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.engine.close_all()
        await self.recordings.drain(STORE_GRACE_SECONDS)
        await self._engine_follower.drain(EVENT_GRACE_SECONDS)
        self._remove_listener()
        metrics.NODES.remove(self.node_id)
        if broker.connection.is_connected:
            await _quietly("deleting the event consumer", self._conference_events.stop())
        # Bounded, naming what it abandoned (a connection that reconnected to another cluster server).
        abandoned = await stop_broker(broker)
        if abandoned:
            log.warning("media node stopped, abandoning work", abandoned=abandoned)
        else:
            log.info("media node stopped")


async def _quietly(what: str, step: Awaitable[object]) -> bool:
    try:
        await step
    except Exception as exc:
        log.warning(f"{what} failed", error=repr(exc))
        return False
    return True


async def serve(settings: Settings, stop: asyncio.Event) -> None:
    node = MediaNode(settings)
    try:
        await node.start()
        await stop.wait()
    finally:
        await node.stop()


async def serve_node(settings: Settings, stop: asyncio.Event) -> None:
    with log_context(node_id=settings.node_id):
        await serve(settings, stop)


def main() -> None:
    # A media node has no storage and its own orderly stop (`MediaNode.stop`): only `main` is shared. It
    # stays on the default asyncio loop it has always run on (aiortc's own tests run on it).
    run_service("media", Settings.from_env, serve_node, use_uvloop=False)
