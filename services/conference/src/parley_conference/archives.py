"""Archives of meetings, pure: a recording of a meeting's conference becomes an archive; its copies on the
organization's storage target, and how their uploads go.

The local copy (Parley's object store, bucket `parley_recordings`) is the archive: an upload adds a copy,
never replaces it, so a failed upload loses nothing. An upload is tried up to `max_attempts` times with a
growing delay (`retry_delay`), then stays `failed` with its attempts and last error for `metaData`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

import msgspec
from parley_common.contracts.media import RECORDING_PATH, RecordingStoredEvent
from parley_common.contracts.meeting import (
    ArchiveCreatedEvent,
    ArchiveDeletedEvent,
    ArchiveUpload,
    ArchiveUploadedEvent,
    ArchiveUploadFailedEvent,
    ArchiveView,
    StorageTarget,
)
from parley_common.errors import InvalidCommand, NotFound

TargetName = Literal["AWSS3", "AZURE"]
# The real service's messages (`PUT /archives/storage-target`).
UNSUPPORTED_STORAGE = "Unsupported storage type"
S3_BUCKET_REQUIRED = "S3 bucket name is required"
AZURE_ACCOUNT_REQUIRED = "Azure account name is required"
ARCHIVE_NOT_FOUND = "Archive Not Found"
MAX_ERROR_LENGTH = 500


class ArchiveNotFound(NotFound):
    def __init__(self) -> None:
        super().__init__(ARCHIVE_NOT_FOUND)


class Target(msgspec.Struct, frozen=True, kw_only=True):
    """An organization's storage target, as validated (credentials are the deployment's, not here)."""

    organization_id: str
    name: TargetName
    # S3 bucket, or Azure container.
    location: str
    account_name: str | None = None
    endpoint: str | None = None
    region: str | None = None


class Archive(msgspec.Struct, frozen=True, kw_only=True):
    organization_id: str
    view: ArchiveView
    # Where the bytes are in Parley's object store (internal: never shown).
    bucket: str
    object_name: str
    version: int = 0
    # Deleted archives stay as a tombstone until the outbox published their deletion.
    deleted: bool = False


def decide_target(organization_id: str, body: StorageTarget, azure_container: str) -> Target:
    """`setStorageTarget`'s checks in the real service's order; exact names only (`AWSS3`, `AZURE`)."""
    if body.name == "AWSS3":
        if not body.bucket:
            raise InvalidCommand(S3_BUCKET_REQUIRED)
        return Target(
            organization_id=organization_id,
            name="AWSS3",
            location=body.bucket,
            endpoint=body.endpoint or None,
            region=body.region or None,
        )
    if body.name == "AZURE":
        if not body.account_name:
            raise InvalidCommand(AZURE_ACCOUNT_REQUIRED)
        return Target(
            organization_id=organization_id,
            name="AZURE",
            location=body.container or azure_container,
            account_name=body.account_name,
            endpoint=body.endpoint or None,
        )
    raise InvalidCommand(UNSUPPORTED_STORAGE)


def remote_name(view: ArchiveView) -> str:
    return f"{view.meeting_id}/{view.archive_id}.webm"


def decide_created(
    recording: RecordingStoredEvent,
    meeting_id: str,
    meeting_name: str | None,
    target: Target | None,
    event_id: str,
    now: datetime,
) -> tuple[Archive, ArchiveCreatedEvent]:
    """A meeting's recording becomes an archive; its upload is pending when the organization has a target."""
    stream = recording.stream
    view = ArchiveView(
        archive_id=recording.recording_id,
        meeting_id=meeting_id,
        conference_id=stream.conference_id,
        name=meeting_name,
        created_at=now,
        recording_id=recording.recording_id,
        stream_id=stream.stream_id,
        mime_type=recording.mime_type,
        bytes=recording.bytes,
        duration_seconds=recording.duration_seconds,
        url=RECORDING_PATH.format(conference_id=stream.conference_id, recording_id=recording.recording_id),
    )
    if target is not None:
        pending = ArchiveUpload(
            target=target.name, location=target.location, object_name=remote_name(view), state="pending"
        )
        view = msgspec.structs.replace(view, uploads=(pending,))
    archive = Archive(
        organization_id=stream.organization_id,
        view=view,
        bucket=recording.bucket,
        object_name=recording.object_name,
        version=1,
    )
    return archive, ArchiveCreatedEvent(
        id=event_id,
        organization_id=archive.organization_id,
        meeting_id=meeting_id,
        conference_id=stream.conference_id,
        timestamp=now,
        archive=view,
    )


def pending_upload(archive: Archive) -> ArchiveUpload | None:
    return next((u for u in archive.view.uploads if u.state == "pending"), None)


UploadEvent = ArchiveUploadedEvent | ArchiveUploadFailedEvent


def decide_upload_result(
    archive: Archive,
    error: str | None,
    max_attempts: int,
    event_id: str,
    now: datetime,
) -> tuple[Archive, UploadEvent | None]:
    """One attempt of the pending upload ended (`error` None: uploaded). An event when it is settled."""
    upload = pending_upload(archive)
    if upload is None:
        raise ValueError("no pending upload")
    attempts = upload.attempts + 1
    if error is None:
        done = msgspec.structs.replace(
            upload, state="uploaded", attempts=attempts, last_error=None, uploaded_at=now
        )
    else:
        done = msgspec.structs.replace(
            upload,
            state="failed" if attempts >= max_attempts else "pending",
            attempts=attempts,
            last_error=error[:MAX_ERROR_LENGTH],
        )
    uploads = tuple(done if u is upload else u for u in archive.view.uploads)
    changed = msgspec.structs.replace(
        archive, view=msgspec.structs.replace(archive.view, uploads=uploads), version=archive.version + 1
    )
    if done.state == "pending":
        return changed, None
    common: dict[str, Any] = {
        "id": event_id,
        "organization_id": archive.organization_id,
        "meeting_id": archive.view.meeting_id,
        "conference_id": archive.view.conference_id,
        "timestamp": now,
        "archive_id": archive.view.archive_id,
        "upload": done,
    }
    event: UploadEvent = (
        ArchiveUploadedEvent(**common) if done.state == "uploaded" else ArchiveUploadFailedEvent(**common)
    )
    return changed, event


def retry_delay(attempts: int, base: float) -> float:
    """Exponential backoff between attempts, capped at a minute."""
    return float(min(60.0, base * 2 ** max(0, attempts - 1)))


def decide_delete(archive: Archive, event_id: str, now: datetime) -> tuple[Archive, ArchiveDeletedEvent]:
    if archive.deleted:
        raise ArchiveNotFound()
    gone = msgspec.structs.replace(archive, deleted=True, version=archive.version + 1)
    return gone, ArchiveDeletedEvent(
        id=event_id,
        organization_id=archive.organization_id,
        meeting_id=archive.view.meeting_id,
        conference_id=archive.view.conference_id,
        timestamp=now,
        archive_id=archive.view.archive_id,
    )
