"""The snapshot rules, on pure values: no storage, no bus."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest
from parley_common.contracts import snapshot as api
from parley_snapshot import domain
from parley_snapshot.domain import Actor, EventContext, Roster, StoredImage

T0 = datetime(2026, 1, 1, tzinfo=UTC)
_ids = itertools.count()
ALICE = Actor("org", "alice", "alice-ep")
BOB = Actor("org", "bob", "bob-ep")
IMAGE = StoredImage(object_name="interactions/i1/s1.jpg", mime_type="image/jpeg", suffix="jpg")


def ctx(at: datetime = T0) -> EventContext:
    return EventContext(event_ids=(f"e{next(_ids)}", f"e{next(_ids)}"), now=at)


def request_body(**overrides: object) -> api.SnapshotRequestWebCommand:
    fields: dict[str, object] = {
        "target_user_endpoint_id": "bob-ep",
        "user_endpoint_id": "alice-ep",
        "interaction_id": "i1",
        "session_type": "CONFERENCE",
        "session_id": "c1",
        "snapshot_type": "ID_CARD",
    }
    return api.SnapshotRequestWebCommand(**{**fields, **overrides})  # type: ignore[arg-type]


def requested() -> api.Snapshot:
    return domain.decide_request(
        snapshot_id="s1", requester=ALICE, body=request_body(), target_user_id="bob", ctx=ctx()
    ).state


def uploaded() -> api.Snapshot:
    return domain.decide_acquire(requested(), BOB, IMAGE, None, ctx()).state


# ---------------------------------------------------------------- request


def test_request_waits_for_the_target_and_pushes_it_the_requested_event() -> None:
    decision = domain.decide_request(
        snapshot_id="s1", requester=ALICE, body=request_body(), target_user_id="bob", ctx=ctx()
    )
    snapshot = decision.state
    assert (snapshot.state, snapshot.version, snapshot.path) == ("REQUESTED", 0, None)
    assert (snapshot.requester_user_id, snapshot.requester_user_endpoint_id) == ("alice", "alice-ep")
    assert (snapshot.user_id, snapshot.user_endpoint_id) == ("bob", "bob-ep")
    (event,) = decision.events
    assert isinstance(event, api.SnapshotRequestedEvent)
    assert (event.snapshot_id, event.target_user_endpoint_id, event.snapshot_type) == (
        "s1",
        "bob-ep",
        "ID_CARD",
    )
    assert (event.user_id, event.user_endpoint_id, event.session_id) == ("alice", "alice-ep", "c1")
    assert decision.pushes == (domain.Push(0, "bob-ep"),)


def test_a_server_capture_is_uploaded_at_once_and_tells_both_ends_but_asks_nobody() -> None:
    first = domain.decide_request(
        snapshot_id="s1", requester=ALICE, body=request_body(), target_user_id="bob", ctx=ctx()
    )
    decision = domain.decide_captured(first.state, ALICE, IMAGE, ctx())
    snapshot = decision.state
    assert (snapshot.state, snapshot.version, snapshot.path) == ("UPLOADED", 0, IMAGE.object_name)
    assert snapshot.request_processing_result == api.SnapshotRequestResult(snapshot_acquired=True)
    requested_event, acquired = decision.events
    assert isinstance(requested_event, api.SnapshotRequestedEvent)
    assert isinstance(acquired, api.SnapshotAcquiredEvent)
    assert acquired.server_side and acquired.snapshot_location == IMAGE.object_name
    # Nobody is pushed the request (the client must not answer it); both are told of the picture.
    assert {p.user_endpoint_id for p in decision.pushes} == {"alice-ep", "bob-ep"}
    assert all(p.event_index == 1 for p in decision.pushes)


def test_a_failed_capture_says_why_and_keeps_the_client_flow() -> None:
    first = domain.decide_request(
        snapshot_id="s1", requester=ALICE, body=request_body(), target_user_id="bob", ctx=ctx()
    )
    decision = domain.with_capture_error(first, "media node unavailable")
    assert decision.state.state == "REQUESTED"
    assert decision.state.request_processing_result == api.SnapshotRequestResult(
        snapshot_acquired=False, error="media node unavailable"
    )
    assert decision.pushes == first.pushes


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"target_user_endpoint_id": " "}, "targetUserEndpointId must not be blank"),
        ({"interaction_id": "x" * 300}, "interactionId must be at most"),
        ({"interaction_id": "a\nb"}, "interactionId must be at most"),
        ({"snapshot_type": "t" * 2000}, "snapshotType must be at most"),
    ],
)
def test_request_refuses_bad_input_naming_the_field(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(domain.InvalidCommand, match=message):
        domain.decide_request(
            snapshot_id="s1", requester=ALICE, body=request_body(**overrides), target_user_id=None, ctx=ctx()
        )


def test_a_conference_session_needs_its_id() -> None:
    with pytest.raises(domain.InvalidCommand, match="sessionId is required"):
        domain.session_of("CONFERENCE", None)
    assert domain.session_of("CONFERENCE", "c1") == "c1"
    assert domain.session_of("CALL", "call-7") is None


def test_both_ends_must_be_members_of_the_conference() -> None:
    roster = Roster(conference_id="c1", members={"alice-ep": "alice", "bob-ep": "bob"})
    assert domain.check_members(roster, ALICE, "bob-ep", None) == "bob"
    with pytest.raises(domain.NotAllowed, match="userEndpointId mallory-ep has not joined"):
        domain.check_members(roster, Actor("org", "mallory", "mallory-ep"), "bob-ep", None)
    # Someone else's endpoint does not make the caller a member.
    with pytest.raises(domain.NotAllowed):
        domain.check_members(roster, Actor("org", "mallory", "alice-ep"), "bob-ep", None)
    with pytest.raises(domain.NotAllowed, match="targetUserEndpointId carol-ep has not joined"):
        domain.check_members(roster, ALICE, "carol-ep", None)
    with pytest.raises(domain.InvalidCommand, match="targetUserId carol is not the user of bob-ep"):
        domain.check_members(roster, ALICE, "bob-ep", "carol")


# ---------------------------------------------------------------- the client flow


def test_acquire_uploads_and_tells_the_requester() -> None:
    decision = domain.decide_acquire(requested(), BOB, IMAGE, "SELFIE", ctx(T0 + timedelta(seconds=3)))
    snapshot = decision.state
    assert (snapshot.state, snapshot.version, snapshot.type) == ("UPLOADED", 1, "SELFIE")
    assert (snapshot.path, snapshot.mime_type, snapshot.suffix) == (IMAGE.object_name, "image/jpeg", "jpg")
    assert snapshot.timestamp == T0 + timedelta(seconds=3) and snapshot.created_at == T0
    (event,) = decision.events
    assert isinstance(event, api.SnapshotAcquiredEvent)
    assert (event.snapshot_location, event.user_id, event.server_side) == (IMAGE.object_name, "bob", False)
    assert decision.pushes == (domain.Push(0, "alice-ep"),)


def test_only_the_target_acquires_and_only_once() -> None:
    with pytest.raises(domain.NotAllowed):
        domain.decide_acquire(requested(), ALICE, IMAGE, None, ctx())
    with pytest.raises(domain.NotAllowed):  # the target's endpoint, someone else's account
        domain.decide_acquire(requested(), Actor("org", "mallory", "bob-ep"), IMAGE, None, ctx())
    with pytest.raises(domain.Conflict, match="is UPLOADED: it cannot be acquired"):
        domain.decide_acquire(uploaded(), BOB, IMAGE, None, ctx())


def test_approve_keeps_the_picture_with_an_optional_type_override() -> None:
    decision = domain.decide_approve(uploaded(), ALICE, "PASSPORT", ctx())
    snapshot = decision.state
    assert (snapshot.state, snapshot.approved, snapshot.type, snapshot.version) == (
        "APPROVED",
        True,
        "PASSPORT",
        2,
    )
    assert snapshot.approval_processing_result == api.SnapshotApprovalProcessingResult(succeeded=True)
    (event,) = decision.events
    assert isinstance(event, api.SnapshotApprovedEvent) and event.snapshot_type == "PASSPORT"
    assert domain.decide_approve(uploaded(), ALICE, None, ctx()).state.type == "ID_CARD"


def test_approve_needs_the_requester_and_an_uploaded_picture() -> None:
    with pytest.raises(domain.NotAllowed, match="only the requester"):
        domain.decide_approve(uploaded(), BOB, None, ctx())
    with pytest.raises(domain.Conflict, match="is REQUESTED: it cannot be approved"):
        domain.decide_approve(requested(), ALICE, None, ctx())
    approved = domain.decide_approve(uploaded(), ALICE, None, ctx()).state
    with pytest.raises(domain.Conflict, match="is APPROVED"):
        domain.decide_approve(approved, ALICE, None, ctx())


def test_discard_forgets_the_image_and_asks_for_its_deletion() -> None:
    decision = domain.decide_discard(uploaded(), ALICE, ctx())
    assert (decision.state.state, decision.state.path) == ("DISCARDED", None)
    assert decision.delete_object == IMAGE.object_name
    assert isinstance(decision.events[0], api.SnapshotDiscardedEvent)
    # A pending request can be dropped too (nothing to delete); an approved or discarded one cannot.
    assert domain.decide_discard(requested(), ALICE, ctx()).delete_object is None
    with pytest.raises(domain.Conflict, match="is DISCARDED"):
        domain.decide_discard(decision.state, ALICE, ctx())
    with pytest.raises(domain.Conflict, match="is APPROVED"):
        domain.decide_discard(domain.decide_approve(uploaded(), ALICE, None, ctx()).state, ALICE, ctx())


def test_another_organization_sees_nothing() -> None:
    outsider = Actor("other-org", "alice", "alice-ep")
    for decide in (
        lambda: domain.decide_acquire(requested(), Actor("other-org", "bob", "bob-ep"), IMAGE, None, ctx()),
        lambda: domain.decide_approve(uploaded(), outsider, None, ctx()),
        lambda: domain.decide_discard(uploaded(), outsider, ctx()),
        lambda: domain.readable(uploaded(), "other-org"),
    ):
        with pytest.raises(domain.NotFound):
            decide()


def test_the_image_of_a_snapshot() -> None:
    assert domain.image_of(uploaded()) == IMAGE
    with pytest.raises(domain.Conflict, match="has no image"):
        domain.image_of(requested())


# ---------------------------------------------------------------- upload


def upload_form(**overrides: object) -> api.SnapshotUploadForm:
    fields: dict[str, object] = {
        "application_id": "app",
        "image": "staged-1",
        "interaction_id": "i1",
        "snapshot_mime_type": "image/png",
        "snapshot_suffix": "png",
        "snapshot_type": "EDITED",
        "target_user_endpoint_id": "bob-ep",
        "target_user_id": "bob",
        "user_endpoint_id": "alice-ep",
    }
    return api.SnapshotUploadForm(**{**fields, **overrides})  # type: ignore[arg-type]


def test_upload_creates_an_uploaded_snapshot_linked_to_its_related_one() -> None:
    related = uploaded()
    decision = domain.decide_upload(
        snapshot_id="s2",
        uploader=ALICE,
        form=upload_form(related_snapshot_id=related.id),
        related=related,
        image=IMAGE,
        ctx=ctx(),
    )
    snapshot = decision.state
    assert (snapshot.state, snapshot.related_snapshot_id, snapshot.session_id) == ("UPLOADED", "s1", "c1")
    assert snapshot.application_id == api.ApplicationId(id="app")
    assert isinstance(decision.events[0], api.SnapshotUploadedEvent)
    with pytest.raises(domain.NotFound, match="relatedSnapshotId s9 not found"):
        domain.decide_upload(
            snapshot_id="s3",
            uploader=ALICE,
            form=upload_form(related_snapshot_id="s9"),
            related=None,
            image=IMAGE,
            ctx=ctx(),
        )


# ---------------------------------------------------------------- images


def test_the_bytes_decide_the_format() -> None:
    assert domain.image_format("image/jpeg", "image/jpg", "JPEG") == ("image/jpeg", "jpeg")
    assert domain.image_format("image/png", "image/png", "jpg") == ("image/png", "png")
    assert domain.image_format("image/webp", None, None) == ("image/webp", "webp")
    with pytest.raises(domain.InvalidCommand, match="snapshotMimeType image/png does not match"):
        domain.image_format("image/jpeg", "image/png", "png")


def test_images_of_an_interaction_live_under_its_folder() -> None:
    assert domain.object_name("i1", "s1", "jpg") == "interactions/i1/s1.jpg"
    assert domain.object_name(None, "s1", "png") == "snapshots/s1.png"


# ---------------------------------------------------------------- camera requests


def camera_request() -> domain.CameraRequest:
    body = api.SnapshotCameraRequestWebCommand(
        camera_request_type="FLASH_ON", target_user_endpoint_id="bob-ep", user_endpoint_id="alice-ep"
    )
    decision = domain.decide_camera_request(
        request_id="r1", requester=ALICE, body=body, target_user_id="bob", ctx=ctx()
    )
    (event,) = decision.events
    assert isinstance(event, api.SnapshotCameraRequestedEvent)
    assert (event.camera_request_type, event.snapshot_camera_request_id) == ("FLASH_ON", "r1")
    assert decision.pushes == (domain.Push(0, "bob-ep"),)
    return decision.state


def test_a_camera_request_is_answered_once_by_its_target() -> None:
    answer = api.SnapshotCameraRequestRespondWebCommand(
        snapshot_camera_request_id="r1", succeeded=True, additional_information="torch on"
    )
    with pytest.raises(domain.NotAllowed):
        domain.decide_camera_respond(camera_request(), Actor("org", "mallory", None), answer, ctx())
    decision = domain.decide_camera_respond(camera_request(), BOB, answer, ctx())
    assert (decision.state.state, decision.state.succeeded, decision.state.version) == ("ANSWERED", True, 1)
    (event,) = decision.events
    assert isinstance(event, api.SnapshotCameraRequestProcessedEvent)
    assert (event.succeeded, event.additional_information) == (True, "torch on")
    assert decision.pushes == (domain.Push(0, "alice-ep"),)
    with pytest.raises(domain.Conflict, match="already been answered"):
        domain.decide_camera_respond(decision.state, BOB, answer, ctx())
    with pytest.raises(domain.NotFound):
        domain.decide_camera_respond(camera_request(), Actor("other-org", "bob", "bob-ep"), answer, ctx())
