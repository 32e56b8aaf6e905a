"""Wire shapes of the chat contracts: what the real backend's clients send and expect to read."""

from __future__ import annotations

from datetime import UTC, datetime

import jsonschema
import msgspec
import pytest
from parley_common.contracts import chat
from parley_common.messaging import streams, subjects

ROOM = "c3631f02-ff67-42b8-8775-18c47f52a678"
USER = "2c4a230c-5085-4924-a3e1-25fb4fc5965b"
NOW = datetime(2024, 8, 24, 14, 15, 22, tzinfo=UTC)


def decode(raw: bytes, type_: type[msgspec.Struct]) -> object:
    return msgspec.json.decode(raw, type=type_)


# ---------------------------------------------------------------- omitted nulls, camelCase


def test_a_one_to_one_room_leaves_out_every_unset_field() -> None:
    room = chat.Room(id=ROOM, type="one_to_one", created_at=NOW, updated_at=NOW)
    assert msgspec.json.decode(msgspec.json.encode(room)) == {
        "id": ROOM,
        "type": "one_to_one",
        "createdAt": "2024-08-24T14:15:22Z",
        "updatedAt": "2024-08-24T14:15:22Z",
    }


def test_a_room_writes_its_set_fields_in_camel_case() -> None:
    room = chat.Room(
        id=ROOM,
        type="workspace",
        created_at=NOW,
        updated_at=NOW,
        name="w",
        rank=1,
        meeting_id=USER,
        children=(),
        members=(chat.Member(user_id=USER, owner=False),),
        user_settings=chat.RoomUserSettings(muted=False),
    )
    wire = msgspec.json.decode(msgspec.json.encode(room))
    assert wire["meetingId"] == USER
    assert wire["rank"] == 1
    # An empty list is not "unset": a workspace without channels shows `children: []`.
    assert wire["children"] == []
    # Required booleans are written even when false.
    assert wire["members"] == [{"userId": USER, "owner": False}]
    assert wire["userSettings"] == {"muted": False}
    assert "pictureUpdatedAt" not in wire
    assert "parentId" not in wire


def test_member_inserted_shows_cleared_at_only_when_set() -> None:
    assert msgspec.json.decode(msgspec.json.encode(chat.MemberInserted(user_id=USER, owner=True))) == {
        "userId": USER,
        "owner": True,
    }
    with_date = chat.MemberInserted(user_id=USER, owner=False, cleared_at=NOW)
    assert msgspec.json.decode(msgspec.json.encode(with_date))["clearedAt"] == "2024-08-24T14:15:22Z"


def test_capabilities_write_every_key() -> None:
    caps = chat.Capabilities(
        can_see_message_reads=True,
        can_see_users_presence=True,
        can_video_call=True,
        can_video_call_record=True,
        can_use_virtual_background=True,
        edit_message_time_limit_in_minutes=10,
        delete_message_time_limit_in_minutes=10,
        max_group_members=128,
        max_room_image_size_in_kb=512,
        max_user_image_size_in_kb=512,
    )
    wire = msgspec.json.decode(msgspec.json.encode(caps))
    assert set(wire) == {
        "canSeeMessageReads",
        "canSeeUsersPresence",
        "canVideoCall",
        "canVideoCallRecord",
        "canUseVirtualBackground",
        "editMessageTimeLimitInMinutes",
        "deleteMessageTimeLimitInMinutes",
        "maxGroupMembers",
        "maxRoomImageSizeInKb",
        "maxUserImageSizeInKb",
    }


def test_user_and_token_shapes() -> None:
    user = chat.User(id=USER, email="a@b.c", name="A", type="internal")
    assert msgspec.json.decode(msgspec.json.encode(user)) == {
        "id": USER,
        "email": "a@b.c",
        "name": "A",
        "type": "internal",
    }
    assert msgspec.json.encode(chat.AuthToken(zm_token="t")) == b'{"zmToken":"t"}'
    assert msgspec.json.encode(chat.Admitted(admitted=False)) == b'{"admitted":false}'


# ---------------------------------------------------------------- enums: case-insensitive, unknown refused


@pytest.mark.parametrize("spelling", ["group", "GROUP", "Group"])
def test_room_type_is_case_insensitive_and_normalised(spelling: str) -> None:
    body = decode(f'{{"type":"{spelling}","name":"n"}}'.encode(), chat.RoomCreationFields)
    assert isinstance(body, chat.RoomCreationFields)
    assert body.type == "group"
    assert body.room_type == "group"


def test_an_unknown_room_type_is_refused() -> None:
    with pytest.raises(msgspec.ValidationError, match=r"\$\.type"):
        decode(b'{"type":"lobby"}', chat.RoomCreationFields)


def test_type_is_required() -> None:
    with pytest.raises(msgspec.ValidationError, match="type"):
        decode(b'{"name":"n"}', chat.RoomCreationFields)


def test_extra_fields_are_case_insensitive_from_query_parameters() -> None:
    query = chat.decode_params(chat.ListRooms, {"extraFields": ["MEMBERS", "Settings"]})
    assert query.extra_fields == ("members", "settings")
    with pytest.raises(msgspec.ValidationError):
        chat.decode_params(chat.ListRooms, {"extraFields": ["pictures"]})


def test_meeting_type_defaults_to_permanent_and_accepts_any_case() -> None:
    body = decode(f'{{"roomId":"{ROOM}","meetingType":"SCHEDULED"}}'.encode(), chat.MeetingCreation)
    assert isinstance(body, chat.MeetingCreation)
    assert body.kind == "scheduled"
    default = decode(f'{{"roomId":"{ROOM}"}}'.encode(), chat.MeetingCreation)
    assert isinstance(default, chat.MeetingCreation)
    assert default.kind == "permanent"


def test_user_seen_type_is_case_insensitive() -> None:
    seen = decode(f'{{"organizationId":"o","userId":"{USER}","type":"GUEST"}}'.encode(), chat.UserSeen)
    assert isinstance(seen, chat.UserSeen)
    assert seen.type == "guest"


# ---------------------------------------------------------------- UUIDs


@pytest.mark.parametrize(
    "bad",
    ["nope", "", "2c4a230c50854924a3e125fb4fc5965b", f"{USER}x", "2c4a230c-5085-4924-a3e1-25fb4fc5965g"],
)
def test_a_malformed_uuid_in_a_body_is_refused(bad: str) -> None:
    with pytest.raises(msgspec.ValidationError, match="membersIds"):
        decode(f'{{"type":"group","membersIds":["{bad}"]}}'.encode(), chat.RoomCreationFields)


@pytest.mark.parametrize("body_type", [chat.RoomRef, chat.UpdateRoom, chat.MeetingCreation])
def test_a_malformed_uuid_in_a_path_is_refused(body_type: type[msgspec.Struct]) -> None:
    with pytest.raises(msgspec.ValidationError, match="roomId"):
        chat.decode_params(body_type, {"roomId": "not-a-uuid"})


def test_path_parameters_are_checked_like_body_fields() -> None:
    ref = chat.decode_params(chat.MemberRef, {"roomId": ROOM.upper(), "userId": USER})
    # An upper-case UUID is the same id: stored and compared lower-case.
    assert ref == chat.MemberRef(room_id=ROOM, user_id=USER)
    with pytest.raises(msgspec.ValidationError, match="userId"):
        chat.decode_params(chat.MemberRef, {"roomId": ROOM, "userId": "alice"})


def test_a_malformed_parent_id_is_refused() -> None:
    with pytest.raises(msgspec.ValidationError, match="parentId"):
        decode(b'{"type":"channel","parentId":"w1"}', chat.RoomCreationFields)


# ---------------------------------------------------------------- unknown fields, field limits


@pytest.mark.parametrize(
    ("raw", "body_type"),
    [
        (b'{"type":"group","name":"n","extra":1}', chat.RoomCreationFields),
        (b'{"name":"n","type":"group"}', chat.RoomEditableFields),
        (f'{{"userId":"{USER}","owner":true,"historyCleared":false,"x":0}}'.encode(), chat.MemberToInsert),
        (f'{{"roomId":"{ROOM}","rank":1,"position":2}}'.encode(), chat.RoomRank),
    ],
)
def test_an_unknown_body_property_is_refused(raw: bytes, body_type: type[msgspec.Struct]) -> None:
    with pytest.raises(msgspec.ValidationError, match="unknown field"):
        decode(raw, body_type)


def test_member_to_insert_needs_all_three_fields() -> None:
    with pytest.raises(msgspec.ValidationError, match="historyCleared"):
        decode(f'{{"userId":"{USER}","owner":true}}'.encode(), chat.MemberToInsert)


def test_room_rank_needs_both_fields() -> None:
    with pytest.raises(msgspec.ValidationError, match="rank"):
        decode(f'{{"roomId":"{ROOM}"}}'.encode(), chat.RoomRank)


@pytest.mark.parametrize(
    "raw",
    [
        b'{"type":"group","name":""}',
        ('{"type":"group","name":"' + "n" * 129 + '"}').encode(),
        ('{"type":"group","name":"n","description":"' + "d" * 257 + '"}').encode(),
    ],
)
def test_name_and_description_lengths_are_bounded(raw: bytes) -> None:
    with pytest.raises(msgspec.ValidationError):
        decode(raw, chat.RoomCreationFields)


def test_name_and_description_at_their_limits_pass() -> None:
    raw = ('{"type":"group","name":"' + "n" * 128 + '","description":"' + "d" * 256 + '"}').encode()
    body = decode(raw, chat.RoomCreationFields)
    assert isinstance(body, chat.RoomCreationFields)
    assert body.description is not None
    assert len(body.description) == 256


# ---------------------------------------------------------------- events


def test_events_carry_their_type_and_round_trip_through_the_union() -> None:
    event = chat.RoomMemberAdded(
        id=USER, sent_date=NOW, organization_id="acme", room_id=ROOM, user_id=USER, is_owner=False
    )
    wire = msgspec.json.decode(msgspec.json.encode(event))
    assert wire == {
        "type": "ROOM_MEMBER_ADDED",
        "id": USER,
        "sentDate": "2024-08-24T14:15:22Z",
        "organizationId": "acme",
        "roomId": ROOM,
        "userId": USER,
        "isOwner": False,
    }
    assert msgspec.json.decode(msgspec.json.encode(event), type=chat.AnyChatEvent) == event


def test_room_updated_leaves_out_an_absent_description() -> None:
    event = chat.RoomUpdated(id=USER, sent_date=NOW, organization_id="o", room_id=ROOM, name="n")
    assert "description" not in msgspec.json.decode(msgspec.json.encode(event))


def test_every_event_type_of_the_note_is_in_the_union() -> None:
    assert set(chat.CHAT_EVENT_TYPES) >= {
        "ROOM_CREATED",
        "ROOM_UPDATED",
        "ROOM_DELETED",
        "ROOM_MEMBER_ADDED",
        "ROOM_MEMBER_REMOVED",
        "ROOM_OWNER_PROMOTED",
        "ROOM_OWNER_DEMOTED",
        "ROOM_MUTED",
        "ROOM_UNMUTED",
        "ROOM_HISTORY_CLEARED",
        "MEETING_CREATED",
        "MEETING_DELETED",
    }


# ---------------------------------------------------------------- subjects and streams


def test_push_and_seen_subjects_are_single_tokens_per_value() -> None:
    subject = subjects.user_push("acme.corp", "a user > *")
    assert subject.startswith("parley.push.user.")
    assert len(subject.split(".")) == 5
    assert subjects.users_seen("acme.corp", USER) != subjects.users_seen("acme", USER)
    assert subjects.user_push_msg_id("e1", USER) == f"e1.{USER}"


def test_chat_streams_are_declared_without_overlapping_subjects() -> None:
    by_name = {config.name: config for config in streams.STREAMS}
    assert by_name["PARLEY_CHAT"].subjects == ["parley.events.chat.>"]
    push = by_name["PARLEY_USER_PUSH"]
    assert push.max_msgs_per_subject == 10_000
    assert push.max_age == 7 * streams.DAY
    assert by_name["PARLEY_USERS"].max_msgs_per_subject == 1
    every = [subject for config in streams.STREAMS for subject in config.subjects or []]
    assert len(every) == len(set(every))
    # Request subjects must never be captured by a stream (the PubAck would answer the caller).
    assert not any(s.startswith(("parley.cmd.", "parley.qry.")) for s in every)


def test_canonical_uuid_lower_cases_a_uuid_and_refuses_anything_else() -> None:
    assert chat.canonical_uuid(USER.upper()) == USER
    assert chat.canonical_uuid("alice") is None
    assert chat.canonical_uuid(f" {USER}") is None


def test_every_operation_is_a_chat_body_with_a_subject() -> None:
    assert set(chat.OPERATIONS) >= {
        "listRoom",
        "getRoom",
        "insertRoom",
        "updateRoom",
        "deleteRoom",
        "updateWorkspacesRank",
        "updateChannelsRank",
        "muteRoom",
        "unmuteRoom",
        "clearRoomHistory",
        "listRoomMember",
        "insertRoomMember",
        "deleteRoomMember",
        "updateToOwner",
        "deleteOwner",
        "getUsers",
        "getUser",
        "getCapabilities",
        "getMeetingByRoomId",
        "createMeeting",
        "admit",
    }
    for name, operation in chat.OPERATIONS.items():
        subject = (subjects.chat_command if operation.kind == "cmd" else subjects.chat_query)(name)
        assert subject.startswith(f"parley.{operation.kind}.chat.")
    assert subjects.chat_query("admit") == subjects.CHAT_ADMIT


@pytest.mark.parametrize("expiration", ["", "2024-01-01", "2024-01-01T10:00:00", "2024-01-01T10:00:00Z\n"])
def test_the_schema_refuses_an_expiration_the_decoder_refuses(expiration: str) -> None:
    # `format: date-time` is not asserted by JSON Schema readers: the pattern states the form decoded.
    body = {"roomId": "6f1c4d3a-0b7e-4e2a-9d4c-1a2b3c4d5e6f", "expiration": expiration}
    schema = msgspec.json.schema(chat.MeetingCreation)
    assert not jsonschema.Draft202012Validator(schema).is_valid(body)
    with pytest.raises(msgspec.ValidationError):
        msgspec.json.decode(msgspec.json.encode(body), type=chat.MeetingCreation)


@pytest.mark.parametrize(
    "expiration", ["2024-02-29T00:00:00Z", "9999-12-31T23:59:59.999999Z", "0001-01-01T00:00:00+23:59"]
)
def test_the_schema_and_the_decoder_take_an_rfc3339_expiration(expiration: str) -> None:
    body = {"roomId": "6f1c4d3a-0b7e-4e2a-9d4c-1a2b3c4d5e6f", "expiration": expiration}
    assert jsonschema.Draft202012Validator(msgspec.json.schema(chat.MeetingCreation)).is_valid(body)
    assert msgspec.json.decode(msgspec.json.encode(body), type=chat.MeetingCreation).expiration is not None
