"""An archive's bytes can be fetched as soon as it is listed, whichever consumer of `RecordingStoredEvent`
runs first (the archives one, or the media-events one that also stores the download location). Real SQLite
store."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from parley_common.clock import new_id
from parley_common.contracts.media import MediaStream, RecordingStoredEvent
from parley_common.messaging import subjects
from parley_common.storage import SqliteStore
from parley_conference.adapters.archives import ArchiveRepository
from parley_conference.adapters.attendees import AttendeeRepository
from parley_conference.adapters.meetings import open_commit_log
from parley_conference.adapters.recordings import RecordingLocations
from parley_conference.archive_handlers import ArchiveHandlers
from parley_conference.attendance_handlers import KnownMeetings


class NoUploads:
    async def upload(self, *_: object) -> None:
        raise AssertionError("no storage target is set: nothing is uploaded")


async def test_the_archives_consumer_stores_the_download_location_itself(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "conference.db")
    await store.start()
    log = await open_commit_log(store)
    attendees = await AttendeeRepository.open(store, log)
    locations = await RecordingLocations.open(store)
    archives = await ArchiveRepository.open(store, log)

    async def meeting_of(organization_id: str, conference_id: str) -> str | None:
        return "meeting-1"

    handlers = ArchiveHandlers(
        archives,
        attendees,
        KnownMeetings(attendees),
        NoUploads(),
        locations,
        lambda owed: None,
        meeting_of=meeting_of,
        azure_container="archives",
        max_attempts=1,
        retry_base_seconds=0.1,
    )
    event = RecordingStoredEvent(
        id=new_id(),
        node_id="node-1",
        stream=MediaStream(organization_id="org-a", conference_id="conf-1", stream_id="s-1"),
        recording_id="rec-1",
        bucket=subjects.RECORDINGS_BUCKET,
        object_name="org-a/conf-1/rec-1.webm",
        mime_type="video/webm",
        started_at=datetime.now(UTC),
        duration_seconds=1.0,
        bytes=3,
        timestamp=datetime.now(UTC),
    )
    # Only the archives consumer has run (the media-events one has not yet).
    await handlers.on_recording_stored(event)

    assert await archives.get("rec-1") is not None
    assert await locations.get("org-a", "conf-1", "rec-1") == event.location()
    await store.close()
