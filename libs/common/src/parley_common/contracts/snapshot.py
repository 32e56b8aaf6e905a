"""The Auvious-style snapshot API (`/rtc-api/snapshots/...`): bodies, the `Snapshot` view and events.

Names and shapes follow `shared/seeds/auvious-snapshot-api.txt`. The seed marks nearly everything optional;
fields without which a command means nothing (the snapshot to act on, the target of a request) have no
default here, so decoding names the missing field (400). Unknown fields are ignored.

Multipart operations (`acquire`, `upload`) are described by the `...Form` types: their `image` is the file
part on HTTP and, on the bus, the name of the object the gateway staged the bytes under (see
`SNAPSHOT_STAGING_BUCKET`), because an image (up to 10 MiB) does not fit in a NATS message.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec

from parley_common.contracts.base import Id, Payload

SessionType = Literal["CALL", "CONFERENCE", "UNKNOWN"]
# REQUESTED is ours: a request waiting for the target's picture (the seed lists only the later states).
SnapshotState = Literal["REQUESTED", "UPLOADED", "APPROVED", "DISCARDED"]
CameraRequestType = Literal["CAMERA_SWITCH", "FLASH_ON", "FLASH_OFF"]

# The image formats accepted, as (mime type, suffixes: the first is the canonical one).
IMAGE_FORMATS: dict[str, tuple[str, ...]] = {
    "image/jpeg": ("jpg", "jpeg", "jfif"),
    "image/png": ("png",),
    "image/webp": ("webp",),
    "image/gif": ("gif",),
}
# Names clients use for the same formats.
MIME_ALIASES = {"image/jpg": "image/jpeg", "image/pjpeg": "image/jpeg", "image/x-png": "image/png"}

# The file part of a multipart body (documented as binary; on the bus, the staged object's name).
# Free text a client labels a snapshot with (snapshotType, additionalInformation).
MAX_TEXT_LENGTH = 1024
Text = Annotated[str, msgspec.Meta(max_length=MAX_TEXT_LENGTH)]
# What the client says the picture is. The bytes decide: a declared type that is not theirs is refused.
DeclaredMimeType = Annotated[
    str,
    msgspec.Meta(
        description="the picture's media type (image/jpeg, image/png, image/webp or image/gif), or empty; "
        "it must match the picture's bytes"
    ),
]
DeclaredSuffix = Annotated[
    str, msgspec.Meta(description="the suffix to store the file under (replaced when the format has another)")
]
# minLength is stated for the document only: the gateway checks the part itself (decoding puts a
# placeholder here before the bytes are staged).
ImagePart = Annotated[
    str,
    msgspec.Meta(
        extra_json_schema={"format": "binary", "minLength": 1},
        description="the image file: a JPEG, PNG, WebP or GIF picture (its first bytes decide)",
    ),
]


class ApplicationId(Payload, frozen=True):
    id: Id | None = None


# ---------------------------------------------------------------- commands (HTTP bodies, also on the bus)


class SnapshotRequestWebCommand(Payload, frozen=True):
    target_user_endpoint_id: Id
    # The requester's endpoint: it is told when the picture arrives.
    user_endpoint_id: Id
    application_id: ApplicationId | None = None
    # When given, the picture is stored under interactions/{interactionId}/.
    interaction_id: Id | None = None
    # The conference id when sessionType is CONFERENCE.
    session_id: Id | None = None
    session_type: SessionType = "UNKNOWN"
    snapshot_type: Text | None = None
    target_user_id: Id | None = None


class SnapshotAcquireForm(Payload, frozen=True):
    """The target's answer to a request (multipart/form-data)."""

    image: ImagePart
    snapshot_id: Id
    snapshot_mime_type: DeclaredMimeType
    snapshot_suffix: DeclaredSuffix
    snapshot_type: Text
    user_endpoint_id: Id


class SnapshotUploadForm(Payload, frozen=True):
    """A picture the requester uploads directly (multipart/form-data)."""

    application_id: Id
    image: ImagePart
    interaction_id: Id
    snapshot_mime_type: DeclaredMimeType
    snapshot_suffix: DeclaredSuffix
    snapshot_type: Text
    target_user_endpoint_id: Id
    target_user_id: Id
    user_endpoint_id: Id
    related_snapshot_id: Id | None = None


class SnapshotApproveWebCommand(Payload, frozen=True):
    snapshot_id: Id
    # Overrides the type given with the request.
    snapshot_type: Text | None = None
    user_endpoint_id: Id | None = None


class SnapshotDiscardWebCommand(Payload, frozen=True):
    snapshot_id: Id
    user_endpoint_id: Id | None = None


class CreateSnapshotSignedURLWebCommand(Payload, frozen=True):
    snapshot_id: Id
    # A URL for services inside the cluster (the gateway's internal address) instead of the public one.
    create_internal_signed_url: bool = False


class SnapshotCameraRequestWebCommand(Payload, frozen=True):
    camera_request_type: CameraRequestType
    target_user_endpoint_id: Id
    user_endpoint_id: Id
    session_id: Id | None = None
    session_type: SessionType = "UNKNOWN"
    target_user_id: Id | None = None


class SnapshotCameraRequestRespondWebCommand(Payload, frozen=True):
    snapshot_camera_request_id: Id
    succeeded: bool = False
    additional_information: Text | None = None
    user_endpoint_id: Id | None = None


# A CONFERENCE session must name its conference (the snapshot service refuses it otherwise): stated for
# the OpenAPI document on the bodies that take a session, since msgspec cannot express a rule across fields.
_CONFERENCE_NAMES_ITS_SESSION = msgspec.Meta(
    extra_json_schema={
        "if": {"properties": {"sessionType": {"const": "CONFERENCE"}}, "required": ["sessionType"]},
        "then": {"properties": {"sessionId": {"type": "string"}}, "required": ["sessionId"]},
    }
)
SnapshotRequestBody = Annotated[SnapshotRequestWebCommand, _CONFERENCE_NAMES_ITS_SESSION]
SnapshotCameraRequestBody = Annotated[SnapshotCameraRequestWebCommand, _CONFERENCE_NAMES_ITS_SESSION]


# ---------------------------------------------------------------- views (HTTP responses)


class SnapshotRequestResult0(Payload, frozen=True):
    """What `request` answers (the seed's name)."""

    snapshot_id: str


class SnapshotUploadResult(Payload, frozen=True):
    snapshot_id: str


class SnapshotRequestResult(Payload, frozen=True):
    """How the request went: taken by the server (`snapshotAcquired`), or why it waits for the client."""

    snapshot_acquired: bool
    error: str | None = None


class SnapshotApprovalProcessingResult(Payload, frozen=True):
    succeeded: bool
    additional_information: str | None = None


class SignedUrl(Payload, frozen=True):
    url: str
    valid_until: datetime


class Snapshot(Payload, frozen=True):
    """One snapshot. `userId`/`userEndpointId` are the target (whose camera), `requester*` who asked."""

    id: str
    organization_id: str
    state: SnapshotState
    version: int
    created_at: datetime
    # When it last changed.
    timestamp: datetime
    requester_user_id: str
    user_endpoint_id: str
    session_type: SessionType = "UNKNOWN"
    session_id: str | None = None
    interaction_id: str | None = None
    application_id: ApplicationId | None = None
    requester_user_endpoint_id: str | None = None
    user_id: str | None = None
    type: str | None = None
    mime_type: str | None = None
    suffix: str | None = None
    # The image's name in the object store (None before it arrives and once discarded).
    path: str | None = None
    related_snapshot_id: str | None = None
    approved: bool = False
    request_processing_result: SnapshotRequestResult | None = None
    approval_processing_result: SnapshotApprovalProcessingResult | None = None


# ---------------------------------------------------------------- events


class SnapshotEvent(Payload, tag_field="type", tag=True, frozen=True):
    """What every snapshot event carries; `userId`/`userEndpointId` are whoever caused it."""

    id: str
    organization_id: str
    timestamp: datetime
    user_endpoint_id: str | None = None
    user_id: str | None = None
    # The session the snapshot belongs to (the conference id for a CONFERENCE session).
    session_id: str | None = None


class SnapshotRequestedEvent(SnapshotEvent, kw_only=True, frozen=True):
    """A participant asked for a snapshot of another endpoint's camera (`targetUserEndpointId`); the target
    (or the server) is now expected to capture it.
    """

    snapshot_id: str
    target_user_endpoint_id: str
    target_user_id: str | None = None
    snapshot_type: str | None = None
    interaction_id: str | None = None


class SnapshotAcquiredEvent(SnapshotEvent, kw_only=True, frozen=True):
    """A requested snapshot was captured and stored at `snapshotLocation` (`serverSide`: taken by the server
    from the target's published camera).
    """

    snapshot_id: str
    snapshot_location: str
    snapshot_type: str | None = None
    # True when the server took the picture from the target's published camera stream.
    server_side: bool = False


class SnapshotUploadedEvent(SnapshotEvent, kw_only=True, frozen=True):
    """A client uploaded a snapshot image, stored at `snapshotLocation` (possibly an edit of
    `relatedSnapshotId`).
    """

    snapshot_id: str
    snapshot_location: str
    snapshot_type: str | None = None
    related_snapshot_id: str | None = None


class SnapshotApprovedEvent(SnapshotEvent, kw_only=True, frozen=True):
    """A snapshot was approved: it is kept as the session's record."""

    snapshot_id: str
    snapshot_type: str | None = None


class SnapshotDiscardedEvent(SnapshotEvent, kw_only=True, frozen=True):
    """A snapshot was discarded: it no longer counts for the session."""

    snapshot_id: str


class SnapshotCameraRequestedEvent(SnapshotEvent, kw_only=True, frozen=True):
    """A participant asked another endpoint (`targetUserEndpointId`) to change its camera
    (`cameraRequestType`).
    """

    snapshot_camera_request_id: str
    camera_request_type: CameraRequestType
    target_user_endpoint_id: str
    target_user_id: str | None = None


class SnapshotCameraRequestProcessedEvent(SnapshotEvent, kw_only=True, frozen=True):
    """The target of a camera request reported whether it applied it (`succeeded`)."""

    snapshot_camera_request_id: str
    succeeded: bool
    additional_information: str | None = None


AnySnapshotEvent = (
    SnapshotRequestedEvent
    | SnapshotAcquiredEvent
    | SnapshotUploadedEvent
    | SnapshotApprovedEvent
    | SnapshotDiscardedEvent
    | SnapshotCameraRequestedEvent
    | SnapshotCameraRequestProcessedEvent
)


# ---------------------------------------------------------------- bus-only queries


class GetSnapshotQuery(Payload, frozen=True):
    snapshot_id: Id


class ListSnapshotsQuery(Payload, frozen=True):
    interaction_id: Id


class SignedPath(Payload, frozen=True):
    """A signed path (`/rtc-api/snapshots/signed/...?signature=`); the gateway puts its address in front."""

    path: str
    valid_until: datetime
    internal: bool = False


class SignedSnapshotQuery(Payload, frozen=True):
    """An unauthenticated read: the signature is the authority, so the caller's organization is not used."""

    snapshot_id: Id
    expiration: int
    signature: str


class SnapshotObject(Payload, frozen=True):
    """Where a snapshot's image lives, for the gateway to serve it."""

    snapshot_id: Id
    bucket: str
    object_name: str
    mime_type: str
