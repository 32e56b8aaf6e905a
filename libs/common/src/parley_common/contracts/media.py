"""Between the conference service (which keeps the rules) and the media nodes (which do the SDP work).

Requests go to one node: `parley.media.<node id>.<op>`, wrapped in `Request[...]` like every command.
Nodes announce themselves with `MediaNodeHeartbeat` on `parley.media.heartbeat`, and report what happens
to their streams as events on the PARLEY_MEDIA stream (`parley.events.media.<type>`). Teardown needs no
request: nodes follow the conference events (leave, end, unpublish) and close what they hold.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from parley_common.contracts.base import Payload

# PublishableStreamType is defined with the conference API (publishStream takes it); re-exported here.
from parley_common.contracts.conference import IceCandidate
from parley_common.contracts.conference import PublishableStreamType as PublishableStreamType

# Operations of a media node, each on `parley.media.<node id>.<op>` (see subjects.media_node).
MediaOp = Literal["publish", "view", "candidates", "stopView", "unpublish", "still"]

# Why a stream ended without its owner unpublishing it (the reason of ConferenceStreamUnpublishedEvent).
MEDIA_NODE_LOST = "MEDIA_NODE_LOST"


class MediaStream(Payload, frozen=True):
    organization_id: str
    conference_id: str
    stream_id: str


class PublishMedia(Payload, frozen=True):
    stream: MediaStream
    stream_type: PublishableStreamType
    sdp_offer: str
    # The endpoint publishing; the node closes its streams when it leaves.
    user_endpoint_id: str
    # RECORDER is on in the conference: record from the first keyframe.
    record: bool = False


class ViewMedia(Payload, frozen=True):
    stream: MediaStream
    viewer_id: str
    sdp_offer: str
    # The endpoint viewing; the node closes its viewers when it leaves.
    user_endpoint_id: str


class AddMediaCandidates(Payload, frozen=True):
    stream: MediaStream
    ice_candidates: list[IceCandidate]
    # The endpoint posting them: it must own the publisher (or the viewer).
    user_endpoint_id: str
    # None: the publisher's candidates; otherwise that viewer's.
    viewer_id: str | None = None


class StopViewMedia(Payload, frozen=True):
    stream: MediaStream
    viewer_id: str
    user_endpoint_id: str


class UnpublishMedia(Payload, frozen=True):
    stream: MediaStream


class SdpAnswer(Payload, frozen=True):
    sdp_answer: str


class GrabStill(Payload, frozen=True):
    stream: MediaStream


class StillImage(Payload, frozen=True):
    """A JPEG of the current picture of a published video stream (base64 on the wire)."""

    jpeg: bytes
    width: int
    height: int
    captured_at: datetime


class MediaNodeHeartbeat(Payload, frozen=True):
    node_id: str
    started_at: datetime
    publishers: int
    viewers: int
    # Published streams the node takes in all (PARLEY_MEDIA_CAPACITY) before it counts as full; compare
    # with `publishers`. 0 = no limit.
    capacity: int = 0


class MediaStreamEndedEvent(Payload, frozen=True):
    """A published stream ended on its node without an unpublish (peer connection failed or closed)."""

    id: str
    node_id: str
    stream: MediaStream
    reason: str
    timestamp: datetime


class RecordingStoredEvent(Payload, frozen=True):
    """A recording of one stream is complete in the object store."""

    id: str
    node_id: str
    stream: MediaStream
    recording_id: str
    bucket: str
    object_name: str
    mime_type: str
    started_at: datetime
    duration_seconds: float
    bytes: int
    timestamp: datetime

    def location(self) -> RecordingLocation:
        """Where its bytes are: what the download route asks for (`...recording`)."""
        return RecordingLocation(
            recording_id=self.recording_id,
            stream_id=self.stream.stream_id,
            bucket=self.bucket,
            object_name=self.object_name,
            mime_type=self.mime_type,
            bytes=self.bytes,
        )


# ---------------------------------------------------------------- conference-service queries about media


class StreamStillQuery(Payload, frozen=True):
    """A still of what an endpoint is publishing on camera (CAM or MIC_AND_CAM) in a conference.

    Served by the conference service (`parley.qry.conference.streamStill`), which knows the stream and the
    node it lives on. 404: the endpoint publishes no camera stream; 503: its media node does not answer.
    """

    conference_id: str
    user_endpoint_id: str


class RecordingQuery(Payload, frozen=True):
    """Where a recording of a conference of the caller's organization is stored (`...recording`)."""

    conference_id: str
    recording_id: str


class RecordingLocation(Payload, frozen=True):
    recording_id: str
    stream_id: str
    bucket: str
    object_name: str
    mime_type: str
    bytes: int


# The gateway route that serves a recording's bytes to a caller of its organization (Recording.url).
RECORDING_PATH = "/rtc-api/conferences/{conference_id}/recordings/{recording_id}"


class Recording(Payload, frozen=True):
    """One entry of the conference metadata key RECORDINGS (its value is a JSON list of these)."""

    recording_id: str
    stream_id: str
    mime_type: str
    bytes: int
    duration_seconds: float
    started_at: datetime
    # Gateway path that serves the file to an authorised caller of the same organization.
    url: str
