"""The chat push channel: `GET /events/ws`, every chat event of the caller, from every room.

The chat service stores one copy of each event per recipient on `parley.push.user.<org>.<user>`, and a
room's messages ONCE on the room's subject `parley.push.user.<org>.room.<room>` (both in stream
PARLEY_USER_PUSH; `Nats-Msg-Id` `<eventId>.<userId>` and `<eventId>`): a message to a 128-member room is
one JetStream write, not 128.

The gateway reads the stream ONCE (`PushFeed`: one ordered consumer, routed by subject to the sockets of
that user or room, in process), so a room message is one delivery to the gateway, not one per socket. A
socket's subjects are its user's and its rooms' (the chat service's `listPushRooms`); it sends each event
as stored, one text frame each, in stream order. A socket that resumes (`?lastEventId=`, to any gateway,
also after a restart) first replays what followed that event on its subjects with its own pull consumer
(the sequence to resume from is found by a headers-only scan of them), up to where the feed took over,
then joins the feed. When the caller's rooms change (an event of `PUSH_ROOMS_CHANGE` on their own
subject) the socket asks for its rooms again and catches up the same way from right after that event:
nothing is lost or repeated, a room left is read no further.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
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
from parley_gateway.push import QUEUE_LIMIT, PushConnection, PushLimits, SocketQuota

log = get_logger(__name__)
SCAN_TIMEOUT_SECONDS = 2.0
SCAN_BATCH = 1024
MSG_ID = "Nats-Msg-Id"
# A replay's batch, and the chunks a buffer is flushed in: half a socket's queue, then wait for its writer.
REPLAY_BATCH = QUEUE_LIMIT // 2
# Frames the feed keeps for a socket still replaying (then it is closed: the client resumes by id).
BUFFER_LIMIT = 10_000
# The feed carries every room's and user's events: room for bursts before nats-py drops any.
FEED_PENDING_LIMIT = 1_000_000


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
            batch = await scan.fetch(min(REPLAY_BATCH, remaining), timeout=SCAN_TIMEOUT_SECONDS)
            remaining -= len(batch)
            for msg in batch:
                if (msg.headers or {}).get(MSG_ID) in msg_ids:
                    found = int(msg.metadata.sequence.stream)
        return found
    finally:
        with contextlib.suppress(nats.errors.Error):
            await scan.unsubscribe()


class _State(enum.Enum):
    LIVE = "live"  # sends what the gateway's feed routes to it
    CATCHING_UP = "catching-up"  # replays from its resume point; the feed's frames wait in its buffer
    PAUSED = "paused"  # its rooms changed: the feed's frames are dropped, the next catch-up replays them


class _Socket:
    """One `/events/ws` socket: what it has sent (`last`, a stream sequence) and how it is fed.

    Frames reach it in stream order from two sources, never interleaved: its own replay (a pull consumer
    over its subjects, from its resume point) until it has caught up with the gateway's feed, then the
    feed. `emit` sends only what follows `last`, so the hand-over neither repeats nor skips a frame.
    """

    def __init__(self, conn: PushConnection, user_subject: str) -> None:
        self.conn = conn
        self.user_subject = user_subject
        self.last = 0
        self.state = _State.PAUSED
        self.generation = 0
        self.buffer: list[tuple[int, str, bytes]] = []
        self.rooms_changed = asyncio.Event()

    def routed(self, seq: int, subject: str, data: bytes) -> None:
        """A frame of the gateway's feed for this socket."""
        if self.state is _State.LIVE:
            self.emit(seq, subject, data)
        elif self.state is _State.CATCHING_UP:
            self.buffer.append((seq, subject, data))
            if len(self.buffer) > BUFFER_LIMIT:
                # Its replay cannot keep up: the client reconnects with its lastEventId and loses nothing.
                self.state, self.buffer = _State.PAUSED, []
                self.conn.send_overflowed()

    def emit(self, seq: int, subject: str, data: bytes) -> bool:
        """Send a frame unless already sent; False when it changed the caller's rooms (the socket pauses
        right after it: what follows is read again over the new rooms' subjects)."""
        if seq <= self.last:
            return True
        self.last = seq
        self.conn.send(data)
        if subject == self.user_subject and _changes_rooms(data):
            self.state, self.buffer = _State.PAUSED, []
            self.generation += 1
            self.rooms_changed.set()
            return False
        return True


class PushFeed:
    """The gateway's one reading of PARLEY_USER_PUSH, fanned out in process to the sockets it concerns.

    ONE ordered consumer over the whole stream (every user and room subject), routed by subject: a
    message to a 128-member room is one JetStream delivery to this gateway, then 128 socket writes. One
    consumer, not one per room, because each socket must get its frames in stream order (a `lastEventId`
    resumes from a stream sequence): separate consumers would interleave a user's subjects arbitrarily.
    The price: a gateway reads the events of users not connected to it (their per-user copies).
    """

    def __init__(self, js: JetStreamContext) -> None:
        self._js = js
        self._routes: dict[str, set[_Socket]] = {}
        self._subjects: dict[_Socket, list[str]] = {}
        # Every message after `last` will still be routed by the feed (its start, then what it routed).
        self.last = 0
        self._sub: Any = None
        self._starting = asyncio.Lock()

    async def start(self) -> None:
        async with self._starting:
            if self._sub is not None:
                return
            info = await self._js.stream_info(USER_PUSH_STREAM)
            self.last = int(info.state.last_seq)
            self._sub = await self._js.subscribe(
                subjects.USER_PUSH_ALL,
                stream=USER_PUSH_STREAM,
                cb=self._on_message,
                ordered_consumer=True,
                config=ConsumerConfig(
                    deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=self.last + 1
                ),
                pending_msgs_limit=FEED_PENDING_LIMIT,
            )

    async def stop(self) -> None:
        if self._sub is not None:
            with contextlib.suppress(nats.errors.Error):
                await self._sub.unsubscribe()
            self._sub = None

    async def _on_message(self, msg: Msg) -> None:
        seq = int(msg.metadata.sequence.stream)
        self.last = seq
        for socket in tuple(self._routes.get(msg.subject, ())):
            socket.routed(seq, msg.subject, msg.data)

    def route(self, socket: _Socket, filters: list[str]) -> None:
        self.unroute(socket)
        self._subjects[socket] = filters
        for subject in filters:
            self._routes.setdefault(subject, set()).add(socket)

    def unroute(self, socket: _Socket) -> None:
        for subject in self._subjects.pop(socket, ()):
            sockets = self._routes.get(subject)
            if sockets is not None:
                sockets.discard(socket)
                if not sockets:
                    del self._routes[subject]

    async def follow(self, socket: _Socket, filters: list[str], start: int | None) -> None:
        """Feed `socket` the frames on `filters` from stream sequence `start` (None: from now on).

        Routed first, so the feed buffers what it reads from here on; the replay then reads up to where
        the feed took over, the buffer follows, and the socket goes live.
        """
        self.route(socket, filters)
        until = self.last
        if start is None or start > until:
            socket.last = max(socket.last, until if start is None else start - 1)
            socket.state, socket.buffer = _State.LIVE, []
            return
        socket.state, socket.buffer = _State.CATCHING_UP, []
        generation = socket.generation
        await self._replay(socket, filters, start, until, generation)
        if socket.generation != generation:
            return  # its rooms changed during the replay: the next follow takes over
        while socket.buffer:
            buffered, socket.buffer = socket.buffer[:REPLAY_BATCH], socket.buffer[REPLAY_BATCH:]
            for seq, subject, data in buffered:
                if not socket.emit(seq, subject, data):
                    return
            await socket.conn.drained()
            if socket.generation != generation:
                return
        socket.state = _State.LIVE

    async def _replay(
        self, socket: _Socket, filters: list[str], start: int, until: int, generation: int
    ) -> None:
        scan = await self._js.pull_subscribe(
            filters[0],
            stream=USER_PUSH_STREAM,
            config=ConsumerConfig(
                filter_subjects=filters if len(filters) > 1 else None,
                ack_policy=AckPolicy.NONE,
                deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
                opt_start_seq=start,
                inactive_threshold=30.0,
            ),
        )
        try:
            remaining = (await scan.consumer_info()).num_pending or 0
            while remaining > 0:
                batch = await scan.fetch(min(REPLAY_BATCH, remaining), timeout=SCAN_TIMEOUT_SECONDS)
                remaining -= len(batch)
                for msg in batch:
                    seq = int(msg.metadata.sequence.stream)
                    if socket.generation != generation or seq > until:
                        return  # past `until` the buffer has it
                    if not socket.emit(seq, msg.subject, msg.data):
                        return
                # A long replay must not outrun the socket's writer (its queue closes a slow client).
                await socket.conn.drained()
        finally:
            with contextlib.suppress(nats.errors.Error):
                await scan.unsubscribe()


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
        self.feed = PushFeed(js)

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
            start: int | None = None  # from now on
            try:
                await self.feed.start()
                if last_event_id:
                    found = await resume_sequence(
                        self._js, filters, {subjects.user_push_msg_id(last_event_id, user_id), last_event_id}
                    )
                    # An id no longer (or never) retained: from the oldest retained, the most we can give.
                    start = 1 if found is None else found + 1
            except (nats.errors.Error, TimeoutError) as exc:
                log.warning("push resume scan failed", error=repr(exc))
                return error_response(request, 503, "service unavailable: event stream not answering")
            ws = web.WebSocketResponse(heartbeat=20.0)
            conn = PushConnection(ws, caller.organization_id, f"user:{user_id}", user_id=user_id)
            socket = _Socket(conn, subject)
            if start is None:
                # Live before the handshake answers: what is stored once the client is connected reaches it.
                await self.feed.follow(socket, filters, None)
            try:
                await ws.prepare(request)
                # A room message is a frame to each member's socket: queued ones go out in one write.
                conn.transport = request.transport
                await self._serve(socket, caller, filters, start)
            finally:
                self.feed.unroute(socket)
            return ws
        finally:
            self._quota.release(caller.organization_id, user_id)

    async def _follow(self, socket: _Socket, caller: Caller, filters: list[str], start: int | None) -> None:
        """Catch the socket up from its resume point, then again each time the caller's rooms change
        (right after that event, over the new rooms); close it if that fails (the client reconnects with
        its lastEventId and loses nothing)."""
        try:
            if start is not None:
                await self.feed.follow(socket, filters, start)
            while True:
                await socket.rooms_changed.wait()
                socket.rooms_changed.clear()
                await self.feed.follow(socket, await self._filters(caller), socket.last + 1)
        except (PushRoomsUnavailable, nats.errors.Error, TimeoutError) as exc:
            log.warning("push catch-up failed, closing", error=repr(exc))
            self.feed.unroute(socket)
            await socket.conn.ws.close(code=1011, message=b"try again")

    async def _serve(self, socket: _Socket, caller: Caller, filters: list[str], start: int | None) -> None:
        conn = socket.conn
        with log_context(organization=conn.organization_id, user_id=conn.user_id):
            tasks = [
                asyncio.create_task(conn.write_forever()),
                asyncio.create_task(self._follow(socket, caller, filters, start)),
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
