"""How a node follows what happens around it, since nobody tells it to tear anything down.

- Conference events (JetStream PARLEY_CONFERENCE): an endpoint left, a conference ended, a stream was
  unpublished, RECORDER switched on or off. Conferences the node holds nothing of are ignored.
- Engine events: a publisher lost on its own becomes a MediaStreamEndedEvent (which the conference service
  turns into ConferenceStreamUnpublishedEvent); a recording finished by a closing stream gets stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import json

from parley_common.clock import new_id, utcnow
from parley_common.contracts.conference import (
    AnyConferenceEvent,
    ConferenceEndedEvent,
    ConferenceLeftEvent,
    ConferenceMetadataUpdatedEvent,
    ConferenceStreamUnpublishedEvent,
)
from parley_common.contracts.media import MediaStream, MediaStreamEndedEvent
from parley_common.log import get_logger, log_context
from parley_common.messaging.subjects import media_event

from parley_media.engine import MediaEngine
from parley_media.errors import MediaError, UnknownStream, UnknownViewer
from parley_media.events import MediaEvent, RecordingFinished, StreamEnded, ViewerEnded
from parley_media.handlers import unpublish
from parley_media.holdings import Holdings, ViewerKey, conference_of
from parley_media.model import StreamKey
from parley_media.ports import EventSink
from parley_media.recordings import Recordings

log = get_logger(__name__)

RECORDER_KEY = "RECORDER"

# The conference events a node reacts to (its consumer filters on exactly these subjects).
FOLLOWED_EVENTS = (
    "ConferenceLeftEvent",
    "ConferenceEndedEvent",
    "ConferenceStreamUnpublishedEvent",
    "ConferenceMetadataUpdatedEvent",
)


def recorder_on(operation: str, value: str | None) -> bool:
    """RECORDER set to '{"on":true}' records; anything else (removed, off, unreadable) means off."""
    if operation != "SET" or value is None:
        return False
    try:
        parsed = json.loads(value)
    except ValueError:
        return False
    return isinstance(parsed, dict) and parsed.get("on") is True


class ConferenceFollower:
    def __init__(self, engine: MediaEngine, holdings: Holdings, recordings: Recordings) -> None:
        self._engine = engine
        self._holdings = holdings
        self._recordings = recordings

    async def apply(self, event: AnyConferenceEvent) -> None:
        organization_id, conference_id = event.organization_id, event.conference_id
        if not self._holdings.holds(organization_id, conference_id):
            return
        with log_context(
            organization=organization_id, conference_id=conference_id, user_endpoint_id=event.user_endpoint_id
        ):
            if isinstance(event, ConferenceLeftEvent):
                if event.user_endpoint_id is not None:
                    await self._left(organization_id, conference_id, event.user_endpoint_id)
            elif isinstance(event, ConferenceEndedEvent):
                await self._ended(organization_id, conference_id)
            elif isinstance(event, ConferenceStreamUnpublishedEvent):
                stream = StreamKey(organization_id, conference_id, event.stream_id)
                with log_context(stream_id=event.stream_id):
                    await unpublish(self._engine, self._holdings, self._recordings, stream)
            elif isinstance(event, ConferenceMetadataUpdatedEvent) and event.key == RECORDER_KEY:
                await self._recorder(
                    organization_id, conference_id, recorder_on(event.operation, event.value)
                )

    async def _left(self, organization_id: str, conference_id: str, endpoint: str) -> None:
        published, viewing = self._holdings.endpoint_sessions(organization_id, conference_id, endpoint)
        # A closing publisher closes its own viewers: only the endpoint's views of others' streams.
        others = [key for key in viewing if key[0] not in published]
        await asyncio.gather(
            *(self._stop_view(key) for key in others),
            *(unpublish(self._engine, self._holdings, self._recordings, stream) for stream in published),
        )
        log.info("endpoint left: sessions closed", publishers=len(published), viewers=len(others))

    async def _stop_view(self, key: ViewerKey) -> None:
        stream, viewer_id = key
        self._holdings.remove_viewer(stream, viewer_id)
        with contextlib.suppress(UnknownStream, UnknownViewer):
            await self._engine.stop_view(stream, viewer_id)

    async def _ended(self, organization_id: str, conference_id: str) -> None:
        streams = self._holdings.forget_conference(organization_id, conference_id)
        self._recordings.set_conference((organization_id, conference_id), on=False)
        await self._engine.close_conference(organization_id, conference_id)
        log.info("conference ended: streams closed", publishers=len(streams))

    async def _recorder(self, organization_id: str, conference_id: str, on: bool) -> None:
        self._recordings.set_conference((organization_id, conference_id), on=on)
        for stream in self._holdings.streams_of(organization_id, conference_id):
            with log_context(stream_id=stream.stream_id):
                if not on:
                    await self._recordings.stop(stream)
                    continue
                try:
                    await self._recordings.start(stream)
                except MediaError as exc:
                    # Still negotiating: its publish starts the recording once it is answered.
                    log.info("recording deferred", reason=str(exc))
        log.info("recorder switched", on=on)


class EngineFollower:
    """The engine's event listener (called synchronously on the event loop)."""

    def __init__(self, holdings: Holdings, recordings: Recordings, events: EventSink, node_id: str) -> None:
        self._holdings = holdings
        self._recordings = recordings
        self._events = events
        self._node_id = node_id
        self._publishing: set[asyncio.Task[None]] = set()

    def __call__(self, event: MediaEvent) -> None:
        if isinstance(event, RecordingFinished):
            self._recordings.finished(event.stream, event.info)
        elif isinstance(event, ViewerEnded):
            self._holdings.remove_viewer(event.stream, event.viewer_id)
        elif isinstance(event, StreamEnded):
            self._holdings.remove_publisher(event.stream)
            conference = conference_of(event.stream)
            if not self._holdings.holds(*conference):
                self._recordings.set_conference(conference, on=False)
            task = asyncio.create_task(self._report_ended(event), name=f"stream-ended-{event.stream}")
            self._publishing.add(task)
            task.add_done_callback(self._publishing.discard)

    async def _report_ended(self, ended: StreamEnded) -> None:
        stream = ended.stream
        event = MediaStreamEndedEvent(
            id=new_id(),
            node_id=self._node_id,
            stream=MediaStream(
                organization_id=stream.organization_id,
                conference_id=stream.conference_id,
                stream_id=stream.stream_id,
            ),
            reason=ended.reason,
            timestamp=utcnow(),
        )
        with log_context(
            organization=stream.organization_id,
            conference_id=stream.conference_id,
            stream_id=stream.stream_id,
        ):
            log.info("stream ended on its own", reason=ended.reason)
            await self._events.publish(
                media_event("MediaStreamEndedEvent"), event, msg_id=f"stream-ended-{event.id}"
            )

    async def drain(self, timeout: float) -> None:
        pending = set(self._publishing)
        if pending:
            _, late = await asyncio.wait(pending, timeout=timeout)
            for task in late:
                log.error("stream-ended event not published before shutdown", task=task.get_name())
                task.cancel()
