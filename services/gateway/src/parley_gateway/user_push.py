"""The chat push channel: `GET /events/ws`, every chat event of the caller, from every room.

The chat service stores one copy of each event per recipient on `parley.push.user.<org>.<user>`, and a
room's messages ONCE on the room's subject `parley.push.user.<org>.room.<room>` (both in stream
PARLEY_USER_PUSH; `Nats-Msg-Id` `<eventId>.<userId>` and `<eventId>`): a message to a 128-member room is
one JetStream write, not 128. A socket reads its user subject and the subjects of its rooms (the chat
service's `listPushRooms`) with ONE ephemeral ordered consumer (`filter_subjects`), so everything comes in
stream order, and sends each message as stored, one text frame each. When the caller's rooms change (an
event of `PUSH_ROOMS_CHANGE` on their own subject) the socket asks again and re-makes its consumer right
after that event's sequence: nothing is lost or repeated, a room left is read no further.

The gateway keeps no state: a client that reconnects (to any gateway, also after a restart) with
`?lastEventId=` gets what followed that event on those subjects; the sequence to resume from is found by a
headers-only scan of them.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import msgspec
import nats.errors
from aiohttp import WSMsgType, web
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from parley_common.contracts import chat
from parley_common.contracts.base import Empty, Id
from parley_common.contracts.rpc import Caller, Rejected, Request
from parley_common.log import get_logger, log_context
from parley_common.messaging import subjects
from parley_common.messaging.rpc import RpcClient
from parley_common.messaging.streams import USER_PUSH_STREAM

from parley_gateway.chats import NOT_A_CHAT_USER, TAG, chat_caller
from parley_gateway.http import error_response
from parley_gateway.operations import Operation, QueryParam, authenticated
from parley_gateway.push import PushConnection, PushLimits, SocketQuota

log = get_logger(__name__)
SCAN_TIMEOUT_SECONDS = 2.0
SCAN_BATCH = 1024
MSG_ID = "Nats-Msg-Id"


class _EventType(msgspec.Struct):
    type: str = ""


_event_type = msgspec.json.Decoder(_EventType).decode


class PushRoomsUnavailable(Exception):
    """The chat service did not say which rooms a socket reads."""


async def resume_sequence(js: JetStreamContext, filters: list[str], msg_ids: set[str]) -> int | None:
    """The stream sequence of the message carrying one of `msg_ids` on `filters`, or None when it is not
    retained.

    A headers-only pull consumer over the subjects: its pending count at creation says exactly how many
    messages to look at (at most what the subjects retain, without their bodies).
    """
    scan = await js.pull_subscribe(
        filters[0],
        stream=USER_PUSH_STREAM,
        config=ConsumerConfig(
            filter_subjects=filters if len(filters) > 1 else None,
            headers_only=True,
            ack_policy=AckPolicy.NONE,
            deliver_policy=DeliverPolicy.ALL,
            inactive_threshold=30.0,
        ),
    )
    try:
        remaining = (await scan.consumer_info()).num_pending or 0
        found: int | None = None
        while remaining > 0:
            batch = await scan.fetch(min(SCAN_BATCH, remaining), timeout=SCAN_TIMEOUT_SECONDS)
            remaining -= len(batch)
            for msg in batch:
                if (msg.headers or {}).get(MSG_ID) in msg_ids:
                    found = int(msg.metadata.sequence.stream)
        return found
    finally:
        with contextlib.suppress(nats.errors.Error):
            await scan.unsubscribe()


class _Feed:
    """One socket's ordered consumer over its user subject and its rooms' subjects.

    Re-made after an event that changes the caller's rooms, starting right after that event: frames the
    old consumer still delivers past it are dropped (`_generation`), the new one delivers them again if
    they are still the caller's.
    """

    def __init__(self, js: JetStreamContext, conn: PushConnection, user_subject: str) -> None:
        self._js = js
        self._conn = conn
        self._user_subject = user_subject
        self._generation = 0
        self._last = 0
        self._sub: Any = None
        self.rooms_changed = asyncio.Event()

    async def subscribe(self, filters: list[str], config: ConsumerConfig) -> None:
        self._generation += 1
        generation = self._generation
        if len(filters) > 1:
            config.filter_subjects = filters

        async def on_event(msg: Msg) -> None:
            if generation != self._generation:
                return
            self._last = int(msg.metadata.sequence.stream)
            self._conn.send(msg.data)
            if msg.subject == self._user_subject and _changes_rooms(msg.data):
                self._generation += 1  # nothing more from this consumer: the next one takes over
                self.rooms_changed.set()

        old, self._sub = self._sub, None
        if old is not None:
            with contextlib.suppress(nats.errors.Error):
                await old.unsubscribe()
        self._sub = await self._js.subscribe(
            self._user_subject, stream=USER_PUSH_STREAM, cb=on_event, ordered_consumer=True, config=config
        )

    def resume_config(self) -> ConsumerConfig:
        return ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=self._last + 1)

    async def close(self) -> None:
        self._generation += 1
        if self._sub is not None:
            with contextlib.suppress(nats.errors.Error):
                await self._sub.unsubscribe()


def _changes_rooms(data: bytes) -> bool:
    try:
        return _event_type(data).type in chat.PUSH_ROOMS_CHANGE
    except msgspec.DecodeError:
        return False


class UserPushChannels:
    def __init__(self, js: JetStreamContext, limits: PushLimits, rpc: RpcClient) -> None:
        self._js = js
        self._rpc = rpc
        self._quota = SocketQuota(limits.channels_per_user)

    async def _filters(self, caller: Caller) -> list[str]:
        """The caller's user subject, then their rooms' subjects."""
        reply = await self._rpc.request(
            subjects.chat_query("listPushRooms"), Request(caller=caller, body=Empty()), chat.PushRooms
        )
        if isinstance(reply, Rejected):
            raise PushRoomsUnavailable(reply.message)
        return [
            subjects.user_push(caller.organization_id, caller.user_id),
            *(subjects.room_push(caller.organization_id, room) for room in reply.value.room_ids),
        ]

    async def open(self, request: web.Request, caller: Caller) -> web.StreamResponse:
        user_id = caller.user_id
        subject = subjects.user_push(caller.organization_id, user_id)
        last_event_id = request.query.get("lastEventId")
        self._quota.acquire(caller.organization_id, user_id)
        try:
            try:
                filters = await self._filters(caller)
            except PushRoomsUnavailable as exc:
                log.warning("push rooms unavailable", error=str(exc))
                return error_response(request, 503, "service unavailable: the chat service did not answer")
            config = ConsumerConfig(deliver_policy=DeliverPolicy.NEW)
            if last_event_id:
                try:
                    found = await resume_sequence(
                        self._js, filters, {subjects.user_push_msg_id(last_event_id, user_id), last_event_id}
                    )
                except (nats.errors.Error, TimeoutError) as exc:
                    log.warning("push resume scan failed", error=repr(exc))
                    return error_response(request, 503, "service unavailable: event stream not answering")
                # An id no longer (or never) retained: from the oldest retained, the most we can give.
                config = (
                    ConsumerConfig(deliver_policy=DeliverPolicy.ALL)
                    if found is None
                    else ConsumerConfig(
                        deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=found + 1
                    )
                )
            ws = web.WebSocketResponse(heartbeat=20.0)
            conn = PushConnection(ws, caller.organization_id, f"user:{user_id}", user_id=user_id)
            feed = _Feed(self._js, conn, subject)
            try:
                await feed.subscribe(filters, config)
            except (nats.errors.Error, TimeoutError) as exc:
                log.warning("chat push subscribe failed", error=repr(exc))
                return error_response(request, 503, "service unavailable: event stream not answering")
            try:
                await ws.prepare(request)
                await self._serve(conn, feed, caller)
            finally:
                await feed.close()
            return ws
        finally:
            self._quota.release(caller.organization_id, user_id)

    async def _follow_rooms(self, conn: PushConnection, feed: _Feed, caller: Caller) -> None:
        """Re-make the socket's consumer each time the caller's rooms change; close it if that fails
        (the client reconnects with its lastEventId and loses nothing)."""
        while True:
            await feed.rooms_changed.wait()
            feed.rooms_changed.clear()
            try:
                await feed.subscribe(await self._filters(caller), feed.resume_config())
            except (PushRoomsUnavailable, nats.errors.Error, TimeoutError) as exc:
                log.warning("push rooms refresh failed, closing", error=repr(exc))
                await conn.ws.close(code=1011, message=b"try again")
                return

    async def _serve(self, conn: PushConnection, feed: _Feed, caller: Caller) -> None:
        with log_context(organization=conn.organization_id, user_id=conn.user_id):
            tasks = [
                asyncio.create_task(conn.write_forever()),
                asyncio.create_task(self._follow_rooms(conn, feed, caller)),
            ]
            log.info("chat push channel open")
            try:
                async for message in conn.ws:
                    if message.type == WSMsgType.ERROR:
                        break
                    # Nothing to read from the client: every frame is delivered once (resume by id).
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                log.info("chat push channel closed")


def user_push_operation(channels: UserPushChannels) -> Operation:
    async def open_channel(request: web.Request, caller: Caller | None, _: Any) -> web.StreamResponse:
        known = chat_caller(authenticated(caller))
        if known is None:
            return error_response(request, 403, NOT_A_CHAT_USER)
        return await channels.open(request, known)

    return Operation(
        method="GET",
        path="/events/ws",
        operation_id="chatPushChannel",
        summary="WebSocket of every chat event of the caller (resume with lastEventId)",
        tag=TAG,
        handler=open_channel,
        status=101,
        token_in_query=True,
        query=(
            QueryParam("lastEventId", Id, description="the last event received: resume right after it"),
            QueryParam("access_token", str, description="bearer token, for clients that cannot set headers"),
        ),
        errors=(400, 401, 403, 429, 503),
    )
