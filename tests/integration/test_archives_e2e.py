"""A real recording of a meeting's conference becomes an archive, downloadable from the gateway and uploaded
byte-identical to S3 (moto's server): the whole stack (nats-server, conference, a media node, the gateway)
with a WebRTC publisher. The meeting and the target are set on the bus (the dialects' routes are tested by
their own suites)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import nats
import pytest
from parley_common.clock import new_id
from parley_common.contracts.base import Empty
from parley_common.contracts.meeting import (
    ArchiveRef,
    Archives,
    ArchiveView,
    CreateMeeting,
    MeetingView,
    StorageTarget,
)
from parley_common.contracts.rpc import Caller, Rejected, Request
from parley_common.messaging import subjects
from parley_common.messaging.rpc import RpcClient
from parley_common.processes import (
    AZURITE_ACCOUNT,
    AZURITE_KEY,
    AzuriteServer,
    MotoS3Server,
    azure_request,
    azurite_binary,
)

from tests.integration.helpers import ORG, Api, Stack, token
from tests.integration.media_api import publish
from tests.integration.peers import GREEN, PublisherPeer
from tests.integration.test_media import node_ready

S3_KEY, S3_SECRET = "testing", "testing"


@pytest.fixture(scope="module")
def moto() -> Iterator[MotoS3Server]:
    try:
        server = MotoS3Server()
    except ImportError as exc:
        pytest.skip(f"moto[server] is not installed: {exc}")
    with server:
        yield server


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, moto: MotoS3Server) -> Iterator[Stack]:
    running = Stack(
        tmp_path_factory.mktemp("archives"),
        media=1,
        env={
            "PARLEY_OPTIONAL_SERVICES": "media",
            "PARLEY_MEDIA_CONNECT_TIMEOUT_SECONDS": "5",
            "PARLEY_ARCHIVE_S3_ACCESS_KEY": S3_KEY,
            "PARLEY_ARCHIVE_S3_SECRET_KEY": S3_SECRET,
            "PARLEY_ARCHIVE_AZURE_ACCOUNT_KEY": AZURITE_KEY,
        },
    )
    running.start()
    try:
        asyncio.run(node_ready(running))
        yield running
    finally:
        running.stop()


@pytest.fixture
async def bus(stack: Stack) -> AsyncIterator[RpcClient]:
    nc = await nats.connect(stack.nats_url)
    yield RpcClient(nc, timeout=10)
    await nc.close()


def alice() -> Caller:
    return Caller(organization_id=ORG, user_id="alice", request_id=new_id())


async def recorded_archive(
    stack: Stack, bus: RpcClient, api: Api, target: StorageTarget
) -> tuple[ArchiveView, bytes]:
    """A meeting with archiving, 2.5 s of a real WebRTC publish recorded: its archive once the upload settled,
    and the bytes the gateway downloads."""
    set_target = await bus.request(
        subjects.meeting_command("setStorageTarget"), Request(caller=alice(), body=target), Empty
    )
    assert not isinstance(set_target, Rejected), set_target
    created = await bus.request(
        subjects.meeting_command("createMeeting"),
        Request(caller=alice(), body=CreateMeeting(dialect="sourcefuse", name="Recorded", archiving=True)),
        MeetingView,
    )
    assert not isinstance(created, Rejected), created
    conference_id = created.value.conference_id
    joined = await api.join(conference_id, "pub")
    assert joined.status == 200, joined
    publisher = PublisherPeer(GREEN)
    try:
        await publish(api, conference_id, "pub", publisher)
        await publisher.connected()
        await asyncio.sleep(2.5)
        base = {"conferenceId": conference_id, "userEndpointId": "pub"}
        off = await api.post(
            "updateMetadata", {**base, "key": "RECORDER", "operation": "SET", "value": '{"on":false}'}
        )
        assert off.status == 204, off
    finally:
        await publisher.close()

    deadline = time.monotonic() + 30
    archive: ArchiveView | None = None
    while archive is None or not archive.uploads or archive.uploads[0].state == "pending":
        assert time.monotonic() < deadline, f"archive not uploaded: {archive}"
        await asyncio.sleep(0.3)
        listed = await bus.request(
            subjects.meeting_query("listArchives"), Request(caller=alice(), body=Empty()), Archives
        )
        assert not isinstance(listed, Rejected), listed
        mine = [a for a in listed.value.items if a.conference_id == conference_id]
        if mine:
            got = await bus.request(
                subjects.meeting_query("getArchive"),
                Request(caller=alice(), body=ArchiveRef(archive_id=mine[0].archive_id)),
                ArchiveView,
            )
            assert not isinstance(got, Rejected), got
            archive = got.value
    assert archive.name == "Recorded" and archive.mime_type.startswith("video/webm")
    assert archive.uploads[0].state == "uploaded", archive.uploads
    download = await api.get(archive.url)
    assert download.status == 200, download
    assert len(download.body) == archive.bytes > 0
    return archive, download.body


@pytest.fixture
async def api(stack: Stack) -> AsyncIterator[Api]:
    async with aiohttp.ClientSession() as session:
        yield Api(session, stack.url, token("alice"))


async def test_a_real_recording_is_an_archive_uploaded_byte_identical_to_s3(
    stack: Stack, bus: RpcClient, api: Api, moto: MotoS3Server
) -> None:
    import boto3

    s3 = boto3.client(
        "s3",
        endpoint_url=moto.endpoint,
        aws_access_key_id=S3_KEY,
        aws_secret_access_key=S3_SECRET,
        region_name="us-east-1",
    )
    s3.create_bucket(Bucket="recorded-meetings")
    target = StorageTarget(name="AWSS3", bucket="recorded-meetings", endpoint=moto.endpoint)

    archive, downloaded = await recorded_archive(stack, bus, api, target)

    copy = s3.get_object(Bucket="recorded-meetings", Key=archive.uploads[0].object_name)["Body"].read()
    assert copy == downloaded


async def test_a_real_recording_is_an_archive_uploaded_byte_identical_to_azure(
    stack: Stack, bus: RpcClient, api: Api, tmp_path: Path
) -> None:
    binary = azurite_binary()
    if binary is None:
        pytest.skip("azurite-blob not found (npm install --prefix .tools/azurite azurite; .ci/run does)")
    with AzuriteServer(binary, tmp_path / "azurite") as azurite:
        azure_request("PUT", azurite.endpoint, "archives", {"restype": "container"})
        target = StorageTarget(name="AZURE", account_name=AZURITE_ACCOUNT, endpoint=azurite.endpoint)

        archive, downloaded = await recorded_archive(stack, bus, api, target)

        path = f"archives/{archive.uploads[0].object_name}"
        assert azure_request("GET", azurite.endpoint, path, {}) == downloaded
