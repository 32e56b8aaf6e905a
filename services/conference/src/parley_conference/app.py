"""Wiring: storage, NATS and the use cases on the shared bootstrap (`parley_common.service`)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Any

from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from nats.js.errors import BucketNotFoundError, NotFoundError, ObjectNotFoundError
from parley_common.commits import CommitLog
from parley_common.log import get_logger
from parley_common.messaging import subjects
from parley_common.messaging.push import NatsEndpointMessenger
from parley_common.messaging.rpc import Responders, RpcClient
from parley_common.messaging.subjects import RECORDINGS_BUCKET
from parley_common.outbox import DeleteObject, Outbox, each
from parley_common.sealing import Sealer
from parley_common.service import Runtime, run_service, serve

from parley_conference.adapters.admission import NatsGuards
from parley_conference.adapters.archives import ArchiveRepository
from parley_conference.adapters.attendees import AttendeeRepository, StoredMeetings
from parley_conference.adapters.bus import PresenceAnnouncer, register, register_meetings
from parley_conference.adapters.lease import Lease
from parley_conference.adapters.media_nodes import (
    Announcements,
    NatsMediaNodeClient,
    consume_media_events,
    follow_heartbeats,
)
from parley_conference.adapters.meeting_records import (
    consume_attendance,
    consume_recordings,
    consume_uploads,
    register_meeting_records,
)
from parley_conference.adapters.meetings import EndMeetingConference, MeetingRepository, open_commit_log
from parley_conference.adapters.outbox import EventOutbox, conference_outbox
from parley_conference.adapters.placements import Placements
from parley_conference.adapters.recordings import RecordingLocations
from parley_conference.adapters.repository import ConferenceRepository
from parley_conference.adapters.uploads import UploadCredentials, Uploader
from parley_conference.adapters.webhook_bus import register_webhooks
from parley_conference.adapters.webhook_delivery import WebhookDeliveries
from parley_conference.adapters.webhook_store import WebhookDirectory, WebhookRepository
from parley_conference.archive_handlers import ArchiveHandlers
from parley_conference.attendance_handlers import AttendanceHandlers, KnownMeetings, MeetingLookup
from parley_conference.handlers import ConferenceHandlers, UnitOfWork
from parley_conference.media import MediaHandlers
from parley_conference.meeting_handlers import MeetingHandlers
from parley_conference.memberships import Memberships
from parley_conference.placement import MediaNodes
from parley_conference.presence import Presence
from parley_conference.settings import Settings
from parley_conference.webhook_handlers import WebhookHandlers
from parley_conference.webhooks import configured

log = get_logger(__name__)


async def run_timers(
    handlers: ConferenceHandlers,
    media: MediaHandlers,
    lease: Lease,
    interval: float,
    meetings: MeetingHandlers | None = None,
) -> None:
    """Keep-alive and empty timeouts, lost media nodes and meetings past their end, run by whichever
    replica holds the lease."""
    sweeps = [handlers.sweep, media.sweep_nodes]
    if meetings is not None:
        sweeps.append(meetings.sweep)
    while True:
        if await lease.refresh():
            for sweep in sweeps:
                try:
                    await sweep()
                except Exception:
                    log.exception("sweep failed", sweep=sweep.__qualname__)
        await asyncio.sleep(interval)


class MeetingRecords:
    """Attendance and archives: their repositories (on the meeting model's commit log), their use cases."""

    def __init__(self, attendees: AttendeeRepository, archives: ArchiveRepository) -> None:
        self.attendees = attendees
        self.archives = archives

    @classmethod
    async def open(cls, runtime: Runtime, log: CommitLog) -> MeetingRecords:
        return cls(
            await AttendeeRepository.open(runtime.store, log),
            await ArchiveRepository.open(runtime.store, log),
        )

    def outbox_executors(self, runtime: Runtime) -> dict[type, Any]:
        async def delete_recording(effect: DeleteObject) -> None:
            # A deleted archive's bytes; gone already is fine (a recovered effect runs again).
            # (The media service owns the bucket: without it there is nothing to delete.)
            with contextlib.suppress(BucketNotFoundError, ObjectNotFoundError, NotFoundError):
                store = await runtime.js.object_store(RECORDINGS_BUCKET)
                await store.delete(effect.object_name)

        return {DeleteObject: each(delete_recording)}

    async def wire(
        self,
        runtime: Runtime,
        settings: Settings,
        outbox: Outbox,
        locations: RecordingLocations,
        conferences: ConferenceRepository,
        meetings: MeetingLookup | None = None,
    ) -> None:
        """Bus operations and the three consumers. `meetings`: the meeting repository, when wired."""
        lookup = meetings or KnownMeetings(self.attendees)
        attendance = AttendanceHandlers(self.attendees, lookup, outbox.committed)
        conf = settings.archives

        async def meeting_of(organization_id: str, conference_id: str) -> str | None:
            conference = await conferences.get(organization_id, conference_id)
            return None if conference is None else conference.meeting_id

        archives = ArchiveHandlers(
            self.archives,
            self.attendees,
            lookup,
            Uploader(
                runtime.js,
                UploadCredentials(
                    s3_access_key=conf.s3_access_key,
                    s3_secret_key=conf.s3_secret_key,
                    azure_account_key=conf.azure_account_key,
                ),
            ),
            locations,
            outbox.committed,
            meeting_of=meeting_of,
            azure_container=conf.azure_container,
            max_attempts=conf.upload_attempts,
            retry_base_seconds=conf.retry_base_seconds,
        )
        responders = runtime.takes_requests(Responders(runtime.nc))
        await register_meeting_records(responders, attendance, archives)
        js = runtime.js
        runtime.background(lambda: consume_attendance(js, attendance), name="attendance")
        runtime.background(lambda: consume_recordings(js, archives), name="archives")
        runtime.background(lambda: consume_uploads(js, archives), name="archive-uploads")


async def wire_webhooks(runtime: Runtime, settings: Settings, responders: Responders) -> None:
    """Webhooks out: the API's use cases, and delivery (run by the replica holding the `webhooks` lease)."""
    directory = WebhookDirectory(
        await WebhookRepository.open(runtime.store, Sealer.from_env()),
        configured(settings.webhooks.endpoints),
    )

    async def on_changed(_: Msg) -> None:
        directory.changed()

    async def announce_change() -> None:
        directory.changed()
        # The replica holding the lease (fan-out, workers) may be another one: tell them all.
        with contextlib.suppress(NatsError):
            await runtime.nc.publish(subjects.WEBHOOKS_CHANGED, b"")

    await runtime.nc.subscribe(subjects.WEBHOOKS_CHANGED, cb=on_changed)
    await register_webhooks(responders, WebhookHandlers(directory.repository, announce_change))
    deliveries = WebhookDeliveries(
        runtime.js, directory, await Lease.open(runtime.js, "webhooks"), settings.webhooks
    )
    await deliveries.declare()
    runtime.background(deliveries.run, name="webhooks")


def wiring(settings: Settings) -> Callable[[Runtime], Awaitable[None]]:
    """The service's own adapters and use cases, on what the bootstrap opened."""

    async def wire(runtime: Runtime) -> None:
        store, nc, js, broker = runtime.store, runtime.nc, runtime.js, runtime.broker
        repository = await ConferenceRepository.open(store)
        # The meeting model's one commit log: meetings, attendees and archives commit through it.
        meeting_log = await open_commit_log(store)
        records = await MeetingRecords.open(runtime, meeting_log)
        meeting_repository = await MeetingRepository.open(store, meeting_log)
        # Set once the conference use cases exist: the outbox ends a meeting's conference through them.
        conference_use_cases: list[ConferenceHandlers] = []

        async def end_meeting_conference(effect: EndMeetingConference) -> None:
            await conference_use_cases[0].end_for_meeting(
                effect.organization_id, effect.conference_id, effect.reason
            )

        outbox = runtime.use_outbox(
            conference_outbox(
                repository,
                js,
                stores=[meeting_log],
                executors={
                    EndMeetingConference: each(end_meeting_conference),
                    **records.outbox_executors(runtime),
                },
            )
        )
        memberships = Memberships()
        presence = Presence(
            keepalive_seconds=settings.keepalive_seconds, grace_seconds=settings.keepalive_grace_seconds
        )
        handlers = ConferenceHandlers(
            UnitOfWork(repository, [EventOutbox(outbox), memberships]),
            presence,
            NatsEndpointMessenger(nc, js, Sealer.from_env()),
            memberships,
            guards=NatsGuards(RpcClient(nc, timeout=settings.admission_timeout_seconds)),
            empty_timeout_seconds=settings.empty_timeout_seconds,
            on_seen=PresenceAnnouncer(nc),
        )
        conference_use_cases.append(handlers)
        meeting_handlers = MeetingHandlers(
            meeting_repository,
            outbox,
            handlers,
            early_start_minutes=settings.meeting_early_start_minutes,
        )
        nodes = MediaNodes(timeout_seconds=settings.media_node_timeout_seconds, clock=time.monotonic)
        announcements = Announcements()
        locations = await RecordingLocations.open(store)
        media = MediaHandlers(
            handlers,
            nodes,
            await Placements.open(store),
            locations,
            NatsMediaNodeClient(
                RpcClient(nc, timeout=settings.media_request_timeout_seconds),
                timeout=settings.media_request_timeout_seconds,
            ),
            announcements=announcements,
            node_wait_seconds=settings.media_node_wait_seconds,
        )
        responders = runtime.takes_requests(Responders(nc))
        await register(broker, responders, handlers, media, presence, memberships, store, nodes)
        await register_meetings(responders, meeting_handlers.use_cases())
        follow_heartbeats(broker, nodes, announcements)
        await records.wire(
            runtime, settings, outbox, locations, repository, StoredMeetings(meeting_repository)
        )
        lease = await Lease.open(js, "conference-timers", replicas=runtime.common.nats_replicas)

        async def load_memberships() -> None:
            # Subscribed first, loaded second: a join published in between is applied either way.
            for organization_id, conference_id in await repository.live_conference_ids():
                live = await repository.get(organization_id, conference_id)
                if live is not None and not live.ended:
                    memberships.load(live)

        runtime.after_start(load_memberships)
        runtime.background(
            lambda: run_timers(handlers, media, lease, settings.sweep_interval_seconds, meeting_handlers),
            name="timers",
        )
        runtime.background(lambda: consume_media_events(js, media), name="media-events")
        runtime.on_close(lease.release)
        await wire_webhooks(runtime, settings, responders)

    return wire


async def serve_conference(settings: Settings, stop: asyncio.Event) -> None:
    await serve("conference", settings.common, wiring(settings), stop, no_echo=True)


def main() -> None:
    run_service("conference", Settings.from_env, serve_conference)
