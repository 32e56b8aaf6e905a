"""Chaos: the whole stack under a mixed load while each process is SIGKILLed in turn and restarted (issue 12).

    .tools/bin/uv run --frozen python bench/chaos.py --seconds 60 --rate 20
    .tools/bin/uv run --frozen python bench/chaos.py --kill conference,nats --rate 40
    .tools/bin/uv run --frozen python bench/chaos.py --nats-cluster 3 --seconds 60 --rate 20

Starts nats-server (JetStream on disk) and every service like `make run` (`parley_common.devstack.SERVICES`
through `LocalStack`), runs `bench/mixed_load.py`, and meanwhile kills each chosen process with SIGKILL and
starts it again on the same port and store. Afterwards every command answered 2xx must be in the state
and in its stream exactly once and every conference's versions gapless. Prints acknowledged, lost,
duplicated, refused, failures and, per kill, the time from the kill to the load's first 2xx through that
process again and the longest refusal streak (a refusal to the next 2xx) until the next kill. Target: 0 lost,
0 duplicated, 0 failures, every process back within 5 s.

`--nats-cluster 3` runs the stack on three clustered nats-servers with R3 streams and kills each server in
turn, the PARLEY_CONFERENCE stream's leader first: each stays down until every stream it led has a new
leader (the election, printed), then restarts on its port and store. Target: 0 lost, 0 duplicated, and no
refusal streak longer than the election plus the client's margin (request deadline + reconnect wait).

`kill_and_restart` is the seam for other kinds of process: anything with `kill()` and `start()` (e.g. one
server of a NATS cluster) can be handed to it and named in `targets`.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

# Run as a script: the repository root is not on sys.path (for `bench.mixed_load`).
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aiohttp
import nats
from nats.aio.client import Client as NatsClient
from parley_common.devstack import HEALTH_NAMES, SERVICE_ENV, SERVICES
from parley_common.messaging.streams import CONFERENCE_STREAM, STREAMS
from parley_common.processes import LocalStack, NatsServer, free_port

from bench.mixed_load import SECRET, MixedLoad, Report, print_report, verify

ALL_TARGETS = ("gateway", "conference", "snapshot", "chat", "media-0", "nats")
# The operations that go through each process (the gateway and nats-server carry all of them).
THROUGH: Mapping[str, tuple[str, ...] | None] = {
    "gateway": None,
    "nats": None,
    "conference": ("conference",),
    "snapshot": ("snapshot",),
    "chat": ("chat",),
    # No operation of the load needs a media node (no WebRTC): any 2xx shows the stack still answers.
    "media-0": None,
}


class Killable(Protocol):
    """A process the chaos can crash: a `ServiceProcess`, a `NatsServer`, one server of a cluster..."""

    def kill(self) -> None: ...

    def start(self) -> object: ...


def kill_and_restart(process: Killable, downtime: float = 0.0) -> float:
    """SIGKILL `process`, start it again after `downtime` s; returns when it was killed (monotonic)."""
    process.kill()
    killed = time.monotonic()
    if downtime:
        time.sleep(downtime)
    process.start()
    return killed


@dataclass
class ChaosStack:
    """The whole stack as `make run` starts it, on free ports, each service with LocalStack's metrics port."""

    local: LocalStack
    http_port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def metrics_ports(self) -> Mapping[str, int]:
        return self.local.metrics_ports

    def metrics_url(self, name: str) -> str:
        """Where `name` serves its Prometheus metrics (the gateway on its HTTP port)."""
        return self.local.metrics_url(name)

    @property
    def clustered(self) -> bool:
        return len(self.local.nats_servers) > 1

    def targets(self) -> dict[str, Killable]:
        # A cluster's servers by their names (nats-0...); "nats" is always the first (the only one alone).
        servers = {s.name: s for s in self.local.nats_servers} if self.clustered else {}
        return {"nats": self.local.nats, **servers, "gateway": self.local["gateway"], **self.local.processes}

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{self.url}/health/ready", timeout=2) as response:
                    if response.status == 204:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.1)
        raise TimeoutError("the stack is not ready")


def start_stack(
    root: Path, extra_env: Mapping[str, str] | None = None, *, nats_cluster: int = 1
) -> ChaosStack:
    """`nats_cluster` 3: three clustered nats-servers, every stream R3 (`LocalStack`)."""
    http_port = free_port()
    essential = ",".join(dict.fromkeys(HEALTH_NAMES[m] for _, m in SERVICES if m in HEALTH_NAMES))
    local = LocalStack(
        root / "data",
        list(SERVICES),
        env={
            "PARLEY_JWT_SECRET": SECRET,
            "PARLEY_SNAPSHOT_SIGNING_KEY": "chaos-bench-snapshot-signing-key",
            "PARLEY_HTTP_PORT": str(http_port),
            "PARLEY_ESSENTIAL_SERVICES": essential,
            "PARLEY_LOG_LEVEL": "INFO",
            **(extra_env or {}),
        },
        service_env={name: SERVICE_ENV.get(name, {}) for name, _ in SERVICES},
        nats_cluster=nats_cluster,
        log_dir=root / "logs",
    )
    stack = ChaosStack(local, http_port)
    local.start()
    try:
        stack.wait_ready()
    except Exception:
        local.stop()
        raise
    return stack


async def stream_leaders(nc: NatsClient) -> dict[str, str | None]:
    """Each stream's leader (a server name), None where it has none now (an election) or did not answer."""
    leaders: dict[str, str | None] = {}
    js = nc.jetstream(timeout=1.0)  # a request in flight on a killed server is lost, not late
    for config in STREAMS:
        name = config.name or ""
        try:
            info = await js.stream_info(name)
        except Exception:
            leaders[name] = None
            continue
        leaders[name] = info.cluster.leader if info.cluster is not None else None
    return leaders


async def kill_cluster_server(
    nc: NatsClient, server: NatsServer, *, downtime: float, timeout: float = 20.0
) -> tuple[float, float | None]:
    """SIGKILL one server of the cluster, wait until every stream it led has a leader again (the
    election), keep it down at least `downtime` s, restart it; returns (killed at, election s or None)."""
    server.kill()
    killed = time.monotonic()
    election: float | None = None
    while time.monotonic() - killed < timeout:
        leaders = await stream_leaders(nc)
        if all(leader not in (None, server.name) for leader in leaders.values()):
            election = time.monotonic() - killed
            break
        await asyncio.sleep(0.1)
    await asyncio.sleep(max(0.0, killed + downtime - time.monotonic()))
    await asyncio.to_thread(server.start)  # waits until it rejoined (its /healthz)
    return killed, election


@dataclass(frozen=True)
class Kill:
    name: str
    # Seconds from the kill to the load's first 2xx through that process (None: never).
    unavailable: float | None
    # The longest time the load was refused without a 2xx between, from the kill to the next one.
    refusal_streak: float
    # A NATS cluster server: seconds until every stream it led had a new leader (None: not in time).
    election: float | None = None


@dataclass
class ChaosResult:
    report: Report
    kills: list[Kill]

    @property
    def unavailability(self) -> list[tuple[str, float | None]]:
        """Per kill, in order: the process and the seconds until the load's first 2xx through it."""
        return [(k.name, k.unavailable) for k in self.kills]


CONFERENCE_LEADER_FIRST = "nats-cluster"


async def _expected(_: Exception) -> None:
    pass


# Past an election a client may still wait a request deadline (1.5 s) and a reconnection wait (1 s).
CLUSTER_CLIENT_MARGIN_SECONDS = 3.0


async def run_chaos(
    stack: ChaosStack,
    *,
    seconds: float,
    rate: float,
    kill: Sequence[str] = ALL_TARGETS,
    conferences: int = 5,
    rooms: int = 3,
    settle: float = 3.0,
    downtime: float = 0.0,
) -> ChaosResult:
    """The load for `seconds`, the kills spread evenly over it, then the verification.

    `nats-cluster` in `kill` stands for every server of a NATS cluster in turn, the PARLEY_CONFERENCE
    stream's current leader first; a cluster server is restarted once every stream it led was taken over.
    """
    targets = stack.targets()
    load = MixedLoad(stack.url, rate=rate, conferences=conferences, rooms=rooms)
    kills: list[tuple[str, float, float | None]] = []
    nc = await nats.connect(
        [s.url for s in stack.local.nats_servers],
        max_reconnect_attempts=-1,
        error_cb=_expected,  # its servers are killed on purpose: no traceback per lost connection
    )
    try:
        async with aiohttp.ClientSession() as session:
            await load.setup(session)
            stop = asyncio.Event()
            running = asyncio.create_task(load.run(stop))
            gap = seconds / (len(kill) + 1)
            for entry in kill:
                names = [entry]
                if entry == CONFERENCE_LEADER_FIRST:
                    leader = (await stream_leaders(nc)).get(CONFERENCE_STREAM)
                    names = sorted((s.name for s in stack.local.nats_servers), key=lambda n: n != leader)
                for name in names:
                    await asyncio.sleep(gap)
                    target = targets[name]
                    election: float | None = None
                    if stack.clustered and isinstance(target, NatsServer):
                        killed, election = await kill_cluster_server(nc, target, downtime=downtime)
                    else:
                        killed = await asyncio.to_thread(kill_and_restart, target, downtime)
                    kills.append((name, killed, election))
                    elected = "" if election is None else f", streams re-led after {election:.2f} s"
                    print(
                        f"killed {name} at {datetime.now(UTC):%H:%M:%S.%f} (restarted{elected})", flush=True
                    )
            await asyncio.sleep(gap)
            stop.set()
            await running
            ended = time.monotonic()
            await asyncio.sleep(settle)  # outboxes drain what they owe
            report = await verify(load, stack.local.nats_url, session)
    finally:
        await nc.close()
    figures: list[Kill] = []
    for index, (name, killed, election) in enumerate(kills):
        back = load.first_success_after(killed, THROUGH.get(name, None))
        until = kills[index + 1][1] if index + 1 < len(kills) else ended
        streak = load.longest_refusal_streak(killed, until)
        figures.append(Kill(name, None if back is None else back - killed, streak, election))
    return ChaosResult(report, figures)


def print_kills(kills: Sequence[Kill]) -> None:
    for index, k in enumerate(kills, 1):
        back = "never back" if k.unavailable is None else f"{k.unavailable:.2f} s"
        line = f"kill {index}: {k.name:<12} unavailable {back:<10} "
        line += f"longest refusal streak {k.refusal_streak:.2f} s"
        if k.election is not None or k.name.startswith("nats-"):
            line += "  election " + ("not within 20 s" if k.election is None else f"{k.election:.2f} s")
        print(line)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=60.0, help="duration of the load")
    parser.add_argument("--rate", type=float, default=20.0, help="commands per second")
    parser.add_argument(
        "--kill",
        default=None,
        help=f"processes to kill, in order (default: {','.join(ALL_TARGETS)}; with --nats-cluster: "
        f"{CONFERENCE_LEADER_FIRST}, each NATS server in turn, the conference stream's leader first)",
    )
    parser.add_argument(
        "--nats-cluster", type=int, default=1, help="NATS servers (3: a cluster, every stream R3)"
    )
    parser.add_argument("--conferences", type=int, default=10)
    parser.add_argument("--rooms", type=int, default=5)
    parser.add_argument("--downtime", type=float, default=0.0, help="seconds each killed process stays down")
    parser.add_argument("--keep", default="", help="a directory to keep the data and logs in")
    args = parser.parse_args()
    default = CONFERENCE_LEADER_FIRST if args.nats_cluster > 1 else ",".join(ALL_TARGETS)
    kill = [k for k in (args.kill or default).split(",") if k]
    with tempfile.TemporaryDirectory(prefix="parley-chaos-") as tmp:
        root = Path(args.keep) if args.keep else Path(tmp)
        stack = start_stack(root, nats_cluster=args.nats_cluster)
        try:
            result = asyncio.run(
                run_chaos(
                    stack,
                    seconds=args.seconds,
                    rate=args.rate,
                    kill=kill,
                    conferences=args.conferences,
                    rooms=args.rooms,
                    downtime=args.downtime,
                )
            )
        finally:
            stack.local.stop()
        print_report(result.report)
        print_kills(result.kills)
        ok = not (
            result.report.lost or result.report.duplicated or result.report.failures or result.report.gaps
        )
        # The target is the recovery's: the time a process was kept down on purpose does not count. A
        # cluster server's kill is held to its election instead (the others serve while it is down).
        servers = {s.name for s in stack.local.nats_servers} if stack.clustered else set()
        slow = [
            k.name
            for k in result.kills
            if k.name not in servers and (k.unavailable is None or k.unavailable - args.downtime > 5)
        ]
        if slow:
            print(f"not back within 5 s: {', '.join(slow)}")
        long_refused = [
            k.name
            for k in result.kills
            if k.name in servers
            and (k.election is None or k.refusal_streak > k.election + CLUSTER_CLIENT_MARGIN_SECONDS)
        ]
        if long_refused:
            print(f"refused for longer than the election: {', '.join(long_refused)}")
        return 0 if ok and not slow and not long_refused else 1


if __name__ == "__main__":
    sys.exit(main())
