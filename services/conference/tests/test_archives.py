"""Archives of a meeting's conference: created from a stored recording, uploaded byte-identical to real local
S3 (moto) and Azure (Azurite) servers, a failing target shown failed with its attempts, list/get/delete and
the storage target's messages, another organization's archive unknown. Real nats-server and SQLite."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from nats.js import JetStreamContext
from nats.js.errors import BucketNotFoundError, ObjectNotFoundError
from nats.js.object_store import ObjectStore
from parley_common.clock import new_id
from parley_common.contracts.base import Empty
from parley_common.contracts.conference import ConferenceSummary, CreateConferenceWebCommand
from parley_common.contracts.media import MediaStream, RecordingLocation, RecordingQuery, RecordingStoredEvent
from parley_common.contracts.meeting import ArchiveRef, Archives, ArchiveView, StorageTarget
from parley_common.contracts.rpc import Rejected
from parley_common.messaging import subjects
from parley_common.messaging.events import publish_event
from parley_common.processes import NatsServer, azure_request
from parley_common.storage import SqliteStore

from .conftest import Service, caller, eventually, not_rejected, running_service, s3_client

pytestmark = pytest.mark.timeout(90)


async def recordings(js: JetStreamContext) -> ObjectStore:
    """The recordings bucket, as the media service creates it."""
    try:
        return await js.object_store(subjects.RECORDINGS_BUCKET)
    except BucketNotFoundError:
        return await js.create_object_store(subjects.RECORDINGS_BUCKET)


async def record(service: Service, organization_id: str, conference_id: str, data: bytes) -> str:
    """What a media node does when a recording is complete: the bytes in the object store, then the report."""
    js = service.nc.jetstream()
    recording_id = new_id()
    object_name = f"{organization_id}/{conference_id}/{recording_id}.webm"
    store = await recordings(js)
    await store.put(object_name, data)
    event = RecordingStoredEvent(
        id=new_id(),
        node_id="node-1",
        stream=MediaStream(organization_id=organization_id, conference_id=conference_id, stream_id="s-1"),
        recording_id=recording_id,
        bucket=subjects.RECORDINGS_BUCKET,
        object_name=object_name,
        mime_type="video/webm",
        started_at=datetime.now(UTC),
        duration_seconds=1.5,
        bytes=len(data),
        timestamp=datetime.now(UTC),
    )
    await publish_event(js, subjects.media_event("RecordingStoredEvent"), event, msg_id=event.id)
    return recording_id


async def get_archive(service: Service, archive_id: str, organization_id: str = "org-a") -> Any:
    return await service.ask(
        subjects.meeting_query("getArchive"),
        caller(organization_id),
        ArchiveRef(archive_id=archive_id),
        ArchiveView,
    )


async def set_target(service: Service, target: StorageTarget, organization_id: str = "org-a") -> Any:
    return await service.ask(
        subjects.meeting_command("setStorageTarget"), caller(organization_id), target, Empty
    )


async def settled(service: Service, archive_id: str) -> ArchiveView:
    async def upload_settled() -> ArchiveView | None:
        reply = await get_archive(service, archive_id)
        if isinstance(reply, Rejected):
            return None
        view: ArchiveView = reply.value
        return view if view.uploads and view.uploads[0].state != "pending" else None

    found: ArchiveView = await eventually(upload_settled, timeout=40)
    return found


async def test_an_archive_is_uploaded_byte_identical_to_s3(service: Service, moto_s3: str) -> None:
    s3 = s3_client(moto_s3)
    s3.create_bucket(Bucket="meeting-archives")
    not_rejected(
        await set_target(service, StorageTarget(name="AWSS3", bucket="meeting-archives", endpoint=moto_s3))
    )
    meet_s3, conference_id = await service.create_meeting("org-a")
    data = os.urandom(300_000)

    archive_id = await record(service, "org-a", conference_id, data)

    view = await settled(service, archive_id)
    upload = view.uploads[0]
    assert (upload.state, upload.target, upload.location, upload.attempts) == (
        "uploaded",
        "AWSS3",
        "meeting-archives",
        1,
    )
    assert view.url == f"/rtc-api/conferences/{conference_id}/recordings/{archive_id}"
    assert (view.meeting_id, view.conference_id, view.bytes) == (meet_s3, conference_id, len(data))
    copy = s3.get_object(Bucket="meeting-archives", Key=upload.object_name)["Body"].read()
    assert copy == data


async def test_an_archive_is_uploaded_byte_identical_to_azure(service: Service, azurite: str) -> None:
    azure_request("PUT", azurite, "archives", {"restype": "container"})
    target = StorageTarget(name="AZURE", account_name="devstoreaccount1", endpoint=azurite)
    not_rejected(await set_target(service, target))
    _, conference_id = await service.create_meeting("org-a")
    data = os.urandom(200_000)

    archive_id = await record(service, "org-a", conference_id, data)

    view = await settled(service, archive_id)
    upload = view.uploads[0]
    assert (upload.state, upload.target, upload.location) == ("uploaded", "AZURE", "archives")
    assert azure_request("GET", azurite, f"archives/{upload.object_name}", {}) == data


async def test_a_failing_target_shows_failed_with_its_attempts(service: Service) -> None:
    # Nothing listens there: every attempt fails; the local copy stays.
    dead = "http://127.0.0.1:9"
    not_rejected(await set_target(service, StorageTarget(name="AWSS3", bucket="nowhere", endpoint=dead)))
    _, conference_id = await service.create_meeting("org-a")

    archive_id = await record(service, "org-a", conference_id, b"local bytes")

    view = await settled(service, archive_id)
    upload = view.uploads[0]
    assert (upload.state, upload.attempts) == ("failed", service.settings.archives.upload_attempts)
    assert upload.last_error
    store = await recordings(service.nc.jetstream())
    assert (await store.get(f"org-a/{conference_id}/{archive_id}.webm")).data == b"local bytes"


async def test_list_get_delete_and_another_organization(service: Service) -> None:
    meet_list, conference_id = await service.create_meeting("org-a", "Weekly review")
    archive_id = await record(service, "org-a", conference_id, b"some recording")

    async def listed() -> Archives | None:
        reply = await service.ask(subjects.meeting_query("listArchives"), caller(), Empty(), Archives)
        archives: Archives = not_rejected(reply)
        return archives if any(a.archive_id == archive_id for a in archives.items) else None

    found = await eventually(listed)
    archive = next(a for a in found.items if a.archive_id == archive_id)
    assert (archive.name, archive.meeting_id, archive.uploads) == ("Weekly review", meet_list, ())
    other = await get_archive(service, archive_id, "org-b")
    assert isinstance(other, Rejected) and (other.status, other.message) == (404, "Archive Not Found")
    others = not_rejected(
        await service.ask(subjects.meeting_query("listArchives"), caller("org-b"), Empty(), Archives)
    )
    assert others.items == ()
    refused = await service.ask(
        subjects.meeting_command("deleteArchive"), caller("org-b"), ArchiveRef(archive_id=archive_id), Empty
    )
    assert isinstance(refused, Rejected) and refused.status == 404

    not_rejected(
        await service.ask(
            subjects.meeting_command("deleteArchive"), caller(), ArchiveRef(archive_id=archive_id), Empty
        )
    )

    gone = await get_archive(service, archive_id)
    assert isinstance(gone, Rejected) and (gone.status, gone.message) == (404, "Archive Not Found")
    # Its location (the recording download) and its bytes go too.
    location = await service.ask(
        subjects.conference_query("recording"),
        caller(),
        RecordingQuery(conference_id=conference_id, recording_id=archive_id),
        RecordingLocation,
    )
    assert isinstance(location, Rejected) and location.status == 404
    store = await recordings(service.nc.jetstream())

    async def bytes_gone() -> bool:
        try:
            await store.get(f"org-a/{conference_id}/{archive_id}.webm")
        except ObjectNotFoundError:
            return True
        return False

    assert await eventually(bytes_gone)
    again = await service.ask(
        subjects.meeting_command("deleteArchive"), caller(), ArchiveRef(archive_id=archive_id), Empty
    )
    assert isinstance(again, Rejected) and again.status == 404


@pytest.mark.parametrize(
    ("target", "message"),
    [
        (StorageTarget(name="GCS", bucket="b"), "Unsupported storage type"),
        (StorageTarget(name="awss3", bucket="b"), "Unsupported storage type"),
        (StorageTarget(bucket="b"), "Unsupported storage type"),
        (StorageTarget(name="AWSS3"), "S3 bucket name is required"),
        (StorageTarget(name="AZURE", container="c"), "Azure account name is required"),
    ],
)
async def test_storage_target_messages(service: Service, target: StorageTarget, message: str) -> None:
    reply = await set_target(service, target)
    assert isinstance(reply, Rejected) and (reply.status, reply.message) == (400, message)


async def test_a_recording_of_a_conference_without_a_meeting_is_no_archive(service: Service) -> None:
    plain = not_rejected(
        await service.ask(
            subjects.conference_command("create"),
            caller(),
            CreateConferenceWebCommand(),
            ConferenceSummary,
        )
    )
    _, meeting_conference = await service.create_meeting("org-a")
    plain_id = await record(service, "org-a", plain.id, b"not a meeting")
    after = await record(service, "org-a", meeting_conference, b"a meeting")
    # Consumed in order: once the later one is archived, the earlier one was seen and skipped.
    await eventually(lambda: _found(service, after))
    reply = await get_archive(service, plain_id)
    assert isinstance(reply, Rejected) and reply.status == 404


async def _found(service: Service, archive_id: str) -> bool:
    return not isinstance(await get_archive(service, archive_id), Rejected)


async def test_a_pending_upload_resumes_after_a_restart(
    nats_server: NatsServer, tmp_path: Path, moto_s3: str
) -> None:
    s3 = s3_client(moto_s3)
    target = StorageTarget(name="AWSS3", bucket="created-later", endpoint=moto_s3)
    data = os.urandom(50_000)
    # Slow retries: the first attempt fails (no such bucket yet) and the next one is due after the restart.
    async with running_service(nats_server.url, tmp_path, retry_base_seconds=3.0) as first:
        not_rejected(await set_target(first, target))
        _, conference_id = await first.create_meeting("org-a")
        archive_id = await record(first, "org-a", conference_id, data)

        async def first_attempt_failed() -> ArchiveView | None:
            reply = await get_archive(first, archive_id)
            if isinstance(reply, Rejected) or not reply.value.uploads:
                return None
            return reply.value if reply.value.uploads[0].attempts == 1 else None

        failed_once = await eventually(first_attempt_failed)
        assert failed_once.uploads[0].state == "pending" and failed_once.uploads[0].last_error
    s3.create_bucket(Bucket="created-later")

    async with running_service(nats_server.url, tmp_path, retry_base_seconds=3.0) as second:
        view = await settled(second, archive_id)

    assert (view.uploads[0].state, view.uploads[0].attempts) == ("uploaded", 2)
    assert s3.get_object(Bucket="created-later", Key=view.uploads[0].object_name)["Body"].read() == data


async def test_a_recording_consumed_before_the_meetings_creation_is_still_an_archive(
    service: Service,
) -> None:
    # The archives consumer may see a recording before attendance consumed the conference's creation
    # (two consumers on two streams): simulated by forgetting what attendance learnt from it.
    meeting_id, conference_id = await service.create_meeting("org-a", "Early")
    store = SqliteStore(service.settings.common.sqlite_path("conference"))
    await store.start()
    try:
        links = await store.collection("meeting_conferences")

        async def learnt() -> bool:
            return await links.get(conference_id) is not None

        await eventually(learnt)
        await links.delete(conference_id)
    finally:
        await store.close()

    archive_id = await record(service, "org-a", conference_id, b"early bytes")

    async def archived() -> ArchiveView | None:
        reply = await get_archive(service, archive_id)
        return None if isinstance(reply, Rejected) else reply.value

    view = await eventually(archived)
    assert (view.meeting_id, view.name) == (meeting_id, "Early")
