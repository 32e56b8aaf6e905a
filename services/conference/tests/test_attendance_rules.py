"""The pure attendance and archive rules: what each change raises, and what changes nothing."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from parley_common.contracts.meeting import (
    ArchiveUpload,
    ArchiveUploadFailedEvent,
    ArchiveView,
    AttendanceWebhook,
    AttendeeJoinedEvent,
    AttendeeLeftEvent,
    ProviderConnection,
    StorageTarget,
)
from parley_common.errors import InvalidCommand
from parley_conference import archives, attendance
from parley_conference.archives import Archive

NOW = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)


def fresh() -> attendance.Attendee:
    return attendance.new_attendee("a-1", "org", "meet", "conf", "alice", NOW)


def test_a_join_a_second_endpoint_and_the_leaves() -> None:
    joined = attendance.decide_joined(fresh(), "ep-1", "e1", NOW)
    assert joined is not None and isinstance(joined.event, AttendeeJoinedEvent)
    a = joined.attendee
    assert (a.is_deleted, a.endpoints, a.version, a.modified_on) == (False, ("ep-1",), 1, None)
    assert attendance.decide_joined(a, "ep-1", "e2", NOW) is None  # redelivered
    second = attendance.decide_joined(a, "ep-2", "e3", NOW)
    assert second is not None and second.event is None  # present already: nothing to announce
    one_left = attendance.decide_left(second.attendee, "ep-1", "e4", NOW)
    assert one_left is not None and one_left.event is None and not one_left.attendee.is_deleted
    all_left = attendance.decide_left(one_left.attendee, "ep-2", "e5", NOW)
    assert all_left is not None and isinstance(all_left.event, AttendeeLeftEvent)
    assert all_left.attendee.is_deleted
    assert attendance.decide_left(all_left.attendee, "ep-2", "e6", NOW) is None  # redelivered
    assert attendance.decide_ended(all_left.attendee, "e7", NOW) is None  # gone already


def webhook(event: str, reason: str | None = None) -> AttendanceWebhook:
    return AttendanceWebhook(
        session_id="conf", event=event, reason=reason, connection=ProviderConnection(id="c", data="alice")
    )


@pytest.mark.parametrize(
    ("event", "reason", "deleted"),
    [
        ("streamCreated", None, False),
        ("streamDestroyed", "forceUnpublished", False),
        ("streamDestroyed", "mediaStopped", False),
        ("streamDestroyed", "clientDisconnected", True),
        ("connectionDestroyed", None, True),
    ],
)
def test_webhook_events_on_a_present_attendee(event: str, reason: str | None, deleted: bool) -> None:
    created = attendance.decide_webhook(fresh(), webhook("connectionCreated"), {}, "e1", NOW)
    assert created is not None
    change = attendance.decide_webhook(created.attendee, webhook(event, reason), {"event": event}, "e2", NOW)
    assert change is not None
    assert change.attendee.is_deleted is deleted
    assert change.attendee.ext_metadata == {"webhookPayload": {"event": event}}


def test_webhook_creates_on_connection_created_only_and_ignores_other_events() -> None:
    assert attendance.decide_webhook(fresh(), webhook("streamCreated"), {}, "e", NOW) is None
    created = attendance.decide_webhook(fresh(), webhook("connectionCreated"), {}, "e", NOW)
    assert created is not None
    assert attendance.decide_webhook(created.attendee, webhook("archiveStarted"), {}, "e", NOW) is None


def test_storage_targets() -> None:
    s3 = archives.decide_target(
        "org", StorageTarget(name="AWSS3", bucket="b", endpoint="http://x"), "archives"
    )
    assert (s3.name, s3.location, s3.endpoint) == ("AWSS3", "b", "http://x")
    azure = archives.decide_target("org", StorageTarget(name="AZURE", account_name="acct"), "archives")
    assert (azure.location, azure.account_name) == ("archives", "acct")
    with pytest.raises(InvalidCommand, match="Unsupported storage type"):
        archives.decide_target("org", StorageTarget(name="Azure", account_name="acct"), "archives")


def test_an_upload_fails_after_its_attempts() -> None:
    view = ArchiveView(
        archive_id="r",
        meeting_id="m",
        conference_id="c",
        name=None,
        created_at=NOW,
        recording_id="r",
        stream_id="s",
        mime_type="video/webm",
        bytes=1,
        duration_seconds=1.0,
        url="/u",
        uploads=(ArchiveUpload(target="AWSS3", location="b", object_name="m/r.webm", state="pending"),),
    )
    archive = Archive(
        organization_id="org", view=view, bucket="parley_recordings", object_name="o", version=1
    )
    first, event = archives.decide_upload_result(archive, "boom", 2, "e1", NOW)
    assert event is None and first.view.uploads[0].state == "pending" and first.view.uploads[0].attempts == 1
    second, event = archives.decide_upload_result(first, "boom again", 2, "e2", NOW)
    assert isinstance(event, ArchiveUploadFailedEvent)
    assert (event.upload.state, event.upload.attempts, event.upload.last_error) == ("failed", 2, "boom again")
    assert archives.pending_upload(second) is None
    assert [archives.retry_delay(n, 2.0) for n in (1, 2, 3, 10)] == [2.0, 4.0, 8.0, 60.0]
