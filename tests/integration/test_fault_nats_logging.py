"""Every service logs its NATS connection going down and coming back (issue 8, defect 3, the services'
half): the callbacks are wired once, in the shared `make_broker`, tried here on a nats-server killed
with SIGKILL and restarted on the same port."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
from parley_common.messaging.broker import make_broker

from tests.integration.test_fault_deadlines import KillableNats, until


@pytest.fixture
def captured() -> Iterator[list[dict[str, Any]]]:
    with structlog.testing.capture_logs() as logs:
        yield logs


def lines(logs: list[dict[str, Any]], event: str) -> list[dict[str, Any]]:
    return [entry for entry in logs if entry["event"] == event]


async def test_a_service_logs_nats_disconnects_reconnects_and_its_close(
    tmp_path: Path, captured: list[dict[str, Any]]
) -> None:
    server = KillableNats(tmp_path / "nats")
    server.start()
    broker = make_broker(server.url, name="parley-test")
    await broker.connect()
    try:
        server.kill()
        await until(lambda: bool(lines(captured, "nats disconnected; reconnecting")), "a disconnect logged")
        server.start()
        await until(lambda: bool(lines(captured, "nats reconnected")), "a reconnect logged")
    finally:
        await broker.stop()
        server.kill()

    (down,) = lines(captured, "nats disconnected; reconnecting")
    assert down["log_level"] == "warning"
    assert down["connection"] == "parley-test"
    assert down["nats"] == server.url
    (back,) = lines(captured, "nats reconnected")
    assert back["log_level"] == "info"
    # Failed attempts during the outage: one warning line each, no traceback.
    assert all(e["log_level"] == "warning" for e in lines(captured, "nats connection error"))
    # Stopping the service is an orderly close: info, and not reported as a disconnect.
    (closed,) = lines(captured, "nats connection closed")
    assert closed["log_level"] == "info"
    assert len(lines(captured, "nats disconnected; reconnecting")) == 1
