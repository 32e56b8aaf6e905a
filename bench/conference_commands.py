"""Conference command latency: HTTP join+leave through the gateway vs a raw nats-py request/reply.

Starts its own stack (nats-server, conference service, gateway) on free ports with a throwaway data
directory, plus a raw nats-py echo responder in a separate process, then measures both paths in the same
run with 1 and 32 concurrent clients and prints p50/p99 latency and commands per second.

    uv run python bench/conference_commands.py [--seconds 5] [--clients 1,32] [--direct] [--hold]

`--direct` adds a third path: the same join+leave sent straight to the conference service over NATS, so
the service's share and the gateway's share of an HTTP command can be told apart. `--hold` keeps one
client joining and leaving through the gateway until interrupted, to attach `py-spy` to the services.

Target (issue 2): p50 of an HTTP command within 3x the raw NATS round trip measured in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import jwt
import nats
import uvloop
from parley_common.contracts.conference import JoinConferenceWebCommand, LeaveConferenceWebCommand
from parley_common.contracts.rpc import Caller, Request
from parley_common.messaging import subjects
from parley_common.messaging.codec import encode
from parley_common.processes import LocalStack, free_port, wait_for_port

SECRET = "bench-secret-bench-secret-bench-secret"
ECHO_RESPONDER = textwrap.dedent(
    """
    import asyncio, sys, nats, uvloop
    async def main():
        nc = await nats.connect(sys.argv[1])
        async def echo(msg):
            await msg.respond(msg.data)
        await nc.subscribe("bench.echo", cb=echo)
        print("ready", flush=True)
        await asyncio.Event().wait()
    uvloop.run(main())
    """
)


@dataclass
class Result:
    name: str
    clients: int
    latencies_ms: list[float]
    seconds: float

    def pct(self, q: float) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    @property
    def rate(self) -> float:
        return len(self.latencies_ms) / self.seconds


async def drive(
    name: str, clients: int, seconds: float, command: Callable[[int, int], Awaitable[None]]
) -> Result:
    """Each client issues commands back to back for `seconds`; every command's latency is recorded."""
    latencies: list[float] = []
    stop_at = time.perf_counter() + seconds

    async def client(index: int) -> None:
        n = 0
        while time.perf_counter() < stop_at:
            started = time.perf_counter()
            await command(index, n)
            latencies.append((time.perf_counter() - started) * 1000)
            n += 1

    started = time.perf_counter()
    await asyncio.gather(*(client(i) for i in range(clients)))
    return Result(name, clients, latencies, time.perf_counter() - started)


async def bench(
    seconds: float, client_counts: list[int], *, with_direct: bool = False, hold: bool = False
) -> list[Result]:
    root = Path(tempfile.mkdtemp(prefix="parley-bench-"))
    port = free_port()
    stack = LocalStack(
        root / "data",
        [("conference", "parley_conference"), ("gateway", "parley_gateway")],
        env={
            "PARLEY_JWT_SECRET": SECRET,
            "PARLEY_HTTP_PORT": str(port),
            "PARLEY_LOG_LEVEL": os.environ.get("BENCH_LOG_LEVEL", "WARNING"),
        },
        log_dir=root / "logs",
    ).start()
    responder: subprocess.Popen[bytes] | None = None
    try:
        wait_for_port("127.0.0.1", port, timeout=30)
        responder = subprocess.Popen(  # noqa: ASYNC220 - started once, before measuring
            [sys.executable, "-c", ECHO_RESPONDER, stack.nats.url], stdout=subprocess.PIPE
        )
        assert responder.stdout is not None and responder.stdout.readline().strip() == b"ready"
        nc = await nats.connect(stack.nats.url)
        bearer = jwt.encode(
            {"sub": "bench", "org": "bench", "exp": int(time.time()) + 3600}, SECRET, algorithm="HS256"
        )
        base = f"http://127.0.0.1:{port}/rtc-api/conferences"
        connector = aiohttp.TCPConnector(limit=max(client_counts) + 8)
        results: list[Result] = []
        async with aiohttp.ClientSession(
            connector=connector, headers={"Authorization": f"Bearer {bearer}"}
        ) as http:
            conference_id = ""
            for _ in range(100):  # until the conference service answers through the gateway
                async with http.post(f"{base}/create", json={}) as response:
                    if response.status == 200:
                        conference_id = (await response.json())["id"]
                        break
                await asyncio.sleep(0.1)
            if not conference_id:
                raise RuntimeError("the stack did not come up")
            payload = b'{"conferenceId":"x","userEndpointId":"y"}'

            async def raw(_: int, __: int) -> None:
                await nc.request("bench.echo", payload, timeout=5)

            async def join_or_leave(index: int, n: int) -> None:
                op = "join" if n % 2 == 0 else "leave"
                body = {"conferenceId": conference_id, "userEndpointId": f"bench-{index}"}
                async with http.post(f"{base}/{op}", json=body) as response:
                    if response.status not in (200, 204):
                        raise RuntimeError(f"{op} answered {response.status}: {await response.text()}")
                    await response.read()

            caller = Caller(organization_id="bench", user_id="bench", request_id="bench")

            async def direct(index: int, n: int) -> None:
                # The service alone: the request the gateway would send, without HTTP or the gateway.
                endpoint = f"direct-{index}"
                if n % 2 == 0:
                    op, body = "join", encode(Request(caller=caller, body=join_body(endpoint)))
                else:
                    op, body = "leave", encode(Request(caller=caller, body=leave_body(endpoint)))
                reply = await nc.request(subjects.conference_command(op), body, timeout=5)
                if b'"accepted"' not in reply.data:
                    raise RuntimeError(f"{op} answered {reply.data!r}")

            def join_body(endpoint: str) -> JoinConferenceWebCommand:
                return JoinConferenceWebCommand(conference_id=conference_id, user_endpoint_id=endpoint)

            def leave_body(endpoint: str) -> LeaveConferenceWebCommand:
                return LeaveConferenceWebCommand(conference_id=conference_id, user_endpoint_id=endpoint)

            await drive("warm-up", 4, 1.0, join_or_leave)
            await drive("warm-up", 4, 0.5, raw)
            if hold:
                print(f"stack up, conference {conference_id}; Ctrl-C to stop", flush=True)
                while True:
                    await drive("hold", 1, 3600, join_or_leave)
            for clients in client_counts:
                results.append(await drive("raw nats-py request/reply", clients, seconds, raw))
                # An even number of commands per client leaves every endpoint where it started.
                results.append(await drive("HTTP join+leave via gateway", clients, seconds, join_or_leave))
                if with_direct:
                    results.append(await drive("NATS join+leave to service", clients, seconds, direct))
        await nc.close()
        return results
    finally:
        if responder is not None:
            responder.terminate()
        stack.stop()
        if os.environ.get("BENCH_LOG_LEVEL"):
            print(f"logs kept in {root / 'logs'}")


def report(results: list[Result]) -> None:
    print(f"{'path':<30} {'clients':>7} {'p50 ms':>8} {'p99 ms':>8} {'mean ms':>8} {'cmd/s':>8}")
    for r in results:
        print(
            f"{r.name:<30} {r.clients:>7} {r.pct(0.5):>8.3f} {r.pct(0.99):>8.3f}"
            f" {statistics.fmean(r.latencies_ms):>8.3f} {r.rate:>8.0f}"
        )
    print()
    for clients in sorted({r.clients for r in results}):
        raw, http = (
            next(r for r in results if r.clients == clients and r.name.startswith(p)) for p in ("raw", "HTTP")
        )
        ratio = http.pct(0.5) / raw.pct(0.5)
        verdict = "meets" if ratio <= 3 else "misses"
        print(f"{clients:>2} client(s): HTTP p50 / raw NATS p50 = {ratio:.2f}x ({verdict} the 3x target)")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=5.0, help="measuring time per path and concurrency")
    parser.add_argument("--clients", default="1,32", help="comma-separated concurrency levels")
    parser.add_argument(
        "--direct",
        action="store_true",
        help="also measure join+leave sent straight to the conference service over NATS (no gateway)",
    )
    parser.add_argument(
        "--hold",
        action="store_true",
        help="keep one client joining and leaving until interrupted (to attach py-spy to the services)",
    )
    args = parser.parse_args()
    clients = [int(c) for c in args.clients.split(",")]
    report(uvloop.run(bench(args.seconds, clients, with_direct=args.direct, hold=args.hold)))


if __name__ == "__main__":
    main()
