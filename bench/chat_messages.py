"""Room messages (issue 11): `POST /rooms/{id}/messages` to delivery on every member's `/events/ws`,
next to the same fan-out over bare NATS core, in the same run.

Starts its own stack (nats-server, conference, chat, gateway) on free ports with a throwaway data
directory, reports `--members` users to the directory (PARLEY_USERS), creates one group of them all and
connects every member on `/events/ws`. Then, in the same run:

- latency: `--runs` messages one after the other; for each, the time from the POST leaving to the event
  arriving on EACH socket (members x runs samples), p50/p99;
- throughput: `--burst` messages with `--in-flight` POSTs outstanding; messages/s over the time until
  EVERY one has arrived on EVERY socket (and the POST-acknowledged rate);
- bare NATS core, the floor: one publish to one subject with `--members` subscribers (each its own
  connection, as each socket is), the same latency and throughput measures.

    uv run python bench/chat_messages.py [--members 128] [--runs 100] [--burst 1000] [--in-flight 32]

Targets: the chat p50 within 3x of bare NATS; at least 500 messages/s into one room, all delivered.
The receiving sockets live in this process: on a small machine the bench's own JSON decoding of
members x messages frames is part of what is measured (the same holds for the NATS floor).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import jwt
import msgspec
import nats
import uvloop
from parley_chat.adapters.repository import StorageChatRepository
from parley_common.contracts import chat as api
from parley_common.messaging import subjects
from parley_common.processes import LocalStack, free_port, wait_for_port
from parley_common.storage import open_store
from timing import pct

SECRET = "bench-secret-bench-secret-bench-secret"
ORG = "bench"
DELIVERY_TIMEOUT = 120.0


class Frame(msgspec.Struct):
    """Only what the bench reads of a pushed event: which message it carries."""

    type: str
    message: dict[str, Any] | None = None


class Deliveries:
    """Arrival times of each message (keyed by its text, `m<n>`) on each receiver; done when all came."""

    def __init__(self, receivers: int) -> None:
        self.receivers = receivers
        self.sent: dict[str, float] = {}
        self.latencies: list[float] = []
        self.counts: dict[str, int] = {}
        self.expected = 0
        self.complete = 0
        self.all_in = asyncio.Event()
        # Set when a message has reached every receiver (the sequential phase waits on it).
        self.one_in = asyncio.Event()

    def expect(self, count: int) -> None:
        self.sent.clear()
        self.latencies.clear()
        self.counts.clear()
        self.expected, self.complete = count, 0
        self.all_in.clear()

    def arrived(self, key: str, at: float) -> None:
        sent = self.sent.get(key)
        if sent is not None:
            self.latencies.append((at - sent) * 1000)
        count = self.counts.get(key, 0) + 1
        self.counts[key] = count
        if count == self.receivers:
            self.one_in.set()
            self.complete += 1
            if self.complete == self.expected:
                self.all_in.set()


def bearer(user_id: str) -> str:
    claims = {"sub": user_id, "org": ORG, "name": f"u {user_id[:8]}", "exp": int(time.time()) + 7200}
    return jwt.encode(claims, SECRET, algorithm="HS256")


async def run_phases(
    deliveries: Deliveries,
    send: Callable[[str], Any],
    runs: int,
    burst: int,
    in_flight: int,
) -> tuple[list[float], float, float, int]:
    """Latency (sequential sends), then throughput (a burst).

    Returns (latencies ms, delivered messages/s, acknowledged messages/s, messages not delivered to all).
    """
    deliveries.expect(runs)
    for n in range(runs):
        key = f"m{n}"
        deliveries.one_in.clear()
        deliveries.sent[key] = time.perf_counter()
        await send(key)
        # One at a time: the next leaves once this one reached every receiver.
        await asyncio.wait_for(deliveries.one_in.wait(), DELIVERY_TIMEOUT)
    latencies = list(deliveries.latencies)

    deliveries.expect(burst)
    gate = asyncio.Semaphore(in_flight)

    async def one(n: int) -> None:
        async with gate:
            await send(f"b{n}")

    started = time.perf_counter()
    await asyncio.gather(*(one(n) for n in range(burst)))
    acked = time.perf_counter() - started
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(deliveries.all_in.wait(), DELIVERY_TIMEOUT)
    delivered = time.perf_counter() - started
    missing = burst - deliveries.complete
    return latencies, deliveries.complete / delivered, burst / acked, missing


async def bare_nats(url: str, members: int, runs: int, burst: int, in_flight: int) -> tuple[Any, ...]:
    """The floor: one core publish, `members` subscribers each on its own connection."""
    deliveries = Deliveries(members)
    subject = "bench.room"
    publisher = await nats.connect(url)
    subscribers = [await nats.connect(url) for _ in range(members)]

    async def on_message(msg: Any) -> None:
        deliveries.arrived(msg.data.decode(), time.perf_counter())

    for connection in subscribers:
        await connection.subscribe(subject, cb=on_message, pending_msgs_limit=1_000_000)
    for connection in subscribers:
        await connection.flush()

    async def send(key: str) -> None:
        await publisher.publish(subject, key.encode())

    try:
        return await run_phases(deliveries, send, runs, burst, in_flight)
    finally:
        for connection in (publisher, *subscribers):
            await connection.close()


async def bench(members: int, runs: int, burst: int, in_flight: int) -> None:
    root = Path(tempfile.mkdtemp(prefix="parley-bench-"))
    port = free_port()
    stack = LocalStack(
        root / "data",
        [("conference", "parley_conference"), ("chat", "parley_chat"), ("gateway", "parley_gateway")],
        env={
            "PARLEY_JWT_SECRET": SECRET,
            "PARLEY_HTTP_PORT": str(port),
            "PARLEY_LOG_LEVEL": os.environ.get("BENCH_LOG_LEVEL", "WARNING"),
            # Every member of the room on one gateway: its socket quota per user is not the point here.
        },
        log_dir=root / "logs",
    ).start()
    try:
        wait_for_port("127.0.0.1", port, timeout=30)
        users = [str(uuid.uuid4()) for _ in range(members)]
        me, others = users[0], users[1:]
        nc = await nats.connect(stack.nats.url)
        js = nc.jetstream()
        for i, user in enumerate(users):
            seen = api.UserSeen(organization_id=ORG, user_id=user, name=f"User {i}", email=f"u{i}@bench.test")
            await js.publish(subjects.users_seen(ORG, user), msgspec.json.encode(seen))
        store = await open_store(mongo_url=None, sqlite_path=str(root / "data" / "chat.sqlite3"))
        repo = await StorageChatRepository.open(store)
        for _ in range(300):
            if len(await repo.known_user_ids(ORG, users)) == len(users):
                break
            await asyncio.sleep(0.1)
        else:
            raise RuntimeError("the chat service did not record the directory")
        await store.close()

        base = f"http://127.0.0.1:{port}"
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(
            base_url=base, headers={"Authorization": f"Bearer {bearer(me)}"}, connector=connector
        ) as http:
            async with http.post(
                "/rooms", json={"type": "group", "name": "bench", "membersIds": others}
            ) as response:
                if response.status != 201:
                    raise RuntimeError(f"POST /rooms answered {response.status}: {await response.text()}")
                room_id = (await response.json())["id"]

            deliveries = Deliveries(members)
            decode = msgspec.json.Decoder(Frame).decode
            # The sockets on their own client: the HTTP one carries the sender's Authorization header.
            listening = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
            sockets = []
            for user in users:
                ws = await listening.ws_connect(
                    base.replace("http", "ws") + "/events/ws",
                    params={"access_token": bearer(user)},
                    max_msg_size=0,
                )
                sockets.append(ws)

            async def read(ws: aiohttp.ClientWebSocketResponse) -> None:
                async for message in ws:
                    if message.type != aiohttp.WSMsgType.TEXT:
                        continue
                    frame = decode(message.data)
                    if frame.type == "ROOM_MESSAGE_SENT" and frame.message is not None:
                        deliveries.arrived(frame.message["text"], time.perf_counter())

            readers = [asyncio.create_task(read(ws)) for ws in sockets]
            await asyncio.sleep(1.0)  # every socket's consumer in place

            async def post(key: str) -> None:
                async with http.post(f"/rooms/{room_id}/messages", json={"text": key}) as response:
                    if response.status != 201:
                        raise RuntimeError(
                            f"POST messages answered {response.status}: {await response.text()}"
                        )
                    await response.read()

            chat = await run_phases(deliveries, post, runs, burst, in_flight)
            for task in readers:
                task.cancel()
            for ws in sockets:
                await ws.close()
            await listening.close()
        floor = await bare_nats(stack.nats.url, members, runs, burst, in_flight)
        await nc.close()
    finally:
        stack.stop()

    print(f"\n{members} members, {runs} sequential messages, a burst of {burst} ({in_flight} in flight)")
    columns = ("p50 ms", "p99 ms", "mean ms")
    print(
        f"{'path':<36}"
        + "".join(f" {c:>8}" for c in columns)
        + f" {'deliv/s':>9} {'acked/s':>9} {'missing':>8}"
    )
    for name, (latencies, delivered, acked, missing) in (
        ("POST messages -> every /events/ws", chat),
        ("bare NATS core fan-out", floor),
    ):
        print(
            f"{name:<36} {pct(latencies, 0.5):>8.2f} {pct(latencies, 0.99):>8.2f}"
            f" {statistics.fmean(latencies):>8.2f} {delivered:>9.0f} {acked:>9.0f} {missing:>8}"
        )
    ratio = pct(chat[0], 0.5) / pct(floor[0], 0.5)
    print(f"chat p50 = {ratio:.1f}x bare NATS p50 (target 3x): {'met' if ratio <= 3 else 'MISSED'}")
    rate_ok = chat[1] >= 500 and chat[3] == 0
    print(
        f"sustained {chat[1]:.0f} messages/s, all delivered: {chat[3] == 0} (target 500/s): "
        f"{'met' if rate_ok else 'MISSED'}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--members", type=int, default=128)
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--burst", type=int, default=1000)
    parser.add_argument("--in-flight", type=int, default=32)
    args = parser.parse_args()
    uvloop.run(bench(args.members, args.runs, args.burst, args.in_flight))


if __name__ == "__main__":
    main()
