"""The Zextras chats API at the seed's own root paths (`/rooms`, `/users`, `/auth/token`, room meetings).

Each route is one row of `CHAT_ROUTES`, served by one generic handler: the path and query parameters and
the JSON body are folded into the operation's command body (`parley_common.contracts.chat.OPERATIONS`)
with `decode_params`, so they pass the very checks a body field gets (a malformed UUID is 400), and the
body goes to `parley.cmd.chat.<op>` / `parley.qry.chat.<op>` as `Request[Body]`.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Annotated, Any

import msgspec
import nats.errors
from aiohttp import web
from nats.js import JetStreamContext
from parley_common.clock import new_id
from parley_common.contracts import chat
from parley_common.contracts.base import Empty
from parley_common.contracts.rpc import Accepted, Caller, Rejected, Request
from parley_common.messaging import objects, subjects
from parley_common.messaging.rpc import RpcClient
from parley_common.messaging.streams import ensure_object_store

from parley_gateway.http import BadRequest, error_response, json_response
from parley_gateway.operations import Operation, QueryParam, authenticated, reply_response

TAG = "Chats"
# The raw token the caller authenticated with (set by the route wrapper), for `GET /auth/token`.
TOKEN = web.RequestKey("token", str)
NOT_A_CHAT_USER = "chat needs a user id that is a UUID"

ExtraFields = tuple[chat.RoomExtraFieldInput, ...]
UserIds = Annotated[tuple[chat.Uuid, ...], msgspec.Meta(min_length=1, max_length=chat.MAX_USER_IDS)]
RoomRanks = tuple[chat.RoomRank, ...]


@dataclass(frozen=True)
class ChatRoute:
    method: str
    path: str
    # The key in `OPERATIONS`: the bus subject, the command body and the reply's type.
    op: str
    summary: str
    # The JSON body as HTTP carries it, when the operation takes one.
    http_body: Any = None
    # Where the HTTP body goes in the command body: None merges its fields (the seed's object bodies),
    # a name nests it (the seed's array bodies, e.g. the ranks).
    body_field: str | None = None
    query: tuple[QueryParam, ...] = ()
    created: bool = False  # 201 (the seed's creations) rather than 200
    operation_id: str | None = None  # defaults to `op`; set when one op has two routes
    # Path parameters that are not UUIDs (e.g. a preview's `area`), with their type.
    path_types: dict[str, Any] = field(default_factory=dict)
    # The answer is a `StoredFile`: its bytes are streamed from the chat files bucket, not JSON.
    file_response: str | None = None

    @property
    def status(self) -> int:
        if self.created:
            return 201
        return 204 if chat.OPERATIONS[self.op].result is Empty else 200


CHAT_ROUTES: tuple[ChatRoute, ...] = (
    ChatRoute(
        "GET",
        "/rooms",
        "listRoom",
        "Every room the user has access to",
        query=(
            QueryParam(
                "extraFields",
                ExtraFields,
                description="members, settings: repeated or comma-separated",
                comma_separated=True,
            ),
        ),
    ),
    ChatRoute("POST", "/rooms", "insertRoom", "Create a room", chat.RoomCreationBody, created=True),
    ChatRoute(
        "PUT",
        "/rooms/workspaces/rank",
        "updateWorkspacesRank",
        "Order the user's workspaces",
        RoomRanks,
        body_field="ranks",
    ),
    ChatRoute(
        "PUT",
        "/rooms/workspaces/{workspaceId}/channels/rank",
        "updateChannelsRank",
        "Order the channels of a workspace",
        RoomRanks,
        body_field="ranks",
    ),
    ChatRoute("GET", "/rooms/{roomId}", "getRoom", "One room"),
    ChatRoute("PUT", "/rooms/{roomId}", "updateRoom", "Rename a room", chat.RoomEditableFields),
    ChatRoute("DELETE", "/rooms/{roomId}", "deleteRoom", "Delete a room"),
    ChatRoute("PUT", "/rooms/{roomId}/mute", "muteRoom", "Mute a room for the user"),
    ChatRoute("DELETE", "/rooms/{roomId}/mute", "unmuteRoom", "Unmute a room for the user"),
    ChatRoute("PUT", "/rooms/{roomId}/clear", "clearRoomHistory", "Clear the room's history for the user"),
    ChatRoute("GET", "/rooms/{roomId}/members", "listRoomMember", "The room's members"),
    ChatRoute(
        "POST",
        "/rooms/{roomId}/members",
        "insertRoomMember",
        "Add a member to a room",
        chat.MemberToInsert,
        created=True,
    ),
    ChatRoute("DELETE", "/rooms/{roomId}/members/{userId}", "deleteRoomMember", "Remove a member"),
    ChatRoute("PUT", "/rooms/{roomId}/members/{userId}/owner", "updateToOwner", "Make a member an owner"),
    ChatRoute("DELETE", "/rooms/{roomId}/members/{userId}/owner", "deleteOwner", "Demote an owner"),
    ChatRoute("GET", "/rooms/{roomId}/meeting", "getMeetingByRoomId", "The room's meeting"),
    ChatRoute(
        "POST",
        "/rooms/{roomId}/meeting",
        "createMeeting",
        "Create the room's meeting (a Parley conference, joined by the room's members)",
        created=True,
        operation_id="createRoomMeeting",
    ),
    ChatRoute(
        "POST",
        "/meetings",
        "createMeeting",
        "Create a room's meeting (Carbonio's call)",
        chat.MeetingCreation,
    ),
    ChatRoute(
        "GET",
        "/users",
        "getUsers",
        "Users by id (at most 10)",
        query=(QueryParam("userIds", UserIds, required=True, description="repeated, at most 10"),),
    ),
    ChatRoute("GET", "/users/capabilities", "getCapabilities", "What the user may do"),
    ChatRoute("GET", "/users/{userId}", "getUser", "One user"),
    # Pictures (the uploads are `picture_upload_operation`s) and previews: the answers are files.
    ChatRoute(
        "GET", "/rooms/{roomId}/picture", "getRoomPicture", "The room's picture", file_response="image/*"
    ),
    ChatRoute("DELETE", "/rooms/{roomId}/picture", "deleteRoomPicture", "Delete the room's picture"),
    ChatRoute(
        "GET", "/users/{userId}/picture", "getUserPicture", "The user's picture", file_response="image/*"
    ),
    ChatRoute("DELETE", "/users/{userId}/picture", "deleteUserPicture", "Delete the user's own picture"),
    ChatRoute(
        "GET",
        "/preview/image/{fileId}/{area}/",
        "getImagePreview",
        "An image attachment scaled to fit the area (WIDTHxHEIGHT), or filling it with crop=true",
        query=(
            QueryParam("quality", str, description="Lowest, Low, Medium, High, Highest"),
            QueryParam("output_format", str, description="jpeg, png, gif (any case)"),
            QueryParam("crop", bool),
        ),
        path_types={"area": str},
        file_response="image/*",
    ),
    ChatRoute(
        "GET",
        "/preview/image/{fileId}/{area}/thumbnail",
        "getImageThumbnail",
        "An image attachment filling the area (WIDTHxHEIGHT)",
        query=(
            QueryParam("quality", str, description="Lowest, Low, Medium, High, Highest"),
            QueryParam("output_format", str, description="jpeg, png, gif (any case)"),
            QueryParam("shape", str, description="Rounded, Rectangular"),
        ),
        path_types={"area": str},
        file_response="image/*",
    ),
    ChatRoute(
        "GET",
        "/preview/pdf/{fileId}/",
        "getPdfPreview",
        "A PDF of pages firstPage..lastPage of a PDF attachment (lastPage 0 = the last)",
        query=(QueryParam("firstPage", int), QueryParam("lastPage", int)),
        file_response="application/pdf",
    ),
    ChatRoute(
        "GET",
        "/preview/pdf/{fileId}/{area}/thumbnail",
        "getPdfThumbnail",
        "The first page of a PDF attachment as an image filling the area (WIDTHxHEIGHT)",
        query=(
            QueryParam("quality", str, description="Lowest, Low, Medium, High, Highest"),
            QueryParam("output_format", str, description="jpeg, png, gif (any case)"),
            QueryParam("shape", str, description="Rounded, Rectangular"),
        ),
        path_types={"area": str},
        file_response="image/*",
    ),
)


def chat_caller(caller: Caller) -> Caller | None:
    """The caller as the chat service knows it (its user id a lower-cased UUID), or None: not a chat user."""
    user_id = chat.canonical_uuid(caller.user_id)
    if user_id is None:
        return None
    return caller if user_id == caller.user_id else msgspec.structs.replace(caller, user_id=user_id)


async def all_pages(
    rpc: RpcClient, subject: str, caller: Caller, body: Any, page_type: Any
) -> Accepted[tuple[Any, ...]] | Rejected:
    """A paged operation's whole answer: its pages in turn, each asked after the cursor the previous one
    gave (each one NATS message; the HTTP answer has no such limit). A cursor that does not move on is
    the service's bug, answered 502 rather than asked forever."""
    items: list[Any] = []
    after: str | None = None
    while True:
        reply = await rpc.request(
            subject, Request(caller=caller, body=msgspec.structs.replace(body, after=after)), page_type
        )
        if isinstance(reply, Rejected):
            return reply
        page = reply.value
        items.extend(page.items)
        if page.after is None:
            return Accepted(value=tuple(items))
        if (after is not None and page.after <= after) or not page.items:
            return Rejected(status=502, message="the chat service's pages did not move on")
        after = page.after


class ChatFiles:
    """The chat files bucket, opened on first use (created if missing, as every bucket is)."""

    def __init__(self, js: JetStreamContext) -> None:
        self.js = js
        self._ready = False

    async def ready(self) -> JetStreamContext:
        if not self._ready:
            await ensure_object_store(self.js, subjects.CHAT_FILES_BUCKET)
            self._ready = True
        return self.js


async def file_response(
    request: web.Request, files: ChatFiles, stored: chat.StoredFile
) -> web.StreamResponse:
    """The object `stored` names, streamed chunk by chunk (never gathered in memory), with its type."""
    try:
        js = await files.ready()
        info = await objects.object_info(js, subjects.CHAT_FILES_BUCKET, stored.object_name)
    except (nats.errors.Error, TimeoutError):
        return error_response(request, 503, "service unavailable: object store not answering")
    if info is None:
        return error_response(request, 404, "the file's content is not stored")
    response = web.StreamResponse(
        status=200,
        headers={
            "Content-Type": stored.mime_type,
            "Content-Length": str(info.size or 0),
            "Content-Disposition": "inline",
            "X-Content-Type-Options": "nosniff",
            # A preview says whether it was rendered for this call (miss) or before (hit).
            **({"X-Preview-Cache": "hit" if stored.cached else "miss"} if stored.cached is not None else {}),
        },
    )
    await response.prepare(request)
    async for chunk in objects.read_stream(js, info):
        await response.write(chunk)
    await response.write_eof()
    return response


def chat_operation(rpc: RpcClient, route: ChatRoute, files: ChatFiles | None = None) -> Operation:
    op = chat.OPERATIONS[route.op]
    subject = subjects.chat_command(route.op) if op.kind == "cmd" else subjects.chat_query(route.op)
    path_params = tuple(Operation.params_of(route.path))
    status = route.status

    async def handle(request: web.Request, caller: Caller | None, decoded: Any) -> web.StreamResponse:
        known = chat_caller(authenticated(caller))
        if known is None:
            return error_response(request, 403, NOT_A_CHAT_USER)
        params: dict[str, Any] = {}
        if decoded is not None:
            raw = msgspec.to_builtins(decoded)
            if route.body_field is None:
                params.update(raw)
            else:
                params[route.body_field] = raw
        # Path and query last: a body cannot override the path (and a body naming them is refused anyway).
        params.update({name: request.match_info[name] for name in path_params})
        for param in route.query:
            value = param.raw_value(request)
            if value is not None:
                # A query string holds text: "true" or "3" become the parameter's declared type (the
                # route has checked they convert), then face the body's own checks.
                params[param.name] = msgspec.convert(value, param.type, strict=False)
        try:
            body = chat.decode_params(op.body, params)
        except msgspec.ValidationError as exc:
            raise BadRequest(str(exc)) from None
        if op.http_result is not None:
            reply = await all_pages(rpc, subject, known, body, op.result)
        else:
            reply = await rpc.request(subject, Request(caller=known, body=body), op.result)
        if files is not None and isinstance(reply, Accepted) and isinstance(reply.value, chat.StoredFile):
            return await file_response(request, files, reply.value)
        return reply_response(request, reply, status)

    return Operation(
        method=route.method,
        path=route.path,
        operation_id=route.operation_id or route.op,
        summary=route.summary,
        tag=TAG,
        handler=handle,
        body=route.http_body,
        response=None if status == 204 or route.file_response else (op.http_result or op.result),
        binary_response=route.file_response,
        status=status,
        query=route.query,
        path_types={name: route.path_types.get(name, chat.Uuid) for name in path_params},
    )


def auth_token_operation() -> Operation:
    async def token(request: web.Request, _: Caller | None, __: Any) -> web.StreamResponse:
        return json_response(chat.AuthToken(zm_token=request[TOKEN]))

    return Operation(
        method="GET",
        path="/auth/token",
        operation_id="getAuthToken",
        summary="The token the caller authenticated with (bearer or ZM_AUTH_TOKEN cookie)",
        tag=TAG,
        handler=token,
        response=chat.AuthToken,
        errors=(401,),
    )


# The operations behind the picture uploads (`picture_upload_operation`), not rows of CHAT_ROUTES.
UPLOAD_OPERATIONS = ("checkRoomPicture", "updateRoomPicture", "checkUserPicture", "updateUserPicture")

_UNICODE_ESCAPE = re.compile(r"\\u([0-9a-fA-F]{4})")


def decode_file_header(value: str) -> str:
    """A `fileName`/`description` header: Carbonio clients send each character as a `\\uXXXX` escape
    ("encoded to unicode"), decoded here (surrogate pairs joined); a plain value is taken as it is."""
    decoded = _UNICODE_ESCAPE.sub(lambda match: chr(int(match.group(1), 16)), value)
    try:
        return decoded.encode("utf-16", "surrogatepass").decode("utf-16")
    except UnicodeDecodeError:
        raise BadRequest("the header holds a lone surrogate escape") from None


async def _body_chunks(request: web.Request) -> AsyncIterator[bytes]:
    async for chunk in request.content.iter_chunked(objects.CHUNK_SIZE):
        yield chunk


def picture_upload_operation(rpc: RpcClient, files: ChatFiles, *, room: bool) -> Operation:
    """`PUT /rooms/{roomId}/picture`, `PUT /users/{userId}/picture`: a raw body with the seed's headers.

    Headers checked (400); the service's cheap check (the room or user rules and the declared size: 400
    over the capabilities' KB limit, as the seed answers) before the body is read; the body streamed into
    `uploads/{uuid}`, stopped past the limit (400, nothing kept); then the command, which decodes it (a
    real image, or 400) and keeps it, or refuses it and drops it.
    """
    param = "roomId" if room else "userId"
    check_op, update_op = (
        ("checkRoomPicture", "updateRoomPicture") if room else ("checkUserPicture", "updateUserPicture")
    )

    async def handle(request: web.Request, caller: Caller | None, _: Any) -> web.StreamResponse:
        known = chat_caller(authenticated(caller))
        if known is None:
            return error_response(request, 403, NOT_A_CHAT_USER)
        raw_name = request.headers.get("fileName")
        mime_type = request.headers.get("mimeType", "")
        if not raw_name:
            raise BadRequest("the fileName header is required")
        if not mime_type:
            raise BadRequest("the mimeType header is required")
        file_name = decode_file_header(raw_name)
        target = {param: request.match_info[param]}
        try:
            check = chat.decode_params(
                chat.OPERATIONS[check_op].body,
                {**target, "size": request.content_length, "mimeType": mime_type},
            )
        except msgspec.ValidationError as exc:
            raise BadRequest(str(exc)) from None
        allowance = await rpc.request(
            subjects.chat_query(check_op), Request(caller=known, body=check), chat.UploadAllowance
        )
        if isinstance(allowance, Rejected):
            return reply_response(request, allowance, 204)
        max_bytes = allowance.value.max_bytes
        upload = f"uploads/{new_id()}"
        try:
            js = await files.ready()
            stored = await objects.put_stream(
                js, subjects.CHAT_FILES_BUCKET, upload, _body_chunks(request), max_bytes=max_bytes
            )
        except objects.ObjectTooLarge:
            return error_response(request, 400, f"the picture is larger than {max_bytes // 1024} KB")
        except (nats.errors.Error, TimeoutError):
            return error_response(request, 503, "service unavailable: object store not answering")
        body = chat.decode_params(
            chat.OPERATIONS[update_op].body,
            {
                **target,
                "upload": upload,
                "fileName": file_name,
                "mimeType": mime_type,
                "size": stored.size or 0,
            },
        )
        reply = await rpc.request(subjects.chat_command(update_op), Request(caller=known, body=body), Empty)
        if isinstance(reply, Rejected) and reply.status >= 500:
            # The service may never have seen it (it drops the upload itself otherwise).
            with contextlib.suppress(nats.errors.Error, TimeoutError):
                await objects.delete_object(js, subjects.CHAT_FILES_BUCKET, upload)
        return reply_response(request, reply, 204)

    path = "/rooms/{roomId}/picture" if room else "/users/{userId}/picture"
    return Operation(
        method="PUT",
        path=path,
        operation_id=update_op,
        summary=(
            "Set the room's picture (raw body; headers fileName, mimeType, Content-Length)"
            if room
            else "Set the user's own picture (raw body; headers fileName, mimeType, Content-Length)"
        ),
        tag=TAG,
        handler=handle,
        status=204,
        path_types={param: chat.Uuid},
    )


def chat_operations(rpc: RpcClient, js: JetStreamContext | None = None) -> list[Operation]:
    files = ChatFiles(js) if js is not None else None
    uploads = (
        [picture_upload_operation(rpc, files, room=True), picture_upload_operation(rpc, files, room=False)]
        if files is not None
        else []
    )
    return [*(chat_operation(rpc, route, files) for route in CHAT_ROUTES), *uploads, auth_token_operation()]
