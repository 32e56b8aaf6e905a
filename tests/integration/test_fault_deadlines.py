"""A command answered 503 is never executed later (issue 8, defect 1), on a real nats-server killed with
SIGKILL and restarted on the same port, as `make run` would see it."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import aiohttp
import msgspec
import nats
import psutil
import pytest
from nats.aio.client import Client
from parley_common.contracts.base import Empty
from parley_common.contracts.rpc import Accepted, Caller, Rejected, Request
from parley_common.messaging.broker import make_broker
from parley_common.messaging.rpc import Responders, RpcClient
from parley_common.processes import free_port, nats_server_binary, wait_for_port

from tests.integration.helpers import Api, Stack, token, unique

SUBJECT = "parley.test.cmd.count"
CALLER = Caller(organization_id="acme", user_id="alice", request_id="r-1")
_reply = msgspec.json.Decoder(Accepted[Empty] | Rejected)


class KillableNats:
    """A nats-server with JetStream that the test can SIGKILL and start again on the same port."""

    def __init__(self, store_dir: Path) -> None:
        self.store_dir = store_dir
        self.port = free_port()
        self.url = f"nats://127.0.0.1:{self.port}"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self._process = subprocess.Popen(
            [
                nats_server_binary(),
                "-a",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-js",
                "-sd",
                str(self.store_dir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_port("127.0.0.1", self.port, process=self._process)

    def kill(self) -> None:
        if self._process is not None:
            self._process.kill()
            self._process.wait()
            self._process = None


@pytest.fixture
def server(tmp_path: Path) -> Iterator[KillableNats]:
    running = KillableNats(tmp_path / "nats")
    running.start()
    yield running
    running.kill()


class CountingService:
    """A service answering SUBJECT through the shared `answering` path, counting what it executes."""

    def __init__(self) -> None:
        self.calls = 0

    async def handle(self, request: Request[Empty]) -> Accepted[Empty]:
        self.calls += 1
        return Accepted(value=Empty())


@pytest.fixture
async def service(server: KillableNats) -> AsyncIterator[tuple[CountingService, Client]]:
    # Reconnects faster than the gateway-like client below, so it is subscribed again by the time that
    # client's buffer would be replayed (the replay is what the test looks for).
    nc = await nats.connect(server.url, reconnect_time_wait=0.05, max_reconnect_attempts=-1)
    counting = CountingService()
    responders = Responders(nc)
    await responders.serve(SUBJECT, Request[Empty], counting.handle, queue="count", parallelism=1)
    yield counting, nc
    await responders.stop()
    await nc.close()


async def until(predicate: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not met within {timeout} s")
        await asyncio.sleep(0.02)


def with_deadline(request: Request[Empty], deadline: float) -> bytes:
    """The request as a sender stamps it on the wire (the `deadline` field of the envelope)."""
    return msgspec.json.encode({**msgspec.to_builtins(request), "deadline": deadline})


async def test_a_request_past_its_deadline_is_refused_without_running_the_handler(
    service: tuple[CountingService, Client],
) -> None:
    counting, nc = service
    late = with_deadline(Request(caller=CALLER, body=Empty()), time.time() - 0.5)
    reply = _reply.decode((await nc.request(SUBJECT, late, timeout=2)).data)
    assert isinstance(reply, Rejected)
    assert reply.status == 503
    assert "deadline" in reply.message
    assert counting.calls == 0
    # The same request within its deadline is served.
    timely = with_deadline(Request(caller=CALLER, body=Empty()), time.time() + 5)
    assert isinstance(_reply.decode((await nc.request(SUBJECT, timely, timeout=2)).data), Accepted)
    assert counting.calls == 1


async def test_a_request_answered_503_during_a_nats_outage_is_not_executed_when_nats_returns(
    server: KillableNats, service: tuple[CountingService, Client]
) -> None:
    counting, responder = service
    gateway = make_broker(server.url, name="gateway-like")  # the gateway's own connection settings
    await gateway.connect()
    try:
        client = gateway.connection
        rpc = RpcClient(client, timeout=1.5)
        assert isinstance(await rpc.request(SUBJECT, Request(caller=CALLER, body=Empty()), Empty), Accepted)
        assert counting.calls == 1

        server.kill()
        await until(lambda: not client.is_connected, "the client noticed the outage")
        started = time.monotonic()
        reply = await rpc.request(SUBJECT, Request(caller=CALLER, body=Empty()), Empty)
        assert isinstance(reply, Rejected)
        assert reply.status == 503
        assert time.monotonic() - started < 2.0  # within the gateway's 2 s promise

        server.start()
        await until(lambda: responder.is_connected and client.is_connected, "both connections back")
        await asyncio.sleep(3)  # long enough for anything buffered to have been delivered and executed
        assert counting.calls == 1, "a request answered 503 was executed after NATS came back"
        # And the bus works again.
        assert isinstance(await rpc.request(SUBJECT, Request(caller=CALLER, body=Empty()), Empty), Accepted)
        assert counting.calls == 2
    finally:
        await gateway.stop()


async def test_a_request_sent_while_serving_another_inherits_its_earlier_deadline(
    service: tuple[CountingService, Client],
) -> None:
    counting, nc = service
    rpc = RpcClient(nc, timeout=10.0)  # a generous timeout of its own, as the conference -> media path has
    inner: list[Accepted[Empty] | Rejected] = []

    async def front(request: Request[Empty]) -> Accepted[Empty] | Rejected:
        await asyncio.sleep(0.5)  # slow work first: the caller's deadline passes meanwhile
        reply = await rpc.request(SUBJECT, Request(caller=request.caller, body=Empty()), Empty)
        inner.append(reply)
        return reply

    responders = Responders(nc)
    await responders.serve("parley.test.cmd.front", Request[Empty], front, queue="front", parallelism=1)
    try:
        sent = with_deadline(Request(caller=CALLER, body=Empty()), time.time() + 0.3)
        await nc.request("parley.test.cmd.front", sent, timeout=3)
        assert len(inner) == 1
        assert isinstance(inner[0], Rejected)
        assert inner[0].status == 503
        assert counting.calls == 0, "work was asked for on behalf of a request whose caller gave up"
    finally:
        await responders.stop()


def nats_server_pid(port: int) -> int:
    """The nats-server listening on `port` (the stack's, started by the runner)."""
    for conn in psutil.net_connections(kind="tcp"):
        if conn.status == psutil.CONN_LISTEN and conn.laddr.port == port and conn.pid is not None:
            return int(conn.pid)
    raise AssertionError(f"nothing listens on port {port}")


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    running = Stack(tmp_path)
    running.start()
    yield running
    running.stop()


async def test_a_create_answered_503_during_a_nats_outage_is_not_committed_later(stack: Stack) -> None:
    """The issue's reproduction through the gateway: creates answered 503 while nats-server is down
    (SIGKILL) must not exist once it is back; the same creates then succeed instead of answering 409."""
    port = int(stack.nats_url.rsplit(":", 1)[1])
    ids = [unique("outage") for _ in range(3)]
    async with aiohttp.ClientSession() as session:
        api = Api(session, stack.url, token("alice"))
        os.kill(nats_server_pid(port), signal.SIGKILL)
        await asyncio.sleep(0.5)  # the gateway has seen its connection drop
        for conference_id in ids:
            response = await api.post("create", {"conferenceId": conference_id})
            assert response.status == 503, response
        stack.local.nats.start()  # same port, same store
        await asyncio.to_thread(stack.wait_ready, stack.ports[0])
        await asyncio.sleep(3)  # anything buffered has been delivered by now
        for conference_id in ids:
            response = await api.post("create", {"conferenceId": conference_id})
            assert response.status == 200, f"a create answered 503 was committed later: {response}"
