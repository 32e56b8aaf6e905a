"""The shared `main()`: a setting a service cannot run with ends it with one clear line, not a traceback."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


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
