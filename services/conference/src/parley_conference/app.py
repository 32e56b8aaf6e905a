"""Wiring: storage, NATS and the use cases on the shared bootstrap (`parley_common.service`)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from parley_common.log import get_logger
from parley_common.messaging.push import NatsEndpointMessenger
from parley_common.messaging.rpc import Responders, RpcClient
from parley_common.outbox import each
from parley_common.sealing import Sealer
from parley_common.service import Runtime, run_service, serve

from parley_conference.adapters.admission import NatsGuards
from parley_conference.adapters.bus import PresenceAnnouncer, register, register_meetings
from parley_conference.adapters.lease import Lease
from parley_conference.adapters.media_nodes import (
    Announcements,
    NatsMediaNodeClient,
    consume_media_events,
    follow_heartbeats,
)
from parley_conference.adapters.meetings import EndMeetingConference, MeetingRepository
from parley_conference.adapters.outbox import EventOutbox, conference_outbox
from parley_conference.adapters.placements import Placements
from parley_conference.adapters.recordings import RecordingLocations
from parley_conference.adapters.repository import ConferenceRepository
from parley_conference.handlers import ConferenceHandlers, UnitOfWork
from parley_conference.media import MediaHandlers
from parley_conference.meeting_handlers import MeetingHandlers
from parley_conference.memberships import Memberships
from parley_conference.placement import MediaNodes
from parley_conference.presence import Presence
from parley_conference.settings import Settings

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


def wiring(settings: Settings) -> Callable[[Runtime], Awaitable[None]]:
    """The service's own adapters and use cases, on what the bootstrap opened."""

    async def wire(runtime: Runtime) -> None:
        store, nc, js, broker = runtime.store, runtime.nc, runtime.js, runtime.broker
        repository = await ConferenceRepository.open(store)
        meeting_repository = await MeetingRepository.open(store)
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
                stores=[meeting_repository],
                executors={EndMeetingConference: each(end_meeting_conference)},
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
        media = MediaHandlers(
            handlers,
            nodes,
            await Placements.open(store),
            await RecordingLocations.open(store),
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
        lease = await Lease.open(js, "conference-timers")

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

    return wire


async def serve_conference(settings: Settings, stop: asyncio.Event) -> None:
    await serve("conference", settings.common, wiring(settings), stop, no_echo=True)


def main() -> None:
    run_service("conference", Settings.from_env, serve_conference)
