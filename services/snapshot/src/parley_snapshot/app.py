"""Wiring: storage, NATS, the object store and the use cases on the shared bootstrap (`service`)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from parley_common.log import get_logger
from parley_common.messaging.push import NatsEndpointMessenger
from parley_common.messaging.rpc import RpcClient
from parley_common.sealing import Sealer
from parley_common.service import Runtime, run_service, serve

from parley_snapshot.adapters.bus import register
from parley_snapshot.adapters.conferences import ConferenceDirectory
from parley_snapshot.adapters.images import ImageStore
from parley_snapshot.adapters.outbox import snapshot_outbox
from parley_snapshot.adapters.repository import open_records
from parley_snapshot.handlers import SnapshotHandlers, UnitOfWork
from parley_snapshot.settings import Settings
from parley_snapshot.signing import UrlSigner

log = get_logger(__name__)
# How often effects left pending (NATS away when a command committed) are tried again.
RECOVERY_INTERVAL_SECONDS = 5.0


def wiring(settings: Settings) -> Callable[[Runtime], Awaitable[None]]:
    """The service's own adapters and use cases, on what the bootstrap opened."""

    async def wire(runtime: Runtime) -> None:
        snapshots, camera_requests = await open_records(runtime.store)
        images = await ImageStore.open(runtime.js)
        if settings.development_key:
            log.warning("PARLEY_SNAPSHOT_SIGNING_KEY is not set: signing URLs with the development key")
        outbox = runtime.use_outbox(
            snapshot_outbox(
                runtime.js,
                NatsEndpointMessenger(runtime.nc, runtime.js, Sealer.from_env()),
                images,
                [snapshots, camera_requests],
                recovery_interval=RECOVERY_INTERVAL_SECONDS,
            )
        )
        handlers = SnapshotHandlers(
            UnitOfWork(snapshots, camera_requests, outbox),
            images,
            ConferenceDirectory(RpcClient(runtime.nc, timeout=runtime.common.request_timeout)),
            UrlSigner(settings.signing_key.encode()),
            max_bytes=settings.max_bytes,
            url_ttl_seconds=settings.url_ttl_seconds,
            capture_timeout_seconds=settings.capture_timeout_seconds,
        )
        register(runtime.broker, handlers, runtime.store, runtime.js)

    return wire


async def serve_snapshot(settings: Settings, stop: asyncio.Event) -> None:
    await serve("snapshot", settings.common, wiring(settings), stop)


def main() -> None:
    run_service("snapshot", Settings.from_env, serve_snapshot)
