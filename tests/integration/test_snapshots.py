"""The snapshot API end to end: HTTP through the gateway, the snapshot service, the conference service and a
media node as processes, images in the real JetStream object store, events on the real push channel, and a
real aiortc publisher whose camera the server photographs.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import nats
import pytest
from aioice.ice import get_host_addresses
from nats.js.errors import NotFoundError
from parley_common.contracts.media import StillImage, StreamStillQuery
from parley_common.contracts.rpc import Accepted, Caller, Request
from parley_common.messaging import subjects
from parley_common.messaging.rpc import RpcClient
from parley_snapshot.signing import UrlSigner
from PIL import Image, ImageStat

from tests.integration.helpers import ORG, Api, Response, Stack, token, unique
from tests.integration.peers import GREEN, RED, Color, Peers, PublisherPeer, close_to, eventually

MAX_BYTES = 3 * 1024 * 1024  # above NATS's 1 MiB message limit, so large images prove the staging path
URL_TTL = 3
SIGNING_KEY = "integration-test-snapshot-signing-key"
SNAPSHOTS = "/rtc-api/snapshots"
PUBLIC_BASE = "https://parley.example.test"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    running = Stack(
        tmp_path_factory.mktemp("snapshots"),
        media=1,
        snapshot=True,
        env={
            # /health/ready (what the stack waits for) covers the snapshot service too.
            "PARLEY_ESSENTIAL_SERVICES": "conference,snapshot",
            "PARLEY_OPTIONAL_SERVICES": "media",
            "PARLEY_SNAPSHOT_MAX_BYTES": str(MAX_BYTES),
            "PARLEY_SNAPSHOT_URL_TTL_SECONDS": str(URL_TTL),
            "PARLEY_SNAPSHOT_SIGNING_KEY": SIGNING_KEY,
            # Public URLs name the address clients use (here a made-up one); internal ones the gateway's own.
            "PARLEY_PUBLIC_BASE_URL": PUBLIC_BASE,
            "PARLEY_MEDIA_NODE_TIMEOUT_SECONDS": "3",
        },
    )
    running.start()
    yield running
    running.stop()


@pytest.fixture
async def api(stack: Stack) -> AsyncIterator[Api]:
    async with aiohttp.ClientSession() as session:
        yield Api(session, stack.url, token("alice"))


@pytest.fixture
async def bus(stack: Stack) -> AsyncIterator[nats.NATS]:
    nc = await nats.connect(stack.nats_url)
    yield nc
    await nc.close()


@pytest.fixture
async def peers() -> AsyncIterator[Peers]:
    running = Peers()
    yield running
    await running.close()


# ---------------------------------------------------------------- helpers


def jpeg(color: Color = RED, size: tuple[int, int] = (64, 48)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, "JPEG")
    return buffer.getvalue()


def noisy_png(nbytes: int) -> bytes:
    """A real PNG of about `nbytes` (random pixels do not compress)."""
    side = int((nbytes / 3) ** 0.5) + 1
    buffer = io.BytesIO()
    Image.frombytes("RGB", (side, side), os.urandom(side * side * 3)).save(buffer, "PNG", compress_level=0)
    return buffer.getvalue()


def mean_color(data: bytes) -> Color:
    with Image.open(io.BytesIO(data)) as picture:
        r, g, b = (round(v) for v in ImageStat.Stat(picture.convert("RGB")).mean)
    return r, g, b


async def post_form(
    api: Api, op: str, fields: dict[str, str], image: bytes | None, **headers: str
) -> Response:
    form = aiohttp.FormData(default_to_multipart=True)
    for name, value in fields.items():
        form.add_field(name, value)
    if image is not None:
        form.add_field("image", image, filename="picture.jpg", content_type="image/jpeg")
    async with api.session.post(
        api.base_url + f"{SNAPSHOTS}/{op}",
        data=form,
        headers={"Authorization": f"Bearer {api.bearer}", **headers},
        timeout=aiohttp.ClientTimeout(total=30),
    ) as response:
        raw = await response.read()
        body = json.loads(raw) if raw and response.content_type == "application/json" else raw
        return Response(response.status, body, response.headers)


@asynccontextmanager
async def channel(api: Api, endpoint: str, user: str) -> AsyncIterator[aiohttp.ClientWebSocketResponse]:
    url = api.base_url.replace("http", "ws") + "/rtc-api/events/ws"
    async with api.session.ws_connect(
        url, params={"userEndpointId": endpoint, "access_token": token(user)}
    ) as ws:
        yield ws


async def pushed(
    ws: aiohttp.ClientWebSocketResponse, event_type: str, timeout: float = 5.0
) -> dict[str, Any]:
    """The next pushed event of a type (others are skipped); acknowledged like a client does."""
    async with asyncio.timeout(timeout):
        while True:
            message = await ws.receive()
            assert message.type == aiohttp.WSMsgType.TEXT, message
            event = dict(json.loads(message.data))
            if event.get("type", "").startswith("Snapshot"):
                await ws.send_json({"ack": event["id"]})
            if event.get("type") == event_type:
                return event


class BusEvents:
    """Snapshot events as another service sees them on the bus."""

    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []

    async def on(self, msg: Any) -> None:
        self.seen.append(json.loads(msg.data))

    async def wait(self, event_type: str, **fields: Any) -> dict[str, Any]:
        def match() -> dict[str, Any] | None:
            for event in self.seen:
                if event["type"] == event_type and all(event.get(k) == v for k, v in fields.items()):
                    return event
            return None

        await eventually(lambda: match() is not None, 5.0, f"{event_type} {fields} on the bus")
        found = match()
        assert found is not None
        return found


@pytest.fixture
async def events(bus: nats.NATS) -> AsyncIterator[BusEvents]:
    collected = BusEvents()
    subscription = await bus.subscribe(subjects.SNAPSHOT_EVENTS_ALL, cb=collected.on)
    yield collected
    await subscription.unsubscribe()


async def stored_names(bus: nats.NATS) -> set[str]:
    """Every object in both snapshot buckets (images and staged uploads)."""
    js = bus.jetstream()
    names: set[str] = set()
    for bucket in (subjects.SNAPSHOTS_BUCKET, subjects.SNAPSHOT_STAGING_BUCKET):
        store = await js.object_store(bucket)
        with contextlib.suppress(NotFoundError):  # nats-py's answer for an empty bucket
            names.update(f"{bucket}/{info.name}" for info in await store.list() if not info.deleted)
    return names


async def image_exists(bus: nats.NATS, name: str) -> bool:
    return f"{subjects.SNAPSHOTS_BUCKET}/{name}" in await stored_names(bus)


class Room:
    """A conference with an agent and a customer, each joined through an endpoint of their own user.

    Endpoint ids are unique per test: pushed events wait in an endpoint's durable queue until acknowledged,
    so a reused id would hand a test the events of an earlier one.
    """

    def __init__(self, api: Api, conference_id: str) -> None:
        self.conference_id = conference_id
        self.agent = unique("agent")
        self.customer = unique("customer")
        self.agent_api = api.as_user(user(self.agent))
        self.customer_api = api.as_user(user(self.customer))

    @classmethod
    async def open(cls, api: Api) -> Room:
        room = cls(api, await api.create())
        await room.agent_api.join(room.conference_id, room.agent)
        await room.customer_api.join(room.conference_id, room.customer)
        return room


def user(endpoint: str) -> str:
    return f"user-{endpoint}"


async def request_snapshot(
    api: Api, conference_id: str, requester: str, target: str, **extra: Any
) -> Response:
    body = {
        "sessionType": "CONFERENCE",
        "sessionId": conference_id,
        "userEndpointId": requester,
        "targetUserEndpointId": target,
        "snapshotType": "ID_CARD",
        **extra,
    }
    return await api.as_user(user(requester)).post(f"{SNAPSHOTS}/request", body)


async def new_snapshot(api: Api, room: Room, **extra: Any) -> str:
    response = await request_snapshot(api, room.conference_id, room.agent, room.customer, **extra)
    assert response.status == 200, response
    return str(response.body["snapshotId"])


def acquire_fields(snapshot_id: str, endpoint: str, mime: str = "image/jpeg") -> dict[str, str]:
    return {
        "snapshotId": snapshot_id,
        "snapshotMimeType": mime,
        "snapshotSuffix": "jpg",
        "snapshotType": "ID_CARD",
        "userEndpointId": endpoint,
    }


async def snapshot(api: Api, snapshot_id: str) -> dict[str, Any]:
    response = await api.get(f"{SNAPSHOTS}/{snapshot_id}")
    assert response.status == 200, response
    return dict(response.body)


async def signed_url(api: Api, snapshot_id: str, **extra: Any) -> dict[str, Any]:
    response = await api.post(f"{SNAPSHOTS}/signedUrl", {"snapshotId": snapshot_id, **extra})
    assert response.status == 200, response
    return dict(response.body)


async def fetch(api: Api, url: str) -> tuple[int, str, bytes]:
    """GET a signed URL with no Authorization header (the URL is the credential), on the test's gateway."""
    parts = urlsplit(url)
    async with api.session.get(f"{api.base_url}{parts.path}?{parts.query}") as response:
        return response.status, response.content_type, await response.read()


async def camera_ready(bus: nats.NATS, conference_id: str, endpoint: str) -> None:
    """Until the media node has a picture of the endpoint's camera (the publisher's first frames arrived)."""
    rpc = RpcClient(bus, timeout=3.0)
    query = Request(
        caller=Caller(organization_id=ORG, user_id=user(endpoint), request_id=unique("probe")),
        body=StreamStillQuery(conference_id=conference_id, user_endpoint_id=endpoint),
    )
    deadline = time.monotonic() + 20
    while not isinstance(
        reply := await rpc.request(subjects.conference_query("streamStill"), query, StillImage), Accepted
    ):
        assert time.monotonic() < deadline, f"no picture from the media node: {reply}"
        await asyncio.sleep(0.2)


def skip_without_interface() -> None:
    if not get_host_addresses(use_ipv4=True, use_ipv6=False):
        pytest.skip("no non-loopback IPv4 interface: aioice would gather no host candidate")


async def publish_camera(
    api: Api, conference_id: str, endpoint: str, publisher: PublisherPeer, kind: str
) -> str:
    response = await api.as_user(user(endpoint)).post(
        "publishStream",
        {
            "conferenceId": conference_id,
            "userEndpointId": endpoint,
            "conferenceStreamType": kind,
            "sdpOffer": await publisher.offer(),
        },
    )
    assert response.status == 200, response
    await publisher.accept(response.body["sdpAnswer"])
    await publisher.connected()
    return str(response.body["streamId"]["id"])


# ---------------------------------------------------------------- the client flow


async def test_request_push_acquire_approve(api: Api, events: BusEvents, bus: nats.NATS) -> None:
    room = await Room.open(api)
    interaction = unique("interaction")
    async with (
        channel(api, room.customer, user(room.customer)) as target_ws,
        channel(api, room.agent, user(room.agent)) as requester_ws,
    ):
        snapshot_id = await new_snapshot(api, room, interactionId=interaction)

        requested = await pushed(target_ws, "SnapshotRequestedEvent")
        assert (requested["snapshotId"], requested["targetUserEndpointId"]) == (snapshot_id, room.customer)
        assert (requested["targetUserId"], requested["snapshotType"]) == (user(room.customer), "ID_CARD")
        assert (requested["userEndpointId"], requested["sessionId"]) == (room.agent, room.conference_id)
        await events.wait("SnapshotRequestedEvent", snapshotId=snapshot_id)
        waiting = await snapshot(api, snapshot_id)
        assert waiting["state"] == "REQUESTED"
        # The customer publishes no camera: the server says why it did not take the picture itself.
        assert waiting["requestProcessingResult"]["snapshotAcquired"] is False
        assert "publishes no camera stream" in waiting["requestProcessingResult"]["error"]

        picture = jpeg(RED)
        fields = acquire_fields(snapshot_id, room.customer)
        acquired = await post_form(room.customer_api, "acquire", fields, picture)
        assert acquired.status == 204, acquired
        told = await pushed(requester_ws, "SnapshotAcquiredEvent")
        location = f"interactions/{interaction}/{snapshot_id}.jpg"
        assert (told["snapshotId"], told["snapshotLocation"], told["serverSide"]) == (
            snapshot_id,
            location,
            False,
        )
        await events.wait("SnapshotAcquiredEvent", snapshotId=snapshot_id)

        # Acquiring twice is a wrong-state conflict that says the state.
        again = await post_form(room.customer_api, "acquire", fields, picture)
        assert again.status == 409 and "is UPLOADED" in again.body["message"], again

        approved = await room.agent_api.post(
            f"{SNAPSHOTS}/approve",
            {"snapshotId": snapshot_id, "snapshotType": "PASSPORT", "userEndpointId": room.agent},
        )
        assert approved.status == 204, approved
        await events.wait("SnapshotApprovedEvent", snapshotId=snapshot_id, snapshotType="PASSPORT")
        assert (await pushed(target_ws, "SnapshotApprovedEvent"))["snapshotId"] == snapshot_id

    final = await snapshot(api, snapshot_id)
    assert (final["state"], final["approved"], final["type"], final["version"]) == (
        "APPROVED",
        True,
        "PASSPORT",
        2,
    )
    assert final["approvalProcessingResult"]["succeeded"] is True
    assert (final["path"], final["mimeType"], final["suffix"]) == (location, "image/jpeg", "jpg")
    assert (final["requesterUserId"], final["userId"]) == (user(room.agent), user(room.customer))
    assert (final["sessionType"], final["sessionId"]) == ("CONFERENCE", room.conference_id)
    assert await image_exists(bus, location)
    assert await fetch(api, (await signed_url(api, snapshot_id))["url"]) == (200, "image/jpeg", picture)

    # Only the requester approves; approving an approved snapshot is a conflict.
    assert (await room.customer_api.post(f"{SNAPSHOTS}/approve", {"snapshotId": snapshot_id})).status == 403
    twice = await room.agent_api.post(f"{SNAPSHOTS}/approve", {"snapshotId": snapshot_id})
    assert twice.status == 409 and "is APPROVED" in twice.body["message"], twice

    # The interaction lists its snapshots, newest first.
    second = await new_snapshot(api, room, interactionId=interaction)
    listed = await api.get(SNAPSHOTS, params={"interactionId": interaction})
    assert listed.status == 200, listed
    assert [s["id"] for s in listed.body] == [second, snapshot_id]
    assert [s["state"] for s in listed.body] == ["REQUESTED", "APPROVED"]
    assert (await api.get(SNAPSHOTS)).status == 400


async def test_discard_deletes_the_image(api: Api, bus: nats.NATS, events: BusEvents) -> None:
    room = await Room.open(api)
    snapshot_id = await new_snapshot(api, room)
    acquired = await post_form(
        room.customer_api, "acquire", acquire_fields(snapshot_id, room.customer), jpeg()
    )
    assert acquired.status == 204, acquired
    path = (await snapshot(api, snapshot_id))["path"]
    assert path == f"snapshots/{snapshot_id}.jpg"  # no interaction given
    assert await image_exists(bus, path)
    url = (await signed_url(api, snapshot_id))["url"]

    discarded = await room.agent_api.post(f"{SNAPSHOTS}/discard", {"snapshotId": snapshot_id})
    assert discarded.status == 204, discarded
    await events.wait("SnapshotDiscardedEvent", snapshotId=snapshot_id)
    assert not await image_exists(bus, path)
    gone = await snapshot(api, snapshot_id)
    assert (gone["state"], gone["path"]) == ("DISCARDED", None)
    # The URL made before no longer serves anything, and no new one is made.
    assert (await fetch(api, url))[0] == 404
    assert (await api.post(f"{SNAPSHOTS}/signedUrl", {"snapshotId": snapshot_id})).status == 409
    again = await room.agent_api.post(f"{SNAPSHOTS}/discard", {"snapshotId": snapshot_id})
    assert again.status == 409 and "is DISCARDED" in again.body["message"], again


async def test_both_ends_must_be_in_the_conference(api: Api) -> None:
    room = await Room.open(api)
    stranger = unique("stranger")
    outsider = await request_snapshot(api, room.conference_id, stranger, room.customer)
    assert outsider.status == 403, outsider
    absent = await request_snapshot(api, room.conference_id, room.agent, unique("nobody"))
    assert absent.status == 403, absent
    # Naming someone else's endpoint does not make the caller a member.
    impostor = await api.as_user("mallory").post(
        f"{SNAPSHOTS}/request",
        {
            "sessionType": "CONFERENCE",
            "sessionId": room.conference_id,
            "userEndpointId": room.agent,
            "targetUserEndpointId": room.customer,
        },
    )
    assert impostor.status == 403, impostor
    unknown = await request_snapshot(api, unique("no-such-conference"), room.agent, room.customer)
    assert unknown.status == 404, unknown
    missing = await api.post(f"{SNAPSHOTS}/request", {"userEndpointId": room.agent})
    assert missing.status == 400 and "targetUserEndpointId" in missing.body["message"], missing
    camera = await api.as_user(user(stranger)).post(
        f"{SNAPSHOTS}/cameraRequest",
        {
            "cameraRequestType": "FLASH_ON",
            "sessionType": "CONFERENCE",
            "sessionId": room.conference_id,
            "userEndpointId": stranger,
            "targetUserEndpointId": room.customer,
        },
    )
    assert camera.status == 403, camera


async def test_only_the_target_acquires(api: Api) -> None:
    room = await Room.open(api)
    snapshot_id = await new_snapshot(api, room)
    refused = await post_form(room.agent_api, "acquire", acquire_fields(snapshot_id, room.agent), jpeg())
    assert refused.status == 403, refused
    unknown = await post_form(
        room.customer_api, "acquire", acquire_fields(unique("s"), room.customer), jpeg()
    )
    assert unknown.status == 404, unknown


# ---------------------------------------------------------------- images: what is accepted, what is stored


async def test_upload_of_a_large_image_linked_to_a_request(api: Api, events: BusEvents) -> None:
    room = await Room.open(api)
    related = await new_snapshot(api, room)
    interaction = unique("interaction")
    picture = noisy_png(2 * 1024 * 1024)  # twice what one NATS message may carry
    assert 1024 * 1024 < len(picture) < MAX_BYTES
    fields = {
        "applicationId": "crm",
        "interactionId": interaction,
        "relatedSnapshotId": related,
        "snapshotMimeType": "image/png",
        "snapshotSuffix": "png",
        "snapshotType": "EDITED",
        "targetUserEndpointId": room.customer,
        "targetUserId": user(room.customer),
        "userEndpointId": room.agent,
    }
    response = await post_form(room.agent_api, "upload", fields, picture)
    assert response.status == 204, response
    snapshot_id = response.headers["Location"].rsplit("/", 1)[-1]
    uploaded = await snapshot(api, snapshot_id)
    assert (uploaded["state"], uploaded["relatedSnapshotId"]) == ("UPLOADED", related)
    assert (uploaded["path"], uploaded["mimeType"]) == (
        f"interactions/{interaction}/{snapshot_id}.png",
        "image/png",
    )
    assert (uploaded["applicationId"], uploaded["sessionId"]) == ({"id": "crm"}, room.conference_id)
    assert uploaded["requesterUserId"] == user(room.agent)
    await events.wait("SnapshotUploadedEvent", snapshotId=snapshot_id, relatedSnapshotId=related)
    assert await fetch(api, (await signed_url(api, snapshot_id))["url"]) == (200, "image/png", picture)

    # Asking for the representation gives the seed's SnapshotUploadResult body.
    jpeg_fields = {**fields, "snapshotMimeType": "image/jpeg", "snapshotSuffix": "jpg"}
    with_body = await post_form(room.agent_api, "upload", jpeg_fields, jpeg(), Prefer="return=representation")
    assert with_body.status == 201 and set(with_body.body) == {"snapshotId"}, with_body
    # Every field the seed marks required is required.
    incomplete = {k: v for k, v in jpeg_fields.items() if k != "targetUserId"}
    refused = await post_form(room.agent_api, "upload", incomplete, jpeg())
    assert refused.status == 400 and "targetUserId" in refused.body["message"], refused
    stray = await post_form(
        room.agent_api, "upload", {**jpeg_fields, "relatedSnapshotId": unique("s")}, jpeg()
    )
    assert stray.status == 404, stray


async def test_oversize_and_non_images_are_refused_with_nothing_stored(api: Api, bus: nats.NATS) -> None:
    room = await Room.open(api)
    snapshot_id = await new_snapshot(api, room)
    fields = acquire_fields(snapshot_id, room.customer)
    before = await stored_names(bus)

    async def acquire(image: bytes | None) -> Response:
        return await post_form(room.customer_api, "acquire", fields, image)

    oversize = await acquire(noisy_png(MAX_BYTES + 4096))  # found while reading the image
    assert oversize.status == 413, oversize
    announced = await acquire(b"\xff\xd8\xff" + bytes(2 * MAX_BYTES))  # refused on its Content-Length
    assert announced.status == 413, announced
    pdf = await acquire(b"%PDF-1.7\n" + os.urandom(5000))
    assert pdf.status == 400 and "not a JPEG" in pdf.body["message"], pdf
    # Starts like a JPEG (the gateway's sniff lets it through); the service's decoder does not.
    fake = await acquire(b"\xff\xd8\xff\xe0" + os.urandom(5000))
    assert fake.status == 400 and "image" in fake.body["message"], fake
    # A real PNG declared as JPEG: the bytes win.
    liar = await acquire(noisy_png(1000))
    assert liar.status == 400 and "does not match" in liar.body["message"], liar
    no_image = await acquire(None)
    assert no_image.status == 400 and "image" in no_image.body["message"], no_image

    assert await stored_names(bus) == before
    assert (await snapshot(api, snapshot_id))["state"] == "REQUESTED"
    # The request still takes a real picture afterwards.
    assert (await acquire(jpeg())).status == 204


@pytest.mark.parametrize(
    "part_header",
    [b"X-Bad\x01Name: value", b"a header line without a colon"],
    ids=["control-char-in-name", "no-colon"],
)
async def test_multipart_part_headers_the_http_parser_refuses_are_400(api: Api, part_header: bytes) -> None:
    boundary = "parleyboundary"
    body = (
        f"--{boundary}\r\n".encode()
        + b'Content-Disposition: form-data; name="snapshotType"\r\n'
        + part_header
        + b"\r\n\r\nvalue\r\n"
        + f"--{boundary}--\r\n".encode()
    )
    headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
    for op in ("upload", "acquire"):
        response = await api.request("POST", f"{SNAPSHOTS}/{op}", data=body, headers=headers)
        assert response.status == 400, (op, response)
        assert set(response.body) == {"message", "traceId"}
        assert "malformed multipart body" in response.body["message"]


async def test_another_organization_sees_nothing(api: Api) -> None:
    room = await Room.open(api)
    interaction = unique("interaction")
    snapshot_id = await new_snapshot(api, room, interactionId=interaction)
    await post_form(room.customer_api, "acquire", acquire_fields(snapshot_id, room.customer), jpeg())
    outsider = Api(api.session, api.base_url, token(user(room.agent), "globex"))
    assert (await outsider.get(f"{SNAPSHOTS}/{snapshot_id}")).status == 404
    for op in ("approve", "discard", "signedUrl"):
        response = await outsider.post(f"{SNAPSHOTS}/{op}", {"snapshotId": snapshot_id})
        assert response.status == 404, (op, response)
    listed = await outsider.get(SNAPSHOTS, params={"interactionId": interaction})
    assert (listed.status, listed.body) == (200, [])
    mine = await api.get(SNAPSHOTS, params={"interactionId": interaction})
    assert [s["id"] for s in mine.body] == [snapshot_id]
    assert (await snapshot(api, snapshot_id))["state"] == "UPLOADED"


# ---------------------------------------------------------------- signed URLs


async def test_signed_urls_work_without_a_token_until_they_expire(stack: Stack, api: Api) -> None:
    room = await Room.open(api)
    snapshot_id, other_id = await new_snapshot(api, room), await new_snapshot(api, room)
    picture = jpeg(GREEN)
    await post_form(room.customer_api, "acquire", acquire_fields(snapshot_id, room.customer), picture)
    await post_form(room.customer_api, "acquire", acquire_fields(other_id, room.customer), jpeg(RED))

    signed = await signed_url(api, snapshot_id)
    valid_until = datetime.fromisoformat(signed["validUntil"])
    assert 0 < valid_until.timestamp() - time.time() <= URL_TTL + 1
    url = signed["url"]
    assert url.startswith(f"{PUBLIC_BASE}{SNAPSHOTS}/signed/{snapshot_id}/"), url
    assert await fetch(api, url) == (200, "image/jpeg", picture)

    internal = (await signed_url(api, snapshot_id, createInternalSignedUrl=True))["url"]
    assert internal.startswith(f"{stack.url}{SNAPSHOTS}/signed/{snapshot_id}/"), internal
    async with api.session.get(internal) as response:  # as a service in the cluster would: as is
        assert (response.status, await response.read()) == (200, picture)

    parts = urlsplit(url)
    expiration = parts.path.rsplit("/", 1)[-1]
    signature = parts.query.removeprefix("signature=")
    tampered = signature[:-1] + ("A" if signature[-1] != "A" else "B")
    base = f"{SNAPSHOTS}/signed"
    for forged in (
        f"{base}/{snapshot_id}/{expiration}?signature={tampered}",
        f"{base}/{snapshot_id}/{int(expiration) + 3600}?signature={signature}",  # a longer life
        f"{base}/{other_id}/{expiration}?signature={signature}",  # another snapshot
        f"{base}/{snapshot_id}/{expiration}?signature=",
    ):
        assert (await fetch(api, forged))[0] == 403, forged
    assert (await fetch(api, f"{base}/{snapshot_id}/soon?signature={signature}"))[0] == 400

    # A REQUESTED snapshot has nothing to sign.
    pending = await new_snapshot(api, room)
    assert (await api.post(f"{SNAPSHOTS}/signedUrl", {"snapshotId": pending})).status == 409

    await asyncio.sleep(max(0.0, valid_until.timestamp() - time.time()) + 0.2)
    assert (await fetch(api, url))[0] == 403


async def test_a_signed_url_living_beyond_the_seven_day_cap_is_refused(api: Api) -> None:
    """Even signed with the right key (leaked, or an old configuration): a URL lives at most 7 days."""
    room = await Room.open(api)
    snapshot_id = await new_snapshot(api, room)
    picture = jpeg(GREEN)
    await post_form(room.customer_api, "acquire", acquire_fields(snapshot_id, room.customer), picture)
    signer = UrlSigner(SIGNING_KEY.encode())
    within = signer.path(snapshot_id, int(time.time()) + 6 * 86400)
    assert await fetch(api, within) == (200, "image/jpeg", picture)
    status, content_type, body = await fetch(api, signer.path(snapshot_id, int(time.time()) + 365 * 86400))
    assert (status, content_type) == (403, "application/json")
    refused = json.loads(body)
    assert "7-day" in refused["message"] and refused["traceId"]


# ---------------------------------------------------------------- camera requests


async def test_camera_request_and_its_answer(api: Api, events: BusEvents) -> None:
    room = await Room.open(api)
    async with (
        channel(api, room.customer, user(room.customer)) as target_ws,
        channel(api, room.agent, user(room.agent)) as requester_ws,
    ):
        response = await room.agent_api.post(
            f"{SNAPSHOTS}/cameraRequest",
            {
                "cameraRequestType": "CAMERA_SWITCH",
                "sessionType": "CONFERENCE",
                "sessionId": room.conference_id,
                "userEndpointId": room.agent,
                "targetUserEndpointId": room.customer,
            },
        )
        assert response.status == 200, response
        request_id = response.body
        assert isinstance(request_id, str)
        asked = await pushed(target_ws, "SnapshotCameraRequestedEvent")
        assert (asked["snapshotCameraRequestId"], asked["cameraRequestType"]) == (request_id, "CAMERA_SWITCH")
        assert asked["targetUserId"] == user(room.customer)

        answer = {
            "snapshotCameraRequestId": request_id,
            "succeeded": True,
            "additionalInformation": "rear camera",
            "userEndpointId": room.customer,
        }
        assert (await room.agent_api.post(f"{SNAPSHOTS}/cameraRequestRespond", answer)).status == 403
        assert (await room.customer_api.post(f"{SNAPSHOTS}/cameraRequestRespond", answer)).status == 204
        processed = await pushed(requester_ws, "SnapshotCameraRequestProcessedEvent")
        assert (processed["snapshotCameraRequestId"], processed["succeeded"]) == (request_id, True)
        assert processed["additionalInformation"] == "rear camera"
        await events.wait("SnapshotCameraRequestProcessedEvent", snapshotCameraRequestId=request_id)

    twice = await room.customer_api.post(f"{SNAPSHOTS}/cameraRequestRespond", answer)
    assert twice.status == 409, twice
    unknown = {**answer, "snapshotCameraRequestId": unique("r")}
    assert (await room.customer_api.post(f"{SNAPSHOTS}/cameraRequestRespond", unknown)).status == 404
    bad_type = await room.agent_api.post(
        f"{SNAPSHOTS}/cameraRequest",
        {"cameraRequestType": "ZOOM", "userEndpointId": room.agent, "targetUserEndpointId": room.customer},
    )
    assert bad_type.status == 400 and "cameraRequestType" in bad_type.body["message"], bad_type


# ---------------------------------------------------------------- server-side capture


async def test_server_side_capture_of_a_published_camera(
    api: Api, bus: nats.NATS, peers: Peers, events: BusEvents
) -> None:
    skip_without_interface()
    room = await Room.open(api)
    publisher = peers.publisher(GREEN, audio=False)
    await publish_camera(api, room.conference_id, room.customer, publisher, "CAM")
    await camera_ready(bus, room.conference_id, room.customer)

    async with channel(api, room.customer, user(room.customer)) as target_ws:
        interaction = unique("interaction")
        snapshot_id = await new_snapshot(api, room, interactionId=interaction)
        taken = await snapshot(api, snapshot_id)
        assert taken["state"] == "UPLOADED", taken
        assert taken["requestProcessingResult"] == {"snapshotAcquired": True, "error": None}
        assert (taken["path"], taken["mimeType"]) == (
            f"interactions/{interaction}/{snapshot_id}.jpg",
            "image/jpeg",
        )
        # The target's client is not asked for a picture, but it is told one was taken.
        told = await pushed(target_ws, "SnapshotAcquiredEvent")
        assert (told["snapshotId"], told["serverSide"]) == (snapshot_id, True)
    await events.wait("SnapshotAcquiredEvent", snapshotId=snapshot_id, serverSide=True)

    status, content_type, data = await fetch(api, (await signed_url(api, snapshot_id))["url"])
    assert (status, content_type) == (200, "image/jpeg")
    with Image.open(io.BytesIO(data)) as picture:
        assert (picture.format, picture.size) == ("JPEG", (640, 480))
    assert close_to(mean_color(data), GREEN), mean_color(data)

    # The picture follows the camera: a later request sees the new colour.
    publisher.set_color(RED)
    await asyncio.sleep(0.5)
    again = await new_snapshot(api, room)
    data = (await fetch(api, (await signed_url(api, again))["url"]))[2]
    assert close_to(mean_color(data), RED), mean_color(data)
    approved = await room.agent_api.post(f"{SNAPSHOTS}/approve", {"snapshotId": snapshot_id})
    assert approved.status == 204, approved


async def test_capture_falls_back_to_the_client_when_it_cannot(stack: Stack, api: Api, peers: Peers) -> None:
    skip_without_interface()
    # A microphone is no camera.
    room = await Room.open(api)
    await publish_camera(api, room.conference_id, room.customer, peers.publisher(video=False), "MIC")
    waiting = await snapshot(api, await new_snapshot(api, room))
    assert waiting["state"] == "REQUESTED"
    assert "publishes no camera stream" in waiting["requestProcessingResult"]["error"]

    # Not a conference: nothing to capture from.
    call = await room.agent_api.post(
        f"{SNAPSHOTS}/request",
        {
            "sessionType": "CALL",
            "sessionId": "call-1",
            "userEndpointId": room.agent,
            "targetUserEndpointId": "x",
        },
    )
    assert call.status == 200, call
    assert "CONFERENCE" in (await snapshot(api, call.body["snapshotId"]))["requestProcessingResult"]["error"]

    # The media node gone (killed: it says nothing on its way out): the request still succeeds, for the
    # client to answer, and says why the server could not take the picture.
    camera_room = await Room.open(api)
    await publish_camera(api, camera_room.conference_id, camera_room.customer, peers.publisher(GREEN), "CAM")
    stack.local["media-0"].kill()
    try:
        fallback = await snapshot(api, await new_snapshot(api, camera_room))
        assert fallback["state"] == "REQUESTED", fallback
        assert fallback["requestProcessingResult"]["snapshotAcquired"] is False
        assert "503" in fallback["requestProcessingResult"]["error"], fallback
    finally:
        stack.local["media-0"].start()


# ---------------------------------------------------------------- documents and health


async def test_openapi_and_health_cover_the_snapshot_api(api: Api) -> None:
    document = (await api.get("/openapi.json")).body
    paths, schemas = document["paths"], document["components"]["schemas"]
    for op in ["request", "approve", "discard", "signedUrl", "cameraRequest", "cameraRequestRespond"]:
        assert "post" in paths[f"{SNAPSHOTS}/{op}"], op
    for op, form in [("acquire", "SnapshotAcquireForm"), ("upload", "SnapshotUploadForm")]:
        content = paths[f"{SNAPSHOTS}/{op}"]["post"]["requestBody"]["content"]
        assert content["multipart/form-data"]["schema"]["$ref"].endswith(f"/{form}")
        image = schemas[form]["properties"]["image"]
        assert (image["type"], image["format"], image["minLength"]) == ("string", "binary", 1)
        assert image["description"].startswith("the image file")
        assert "413" in paths[f"{SNAPSHOTS}/{op}"]["post"]["responses"]
    for path in [
        SNAPSHOTS,
        f"{SNAPSHOTS}/{{snapshotId}}",
        f"{SNAPSHOTS}/signed/{{snapshotId}}/{{expiration}}",
    ]:
        assert "get" in paths[path], path
    assert paths[f"{SNAPSHOTS}/signed/{{snapshotId}}/{{expiration}}"]["get"]["security"] == []
    assert {"Snapshot", "SignedUrl", "SnapshotRequestResult0", "SnapshotRequestWebCommand"} <= set(schemas)

    health = (await api.get("/health")).body
    reported = {d["name"]: d["isHealthy"] for d in health["dependencies"]}
    assert reported["snapshot"] and reported["snapshot.storage"] and reported["snapshot.objects"], reported
