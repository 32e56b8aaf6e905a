"""NATS side of the snapshot service: subjects to use cases, and its health."""

from __future__ import annotations

from typing import Any

import nats.errors
from faststream.nats import NatsBroker
from nats.js import JetStreamContext
from parley_common.contracts import snapshot as api
from parley_common.contracts.health import Dependency, HealthQuery, ServiceHealth
from parley_common.contracts.rpc import Accepted, Rejected, Request
from parley_common.messaging import subjects
from parley_common.messaging.rpc import serve
from parley_common.storage import DocumentStore, StorageError

from parley_snapshot.handlers import SnapshotHandlers

QUEUE = "snapshot"


def register(
    broker: NatsBroker, handlers: SnapshotHandlers, store: DocumentStore, js: JetStreamContext
) -> None:
    commands: dict[str, tuple[Any, Any]] = {
        "request": (Request[api.SnapshotRequestWebCommand], handlers.request),
        "acquire": (Request[api.SnapshotAcquireForm], handlers.acquire),
        "upload": (Request[api.SnapshotUploadForm], handlers.upload),
        "approve": (Request[api.SnapshotApproveWebCommand], handlers.approve),
        "discard": (Request[api.SnapshotDiscardWebCommand], handlers.discard),
        "cameraRequest": (Request[api.SnapshotCameraRequestWebCommand], handlers.camera_request),
        "cameraRequestRespond": (
            Request[api.SnapshotCameraRequestRespondWebCommand],
            handlers.camera_request_respond,
        ),
        "signedUrl": (Request[api.CreateSnapshotSignedURLWebCommand], handlers.signed_url),
    }
    queries: dict[str, tuple[Any, Any]] = {
        "get": (Request[api.GetSnapshotQuery], handlers.get),
        "list": (Request[api.ListSnapshotsQuery], handlers.list),
        "signed": (Request[api.SignedSnapshotQuery], handlers.signed),
    }
    for op, (request_type, handler) in commands.items():
        serve(broker, subjects.snapshot_command(op), request_type, handler, queue=QUEUE)
    for op, (request_type, handler) in queries.items():
        serve(broker, subjects.snapshot_query(op), request_type, handler, queue=QUEUE)

    async def health(_: HealthQuery) -> Accepted[ServiceHealth] | Rejected:
        try:
            await store.ping()
            storage_ok = True
        except StorageError:
            storage_ok = False
        try:
            await js.stream_info(f"OBJ_{subjects.SNAPSHOTS_BUCKET}")
            objects_ok = True
        except (nats.errors.Error, TimeoutError):
            objects_ok = False
        dependencies = [
            Dependency(name="nats", is_healthy=True),
            Dependency(name="storage", is_healthy=storage_ok),
            Dependency(name="objects", is_healthy=objects_ok),
        ]
        healthy = storage_ok and objects_ok
        return Accepted(value=ServiceHealth(service=QUEUE, is_healthy=healthy, dependencies=dependencies))

    serve(broker, subjects.health(QUEUE), HealthQuery, health, queue=QUEUE)
