"""Faults under the local runner: NATS or a service SIGKILLed, health while NATS is down, and what `make run`
shows and waits for (real nats-server and services as processes)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import aiohttp
import pytest
from parley_common.processes import free_port

from tests.integration.helpers import Api, Stack, token


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"not within {timeout} s: {what}")


def ready(stack: Stack) -> bool:
    try:
        stack.wait_ready(stack.ports[0], timeout=0.5)
    except TimeoutError:
        return False
    return True


@pytest.fixture
def small_stack(tmp_path: Path) -> Iterator[Stack]:
    running = Stack(tmp_path, gateways=1)
    running.start()
    yield running
    running.stop()


async def test_health_reports_nats_down_from_a_decision(small_stack: Stack) -> None:
    small_stack.local.nats.kill()
    try:
        async with aiohttp.ClientSession() as session:
            anonymous = Api(session, small_stack.url, None)
            reported: dict[str, bool] = {}
            deadline = time.monotonic() + 10
            # Until the gateway's client noticed the loss; every answer on the way is a report, not a 500.
            while reported.get("nats", True) and time.monotonic() < deadline:
                started = time.monotonic()
                health = await anonymous.get("/health", timeout=5)
                assert time.monotonic() - started < 3, "a probe waited too long"
                assert health.status == 200, health
                assert health.body["isLive"] is True and health.body["status"] == "error", health
                reported = {d["name"]: d["isHealthy"] for d in health.body["dependencies"]}
                await asyncio.sleep(0.1)
            assert reported == {"nats": False, "conference": False}
            started = time.monotonic()
            assert (await anonymous.get("/health/ready", timeout=5)).status == 500
            assert time.monotonic() - started < 3
        gateway_log = small_stack.logs("gateway-0")
        assert "Traceback" not in gateway_log and "Error handling request" not in gateway_log
    finally:
        small_stack.local.nats.start()
    wait_until(lambda: ready(small_stack), 20, "stack ready again once NATS is back")


def test_the_runner_restarts_a_killed_nats_server_and_service_and_leaves_the_rest_running(
    small_stack: Stack,
) -> None:
    local = small_stack.local
    reports: list[str] = []
    supervisor = local.supervisor(reports.append, initial=0.2, maximum=1.0)
    stopping = threading.Event()

    def run() -> None:
        while not stopping.is_set():
            supervisor.tick()
            time.sleep(0.05)

    runner = threading.Thread(target=run, daemon=True)
    runner.start()
    try:
        services = {name: process.pid for name, process in local.processes.items()}
        killed = local.nats.pid
        assert killed is not None
        os.kill(killed, signal.SIGKILL)
        wait_until(lambda: local.nats.pid != killed and local.nats.poll() is None, 5, "nats-server restarted")
        assert f"nats-server (pid {killed}) died: signal SIGKILL; restarting in 0.2 s" in reports
        # Same port and store: the services reconnect to it and the stack serves again.
        wait_until(lambda: ready(small_stack), 10, "stack ready on the restarted nats-server")
        assert {name: process.pid for name, process in local.processes.items()} == services

        conference = services["conference"]
        assert conference is not None
        os.kill(conference, signal.SIGKILL)
        wait_until(lambda: local["conference"].pid != conference, 5, "conference restarted")
        assert f"conference (pid {conference}) died: signal SIGKILL; restarting in 0.2 s" in reports
        wait_until(lambda: ready(small_stack), 20, "stack ready with the restarted conference service")
        assert local["gateway-0"].pid == services["gateway-0"] and local["gateway-0"].running
        assert local.nats.poll() is None
        assert supervisor.restarts("gateway-0") == 0
    finally:
        stopping.set()
        runner.join()


def _children(pid: int) -> dict[str, int]:
    """The runner's children by module (`parley_conference`, ...) or `nats-server`."""
    found: dict[str, int] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            cmdline = Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")
            name = Path(cmdline[0].decode()).name
            key = cmdline[2].decode() if len(cmdline) > 2 and cmdline[1] == b"-m" else name
            found[key] = int(child)
    return found


def _start_runner(env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "parley_common.devstack"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


async def test_make_run_waits_for_every_service_supervises_and_never_shows_a_real_secret(
    tmp_path: Path,
) -> None:
    """`python -m parley_common.devstack` (what `make run` runs) with an operator's secret."""
    real_secret = "operator-secret-that-must-never-be-printed-42"
    http_port, nats_port = free_port(), free_port()
    env = {
        **os.environ,
        "PARLEY_DATA_DIR": str(tmp_path / "data"),
        "PARLEY_HTTP_PORT": str(http_port),
        "PARLEY_NATS_PORT": str(nats_port),
        "PARLEY_JWT_SECRET": real_secret,
        "PARLEY_SNAPSHOT_SIGNING_KEY": "operator-snapshot-signing-key-0123",
        "PARLEY_READY_TIMEOUT_SECONDS": "90",
    }
    for name in ("PARLEY_OAUTH_CLIENTS", "PARLEY_ESSENTIAL_SERVICES", "PARLEY_OPTIONAL_SERVICES"):
        env.pop(name, None)
    runner = _start_runner(env)
    lines: list[str] = []

    def read() -> None:
        assert runner.stdout is not None
        for line in runner.stdout:
            lines.append(line)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    base = f"http://127.0.0.1:{http_port}"
    try:
        await asyncio.to_thread(
            wait_until, lambda: any("Parley is running" in line for line in lines), 100, "the banner"
        )
        async with aiohttp.ClientSession() as session:
            # Ready when the banner shows, media included: the conference service knows a node already.
            anonymous = Api(session, base, None)
            assert (await anonymous.get("/health/ready")).status == 204
            health = (await anonymous.get("/health")).body
            reported = {d["name"]: d["isHealthy"] for d in health["dependencies"]}
            assert reported["media"] and reported["conference.media"] and reported["snapshot"], reported
            assert reported["chat"], reported  # make run starts the chat service and waits for it
            # The development client is not registered next to a real secret.
            refused = await anonymous.post(
                "/security/oauth/token",
                headers={"Content-Type": "application/x-www-form-urlencoded"},
                data="grant_type=client_credentials&client_id=parley-dev&client_secret=parley-dev-secret",
            )
            assert refused.status in (400, 401), refused
            api = Api(session, base, token("alice", secret=real_secret))
            assert (await api.post("create", {})).status == 200

        # The runner supervises: a killed service is reported and restarted, the others keep their pids.
        children = _children(runner.pid)
        conference = children.pop("parley_conference")
        os.kill(conference, signal.SIGKILL)
        await asyncio.to_thread(
            wait_until,
            lambda: (
                any(f"conference (pid {conference}) died: signal SIGKILL" in line for line in lines)
                and any("conference restarted" in line for line in lines)
            ),
            10,
            "the conference service restarted",
        )
        after = _children(runner.pid)
        assert after.pop("parley_conference") != conference
        assert after == children
    finally:
        runner.send_signal(signal.SIGINT)
        try:
            runner.wait(timeout=40)
        finally:
            if runner.poll() is None:
                runner.kill()
        reader.join(timeout=5)
    output = "".join(lines)
    assert runner.returncode == 0, output[-3000:]
    assert "parley: stopped" in output
    assert real_secret not in output and "parley-dev-secret" not in output
    logs = tmp_path / "data" / "logs"
    assert all(real_secret not in path.read_text(errors="replace") for path in logs.glob("*.log"))
