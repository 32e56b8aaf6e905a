"""Chaos: the whole stack under a mixed load while each process is SIGKILLed in turn and restarted (issue 12).

    .tools/bin/uv run --frozen python bench/chaos.py --seconds 60 --rate 20
    .tools/bin/uv run --frozen python bench/chaos.py --kill conference,nats --rate 40

Starts nats-server (JetStream on disk) and every service like `make run` (`parley_common.devstack.SERVICES`
through `LocalStack`), runs `bench/mixed_load.py`, and meanwhile kills each chosen process with SIGKILL and
starts it again on the same port and store. Afterwards every command answered 2xx must be in the state
and in its stream exactly once and every conference's versions gapless. Prints acknowledged, lost,
duplicated, refused, failures and, per kill, the time from the kill to the load's first 2xx through that
process again. Target: 0 lost, 0 duplicated, 0 failures, every process back within 5 s.

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
from parley_common.devstack import HEALTH_NAMES, SERVICE_ENV, SERVICES
from parley_common.processes import LocalStack, free_port

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
    """The whole stack as `make run` starts it, on free ports, each service with a metrics port."""

    local: LocalStack
    http_port: int
    metrics_ports: Mapping[str, int]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def targets(self) -> dict[str, Killable]:
        return {"nats": self.local.nats, "gateway": self.local["gateway"], **self.local.processes}

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


def start_stack(root: Path, extra_env: Mapping[str, str] | None = None) -> ChaosStack:
    http_port = free_port()
    metrics = {name: free_port() for name, _ in SERVICES if name != "gateway"}
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
        service_env={
            name: {
                **SERVICE_ENV.get(name, {}),
                **({"PARLEY_METRICS_PORT": str(metrics[name])} if name in metrics else {}),
            }
            for name, _ in SERVICES
        },
        log_dir=root / "logs",
    )
    stack = ChaosStack(local, http_port, metrics)
    local.start()
    try:
        stack.wait_ready()
    except Exception:
        local.stop()
        raise
    return stack


@dataclass
class ChaosResult:
    report: Report
    # Per kill, in order: the process and the seconds until the load's first 2xx through it (None: never).
    unavailability: list[tuple[str, float | None]]


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
    """The load for `seconds`, the kills spread evenly over it, then the verification."""
    targets = stack.targets()
    load = MixedLoad(stack.url, rate=rate, conferences=conferences, rooms=rooms)
    kills: list[tuple[str, float]] = []
    async with aiohttp.ClientSession() as session:
        await load.setup(session)
        stop = asyncio.Event()
        running = asyncio.create_task(load.run(stop))
        gap = seconds / (len(kill) + 1)
        for name in kill:
            await asyncio.sleep(gap)
            kills.append((name, await asyncio.to_thread(kill_and_restart, targets[name], downtime)))
            print(f"killed {name} at {datetime.now(UTC):%H:%M:%S.%f} (restarted)", flush=True)
        await asyncio.sleep(gap)
        stop.set()
        await running
        await asyncio.sleep(settle)  # outboxes drain what they owe
        report = await verify(load, stack.local.nats.url, session)
    unavailability: list[tuple[str, float | None]] = []
    for name, killed in kills:
        back = load.first_success_after(killed, THROUGH.get(name))
        unavailability.append((name, None if back is None else back - killed))
    return ChaosResult(report, unavailability)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=60.0, help="duration of the load")
    parser.add_argument("--rate", type=float, default=20.0, help="commands per second")
    parser.add_argument("--kill", default=",".join(ALL_TARGETS), help="processes to kill, in order")
    parser.add_argument("--conferences", type=int, default=10)
    parser.add_argument("--rooms", type=int, default=5)
    parser.add_argument("--downtime", type=float, default=0.0, help="seconds each killed process stays down")
    parser.add_argument("--keep", default="", help="a directory to keep the data and logs in")
    args = parser.parse_args()
    kill = [k for k in args.kill.split(",") if k]
    with tempfile.TemporaryDirectory(prefix="parley-chaos-") as tmp:
        root = Path(args.keep) if args.keep else Path(tmp)
        stack = start_stack(root)
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
        print_report(result.report, result.unavailability)
        ok = not (
            result.report.lost or result.report.duplicated or result.report.failures or result.report.gaps
        )
        # The target is the recovery's: the time a process was kept down on purpose does not count.
        slow = [n for n, s in result.unavailability if s is None or s - args.downtime > 5]
        if slow:
            print(f"not back within 5 s: {', '.join(slow)}")
        return 0 if ok and not slow else 1


if __name__ == "__main__":
    sys.exit(main())
