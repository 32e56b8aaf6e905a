"""The chat push channel: `GET /events/ws`, every chat event of the caller, from every room.

The chat service stores one copy of each event per recipient on `parley.push.user.<org>.<user>` (stream
PARLEY_USER_PUSH, `Nats-Msg-Id` `<eventId>.<userId>`). A socket reads that subject with an ephemeral
ordered consumer and sends each message as stored, one text frame each. The gateway keeps no state: a
client that reconnects (to any gateway, also after a restart) with `?lastEventId=` gets what followed that
event; the sequence to resume from is found by a headers-only scan of the user's subject.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import nats.errors
from aiohttp import WSMsgType, web
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError
from parley_common.contracts.base import Id
from parley_common.contracts.rpc import Caller
from parley_common.log import get_logger, log_context
from parley_common.messaging import subjects
from parley_common.messaging.streams import USER_PUSH_STREAM

from parley_gateway.chats import NOT_A_CHAT_USER, TAG, chat_caller
from parley_gateway.http import error_response
from parley_gateway.operations import Operation, QueryParam, authenticated
from parley_gateway.push import PushConnection, PushLimits, SocketQuota

log = get_logger(__name__)
SCAN_TIMEOUT_SECONDS = 2.0
MSG_ID = "Nats-Msg-Id"


async def resume_sequence(js: JetStreamContext, subject: str, msg_id: str) -> int | None:
    """The stream sequence of the message `msg_id` on `subject`, or None when it is not retained.

    The subject's last message first (a client that was up to date asks for it); else a headers-only
    scan up to that last sequence (at most the 10,000 messages a subject retains, without their bodies).
    The consumer's own pending count cannot tell where to stop: a push consumer hands everything to the
    client library at once, so the scan stops at the sequence read here.
    """
    try:
        last = await js.get_last_msg(USER_PUSH_STREAM, subject)
    except NotFoundError:
        return None
    if last.seq is None:
        return None
    if (last.headers or {}).get(MSG_ID) == msg_id:
        return int(last.seq)
    scan = await js.subscribe(
        subject,
        stream=USER_PUSH_STREAM,
        ordered_consumer=True,
        headers_only=True,
        deliver_policy=DeliverPolicy.ALL,
    )
    try:
        while True:
            msg = await scan.next_msg(timeout=SCAN_TIMEOUT_SECONDS)
            sequence = int(msg.metadata.sequence.stream)
            if (msg.headers or {}).get(MSG_ID) == msg_id:
                return sequence
            if sequence >= last.seq:
                return None
    finally:
        with contextlib.suppress(nats.errors.Error):
            await scan.unsubscribe()


class UserPushChannels:
    def __init__(self, js: JetStreamContext, limits: PushLimits) -> None:
        self._js = js
        self._quota = SocketQuota(limits.channels_per_user)

    async def open(self, request: web.Request, caller: Caller) -> web.StreamResponse:
        user_id = caller.user_id
        subject = subjects.user_push(caller.organization_id, user_id)
        last_event_id = request.query.get("lastEventId")
        self._quota.acquire(caller.organization_id, user_id)
        try:
            config = ConsumerConfig(deliver_policy=DeliverPolicy.NEW)
            if last_event_id:
                try:
                    found = await resume_sequence(
                        self._js, subject, subjects.user_push_msg_id(last_event_id, user_id)
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

            async def on_event(msg: Msg) -> None:
                conn.send(msg.data)

            try:
                live = await self._js.subscribe(
                    subject, stream=USER_PUSH_STREAM, cb=on_event, ordered_consumer=True, config=config
                )
            except (nats.errors.Error, TimeoutError) as exc:
                log.warning("chat push subscribe failed", error=repr(exc))
                return error_response(request, 503, "service unavailable: event stream not answering")
            try:
                await ws.prepare(request)
                await self._serve(conn)
            finally:
                with contextlib.suppress(nats.errors.Error):
                    await live.unsubscribe()
            return ws
        finally:
            self._quota.release(caller.organization_id, user_id)

    async def _serve(self, conn: PushConnection) -> None:
        with log_context(organization=conn.organization_id, user_id=conn.user_id):
            writer = asyncio.create_task(conn.write_forever())
            log.info("chat push channel open")
            try:
                async for message in conn.ws:
                    if message.type == WSMsgType.ERROR:
                        break
                    # Nothing to read from the client: every frame is delivered once (resume by id).
            finally:
                writer.cancel()
                await asyncio.gather(writer, return_exceptions=True)
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
