"""The snapshot API (`/rtc-api/snapshots/...`): each operation forwards to the snapshot service.

Images do not travel on the bus (a NATS message is 1 MiB at most, an image up to 10 MiB). For `acquire` and
`upload` the gateway reads the multipart body itself, stopping at PARLEY_SNAPSHOT_MAX_BYTES (413) and
refusing bytes that do not start like an image (400) before anything is stored; it then stages the bytes
in the object store and sends the command with the staged name. The snapshot service decodes the image
(the authoritative check), moves it to its final name and drops the staged copy whatever the outcome.
Signed URLs are served the other way round: the service checks the signature and says where the image is,
and the gateway streams it from the object store.
"""

from __future__ import annotations

import contextlib
from typing import Annotated, Any

import msgspec
import nats.errors
from aiohttp import BodyPartReader, web
from nats.js import JetStreamContext
from nats.js.errors import ObjectNotFoundError
from nats.js.object_store import ObjectStore
from parley_common.clock import new_id
from parley_common.config import env_float, env_int, env_opt
from parley_common.contracts import snapshot as api
from parley_common.contracts.base import MAX_INT64, Empty, Id
from parley_common.contracts.rpc import Caller, Rejected, Request
from parley_common.log import get_logger
from parley_common.messaging import subjects
from parley_common.messaging.rpc import RpcClient
from parley_common.messaging.streams import ensure_object_store

from parley_gateway.http import BadRequest, error_response, json_response, multipart_errors, parse_int
from parley_gateway.operations import Operation, QueryParam, authenticated, reply_response, rpc_command

log = get_logger(__name__)
TAG = "Snapshots"
BASE = "/rtc-api/snapshots"
# Text fields of a multipart body: how many, and how long each may be.
MAX_FIELDS = 32
MAX_FIELD_BYTES = 4096
CHUNK = 64 * 1024


class SnapshotGatewaySettings(msgspec.Struct, frozen=True, kw_only=True):
    max_bytes: int
    # `request` may wait for a server-side capture: its deadline is the usual one plus the capture's.
    request_timeout: float
    # `acquire` and `upload` decode and copy up to max_bytes in the service.
    image_timeout: float
    # Where signed URLs point: the public address of the API (default: the address the client used),
    # and the gateway's address inside the cluster (createInternalSignedUrl).
    public_base_url: str | None
    internal_base_url: str

    @classmethod
    def from_env(cls, *, request_timeout: float, port: int) -> SnapshotGatewaySettings:
        return cls(
            max_bytes=env_int("PARLEY_SNAPSHOT_MAX_BYTES", 10 * 1024 * 1024),
            request_timeout=request_timeout + env_float("PARLEY_SNAPSHOT_CAPTURE_TIMEOUT_SECONDS", 2.0),
            image_timeout=request_timeout + 5.0,
            public_base_url=_no_slash(env_opt("PARLEY_PUBLIC_BASE_URL")),
            internal_base_url=_no_slash(env_opt("PARLEY_INTERNAL_BASE_URL")) or f"http://127.0.0.1:{port}",
        )


def _no_slash(url: str | None) -> str | None:
    return url.rstrip("/") if url else None


class TooLarge(Exception):
    pass


def sniff_image(data: bytes) -> str | None:
    """The image type the bytes start like (JPEG, PNG, GIF, WebP), or None: a cheap first filter."""
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


async def _read_limited(part: BodyPartReader, limit: int) -> bytes:
    data = bytearray()
    while chunk := await part.read_chunk(CHUNK):
        data += chunk
        if len(data) > limit:
            raise TooLarge
    return bytes(data)


async def read_form(request: web.Request, max_bytes: int) -> tuple[dict[str, str], bytes | None]:
    """The text fields and the `image` part of a multipart/form-data body, stopping at `max_bytes`."""
    if request.content_type != "multipart/form-data":
        raise BadRequest("the body must be multipart/form-data")
    if (
        request.content_length is not None
        and request.content_length > max_bytes + MAX_FIELDS * MAX_FIELD_BYTES
    ):
        raise TooLarge
    fields: dict[str, str] = {}
    image: bytes | None = None
    with multipart_errors():  # aiohttp's refusals of a malformed body
        reader = await request.multipart()
        while (part := await reader.next()) is not None:
            if not isinstance(part, BodyPartReader):
                raise BadRequest("nested multipart bodies are not accepted")
            name = part.name or ""
            if name == "image":
                if image is not None:
                    raise BadRequest("image: only one file is accepted")
                image = await _read_limited(part, max_bytes)
            else:
                if len(fields) >= MAX_FIELDS:
                    raise BadRequest(f"at most {MAX_FIELDS} fields are accepted")
                try:
                    value = await _read_limited(part, MAX_FIELD_BYTES)
                except TooLarge:
                    raise BadRequest(f"{name}: at most {MAX_FIELD_BYTES} bytes") from None
                fields[name] = value.decode("utf-8", errors="replace")
    return fields, image


def snapshot_operations(
    rpc: RpcClient, js: JetStreamContext, settings: SnapshotGatewaySettings
) -> list[Operation]:
    buckets: dict[str, ObjectStore] = {}

    async def bucket(name: str) -> ObjectStore:
        if name not in buckets:
            buckets[name] = await ensure_object_store(js, name)
        return buckets[name]

    def command(
        op: str,
        body: Any,
        summary: str,
        response: Any = None,
        status: int = 204,
        timeout: float | None = None,
    ) -> Operation:
        return rpc_command(
            rpc,
            subjects.snapshot_command(op),
            path=f"{BASE}/{op}",
            operation_id=f"snapshot{op[0].upper()}{op[1:]}",
            summary=summary,
            tag=TAG,
            body=body,
            response=response,
            status=status,
            timeout=timeout,
        )

    async def staged_command(
        request: web.Request, caller: Caller, op: str, form_type: Any
    ) -> tuple[Any, web.StreamResponse | None]:
        """Read, check and stage a multipart body; the reply of the service, or the refusal."""
        try:
            fields, image = await read_form(request, settings.max_bytes)
        except TooLarge:
            return None, error_response(request, 413, f"image: more than {settings.max_bytes} bytes")
        try:
            form = msgspec.convert({**fields, "image": ""}, form_type)
        except msgspec.ValidationError as exc:
            raise BadRequest(str(exc)) from None
        if not image:
            raise BadRequest("image: a file part named image is required")
        if sniff_image(image) is None:
            raise BadRequest("image: the file is not a JPEG, PNG, WebP or GIF picture")
        staged = new_id()
        try:
            staging = await bucket(subjects.SNAPSHOT_STAGING_BUCKET)
            await staging.put(staged, image)
        except (nats.errors.Error, TimeoutError) as exc:
            log.warning("staging failed", error=repr(exc))
            return None, error_response(request, 503, "service unavailable: object store not answering")
        reply = await rpc.request(
            subjects.snapshot_command(op),
            Request(caller=caller, body=msgspec.structs.replace(form, image=staged)),
            api.SnapshotUploadResult if op == "upload" else Empty,
            timeout=settings.image_timeout,
        )
        if isinstance(reply, Rejected) and reply.status == 503:
            # The service may never have seen it; normally it drops the staged copy itself.
            with contextlib.suppress(nats.errors.Error, TimeoutError, ObjectNotFoundError):
                await staging.delete(staged)
        return reply, None

    async def acquire(request: web.Request, caller: Caller | None, _: Any) -> web.StreamResponse:
        reply, refusal = await staged_command(
            request, authenticated(caller), "acquire", api.SnapshotAcquireForm
        )
        return refusal or reply_response(request, reply, 204)

    async def upload(request: web.Request, caller: Caller | None, _: Any) -> web.StreamResponse:
        reply, refusal = await staged_command(
            request, authenticated(caller), "upload", api.SnapshotUploadForm
        )
        if refusal is not None:
            return refusal
        if isinstance(reply, Rejected):
            return reply_response(request, reply, 204)
        snapshot_id = reply.value.snapshot_id
        headers = {"Location": f"{BASE}/{snapshot_id}"}
        # A 204 cannot carry the seed's SnapshotUploadResult body: the id is in Location, and a client that
        # wants the body asks for it (RFC 7240) and gets 201 with it.
        if "return=representation" in request.headers.get("Prefer", ""):
            return json_response(reply.value, status=201, headers=headers)
        return web.Response(status=204, headers=headers)

    async def signed_url(request: web.Request, caller: Caller | None, decoded: Any) -> web.StreamResponse:
        reply = await rpc.request(
            subjects.snapshot_command("signedUrl"),
            Request(caller=authenticated(caller), body=decoded),
            api.SignedPath,
        )
        if isinstance(reply, Rejected):
            return reply_response(request, reply, 200)
        signed = reply.value
        base = settings.internal_base_url if signed.internal else settings.public_base_url
        if base is None:
            base = f"{request.scheme}://{request.host}"
        return json_response(api.SignedUrl(url=base + signed.path, valid_until=signed.valid_until))

    async def serve_signed(request: web.Request, _: Caller | None, __: Any) -> web.StreamResponse:
        expiration = parse_int(request.match_info["expiration"], "expiration")
        query = api.SignedSnapshotQuery(
            snapshot_id=request.match_info["snapshotId"],
            expiration=expiration,
            signature=request.query.get("signature", ""),
        )
        # No token here: the signature is the credential, checked by the service.
        anonymous = Caller(organization_id="", user_id="", request_id=str(request["request_id"]))
        reply = await rpc.request(
            subjects.snapshot_query("signed"), Request(caller=anonymous, body=query), api.SnapshotObject
        )
        if isinstance(reply, Rejected):
            return reply_response(request, reply, 200)
        location = reply.value
        try:
            found = await (await bucket(location.bucket)).get(location.object_name)
        except ObjectNotFoundError:
            return error_response(request, 404, f"snapshot {location.snapshot_id} has no image")
        except (nats.errors.Error, TimeoutError):
            return error_response(request, 503, "service unavailable: object store not answering")
        filename = location.object_name.rsplit("/", 1)[-1]
        return web.Response(
            body=found.data,
            content_type=location.mime_type,
            headers={
                "Content-Disposition": f'inline; filename="{filename}"',
                "Cache-Control": "private, no-store",
                "X-Content-Type-Options": "nosniff",
            },
        )

    async def get_one(request: web.Request, caller: Caller | None, _: Any) -> web.StreamResponse:
        query = api.GetSnapshotQuery(snapshot_id=request.match_info["snapshotId"])
        reply = await rpc.request(
            subjects.snapshot_query("get"), Request(caller=authenticated(caller), body=query), api.Snapshot
        )
        return reply_response(request, reply, 200)

    async def list_snapshots(request: web.Request, caller: Caller | None, _: Any) -> web.StreamResponse:
        interaction_id = request.query.get("interactionId")
        if not interaction_id:
            raise BadRequest("query parameter interactionId is required")
        reply = await rpc.request(
            subjects.snapshot_query("list"),
            Request(caller=authenticated(caller), body=api.ListSnapshotsQuery(interaction_id=interaction_id)),
            list[api.Snapshot],
        )
        return reply_response(request, reply, 200)

    def multipart(op: str, form: Any, summary: str, handler: Any, response: Any = None) -> Operation:
        return Operation(
            method="POST",
            path=f"{BASE}/{op}",
            operation_id=f"snapshot{op[0].upper()}{op[1:]}",
            summary=summary,
            tag=TAG,
            handler=handler,
            form=form,
            response=response,
            status=204,
            errors=(400, 401, 403, 404, 409, 413, 503),
        )

    return [
        command(
            "request",
            api.SnapshotRequestBody,
            "Request a snapshot of a target's camera (taken by the server when the target publishes one)",
            api.SnapshotRequestResult0,
            200,
            timeout=settings.request_timeout,
        ),
        multipart(
            "acquire", api.SnapshotAcquireForm, "The target's answer to a request: the picture", acquire
        ),
        multipart(
            "upload",
            api.SnapshotUploadForm,
            "Upload a picture directly (204 + Location; with Prefer: return=representation, 201 + its id)",
            upload,
            api.SnapshotUploadResult,
        ),
        command("approve", api.SnapshotApproveWebCommand, "Keep an uploaded snapshot"),
        command("discard", api.SnapshotDiscardWebCommand, "Drop a snapshot (its image is deleted)"),
        Operation(
            method="POST",
            path=f"{BASE}/signedUrl",
            operation_id="snapshotSignedUrl",
            summary="A URL that serves the snapshot's image without a token until it expires",
            tag=TAG,
            handler=signed_url,
            body=api.CreateSnapshotSignedURLWebCommand,
            response=api.SignedUrl,
        ),
        command(
            "cameraRequest",
            api.SnapshotCameraRequestBody,
            "Ask the target's client to switch camera or toggle its flash; answers the request's id",
            str,
            200,
        ),
        command(
            "cameraRequestRespond",
            api.SnapshotCameraRequestRespondWebCommand,
            "The target's client reports how a camera request went",
        ),
        Operation(
            method="GET",
            path=BASE + "/signed/{snapshotId}/{expiration}",
            operation_id="snapshotSigned",
            summary="The snapshot's image, for whoever holds a valid signed URL (no token)",
            tag=TAG,
            handler=serve_signed,
            public=True,
            binary_response="image/*",
            path_types={"expiration": Annotated[int, msgspec.Meta(ge=0, le=MAX_INT64)]},
            query=(QueryParam("signature", str, required=True, description="from signedUrl"),),
            errors=(400, 403, 404, 503),
        ),
        Operation(
            method="GET",
            path=BASE,
            operation_id="snapshotsOfInteraction",
            summary="The snapshots of an interaction, newest first",
            tag=TAG,
            handler=list_snapshots,
            response=list[api.Snapshot],
            query=(QueryParam("interactionId", Id, required=True, description="the interaction"),),
            errors=(400, 401, 503),
        ),
        Operation(
            method="GET",
            path=BASE + "/{snapshotId}",
            operation_id="getSnapshot",
            summary="One snapshot",
            tag=TAG,
            handler=get_one,
            response=api.Snapshot,
            errors=(400, 401, 404, 503),
        ),
    ]
