"""The Zextras chats API at the seed's own root paths (`/rooms`, `/users`, `/auth/token`, room meetings).

Each route is one row of `CHAT_ROUTES`, served by one generic handler: the path and query parameters and
the JSON body are folded into the operation's command body (`parley_common.contracts.chat.OPERATIONS`)
with `decode_params`, so they pass the very checks a body field gets (a malformed UUID is 400), and the
body goes to `parley.cmd.chat.<op>` / `parley.qry.chat.<op>` as `Request[Body]`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

import msgspec
from aiohttp import web
from parley_common.contracts import chat
from parley_common.contracts.base import Empty
from parley_common.contracts.rpc import Accepted, Caller, Rejected, Request
from parley_common.messaging import subjects
from parley_common.messaging.rpc import RpcClient

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


def chat_operation(rpc: RpcClient, route: ChatRoute) -> Operation:
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
        try:
            body = chat.decode_params(op.body, params)
        except msgspec.ValidationError as exc:
            raise BadRequest(str(exc)) from None
        if op.http_result is not None:
            reply = await all_pages(rpc, subject, known, body, op.result)
        else:
            reply = await rpc.request(subject, Request(caller=known, body=body), op.result)
        return reply_response(request, reply, status)

    return Operation(
        method=route.method,
        path=route.path,
        operation_id=route.operation_id or route.op,
        summary=route.summary,
        tag=TAG,
        handler=handle,
        body=route.http_body,
        response=None if status == 204 else (op.http_result or op.result),
        status=status,
        query=route.query,
        path_types=dict.fromkeys(path_params, chat.Uuid),
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


def chat_operations(rpc: RpcClient) -> list[Operation]:
    return [*(chat_operation(rpc, route) for route in CHAT_ROUTES), auth_token_operation()]
