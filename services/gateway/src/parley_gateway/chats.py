"""The Zextras chats API at the seed's own root paths (`/rooms`, `/users`, `/auth/token`, room meetings).

Each route is one row of `CHAT_ROUTES`, served by one generic handler: the path and query parameters and
the JSON body are folded into the operation's command body (`parley_common.contracts.chat.OPERATIONS`)
with `decode_params`, so they pass the very checks a body field gets (a malformed UUID is 400), and the
body goes to `parley.cmd.chat.<op>` / `parley.qry.chat.<op>` as `Request[Body]`.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass, field
from typing import Annotated, Any
from urllib.parse import quote

import aiohttp
import msgspec
import nats.errors
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from nats.js import JetStreamContext
from nats.js.errors import DigestMismatchError
from parley_common.clock import new_id
from parley_common.config import env_int
from parley_common.contracts import chat
from parley_common.contracts.base import Empty
from parley_common.contracts.rpc import Accepted, Caller, Rejected, Request
from parley_common.log import get_logger
from parley_common.messaging import objects, subjects
from parley_common.messaging.rpc import RpcClient
from parley_common.messaging.streams import ensure_object_store

from parley_gateway.http import BadRequest, error_response, json_response
from parley_gateway.operations import Operation, QueryParam, authenticated, reply_response

log = get_logger(__name__)
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
    # Messages and forwarding (issue 11): Parley serves messages itself (Carbonio hands them to XMPP).
    ChatRoute(
        "GET",
        "/rooms/{roomId}/messages",
        "listMessages",
        "The room's messages, newest first, without those the caller cleared",
        query=(
            QueryParam(
                "limit",
                chat.PageLimit,
                description=f"at most {chat.MESSAGES_PAGE_MAX}, {chat.MESSAGES_PAGE_DEFAULT} by default",
            ),
            QueryParam("before", chat.MessagesCursor, description="the previous page's `before`"),
        ),
    ),
    ChatRoute(
        "POST", "/rooms/{roomId}/messages", "sendMessage", "Send a message", chat.MessageFields, created=True
    ),
    ChatRoute(
        "PUT",
        "/rooms/{roomId}/messages/{messageId}",
        "editMessage",
        "Edit one's own message (within the edit time limit)",
        chat.MessageEdit,
    ),
    ChatRoute(
        "DELETE",
        "/rooms/{roomId}/messages/{messageId}",
        "deleteMessage",
        "Delete one's own message (within the delete time limit)",
    ),
    ChatRoute(
        "POST",
        "/rooms/{roomId}/forward",
        "forwardMessages",
        "Forward messages into the room",
        chat.ForwardMessagesList,
        body_field="messages",
    ),
    ChatRoute(
        "GET",
        "/rooms/{roomId}/attachments",
        "listRoomAttachmentInfo",
        "The room's attachments, newest first, a page at a time",
        query=(
            QueryParam(
                "itemsNumber",
                chat.ItemsNumber,
                description=f"how many (default {chat.ATTACHMENTS_PAGE_DEFAULT})",
            ),
            QueryParam("filter", str, description="the previous page's `filter`, for the next page (opaque)"),
        ),
    ),
    ChatRoute("GET", "/attachments/{fileId}", "getAttachmentInfo", "One attachment's metadata"),
    ChatRoute(
        "DELETE", "/attachments/{fileId}", "deleteAttachment", "Delete an attachment (uploader or owner)"
    ),
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
            QueryParam(
                "quality", chat.PreviewQuality, description="Lowest, Low, Medium, High, Highest (any case)"
            ),
            QueryParam("output_format", chat.PreviewFormat, description="jpeg, png, gif (any case)"),
            QueryParam("crop", bool),
        ),
        path_types={"area": chat.PreviewArea},
        file_response="image/*",
    ),
    ChatRoute(
        "GET",
        "/preview/image/{fileId}/{area}/thumbnail",
        "getImageThumbnail",
        "An image attachment filling the area (WIDTHxHEIGHT)",
        query=(
            QueryParam(
                "quality", chat.PreviewQuality, description="Lowest, Low, Medium, High, Highest (any case)"
            ),
            QueryParam("output_format", chat.PreviewFormat, description="jpeg, png, gif (any case)"),
            QueryParam("shape", chat.PreviewShape, description="Rounded, Rectangular (any case)"),
        ),
        path_types={"area": chat.PreviewArea},
        file_response="image/*",
    ),
    ChatRoute(
        "GET",
        "/preview/pdf/{fileId}/",
        "getPdfPreview",
        "A PDF of pages firstPage..lastPage of a PDF attachment (lastPage 0 = the last)",
        query=(
            QueryParam("firstPage", chat.FirstPage, description="from 1"),
            QueryParam("lastPage", chat.LastPage, description="0 = the last page"),
        ),
        file_response="application/pdf",
    ),
    ChatRoute(
        "GET",
        "/preview/pdf/{fileId}/{area}/thumbnail",
        "getPdfThumbnail",
        "The first page of a PDF attachment as an image filling the area (WIDTHxHEIGHT)",
        query=(
            QueryParam(
                "quality", chat.PreviewQuality, description="Lowest, Low, Medium, High, Highest (any case)"
            ),
            QueryParam("output_format", chat.PreviewFormat, description="jpeg, png, gif (any case)"),
            QueryParam("shape", chat.PreviewShape, description="Rounded, Rectangular (any case)"),
        ),
        path_types={"area": chat.PreviewArea},
        file_response="image/*",
    ),
)
# Operations served by their own handlers (a streamed body), not by a `CHAT_ROUTES` row: `chat_files`.
STREAMED_OPERATIONS = frozenset(
    {
        "prepareAttachment",
        "insertAttachment",
        # `picture_upload_operation`.
        "checkRoomPicture",
        "updateRoomPicture",
        "checkUserPicture",
        "updateUserPicture",
    }
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

    def __init__(self, js: JetStreamContext | None) -> None:
        self.js = js
        self._ready = False

    async def ready(self) -> JetStreamContext:
        assert self.js is not None, "the file routes need the gateway's JetStream context"
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
                # A query value is text: its declared type (e.g. a number) is taken from it here.
                try:
                    params[param.name] = msgspec.convert(value, param.type, strict=False)
                except msgspec.ValidationError as exc:
                    raise BadRequest(f"{param.name}: {exc}") from None
                # A query string holds text: "5" becomes the int its type says (checked already, 400),
                # before the strict conversion of the body (where a JSON "5" is no int).
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


def chat_operations(
    rpc: RpcClient, js: JetStreamContext | None = None, settings: ChatGatewaySettings | None = None
) -> list[Operation]:
    files = chat_files(rpc, js, settings or ChatGatewaySettings.from_env())
    bucket = ChatFiles(js)
    pictures = [
        picture_upload_operation(rpc, bucket, room=True),
        picture_upload_operation(rpc, bucket, room=False),
    ]
    return [
        *(chat_operation(rpc, route, bucket) for route in CHAT_ROUTES),
        *files,
        *pictures,
        auth_token_operation(),
    ]


# ---------------------------------------------------------------- files: streamed uploads and downloads


class ChatGatewaySettings(msgspec.Struct, frozen=True, kw_only=True):
    # Most bytes of one attachment: a bigger Content-Length is 413 before the body is read.
    max_attachment_bytes: int

    @classmethod
    def from_env(cls) -> ChatGatewaySettings:
        limit = env_int("PARLEY_CHAT_MAX_ATTACHMENT_BYTES", chat.MAX_ATTACHMENT_BYTES)
        if limit < 1:
            raise ValueError(f"PARLEY_CHAT_MAX_ATTACHMENT_BYTES must be positive, got {limit}")
        return cls(max_attachment_bytes=limit)


_ESCAPE = re.compile(r"\\u([0-9a-fA-F]{4})")
# Control characters: never in a file name or description (they would break the download's headers).
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def header_text(request: web.Request, name: str, *, required: bool = False) -> str | None:
    """A text header as Carbonio's clients send it: every character as a Java `\\uXXXX` escape (UTF-16,
    so a pair of escapes for a character beyond the BMP), decoded; a plain value is taken as it is.
    Absent or empty: None (400 when `required`). A lone surrogate or a control character is a 400."""
    raw = request.headers.get(name)
    if not raw:
        if required:
            raise BadRequest(f"header {name} is required")
        return None
    # Escapes become UTF-16 code units; surrogatepass lets a pair of them join into one character.
    units = _ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), raw)
    try:
        text = units.encode("utf-16-le", "surrogatepass").decode("utf-16-le")
    except UnicodeDecodeError:
        raise BadRequest(f"header {name}: not a valid \\uXXXX-escaped text") from None
    if _CONTROL.search(text):
        raise BadRequest(f"header {name}: control characters are not accepted")
    return text


def content_disposition(disposition: str, file_name: str) -> str:
    """`disposition; filename="<ASCII fallback>"; filename*=UTF-8''<percent-encoded>` (RFC 6266, 5987):
    every client gets a safe name, those that read `filename*` the exact one."""
    fallback = "".join(c if 0x20 <= ord(c) < 0x7F and c not in '"\\%' else "_" for c in file_name)
    return f"{disposition}; filename=\"{fallback}\"; filename*=UTF-8''{quote(file_name, safe='')}"


# Raw request bodies are read in pieces of this size (the object store stores 128 KiB chunks).
READ_CHUNK = 64 * 1024


def chat_files(rpc: RpcClient, js: JetStreamContext | None, settings: ChatGatewaySettings) -> list[Operation]:
    """`POST /rooms/{roomId}/attachments` (streamed in) and `GET /attachments/{fileId}/download` (out).

    An upload, in order: its headers (400), its Content-Length over the limit (413, the body never read),
    `prepareAttachment` (404/403/400 room rules, before the body is read; the file id), the body streamed
    into the object store (past the limit without a Content-Length: 413, nothing kept), then
    `insertAttachment` (the rules again; refused, the service deletes the object). A 503 from it deletes
    the object here too: the client is told it failed, so the file must not exist.
    """
    max_bytes = settings.max_attachment_bytes
    bucket_ready = False

    async def bucket() -> JetStreamContext:
        nonlocal bucket_ready
        assert js is not None, "the file routes need the gateway's JetStream context"
        if not bucket_ready:
            await ensure_object_store(js, subjects.CHAT_FILES_BUCKET)
            bucket_ready = True
        return js

    async def upload(request: web.Request, caller: Caller | None, _: Any) -> web.StreamResponse:
        known = chat_caller(authenticated(caller))
        if known is None:
            return error_response(request, 403, NOT_A_CHAT_USER)
        room_id = request.match_info["roomId"]
        # Every header checked before anything else (the size stands in for the real one until stored).
        try:
            body = chat.decode_params(
                chat.InsertAttachment,
                {
                    "roomId": room_id,
                    "fileId": PLACEHOLDER_ID,
                    "size": 0,
                    "name": header_text(request, "fileName", required=True),
                    "mimeType": request.headers.get("mimeType") or None,
                    "description": header_text(request, "description"),
                    # Carbonio's clients send "" for none.
                    "messageId": request.headers.get("messageId") or None,
                    "replyId": request.headers.get("replyId") or None,
                    "area": request.headers.get("area") or None,
                },
            )
        except msgspec.ValidationError as exc:
            raise BadRequest(f"header {_header_of(str(exc))}") from None
        if request.content_length is not None and request.content_length > max_bytes:
            return _too_large(request, max_bytes)
        prepared = await rpc.request(
            subjects.chat_query("prepareAttachment"),
            Request(caller=known, body=chat.RoomRef(room_id=body.room_id)),
            chat.Id,
        )
        if isinstance(prepared, Rejected):
            return reply_response(request, prepared, 201)
        file_id = prepared.value.id
        object_name = chat.attachment_object(file_id)
        try:
            stored = await objects.put_stream(
                await bucket(),
                subjects.CHAT_FILES_BUCKET,
                object_name,
                request.content.iter_chunked(READ_CHUNK),
                max_bytes=max_bytes,
            )
        except objects.ObjectTooLarge:
            return _too_large(request, max_bytes)
        except (nats.errors.Error, TimeoutError) as exc:
            log.warning("attachment upload failed", error=repr(exc))
            return error_response(request, 503, "service unavailable: object store not answering")
        except (aiohttp.ClientError, HttpProcessingError, ConnectionError):
            # The client stopped sending before its Content-Length: nothing was kept.
            raise BadRequest("the body ended before its Content-Length") from None
        reply = await rpc.request(
            subjects.chat_command("insertAttachment"),
            Request(
                caller=known,
                body=msgspec.structs.replace(body, file_id=file_id, size=int(stored.size or 0)),
            ),
            chat.Id,
        )
        if isinstance(reply, Rejected) and reply.status >= 500:
            with contextlib.suppress(nats.errors.Error, TimeoutError):
                await objects.delete_object(await bucket(), subjects.CHAT_FILES_BUCKET, object_name)
        return reply_response(request, reply, 201)

    async def download(request: web.Request, caller: Caller | None, _: Any) -> web.StreamResponse:
        known = chat_caller(authenticated(caller))
        if known is None:
            return error_response(request, 403, NOT_A_CHAT_USER)
        try:
            ref = chat.decode_params(chat.FileRef, {"fileId": request.match_info["fileId"]})
        except msgspec.ValidationError as exc:
            raise BadRequest(str(exc)) from None
        reply = await rpc.request(
            subjects.chat_query("getAttachmentInfo"), Request(caller=known, body=ref), chat.Attachment
        )
        if isinstance(reply, Rejected):
            return reply_response(request, reply, 200)
        attachment = reply.value
        try:
            stream = await bucket()
            info = await objects.object_info(
                stream, subjects.CHAT_FILES_BUCKET, chat.attachment_object(ref.file_id)
            )
        except (nats.errors.Error, TimeoutError):
            return error_response(request, 503, "service unavailable: object store not answering")
        if info is None:
            return error_response(request, 404, f"attachment {ref.file_id} has no content")
        response = web.StreamResponse(
            headers={
                "Content-Type": attachment.mime_type,
                # Inline, as the real backend answers; the declared type is the uploader's word, so the
                # browser must not sniff another and a document served from here runs sandboxed.
                "Content-Disposition": content_disposition("inline", attachment.name),
                "X-Content-Type-Options": "nosniff",
                "Content-Security-Policy": "sandbox",
                "Cache-Control": "private, no-store",
            }
        )
        response.content_length = int(info.size or 0)
        await response.prepare(request)
        try:
            async for chunk in objects.read_stream(stream, info):
                await response.write(chunk)
        except (nats.errors.Error, TimeoutError, DigestMismatchError) as exc:
            # The status is sent already: cut the connection, so the client sees a short body.
            log.warning("attachment download failed", file_id=ref.file_id, error=repr(exc))
            if request.transport is not None:
                request.transport.close()
            return response
        await response.write_eof()
        return response

    errors = (400, 401, 403, 404, 503)
    return [
        Operation(
            method="POST",
            path="/rooms/{roomId}/attachments",
            operation_id="insertAttachment",
            summary=(
                "Upload an attachment: the raw body, with headers fileName and mimeType (required), "
                "description, messageId, replyId, area (WIDTHxHEIGHT); fileName and description may be "
                "\\uXXXX-escaped"
            ),
            tag=TAG,
            handler=upload,
            binary_body="application/octet-stream",
            response=chat.Id,
            status=201,
            errors=(*errors, 413),
            path_types={"roomId": chat.Uuid},
            headers=UPLOAD_HEADERS,
        ),
        Operation(
            method="GET",
            path="/attachments/{fileId}/download",
            operation_id="getAttachment",
            summary="An attachment's bytes, with its type and its name in Content-Disposition",
            tag=TAG,
            handler=download,
            binary_response="application/octet-stream",
            errors=errors,
            path_types={"fileId": chat.Uuid},
        ),
    ]


# Header values are visible ASCII and spaces (RFC 9110 text; what every HTTP client can send): any other
# character of a name or description comes `\\uXXXX`-escaped, as Carbonio's clients send them all.
HEADER_TEXT = "^[ -~]*$(?!\\n)"
# An escaped character takes 6 (`\\uXXXX`): the header may be that much longer than the text it holds.
_ESCAPED_MAX = 6
_ESCAPED = "; \\uXXXX escapes (UTF-16) are decoded, a plain value is taken as it is"
UPLOAD_HEADERS = (
    QueryParam(
        "fileName",
        Annotated[
            str,
            msgspec.Meta(
                min_length=1, max_length=_ESCAPED_MAX * chat.FILE_NAME_MAX_LENGTH, pattern=HEADER_TEXT
            ),
        ],
        required=True,
        description=f"the file's name, at most {chat.FILE_NAME_MAX_LENGTH} characters decoded" + _ESCAPED,
    ),
    QueryParam("mimeType", chat.MimeType, required=True, description="the file's type/subtype"),
    QueryParam(
        "description",
        Annotated[
            str,
            msgspec.Meta(max_length=_ESCAPED_MAX * chat.FILE_DESCRIPTION_MAX_LENGTH, pattern=HEADER_TEXT),
        ],
        description="what the file is" + _ESCAPED,
    ),
    QueryParam(
        "messageId",
        Annotated[str, msgspec.Meta(max_length=256, pattern=HEADER_TEXT)],
        description="the message the file belongs to (empty: none)",
    ),
    QueryParam(
        "replyId",
        Annotated[str, msgspec.Meta(max_length=256, pattern=HEADER_TEXT)],
        description="the message replied to (empty: none)",
    ),
    QueryParam(
        "area",
        Annotated[str, msgspec.Meta(pattern="^(?:[0-9]+x[0-9]+)?$(?!\\n)")],
        description="WIDTHxHEIGHT in digits, e.g. 15x20 (empty: none)",
    ),
)

# Stands in for the file id while the headers are checked (replaced by prepareAttachment's).
PLACEHOLDER_ID = "00000000-0000-0000-0000-000000000000"


def _header_of(message: str) -> str:
    """msgspec's message about a field, with the header's name instead of the field's (`$.name` is the
    `fileName` header)."""
    return message.replace("`$.name`", "`fileName`").replace("`$.", "`")


def _too_large(request: web.Request, max_bytes: int) -> web.StreamResponse:
    response = error_response(request, 413, f"the file is larger than {max_bytes} bytes")
    # The body was not (all) read: do not leave it for the next request on this connection.
    response.force_close()
    return response


PICTURE_MIME_TYPE = QueryParam(
    "mimeType",
    Annotated[
        str, msgspec.Meta(pattern=r"^[iI][mM][aA][gG][eE]/[A-Za-z0-9!#$&^_.+-]+$(?!\n)", max_length=255)
    ],
    required=True,
    description="image/..., the declared type (the bytes must decode as an image too)",
)


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
        file_name = header_text(request, "fileName", required=True)
        mime_type = request.headers.get("mimeType", "")
        if not mime_type:
            raise BadRequest("header mimeType is required")
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
            refused = reply_response(request, allowance, 204)
            # The body was not read: do not leave it for the next request on this connection.
            refused.force_close()
            return refused
        max_bytes = allowance.value.max_bytes
        upload = f"uploads/{new_id()}"
        try:
            js = await files.ready()
            stored = await objects.put_stream(
                js,
                subjects.CHAT_FILES_BUCKET,
                upload,
                request.content.iter_chunked(READ_CHUNK),
                max_bytes=max_bytes,
            )
        except objects.ObjectTooLarge:
            too_large = error_response(request, 400, f"the picture is larger than {max_bytes // 1024} KB")
            too_large.force_close()
            return too_large
        except (aiohttp.ClientError, HttpProcessingError, ConnectionError):
            raise BadRequest("the body ended before its Content-Length") from None
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
        binary_body="application/octet-stream",
        status=204,
        path_types={param: chat.Uuid},
        # fileName as an attachment's; mimeType must say an image (the bytes are decoded anyway).
        headers=(UPLOAD_HEADERS[0], PICTURE_MIME_TYPE),
    )
