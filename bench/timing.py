"""What every benchmark here measures with: percentiles and sequential timed calls (milliseconds).

The benches run as scripts (`uv run python bench/<name>.py`), so this directory is on `sys.path` and they
`import timing`.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any


def pct(values: list[float], q: float) -> float:
    """The `q` quantile (0..1) of `values`: the value below which that share of them falls."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def timed(runs: int, call: Callable[[int], Awaitable[Any]]) -> list[float]:
    """`call(n)` for n in 0..runs-1, one after the other: each one's latency in milliseconds."""
    latencies = []
    for n in range(runs):
        started = time.perf_counter()
        await call(n)
        latencies.append((time.perf_counter() - started) * 1000)
    return latencies
