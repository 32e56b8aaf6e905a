"""Bootstrap: wire storage, NATS and the use cases, then serve until SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time

from parley_common.log import configure_logging, get_logger
from parley_common.messaging.broker import make_broker
from parley_common.messaging.push import NatsEndpointMessenger
from parley_common.messaging.rpc import Responders, RpcClient
from parley_common.messaging.streams import ensure_streams
from parley_common.sealing import Sealer
from parley_common.storage import open_store

from parley_conference.adapters.bus import PresenceAnnouncer, register
from parley_conference.adapters.lease import Lease
from parley_conference.adapters.media_nodes import (
    Announcements,
    NatsMediaNodeClient,
    consume_media_events,
    follow_heartbeats,
)
from parley_conference.adapters.outbox import Outbox
from parley_conference.adapters.placements import Placements
from parley_conference.adapters.recordings import RecordingLocations
from parley_conference.adapters.repository import ConferenceRepository
from parley_conference.handlers import ConferenceHandlers, UnitOfWork
from parley_conference.media import MediaHandlers
from parley_conference.memberships import Memberships
from parley_conference.placement import MediaNodes
from parley_conference.presence import Presence
from parley_conference.settings import Settings

log = get_logger(__name__)


async def run_timers(
    handlers: ConferenceHandlers, media: MediaHandlers, lease: Lease, interval: float
) -> None:
    """Keep-alive and empty timeouts, and lost media nodes, run by whichever replica holds the lease."""
    while True:
        if await lease.refresh():
            for sweep in (handlers.sweep, media.sweep_nodes):
                try:
                    await sweep()
                except Exception:
                    log.exception("sweep failed", sweep=sweep.__qualname__)
        await asyncio.sleep(interval)


async def serve(settings: Settings, stop: asyncio.Event) -> None:
    common = settings.common
    store = await open_store(mongo_url=common.mongo_url, sqlite_path=common.sqlite_path("conference"))
    repository = await ConferenceRepository.open(store)
    broker = make_broker(common.nats_url, name="parley-conference", no_echo=True)
    await broker.connect()
    nc = broker.connection
    js = nc.jetstream()
    await ensure_streams(js)

    outbox = Outbox(repository, js)
    memberships = Memberships()
    await outbox.recover()
    presence = Presence(
        keepalive_seconds=settings.keepalive_seconds, grace_seconds=settings.keepalive_grace_seconds
    )
    handlers = ConferenceHandlers(
        UnitOfWork(repository, [outbox, memberships]),
        presence,
        NatsEndpointMessenger(nc, js, Sealer.from_env()),
        memberships,
        empty_timeout_seconds=settings.empty_timeout_seconds,
        on_seen=PresenceAnnouncer(nc),
    )
    nodes = MediaNodes(timeout_seconds=settings.media_node_timeout_seconds, clock=time.monotonic)
    announcements = Announcements()
    media = MediaHandlers(
        handlers,
        nodes,
        await Placements.open(store),
        await RecordingLocations.open(store),
        NatsMediaNodeClient(
            RpcClient(nc, timeout=settings.media_request_timeout_seconds),
            timeout=settings.media_request_timeout_seconds,
        ),
        announcements=announcements,
        node_wait_seconds=settings.media_node_wait_seconds,
    )
    responders = Responders(nc)
    await register(broker, responders, handlers, media, presence, memberships, store, nodes)
    follow_heartbeats(broker, nodes, announcements)
    lease = await Lease.open(js, "conference-timers")
    await broker.start()
    # Subscribed first, loaded second: a join published in between is applied either way (idempotently).
    for organization_id, conference_id in await repository.live_conference_ids():
        live = await repository.get(organization_id, conference_id)
        if live is not None and not live.ended:
            memberships.load(live)
    tasks = [
        asyncio.create_task(outbox.run(), name="outbox"),
        asyncio.create_task(
            run_timers(handlers, media, lease, settings.sweep_interval_seconds), name="timers"
        ),
        asyncio.create_task(consume_media_events(js, media), name="media-events"),
    ]
    log.info(
        "conference service ready", nats=common.nats_url, storage="mongodb" if common.mongo_url else "sqlite"
    )
    try:
        await stop.wait()
    finally:
        log.info("conference service stopping")
        # Stop taking requests, finish publishing what was committed, then close the connection.
        await responders.stop()
        for subscriber in broker.subscribers:
            await subscriber.stop()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(outbox.drain(), timeout=10)
        await broker.stop()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        with contextlib.suppress(Exception):
            await lease.release()
        await store.close()


def main() -> None:
    configure_logging("conference")
    settings = Settings.from_env()

    async def _main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await serve(settings, stop)

    try:
        import uvloop

        uvloop.run(_main())
    except KeyboardInterrupt:
        pass
