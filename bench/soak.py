"""Soak: the mixed load for N minutes, each process's resources sampled from outside (issue 12).

    .tools/bin/uv run --frozen python bench/soak.py --minutes 10 --rate 20

Starts the whole stack like bench/chaos.py (each service with `LocalStack`'s `PARLEY_METRICS_PORT`), runs
`bench/mixed_load.py` and every `--every` seconds samples each process's RSS and open file descriptors
(psutil, by pid) and its asyncio task count: the `parley_asyncio_tasks` gauge of its Prometheus `/metrics`
(`LocalStack.metrics_url`: the gateway on its HTTP port, the others on their metrics port), `n/a` where
a service does not expose it. Prints each process's growth from the first sample after the warm-up to the
last, the load's counts (acknowledged, lost, duplicated, refused, failures) and every ERROR/CRITICAL/Traceback
line of the logs.
Target: under 10% memory growth, flat descriptors and tasks, no error in the logs.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

# Run as a script: the repository root is not on sys.path (for `bench.*`).
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aiohttp
import psutil

from bench.chaos import ChaosStack, start_stack
from bench.mixed_load import MixedLoad, print_report, verify

ERROR_LINE = re.compile(r"\b(ERROR|CRITICAL|Traceback)\b")
TASKS_GAUGE = re.compile(r"^parley_asyncio_tasks(?:\{[^}]*\})?\s+([0-9.eE+-]+)\s*$", re.MULTILINE)


@dataclass(frozen=True)
class Sample:
    at: float
    rss: int | None
    fds: int | None
    tasks: float | None


async def tasks_of(session: aiohttp.ClientSession, url: str | None) -> float | None:
    """The `parley_asyncio_tasks` gauge, or None when the service does not expose it (yet)."""
    if url is None:
        return None
    try:
        async with session.get(url, timeout=aiohttp.ClientTimeout(total=2)) as response:
            if response.status != 200:
                return None
            found = TASKS_GAUGE.search(await response.text())
    except (aiohttp.ClientError, TimeoutError):
        return None
    return float(found.group(1)) if found else None


async def sample(stack: ChaosStack, session: aiohttp.ClientSession) -> dict[str, Sample]:
    out: dict[str, Sample] = {}
    pids = {"nats": stack.local.nats.pid, **{n: p.pid for n, p in stack.local.processes.items()}}
    for name, pid in pids.items():
        rss = fds = None
        if pid is not None:
            try:
                process = psutil.Process(pid)
                rss, fds = process.memory_info().rss, process.num_fds()
            except psutil.Error:
                pass
        tasks = None if name == "nats" else await tasks_of(session, stack.metrics_url(name))
        out[name] = Sample(time.monotonic(), rss, fds, tasks)
    return out


def growth(first: float | None, last: float | None, unit: float = 1.0, suffix: str = "") -> str:
    if first is None or last is None:
        return "n/a"
    percent = f" ({(last - first) / first * 100:+.1f}%)" if first else ""
    return f"{first / unit:.0f}{suffix} -> {last / unit:.0f}{suffix}{percent}"


def log_errors(stack: ChaosStack, limit: int = 40) -> list[str]:
    lines: list[str] = []
    log_dir = stack.local.log_dir
    if log_dir is None:
        return lines
    for path in sorted(log_dir.glob("*.log")):
        for line in path.read_text(errors="replace").splitlines():
            if ERROR_LINE.search(line):
                lines.append(f"{path.stem}: {line[:300]}")
    return lines[:limit] + ([f"... {len(lines) - limit} more"] if len(lines) > limit else [])


async def soak(stack: ChaosStack, *, minutes: float, warmup: float, every: float, rate: float) -> None:
    load = MixedLoad(stack.url, rate=rate, conferences=10, rooms=5)
    series: list[dict[str, Sample]] = []
    async with aiohttp.ClientSession() as session:
        await load.setup(session)
        stop = asyncio.Event()
        running = asyncio.create_task(load.run(stop))
        started = time.monotonic()
        end = started + minutes * 60
        while time.monotonic() < end:
            await asyncio.sleep(min(every, max(0.0, end - time.monotonic())))
            taken = await sample(stack, session)
            series.append(taken)
            if (elapsed := time.monotonic() - started) >= warmup:
                print(
                    f"{elapsed:6.0f} s  "
                    + "  ".join(
                        f"{n} {s.rss // 2**20 if s.rss else '?'}MiB/{s.fds} fds/"
                        f"{'n/a' if s.tasks is None else int(s.tasks)} tasks"
                        for n, s in taken.items()
                    ),
                    flush=True,
                )
        stop.set()
        await running
        await asyncio.sleep(2)
        report = await verify(load, stack.local.nats.url, session)
    after = [s for s in series if s[next(iter(s))].at - started >= warmup] or series
    first, last = after[0], after[-1]
    print(f"\ngrowth after a {warmup:g} s warm-up ({len(after)} samples, every {every:g} s):")
    print(f"{'process':<12} {'RSS':<28} {'open fds':<22} asyncio tasks")
    for name in first:
        a, b = first[name], last[name]
        print(
            f"{name:<12} {growth(a.rss, b.rss, 2**20, 'MiB'):<28} {growth(a.fds, b.fds):<22} "
            f"{growth(a.tasks, b.tasks)}"
        )
    print()
    print_report(report)
    errors = log_errors(stack)
    print(f"\nerror lines in the logs: {len(errors)}")
    for line in errors:
        print(f"  {line}")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=20.0, help="commands per second")
    parser.add_argument("--warmup", type=float, default=60.0, help="seconds before the first counted sample")
    parser.add_argument("--every", type=float, default=10.0, help="seconds between samples")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="parley-soak-") as tmp:
        stack = start_stack(Path(tmp))
        try:
            asyncio.run(
                soak(stack, minutes=args.minutes, warmup=args.warmup, every=args.every, rate=args.rate)
            )
        finally:
            stack.local.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
