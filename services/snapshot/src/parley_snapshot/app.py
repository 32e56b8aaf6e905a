"""Bootstrap: wire storage, NATS, the object store and the use cases, then serve until SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from typing import Any

from parley_common.log import configure_logging, get_logger
from parley_common.messaging.broker import make_broker
from parley_common.messaging.push import NatsEndpointMessenger
from parley_common.messaging.rpc import RpcClient
from parley_common.messaging.streams import ensure_streams
from parley_common.sealing import Sealer
from parley_common.storage import open_store

from parley_snapshot.adapters.bus import register
from parley_snapshot.adapters.conferences import ConferenceDirectory
from parley_snapshot.adapters.images import ImageStore
from parley_snapshot.adapters.outbox import Outbox
from parley_snapshot.adapters.repository import Records, open_records
from parley_snapshot.handlers import SnapshotHandlers, UnitOfWork
from parley_snapshot.settings import Settings
from parley_snapshot.signing import UrlSigner

log = get_logger(__name__)
# How often effects left pending (NATS away when a command committed) are tried again.
RECOVERY_INTERVAL_SECONDS = 5.0


async def serve(settings: Settings, stop: asyncio.Event) -> None:
    common = settings.common
    store = await open_store(mongo_url=common.mongo_url, sqlite_path=common.sqlite_path("snapshot"))
    snapshots, camera_requests = await open_records(store)
    broker = make_broker(common.nats_url, name="parley-snapshot")
    await broker.connect()
    nc = broker.connection
    js = nc.jetstream()
    await ensure_streams(js)
    images = await ImageStore.open(js)

    if settings.development_key:
        log.warning("PARLEY_SNAPSHOT_SIGNING_KEY is not set: signing URLs with the development key")
    signer = UrlSigner(settings.signing_key.encode())
    outbox = Outbox(js, NatsEndpointMessenger(nc, js, Sealer.from_env()), images)
    records: list[Records[Any]] = [snapshots, camera_requests]
    await outbox.recover(records)
    handlers = SnapshotHandlers(
        UnitOfWork(snapshots, camera_requests, outbox),
        images,
        ConferenceDirectory(RpcClient(nc, timeout=common.request_timeout)),
        signer,
        max_bytes=settings.max_bytes,
        url_ttl_seconds=settings.url_ttl_seconds,
        capture_timeout_seconds=settings.capture_timeout_seconds,
    )
    register(broker, handlers, store, js)
    await broker.start()
    recovery = asyncio.create_task(outbox.recover_forever(records, RECOVERY_INTERVAL_SECONDS), name="outbox")
    log.info(
        "snapshot service ready", nats=common.nats_url, storage="mongodb" if common.mongo_url else "sqlite"
    )
    try:
        await stop.wait()
    finally:
        log.info("snapshot service stopping")
        for subscriber in broker.subscribers:
            await subscriber.stop()
        recovery.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await recovery
        await broker.stop()
        await store.close()


def main() -> None:
    configure_logging("snapshot")
    try:
        settings = Settings.from_env()
    except ValueError as exc:
        # A configuration error: one line saying what to set, and a failed start (no traceback).
        log.error("snapshot service cannot start", reason=str(exc))
        raise SystemExit(2) from None

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
