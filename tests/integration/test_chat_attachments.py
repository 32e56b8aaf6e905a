"""Chat attachments end to end (issue 11): the gateway over HTTP, the chat service, a real nats-server and
its object store bucket `parley_attachments`.

Uploads are raw bodies with the seed's headers, streamed into the bucket; every refusal is checked to
leave nothing there (the bucket's objects, and its stream's bytes where a body was partly streamed).
The size limit is lowered to 6 MiB for this module so that a body over it is quick to send.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import quote, urlsplit

import aiohttp
import msgspec
import nats
import pytest
from nats.js.errors import BucketNotFoundError, NotFoundError
from parley_common.contracts import chat
from parley_common.contracts.rpc import Caller, Request
from parley_common.messaging import subjects
from parley_common.messaging.objects import put_stream
from parley_common.messaging.streams import ensure_object_store

from tests.integration.helpers import Response, Stack
from tests.integration.test_chat_api import OTHER_ORG, User, error, eventually, new_users
from tests.integration.test_chat_api import group as group_of

MAX_BYTES = 6 * 1024 * 1024
BUCKET = subjects.CHAT_FILES_BUCKET


@pytest.fixture(scope="module")
def files_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    running = Stack(
        tmp_path_factory.mktemp("chat-files"),
        chat=True,
        env={
            "PARLEY_ESSENTIAL_SERVICES": "conference,chat",
            "PARLEY_CHAT_MAX_ATTACHMENT_BYTES": str(MAX_BYTES),
        },
    ).start()
    yield running
    running.stop()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


async def group(owner: User, *members: User, name: str = "g") -> str:
    """A group of `owner` and `members` (with a filler member when fewer than the 2 others it needs)."""
    fillers = await new_users(owner.session, owner.stack, max(0, 2 - len(members)))
    return await group_of(owner, *members, *fillers, name=name)


def escaped(text: str) -> str:
    """How Carbonio's clients send a name: every UTF-16 code unit as `\\uXXXX`."""
    units = text.encode("utf-16-le")
    return "".join(f"\\u{int.from_bytes(units[i : i + 2], 'little'):04x}" for i in range(0, len(units), 2))


async def upload(
    user: User, room_id: str, data: bytes, name: str = "file.bin", *, raw_name: bool = False, **headers: str
) -> Response:
    sent = {
        "fileName": name if raw_name else escaped(name),
        "mimeType": "application/octet-stream",
        **headers,
    }
    return await user.api.request(
        "POST", f"/rooms/{room_id}/attachments", data=data, headers=sent, timeout=60
    )


class Bucket:
    """What the bucket holds: object names, and its stream's bytes (chunks left by a failed upload)."""

    def __init__(self, stack: Stack) -> None:
        self.url = stack.nats_url

    async def state(self) -> tuple[frozenset[str], int]:
        nc = await nats.connect(self.url)
        try:
            js = nc.jetstream()
            try:
                store = await js.object_store(BUCKET)
            except BucketNotFoundError:
                return frozenset(), 0
            try:
                infos = await store.list(ignore_deletes=True)
            except NotFoundError:
                infos = []
            size = (await js.stream_info(f"OBJ_{BUCKET}")).state.bytes
            return frozenset(i.name for i in infos if not i.deleted), int(size)
        finally:
            await nc.close()

    async def names(self) -> frozenset[str]:
        return (await self.state())[0]


async def raw_http(stack: Stack, head: str, body: AsyncIterator[bytes] | None = None) -> int:
    """Send a request by hand (headers as given, then `body` if any, possibly never ending) and return the
    status of the answer: it must come without the body having been read."""
    url = urlsplit(stack.url)
    reader, writer = await asyncio.open_connection(url.hostname, url.port)

    async def send_body() -> None:
        if body is None:
            return
        try:
            async for piece in body:
                writer.write(piece)
                await writer.drain()
        except (ConnectionError, OSError):
            pass  # the server answered and closed: expected

    sender = asyncio.create_task(send_body())
    try:
        writer.write(head.encode())
        await writer.drain()
        async with asyncio.timeout(10):
            status_line = await reader.readline()
        return int(status_line.split()[1])
    finally:
        sender.cancel()
        await asyncio.gather(sender, return_exceptions=True)
        writer.close()


def head(user: User, room_id: str, extra: str) -> str:
    return (
        f"POST /rooms/{room_id}/attachments HTTP/1.1\r\nHost: x\r\n"
        f"Authorization: Bearer {user.api.bearer}\r\nfileName: {escaped('big.bin')}\r\n"
        f"mimeType: application/octet-stream\r\n{extra}\r\n"
    )


# ---------------------------------------------------------------- upload, info, download


async def test_upload_then_download_byte_for_byte(files_stack: Stack, session: aiohttp.ClientSession) -> None:
    alice, bob = await new_users(session, files_stack, 2)
    room = await group(alice, bob)
    data = os.urandom(5 * 1024 * 1024 + 333)  # several MiB, not a whole number of chunks
    name = 'résumé 📄 "q";.bin'
    created = await upload(
        alice,
        room,
        data,
        name,
        description=escaped("a déscription"),
        area="15x20",
        messageId="m-1",
        replyId="",
    )
    assert created.status == 201, created
    file_id = created.body["id"]
    assert set(created.body) == {"id"} and uuid.UUID(file_id)

    info = await bob.call("GET", f"/attachments/{file_id}")
    assert info.status == 200, info
    assert info.body == {
        "id": file_id,
        "name": name,
        "size": len(data),
        "mimeType": "application/octet-stream",
        "userId": alice.id,
        "roomId": room,
        "createdAt": info.body["createdAt"],
        "description": "a déscription",
        "messageId": "m-1",
        "area": "15x20",
    }

    got = await bob.api.request("GET", f"/attachments/{file_id}/download", timeout=60)
    assert got.status == 200
    assert got.body == data
    assert got.headers["Content-Type"] == "application/octet-stream"
    assert int(got.headers["Content-Length"]) == len(data)
    disposition = got.headers["Content-Disposition"]
    assert disposition.startswith("inline; filename=")
    assert f"filename*=UTF-8''{quote(name, safe='')}" in disposition
    assert got.headers["X-Content-Type-Options"] == "nosniff"

    # A plain (unescaped) name is accepted too, and the declared type comes back as it was.
    plain = await upload(
        alice, room, b"hello", "notes.txt", raw_name=True, mimeType="text/plain; charset=utf-8"
    )
    assert plain.status == 201, plain
    text = await alice.api.request("GET", f"/attachments/{plain.body['id']}/download")
    assert text.body == b"hello" and text.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert 'filename="notes.txt"' in text.headers["Content-Disposition"]
    # An empty file is a file.
    empty = await upload(alice, room, b"", "empty")
    assert empty.status == 201, empty
    got_empty = await alice.api.request("GET", f"/attachments/{empty.body['id']}/download")
    assert got_empty.status == 200 and got_empty.body is None
    assert (await alice.call("GET", f"/attachments/{empty.body['id']}")).body["size"] == 0


async def test_refused_headers_and_rooms_store_nothing(
    files_stack: Stack, session: aiohttp.ClientSession
) -> None:
    alice, bob, carol = await new_users(session, files_stack, 3)
    (stranger,) = await new_users(session, files_stack, 1, org=OTHER_ORG)
    room = await group(alice, bob)
    workspace = await alice.call(
        "POST", "/rooms", {"type": "workspace", "name": "w", "membersIds": [bob.id, carol.id]}
    )
    assert workspace.status == 201, workspace
    channel = await alice.call(
        "POST", "/rooms", {"type": "channel", "name": "c", "parentId": workspace.body["id"]}
    )
    assert channel.status == 201, channel
    bucket = Bucket(files_stack)
    before = await bucket.state()
    data = os.urandom(300_000)

    # Headers, before anything else (even before the room is looked at).
    no_name = await alice.api.request(
        "POST", f"/rooms/{room}/attachments", data=data, headers={"mimeType": "application/octet-stream"}
    )
    error(no_name, 400)
    error(await upload(alice, room, data, mimeType=""), 400)
    error(await upload(alice, room, data, mimeType="not a type"), 400)
    error(await upload(alice, str(uuid.uuid4()), data, area="15X20"), 400)
    error(await upload(alice, room, data, area="15x"), 400)
    error(await upload(alice, room, data, area="ax20"), 400)
    error(await upload(alice, room, data, "\\ud800.bin", raw_name=True), 400)  # a lone surrogate
    error(await upload(alice, room, data, "a\u0001b"), 400)  # a control character
    error(await upload(alice, "not-a-uuid", data), 400)
    # Room rules: unknown 404, another organization's 404, not a member 403, workspace / channel 400.
    error(await upload(alice, str(uuid.uuid4()), data), 404)
    error(await upload(stranger, room, data), 404)
    error(await upload(carol, room, data), 403)
    error(await upload(alice, workspace.body["id"], data), 400)
    error(await upload(bob, channel.body["id"], data), 400)
    assert await bucket.state() == before


async def test_oversize_is_413_before_the_body_is_read(
    files_stack: Stack, session: aiohttp.ClientSession
) -> None:
    alice, bob = await new_users(session, files_stack, 2)
    room = await group(alice, bob)
    bucket = Bucket(files_stack)
    before = await bucket.state()

    async def never() -> AsyncIterator[bytes]:
        await asyncio.Event().wait()  # the body never comes
        yield b""

    # Content-Length 200 MiB and not one byte sent: the answer comes anyway.
    assert (
        await raw_http(files_stack, head(alice, room, f"Content-Length: {200 * 1024 * 1024}\r\n"), never())
        == 413
    )
    # No Content-Length (chunked): counted while streaming, refused at the limit, nothing kept.

    async def chunked() -> AsyncIterator[bytes]:
        piece = os.urandom(256 * 1024)
        for _ in range(MAX_BYTES // len(piece) + 4):
            yield f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
        yield b"0\r\n\r\n"

    assert await raw_http(files_stack, head(alice, room, "Transfer-Encoding: chunked\r\n"), chunked()) == 413
    # The chunks streamed before the limit were purged.
    await eventually_state(bucket, before)
    # Within the limit by Content-Length, the same chunked way: stored.
    small = await alice.api.request(
        "POST",
        f"/rooms/{room}/attachments",
        data=small_chunks(),
        headers={"fileName": escaped("s.bin"), "mimeType": "application/octet-stream"},
    )
    assert small.status == 201, small
    assert (await alice.call("GET", f"/attachments/{small.body['id']}")).body["size"] == 3 * 1000


async def small_chunks() -> AsyncIterator[bytes]:
    for _ in range(3):
        yield b"x" * 1000


async def eventually_state(bucket: Bucket, expected: tuple[frozenset[str], int]) -> None:
    async with asyncio.timeout(10):
        while True:
            if await bucket.state() == expected:
                return
            await asyncio.sleep(0.1)


async def test_a_refused_record_deletes_the_stored_bytes(
    files_stack: Stack, session: aiohttp.ClientSession
) -> None:
    """The commit re-checks the room (it may have changed while the body streamed): refused, the service
    deletes the object the gateway stored. Asked on the bus as the gateway asks it."""
    alice, bob, carol = await new_users(session, files_stack, 3)
    room = await group(alice, bob)
    bucket = Bucket(files_stack)
    nc = await nats.connect(files_stack.nats_url)
    try:
        js = nc.jetstream()
        await ensure_object_store(js, BUCKET)

        async def one(data: bytes) -> AsyncIterator[bytes]:
            yield data

        file_id = str(uuid.uuid4())
        await put_stream(js, BUCKET, chat.attachment_object(file_id), one(b"streamed"))
        assert chat.attachment_object(file_id) in await bucket.names()
        body = chat.InsertAttachment(room_id=room, file_id=file_id, name="f", mime_type="text/plain", size=8)
        request = Request(caller=Caller(organization_id="acme", user_id=carol.id, request_id="r"), body=body)
        reply = await nc.request(subjects.chat_command("insertAttachment"), encode(request), timeout=5)
        assert b'"status":403' in reply.data, reply.data
        assert chat.attachment_object(file_id) not in await bucket.names()
    finally:
        await nc.close()


def encode(value: Any) -> bytes:
    return msgspec.json.encode(value)


# ---------------------------------------------------------------- listing


async def test_the_list_pages_newest_first_to_the_end(
    files_stack: Stack, session: aiohttp.ClientSession
) -> None:
    alice, bob, carol = await new_users(session, files_stack, 3)
    room = await group(alice, bob)
    uploaded = []
    for i in range(23):
        created = await upload(alice if i % 2 else bob, room, f"file {i}".encode(), f"f{i}.txt")
        assert created.status == 201, created
        uploaded.append(created.body["id"])
    newest_first = list(reversed(uploaded))

    first = await alice.call("GET", f"/rooms/{room}/attachments")
    assert first.status == 200, first
    assert [a["id"] for a in first.body["attachments"]] == newest_first[:10]  # 10 by default
    assert first.body["attachments"][0] == (await alice.call("GET", f"/attachments/{newest_first[0]}")).body

    seen: list[str] = []
    pages = []
    params: dict[str, str] = {"itemsNumber": "7"}
    while True:
        page = await bob.call("GET", f"/rooms/{room}/attachments", params=params)
        assert page.status == 200, page
        seen += [a["id"] for a in page.body["attachments"]]
        pages.append(len(page.body["attachments"]))
        if "filter" not in page.body:
            break
        params = {"itemsNumber": "7", "filter": page.body["filter"]}
    assert seen == newest_first and pages == [7, 7, 7, 2]
    # A page ending exactly at the last item says so (no filter, no empty page after it).
    exact = await bob.call("GET", f"/rooms/{room}/attachments", params={"itemsNumber": "23"})
    assert len(exact.body["attachments"]) == 23 and "filter" not in exact.body
    # An empty room: an empty list.
    empty_room = await group(alice, bob, name="empty")
    assert (await alice.call("GET", f"/rooms/{empty_room}/attachments")).body == {"attachments": []}

    error(await alice.call("GET", f"/rooms/{room}/attachments", params={"filter": "not a cursor!"}), 400)
    error(await alice.call("GET", f"/rooms/{room}/attachments", params={"filter": "eyJhIjoxfQ=="}), 400)
    error(await alice.call("GET", f"/rooms/{room}/attachments", params={"itemsNumber": "0"}), 400)
    error(await alice.call("GET", f"/rooms/{room}/attachments", params={"itemsNumber": "x"}), 400)
    error(await carol.call("GET", f"/rooms/{room}/attachments"), 403)
    error(await carol.call("GET", f"/rooms/{uuid.uuid4()}/attachments"), 404)


# ---------------------------------------------------------------- access and deletion


async def test_access_and_deletion_rules(files_stack: Stack, session: aiohttp.ClientSession) -> None:
    alice, bob, carol, dave = await new_users(session, files_stack, 4)
    (stranger,) = await new_users(session, files_stack, 1, org=OTHER_ORG)
    room = await group(alice, bob, carol)  # alice owns it
    bucket = Bucket(files_stack)
    by_bob = (await upload(bob, room, b"bob's", "b")).body["id"]
    by_carol = (await upload(carol, room, b"carol's", "c")).body["id"]
    by_alice = (await upload(alice, room, b"alice's", "a")).body["id"]

    # Not a member: 403 to read, download or delete; another organization: unknown, 404.
    error(await dave.call("GET", f"/attachments/{by_bob}"), 403)
    error(await dave.api.request("GET", f"/attachments/{by_bob}/download"), 403)
    error(await dave.call("DELETE", f"/attachments/{by_bob}"), 403)
    for method, path in (("GET", ""), ("GET", "/download"), ("DELETE", "")):
        error(await stranger.api.request(method, f"/attachments/{by_bob}{path}"), 404)
    error(await alice.call("GET", f"/attachments/{uuid.uuid4()}"), 404)
    error(await alice.api.request("GET", f"/attachments/{uuid.uuid4()}/download"), 404)
    error(await alice.call("DELETE", f"/attachments/{uuid.uuid4()}"), 404)
    error(await alice.call("GET", "/attachments/not-a-uuid"), 400)

    # Neither the uploader nor an owner: 403. The uploader may; an owner may delete anyone's.
    error(await carol.call("DELETE", f"/attachments/{by_bob}"), 403)
    error(await bob.call("DELETE", f"/attachments/{by_alice}"), 403)
    assert (await bob.call("DELETE", f"/attachments/{by_bob}")).status == 204
    assert (await alice.call("DELETE", f"/attachments/{by_carol}")).status == 204
    for gone in (by_bob, by_carol):
        error(await alice.call("GET", f"/attachments/{gone}"), 404)
        error(await alice.api.request("GET", f"/attachments/{gone}/download"), 404)
        error(await alice.call("DELETE", f"/attachments/{gone}"), 404)
    listed = await alice.call("GET", f"/rooms/{room}/attachments")
    assert [a["id"] for a in listed.body["attachments"]] == [by_alice]
    # The bytes go too (through the outbox); the one left stays.
    await eventually_names(
        bucket, lambda names: not {chat.attachment_object(by_bob), chat.attachment_object(by_carol)} & names
    )
    assert chat.attachment_object(by_alice) in await bucket.names()


async def eventually_names(bucket: Bucket, done: Any) -> None:
    async with asyncio.timeout(10):
        while True:
            if done(await bucket.names()):
                return
            await asyncio.sleep(0.1)


async def test_a_deleted_room_takes_its_files_with_it(
    files_stack: Stack, session: aiohttp.ClientSession
) -> None:
    alice, bob = await new_users(session, files_stack, 2)
    bucket = Bucket(files_stack)
    room = await group(alice, bob)
    files = [(await upload(u, room, os.urandom(1000), "x")).body["id"] for u in (alice, bob)]
    objects = {chat.attachment_object(f) for f in files}
    assert objects <= await bucket.names()
    assert (await alice.call("DELETE", f"/rooms/{room}")).status == 204
    await eventually_names(bucket, lambda names: not objects & names)
    for file_id in files:
        error(await alice.call("GET", f"/attachments/{file_id}"), 404)

    # The same when the room goes because its last member left.
    other = await group(alice, bob, name="left")
    left = (await upload(bob, other, b"left behind", "l")).body["id"]
    members = (await alice.call("GET", f"/rooms/{other}/members")).body
    for member in members:  # the owner removes the others, then leaves: the room goes with its last member
        if member["userId"] != alice.id:
            assert (await alice.call("DELETE", f"/rooms/{other}/members/{member['userId']}")).status == 204
    assert (await alice.call("DELETE", f"/rooms/{other}/members/{alice.id}")).status == 204
    await eventually_names(bucket, lambda names: chat.attachment_object(left) not in names)
    await eventually(lambda: alice.call("GET", f"/attachments/{left}"), lambda r: r.status == 404)
