"""Coviu sessions paging (issue 10): `GET /v1/sessions?page_size=200` and `?state=X`, HTTP vs storage.

Seeds an organization with `--sessions` Coviu sessions of 4 participants each straight through the
conference service's own repository (`MeetingRepository.commit`, the very documents its use cases write:
meetings, invitations, the `state` index) into a throwaway data directory, then starts a stack on free
ports (nats-server, conference, gateway) on that directory and measures, in the same run:

- `GET /v1/sessions?page_size=200&page=N` over HTTP (pages spread over the whole listing), p50/p99 over
  `--runs` calls, NEXT TO the storage reads the conference service makes for it (`MeetingRepository.page`
  + `invitations` for the page, the same SQLite file, opened by this process);
- `GET /v1/sessions?page_size=200&state=X` (X is held by `--sessions / --states` sessions) the same way.

    uv run python bench/sessions_paging.py [--sessions 10000] [--states 50] [--runs 30]

A third line per query times the conference service's answer on the bus (`listMeetings`), to show where
the time between the two goes. The HTTP timing ends when the answer is received whole (the client's JSON
decoding is not the server's latency).

Target: each HTTP p50 within 3x of its storage p50. Not run in CI.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import jwt
import msgspec
import nats
import uvloop
from parley_common.commits import CommitLog
from parley_common.contracts import meeting as api
from parley_common.contracts.rpc import Accepted, Caller, Request
from parley_common.messaging import subjects
from parley_common.messaging.rpc import RpcClient
from parley_common.processes import LocalStack, free_port, wait_for_port
from parley_common.storage import open_store
from parley_conference.adapters.meetings import MeetingRepository, open_commit_log
from timing import pct, timed

SECRET = "bench-secret-bench-secret-bench-secret"
ORG = "bench"
CLIENT = "bench-client"
PARTICIPANTS = 4
PAGE_SIZE = 200


def session(index: int, states: int, now: datetime) -> tuple[api.MeetingView, list[api.InvitationView]]:
    """One Coviu session as the conference service stores it: created in order, starting in a spread."""
    meeting_id = str(uuid.uuid4())
    created = now - timedelta(seconds=10_000 - index)
    starts = now + timedelta(days=1, minutes=(index * 37) % 50_000)
    invitations = [
        api.InvitationView(
            invitation_id=str(uuid.uuid4()),
            meeting_id=meeting_id,
            role="moderator" if p == 0 else "publisher",
            lobby=p != 0,
            created_at=created,
            display_name=f"participant {p}",
            state=f"s{index % states}",
        )
        for p in range(PARTICIPANTS)
    ]
    meeting = api.MeetingView(
        meeting_id=meeting_id,
        conference_id=str(uuid.uuid4()),
        organization_id=ORG,
        dialect="coviu",
        created_by=CLIENT,
        created_at=created,
        name=f"session {index}",
        scheduled=True,
        starts_at=starts,
        ends_at=starts + timedelta(hours=1),
        starts_at_text=starts.isoformat().replace("+00:00", "Z"),
        ends_at_text=(starts + timedelta(hours=1)).isoformat().replace("+00:00", "Z"),
    )
    return meeting, invitations


async def seed(repo: MeetingRepository, log: CommitLog, sessions: int, states: int) -> None:
    now = datetime.now(UTC)
    for index in range(sessions):
        meeting, invitations = session(index, states, now)
        owed = await repo.commit(meeting, invitations=invitations, changed_invitations=invitations)
        await log.done([owed])  # nothing owed: no events (the stack is not running yet)


async def bench(sessions: int, states: int, runs: int) -> None:
    root = Path(tempfile.mkdtemp(prefix="parley-bench-"))
    data = root / "data"
    data.mkdir(parents=True)
    store = await open_store(mongo_url=None, sqlite_path=str(data / "conference.sqlite3"))
    log = await open_commit_log(store)
    repo = await MeetingRepository.open(store, log)
    started = time.perf_counter()
    await seed(repo, log, sessions, states)
    print(
        f"seeded {sessions} sessions of {PARTICIPANTS} participants in {time.perf_counter() - started:.1f}s"
    )
    port = free_port()
    stack = LocalStack(
        data,
        [("conference", "parley_conference"), ("gateway", "parley_gateway")],
        env={
            "PARLEY_JWT_SECRET": SECRET,
            "PARLEY_HTTP_PORT": str(port),
            "PARLEY_LOG_LEVEL": os.environ.get("BENCH_LOG_LEVEL", "WARNING"),
        },
        log_dir=root / "logs",
    ).start()
    results: list[tuple[str, list[float]]] = []
    try:
        wait_for_port("127.0.0.1", port, timeout=30)
        bearer = jwt.encode(
            {"sub": CLIENT, "org": ORG, "exp": int(time.time()) + 3600}, SECRET, algorithm="HS256"
        )
        pages = max(1, sessions // PAGE_SIZE)
        nc = await nats.connect(stack.nats.url)
        rpc = RpcClient(nc, timeout=10)
        async with aiohttp.ClientSession(
            base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {bearer}"}
        ) as http:
            for _ in range(300):  # until the conference service answers through the gateway
                async with http.get("/v1/sessions", params={"page_size": "1"}) as response:
                    if response.status == 200:
                        break
                await asyncio.sleep(0.1)
            else:
                raise RuntimeError("the stack did not come up")

            async def http_get(params: dict[str, str]) -> dict[str, Any]:
                async with http.get("/v1/sessions", params=params) as response:
                    if response.status != 200:
                        raise RuntimeError(
                            f"GET /v1/sessions answered {response.status}: {await response.text()}"
                        )
                    body: dict[str, Any] = msgspec.json.decode(await response.read())
                    return body

            async def http_read(params: dict[str, str]) -> None:
                """The answer received whole; decoding it is the client's business, not the server's."""
                async with http.get("/v1/sessions", params=params) as response:
                    if response.status != 200:
                        raise RuntimeError(f"GET /v1/sessions answered {response.status}")
                    await response.read()

            caller = Caller(organization_id=ORG, user_id=CLIENT, request_id="bench")

            async def bus_get(query: api.ListMeetings) -> None:
                """The conference service's answer on the bus (what the gateway waits for)."""
                reply = await rpc.request(
                    subjects.meeting_query("listMeetings"),
                    Request(caller=caller, body=query),
                    api.MeetingPage,
                )
                if not isinstance(reply, Accepted):
                    raise RuntimeError(f"listMeetings answered {reply}")

            async def storage_get(query: api.ListMeetings) -> None:
                """What the conference service reads for the page: the page, then its invitations."""
                page, _ = await repo.page(ORG, query)
                await repo.invitations([m.meeting_id for m in page])

            def page_of(n: int) -> int:
                return (n * 7) % pages  # spread over the listing, deep pages included

            # Warm both paths and check the answer is what was seeded.
            first = await http_get({"page_size": str(PAGE_SIZE)})
            if len(first["content"]) != min(PAGE_SIZE, sessions) or first["page_count"] != pages:
                raise RuntimeError(
                    f"unexpected first page: {len(first['content'])} sessions, {first['page_count']}"
                )
            if any(len(s["participants"]) != PARTICIPANTS for s in first["content"]):
                raise RuntimeError("a session came back without its participants")
            held = await http_get({"page_size": str(PAGE_SIZE), "state": "s1"})
            if len(held["content"]) != min(PAGE_SIZE, sessions // states):
                raise RuntimeError(f"?state=s1 answered {len(held['content'])} sessions")

            async def http_page(n: int) -> None:
                await http_read({"page_size": str(PAGE_SIZE), "page": str(page_of(n))})

            async def bus_page(n: int) -> None:
                await bus_get(api.ListMeetings(dialect="coviu", page=page_of(n), page_size=PAGE_SIZE))

            async def storage_page(n: int) -> None:
                await storage_get(api.ListMeetings(dialect="coviu", page=page_of(n), page_size=PAGE_SIZE))

            async def http_state(n: int) -> None:
                await http_read({"page_size": str(PAGE_SIZE), "state": f"s{n % states}"})

            async def bus_state(n: int) -> None:
                await bus_get(api.ListMeetings(dialect="coviu", page_size=PAGE_SIZE, state=f"s{n % states}"))

            async def storage_state(n: int) -> None:
                await storage_get(
                    api.ListMeetings(dialect="coviu", page_size=PAGE_SIZE, state=f"s{n % states}")
                )

            results.append((f"GET /v1/sessions?page_size={PAGE_SIZE}&page=N", await timed(runs, http_page)))
            results.append(("  bus: listMeetings (conference service)", await timed(runs, bus_page)))
            results.append(("  storage: page + invitations", await timed(runs, storage_page)))
            results.append((f"GET /v1/sessions?page_size={PAGE_SIZE}&state=X", await timed(runs, http_state)))
            results.append(("  bus: listMeetings (conference service)", await timed(runs, bus_state)))
            results.append(("  storage: state page + invitations", await timed(runs, storage_state)))
        await nc.drain()
    finally:
        await store.close()
        stack.stop()
    print(f"\n{'operation':<48} {'runs':>5} {'p50 ms':>9} {'p99 ms':>9} {'mean ms':>9}")
    for name, latencies in results:
        print(
            f"{name:<48} {len(latencies):>5} {pct(latencies, 0.5):>9.2f} {pct(latencies, 0.99):>9.2f}"
            f" {statistics.fmean(latencies):>9.2f}"
        )
    met = True
    # Each query's lines: HTTP, bus, storage.
    for (name, http_ms), _, (_, storage_ms) in (results[0:3], results[3:6]):
        ratio = pct(http_ms, 0.5) / pct(storage_ms, 0.5)
        met = met and ratio <= 3
        print(f"{name}: HTTP p50 = {ratio:.2f}x storage p50")
    print(f"target (within 3x of storage): {'met' if met else 'MISSED'}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sessions", type=int, default=10_000)
    parser.add_argument("--states", type=int, default=50)
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    uvloop.run(bench(args.sessions, args.states, args.runs))


if __name__ == "__main__":
    main()
