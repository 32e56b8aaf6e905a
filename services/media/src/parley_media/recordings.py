"""Recording use case: remux a stream into a spooled temp file, then keep it in the object store.

A recording ends three ways: RECORDER switched off (stop()), or its stream closed (unpublish, leave, end,
peer lost), which the engine reports as RecordingFinished (finished()). Either way the file goes into
the bucket as `{organization}/{conference}/{recording_id}.webm` and a RecordingStoredEvent follows.
A failure is retried, then logged with every id; a recording never disappears without a log line.
"""

from __future__ import annotations

import asyncio
import tempfile
from dataclasses import dataclass
from datetime import datetime
from typing import IO

from parley_common.clock import new_id, utcnow
from parley_common.contracts.media import MediaStream, RecordingStoredEvent
from parley_common.log import get_logger, log_context
from parley_common.messaging.subjects import media_event

from parley_media.engine import MediaEngine
from parley_media.errors import RecordingError, UnknownStream
from parley_media.model import StreamKey
from parley_media.ports import EventSink, RecordingStore
from parley_media.recording import RecordingInfo

log = get_logger(__name__)

# Recordings stay in memory up to this size, then spill to a file under TMPDIR.
SPOOL_MEMORY_BYTES = 8 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class ActiveRecording:
    recording_id: str
    stream: StreamKey
    started_at: datetime
    file: IO[bytes]

    @property
    def object_name(self) -> str:
        return f"{self.stream.organization_id}/{self.stream.conference_id}/{self.recording_id}.webm"

    def ids(self) -> dict[str, str]:
        return {
            "organization": self.stream.organization_id,
            "conference_id": self.stream.conference_id,
            "stream_id": self.stream.stream_id,
            "recording_id": self.recording_id,
        }


class Recordings:
    def __init__(
        self,
        engine: MediaEngine,
        store: RecordingStore,
        events: EventSink,
        node_id: str,
        *,
        upload_attempts: int = 5,
        retry_delay: float = 0.5,
    ) -> None:
        self._engine = engine
        self._store = store
        self._events = events
        self._node_id = node_id
        self._upload_attempts = upload_attempts
        self._retry_delay = retry_delay
        self._active: dict[StreamKey, ActiveRecording] = {}
        # Conferences whose RECORDER is on, among those held here: a stream published later records too.
        self._conferences_on: set[tuple[str, str]] = set()
        self._finishing: set[asyncio.Task[None]] = set()

    def recording(self, stream: StreamKey) -> bool:
        return stream in self._active

    def conference_on(self, conference: tuple[str, str]) -> bool:
        return conference in self._conferences_on

    def set_conference(self, conference: tuple[str, str], *, on: bool) -> None:
        if on:
            self._conferences_on.add(conference)
        else:
            self._conferences_on.discard(conference)

    async def start(self, stream: StreamKey) -> None:
        """Record from the next keyframe; nothing happens if the stream is already recorded here.

        Raises the engine's UnknownStream (not published) or RecordingError (still negotiating).
        """
        if stream in self._active:
            return
        file = tempfile.SpooledTemporaryFile(max_size=SPOOL_MEMORY_BYTES)  # noqa: SIM115 - closed in _store
        try:
            await self._engine.start_recording(stream, file)
        except BaseException:
            file.close()
            raise
        recording = ActiveRecording(new_id(), stream, utcnow(), file)
        self._active[stream] = recording
        with log_context(**recording.ids()):
            log.info("recording started")

    async def stop(self, stream: StreamKey) -> None:
        recording = self._active.get(stream)
        if recording is None:
            return
        try:
            info = await self._engine.stop_recording(stream)
        except (UnknownStream, RecordingError):
            # The stream is closing: the engine finishes the file and reports it (finished()).
            return
        del self._active[stream]
        self._spawn(recording, info)

    def finished(self, stream: StreamKey, info: RecordingInfo) -> None:
        """The engine finished a recording because its stream closed."""
        recording = self._active.pop(stream, None)
        if recording is None:
            log.error(
                "a recording finished that this node did not start", stream=str(stream), bytes=info.bytes
            )
            return
        self._spawn(recording, info)

    async def drain(self, timeout: float) -> None:
        """Wait for recordings being stored (shutdown); those still running then are logged as lost."""
        pending = set(self._finishing)
        if pending:
            _, late = await asyncio.wait(pending, timeout=timeout)
            for task in late:
                log.error("recording not stored before shutdown", task=task.get_name())
                task.cancel()

    def _spawn(self, recording: ActiveRecording, info: RecordingInfo) -> None:
        task = asyncio.create_task(self._store_one(recording, info), name=f"store-{recording.recording_id}")
        self._finishing.add(task)
        task.add_done_callback(self._finishing.discard)

    async def _store_one(self, recording: ActiveRecording, info: RecordingInfo) -> None:
        with log_context(**recording.ids()):
            try:
                if info.bytes == 0:
                    log.warning("recording is empty (no keyframe arrived): nothing stored")
                    return
                if not await self._upload(recording, info):
                    return
                event = RecordingStoredEvent(
                    id=new_id(),
                    node_id=self._node_id,
                    stream=_media_stream(recording.stream),
                    recording_id=recording.recording_id,
                    bucket=self._store.bucket,
                    object_name=recording.object_name,
                    mime_type=info.mime_type,
                    started_at=recording.started_at,
                    duration_seconds=round(info.duration, 3),
                    bytes=info.bytes,
                    timestamp=utcnow(),
                )
                await self._events.publish(
                    media_event("RecordingStoredEvent"), event, msg_id=f"recording-{recording.recording_id}"
                )
                log.info(
                    "recording stored",
                    object_name=recording.object_name,
                    bytes=info.bytes,
                    seconds=round(info.duration, 1),
                )
            except asyncio.CancelledError:
                log.error("recording lost: node stopped while storing it", bytes=info.bytes)
                raise
            finally:
                recording.file.close()

    async def _upload(self, recording: ActiveRecording, info: RecordingInfo) -> bool:
        for attempt in range(1, self._upload_attempts + 1):
            try:
                recording.file.seek(0)
                await self._store.put(recording.object_name, recording.file)
                return True
            except Exception as exc:
                if attempt == self._upload_attempts:
                    log.error(
                        "recording lost: upload failed",
                        object_name=recording.object_name,
                        bytes=info.bytes,
                        attempts=attempt,
                        error=repr(exc),
                    )
                    return False
                log.warning("recording upload failed, retrying", attempt=attempt, error=repr(exc))
                await asyncio.sleep(self._retry_delay * attempt)
        return False


def _media_stream(stream: StreamKey) -> MediaStream:
    return MediaStream(
        organization_id=stream.organization_id,
        conference_id=stream.conference_id,
        stream_id=stream.stream_id,
    )
