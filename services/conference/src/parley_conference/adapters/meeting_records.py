"""NATS side of attendance and archives: their bus operations, and three durable JetStream consumers (explicit
acks; a restart resumes where the consumer's acks left off, and a redelivery is harmless: the use cases are
idempotent), each shared by the replicas so every message is applied once:

- `conference-attendance` on PARLEY_CONFERENCE: joins, lobby admissions, leaves and ends change attendees;
- `conference-archives` on PARLEY_MEDIA: a stored recording of a meeting's conference becomes an archive;
- `conference-archive-uploads` on PARLEY_MEETING (`ArchiveCreatedEvent`): the copy to the organization's
  storage target, NAK'd with a growing delay while it is pending (the archive records each attempt).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
import nats.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from parley_common.contracts import conference as api
from parley_common.contracts.media import RecordingStoredEvent
from parley_common.contracts.meeting import OPERATIONS, ArchiveCreatedEvent
from parley_common.contracts.rpc import Request
from parley_common.log import get_logger
from parley_common.messaging import subjects
from parley_common.messaging.pull import fetch_ready
from parley_common.messaging.rpc import Responders
from parley_common.messaging.streams import CONFERENCE_STREAM, MEETING_STREAM

from parley_conference.archive_handlers import ArchiveHandlers
from parley_conference.attendance_handlers import AttendanceHandlers

log = get_logger(__name__)
QUEUE = "conference"
ATTENDANCE_CONSUMER = "conference-attendance"
ARCHIVES_CONSUMER = "conference-archives"
UPLOADS_CONSUMER = "conference-archive-uploads"
# The conference events attendance reads; any other type is acknowledged unread.
ATTENDANCE_EVENTS = frozenset(
    {
        "ConferenceCreatedEvent",
        "ConferenceJoinedEvent",
        "ConferenceLobbyAdmittedEvent",
        "ConferenceLeftEvent",
        "ConferenceEndedEvent",
    }
)
_conference_event = msgspec.json.Decoder(api.AnyConferenceEvent)
_recording_stored = msgspec.json.Decoder(RecordingStoredEvent)
_archive_created = msgspec.json.Decoder(ArchiveCreatedEvent)


async def register_meeting_records(
    responders: Responders, attendance: AttendanceHandlers, archives: ArchiveHandlers
) -> None:
    handlers: dict[str, Any] = {
        "listAttendees": attendance.list_attendees,
        "attendanceWebhook": attendance.webhook,
        "listArchives": archives.list_archives,
        "getArchive": archives.get_archive,
        "deleteArchive": archives.delete_archive,
        "setStorageTarget": archives.set_storage_target,
    }
    for op, handler in handlers.items():
        operation = OPERATIONS[op]
        subject = subjects.meeting_command(op) if operation.kind == "cmd" else subjects.meeting_query(op)
        await responders.serve(subject, Request[operation.body], handler, queue=QUEUE)  # type: ignore[name-defined]


# What a consumer does with one message: None to acknowledge it, a delay to have it redelivered then.
Apply = Callable[[Msg], Awaitable[float | None]]


async def consume(
    js: JetStreamContext, stream: str, subject: str, durable: str, apply: Apply, *, max_deliver: int = -1
) -> None:
    subscription = await js.pull_subscribe(
        subject,
        durable=durable,
        stream=stream,
        config=ConsumerConfig(
            ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.ALL,
            ack_wait=120,
            max_deliver=max_deliver,
        ),
    )
    while True:
        try:
            messages = await fetch_ready(subscription, 16, timeout=5)
        except (nats.errors.TimeoutError, TimeoutError):
            continue
        for msg in messages:
            try:
                delay = await apply(msg)
            except msgspec.DecodeError:
                log.warning("undecodable event", consumer=durable, subject=msg.subject)
                delay = None
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("event not applied; redelivered later", consumer=durable, subject=msg.subject)
                delay = 2.0
            if delay is None:
                await msg.ack()
            else:
                await msg.nak(delay=delay)


async def consume_attendance(js: JetStreamContext, attendance: AttendanceHandlers) -> None:
    async def apply(msg: Msg) -> float | None:
        if msg.subject.rsplit(".", 1)[-1] in ATTENDANCE_EVENTS:
            await attendance.on_conference_event(_conference_event.decode(msg.data))
        return None

    await consume(js, CONFERENCE_STREAM, subjects.CONFERENCE_EVENTS_ALL, ATTENDANCE_CONSUMER, apply)


async def consume_recordings(js: JetStreamContext, archives: ArchiveHandlers) -> None:
    async def apply(msg: Msg) -> float | None:
        await archives.on_recording_stored(_recording_stored.decode(msg.data))
        return None

    subject = subjects.media_event("RecordingStoredEvent")
    await consume(js, "PARLEY_MEDIA", subject, ARCHIVES_CONSUMER, apply)


async def consume_uploads(js: JetStreamContext, archives: ArchiveHandlers) -> None:
    async def apply(msg: Msg) -> float | None:
        return await archives.upload_pending(_archive_created.decode(msg.data).archive.archive_id)

    subject = subjects.meeting_event("ArchiveCreatedEvent")
    await consume(js, MEETING_STREAM, subject, UPLOADS_CONSUMER, apply)
