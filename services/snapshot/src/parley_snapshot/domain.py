"""Snapshots and camera requests, and their rules. Pure: no I/O, no clock, no bus.

A snapshot moves REQUESTED -> UPLOADED -> APPROVED, and REQUESTED or UPLOADED -> DISCARDED; `upload` and
a server-side capture create it UPLOADED directly. Each `decide_*` checks a command against the current
state and returns a `Decision`: the new state (version + 1), the events it raises, and what must follow
the commit (pushes to endpoints, an image to delete). The handlers commit the state and those effects in
one write, so an acknowledged command never loses its event.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Generic, Literal, TypedDict, TypeVar

import msgspec
from parley_common.contracts import snapshot as api
from parley_common.contracts.snapshot import IMAGE_FORMATS, MIME_ALIASES, Snapshot

# The shared refusals, re-exported: the rules raise them as `domain.NotFound(...)`.
from parley_common.errors import Conflict as Conflict
from parley_common.errors import DomainError as DomainError
from parley_common.errors import InvalidCommand as InvalidCommand
from parley_common.errors import NotAllowed as NotAllowed
from parley_common.errors import NotFound as NotFound

MAX_ID_LENGTH = 256
MAX_TEXT_LENGTH = 1024
CAMERA_STREAM_TYPES = frozenset({"CAM", "MIC_AND_CAM"})
_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")
S = TypeVar("S")


# ---------------------------------------------------------------- errors


class WrongState(Conflict):
    def __init__(self, snapshot: Snapshot, action: str) -> None:
        super().__init__(f"snapshot {snapshot.id} is {snapshot.state}: it cannot be {action}")


# ---------------------------------------------------------------- values


class Actor(msgspec.Struct, frozen=True):
    """Who issues a command: an authenticated user of an organization, through one of their endpoints."""

    organization_id: str
    user_id: str
    endpoint_id: str | None = None


class EventContext(msgspec.Struct, frozen=True):
    """What a decision needs from outside the pure rules: fresh event ids and the time."""

    event_ids: tuple[str, ...]
    now: datetime

    def event_id(self, index: int = 0) -> str:
        return self.event_ids[index]


class StoredImage(msgspec.Struct, frozen=True):
    """An image that is in the object store under `object_name`."""

    object_name: str
    mime_type: str
    suffix: str


class Roster(msgspec.Struct, frozen=True):
    """Who is in a conference: endpoint id -> user id, and the endpoints publishing a camera."""

    conference_id: str
    members: dict[str, str]
    cameras: frozenset[str] = frozenset()


class Push(msgspec.Struct, frozen=True):
    """An event to deliver to one endpoint's push channel after the commit."""

    event_index: int
    user_endpoint_id: str


class Decision(msgspec.Struct, Generic[S], frozen=True):
    state: S
    events: tuple[api.AnySnapshotEvent, ...] = ()
    pushes: tuple[Push, ...] = ()
    # An image that is no longer referenced once the decision is committed.
    delete_object: str | None = None


CameraRequestState = Literal["PENDING", "ANSWERED"]


class CameraRequest(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    organization_id: str
    version: int
    created_at: datetime
    timestamp: datetime
    camera_request_type: api.CameraRequestType
    session_type: api.SessionType
    session_id: str | None
    requester_user_id: str
    requester_user_endpoint_id: str
    target_user_endpoint_id: str
    target_user_id: str | None
    state: CameraRequestState = "PENDING"
    succeeded: bool | None = None
    additional_information: str | None = None


# ---------------------------------------------------------------- validation


def validate_id(name: str, value: str | None, *, required: bool = True) -> None:
    if value is None:
        if required:
            raise InvalidCommand(f"{name} is required")
        return
    if not value.strip():
        raise InvalidCommand(f"{name} must not be blank")
    if len(value) > MAX_ID_LENGTH or _CONTROL_CHARS.search(value):
        raise InvalidCommand(f"{name} must be at most {MAX_ID_LENGTH} printable characters")


def validate_text(name: str, value: str | None) -> None:
    if value is not None and len(value) > MAX_TEXT_LENGTH:
        raise InvalidCommand(f"{name} must be at most {MAX_TEXT_LENGTH} characters")


def image_format(
    detected_mime: str, declared_mime: str | None, declared_suffix: str | None
) -> tuple[str, str]:
    """The (mime type, suffix) to store an image under, from what its bytes are and what the client said.

    The bytes decide: a declared type that contradicts them is refused, so a PNG is never served as JPEG.
    A declared suffix is kept when it is one of the format's; otherwise the canonical one is used.
    """
    suffixes = IMAGE_FORMATS.get(detected_mime)
    if suffixes is None:
        raise InvalidCommand(f"image: {detected_mime} is not an accepted image format")
    if declared_mime is not None and declared_mime.strip():
        normalized = declared_mime.split(";")[0].strip().lower()
        normalized = MIME_ALIASES.get(normalized, normalized)
        if normalized != detected_mime:
            raise InvalidCommand(
                f"snapshotMimeType {declared_mime} does not match the image, which is {detected_mime}"
            )
    suffix = (declared_suffix or "").strip().lstrip(".").lower()
    return detected_mime, suffix if suffix in suffixes else suffixes[0]


def object_name(interaction_id: str | None, snapshot_id: str, suffix: str) -> str:
    """Where an image lives in the bucket: under interactions/{interactionId}/ when there is one."""
    if interaction_id:
        return f"interactions/{interaction_id}/{snapshot_id}.{suffix}"
    return f"snapshots/{snapshot_id}.{suffix}"


# ---------------------------------------------------------------- sessions


def check_members(
    roster: Roster, requester: Actor, target_endpoint_id: str, target_user_id: str | None
) -> str:
    """Both ends of a request must be in the conference, the requester through their own endpoint.

    Returns the target's user id (the conference knows it even when the request does not name it).
    """
    if requester.endpoint_id is None or roster.members.get(requester.endpoint_id) != requester.user_id:
        raise NotAllowed(
            f"userEndpointId {requester.endpoint_id} has not joined conference {roster.conference_id}"
        )
    target_user = roster.members.get(target_endpoint_id)
    if target_user is None:
        raise NotAllowed(
            f"targetUserEndpointId {target_endpoint_id} has not joined conference {roster.conference_id}"
        )
    if target_user_id is not None and target_user_id != target_user:
        raise InvalidCommand(f"targetUserId {target_user_id} is not the user of {target_endpoint_id}")
    return target_user


def session_of(session_type: api.SessionType, session_id: str | None) -> str | None:
    """The conference a request names, or None; a CONFERENCE session must name one."""
    if session_type != "CONFERENCE":
        validate_id("sessionId", session_id, required=False)
        return None
    validate_id("sessionId", session_id)
    return session_id


# ---------------------------------------------------------------- snapshots


def _check_owner(snapshot: Snapshot, actor: Actor) -> None:
    if snapshot.organization_id != actor.organization_id:
        raise NotFound(f"snapshot {snapshot.id} not found")


class _EventMeta(TypedDict):
    id: str
    organization_id: str
    timestamp: datetime
    user_endpoint_id: str | None
    user_id: str | None
    session_id: str | None


def _meta(actor: Actor, ctx: EventContext, session_id: str | None, index: int = 0) -> _EventMeta:
    """The fields every event shares: its id, the organization, when, who caused it, the session."""
    return _EventMeta(
        id=ctx.event_id(index),
        organization_id=actor.organization_id,
        timestamp=ctx.now,
        user_endpoint_id=actor.endpoint_id,
        user_id=actor.user_id,
        session_id=session_id,
    )


def _next(snapshot: Snapshot, ctx: EventContext, **changes: object) -> Snapshot:
    return msgspec.structs.replace(snapshot, version=snapshot.version + 1, timestamp=ctx.now, **changes)


def decide_request(
    *,
    snapshot_id: str,
    requester: Actor,
    body: api.SnapshotRequestWebCommand,
    target_user_id: str | None,
    ctx: EventContext,
) -> Decision[Snapshot]:
    """A new request, waiting for the target's client: the target is told on its push channel."""
    validate_id("targetUserEndpointId", body.target_user_endpoint_id)
    validate_id("userEndpointId", body.user_endpoint_id)
    validate_id("interactionId", body.interaction_id, required=False)
    validate_text("snapshotType", body.snapshot_type)
    snapshot = Snapshot(
        id=snapshot_id,
        organization_id=requester.organization_id,
        state="REQUESTED",
        version=0,
        created_at=ctx.now,
        timestamp=ctx.now,
        requester_user_id=requester.user_id,
        requester_user_endpoint_id=body.user_endpoint_id,
        user_endpoint_id=body.target_user_endpoint_id,
        user_id=target_user_id,
        session_type=body.session_type,
        session_id=body.session_id,
        interaction_id=body.interaction_id,
        application_id=body.application_id,
        type=body.snapshot_type,
    )
    event = api.SnapshotRequestedEvent(
        **_meta(requester, ctx, snapshot.session_id),
        snapshot_id=snapshot.id,
        target_user_endpoint_id=snapshot.user_endpoint_id,
        target_user_id=snapshot.user_id,
        snapshot_type=snapshot.type,
        interaction_id=snapshot.interaction_id,
    )
    return Decision(state=snapshot, events=(event,), pushes=(Push(0, snapshot.user_endpoint_id),))


def decide_captured(
    requested: Snapshot, requester: Actor, image: StoredImage, ctx: EventContext
) -> Decision[Snapshot]:
    """The server took the picture from the target's camera stream: UPLOADED at once.

    The target's client is not asked (no SnapshotRequestedEvent is pushed to it); both ends are told the
    picture was taken, the target so that being photographed is never silent.
    """
    snapshot = msgspec.structs.replace(
        requested,
        state="UPLOADED",
        mime_type=image.mime_type,
        suffix=image.suffix,
        path=image.object_name,
        request_processing_result=api.SnapshotRequestResult(snapshot_acquired=True),
    )
    requested_event = api.SnapshotRequestedEvent(
        **_meta(requester, ctx, snapshot.session_id, 0),
        snapshot_id=snapshot.id,
        target_user_endpoint_id=snapshot.user_endpoint_id,
        target_user_id=snapshot.user_id,
        snapshot_type=snapshot.type,
        interaction_id=snapshot.interaction_id,
    )
    acquired = api.SnapshotAcquiredEvent(
        **_meta(requester, ctx, snapshot.session_id, 1),
        snapshot_id=snapshot.id,
        snapshot_location=image.object_name,
        snapshot_type=snapshot.type,
        server_side=True,
    )
    pushes = [Push(1, snapshot.user_endpoint_id)]
    if (
        snapshot.requester_user_endpoint_id
        and snapshot.requester_user_endpoint_id != snapshot.user_endpoint_id
    ):
        pushes.insert(0, Push(1, snapshot.requester_user_endpoint_id))
    return Decision(state=snapshot, events=(requested_event, acquired), pushes=tuple(pushes))


def with_capture_error(decision: Decision[Snapshot], error: str) -> Decision[Snapshot]:
    """A client-flow request that records why the server could not take the picture itself."""
    state = msgspec.structs.replace(
        decision.state,
        request_processing_result=api.SnapshotRequestResult(snapshot_acquired=False, error=error),
    )
    return msgspec.structs.replace(decision, state=state)


def decide_acquire(
    snapshot: Snapshot, actor: Actor, image: StoredImage, snapshot_type: str | None, ctx: EventContext
) -> Decision[Snapshot]:
    """The target's client sends the picture; the requester is told."""
    _check_owner(snapshot, actor)
    if actor.endpoint_id != snapshot.user_endpoint_id or (
        snapshot.user_id is not None and snapshot.user_id != actor.user_id
    ):
        raise NotAllowed(
            f"only the target of snapshot {snapshot.id} ({snapshot.user_endpoint_id}) can acquire it"
        )
    if snapshot.state != "REQUESTED":
        raise WrongState(snapshot, "acquired")
    validate_text("snapshotType", snapshot_type)
    new_type = snapshot_type or snapshot.type
    state = _next(
        snapshot,
        ctx,
        state="UPLOADED",
        user_id=snapshot.user_id or actor.user_id,
        type=new_type,
        mime_type=image.mime_type,
        suffix=image.suffix,
        path=image.object_name,
    )
    event = api.SnapshotAcquiredEvent(
        **_meta(actor, ctx, state.session_id),
        snapshot_id=state.id,
        snapshot_location=image.object_name,
        snapshot_type=new_type,
    )
    pushes = (Push(0, snapshot.requester_user_endpoint_id),) if snapshot.requester_user_endpoint_id else ()
    return Decision(state=state, events=(event,), pushes=pushes)


def _check_requester(snapshot: Snapshot, actor: Actor, action: str) -> None:
    _check_owner(snapshot, actor)
    if actor.user_id != snapshot.requester_user_id:
        raise NotAllowed(f"only the requester of snapshot {snapshot.id} can {action} it")


def decide_approve(
    snapshot: Snapshot, actor: Actor, snapshot_type: str | None, ctx: EventContext
) -> Decision[Snapshot]:
    _check_requester(snapshot, actor, "approve")
    if snapshot.state != "UPLOADED":
        raise WrongState(snapshot, "approved")
    validate_text("snapshotType", snapshot_type)
    new_type = snapshot_type or snapshot.type
    state = _next(
        snapshot,
        ctx,
        state="APPROVED",
        approved=True,
        type=new_type,
        approval_processing_result=api.SnapshotApprovalProcessingResult(succeeded=True),
    )
    event = api.SnapshotApprovedEvent(
        **_meta(actor, ctx, state.session_id),
        snapshot_id=state.id,
        snapshot_type=new_type,
    )
    return Decision(state=state, events=(event,), pushes=(Push(0, snapshot.user_endpoint_id),))


def decide_discard(snapshot: Snapshot, actor: Actor, ctx: EventContext) -> Decision[Snapshot]:
    """The requester drops a pending request or a picture it does not want; the image is deleted."""
    _check_requester(snapshot, actor, "discard")
    if snapshot.state not in ("REQUESTED", "UPLOADED"):
        raise WrongState(snapshot, "discarded")
    state = _next(snapshot, ctx, state="DISCARDED", approved=False, path=None)
    event = api.SnapshotDiscardedEvent(
        **_meta(actor, ctx, state.session_id),
        snapshot_id=state.id,
    )
    return Decision(
        state=state,
        events=(event,),
        pushes=(Push(0, snapshot.user_endpoint_id),),
        delete_object=snapshot.path,
    )


def decide_upload(
    *,
    snapshot_id: str,
    uploader: Actor,
    form: api.SnapshotUploadForm,
    related: Snapshot | None,
    image: StoredImage,
    ctx: EventContext,
) -> Decision[Snapshot]:
    """A picture the requester already has (e.g. an edited one): UPLOADED, linked to `related`."""
    validate_id("interactionId", form.interaction_id)
    validate_id("targetUserEndpointId", form.target_user_endpoint_id)
    validate_id("targetUserId", form.target_user_id)
    validate_id("userEndpointId", form.user_endpoint_id)
    validate_id("applicationId", form.application_id)
    validate_text("snapshotType", form.snapshot_type)
    if form.related_snapshot_id is not None and (
        related is None or related.organization_id != uploader.organization_id
    ):
        raise NotFound(f"relatedSnapshotId {form.related_snapshot_id} not found")
    snapshot = Snapshot(
        id=snapshot_id,
        organization_id=uploader.organization_id,
        state="UPLOADED",
        version=0,
        created_at=ctx.now,
        timestamp=ctx.now,
        requester_user_id=uploader.user_id,
        requester_user_endpoint_id=form.user_endpoint_id,
        user_endpoint_id=form.target_user_endpoint_id,
        user_id=form.target_user_id,
        session_type=related.session_type if related else "UNKNOWN",
        session_id=related.session_id if related else None,
        interaction_id=form.interaction_id,
        application_id=api.ApplicationId(id=form.application_id),
        type=form.snapshot_type,
        mime_type=image.mime_type,
        suffix=image.suffix,
        path=image.object_name,
        related_snapshot_id=form.related_snapshot_id,
    )
    event = api.SnapshotUploadedEvent(
        **_meta(uploader, ctx, snapshot.session_id),
        snapshot_id=snapshot.id,
        snapshot_location=image.object_name,
        snapshot_type=snapshot.type,
        related_snapshot_id=snapshot.related_snapshot_id,
    )
    return Decision(state=snapshot, events=(event,))


def readable(snapshot: Snapshot, organization_id: str) -> Snapshot:
    """A snapshot as its organization sees it; another organization's is unknown (404)."""
    if snapshot.organization_id != organization_id:
        raise NotFound(f"snapshot {snapshot.id} not found")
    return snapshot


def image_of(snapshot: Snapshot) -> StoredImage:
    """The image of a snapshot that has one (UPLOADED or APPROVED)."""
    if snapshot.state not in ("UPLOADED", "APPROVED") or snapshot.path is None:
        raise Conflict(f"snapshot {snapshot.id} is {snapshot.state}: it has no image")
    return StoredImage(
        object_name=snapshot.path,
        mime_type=snapshot.mime_type or "application/octet-stream",
        suffix=snapshot.suffix or "",
    )


# ---------------------------------------------------------------- camera requests


def decide_camera_request(
    *,
    request_id: str,
    requester: Actor,
    body: api.SnapshotCameraRequestWebCommand,
    target_user_id: str | None,
    ctx: EventContext,
) -> Decision[CameraRequest]:
    """Ask the target's client to switch camera or toggle its flash."""
    validate_id("targetUserEndpointId", body.target_user_endpoint_id)
    validate_id("userEndpointId", body.user_endpoint_id)
    request = CameraRequest(
        id=request_id,
        organization_id=requester.organization_id,
        version=0,
        created_at=ctx.now,
        timestamp=ctx.now,
        camera_request_type=body.camera_request_type,
        session_type=body.session_type,
        session_id=body.session_id,
        requester_user_id=requester.user_id,
        requester_user_endpoint_id=body.user_endpoint_id,
        target_user_endpoint_id=body.target_user_endpoint_id,
        target_user_id=target_user_id,
    )
    event = api.SnapshotCameraRequestedEvent(
        **_meta(requester, ctx, request.session_id),
        snapshot_camera_request_id=request.id,
        camera_request_type=request.camera_request_type,
        target_user_endpoint_id=request.target_user_endpoint_id,
        target_user_id=request.target_user_id,
    )
    return Decision(state=request, events=(event,), pushes=(Push(0, request.target_user_endpoint_id),))


def decide_camera_respond(
    request: CameraRequest, actor: Actor, body: api.SnapshotCameraRequestRespondWebCommand, ctx: EventContext
) -> Decision[CameraRequest]:
    """The target's client reports how the camera request went; the requester is told."""
    if request.organization_id != actor.organization_id:
        raise NotFound(f"camera request {request.id} not found")
    if (actor.endpoint_id is not None and actor.endpoint_id != request.target_user_endpoint_id) or (
        request.target_user_id is not None and request.target_user_id != actor.user_id
    ):
        raise NotAllowed(f"only the target of camera request {request.id} can answer it")
    if request.state != "PENDING":
        raise Conflict(f"camera request {request.id} has already been answered")
    validate_text("additionalInformation", body.additional_information)
    state = msgspec.structs.replace(
        request,
        version=request.version + 1,
        timestamp=ctx.now,
        state="ANSWERED",
        succeeded=body.succeeded,
        additional_information=body.additional_information,
        target_user_id=request.target_user_id or actor.user_id,
    )
    event = api.SnapshotCameraRequestProcessedEvent(
        **_meta(actor, ctx, request.session_id),
        snapshot_camera_request_id=request.id,
        succeeded=body.succeeded,
        additional_information=body.additional_information,
    )
    return Decision(state=state, events=(event,), pushes=(Push(0, request.requester_user_endpoint_id),))
