"""The push channel: `GET /rtc-api/events/ws`, one WebSocket per user endpoint.

What an endpoint receives, each as one JSON text frame:
- every event of every conference it has joined (from the PARLEY_CONFERENCE stream's subjects; a
  ConferenceJoinedEvent for the endpoint itself starts the flow for that conference). An endpoint waiting in
  a conference's lobby (a meeting guest) has not joined: it gets only the lobby events about itself
  (entered, admitted, rejected); its ConferenceLobbyAdmittedEvent starts the flow like a join;
- every sendEvent event addressed to it. BEST_EFFORT ones arrive while connected or never. AT_LEAST_ONCE ones
  come from a durable JetStream consumer per endpoint and are redelivered (also after a gateway restart) until
  the client acknowledges them by sending `{"ack": "<event id>"}`; an acknowledged event is then deleted
  from the stream.
While the socket is open the gateway reports the endpoint alive to the conference service (keep-alive).

What a socket costs the server is bounded: the endpoint's consumer disappears `consumer_inactive_seconds`
after its last socket closes (long enough for a reconnect to pick up what it had not acknowledged; events
sent meanwhile wait in the stream for a new consumer), and a user holds at most `channels_per_user` sockets
on one gateway (more answers 429).
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections import defaultdict
from typing import Any

import msgspec
import nats.errors
from aiohttp import WSMsgType, web
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from parley_common.config import env_float, env_int
from parley_common.contracts.base import Payload
from parley_common.contracts.push import PresenceReport, PushedEvent
from parley_common.jsonlimits import too_deep
from parley_common.log import get_logger, log_context
from parley_common.messaging import subjects
from parley_common.messaging.codec import encode
from parley_common.messaging.pull import fetch_ready
from parley_common.messaging.streams import PUSH_STREAM
from parley_common.sealing import Sealer, SealError

log = get_logger(__name__)
QUEUE_LIMIT = 1000
# Frames written to a socket in one system call when several are queued (`PushConnection.transport`).
WRITE_BATCH = 64
# Bytes a client may leave unread in the gateway's send buffer before it is closed as too slow.
UNSENT_LIMIT = 1024 * 1024
# Unacknowledged events come back this soon after their gateway dies; while the socket lives, the
# gateway keeps extending the deadline of what it delivered (in-progress), so nothing is sent twice.
ACK_WAIT_SECONDS = 5.0
FETCH_SECONDS = 2.0
_pushed_decoder = msgspec.json.Decoder(PushedEvent)


class PushLimits(msgspec.Struct, frozen=True, kw_only=True):
    """What one user may hold on a gateway (`PARLEY_PUSH_*` environment variables)."""

    # An endpoint's durable consumer is dropped by the server this long after its last socket closed.
    consumer_inactive_seconds: float = 300.0
    # Open push sockets per user on one gateway; beyond, a new one is refused with 429.
    channels_per_user: int = 10

    @classmethod
    def from_env(cls) -> PushLimits:
        return cls(
            consumer_inactive_seconds=env_float("PARLEY_PUSH_CONSUMER_INACTIVE_SECONDS", 300.0),
            channels_per_user=env_int("PARLEY_PUSH_CHANNELS_PER_USER", 10),
        )


class SocketQuota:
    """Open sockets per (organization, user) on this gateway, at most `per_user` each (then 429)."""

    def __init__(self, per_user: int) -> None:
        self.per_user = per_user
        self._open: dict[tuple[str, str], int] = defaultdict(int)

    def acquire(self, organization_id: str, user_id: str) -> None:
        """Count one more socket of the user; raises HTTPTooManyRequests (429) past the limit."""
        user = (organization_id, user_id)
        if self._open.get(user, 0) >= self.per_user:
            log.warning("push channel refused: too many open", user_id=user_id)
            # 429, not 409: the refusal is about a quota and passes once one of the user's sockets closes.
            raise web.HTTPTooManyRequests(
                reason=f"Too many push channels open for this user (at most {self.per_user})"
            )
        self._open[user] += 1

    def release(self, organization_id: str, user_id: str) -> None:
        user = (organization_id, user_id)
        self._open[user] -= 1
        if self._open[user] <= 0:
            del self._open[user]


class EventRouting(Payload, frozen=True):
    """The fields of a conference event the gateway routes on; the rest passes through untouched."""

    type: str
    organization_id: str
    conference_id: str
    user_endpoint_id: str | None = None
    # Lobby admissions and rejections: the waiting endpoint they are about (userEndpointId: the moderator).
    lobby_endpoint_id: str | None = None

    @property
    def lobby_endpoint(self) -> str | None:
        """The waiting endpoint a lobby event is about (None: not a lobby event)."""
        if self.type == "ConferenceLobbyEnteredEvent":
            return self.user_endpoint_id
        return self.lobby_endpoint_id if self.type in _LOBBY_DECISIONS else None


_LOBBY_DECISIONS = frozenset({"ConferenceLobbyAdmittedEvent", "ConferenceLobbyRejectedEvent"})


class ClientMessage(msgspec.Struct, frozen=True):
    ack: str | None = None
    acks: list[str] = []


class PushConnection:
    """One open socket: a bounded outgoing queue drained by a writer task, so a slow client never blocks."""

    def __init__(
        self, ws: web.WebSocketResponse, organization_id: str, endpoint_id: str, *, user_id: str
    ) -> None:
        self.ws = ws
        self.organization_id = organization_id
        self.endpoint_id = endpoint_id
        self.user_id = user_id
        self.conferences: set[str] = set()
        self._outgoing: asyncio.Queue[bytes] = asyncio.Queue(QUEUE_LIMIT)
        self._closing: asyncio.Future[bool] | None = None
        # The socket's transport, when its owner lets the writer batch frames (uncompressed sockets).
        self.transport: asyncio.Transport | None = None
        # Set by the writer once the queue is at most half full (`drained`).
        self._roomy = asyncio.Event()

    def send(self, frame: bytes) -> None:
        try:
            self._outgoing.put_nowait(frame)
        except asyncio.QueueFull:
            self.send_overflowed()

    def send_overflowed(self) -> None:
        """The client cannot keep up: close it; it reconnects and catches up from the event feed."""
        if self._closing is None:
            log.warning("push channel overflow, closing", user_endpoint_id=self.endpoint_id)
            self._closing = asyncio.ensure_future(self.ws.close(code=1013, message=b"too slow"))
            self._roomy.set()

    async def drained(self) -> None:
        """Until the writer has sent at least half of what is queued (a replay waits on it between
        batches rather than overflowing the queue)."""
        while self._outgoing.qsize() > QUEUE_LIMIT // 2 and self._closing is None:
            self._roomy.clear()
            await self._roomy.wait()

    async def write_forever(self) -> None:
        while True:
            frames = [await self._outgoing.get()]
            if self.transport is not None:
                while len(frames) < WRITE_BATCH and not self._outgoing.empty():
                    frames.append(self._outgoing.get_nowait())
            if self._outgoing.qsize() <= QUEUE_LIMIT // 2:
                self._roomy.set()
            if len(frames) > 1 and self.transport is not None and not self.ws.compress:
                self._write_batch(self.transport, frames)
                continue
            for frame in frames:
                # The frame is UTF-8 JSON already: sent as a text frame without a decode and re-encode.
                await self.ws.send_frame(frame, WSMsgType.TEXT)

    def _write_batch(self, transport: asyncio.Transport, frames: list[bytes]) -> None:
        """Several queued frames in one write: at 128 sockets a room message is 128 writes, and a
        burst queues several per socket. Whole frames only, so aiohttp's own writes (pings, the close)
        never land inside one."""
        if transport.is_closing():
            return
        transport.write(b"".join(_text_frame(frame) for frame in frames))
        if transport.get_write_buffer_size() > UNSENT_LIMIT:
            self.send_overflowed()


def _text_frame(payload: bytes) -> bytes:
    """A final, unmasked text frame (RFC 6455 5.2: a server never masks)."""
    size = len(payload)
    if size < 126:
        header = struct.pack("!BB", 0x81, size)
    elif size < 65536:
        header = struct.pack("!BBH", 0x81, 126, size)
    else:
        header = struct.pack("!BBQ", 0x81, 127, size)
    return header + payload


class PushHub:
    def __init__(
        self,
        nc: Client,
        js: JetStreamContext,
        sealer: Sealer,
        *,
        presence_interval: float,
        limits: PushLimits | None = None,
    ) -> None:
        self._nc = nc
        self._js = js
        self._sealer = sealer
        self._presence_interval = presence_interval
        self._limits = limits or PushLimits()
        self._by_org: dict[str, set[PushConnection]] = defaultdict(set)
        self._quota = SocketQuota(self._limits.channels_per_user)

    @property
    def connection_count(self) -> int:
        return sum(len(c) for c in self._by_org.values())

    # ------------------------------------------------------------ conference events (fan-out)

    def on_conference_event(self, routing: EventRouting, raw: bytes) -> None:
        about = routing.lobby_endpoint
        for conn in self._by_org.get(routing.organization_id, ()):
            if about == conn.endpoint_id and routing.conference_id not in conn.conferences:
                # A waiting endpoint hears its own fate and nothing else; admitted, it is in from now on.
                conn.send(raw)
                if routing.type == "ConferenceLobbyAdmittedEvent":
                    conn.conferences.add(routing.conference_id)
                continue
            own = routing.user_endpoint_id == conn.endpoint_id
            if routing.type == "ConferenceJoinedEvent" and own:
                conn.conferences.add(routing.conference_id)
            if routing.conference_id not in conn.conferences:
                continue
            conn.send(raw)
            if routing.type == "ConferenceEndedEvent" or (routing.type == "ConferenceLeftEvent" and own):
                conn.conferences.discard(routing.conference_id)

    # ------------------------------------------------------------ presence

    async def report_presence_forever(self) -> None:
        while True:
            await asyncio.sleep(self._presence_interval)
            await self.report_presence()

    async def report_presence(self, only: PushConnection | None = None) -> None:
        connections = [only] if only else [c for conns in self._by_org.values() for c in conns]
        by_org: dict[str, list[str]] = defaultdict(list)
        for conn in connections:
            by_org[conn.organization_id].append(conn.endpoint_id)
        for organization_id, endpoint_ids in by_org.items():
            report = PresenceReport(
                organization_id=organization_id, user_endpoint_ids=sorted(set(endpoint_ids))
            )
            with contextlib.suppress(nats.errors.Error):
                await self._nc.publish(subjects.PRESENCE, encode(report))

    # ------------------------------------------------------------ one socket

    def attach(self, conn: PushConnection) -> None:
        """Count the socket against its user; raises HTTPTooManyRequests (429) past the user's limit."""
        self._quota.acquire(conn.organization_id, conn.user_id)
        self._by_org[conn.organization_id].add(conn)

    def detach(self, conn: PushConnection) -> None:
        conns = self._by_org.get(conn.organization_id)
        if conns is None or conn not in conns:
            return
        conns.discard(conn)
        if not conns:
            del self._by_org[conn.organization_id]
        self._quota.release(conn.organization_id, conn.user_id)

    async def serve(self, conn: PushConnection) -> None:
        """Run the socket until the client goes away. The connection must already be attached."""
        pending: dict[str, Msg] = {}
        with log_context(organization=conn.organization_id, user_endpoint_id=conn.endpoint_id):

            async def on_live(msg: Msg) -> None:
                await self._deliver(conn, msg, None)

            live = await self._nc.subscribe(
                subjects.push_live(conn.organization_id, conn.endpoint_id), cb=on_live
            )
            tasks = [
                asyncio.create_task(conn.write_forever()),
                asyncio.create_task(self._durable_forever(conn, pending)),
            ]
            await self.report_presence(only=conn)
            log.info("push channel open", conferences=len(conn.conferences))
            try:
                async for message in conn.ws:
                    if message.type == WSMsgType.TEXT:
                        await self._on_client_message(message.data, pending)
                    elif message.type == WSMsgType.ERROR:
                        break
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                with contextlib.suppress(nats.errors.Error):
                    await live.unsubscribe()
                # Unacknowledged events go back to the stream at once, for the next connection.
                for msg in pending.values():
                    with contextlib.suppress(nats.errors.Error):
                        await msg.nak()
                log.info("push channel closed", unacknowledged=len(pending))

    async def _deliver(self, conn: PushConnection, msg: Msg, pending: dict[str, Msg] | None) -> None:
        try:
            pushed = _pushed_decoder.decode(msg.data)
            event: dict[str, Any] = (
                msgspec.json.decode(self._sealer.open(pushed.sealed)) if pushed.sealed else pushed.event
            )
        except (msgspec.DecodeError, SealError) as exc:
            log.error("undeliverable pushed event", error=str(exc))
            if pending is not None:
                await msg.term()
            return
        if pending is not None:
            pending[pushed.event_id] = msg
        conn.send(encode(event))

    async def _durable_forever(self, conn: PushConnection, pending: dict[str, Msg]) -> None:
        name = f"push-{subjects.endpoint_token(conn.organization_id, conn.endpoint_id)}"
        # Created, or brought up to date (nats-py's pull_subscribe leaves an existing consumer's settings
        # alone: one left by an older gateway would keep its old inactivity threshold).
        await self._js.add_consumer(
            PUSH_STREAM,
            ConsumerConfig(
                name=name,
                durable_name=name,
                filter_subject=subjects.push_durable(conn.organization_id, conn.endpoint_id),
                ack_policy=AckPolicy.EXPLICIT,
                deliver_policy=DeliverPolicy.ALL,
                ack_wait=ACK_WAIT_SECONDS,
                max_deliver=-1,
                inactive_threshold=self._limits.consumer_inactive_seconds,
            ),
        )
        subscription = await self._js.pull_subscribe_bind(durable=name, stream=PUSH_STREAM)
        try:
            while True:
                try:
                    messages = await fetch_ready(subscription, 64, timeout=FETCH_SECONDS)
                except (nats.errors.TimeoutError, TimeoutError):
                    messages = []
                for msg in messages:
                    await self._deliver(conn, msg, pending)
                for msg in list(pending.values()):
                    with contextlib.suppress(nats.errors.Error):
                        await msg.in_progress()
        finally:
            with contextlib.suppress(nats.errors.Error):
                await subscription.unsubscribe()

    async def _on_client_message(self, data: str, pending: dict[str, Msg]) -> None:
        raw = data.encode()
        # The free-form JSON rule of every body: msgspec recurses even into fields it ignores.
        if too_deep(raw):
            return
        try:
            message = msgspec.json.decode(raw, type=ClientMessage)
        except msgspec.DecodeError:
            return
        for event_id in [*message.acks, *([message.ack] if message.ack else [])]:
            msg = pending.pop(event_id, None)
            if msg is not None:
                with contextlib.suppress(nats.errors.Error, TimeoutError):
                    await msg.ack()
                    # Gone from the stream too: the consumer expires soon after the socket closes, and the
                    # next one starts from the stream's first message for the endpoint.
                    await self._js.delete_msg(PUSH_STREAM, msg.metadata.sequence.stream)
