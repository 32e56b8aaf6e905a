"""Fixtures of the meeting-records tests: the conference service running in this process on a real
nats-server and SQLite, a meeting's conference in it, and real local storage servers for archive uploads:
moto's S3 server (PyPI `moto[server]`) and Azurite (npm `azurite`: on PATH, or installed by `.ci/run` under
`.tools/azurite`). A missing server binary skips its tests with the reason; CI installs both.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import nats
import pytest
from nats.aio.client import Client
from parley_common.clock import new_id
from parley_common.config import CommonSettings
from parley_common.contracts.health import HealthQuery, ServiceHealth
from parley_common.contracts.meeting import CreateMeeting, MeetingView
from parley_common.contracts.rpc import Caller, Rejected, Request
from parley_common.messaging import subjects
from parley_common.messaging.rpc import RpcClient
from parley_common.processes import (
    AZURITE_KEY,
    AzuriteServer,
    MotoS3Server,
    NatsServer,
    azurite_binary,
)
from parley_conference.app import serve_conference
from parley_conference.settings import ArchiveSettings, Settings

S3_KEY, S3_SECRET = "testing", "testing"


class Service:
    """The conference service in this process, and a bus client to it."""

    def __init__(self, nc: Client, settings: Settings) -> None:
        self.nc = nc
        self.rpc = RpcClient(nc, timeout=10)
        self.settings = settings

    async def ask(self, subject: str, caller: Caller, body: Any, result: Any) -> Any:
        return await self.rpc.request(subject, Request(caller=caller, body=body), result)

    async def create_meeting(self, organization_id: str, name: str | None = None) -> tuple[str, str]:
        """A SourceFuse meeting created on the bus: its id and the conference behind it."""
        reply = await self.ask(
            subjects.meeting_command("createMeeting"),
            caller(organization_id),
            CreateMeeting(dialect="sourcefuse", name=name),
            MeetingView,
        )
        meeting: MeetingView = not_rejected(reply)
        return meeting.meeting_id, meeting.conference_id


def caller(organization_id: str = "org-a", user_id: str = "alice", **more: Any) -> Caller:
    return Caller(organization_id=organization_id, user_id=user_id, request_id=new_id(), **more)


async def eventually(probe: Any, *, timeout: float = 15.0) -> Any:
    """Polls `probe()` until it returns something truthy (the consumers are asynchronous)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        found = await probe()
        if found:
            return found
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"not within {timeout} s: {probe.__name__}")
        await asyncio.sleep(0.1)


def not_rejected(reply: Any) -> Any:
    assert not isinstance(reply, Rejected), reply
    return reply.value


@contextlib.asynccontextmanager
async def running_service(nats_url: str, data_dir: Path, **archives: Any) -> AsyncIterator[Service]:
    """The conference service on `data_dir` until the block ends (again on the same one: a restart)."""
    common = CommonSettings(nats_url=nats_url, data_dir=data_dir, mongo_url=None, request_timeout=5.0)
    archive_settings: dict[str, Any] = {"upload_attempts": 3, "retry_base_seconds": 0.2, **archives}
    settings = Settings(
        common=common,
        keepalive_seconds=30,
        keepalive_grace_seconds=120,
        empty_timeout_seconds=300,
        sweep_interval_seconds=1,
        media_request_timeout_seconds=2,
        media_node_timeout_seconds=5,
        media_node_wait_seconds=0.1,
        admission_timeout_seconds=1,
        archives=ArchiveSettings(
            s3_access_key=S3_KEY, s3_secret_key=S3_SECRET, azure_account_key=AZURITE_KEY, **archive_settings
        ),
    )
    stop = asyncio.Event()
    task = asyncio.create_task(serve_conference(settings, stop))
    nc = await nats.connect(nats_url)
    probe = RpcClient(nc, timeout=1)
    try:
        for _ in range(100):  # until it serves (the streams exist then)
            with contextlib.suppress(Exception):
                reply = await probe.request(subjects.health("conference"), HealthQuery(), ServiceHealth)
                if not isinstance(reply, Rejected):
                    break
            assert not task.done(), task
            await asyncio.sleep(0.1)
        yield Service(nc, settings)
    finally:
        stop.set()
        await asyncio.wait_for(task, 20)
        await nc.close()


@pytest.fixture
async def service(nats_server: NatsServer, tmp_path: Path) -> AsyncIterator[Service]:
    async with running_service(nats_server.url, tmp_path) as running:
        yield running


# ---------------------------------------------------------------- moto (S3) and Azurite (Azure Blob)


@pytest.fixture(scope="module")
def moto_s3() -> Iterator[str]:
    try:
        server = MotoS3Server()
    except ImportError as exc:
        pytest.skip(f"moto[server] is not installed: {exc}")
    with server:
        yield server.endpoint


def s3_client(endpoint: str) -> Any:
    import boto3  # moto's own dependency

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=S3_KEY,
        aws_secret_access_key=S3_SECRET,
        region_name="us-east-1",
    )


@pytest.fixture(scope="module")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    binary = azurite_binary()
    if binary is None:
        pytest.skip("azurite-blob not found (npm install --prefix .tools/azurite azurite; .ci/run does)")
    with AzuriteServer(binary, tmp_path_factory.mktemp("azurite")) as server:
        yield server.endpoint
