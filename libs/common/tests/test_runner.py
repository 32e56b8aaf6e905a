"""The local runner's policies, without processes: supervision backoff and which credentials it shows."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
from parley_common.config import DEV_JWT_SECRET
from parley_common.devstack import banner, credentials
from parley_common.processes import Supervisor, describe_exit


class FakeChild:
    """A child whose death the test decides; `start` brings it back with a new pid."""

    def __init__(self, name: str, pid: int) -> None:
        self.name = name
        self.pid: int | None = pid
        self.status: int | None = None
        self.starts = 0

    def poll(self) -> int | None:
        return self.status

    def start(self) -> FakeChild:
        self.starts += 1
        self.status = None
        self.pid = (self.pid or 0) + 1000
        return self

    def die(self, status: int) -> None:
        self.status = status


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def supervise(clock: Clock, *children: FakeChild) -> tuple[Supervisor, list[str]]:
    reports: list[str] = []
    supervisor = Supervisor(
        list(children), report=reports.append, clock=clock, initial=0.5, maximum=4.0, stable_after=30.0
    )
    return supervisor, reports


def test_a_dead_child_is_reported_and_restarted_after_the_backoff_while_the_others_run(clock: Clock) -> None:
    nats, service = FakeChild("nats-server", 10), FakeChild("conference", 20)
    supervisor, reports = supervise(clock, nats, service)
    nats.die(-signal.SIGKILL)
    supervisor.tick()
    assert reports == ["nats-server (pid 10) died: signal SIGKILL; restarting in 0.5 s"]
    clock.now += 0.4
    supervisor.tick()
    assert nats.starts == 0, "restarted before its backoff"
    clock.now += 0.1
    supervisor.tick()
    assert nats.starts == 1 and nats.poll() is None
    assert reports[-1] == "nats-server restarted (pid 1010)"
    assert (service.starts, service.pid) == (0, 20), "a sibling was touched"
    assert supervisor.restarts("nats-server") == 1


def test_backoff_doubles_up_to_the_maximum_and_resets_once_the_child_stayed_up(clock: Clock) -> None:
    child = FakeChild("conference", 1)
    supervisor, reports = supervise(clock, child)
    delays = []
    for _ in range(5):
        child.die(3)
        supervisor.tick()
        delays.append(float(reports[-1].rsplit(" ", 2)[-2]))
        clock.now += delays[-1]
        supervisor.tick()
    assert delays == [0.5, 1.0, 2.0, 4.0, 4.0]
    assert "exit code 3" in reports[0]
    clock.now += 30.0  # up long enough: healthy again
    supervisor.tick()
    child.die(1)
    supervisor.tick()
    assert reports[-1].endswith("restarting in 0.5 s")


def test_nothing_is_restarted_once_stopping(clock: Clock) -> None:
    child = FakeChild("gateway", 1)
    supervisor, _ = supervise(clock, child)
    child.die(-signal.SIGINT)
    supervisor.tick()
    supervisor.stop()  # Ctrl-C: the children exit on purpose
    clock.now += 10
    supervisor.tick()
    assert child.starts == 0


def test_a_failed_restart_is_reported_and_retried_with_a_longer_backoff(clock: Clock) -> None:
    class Broken(FakeChild):
        def start(self) -> FakeChild:
            self.starts += 1
            raise RuntimeError("process exited with 1 before listening on 127.0.0.1:4222")

    child = Broken("nats-server", 1)
    supervisor, reports = supervise(clock, child)
    child.die(1)
    supervisor.tick()
    clock.now += 0.5
    supervisor.tick()
    assert "nats-server failed to restart: process exited with 1" in reports[-1]
    supervisor.tick()  # still dead: backs off further
    assert reports[-1].endswith("restarting in 1 s")


def test_describe_exit() -> None:
    assert describe_exit(0) == "exit code 0"
    assert describe_exit(-9) == "signal SIGKILL"
    assert describe_exit(-15) == "signal SIGTERM"


# --- credentials -----------------------------------------------------------------------------------

REAL_SECRET = "a-real-secret-from-the-operator-0123456789"


@pytest.mark.parametrize("environ", [{}, {"PARLEY_JWT_SECRET": ""}, {"PARLEY_JWT_SECRET": DEV_JWT_SECRET}])
def test_development_secret_registers_and_shows_the_development_client(environ: dict[str, str]) -> None:
    decided = credentials(environ)
    assert decided.development
    assert decided.env == {
        "PARLEY_JWT_SECRET": DEV_JWT_SECRET,
        "PARLEY_OAUTH_CLIENTS": "parley-dev:parley-dev-secret:parley-dev",
    }
    text = banner(8080, "nats://127.0.0.1:4222", Path("/data"), decided)
    assert "secret=parley-dev-secret" in text and DEV_JWT_SECRET in text


def test_development_secret_keeps_configured_clients() -> None:
    decided = credentials({"PARLEY_OAUTH_CLIENTS": "mine:mine-secret-123:acme"})
    assert decided.development and "PARLEY_OAUTH_CLIENTS" not in decided.env


@pytest.mark.parametrize(
    "environ",
    [
        {"PARLEY_JWT_SECRET": REAL_SECRET},
        {"PARLEY_JWT_SECRET": REAL_SECRET, "PARLEY_OAUTH_CLIENTS": "ops:ops-secret-4567:acme"},
        {"PARLEY_JWT_PUBLIC_KEY_FILE": "/etc/idp.pem"},
    ],
)
def test_a_real_secret_registers_nothing_and_is_never_shown(environ: dict[str, str]) -> None:
    decided = credentials(environ)
    assert not decided.development
    # Nothing added: the gateway reads PARLEY_OAUTH_CLIENTS (or nothing) from the inherited environment.
    assert decided.env == {}
    text = banner(8080, "nats://127.0.0.1:4222", Path("/data"), decided)
    for secret in (REAL_SECRET, "ops-secret-4567", "parley-dev-secret", DEV_JWT_SECRET):
        assert secret not in text
