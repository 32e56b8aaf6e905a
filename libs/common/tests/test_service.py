"""The shared `main()`: a setting a service cannot run with ends it with one clear line, not a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

# When this test module was imported: the process is older than that.
START = time.time()


@pytest.mark.parametrize(
    "module", ["parley_conference", "parley_snapshot", "parley_chat", "parley_media", "parley_gateway"]
)
def test_a_bad_setting_exits_2_with_one_line_naming_it(module: str) -> None:
    env = {**os.environ, "PARLEY_REQUEST_TIMEOUT_SECONDS": "soon", "PARLEY_NATS_URL": "nats://127.0.0.1:9"}
    done = subprocess.run(
        [sys.executable, "-m", module], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    assert "cannot start" in lines[0]
    assert "PARLEY_REQUEST_TIMEOUT_SECONDS must be a number" in lines[0]


def test_the_ready_line_times_each_start_up_step() -> None:
    """Where a restarted service spends its time before it answers (issue 12's 5 s target): each step's
    milliseconds in order, and the process's age (what the steps do not cover is interpreter start-up)."""
    from parley_common.service import StartupSteps, process_age_ms

    steps = StartupSteps()
    time.sleep(0.02)
    steps.done("streams")
    steps.done("wire")
    assert list(steps.ms) == ["streams", "wire"]
    assert 20 <= steps.ms["streams"] < 2000
    assert 0 <= steps.ms["wire"] < steps.ms["streams"]
    age = process_age_ms()
    if sys.platform == "linux":
        # Older than this module's import (within /proc's 10 ms ticks), and in milliseconds, not seconds.
        assert age is not None and age >= (time.time() - START) * 1e3 - 50
        assert age > 100  # an interpreter that imported pytest and parley_common took longer than 0.1 s
