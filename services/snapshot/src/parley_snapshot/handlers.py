"""Use cases of the snapshot service: one method per command or query, each answering a reply.

Every method takes the bus request (caller + body) and returns `Accepted[...]` or `Rejected`; domain
refusals become rejections with their HTTP status, so nothing here raises to the transport.

Images arrive two ways. Client pictures (`acquire`, `upload`) were staged in the object store by the
gateway: they are decoded here (the authoritative check), copied to their final name, and the staged copy is
dropped whatever the outcome. A server-side capture comes as a JPEG in the conference service's reply and is
stored directly. Either way the image is stored before the commit that refers to it, and deleted again
if that commit does not happen.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

from parley_common import errors
from parley_common.clock import new_id, utcnow
from parley_common.contracts import snapshot as api
from parley_common.contracts.base import Empty
from parley_common.contracts.rpc import Accepted, Caller, Request
from parley_common.contracts.snapshot import Snapshot
from parley_common.errors import Busy, Reply, TooLarge
from parley_common.log import get_logger
from parley_common.outbox import Outbox

from parley_snapshot import domain, images
from parley_snapshot.adapters.conferences import ConferenceDirectory
from parley_snapshot.adapters.images import ImageStore, StagedImageMissing
from parley_snapshot.adapters.outbox import effects_of
from parley_snapshot.adapters.repository import NEWEST_FIRST, Conflict, Effect, Records, Versioned
from parley_snapshot.domain import Actor, CameraRequest, Decision, EventContext, StoredImage
from parley_snapshot.signing import UrlSigner

log = get_logger(__name__)
MAX_ATTEMPTS = 4
# How long a command's answer waits for the effects of its commit (see UnitOfWork).
SETTLE_WAIT_SECONDS = 0.5
LIST_LIMIT = 1000
S = TypeVar("S", bound=Versioned)


# One place for the log context of every use case, and the object store's errors answered 503 too.
rejecting = errors.rejecting(
    context={"snapshot_id": "snapshot_id", "user_endpoint_id": "user_endpoint_id"}, object_store=True
)


class UnitOfWork:
    """The two record collections and the outbox: a commit writes state + effects, then hands them over.

    The command's answer waits for the effects (so a pushed event is on its way, an image deleted, when the
    client hears back) but at most `settle_wait` seconds: with NATS struggling they go on in the
    background, and what still fails is retried from storage by the outbox's recovery.
    """

    def __init__(
        self,
        snapshots: Records[Snapshot],
        camera_requests: Records[CameraRequest],
        outbox: Outbox,
        *,
        settle_wait: float = SETTLE_WAIT_SECONDS,
    ) -> None:
        self.snapshots = snapshots
        self.camera_requests = camera_requests
        self._outbox = outbox
        self._settle_wait = settle_wait

    async def add(self, records: Records[S], decision: Decision[S]) -> None:
        effects = effects_of(decision)
        await records.insert(decision.state, effects)
        await self._settle(records, decision.state, effects)

    async def _settle(self, records: Records[S], state: S, effects: list[Effect]) -> None:
        owed = records.owing(state, effects)
        self._outbox.committed(owed)
        await self._outbox.carried_out(owed, self._settle_wait)

    async def change(
        self, records: Records[S], record_id: str, decide: Callable[[S], Decision[S]]
    ) -> Decision[S]:
        """Decide on the latest state and commit; when another replica committed first, decide again."""
        async with records.lock(record_id):
            for _ in range(MAX_ATTEMPTS):
                found = await records.get(record_id)
                if found is None:
                    raise errors.NotFound(f"{_noun(records)} {record_id} not found")
                current, owed = found
                decision = decide(current)
                # Effects a previous commit still owes ride along: whoever settles next does them all.
                effects = [*owed, *effects_of(decision)]
                try:
                    await records.replace(decision.state, effects, expected_version=current.version)
                except Conflict:
                    log.info("concurrent change, retrying", record=record_id)
                    continue
                await self._settle(records, decision.state, effects)
                return decision
        raise Busy(f"{_noun(records)} {record_id} is changing too fast, retry")


def _noun(records: Records[Any]) -> str:
    return "snapshot" if records.name == "snapshots" else "camera request"


class SnapshotHandlers:
    def __init__(
        self,
        uow: UnitOfWork,
        images_store: ImageStore,
        conferences: ConferenceDirectory,
        signer: UrlSigner,
        *,
        max_bytes: int,
        url_ttl_seconds: float,
        capture_timeout_seconds: float,
        clock: Callable[[], datetime] = utcnow,
        ids: Callable[[], str] = new_id,
    ) -> None:
        self._uow = uow
        self._images = images_store
        self._conferences = conferences
        self._signer = signer
        self._max_bytes = max_bytes
        self._url_ttl = url_ttl_seconds
        self._capture_timeout = capture_timeout_seconds
        self._clock = clock
        self._ids = ids

    # ------------------------------------------------------------ plumbing

    def _context(self, events: int = 1) -> EventContext:
        return EventContext(event_ids=tuple(self._ids() for _ in range(events)), now=self._clock())

    async def _snapshot(self, caller: Caller, snapshot_id: str) -> Snapshot:
        domain.validate_id("snapshotId", snapshot_id)
        snapshot = await self._uow.snapshots.state(snapshot_id)
        if snapshot is None:
            raise domain.NotFound(f"snapshot {snapshot_id} not found")
        return domain.readable(snapshot, caller.organization_id)

    async def _target_user(
        self, caller: Caller, requester: Actor, session: str | None, target: str, target_user_id: str | None
    ) -> tuple[str | None, domain.Roster | None]:
        """The target's user id (from the conference when the session is one) and the conference's roster."""
        if session is None:
            return target_user_id, None
        roster = await self._conferences.roster(caller, session)
        return domain.check_members(roster, requester, target, target_user_id), roster

    async def _checked_image(
        self,
        staged_name: str,
        declared_mime: str,
        declared_suffix: str,
        snapshot_id: str,
        interaction: str | None,
    ) -> tuple[StoredImage, bytes]:
        """Decode a staged upload and decide its final name; raises 400/413 for what is not acceptable."""
        domain.validate_id("image", staged_name)
        try:
            data = await self._images.read_staged(staged_name)
        except StagedImageMissing:
            raise domain.InvalidCommand("image: the uploaded file was not received") from None
        if len(data) > self._max_bytes:
            raise TooLarge(f"image: {len(data)} bytes is more than the {self._max_bytes} accepted")
        try:
            info = await asyncio.to_thread(images.inspect, data)
        except images.NotAnImage as exc:
            raise domain.InvalidCommand(exc.message) from None
        mime_type, suffix = domain.image_format(info.mime_type, declared_mime, declared_suffix)
        name = domain.object_name(interaction, snapshot_id, suffix)
        return StoredImage(object_name=name, mime_type=mime_type, suffix=suffix), data

    async def _forget_image(self, name: str, records: Records[Snapshot], snapshot_id: str) -> None:
        """Delete an image stored for a commit that did not happen, unless the snapshot refers to it anyway
        (a concurrent acquire of the same snapshot on another replica wrote the same name and won)."""
        latest = await records.state(snapshot_id)
        if latest is None or latest.path != name:
            await self._images.delete(name)

    # ------------------------------------------------------------ commands

    @rejecting
    async def request(self, request: Request[api.SnapshotRequestWebCommand]) -> Reply:
        caller, body = request.caller, request.body
        requester = Actor(caller.organization_id, caller.user_id, body.user_endpoint_id)
        session = domain.session_of(body.session_type, body.session_id)
        target = body.target_user_endpoint_id
        target_user_id, roster = await self._target_user(
            caller, requester, session, target, body.target_user_id
        )
        snapshot_id = self._ids()
        ctx = self._context(events=2)
        decision = domain.decide_request(
            snapshot_id=snapshot_id, requester=requester, body=body, target_user_id=target_user_id, ctx=ctx
        )
        stored: str | None = None
        if roster is None:
            decision = domain.with_capture_error(decision, "server-side capture needs a CONFERENCE session")
        elif target not in roster.cameras:
            decision = domain.with_capture_error(
                decision, f"targetUserEndpointId {target} publishes no camera stream"
            )
        else:
            started = time.perf_counter()
            still = await self._conferences.still(
                caller, roster.conference_id, target, timeout=self._capture_timeout
            )
            if isinstance(still, str):
                log.info("server-side capture unavailable, asking the client", reason=still)
                decision = domain.with_capture_error(decision, still)
            else:
                stored = domain.object_name(body.interaction_id, snapshot_id, "jpg")
                await self._images.put(stored, still.jpeg)
                image = StoredImage(object_name=stored, mime_type="image/jpeg", suffix="jpg")
                decision = domain.decide_captured(decision.state, requester, image, ctx)
                log.info(
                    "snapshot captured server-side",
                    snapshot_id=snapshot_id,
                    width=still.width,
                    height=still.height,
                    ms=round((time.perf_counter() - started) * 1e3, 2),
                )
        try:
            await self._uow.add(self._uow.snapshots, decision)
        except BaseException:
            if stored is not None:
                await self._images.delete(stored)
            raise
        log.info("snapshot requested", snapshot_id=snapshot_id, state=decision.state.state)
        return Accepted(value=api.SnapshotRequestResult0(snapshot_id=snapshot_id))

    @rejecting
    async def acquire(self, request: Request[api.SnapshotAcquireForm]) -> Reply:
        caller, form = request.caller, request.body
        try:
            return await self._acquire(caller, form)
        finally:
            await self._images.drop_staged(form.image)

    async def _acquire(self, caller: Caller, form: api.SnapshotAcquireForm) -> Reply:
        actor = Actor(caller.organization_id, caller.user_id, form.user_endpoint_id)
        snapshot = await self._snapshot(caller, form.snapshot_id)
        # Refuse a wrong caller or state before touching the image.
        placeholder = StoredImage(object_name="", mime_type="", suffix="")
        domain.decide_acquire(snapshot, actor, placeholder, form.snapshot_type, self._context())
        image, data = await self._checked_image(
            form.image, form.snapshot_mime_type, form.snapshot_suffix, snapshot.id, snapshot.interaction_id
        )
        await self._images.put(image.object_name, data)
        records = self._uow.snapshots
        try:
            await self._uow.change(
                records,
                snapshot.id,
                lambda s: domain.decide_acquire(s, actor, image, form.snapshot_type, self._context()),
            )
        except BaseException:
            await self._forget_image(image.object_name, records, snapshot.id)
            raise
        log.info("snapshot acquired", bytes=len(data), mime_type=image.mime_type)
        return Accepted(value=Empty())

    @rejecting
    async def upload(self, request: Request[api.SnapshotUploadForm]) -> Reply:
        caller, form = request.caller, request.body
        try:
            return await self._upload(caller, form)
        finally:
            await self._images.drop_staged(form.image)

    async def _upload(self, caller: Caller, form: api.SnapshotUploadForm) -> Reply:
        uploader = Actor(caller.organization_id, caller.user_id, form.user_endpoint_id)
        related = None
        if form.related_snapshot_id is not None:
            domain.validate_id("relatedSnapshotId", form.related_snapshot_id)
            related = await self._uow.snapshots.state(form.related_snapshot_id)
        snapshot_id = self._ids()

        def decide(image: StoredImage) -> Decision[Snapshot]:
            return domain.decide_upload(
                snapshot_id=snapshot_id,
                uploader=uploader,
                form=form,
                related=related,
                image=image,
                ctx=self._context(),
            )

        decide(StoredImage(object_name="", mime_type="", suffix=""))  # refuse bad fields before the image
        image, data = await self._checked_image(
            form.image, form.snapshot_mime_type, form.snapshot_suffix, snapshot_id, form.interaction_id
        )
        await self._images.put(image.object_name, data)
        try:
            await self._uow.add(self._uow.snapshots, decide(image))
        except BaseException:
            await self._images.delete(image.object_name)
            raise
        log.info("snapshot uploaded", snapshot_id=snapshot_id, bytes=len(data), mime_type=image.mime_type)
        return Accepted(value=api.SnapshotUploadResult(snapshot_id=snapshot_id))

    @rejecting
    async def approve(self, request: Request[api.SnapshotApproveWebCommand]) -> Reply:
        caller, body = request.caller, request.body
        actor = Actor(caller.organization_id, caller.user_id, body.user_endpoint_id)
        domain.validate_id("snapshotId", body.snapshot_id)
        await self._uow.change(
            self._uow.snapshots,
            body.snapshot_id,
            lambda s: domain.decide_approve(s, actor, body.snapshot_type, self._context()),
        )
        log.info("snapshot approved")
        return Accepted(value=Empty())

    @rejecting
    async def discard(self, request: Request[api.SnapshotDiscardWebCommand]) -> Reply:
        caller, body = request.caller, request.body
        actor = Actor(caller.organization_id, caller.user_id, body.user_endpoint_id)
        domain.validate_id("snapshotId", body.snapshot_id)
        await self._uow.change(
            self._uow.snapshots, body.snapshot_id, lambda s: domain.decide_discard(s, actor, self._context())
        )
        log.info("snapshot discarded")
        return Accepted(value=Empty())

    @rejecting
    async def camera_request(self, request: Request[api.SnapshotCameraRequestWebCommand]) -> Reply:
        caller, body = request.caller, request.body
        requester = Actor(caller.organization_id, caller.user_id, body.user_endpoint_id)
        session = domain.session_of(body.session_type, body.session_id)
        target_user_id, _ = await self._target_user(
            caller, requester, session, body.target_user_endpoint_id, body.target_user_id
        )
        decision = domain.decide_camera_request(
            request_id=self._ids(),
            requester=requester,
            body=body,
            target_user_id=target_user_id,
            ctx=self._context(),
        )
        await self._uow.add(self._uow.camera_requests, decision)
        log.info("camera request sent", camera_request_id=decision.state.id, kind=body.camera_request_type)
        return Accepted(value=decision.state.id)

    @rejecting
    async def camera_request_respond(
        self, request: Request[api.SnapshotCameraRequestRespondWebCommand]
    ) -> Reply:
        caller, body = request.caller, request.body
        domain.validate_id("snapshotCameraRequestId", body.snapshot_camera_request_id)
        actor = Actor(caller.organization_id, caller.user_id, body.user_endpoint_id)
        decision = await self._uow.change(
            self._uow.camera_requests,
            body.snapshot_camera_request_id,
            lambda r: domain.decide_camera_respond(r, actor, body, self._context()),
        )
        log.info("camera request answered", succeeded=decision.state.succeeded)
        return Accepted(value=Empty())

    # ------------------------------------------------------------ queries

    @rejecting
    async def get(self, request: Request[api.GetSnapshotQuery]) -> Reply:
        return Accepted(value=await self._snapshot(request.caller, request.body.snapshot_id))

    @rejecting
    async def list(self, request: Request[api.ListSnapshotsQuery]) -> Reply:
        caller, body = request.caller, request.body
        domain.validate_id("interactionId", body.interaction_id)
        found = await self._uow.snapshots.find(
            {"org": caller.organization_id, "interaction": body.interaction_id},
            sort=NEWEST_FIRST,
            limit=LIST_LIMIT,
        )
        return Accepted(value=found)

    @rejecting
    async def signed_url(self, request: Request[api.CreateSnapshotSignedURLWebCommand]) -> Reply:
        caller, body = request.caller, request.body
        snapshot = await self._snapshot(caller, body.snapshot_id)
        domain.image_of(snapshot)  # 409 while (or once) there is nothing to serve
        expiration = self._signer.expiration(self._clock().timestamp(), self._url_ttl)
        return Accepted(
            value=api.SignedPath(
                path=self._signer.path(snapshot.id, expiration),
                valid_until=datetime.fromtimestamp(expiration, UTC),
                internal=body.create_internal_signed_url,
            )
        )

    @rejecting
    async def signed(self, request: Request[api.SignedSnapshotQuery]) -> Reply:
        """An unauthenticated read by signed URL: the signature decides, before anything is looked up."""
        body = request.body
        now = self._clock().timestamp()
        if not self._signer.verify(body.snapshot_id, body.expiration, body.signature, now=now):
            raise domain.NotAllowed("the signature is invalid, has expired or outlives the 7-day limit")
        snapshot = await self._uow.snapshots.state(body.snapshot_id)
        if snapshot is None:
            raise domain.NotFound(f"snapshot {body.snapshot_id} not found")
        try:
            image = domain.image_of(snapshot)
        except domain.Conflict:
            raise domain.NotFound(f"snapshot {snapshot.id} has no image") from None
        return Accepted(
            value=api.SnapshotObject(
                snapshot_id=snapshot.id,
                bucket=self._images.bucket,
                object_name=image.object_name,
                mime_type=image.mime_type,
            )
        )
