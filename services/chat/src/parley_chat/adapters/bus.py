"""NATS side of the chat service: every operation's subject to its use case, and the service's health.

`parley.cmd.chat.<operationId>` (changes) and `parley.qry.chat.<operationId>` (reads), as
`parley_common.contracts.chat.OPERATIONS` lists them (`admit` is `parley.qry.chat.admit`, asked by the
conference service), each a `Request[body]`, answered by the queue group `chat` on plain nats-py
subscriptions (`Responders`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from nats.js import JetStreamContext
from parley_common.contracts.chat import OPERATIONS
from parley_common.contracts.health import Dependency, HealthQuery, ServiceHealth
from parley_common.contracts.rpc import Accepted, Rejected, Request
from parley_common.messaging import subjects
from parley_common.messaging.rpc import Responders
from parley_common.messaging.streams import USERS_STREAM
from parley_common.storage import DocumentStore, StorageError

from parley_chat.handlers import ChatHandlers

QUEUE = subjects.CHAT_QUEUE


def use_cases(handlers: ChatHandlers) -> dict[str, Callable[[Any], Awaitable[Any]]]:
    """operationId -> use case: every operation of `OPERATIONS` and nothing else."""
    return {
        "listRoom": handlers.list_room,
        "getRoom": handlers.get_room,
        "insertRoom": handlers.insert_room,
        "updateRoom": handlers.update_room,
        "deleteRoom": handlers.delete_room,
        "updateWorkspacesRank": handlers.update_workspaces_rank,
        "updateChannelsRank": handlers.update_channels_rank,
        "muteRoom": handlers.mute_room,
        "unmuteRoom": handlers.unmute_room,
        "clearRoomHistory": handlers.clear_room_history,
        "listRoomMember": handlers.list_room_member,
        "insertRoomMember": handlers.insert_room_member,
        "deleteRoomMember": handlers.delete_room_member,
        "updateToOwner": handlers.update_to_owner,
        "deleteOwner": handlers.delete_owner,
        "getUsers": handlers.get_users,
        "getUser": handlers.get_user,
        "getCapabilities": handlers.get_capabilities,
        "getMeetingByRoomId": handlers.get_meeting_by_room_id,
        "createMeeting": handlers.create_meeting,
        "admit": handlers.admit,
        "checkRoomPicture": handlers.check_room_picture,
        "updateRoomPicture": handlers.update_room_picture,
        "getRoomPicture": handlers.get_room_picture,
        "deleteRoomPicture": handlers.delete_room_picture,
        "checkUserPicture": handlers.check_user_picture,
        "updateUserPicture": handlers.update_user_picture,
        "getUserPicture": handlers.get_user_picture,
        "deleteUserPicture": handlers.delete_user_picture,
        "getImagePreview": handlers.get_image_preview,
        "getImageThumbnail": handlers.get_image_thumbnail,
        "getPdfPreview": handlers.get_pdf_preview,
        "getPdfThumbnail": handlers.get_pdf_thumbnail,
        "sendMessage": handlers.send_message,
        "listMessages": handlers.list_messages,
        "editMessage": handlers.edit_message,
        "deleteMessage": handlers.delete_message,
        "forwardMessages": handlers.forward_messages,
        "listPushRooms": handlers.list_push_rooms,
        "prepareAttachment": handlers.prepare_attachment,
        "insertAttachment": handlers.insert_attachment,
        "listRoomAttachmentInfo": handlers.list_room_attachment_info,
        "getAttachmentInfo": handlers.get_attachment_info,
        "deleteAttachment": handlers.delete_attachment,
    }


def subject_of(operation_id: str) -> str:
    operation = OPERATIONS[operation_id]
    return (
        subjects.chat_command(operation_id) if operation.kind == "cmd" else subjects.chat_query(operation_id)
    )


async def register(
    responders: Responders, handlers: ChatHandlers, store: DocumentStore, js: JetStreamContext
) -> None:
    served = use_cases(handlers)
    if served.keys() != OPERATIONS.keys():  # a contract without its use case is a bug, found at start
        raise RuntimeError(f"chat operations without a use case: {sorted(OPERATIONS.keys() ^ served.keys())}")
    for operation_id, handler in served.items():
        # The Request envelope of this operation's body, built at run time from the table.
        request_type: Any = Request.__class_getitem__(OPERATIONS[operation_id].body)  # type: ignore[attr-defined]
        await responders.serve(subject_of(operation_id), request_type, handler, queue=QUEUE)

    async def health(_: HealthQuery) -> Accepted[ServiceHealth] | Rejected:
        try:
            await store.ping()
            storage_ok = True
        except StorageError:
            storage_ok = False
        try:
            await js.stream_info(USERS_STREAM)
            users_ok = True
        except Exception:
            users_ok = False
        dependencies = [
            Dependency(name="nats", is_healthy=True),
            Dependency(name="storage", is_healthy=storage_ok),
            Dependency(name="users", is_healthy=users_ok),
        ]
        return Accepted(
            value=ServiceHealth(service=QUEUE, is_healthy=storage_ok and users_ok, dependencies=dependencies)
        )

    await responders.serve(subjects.health(QUEUE), HealthQuery, health, queue=QUEUE, parallelism=1)
