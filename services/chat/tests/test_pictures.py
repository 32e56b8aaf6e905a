"""The picture rules on pure values (`shared/notes/chat-carbonio.md`, "Room picture" and "Users"): each
check with its status and in its order, the events' recipients, and the bytes a deletion drops."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from parley_chat import domain
from parley_chat.domain import Caller, Context, DirectoryUser, Room, RoomMember
from parley_chat.effects import effects_of
from parley_common.contracts import chat as api
from parley_common.errors import DomainError
from parley_common.outbox import DeleteObject

ORG = "acme"
NOW = datetime(2024, 8, 24, 14, 15, 22, tzinfo=UTC)


def uid(n: int) -> str:
    return f"00000000-0000-4000-8000-{n:012d}"


ALICE, BOB, CAROL, DAVE = (uid(n) for n in range(1, 5))
ROOM = uid(101)


def ctx() -> Context:
    ids = itertools.count(9000)
    return Context(now=NOW, new_id=lambda: uid(next(ids)))


def me(user: str = ALICE) -> Caller:
    return Caller(organization_id=ORG, user_id=user)


def room(
    type_: api.RoomType = "group",
    members: tuple[tuple[str, bool], ...] = ((ALICE, True), (BOB, False), (CAROL, False)),
    *,
    id_: str = ROOM,
    **fields: Any,
) -> Room:
    return Room(
        id=id_,
        organization_id=ORG,
        type=type_,
        created_at=NOW - timedelta(days=1),
        updated_at=NOW - timedelta(days=1),
        name="r",
        members=tuple(RoomMember(user, owner) for user, owner in members),
        **fields,
    )


LIMIT = 512 * 1024


def status(call: object) -> int:
    with pytest.raises(DomainError) as refused:
        call()  # type: ignore[operator]
    return refused.value.status


def user(user_id: str = ALICE, **fields: object) -> DirectoryUser:
    return DirectoryUser(organization_id=ORG, id=user_id, name="a", email="a@x", seen_at=NOW, **fields)  # type: ignore[arg-type]


def test_room_picture_checks_in_order() -> None:
    check = domain.check_room_picture
    assert status(lambda: check(None, me(), ROOM, size=1, mime_type="image/png")) == 404
    assert status(lambda: check(room(), me(DAVE), ROOM, size=1, mime_type="image/png")) == 403
    assert status(lambda: check(room(), me(BOB), ROOM, size=1, mime_type="image/png")) == 403
    for kind in ("temporary", "workspace"):
        assert status(lambda k=kind: check(room(k), me(), ROOM, size=1, mime_type="image/png")) == 400
    # Over the limit: 400 (the seed's, not 413), even with a type that is not an image.
    assert status(lambda: check(room(), me(), ROOM, size=LIMIT + 1, mime_type="image/png")) == 400
    assert status(lambda: check(room(), me(), ROOM, size=1, mime_type="text/plain")) == 400
    assert check(room(), me(), ROOM, size=LIMIT, mime_type="IMAGE/PNG").id == ROOM
    assert check(room(), me(), ROOM, size=None, mime_type="image/png").id == ROOM  # chunked: counted later


def test_room_picture_set_and_deleted() -> None:
    decision = domain.decide_room_picture(room(), "image/png", ctx())
    (updated,) = decision.put_rooms
    assert updated.picture_updated_at == NOW and updated.picture_type == "image/png"
    (notice,) = decision.notices
    assert isinstance(notice.event, api.RoomPictureChanged) and notice.event.updated_at == NOW
    assert notice.recipients == (ALICE, BOB, CAROL)
    with_picture = room(picture_updated_at=NOW, picture_type="image/png")
    assert domain.room_picture(with_picture, me(BOB), ROOM).object_name == f"pictures/rooms/{ROOM}"
    assert status(lambda: domain.room_picture(room(), me(BOB), ROOM)) == 404
    assert status(lambda: domain.decide_delete_room_picture(with_picture, me(BOB), ROOM, ctx())) == 403
    assert status(lambda: domain.decide_delete_room_picture(room(), me(), ROOM, ctx())) == 404
    deleted = domain.decide_delete_room_picture(with_picture, me(), ROOM, ctx())
    assert deleted.put_rooms[0].picture_updated_at is None
    assert DeleteObject(object_name=f"pictures/rooms/{ROOM}") in effects_of(ORG, deleted)


def test_a_deleted_room_drops_its_picture() -> None:
    # (Its files' and their previews' objects: the unit of work, from the repository's files_of_rooms.)
    with_picture = room(picture_updated_at=NOW - timedelta(hours=1))
    decision = domain.decide_delete_room(with_picture, me(), ROOM, ctx())
    assert decision.delete_objects == (f"pictures/rooms/{ROOM}",)
    assert domain.decide_delete_room(room(), me(), ROOM, ctx()).delete_objects == ()


def test_user_picture_rules_and_recipients() -> None:
    check = domain.check_user_picture
    assert status(lambda: check(user(BOB), me(), BOB, size=1, mime_type="image/png")) == 403
    assert status(lambda: check(None, me(), ALICE, size=1, mime_type="image/png")) == 404
    assert status(lambda: check(user(), me(), ALICE, size=LIMIT + 1, mime_type="image/png")) == 400
    rooms = [room(), room(members=((DAVE, True), (BOB, False)), id_="r2")]
    decision = domain.decide_user_picture(user(), "image/jpeg", rooms, ctx())
    (notice,) = decision.notices
    assert isinstance(notice.event, api.UserPictureChanged) and notice.event.image_id == ALICE
    # Everyone sharing a room with alice, alice first; dave shares none with her.
    assert notice.recipients == (ALICE, BOB, CAROL)
    assert decision.put_users[0].picture_type == "image/jpeg"
    assert status(lambda: domain.decide_delete_user_picture(user(), me(), ALICE, rooms, ctx())) == 404
    assert status(lambda: domain.decide_delete_user_picture(user(BOB), me(), BOB, rooms, ctx())) == 403
