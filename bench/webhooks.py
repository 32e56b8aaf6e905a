"""Webhooks out: deliveries per second to 10 local receivers, and commit-to-delivery latency, next to the
same events read straight from a JetStream consumer in the same run.

Starts nats-server and the conference service (which runs webhook delivery) on free ports, registers
`--receivers` endpoints (aiohttp servers in a child process of their own, answering 204) over the
service's own request subject, then publishes `--events` conference events
(`ConferenceMetadataUpdatedEvent`, spread over `--keys` conferences, i.e. ordering keys) on
PARLEY_CONFERENCE as the outbox does, at `--rate` events/s (0: as fast as PubAcks come back). Each event's
`timestamp` is its commit instant (set just before its publish): both latencies are measured from it.
Reported:

  webhooks   events/s (events every receiver got) and deliveries/s (all receivers), each from the first
             publish to the last delivery; p50/p99 from commit to the receiver's handler; whether every
             key arrived in order at every receiver;
  consumer   the same events, read from the same stream in the same run by a plain pull consumer in this
             process (events/s from the first publish to the last read; p50/p99 from commit to the
             fetch's return): the floor webhooks add their fan-out, signing and HTTP to;
  ratio      webhooks' p50 / the consumer's, against the target.

Targets (issue 13): webhooks p50 within 3x of the consumer's, at least 1,000 deliveries/s.
Run by hand, not as a test, from the repo root (small sizes to check it works):

    uv run python bench/webhooks.py [--events 2000] [--receivers 10] [--keys 50] [--rate 200]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import msgspec
import nats
import nats.errors
from aiohttp import web
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from parley_common.contracts import webhook as api
from parley_common.contracts.conference import ConferenceMetadataUpdatedEvent
from parley_common.contracts.rpc import Caller, Rejected, Request
from parley_common.messaging import subjects
from parley_common.messaging.rpc import RpcClient
from parley_common.processes import LocalStack, free_port
from timing import pct

ORG = "bench"


def _serve(ports: list[int], total: Any, conn: Connection) -> None:
    """The receivers' process: record every POST until the parent says stop, then send the records."""
    got: list[list[tuple[float, float, str, int]]] = [[] for _ in ports]

    async def main() -> None:
        runners = []
        for index, port in enumerate(ports):

            async def hook(request: web.Request, index: int = index) -> web.Response:
                now = time.time()
                body = json.loads(await request.read())
                event = body["event"]
                stamp = datetime.fromisoformat(event["timestamp"]).timestamp()
                got[index].append((now, stamp, event["conferenceId"], event["conferenceVersion"]))
                with total.get_lock():
                    total.value += 1
                return web.Response(status=204)

            app = web.Application()
            app.router.add_post("/hook", hook)
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", port).start()
            runners.append(runner)
        conn.send("ready")
        await asyncio.get_running_loop().run_in_executor(None, conn.recv)
        for runner in runners:
            await runner.cleanup()

    asyncio.run(main())
    conn.send(got)


class Receivers:
    """`count` HTTP endpoints recording (receive time, event timestamp, key, version) per delivery.

    They run in a process of their own, as real receivers would: their HTTP work does not share this
    process's event loop with the publisher and the reference consumer (whose timings it would skew)."""

    def __init__(self, count: int) -> None:
        self.ports = [free_port() for _ in range(count)]
        self.got: list[list[tuple[float, float, str, int]]] = [[] for _ in range(count)]
        self._total: Any = multiprocessing.Value("i", 0)
        self._conn, child = multiprocessing.Pipe()
        self._process = multiprocessing.Process(target=_serve, args=(self.ports, self._total, child))

    async def start(self) -> None:
        self._process.start()
        await asyncio.to_thread(self._conn.recv)

    async def stop(self) -> None:
        self._conn.send("stop")
        self.got = await asyncio.to_thread(self._conn.recv)
        await asyncio.to_thread(self._process.join, 10)

    @property
    def total(self) -> int:
        return int(self._total.value)


def event(key: str, version: int) -> bytes:
    return msgspec.json.encode(
        ConferenceMetadataUpdatedEvent(
            id=str(uuid.uuid4()),
            conference_id=key,
            conference_version=version,
            organization_id=ORG,
            timestamp=datetime.now(UTC),
            user_endpoint_id="bench",
            user_id="bench",
            key="n",
            operation="SET",  # type: ignore[arg-type]
            value=str(version),
        )
    )


async def register(nc: nats.NATS, receivers: Receivers) -> None:
    rpc = RpcClient(nc, timeout=5)
    caller = Caller(organization_id=ORG, user_id="bench", request_id="bench")
    for port in receivers.ports:
        body = api.CreateWebhook(url=f"http://127.0.0.1:{port}/hook")
        deadline = time.monotonic() + 30
        while True:
            reply = await rpc.request(
                subjects.webhook_command("createWebhook"),
                Request(caller=caller, body=body),
                api.CreatedWebhook,
            )
            if not isinstance(reply, Rejected):
                break
            if time.monotonic() > deadline:
                raise SystemExit(f"registration refused: {reply.message}")
            await asyncio.sleep(0.2)


async def run(args: argparse.Namespace, nats_url: str) -> dict[str, Any]:
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    receivers = Receivers(args.receivers)
    await receivers.start()
    await register(nc, receivers)
    await asyncio.sleep(2.5)  # the delivery supervisor's next round starts the endpoints' workers

    consumer_lat: list[float] = []
    consumer_last = [0.0]
    sub = await js.pull_subscribe(
        subjects.CONFERENCE_EVENTS_ALL,
        durable="bench-baseline",
        stream="PARLEY_CONFERENCE",
        config=ConsumerConfig(ack_policy=AckPolicy.NONE, deliver_policy=DeliverPolicy.NEW),
    )

    async def baseline() -> None:
        while len(consumer_lat) < args.events:
            try:
                msgs = await sub.fetch(256, timeout=1)
            except (nats.errors.TimeoutError, TimeoutError):
                continue
            now = time.time()
            for msg in msgs:
                stamp = datetime.fromisoformat(json.loads(msg.data)["timestamp"]).timestamp()
                consumer_lat.append(now - stamp)
            consumer_last[0] = now

    reader = asyncio.create_task(baseline())
    versions: dict[str, int] = defaultdict(int)
    started = time.time()
    for n in range(args.events):
        key = f"bench-{n % args.keys}"
        versions[key] += 1
        await js.publish(
            subjects.conference_event("ConferenceMetadataUpdatedEvent"), event(key, versions[key])
        )
        if args.rate:
            ahead = started + (n + 1) / args.rate - time.time()
            if ahead > 0:
                await asyncio.sleep(ahead)
    published = time.time()
    wanted = args.events * args.receivers
    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline:
        if receivers.total >= wanted:
            break
        await asyncio.sleep(0.05)
    await asyncio.wait_for(reader, timeout=10)
    await receivers.stop()
    await nc.close()

    deliveries = [d for got in receivers.got for d in got]
    last = max((d[0] for d in deliveries), default=published)
    latencies = [d[0] - d[1] for d in deliveries]
    # An event counts as delivered once every receiver has it.
    per_event: dict[tuple[str, int], int] = defaultdict(int)
    for _, _, key, version in deliveries:
        per_event[(key, version)] += 1
    events_delivered = sum(1 for n in per_event.values() if n == args.receivers)
    webhook_p50 = pct(latencies, 0.5) if latencies else None
    consumer_p50 = pct(consumer_lat, 0.5) if consumer_lat else None
    deliveries_per_s = len(deliveries) / max(1e-9, last - started)
    in_order = all(
        [v for _, _, k, v in got if k == key] == sorted(v for _, _, k, v in got if k == key)
        for got in receivers.got
        for key in versions
    )
    return {
        "events": args.events,
        "receivers": args.receivers,
        "keys": args.keys,
        "offered_events_per_s": round(args.events / max(1e-9, published - started), 1),
        "delivered": len(deliveries),
        "expected": wanted,
        "deliveries_per_s": round(deliveries_per_s, 1),
        "webhook_events_per_s": round(events_delivered / max(1e-9, last - started), 1),
        "consumer_events_per_s": round(len(consumer_lat) / max(1e-9, consumer_last[0] - started), 1),
        "p50_ratio": round(webhook_p50 / consumer_p50, 2) if webhook_p50 and consumer_p50 else None,
        "webhook_p50_ms": round(pct(latencies, 0.5) * 1000, 2) if latencies else None,
        "webhook_p99_ms": round(pct(latencies, 0.99) * 1000, 2) if latencies else None,
        "consumer_p50_ms": round(pct(consumer_lat, 0.5) * 1000, 2) if consumer_lat else None,
        "consumer_p99_ms": round(pct(consumer_lat, 0.99) * 1000, 2) if consumer_lat else None,
        "in_order_per_key": in_order,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--receivers", type=int, default=10)
    parser.add_argument(
        "--keys", type=int, default=50, help="conferences (ordering keys) the events spread over"
    )
    parser.add_argument("--rate", type=float, default=200.0, help="events/s offered (0: as fast as possible)")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for the last delivery")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="parley-bench-webhooks-"))
    print(f"logs: {root / 'logs'}", file=sys.stderr)
    stack = LocalStack(
        root / "data",
        [("conference", "parley_conference")],
        env={"PARLEY_LOG_LEVEL": "WARNING", "PARLEY_WEBHOOK_TIMEOUT_SECONDS": "5"},
        log_dir=root / "logs",
    )
    stack.start()
    try:
        figures = asyncio.run(run(args, stack.nats.url))
    finally:
        stack.stop()
    print("| system | events/s | deliveries/s | p50 ms | p99 ms |")
    print("|---|---|---|---|---|")
    print(
        f"| webhooks ({figures['receivers']} receivers) | {figures['webhook_events_per_s']} | "
        f"{figures['deliveries_per_s']} | {figures['webhook_p50_ms']} | {figures['webhook_p99_ms']} |"
    )
    print(
        f"| JetStream consumer alone | {figures['consumer_events_per_s']} | "
        f"{figures['consumer_events_per_s']} | {figures['consumer_p50_ms']} | {figures['consumer_p99_ms']} |"
    )
    ratio = figures["p50_ratio"]
    print(
        f"p50 webhooks / consumer: {ratio}x (target <= 3: {'met' if ratio and ratio <= 3 else 'missed'}); "
        f"deliveries/s {figures['deliveries_per_s']} (target >= 1000: "
        f"{'met' if figures['deliveries_per_s'] >= 1000 else 'missed'}; only a load offering >= 1000/s, "
        "e.g. --rate 0, can meet it)"
    )
    print(
        f"delivered {figures['delivered']}/{figures['expected']}, offered {figures['offered_events_per_s']} "
        f"events/s over {figures['keys']} keys, in order per key: {figures['in_order_per_key']}"
    )
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return 0 if figures["delivered"] == figures["expected"] and figures["in_order_per_key"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
