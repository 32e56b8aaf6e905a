"""Chat rooms (issue 9): `GET /rooms?extraFields=members,settings` and adding a member, HTTP vs storage.

Starts its own stack (nats-server, chat, conference and gateway) on free ports with a throwaway data
directory, seeds it through the chat service's bus (the commands the gateway would send, many in flight):
a directory of users reported on PARLEY_USERS, one user in `--rooms` groups of `--members` members, and a
127-member group. Then measures, in the same run:

- `GET /rooms?extraFields=members,settings` over HTTP, p50/p99 over `--runs` calls, NEXT TO the storage
  reads the chat service makes for it (`StorageChatRepository.rooms_of_user`, the same SQLite file, opened
  by this process);
- `POST /rooms/{id}/members` on the 127-member group (the member is removed again, untimed, after each
  call) NEXT TO its storage work (the reads and the commit `ChatUnitOfWork` makes, through the same
  repository; removed again the same way).

    uv run python bench/chat_rooms.py [--rooms 500] [--members 20] [--runs 30] [--hold]

`--hold` keeps a client listing rooms until interrupted, to attach `py-spy` to the chat service or the
gateway. Target: the HTTP list's p50 within 3x of the storage reads' p50 (no query per room).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import jwt
import msgspec
import nats
import uvloop
from parley_chat import domain
from parley_chat.adapters.repository import StorageChatRepository
from parley_chat.domain import Context, decide_insert_member, decide_remove_member
from parley_chat.effects import effects_of
from parley_common.clock import utcnow
from parley_common.contracts import chat as api
from parley_common.contracts.rpc import Accepted, Caller, Rejected, Request
from parley_common.messaging import subjects
from parley_common.processes import LocalStack, free_port, wait_for_port
from parley_common.storage import open_store
from timing import pct, timed

SECRET = "bench-secret-bench-secret-bench-secret"
ORG = "bench"
BIG_GROUP = 127
IN_FLIGHT = 16


class Bus:
    """The chat service's commands as the gateway sends them."""

    def __init__(self, nc: Any, user_id: str) -> None:
        self._nc = nc
        self._caller = Caller(organization_id=ORG, user_id=user_id, request_id="bench")
        self._reply = msgspec.json.Decoder(Accepted[Any] | Rejected)

    async def call(self, op: str, body: Any) -> Any:
        kind = api.OPERATIONS[op].kind
        subject = subjects.chat_command(op) if kind == "cmd" else subjects.chat_query(op)
        data = msgspec.json.encode(Request(caller=self._caller, body=body))
        reply = self._reply.decode((await self._nc.request(subject, data, timeout=30)).data)
        if isinstance(reply, Rejected):
            raise RuntimeError(f"{op} rejected: {reply.status} {reply.message}")
        return reply.value


async def gather_bounded(calls: list[Callable[[], Awaitable[Any]]]) -> list[Any]:
    gate = asyncio.Semaphore(IN_FLIGHT)

    async def one(call: Callable[[], Awaitable[Any]]) -> Any:
        async with gate:
            return await call()

    return await asyncio.gather(*(one(call) for call in calls))


async def seed(
    nc: Any, repo: StorageChatRepository, me: str, users: list[str], rooms: int, members: int
) -> tuple[str, list[str]]:
    """The directory, `rooms` groups of `members` (me and others, rotating), a 127-member group."""
    js = nc.jetstream()
    for i, user in enumerate(users):
        seen = api.UserSeen(organization_id=ORG, user_id=user, name=f"User {i}", email=f"u{i}@bench.test")
        await js.publish(subjects.users_seen(ORG, user), msgspec.json.encode(seen))
    for _ in range(300):  # until the chat service's directory feed has recorded them all
        if len(await repo.known_user_ids(ORG, users)) == len(users):
            break
        await asyncio.sleep(0.1)
    else:
        raise RuntimeError("the chat service did not record the directory")
    bus = Bus(nc, me)
    others = [user for user in users if user != me]

    def group(index: int, size: int) -> Callable[[], Awaitable[Any]]:
        start = (index * (size - 1)) % len(others)
        ids = tuple((others * 2)[start : start + size - 1])
        fields = api.RoomCreationFields(type="group", name=f"room {index}", members_ids=ids)
        return lambda: bus.call("insertRoom", fields)

    await gather_bounded([group(i, members) for i in range(rooms)])
    big: api.Room = msgspec.convert(await group(rooms, BIG_GROUP)(), api.Room)
    inside = set(big_member.user_id for big_member in (big.members or ()))
    return big.id, [user for user in others if user not in inside]


async def bench(rooms: int, members: int, runs: int, hold: bool) -> None:
    root = Path(tempfile.mkdtemp(prefix="parley-bench-"))
    port = free_port()
    stack = LocalStack(
        root / "data",
        [("conference", "parley_conference"), ("chat", "parley_chat"), ("gateway", "parley_gateway")],
        env={
            "PARLEY_JWT_SECRET": SECRET,
            "PARLEY_HTTP_PORT": str(port),
            "PARLEY_LOG_LEVEL": os.environ.get("BENCH_LOG_LEVEL", "WARNING"),
        },
        log_dir=root / "logs",
    ).start()
    try:
        wait_for_port("127.0.0.1", port, timeout=30)
        me = str(uuid.uuid4())
        users = [me, *(str(uuid.uuid4()) for _ in range(max(BIG_GROUP + 40, members * 10)))]
        bearer = jwt.encode(
            {"sub": me, "org": ORG, "name": "Bench", "exp": int(time.time()) + 3600},
            SECRET,
            algorithm="HS256",
        )
        nc = await nats.connect(stack.nats.url)
        store = await open_store(mongo_url=None, sqlite_path=str(root / "data" / "chat.sqlite3"))
        repo = await StorageChatRepository.open(store)
        async with aiohttp.ClientSession(
            base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {bearer}"}
        ) as http:
            for _ in range(300):  # until the chat service answers through the gateway
                async with http.get("/rooms") as response:
                    if response.status == 200:
                        break
                await asyncio.sleep(0.1)
            else:
                raise RuntimeError("the stack did not come up")
            started = time.perf_counter()
            big_id, outsiders = await seed(nc, repo, me, users, rooms, members)
            seeded_in = time.perf_counter() - started
            print(f"seeded {rooms} rooms of {members} + one of {BIG_GROUP} in {seeded_in:.1f}s")

            async def http_list(_: int) -> None:
                async with http.get("/rooms", params={"extraFields": "members,settings"}) as response:
                    if response.status != 200:
                        raise RuntimeError(f"GET /rooms answered {response.status}: {await response.text()}")
                    await response.json()

            async def storage_list(_: int) -> None:
                await repo.rooms_of_user(ORG, me)

            # Warm both paths, and check the answer holds what was seeded (members and settings included).
            async with http.get("/rooms", params={"extraFields": "members,settings"}) as response:
                body = await response.json()
            await storage_list(0)
            sizes = sorted(len(room.get("members", ())) for room in body)
            if sizes != [members] * rooms + [BIG_GROUP] or not all("userSettings" in room for room in body):
                raise RuntimeError(f"GET /rooms did not answer the seeded rooms: {sizes[:3]}...")
            if hold:
                print("listing rooms until interrupted (attach py-spy now)")
                while True:
                    await http_list(0)
            results = [("GET /rooms?extraFields=members,settings", await timed(runs, http_list))]
            results.append(("  storage: rooms_of_user", await timed(runs, storage_list)))

            async def http_add(n: int) -> float:
                user = outsiders[n % len(outsiders)]
                body = {"userId": user, "owner": False, "historyCleared": False}
                started = time.perf_counter()
                async with http.post(f"/rooms/{big_id}/members", json=body) as response:
                    if response.status != 201:
                        raise RuntimeError(
                            f"POST members answered {response.status}: {await response.text()}"
                        )
                    await response.read()
                elapsed = (time.perf_counter() - started) * 1000
                async with http.delete(f"/rooms/{big_id}/members/{user}") as response:  # untimed
                    if response.status != 204:
                        raise RuntimeError(f"DELETE member answered {response.status}")
                return elapsed

            caller = domain.Caller(organization_id=ORG, user_id=me)

            def ctx() -> Context:
                return Context(now=utcnow(), new_id=lambda: str(uuid.uuid4()))

            async def storage_add(n: int) -> float:
                """What the chat service does in storage for the add: its reads, then its commit."""
                user = outsiders[n % len(outsiders)]
                body = api.InsertRoomMember(room_id=big_id, user_id=user, owner=False, history_cleared=False)
                started = time.perf_counter()
                target = await repo.user(ORG, user)
                room, workspace = await repo.room_with_parent(ORG, big_id)
                decision = decide_insert_member(room, caller, body, ctx(), user=target, workspace=workspace)
                owed = await repo.commit(ORG, decision, effects_of(ORG, decision))
                if owed is not None:
                    await repo.done([owed])  # its events are not wanted: the HTTP calls publish theirs
                elapsed = (time.perf_counter() - started) * 1000
                room, workspace = await repo.room_with_parent(ORG, big_id)
                ref = api.MemberRef(room_id=big_id, user_id=user)
                undo = decide_remove_member(room, caller, ref, ctx(), workspace=workspace)
                owed = await repo.commit(ORG, undo, effects_of(ORG, undo))
                if owed is not None:
                    await repo.done([owed])
                return elapsed

            await http_add(0)
            results.append(
                (
                    f"POST /rooms/{{id}}/members ({BIG_GROUP} members)",
                    [await http_add(n) for n in range(runs)],
                )
            )
            results.append(("  storage: reads + commit", [await storage_add(n) for n in range(runs)]))
        await nc.close()
        await store.close()
    finally:
        stack.stop()
    print(f"\n{'operation':<48} {'runs':>5} {'p50 ms':>9} {'p99 ms':>9} {'mean ms':>9}")
    for name, latencies in results:
        print(
            f"{name:<48} {len(latencies):>5} {pct(latencies, 0.5):>9.2f} {pct(latencies, 0.99):>9.2f}"
            f" {statistics.fmean(latencies):>9.2f}"
        )
    for (name, http_ms), (_, storage_ms) in (results[0:2], results[2:4]):
        ratio = pct(http_ms, 0.5) / pct(storage_ms, 0.5)
        print(f"{name}: HTTP p50 = {ratio:.2f}x storage p50")
    list_ratio = pct(results[0][1], 0.5) / pct(results[1][1], 0.5)
    print(f"target (list within 3x of storage): {'met' if list_ratio <= 3 else 'MISSED'}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rooms", type=int, default=500)
    parser.add_argument("--members", type=int, default=20)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--hold", action="store_true")
    args = parser.parse_args()
    uvloop.run(bench(args.rooms, args.members, args.runs, args.hold))


if __name__ == "__main__":
    main()
