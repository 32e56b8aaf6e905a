"""Use cases of archives: a recording of a meeting's conference becomes an archive; its upload to the
organization's storage target; the list/get/delete queries and `setStorageTarget`.

Committed with the events they raise (the shared outbox publishes them on PARLEY_MEETING). Deleting an
archive commits its tombstone with the deletion of its bytes as an owed effect (`DeleteObject`), so the
bytes go even if this process dies right after; copies on the storage target stay (the real service's).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from parley_common.clock import new_id, utcnow
from parley_common.contracts.base import Empty
from parley_common.contracts.media import RecordingLocation, RecordingStoredEvent
from parley_common.contracts.meeting import ArchiveRef, Archives, StorageTarget
from parley_common.contracts.rpc import Accepted, Request
from parley_common.errors import Busy, Reply, rejecting
from parley_common.log import get_logger, log_context
from parley_common.outbox import DeleteObject, Owed

from parley_conference import archives
from parley_conference.adapters.archives import ArchiveRepository
from parley_conference.adapters.attendees import AttendeeRepository, MeetingConference
from parley_conference.archives import Archive, ArchiveNotFound, Target
from parley_conference.attendance_handlers import MeetingLookup

log = get_logger(__name__)


class Uploads(Protocol):
    async def upload(self, target: Target, bucket: str, object_name: str, remote_name: str) -> None: ...


class ConferenceMeetings(Protocol):
    """The meeting behind a conference, from the conference itself (None: none, or no such conference)."""

    async def __call__(self, organization_id: str, conference_id: str) -> str | None: ...


class Locations(Protocol):
    async def put(self, organization_id: str, conference_id: str, location: RecordingLocation) -> None: ...

    async def remove(self, organization_id: str, conference_id: str, recording_id: str) -> None: ...


class ArchiveHandlers:
    def __init__(
        self,
        archives_: ArchiveRepository,
        links: AttendeeRepository,
        meetings: MeetingLookup,
        uploads: Uploads,
        locations: Locations,
        committed: Callable[[Owed], None],
        *,
        meeting_of: ConferenceMeetings,
        azure_container: str,
        max_attempts: int,
        retry_base_seconds: float,
    ) -> None:
        self._archives = archives_
        self._links = links
        self._meetings = meetings
        self._uploads = uploads
        self._locations = locations
        self._meeting_of = meeting_of
        self._committed = committed
        self._azure_container = azure_container
        self.max_attempts = max_attempts
        self._retry_base = retry_base_seconds

    async def _commit(self, archive: Archive, events: list[Any], effects: list[Any] = []) -> None:  # noqa: B006
        owed = await self._archives.commit(archive, events, effects)
        if owed is not None:
            self._committed(owed)

    # ------------------------------------------------------------ from recordings

    async def on_recording_stored(self, event: RecordingStoredEvent) -> None:
        """Idempotent: a recording already archived (redelivered report) is left as it is."""
        stream = event.stream
        link = await self._links.conference(stream.conference_id)
        if link is None:
            # The conference's creation may not be consumed by attendance yet: ask the conference itself.
            meeting_id = await self._meeting_of(stream.organization_id, stream.conference_id)
            if meeting_id is None:
                return  # not a meeting's conference
            link = MeetingConference(stream.organization_id, meeting_id, stream.conference_id)
            await self._links.remember_conference(link)
        if link.organization_id != stream.organization_id:
            return
        if await self._archives.get(event.recording_id) is not None:
            return
        # The download route reads the recording's location, which the media-events consumer also
        # stores: whichever consumer comes first, an archive is never listed before its bytes can be fetched.
        await self._locations.put(stream.organization_id, stream.conference_id, event.location())
        info = await self._meetings.meeting(link.organization_id, link.meeting_id)
        target = await self._archives.target(link.organization_id)
        archive, created = archives.decide_created(
            event, link.meeting_id, info.name if info else None, target, new_id(), utcnow()
        )
        try:
            await self._commit(archive, [created])
        except Busy:
            return  # archived concurrently by another replica
        log.info("archive created", archive_id=archive.view.archive_id, upload=target is not None)

    # ------------------------------------------------------------ uploads

    async def upload_pending(self, archive_id: str) -> float | None:
        """Try the archive's pending upload once; the delay before the next try, None when settled."""
        archive = await self._archives.get(archive_id)
        if archive is None or archive.deleted:
            return None
        upload = archives.pending_upload(archive)
        if upload is None:
            return None
        target = await self._archives.target(archive.organization_id)
        error: str | None = None
        if target is None or target.name != upload.target or target.location != upload.location:
            error = "the storage target changed before the upload"
        else:
            with log_context(archive_id=archive_id, target=target.name):
                try:
                    await self._uploads.upload(
                        target, archive.bucket, archive.object_name, upload.object_name
                    )
                except Exception as exc:  # any failure of the remote store: recorded, retried
                    error = f"{type(exc).__name__}: {exc}"
                    log.warning("archive upload failed", attempt=upload.attempts + 1, error=error)
        changed, settled = archives.decide_upload_result(
            archive, error, self.max_attempts, new_id(), utcnow()
        )
        await self._commit(changed, [] if settled is None else [settled])
        after = archives.pending_upload(changed)
        return None if after is None else archives.retry_delay(after.attempts, self._retry_base)

    # ------------------------------------------------------------ bus operations

    async def _visible(self, organization_id: str, archive_id: str) -> Archive:
        archive = await self._archives.get(archive_id)
        if archive is None or archive.deleted or archive.organization_id != organization_id:
            raise ArchiveNotFound()
        return archive

    @rejecting
    async def list_archives(self, request: Request[Empty]) -> Reply:
        found = await self._archives.of_organization(request.caller.organization_id)
        return Accepted(value=Archives(items=tuple(a.view for a in found)))

    @rejecting
    async def get_archive(self, request: Request[ArchiveRef]) -> Reply:
        archive = await self._visible(request.caller.organization_id, request.body.archive_id)
        return Accepted(value=archive.view)

    @rejecting
    async def delete_archive(self, request: Request[ArchiveRef]) -> Reply:
        archive = await self._visible(request.caller.organization_id, request.body.archive_id)
        gone, event = archives.decide_delete(archive, new_id(), utcnow())
        await self._commit(gone, [event], [DeleteObject(object_name=archive.object_name)])
        view = archive.view
        await self._locations.remove(archive.organization_id, view.conference_id, view.recording_id)
        return Accepted(value=Empty())

    @rejecting
    async def set_storage_target(self, request: Request[StorageTarget]) -> Reply:
        target = archives.decide_target(request.caller.organization_id, request.body, self._azure_container)
        await self._archives.set_target(target)
        return Accepted(value=Empty())
