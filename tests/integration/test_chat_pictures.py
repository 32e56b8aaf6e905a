"""Chat pictures and previews end to end: the gateway over HTTP, the chat service, a real nats-server.

Pictures: raw-body uploads with the seed's headers (`\\uXXXX`-escaped or plain fileName), every refusal
(owner, group only, size over the capabilities' KB limit 400 with and without Content-Length, a declared
non-image type, bytes that do not decode as an image, another user's picture 403), nothing stored on a
refusal, GET answering the bytes with their type, the events pushed to whom the note says, room deletion
dropping the picture's bytes.

Previews: of attachments uploaded through `POST /rooms/{roomId}/attachments`; every preview is decoded to
check its size, format and shape, the second call is answered from the cache without rendering again,
each refusal has its status, and deleting the room or the attachment deletes the rendered previews.
"""

from __future__ import annotations

import io
import uuid
from collections.abc import AsyncIterator, Iterator

import aiohttp
import nats
import pypdfium2 as pdfium
import pytest
from parley_common.messaging import subjects
from parley_common.messaging.streams import ensure_object_store
from PIL import Image

from tests.integration.helpers import Response, Stack
from tests.integration.test_chat_api import User, error, eventually, group, new_users

BUCKET = subjects.CHAT_FILES_BUCKET


@pytest.fixture(scope="module")
def chat_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    running = Stack(
        tmp_path_factory.mktemp("chat-files"), chat=True, env={"PARLEY_ESSENTIAL_SERVICES": "conference,chat"}
    ).start()
    yield running
    running.stop()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


def png(width: int = 40, height: int = 30, color: tuple[int, int, int] = (10, 120, 200)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), color).save(out, "PNG")
    return out.getvalue()


def jpeg(width: int, height: int) -> bytes:
    image = Image.new("RGB", (width, height), (200, 40, 40))
    # A second colour on the left eighth: a square crop of 4:3 cuts it off, a fit keeps it.
    image.paste((20, 200, 20), (0, 0, width // 8, height))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=85)
    return out.getvalue()


def pdf(pages: int) -> bytes:
    document = pdfium.PdfDocument.new()
    for _ in range(pages):
        document.new_page(612, 792)
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def escaped(name: str) -> str:
    """A name as Carbonio's clients send it: every character a `\\uXXXX` escape."""
    return "".join(f"\\u{ord(c):04x}" for c in name)


async def put_picture(
    user: User, path: str, data: bytes, *, mime: str = "image/png", name: str | None = None, **headers: str
) -> Response:
    return await user.api.request(
        "PUT",
        path,
        data=data,
        headers={"fileName": escaped("pic.png") if name is None else name, "mimeType": mime, **headers},
    )


async def stored_names(stack: Stack, prefix: str) -> set[str]:
    connection = await nats.connect(stack.nats_url)
    try:
        bucket = await ensure_object_store(connection.jetstream(), BUCKET)
        try:
            listed = await bucket.list()
        except Exception:  # nats-py raises when the bucket holds nothing
            return set()
        return {info.name for info in listed if info.name.startswith(prefix) and not info.deleted}
    finally:
        await connection.close()


def decoded(response: Response) -> Image.Image:
    assert response.status == 200, response
    return Image.open(io.BytesIO(response.body))


# ---------------------------------------------------------------- room pictures


async def test_room_picture(chat_stack: Stack, session: aiohttp.ClientSession) -> None:
    alice, bob, carol, dave = await new_users(session, chat_stack, 4)
    room = await group(alice, bob, carol)
    path = f"/rooms/{room}/picture"
    error(await alice.call("GET", path), 404)  # none yet

    # Refusals, in the note's order; nothing is stored by any of them.
    error(await put_picture(alice, f"/rooms/{uuid.uuid4()}/picture", png()), 404)
    error(await put_picture(dave, path, png()), 403)  # not a member
    error(await put_picture(bob, path, png()), 403)  # not an owner
    one = await alice.call("POST", "/rooms", {"type": "one_to_one", "membersIds": [dave.id]})
    error(await put_picture(alice, f"/rooms/{one.body['id']}/picture", png()), 400)  # not a group
    too_big = png() + b"\0" * (512 * 1024)
    error(await put_picture(alice, path, too_big), 400)  # Content-Length over maxRoomImageSizeInKb

    async def chunked() -> AsyncIterator[bytes]:
        for _ in range(9):
            yield b"\0" * (64 * 1024)

    # No Content-Length: counted while streaming, stopped at the limit.
    no_length = await alice.api.request(
        "PUT",
        path,
        data=chunked(),
        headers={"fileName": "pic.png", "mimeType": "image/png"},  # type: ignore[arg-type]
    )
    error(no_length, 400)
    error(await put_picture(alice, path, png(), mime="text/plain"), 400)  # declared type not an image
    error(await put_picture(alice, path, b"not an image at all", mime="image/png"), 400)  # bytes not one
    error(await put_picture(alice, path, png(), name=""), 400)  # fileName required
    error(await alice.call("GET", path), 404)
    assert await stored_names(chat_stack, "uploads/") == set()
    assert await stored_names(chat_stack, f"pictures/rooms/{room}") == set()

    # Accepted: escaped or plain name; the real type is answered (a JPEG declared as image/png).
    assert (await put_picture(alice, path, png())).status == 204
    got = await bob.call("GET", path)
    assert got.status == 200 and got.headers["Content-Type"] == "image/png" and got.body == png()
    photo = jpeg(64, 48)
    assert (await put_picture(alice, path, photo, name="photo.jpg")).status == 204
    got = await carol.call("GET", path)
    assert got.headers["Content-Type"] == "image/jpeg" and got.body == photo
    error(await dave.call("GET", path), 403)
    shown = await alice.call("GET", f"/rooms/{room}")
    assert "pictureUpdatedAt" in shown.body

    events = [e for e in await carol.events() if e.get("roomId") == room]
    changed = [e for e in events if e["type"] == "ROOM_PICTURE_CHANGED"]
    assert len(changed) == 2 and all("updatedAt" in e for e in changed)
    assert not [e for e in await dave.events() if e.get("roomId") == room]

    # Delete: owner only, then 404.
    error(await bob.call("DELETE", path), 403)
    assert (await alice.call("DELETE", path)).status == 204
    error(await alice.call("GET", path), 404)
    error(await alice.call("DELETE", path), 404)
    assert "pictureUpdatedAt" not in (await alice.call("GET", f"/rooms/{room}")).body
    assert "ROOM_PICTURE_DELETED" in await bob.types(room)
    await eventually(
        lambda: _names_as_response(chat_stack, f"pictures/rooms/{room}"), lambda r: r.body == set()
    )

    # Deleting the room deletes its picture's bytes.
    assert (await put_picture(alice, path, png())).status == 204
    assert await stored_names(chat_stack, f"pictures/rooms/{room}") == {f"pictures/rooms/{room}"}
    assert (await alice.call("DELETE", f"/rooms/{room}")).status == 204
    await eventually(
        lambda: _names_as_response(chat_stack, f"pictures/rooms/{room}"), lambda r: r.body == set()
    )


async def _names_as_response(stack: Stack, prefix: str) -> Response:
    return Response(200, await stored_names(stack, prefix), {})


# ---------------------------------------------------------------- user pictures


async def test_user_picture(chat_stack: Stack, session: aiohttp.ClientSession) -> None:
    alice, bob, carol, stranger = await new_users(session, chat_stack, 4)
    await group(alice, bob, carol)
    path = f"/users/{alice.id}/picture"
    error(await bob.call("GET", path), 404)
    error(await put_picture(bob, path, png()), 403)  # not the caller's own
    error(await put_picture(alice, path, png() + b"\0" * (512 * 1024)), 400)
    error(await put_picture(alice, path, b"GIF89a broken", mime="image/gif"), 400)
    assert await stored_names(chat_stack, "uploads/") == set()

    assert (await put_picture(alice, path, png(), name=escaped("mé.png"))).status == 204
    got = await stranger.call("GET", path)  # any caller of the organization
    assert got.status == 200 and got.headers["Content-Type"] == "image/png" and got.body == png()
    assert "pictureUpdatedAt" in (await bob.call("GET", f"/users/{alice.id}")).body

    # USER_PICTURE_CHANGED to everyone sharing a room with alice (herself included), not to others.
    for mate in (alice, bob, carol):
        kinds = [e for e in await mate.events() if e["type"] == "USER_PICTURE_CHANGED"]
        assert [(e["userId"], e["imageId"]) for e in kinds] == [(alice.id, alice.id)], mate.id
        assert "updatedAt" in kinds[0]
    assert not [e for e in await stranger.events() if e["type"].startswith("USER_PICTURE")]

    error(await bob.call("DELETE", path), 403)
    assert (await alice.call("DELETE", path)).status == 204
    error(await alice.call("GET", path), 404)
    error(await alice.call("DELETE", path), 404)
    assert [e["userId"] for e in await bob.events() if e["type"] == "USER_PICTURE_DELETED"] == [alice.id]


# ---------------------------------------------------------------- previews


async def seed_attachment(stack: Stack, owner: User, room_id: str, data: bytes, mime: str) -> str:
    """An attachment uploaded through the gateway (`POST /rooms/{roomId}/attachments`): its id."""
    uploaded = await owner.api.request(
        "POST",
        f"/rooms/{room_id}/attachments",
        data=data,
        headers={"fileName": escaped("file"), "mimeType": mime},
    )
    assert uploaded.status == 201, uploaded
    return str(uploaded.body["id"])


async def test_image_previews(chat_stack: Stack, session: aiohttp.ClientSession) -> None:
    alice, bob, carol, outsider = await new_users(session, chat_stack, 4)
    room = await group(alice, bob, carol)
    photo = await seed_attachment(chat_stack, alice, room, jpeg(4000, 3000), "image/jpeg")

    # Fit keeping the ratio (4:3 inside 256x256 -> 256x192), JPEG by default.
    fit = await bob.call("GET", f"/preview/image/{photo}/256x256/")
    image = decoded(fit)
    assert image.size == (256, 192) and image.format == "JPEG"
    assert fit.headers["Content-Type"] == "image/jpeg"
    # Width first: 100x300 is a tall area.
    assert decoded(await bob.call("GET", f"/preview/image/{photo}/100x300/")).size == (100, 75)
    # crop=true fills the area, cutting from the borders: the left green eighth is cut off.
    cropped = decoded(await bob.call("GET", f"/preview/image/{photo}/256x256/", params={"crop": "true"}))
    assert cropped.size == (256, 256)
    red, green, _ = cropped.convert("RGB").getpixel((2, 128))  # type: ignore[misc]
    assert red > 150 and green < 100
    red, green, _ = image.convert("RGB").getpixel((2, 96))  # type: ignore[misc]
    assert green > 150  # the fit keeps the whole picture

    # Thumbnail fills the area; output_format in any case; quality changes the bytes.
    thumb = decoded(
        await bob.call("GET", f"/preview/image/{photo}/128x64/thumbnail", params={"output_format": "PNG"})
    )
    assert thumb.size == (128, 64) and thumb.format == "PNG"
    lowest = await bob.call("GET", f"/preview/image/{photo}/200x200/thumbnail", params={"quality": "Lowest"})
    highest = await bob.call(
        "GET", f"/preview/image/{photo}/200x200/thumbnail", params={"quality": "HIGHEST"}
    )
    assert len(lowest.body) < len(highest.body)
    # Rounded: a circular mask, transparent in PNG (corner clear, centre opaque).
    rounded = decoded(
        await bob.call(
            "GET",
            f"/preview/image/{photo}/96x96/thumbnail",
            params={"shape": "Rounded", "output_format": "png"},
        )
    )
    assert (
        rounded.mode == "RGBA" and rounded.getpixel((0, 0))[3] == 0 and rounded.getpixel((48, 48))[3] == 255
    )
    gif = decoded(
        await bob.call("GET", f"/preview/image/{photo}/32x32/thumbnail", params={"output_format": "gif"})
    )
    assert gif.format == "GIF" and gif.size == (32, 32)

    # Refusals: malformed area, unknown parameter values, unknown file, not a member, not an image.
    for area in ("256", "x256", "256x", "256X256", "axb", "99999x1"):
        error(await bob.call("GET", f"/preview/image/{photo}/{area}/"), 400)
    error(await bob.call("GET", f"/preview/image/{photo}/64x64/", params={"quality": "ultra"}), 400)
    error(await bob.call("GET", f"/preview/image/{photo}/64x64/", params={"output_format": "bmp"}), 400)
    error(await bob.call("GET", f"/preview/image/{photo}/64x64/thumbnail", params={"shape": "star"}), 400)
    error(await bob.call("GET", f"/preview/image/{photo}/64x64/", params={"crop": "maybe"}), 400)
    error(await bob.call("GET", f"/preview/image/{uuid.uuid4()}/64x64/"), 404)
    error(await bob.call("GET", "/preview/image/not-a-uuid/64x64/"), 400)
    error(await outsider.call("GET", f"/preview/image/{photo}/64x64/"), 403)
    text = await seed_attachment(chat_stack, alice, room, b"plain text", "text/plain")
    error(await bob.call("GET", f"/preview/image/{text}/64x64/"), 400)
    error(await bob.call("GET", f"/preview/pdf/{text}/64x64/thumbnail"), 400)


async def test_preview_is_cached(chat_stack: Stack, session: aiohttp.ClientSession) -> None:
    alice, bob, carol = await new_users(session, chat_stack, 3)
    room = await group(alice, bob, carol)
    photo = await seed_attachment(chat_stack, alice, room, jpeg(1200, 900), "image/jpeg")
    path = f"/preview/image/{photo}/150x150/thumbnail"
    first = await bob.call("GET", path, params={"output_format": "png", "shape": "rounded"})
    assert first.status == 200 and first.headers["X-Preview-Cache"] == "miss"
    (cached,) = await stored_names(chat_stack, f"previews/{photo}/")
    # The same parameters spelled differently share the render: answered from the store, not redrawn.
    again = await carol.call("GET", path, params={"output_format": "PNG", "shape": "Rounded"})
    assert again.status == 200 and again.headers["X-Preview-Cache"] == "hit" and again.body == first.body
    assert await stored_names(chat_stack, f"previews/{photo}/") == {cached}
    other = await bob.call("GET", path, params={"output_format": "png"})
    assert (
        other.headers["X-Preview-Cache"] == "miss"
        and len(await stored_names(chat_stack, f"previews/{photo}/")) == 2
    )


async def test_pdf_previews(chat_stack: Stack, session: aiohttp.ClientSession) -> None:
    alice, bob, carol, outsider = await new_users(session, chat_stack, 4)
    room = await group(alice, bob, carol)
    document = await seed_attachment(chat_stack, alice, room, pdf(5), "application/pdf")

    def pages(response: Response) -> int:
        assert response.status == 200 and response.headers["Content-Type"] == "application/pdf", response
        return len(pdfium.PdfDocument(response.body))

    assert pages(await bob.call("GET", f"/preview/pdf/{document}/")) == 5
    assert (
        pages(await bob.call("GET", f"/preview/pdf/{document}/", params={"firstPage": "2", "lastPage": "0"}))
        == 4
    )
    assert (
        pages(await bob.call("GET", f"/preview/pdf/{document}/", params={"firstPage": "2", "lastPage": "3"}))
        == 2
    )
    for first, last in (("0", "1"), ("6", "0"), ("3", "2"), ("1", "6"), ("1", "-1"), ("x", "1")):
        params = {"firstPage": first, "lastPage": last}
        error(await bob.call("GET", f"/preview/pdf/{document}/", params=params), 400)
    error(await outsider.call("GET", f"/preview/pdf/{document}/"), 403)
    error(await bob.call("GET", f"/preview/pdf/{uuid.uuid4()}/"), 404)

    thumb = decoded(await bob.call("GET", f"/preview/pdf/{document}/256x256/thumbnail"))
    assert thumb.size == (256, 256) and thumb.format == "JPEG"
    white = thumb.convert("RGB").getpixel((128, 128))
    assert white == (255, 255, 255) or min(white) > 240  # an empty page renders white
    round_png = decoded(
        await bob.call(
            "GET",
            f"/preview/pdf/{document}/64x80/thumbnail",
            params={"shape": "ROUNDED", "output_format": "Png"},
        )
    )
    assert round_png.size == (64, 80) and round_png.getpixel((0, 0))[3] == 0
    error(await bob.call("GET", f"/preview/pdf/{document}/64/thumbnail"), 400)
    error(await outsider.call("GET", f"/preview/pdf/{document}/64x64/thumbnail"), 403)
    image = await seed_attachment(chat_stack, alice, room, png(), "image/png")
    error(await bob.call("GET", f"/preview/pdf/{image}/"), 400)  # not a PDF


async def test_room_deletion_drops_previews(chat_stack: Stack, session: aiohttp.ClientSession) -> None:
    alice, bob, carol = await new_users(session, chat_stack, 3)
    room = await group(alice, bob, carol)
    photo = await seed_attachment(chat_stack, alice, room, jpeg(320, 240), "image/jpeg")
    document = await seed_attachment(chat_stack, alice, room, pdf(2), "application/pdf")
    assert (await bob.call("GET", f"/preview/image/{photo}/64x64/thumbnail")).status == 200
    assert (await bob.call("GET", f"/preview/pdf/{document}/32x32/thumbnail")).status == 200
    assert (await bob.call("GET", f"/preview/pdf/{document}/", params={"firstPage": "2"})).status == 200
    assert len(await stored_names(chat_stack, f"previews/{photo}/")) == 1
    assert len(await stored_names(chat_stack, f"previews/{document}/")) == 2

    assert (await alice.call("DELETE", f"/rooms/{room}")).status == 204
    for file_id in (photo, document):
        await eventually(
            lambda f=file_id: _names_as_response(chat_stack, f"previews/{f}/"), lambda r: r.body == set()
        )


async def test_attachment_deletion_drops_its_previews(
    chat_stack: Stack, session: aiohttp.ClientSession
) -> None:
    alice, bob, carol = await new_users(session, chat_stack, 3)
    room = await group(alice, bob, carol)
    photo = await seed_attachment(chat_stack, alice, room, jpeg(320, 240), "image/jpeg")
    kept = await seed_attachment(chat_stack, alice, room, jpeg(320, 240), "image/jpeg")
    for file_id in (photo, kept):
        assert (await bob.call("GET", f"/preview/image/{file_id}/64x64/")).status == 200
    assert (await alice.call("DELETE", f"/attachments/{photo}")).status == 204
    error(await bob.call("GET", f"/preview/image/{photo}/64x64/"), 404)
    await eventually(lambda: _names_as_response(chat_stack, f"previews/{photo}/"), lambda r: r.body == set())
    assert len(await stored_names(chat_stack, f"previews/{kept}/")) == 1
