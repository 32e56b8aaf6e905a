"""The chat rules, on pure values: every line of `shared/notes/chat-carbonio.md` for rooms, members, users
and room meetings — each check with its status and in its order, each cascade, each event's recipients."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest
from parley_chat import domain
from parley_chat.domain import Caller, Context, Decision, DirectoryUser, Room, RoomMember, UserSettings
from parley_common.contracts import chat as api
from parley_common.errors import DomainError

ORG = "acme"
OTHER_ORG = "globex"
NOW = datetime(2024, 8, 24, 14, 15, 22, tzinfo=UTC)
EARLIER = NOW - timedelta(days=1)


def uid(n: int) -> str:
    return f"00000000-0000-4000-8000-{n:012d}"


ALICE, BOB, CAROL, DAVE, EVE = (uid(n) for n in range(1, 6))
ROOM, WORKSPACE, CHANNEL, CHANNEL2, OTHER = (uid(n) for n in range(101, 106))
MEETING = uid(201)


def ctx() -> Context:
    ids = itertools.count(9000)
    return Context(now=NOW, new_id=lambda: uid(next(ids)))


def me(user: str = ALICE, org: str = ORG) -> Caller:
    return Caller(organization_id=org, user_id=user)


def room(
    type_: api.RoomType = "group",
    members: tuple[tuple[str, bool], ...] = ((ALICE, True), (BOB, False), (CAROL, False)),
    *,
    id_: str = ROOM,
    org: str = ORG,
    **fields: Any,
) -> Room:
    return Room(
        id=id_,
        organization_id=org,
        type=type_,
        created_at=EARLIER,
        updated_at=EARLIER,
        name=fields.pop("name", None if type_ == "one_to_one" else "r"),
        members=tuple(RoomMember(user, owner) for user, owner in members),
        **fields,
    )


def workspace(members: tuple[tuple[str, bool], ...] = ((ALICE, True), (BOB, False), (CAROL, False))) -> Room:
    return room("workspace", members, id_=WORKSPACE, name="w")


def channel(id_: str = CHANNEL, rank: int = 1, **fields: Any) -> Room:
    return room("channel", (), id_=id_, parent_id=WORKSPACE, rank=rank, name=f"c{rank}", **fields)


def user(user_id: str, org: str = ORG, **fields: Any) -> DirectoryUser:
    return DirectoryUser(
        organization_id=org,
        id=user_id,
        name=f"n{user_id[-1]}",
        email=f"{user_id[-1]}@x",
        seen_at=NOW,
        **fields,
    )


def refused(status: int, call: Callable[..., Any], *args: Any, **kwargs: Any) -> DomainError:
    with pytest.raises(DomainError) as raised:
        call(*args, **kwargs)
    assert raised.value.status == status, raised.value.message
    return raised.value


def events(decision: Decision[Any]) -> list[tuple[str, tuple[str, ...]]]:
    """(type, recipients) of each event, in order."""
    return [(str(n.event.__struct_config__.tag), n.recipients) for n in decision.notices]


def wire(value: Any) -> Any:
    return msgspec.json.decode(msgspec.json.encode(value))


def creation(type_: str, *members: str, **fields: Any) -> api.RoomCreationFields:
    return api.RoomCreationFields(type=type_, members_ids=members, **fields)


def insert(
    body: api.RoomCreationFields,
    *,
    caller: Caller | None = None,
    known: tuple[str, ...] = (BOB, CAROL, DAVE, EVE),
    **kwargs: Any,
) -> Decision[api.Room]:
    return domain.decide_insert_room(caller or me(), body, ctx(), known_users=frozenset(known), **kwargs)


# ================================================================ room access (every room route)


def test_access_an_unknown_room_is_404() -> None:
    refused(404, domain.access, None, me(), ROOM)


def test_access_another_organizations_room_is_404_not_403() -> None:
    refused(404, domain.access, room(org=OTHER_ORG), me(), ROOM)


def test_access_a_non_member_is_403() -> None:
    refused(403, domain.access, room(), me(DAVE), ROOM)


def test_access_owner_required_and_caller_not_owner_is_403() -> None:
    assert domain.access(room(), me(BOB), ROOM) is not None
    refused(403, domain.access, room(), me(BOB), ROOM, owner=True)


def test_access_a_channels_members_and_owners_are_its_workspaces() -> None:
    assert domain.access(channel(), me(BOB), CHANNEL, workspace=workspace()) is not None
    assert domain.access(channel(), me(ALICE), CHANNEL, workspace=workspace(), owner=True) is not None
    refused(403, domain.access, channel(), me(BOB), CHANNEL, workspace=workspace(), owner=True)
    refused(403, domain.access, channel(), me(DAVE), CHANNEL, workspace=workspace())


# ================================================================ GET /rooms


def _user_rooms(**settings: UserSettings) -> domain.UserRooms:
    return domain.UserRooms(
        rooms=(
            room(),
            workspace(),
            channel(CHANNEL2, rank=2),
            channel(CHANNEL, rank=1),
            room(id_=OTHER, members=((BOB, True), (CAROL, False))),
            room(id_=uid(150), org=OTHER_ORG),
        ),
        settings=(
            UserSettings(room_id=ROOM, user_id=ALICE, muted=True, cleared_at=EARLIER),
            UserSettings(room_id=CHANNEL, user_id=ALICE, muted=True),
            UserSettings(room_id=ROOM, user_id=BOB, muted=False),
        ),
        workspace_ranks=(domain.WorkspaceRank(ALICE, WORKSPACE, 3), domain.WorkspaceRank(BOB, WORKSPACE, 1)),
    )


def test_list_rooms_shows_the_callers_rooms_only_channels_inside_their_workspace() -> None:
    views = domain.list_rooms(me(), _user_rooms())
    assert [v.id for v in views] == [ROOM, WORKSPACE]
    (ws,) = (v for v in views if v.id == WORKSPACE)
    assert ws.children is not None
    # Channels by their place in the workspace, each with its rank.
    assert [(c.id, c.rank) for c in ws.children] == [(CHANNEL, 1), (CHANNEL2, 2)]


def test_list_rooms_other_organizations_rooms_are_never_shown() -> None:
    views = domain.list_rooms(me(), _user_rooms())
    assert uid(150) not in [v.id for v in views]


def test_list_rooms_without_extra_fields_has_no_members_and_no_settings() -> None:
    for view in domain.list_rooms(me(), _user_rooms()):
        payload = wire(view)
        assert "members" not in payload
        assert "userSettings" not in payload
        for child in payload.get("children", []):
            assert "members" not in child
            assert "userSettings" not in child


def test_list_rooms_with_members() -> None:
    views = {v.id: v for v in domain.list_rooms(me(), _user_rooms(), {"members"})}
    assert views[ROOM].members == (
        api.Member(user_id=ALICE, owner=True),
        api.Member(user_id=BOB, owner=False),
        api.Member(user_id=CAROL, owner=False),
    )
    assert views[ROOM].user_settings is None
    children = views[WORKSPACE].children
    assert children is not None
    # A channel's members are its workspace's.
    assert children[0].members == views[WORKSPACE].members


def test_list_rooms_with_settings_the_callers_own_or_the_defaults_never_on_a_workspace() -> None:
    views = {v.id: v for v in domain.list_rooms(me(), _user_rooms(), ("settings",))}
    assert views[ROOM].user_settings == api.RoomUserSettings(muted=True, cleared_at=EARLIER)
    assert views[ROOM].members is None
    assert views[WORKSPACE].user_settings is None
    children = views[WORKSPACE].children
    assert children is not None
    assert [c.user_settings for c in children] == [
        api.RoomUserSettings(muted=True),
        api.RoomUserSettings(muted=False),
    ]


def test_list_rooms_a_workspaces_rank_is_the_callers_own() -> None:
    views = {v.id: v for v in domain.list_rooms(me(), _user_rooms())}
    assert views[WORKSPACE].rank == 3
    assert views[ROOM].rank is None
    bobs = {v.id: v for v in domain.list_rooms(me(BOB), _user_rooms())}
    assert bobs[WORKSPACE].rank == 1
    assert set(bobs) == {ROOM, WORKSPACE, OTHER}


def test_list_rooms_leaves_out_unset_fields_on_the_wire() -> None:
    one = room("one_to_one", ((ALICE, True), (BOB, True)))
    (view,) = domain.list_rooms(me(), domain.UserRooms(rooms=(one,)))
    assert set(wire(view)) == {"id", "type", "createdAt", "updatedAt"}


# ================================================================ GET /rooms/{id}


def test_get_room_unknown_404_other_organization_404_non_member_403() -> None:
    refused(404, domain.get_room, None, me(), ROOM)
    refused(404, domain.get_room, room(org=OTHER_ORG), me(), ROOM)
    refused(403, domain.get_room, room(), me(DAVE), ROOM)


def test_get_room_always_has_members_and_user_settings() -> None:
    view = domain.get_room(room(), me(BOB), ROOM)
    assert view.members is not None
    assert len(view.members) == 3
    assert view.user_settings == api.RoomUserSettings(muted=False)
    muted = domain.get_room(
        room(), me(BOB), ROOM, settings=(UserSettings(room_id=ROOM, user_id=BOB, muted=True),)
    )
    assert muted.user_settings == api.RoomUserSettings(muted=True)


def test_get_room_ignores_someone_elses_settings() -> None:
    view = domain.get_room(
        room(), me(BOB), ROOM, settings=(UserSettings(room_id=ROOM, user_id=ALICE, muted=True),)
    )
    assert view.user_settings == api.RoomUserSettings(muted=False)


def test_get_room_a_channel_shows_its_workspaces_members() -> None:
    view = domain.get_room(channel(), me(BOB), CHANNEL, workspace=workspace())
    assert view.members == tuple(api.Member(user_id=m.user_id, owner=m.owner) for m in workspace().members)
    assert view.parent_id == WORKSPACE
    assert view.rank == 1


def test_get_room_a_workspace_shows_its_channels_with_rank_and_settings() -> None:
    view = domain.get_room(
        workspace(),
        me(),
        WORKSPACE,
        channels=(channel(CHANNEL2, rank=2), channel(CHANNEL, rank=1)),
        settings=(UserSettings(room_id=CHANNEL2, user_id=ALICE, muted=True),),
        workspace_rank=2,
    )
    assert view.rank == 2
    assert view.children is not None
    assert [(c.id, c.rank, c.user_settings) for c in view.children] == [
        (CHANNEL, 1, api.RoomUserSettings(muted=False)),
        (CHANNEL2, 2, api.RoomUserSettings(muted=True)),
    ]


def test_get_room_a_workspace_without_channels_shows_empty_children() -> None:
    assert wire(domain.get_room(workspace(), me(), WORKSPACE))["children"] == []


# ================================================================ POST /rooms: 1. validation and names


def test_insert_room_name_longer_than_128_is_400() -> None:
    refused(400, insert, creation("group", BOB, CAROL, name="n" * 129))
    assert insert(creation("group", BOB, CAROL, name="n" * 128)).result.name == "n" * 128


def test_insert_room_empty_name_is_400() -> None:
    refused(400, insert, creation("group", BOB, CAROL, name=""))


def test_insert_room_description_longer_than_256_is_400() -> None:
    refused(400, insert, creation("group", BOB, CAROL, name="g", description="d" * 257))
    assert insert(creation("group", BOB, CAROL, name="g", description="")).result.description == ""


def test_insert_room_one_to_one_with_a_name_is_400() -> None:
    refused(400, insert, creation("one_to_one", BOB, name="x"))


def test_insert_room_one_to_one_with_a_description_is_400() -> None:
    refused(400, insert, creation("one_to_one", BOB, description="x"))


@pytest.mark.parametrize("type_", ["group", "temporary"])
def test_insert_room_group_or_temporary_without_a_name_is_400(type_: str) -> None:
    refused(400, insert, creation(type_, BOB, CAROL))


def test_insert_room_a_workspace_needs_no_name() -> None:
    assert insert(creation("workspace", BOB, CAROL)).result.type == "workspace"


def test_insert_room_name_rule_comes_before_the_pair_conflict() -> None:
    existing = room("one_to_one", ((ALICE, True), (BOB, True)), id_=OTHER)
    refused(400, insert, creation("one_to_one", BOB, name="x"), one_to_one=existing)


# ================================================================ POST /rooms: 2. members list, parentId


def test_insert_room_duplicated_members_is_400() -> None:
    refused(400, insert, creation("group", BOB, BOB, CAROL, name="g"))


def test_insert_room_the_caller_inside_members_is_400() -> None:
    refused(400, insert, creation("group", ALICE, BOB, CAROL, name="g"))


def test_insert_room_parent_id_on_a_non_channel_is_400() -> None:
    refused(400, insert, creation("group", BOB, CAROL, name="g", parent_id=WORKSPACE))


def test_insert_room_duplicates_come_before_unknown_members() -> None:
    refused(400, insert, creation("group", DAVE, DAVE, name="g"), known=())


def test_insert_room_caller_inside_comes_before_the_member_count() -> None:
    # Would also fail the count rule (1 other member) and the directory (alice unknown): 400 first anyway.
    error = refused(400, insert, creation("group", ALICE, name="g"), known=())
    assert "requester" in error.message


# ================================================================ POST /rooms: 3. rules of each type


@pytest.mark.parametrize("members", [(), (BOB, CAROL)])
def test_insert_room_one_to_one_needs_exactly_one_other_member(members: tuple[str, ...]) -> None:
    refused(400, insert, creation("one_to_one", *members))


def test_insert_room_one_to_one_of_the_same_pair_is_409_either_direction() -> None:
    mine = room("one_to_one", ((ALICE, True), (BOB, True)), id_=OTHER)
    refused(409, insert, creation("one_to_one", BOB), one_to_one=mine)
    theirs = room("one_to_one", ((BOB, True), (ALICE, True)), id_=OTHER)
    refused(409, insert, creation("one_to_one", BOB), one_to_one=theirs)


def test_insert_room_the_pair_conflict_comes_before_the_directory() -> None:
    mine = room("one_to_one", ((ALICE, True), (BOB, True)), id_=OTHER)
    refused(409, insert, creation("one_to_one", BOB), one_to_one=mine, known=())


def test_insert_room_a_pair_room_of_another_organization_is_no_conflict() -> None:
    theirs = room("one_to_one", ((ALICE, True), (BOB, True)), id_=OTHER, org=OTHER_ORG)
    assert insert(creation("one_to_one", BOB), one_to_one=theirs).put_rooms


@pytest.mark.parametrize("type_", ["group", "workspace"])
def test_insert_room_group_and_workspace_need_at_least_two_other_members(type_: str) -> None:
    refused(400, insert, creation(type_, BOB, name="g"))
    refused(400, insert, creation(type_, name="g"))
    assert insert(creation(type_, BOB, CAROL, name="g")).put_rooms


@pytest.mark.parametrize("type_", ["group", "workspace"])
def test_insert_room_at_most_max_group_members_others_the_caller_not_counted(type_: str) -> None:
    others = tuple(uid(1000 + n) for n in range(domain.MAX_GROUP_MEMBERS))
    decision = insert(creation(type_, *others, name="g"), known=others)
    assert len(decision.put_rooms[0].members) == domain.MAX_GROUP_MEMBERS + 1
    one_more = (*others, uid(2000))
    refused(400, insert, creation(type_, *one_more, name="g"), known=one_more)


def test_insert_room_the_member_count_comes_before_the_directory() -> None:
    refused(400, insert, creation("group", DAVE, name="g"), known=())


def test_insert_room_temporary_has_no_member_count_rule() -> None:
    decision = insert(creation("temporary", name="t"))
    assert decision.put_rooms[0].members == (RoomMember(ALICE, True),)


def test_insert_room_a_channel_takes_no_members() -> None:
    refused(400, insert, creation("channel", BOB, parent_id=WORKSPACE, name="c"), parent=workspace())


def test_insert_room_a_channel_with_members_is_400_before_its_parent_is_looked_up() -> None:
    refused(400, insert, creation("channel", BOB, parent_id=WORKSPACE, name="c"), parent=None)


def test_insert_room_a_channel_needs_a_parent() -> None:
    refused(400, insert, creation("channel", name="c"))


def test_insert_room_a_channels_parent_unknown_is_404() -> None:
    refused(404, insert, creation("channel", parent_id=WORKSPACE, name="c"), parent=None)


def test_insert_room_a_channels_parent_of_another_organization_is_404() -> None:
    theirs = msgspec.structs.replace(workspace(), organization_id=OTHER_ORG)
    refused(404, insert, creation("channel", parent_id=WORKSPACE, name="c"), parent=theirs)


def test_insert_room_a_channels_parent_needs_the_caller_as_member_403() -> None:
    refused(
        403, insert, creation("channel", parent_id=WORKSPACE, name="c"), caller=me(DAVE), parent=workspace()
    )


def test_insert_room_a_channels_parent_needs_the_caller_as_owner_403() -> None:
    refused(
        403, insert, creation("channel", parent_id=WORKSPACE, name="c"), caller=me(BOB), parent=workspace()
    )


def test_insert_room_a_channels_parent_must_be_a_workspace_400_after_the_owner_checks() -> None:
    group = room(id_=WORKSPACE)
    refused(400, insert, creation("channel", parent_id=WORKSPACE, name="c"), parent=group)
    # Not an owner of that group: the owner rule answers first.
    refused(403, insert, creation("channel", parent_id=WORKSPACE, name="c"), caller=me(BOB), parent=group)


# ================================================================ POST /rooms: 4. directory


def test_insert_room_an_unknown_member_is_404() -> None:
    refused(404, insert, creation("group", BOB, DAVE, name="g"), known=(BOB,))


def test_insert_room_a_one_to_one_with_an_unknown_user_is_404() -> None:
    refused(404, insert, creation("one_to_one", DAVE), known=())


# ================================================================ POST /rooms: the result


def test_insert_room_the_caller_is_owner_the_others_plain_members() -> None:
    decision = insert(creation("group", BOB, CAROL, name="g"))
    (created,) = decision.put_rooms
    assert created.members == (RoomMember(ALICE, True), RoomMember(BOB, False), RoomMember(CAROL, False))
    assert created.organization_id == ORG
    assert created.created_at == created.updated_at == NOW


def test_insert_room_in_a_one_to_one_both_are_owners() -> None:
    (created,) = insert(creation("one_to_one", BOB)).put_rooms
    assert created.members == (RoomMember(ALICE, True), RoomMember(BOB, True))


def test_insert_room_answers_the_room_with_members_and_user_settings() -> None:
    view = insert(creation("group", BOB, CAROL, name="g", description="d")).result
    payload = wire(view)
    assert payload["members"] == [
        {"userId": ALICE, "owner": True},
        {"userId": BOB, "owner": False},
        {"userId": CAROL, "owner": False},
    ]
    assert payload["userSettings"] == {"muted": False}
    assert payload["name"] == "g"
    assert payload["description"] == "d"
    assert "meetingId" not in payload
    assert "parentId" not in payload


def test_insert_room_a_one_to_one_has_no_name_or_description_keys() -> None:
    payload = wire(insert(creation("one_to_one", BOB)).result)
    assert "name" not in payload
    assert "description" not in payload


def test_insert_room_room_created_goes_to_every_member() -> None:
    decision = insert(creation("group", BOB, CAROL, name="g"))
    assert events(decision) == [("ROOM_CREATED", (ALICE, BOB, CAROL))]
    event = decision.notices[0].event
    assert isinstance(event, api.RoomCreated)
    assert event.room_id == decision.put_rooms[0].id
    assert event.organization_id == ORG
    assert event.sent_date == NOW


def test_insert_room_a_workspace_goes_last_in_each_members_list() -> None:
    decision = insert(creation("workspace", BOB, CAROL, name="w"), highest_workspace_ranks={ALICE: 4, BOB: 1})
    ws = decision.put_rooms[0].id
    assert decision.put_workspace_ranks == (
        domain.WorkspaceRank(ALICE, ws, 5),
        domain.WorkspaceRank(BOB, ws, 2),
        domain.WorkspaceRank(CAROL, ws, 1),
    )
    assert decision.result.rank == 5
    assert decision.result.children == ()


def test_insert_room_a_channel_goes_last_in_its_workspace_and_tells_the_workspaces_members() -> None:
    decision = insert(
        creation("channel", parent_id=WORKSPACE, name="c"),
        parent=workspace(),
        parent_channels=(channel(CHANNEL, rank=1), channel(CHANNEL2, rank=2)),
    )
    (created,) = decision.put_rooms
    assert created.type == "channel"
    assert created.parent_id == WORKSPACE
    assert created.rank == 3
    assert created.members == ()
    assert events(decision) == [("ROOM_CREATED", (ALICE, BOB, CAROL))]
    assert decision.result.members is not None
    assert [m.user_id for m in decision.result.members] == [ALICE, BOB, CAROL]
    assert decision.put_workspace_ranks == ()


def test_insert_room_the_first_channel_is_rank_1() -> None:
    decision = insert(creation("channel", parent_id=WORKSPACE, name="c"), parent=workspace())
    assert decision.put_rooms[0].rank == 1


# ================================================================ PUT /rooms/{id}


def update(
    target: Room | None, caller: Caller | None = None, workspace_: Room | None = None, **fields: Any
) -> Decision[api.Room]:
    body = api.UpdateRoom(room_id=target.id if target else ROOM, **fields)
    return domain.decide_update_room(target, caller or me(), body, ctx(), workspace=workspace_)


def test_update_room_unknown_404_other_organization_404_non_member_403() -> None:
    refused(404, update, None, name="n")
    refused(404, update, room(org=OTHER_ORG), name="n")
    refused(403, update, room(), me(DAVE), name="n")


def test_update_room_a_one_to_one_is_400_even_for_its_owners() -> None:
    refused(400, update, room("one_to_one", ((ALICE, True), (BOB, True))), description="d")


def test_update_room_a_group_with_neither_name_nor_description_is_400() -> None:
    refused(400, update, room())


def test_update_room_the_400s_come_before_the_owner_check() -> None:
    refused(400, update, room(), me(BOB))
    refused(400, update, room("one_to_one", ((ALICE, True), (BOB, False))), me(BOB), name="n")


def test_update_room_not_an_owner_is_403() -> None:
    refused(403, update, room(), me(BOB), name="n")


def test_update_room_field_limits_are_400() -> None:
    refused(400, update, room(), name="n" * 129)
    refused(400, update, room(), description="d" * 257)


def test_update_room_writes_the_change_and_tells_the_members() -> None:
    decision = update(room(description="old"), name="new")
    (updated,) = decision.put_rooms
    assert (updated.name, updated.description, updated.updated_at) == ("new", "old", NOW)
    assert events(decision) == [("ROOM_UPDATED", (ALICE, BOB, CAROL))]
    event = decision.notices[0].event
    assert isinstance(event, api.RoomUpdated)
    assert (event.room_id, event.name, event.description) == (ROOM, "new", "old")


def test_update_room_answers_without_members_and_user_settings() -> None:
    payload = wire(update(room(), name="new").result)
    assert payload["name"] == "new"
    assert "members" not in payload
    assert "userSettings" not in payload


def test_update_room_unchanged_fields_write_nothing_and_send_nothing() -> None:
    decision = update(room(name="same", description="d"), name="same", description="d")
    assert not decision.changed
    assert decision.notices == ()
    assert decision.result.updated_at == EARLIER


def test_update_room_only_the_changed_field_is_written() -> None:
    decision = update(room(name="same", description="d"), name="same", description="e")
    (updated,) = decision.put_rooms
    assert (updated.name, updated.description) == ("same", "e")


def test_update_room_a_workspace_with_nothing_to_set_changes_nothing() -> None:
    decision = update(workspace())
    assert not decision.changed
    assert decision.notices == ()


def test_update_room_a_channel_by_a_workspace_owner_tells_the_workspaces_members() -> None:
    decision = update(channel(), workspace_=workspace(), name="renamed")
    assert events(decision) == [("ROOM_UPDATED", (ALICE, BOB, CAROL))]


def test_update_room_a_channel_by_a_plain_workspace_member_is_403() -> None:
    refused(403, update, channel(), me(BOB), workspace(), name="renamed")


# ================================================================ DELETE /rooms/{id}


def delete(target: Room | None, caller: Caller | None = None, **kwargs: Any) -> Decision[None]:
    return domain.decide_delete_room(target, caller or me(), target.id if target else ROOM, ctx(), **kwargs)


def test_delete_room_unknown_is_404_not_204() -> None:
    refused(404, delete, None)


def test_delete_room_of_another_organization_is_404() -> None:
    refused(404, delete, room(org=OTHER_ORG))


def test_delete_room_non_member_403() -> None:
    refused(403, delete, room(), me(DAVE))


def test_delete_room_a_one_to_one_is_403_even_for_its_owners() -> None:
    refused(403, delete, room("one_to_one", ((ALICE, True), (BOB, True))))


def test_delete_room_not_an_owner_is_403() -> None:
    refused(403, delete, room(), me(BOB))


def test_delete_room_deletes_memberships_and_settings_and_tells_the_members() -> None:
    decision = delete(room())
    assert decision.delete_rooms == (ROOM,)
    assert decision.delete_settings_of_rooms == (ROOM,)
    assert decision.delete_meetings == ()
    assert decision.end_conferences == ()
    assert events(decision) == [("ROOM_DELETED", (ALICE, BOB, CAROL))]


def test_delete_room_deletes_its_meeting_and_ends_the_conference() -> None:
    decision = delete(room(meeting_id=MEETING))
    assert decision.delete_meetings == (MEETING,)
    assert decision.end_conferences == (MEETING,)
    assert events(decision) == [
        ("MEETING_DELETED", (ALICE, BOB, CAROL)),
        ("ROOM_DELETED", (ALICE, BOB, CAROL)),
    ]
    meeting_deleted = decision.notices[0].event
    assert isinstance(meeting_deleted, api.MeetingDeleted)
    assert meeting_deleted.meeting_id == MEETING


def test_delete_room_a_workspace_takes_its_channels_their_meetings_and_every_rank() -> None:
    channel_meeting = uid(202)
    decision = delete(
        workspace(),
        channels=(channel(CHANNEL2, rank=2), channel(CHANNEL, rank=1, meeting_id=channel_meeting)),
    )
    assert set(decision.delete_rooms) == {WORKSPACE, CHANNEL, CHANNEL2}
    assert set(decision.delete_settings_of_rooms) == {WORKSPACE, CHANNEL, CHANNEL2}
    assert decision.delete_ranks_of_workspaces == (WORKSPACE,)
    assert decision.end_conferences == (channel_meeting,)
    members = (ALICE, BOB, CAROL)
    assert events(decision) == [
        ("MEETING_DELETED", members),
        ("ROOM_DELETED", members),
        ("ROOM_DELETED", members),
        ("ROOM_DELETED", members),
    ]
    deleted = [n.event.room_id for n in decision.notices if isinstance(n.event, api.RoomDeleted)]
    assert deleted == [CHANNEL, CHANNEL2, WORKSPACE]


def test_delete_room_a_workspace_ignores_rooms_that_are_not_its_channels() -> None:
    stranger = msgspec.structs.replace(channel(CHANNEL2), parent_id=OTHER)
    decision = delete(workspace(), channels=(stranger,))
    assert decision.delete_rooms == (WORKSPACE,)


def test_delete_room_a_workspace_owner_may_delete_a_channel() -> None:
    decision = delete(channel(), workspace=workspace())
    assert decision.delete_rooms == (CHANNEL,)
    assert decision.delete_ranks_of_workspaces == ()
    assert events(decision) == [("ROOM_DELETED", (ALICE, BOB, CAROL))]


def test_delete_room_a_plain_workspace_member_may_not_delete_a_channel() -> None:
    refused(403, delete, channel(), me(BOB), workspace=workspace())


# ================================================================ mute, unmute


def mute(
    target: Room | None,
    muted: bool,
    settings: UserSettings | None = None,
    caller: Caller | None = None,
    **kw: Any,
) -> Decision[None]:
    return domain.decide_mute(target, caller or me(), ROOM, settings, ctx(), muted=muted, **kw)


@pytest.mark.parametrize("muted", [True, False])
def test_mute_unknown_404_other_organization_404_non_member_403(muted: bool) -> None:
    refused(404, mute, None, muted)
    refused(404, mute, room(org=OTHER_ORG), muted)
    refused(403, mute, room(), muted, caller=me(DAVE))


@pytest.mark.parametrize("muted", [True, False])
def test_mute_a_workspace_is_400(muted: bool) -> None:
    refused(400, mute, workspace(), muted)


def test_mute_a_workspace_non_member_is_403_before_the_type() -> None:
    refused(403, mute, workspace(), True, caller=me(DAVE))


def test_mute_writes_the_callers_settings_and_tells_the_caller_only() -> None:
    decision = mute(room(), True, caller=me(BOB))
    assert decision.put_settings == (UserSettings(room_id=ROOM, user_id=BOB, muted=True),)
    assert events(decision) == [("ROOM_MUTED", (BOB,))]


def test_mute_again_changes_nothing_and_sends_nothing() -> None:
    decision = mute(room(), True, UserSettings(room_id=ROOM, user_id=ALICE, muted=True))
    assert not decision.changed
    assert decision.notices == ()


def test_mute_keeps_the_cleared_date() -> None:
    decision = mute(room(), True, UserSettings(room_id=ROOM, user_id=ALICE, cleared_at=EARLIER))
    assert decision.put_settings == (
        UserSettings(room_id=ROOM, user_id=ALICE, muted=True, cleared_at=EARLIER),
    )


def test_unmute_a_muted_room_tells_the_caller_only() -> None:
    decision = mute(room(), False, UserSettings(room_id=ROOM, user_id=ALICE, muted=True))
    assert decision.put_settings == (UserSettings(room_id=ROOM, user_id=ALICE, muted=False),)
    assert events(decision) == [("ROOM_UNMUTED", (ALICE,))]


def test_unmute_a_room_that_is_not_muted_changes_nothing() -> None:
    assert mute(room(), False).notices == ()
    assert not mute(room(), False, UserSettings(room_id=ROOM, user_id=ALICE)).changed


@pytest.mark.parametrize("type_", ["group", "one_to_one", "temporary"])
def test_mute_these_room_types_can_be_muted(type_: api.RoomType) -> None:
    assert events(mute(room(type_), True)) == [("ROOM_MUTED", (ALICE,))]


def test_mute_a_channel_can_be_muted_by_a_workspace_member() -> None:
    decision = domain.decide_mute(channel(), me(BOB), CHANNEL, None, ctx(), muted=True, workspace=workspace())
    assert decision.put_settings == (UserSettings(room_id=CHANNEL, user_id=BOB, muted=True),)
    assert events(decision) == [("ROOM_MUTED", (BOB,))]


# ================================================================ clear


def clear(
    target: Room | None, settings: UserSettings | None = None, caller: Caller | None = None, **kw: Any
) -> Decision[api.ClearedDate]:
    return domain.decide_clear(target, caller or me(), ROOM, settings, ctx(), **kw)


def test_clear_unknown_404_other_organization_404_non_member_403() -> None:
    refused(404, clear, None)
    refused(404, clear, room(org=OTHER_ORG))
    refused(403, clear, room(), caller=me(DAVE))


@pytest.mark.parametrize("type_", ["group", "one_to_one", "temporary", "workspace"])
def test_clear_any_room_type_answers_now_and_tells_the_caller_only(type_: api.RoomType) -> None:
    decision = clear(room(type_), caller=me(BOB))
    assert decision.result == api.ClearedDate(cleared_at=NOW)
    assert decision.put_settings == (UserSettings(room_id=ROOM, user_id=BOB, cleared_at=NOW),)
    assert events(decision) == [("ROOM_HISTORY_CLEARED", (BOB,))]
    event = decision.notices[0].event
    assert isinstance(event, api.RoomHistoryCleared)
    assert (event.room_id, event.cleared_at) == (ROOM, NOW)


def test_clear_every_call_moves_it_to_now_and_keeps_mute() -> None:
    decision = clear(room(), UserSettings(room_id=ROOM, user_id=ALICE, muted=True, cleared_at=EARLIER))
    assert decision.put_settings == (UserSettings(room_id=ROOM, user_id=ALICE, muted=True, cleared_at=NOW),)


def test_clear_a_channel_via_its_workspace() -> None:
    decision = domain.decide_clear(channel(), me(CAROL), CHANNEL, None, ctx(), workspace=workspace())
    assert events(decision) == [("ROOM_HISTORY_CLEARED", (CAROL,))]


# ================================================================ PUT /rooms/workspaces/rank


W1, W2, W3 = uid(301), uid(302), uid(303)


def my_workspaces(*ids: str) -> tuple[Room, ...]:
    return tuple(room("workspace", ((ALICE, True), (BOB, False)), id_=i) for i in ids)


def ws_ranks(*pairs: tuple[str, int]) -> api.UpdateWorkspacesRank:
    return api.UpdateWorkspacesRank(ranks=tuple(api.RoomRank(room_id=r, rank=n) for r, n in pairs))


def test_workspaces_rank_duplicated_room_is_400() -> None:
    refused(400, domain.decide_workspaces_rank, me(), ws_ranks((W1, 1), (W1, 2)), my_workspaces(W1, W2))


@pytest.mark.parametrize("ranks", [(0, 1), (1, 3), (2, 2), (1, 1)])
def test_workspaces_rank_ranks_not_exactly_1_to_n_is_400(ranks: tuple[int, int]) -> None:
    body = ws_ranks((W1, ranks[0]), (W2, ranks[1]))
    refused(400, domain.decide_workspaces_rank, me(), body, my_workspaces(W1, W2))


def test_workspaces_rank_in_any_order_passes() -> None:
    decision = domain.decide_workspaces_rank(me(), ws_ranks((W2, 1), (W1, 2)), my_workspaces(W1, W2))
    assert set(decision.put_workspace_ranks) == {
        domain.WorkspaceRank(ALICE, W2, 1),
        domain.WorkspaceRank(ALICE, W1, 2),
    }
    assert decision.notices == ()


def test_workspaces_rank_count_not_the_callers_workspace_count_is_400() -> None:
    refused(400, domain.decide_workspaces_rank, me(), ws_ranks((W1, 1)), my_workspaces(W1, W2))
    refused(400, domain.decide_workspaces_rank, me(), ws_ranks((W1, 1), (W2, 2)), my_workspaces(W1))


def test_workspaces_rank_a_room_that_is_not_one_of_the_callers_workspaces_is_400() -> None:
    refused(400, domain.decide_workspaces_rank, me(), ws_ranks((W1, 1), (W3, 2)), my_workspaces(W1, W2))


def test_workspaces_rank_a_group_is_not_a_workspace() -> None:
    rooms = (*my_workspaces(W1), room(id_=W2))
    refused(400, domain.decide_workspaces_rank, me(), ws_ranks((W1, 1), (W2, 2)), rooms)


def test_workspaces_rank_a_workspace_the_caller_is_not_in_does_not_count() -> None:
    rooms = (*my_workspaces(W1), room("workspace", ((BOB, True), (CAROL, False)), id_=W2))
    refused(400, domain.decide_workspaces_rank, me(), ws_ranks((W1, 1), (W2, 2)), rooms)
    assert domain.decide_workspaces_rank(me(), ws_ranks((W1, 1)), rooms).put_workspace_ranks


def test_workspaces_rank_another_organizations_workspace_does_not_count() -> None:
    rooms = (*my_workspaces(W1), room("workspace", ((ALICE, True),), id_=W2, org=OTHER_ORG))
    refused(400, domain.decide_workspaces_rank, me(), ws_ranks((W1, 1), (W2, 2)), rooms)


def test_workspaces_rank_no_workspaces_and_an_empty_list_passes() -> None:
    assert domain.decide_workspaces_rank(me(), ws_ranks(), ()).put_workspace_ranks == ()


# ================================================================ PUT /rooms/workspaces/{id}/channels/rank


def ch_ranks(*pairs: tuple[str, int]) -> api.UpdateChannelsRank:
    return api.UpdateChannelsRank(
        workspace_id=WORKSPACE, ranks=tuple(api.RoomRank(room_id=r, rank=n) for r, n in pairs)
    )


CHANNELS = (channel(CHANNEL, rank=1), channel(CHANNEL2, rank=2))


def test_channels_rank_ranks_not_1_to_n_is_400_before_the_workspace_is_looked_up() -> None:
    refused(400, domain.decide_channels_rank, None, me(), ch_ranks((CHANNEL, 0), (CHANNEL2, 1)), CHANNELS)
    refused(400, domain.decide_channels_rank, None, me(DAVE), ch_ranks((CHANNEL, 1), (CHANNEL2, 3)), CHANNELS)


def test_channels_rank_a_duplicated_channel_is_400_before_the_workspace_is_looked_up() -> None:
    refused(400, domain.decide_channels_rank, None, me(), ch_ranks((CHANNEL, 1), (CHANNEL, 2)), CHANNELS)


def test_channels_rank_unknown_workspace_404_other_organization_404() -> None:
    body = ch_ranks((CHANNEL, 1), (CHANNEL2, 2))
    refused(404, domain.decide_channels_rank, None, me(), body, CHANNELS)
    theirs = msgspec.structs.replace(workspace(), organization_id=OTHER_ORG)
    refused(404, domain.decide_channels_rank, theirs, me(), body, CHANNELS)


def test_channels_rank_non_member_403_not_owner_403() -> None:
    body = ch_ranks((CHANNEL, 1), (CHANNEL2, 2))
    refused(403, domain.decide_channels_rank, workspace(), me(DAVE), body, CHANNELS)
    refused(403, domain.decide_channels_rank, workspace(), me(BOB), body, CHANNELS)


def test_channels_rank_a_count_that_is_not_the_channel_count_is_400() -> None:
    refused(400, domain.decide_channels_rank, workspace(), me(), ch_ranks((CHANNEL, 1)), CHANNELS)


def test_channels_rank_a_channel_left_out_is_400() -> None:
    body = ch_ranks((CHANNEL, 1), (OTHER, 2))
    refused(400, domain.decide_channels_rank, workspace(), me(), body, CHANNELS)


def test_channels_rank_rewrites_each_channels_place_without_an_event() -> None:
    decision = domain.decide_channels_rank(workspace(), me(), ch_ranks((CHANNEL, 2), (CHANNEL2, 1)), CHANNELS)
    assert {(r.id, r.rank) for r in decision.put_rooms} == {(CHANNEL, 2), (CHANNEL2, 1)}
    assert decision.notices == ()


def test_channels_rank_the_rooms_type_is_not_checked_a_group_with_an_empty_list_passes() -> None:
    group = room(id_=WORKSPACE)
    decision = domain.decide_channels_rank(group, me(), ch_ranks(), ())
    assert decision.put_rooms == ()


# ================================================================ GET /rooms/{id}/members


def test_list_members_unknown_404_other_organization_404_non_member_403() -> None:
    refused(404, domain.list_members, None, me(), ROOM)
    refused(404, domain.list_members, room(org=OTHER_ORG), me(), ROOM)
    refused(403, domain.list_members, room(), me(DAVE), ROOM)


def test_list_members_answers_user_id_and_owner() -> None:
    assert wire(domain.list_members(room(), me(BOB), ROOM)) == [
        {"userId": ALICE, "owner": True},
        {"userId": BOB, "owner": False},
        {"userId": CAROL, "owner": False},
    ]


def test_list_members_a_channel_answers_its_workspaces_members() -> None:
    members = domain.list_members(channel(), me(BOB), CHANNEL, workspace=workspace())
    assert [m.user_id for m in members] == [ALICE, BOB, CAROL]


# ================================================================ POST /rooms/{id}/members


def add(
    target: Room | None,
    user_id: str = DAVE,
    *,
    caller: Caller | None = None,
    owner: bool = False,
    history_cleared: bool = False,
    directory: DirectoryUser | str | None = "default",
    **kw: Any,
) -> Decision[api.MemberInserted]:
    body = api.InsertRoomMember(
        room_id=target.id if target else ROOM, user_id=user_id, owner=owner, history_cleared=history_cleared
    )
    found = user(user_id) if directory == "default" else directory
    assert not isinstance(found, str)
    return domain.decide_insert_member(target, caller or me(), body, ctx(), user=found, **kw)


def test_insert_member_an_unknown_user_is_404_before_the_room_is_looked_at() -> None:
    refused(404, add, None, directory=None)
    refused(404, add, room(), caller=me(EVE), directory=None)


def test_insert_member_a_user_of_another_organization_is_unknown() -> None:
    refused(404, add, room(), directory=user(DAVE, OTHER_ORG))


def test_insert_member_unknown_room_404_other_organization_404_non_member_403_not_owner_403() -> None:
    refused(404, add, None)
    refused(404, add, room(org=OTHER_ORG))
    refused(403, add, room(), caller=me(EVE))
    refused(403, add, room(), caller=me(BOB))


def test_insert_member_a_one_to_one_is_400() -> None:
    refused(400, add, room("one_to_one", ((ALICE, True), (BOB, True))))


def test_insert_member_a_channel_is_400_for_a_workspace_owner() -> None:
    refused(400, add, channel(), workspace=workspace())


def test_insert_member_a_channel_for_a_plain_workspace_member_is_403() -> None:
    refused(403, add, channel(), caller=me(BOB), workspace=workspace())


def _full(type_: api.RoomType) -> Room:
    others = tuple((uid(1000 + n), False) for n in range(domain.MAX_GROUP_MEMBERS - 1))
    return room(type_, ((ALICE, True), *others))


def test_insert_member_a_group_holding_max_members_all_counted_is_400() -> None:
    full = _full("group")
    assert len(full.members) == domain.MAX_GROUP_MEMBERS
    refused(400, add, full)
    one_less = msgspec.structs.replace(full, members=full.members[:-1])
    assert add(one_less).put_rooms


@pytest.mark.parametrize("type_", ["workspace", "temporary"])
def test_insert_member_only_groups_are_capped(type_: api.RoomType) -> None:
    assert add(_full(type_)).put_rooms


def test_insert_member_already_a_member_is_400() -> None:
    refused(400, add, room(), BOB)


def test_insert_member_the_cap_comes_before_already_a_member() -> None:
    full = _full("group")
    error = refused(400, add, full, full.members[1].user_id)
    assert "at most" in error.message


def test_insert_member_adds_them_honouring_owner_and_tells_every_member_newcomer_included() -> None:
    decision = add(room(), owner=True)
    (updated,) = decision.put_rooms
    assert updated.member(DAVE) == RoomMember(DAVE, True)
    assert decision.result == api.MemberInserted(user_id=DAVE, owner=True)
    assert wire(decision.result) == {"userId": DAVE, "owner": True}
    assert events(decision) == [("ROOM_MEMBER_ADDED", (ALICE, BOB, CAROL, DAVE))]
    event = decision.notices[0].event
    assert isinstance(event, api.RoomMemberAdded)
    assert (event.room_id, event.user_id, event.is_owner) == (ROOM, DAVE, True)
    assert decision.put_settings == ()


def test_insert_member_history_cleared_sets_the_newcomers_cleared_at() -> None:
    decision = add(room(), history_cleared=True)
    assert decision.result == api.MemberInserted(user_id=DAVE, owner=False, cleared_at=NOW)
    assert decision.put_settings == (UserSettings(room_id=ROOM, user_id=DAVE, cleared_at=NOW),)


def test_insert_member_in_a_workspace_the_newcomer_goes_last_in_their_list() -> None:
    decision = add(workspace(), highest_workspace_rank=3)
    assert decision.put_workspace_ranks == (domain.WorkspaceRank(DAVE, WORKSPACE, 4),)


def test_insert_member_in_a_group_no_rank() -> None:
    assert add(room()).put_workspace_ranks == ()


# ================================================================ DELETE /rooms/{id}/members/{userId}


def remove(target: Room | None, user_id: str, caller: Caller | None = None, **kw: Any) -> Decision[None]:
    body = api.MemberRef(room_id=target.id if target else ROOM, user_id=user_id)
    return domain.decide_remove_member(target, caller or me(), body, ctx(), **kw)


def test_remove_member_unknown_404_other_organization_404() -> None:
    refused(404, remove, None, BOB)
    refused(404, remove, room(org=OTHER_ORG), BOB)


def test_remove_member_caller_not_a_member_403() -> None:
    refused(403, remove, room(), BOB, me(DAVE))
    refused(403, remove, room(), DAVE, me(DAVE))


def test_remove_member_removing_someone_else_needs_an_owner_403() -> None:
    refused(403, remove, room(), CAROL, me(BOB))


def test_remove_member_the_owner_check_comes_before_not_a_member() -> None:
    refused(403, remove, room(), DAVE, me(BOB))


def test_remove_member_a_one_to_one_is_400() -> None:
    refused(400, remove, room("one_to_one", ((ALICE, True), (BOB, True))), BOB)


def test_remove_member_a_channel_is_400() -> None:
    refused(400, remove, channel(), BOB, workspace=workspace())
    refused(400, remove, channel(), BOB, me(BOB), workspace=workspace())


def test_remove_member_a_target_that_is_not_a_member_is_404() -> None:
    refused(404, remove, room(), DAVE)


def test_remove_member_the_only_owner_leaving_while_others_remain_is_400() -> None:
    refused(400, remove, room(), ALICE)


def test_remove_member_an_owner_may_leave_when_another_owner_remains() -> None:
    decision = remove(room(members=((ALICE, True), (BOB, True), (CAROL, False))), ALICE)
    assert decision.put_rooms[0].member_ids == (BOB, CAROL)


def test_remove_member_anyone_may_leave() -> None:
    decision = remove(room(), BOB, me(BOB))
    assert decision.put_rooms[0].member_ids == (ALICE, CAROL)


def test_remove_member_tells_every_member_the_removed_one_included() -> None:
    decision = remove(room(), CAROL)
    assert decision.put_rooms[0].member_ids == (ALICE, BOB)
    assert events(decision) == [("ROOM_MEMBER_REMOVED", (ALICE, BOB, CAROL))]
    event = decision.notices[0].event
    assert isinstance(event, api.RoomMemberRemoved)
    assert (event.room_id, event.user_id) == (ROOM, CAROL)


def test_remove_member_drops_the_leavers_settings() -> None:
    decision = remove(room(), CAROL)
    assert decision.delete_settings == (domain.SettingsKey(ROOM, CAROL),)
    assert decision.delete_workspace_ranks == ()
    assert decision.delete_rooms == ()


def test_remove_member_drops_the_leaver_from_the_rooms_meeting() -> None:
    decision = remove(room(meeting_id=MEETING), CAROL)
    assert decision.remove_from_conferences == (domain.ConferenceMember(MEETING, CAROL),)
    assert decision.end_conferences == ()


def test_remove_member_leaving_a_workspace_drops_the_rank_and_the_channel_settings() -> None:
    decision = remove(workspace(), CAROL, channels=(channel(CHANNEL, meeting_id=MEETING),))
    assert decision.delete_workspace_ranks == (domain.RankKey(CAROL, WORKSPACE),)
    assert set(decision.delete_settings) == {
        domain.SettingsKey(WORKSPACE, CAROL),
        domain.SettingsKey(CHANNEL, CAROL),
    }
    assert decision.remove_from_conferences == (domain.ConferenceMember(MEETING, CAROL),)


def test_remove_member_the_last_member_leaving_deletes_the_room() -> None:
    decision = remove(room(members=((ALICE, True),), meeting_id=MEETING), ALICE)
    assert decision.put_rooms == ()
    assert decision.delete_rooms == (ROOM,)
    assert decision.delete_settings_of_rooms == (ROOM,)
    assert decision.delete_meetings == (MEETING,)
    assert decision.end_conferences == (MEETING,)
    assert events(decision) == [
        ("ROOM_MEMBER_REMOVED", (ALICE,)),
        ("MEETING_DELETED", (ALICE,)),
        ("ROOM_DELETED", (ALICE,)),
    ]


def test_remove_member_the_last_member_of_a_workspace_takes_its_channels() -> None:
    only = room("workspace", ((ALICE, True),), id_=WORKSPACE)
    decision = remove(only, ALICE, channels=(channel(),))
    assert set(decision.delete_rooms) == {WORKSPACE, CHANNEL}
    assert decision.delete_ranks_of_workspaces == (WORKSPACE,)


def test_remove_member_the_only_owner_alone_may_leave() -> None:
    decision = remove(room("temporary", ((ALICE, True),)), ALICE)
    assert decision.delete_rooms == (ROOM,)


# ================================================================ PUT / DELETE members/{userId}/owner


def owner(
    target: Room | None, user_id: str, promote: bool, caller: Caller | None = None, **kw: Any
) -> Decision[None]:
    body = api.MemberRef(room_id=target.id if target else ROOM, user_id=user_id)
    return domain.decide_owner(target, caller or me(), body, ctx(), promote=promote, **kw)


@pytest.mark.parametrize("promote", [True, False])
def test_owner_change_on_oneself_is_400_before_the_room_is_looked_at(promote: bool) -> None:
    refused(400, owner, None, ALICE, promote)
    refused(400, owner, room(), DAVE, promote, me(DAVE))


@pytest.mark.parametrize("promote", [True, False])
def test_owner_change_unknown_404_other_organization_404_non_member_403_not_owner_403(promote: bool) -> None:
    refused(404, owner, None, BOB, promote)
    refused(404, owner, room(org=OTHER_ORG), BOB, promote)
    refused(403, owner, room(), BOB, promote, me(DAVE))
    refused(403, owner, room(), CAROL, promote, me(BOB))


@pytest.mark.parametrize("promote", [True, False])
def test_owner_change_in_a_one_to_one_is_400(promote: bool) -> None:
    refused(400, owner, room("one_to_one", ((ALICE, True), (BOB, True))), BOB, promote)


@pytest.mark.parametrize("promote", [True, False])
def test_owner_change_in_a_channel_is_400(promote: bool) -> None:
    refused(400, owner, channel(), BOB, promote, workspace=workspace())


@pytest.mark.parametrize("promote", [True, False])
def test_owner_change_a_target_that_is_not_a_member_is_403_not_404(promote: bool) -> None:
    refused(403, owner, room(), DAVE, promote)


def test_owner_promote_writes_it_and_tells_every_member() -> None:
    decision = owner(room(), BOB, True)
    assert decision.put_rooms[0].member(BOB) == RoomMember(BOB, True)
    assert events(decision) == [("ROOM_OWNER_PROMOTED", (ALICE, BOB, CAROL))]
    event = decision.notices[0].event
    assert isinstance(event, api.RoomOwnerPromoted)
    assert (event.room_id, event.user_id) == (ROOM, BOB)


def test_owner_promote_is_not_idempotence_checked_every_call_sends_the_event() -> None:
    decision = owner(room(members=((ALICE, True), (BOB, True))), BOB, True)
    assert events(decision) == [("ROOM_OWNER_PROMOTED", (ALICE, BOB))]


def test_owner_demote_writes_it_and_tells_every_member() -> None:
    decision = owner(room(members=((ALICE, True), (BOB, True), (CAROL, False))), BOB, False)
    assert decision.put_rooms[0].member(BOB) == RoomMember(BOB, False)
    assert events(decision) == [("ROOM_OWNER_DEMOTED", (ALICE, BOB, CAROL))]


def test_owner_demote_a_plain_member_still_sends_the_event() -> None:
    assert events(owner(room(), CAROL, False)) == [("ROOM_OWNER_DEMOTED", (ALICE, BOB, CAROL))]


def test_owner_demote_down_to_no_other_owner_is_allowed() -> None:
    decision = owner(room(members=((ALICE, True), (BOB, True))), BOB, False)
    assert [m.owner for m in decision.put_rooms[0].members] == [True, False]


# ================================================================ users


def test_get_user_never_seen_is_404() -> None:
    refused(404, domain.get_user, None, me(), DAVE)


def test_get_user_of_another_organization_is_404() -> None:
    refused(404, domain.get_user, user(DAVE, OTHER_ORG), me(), DAVE)


def test_get_user_answers_the_user_shape() -> None:
    assert wire(domain.get_user(user(DAVE), me(), DAVE)) == {
        "id": DAVE,
        "email": "4@x",
        "name": "n4",
        "type": "internal",
    }
    assert domain.get_user(user(DAVE, type="guest"), me(), DAVE).type == "guest"


@pytest.mark.parametrize("count", [0, 11])
def test_get_users_none_or_more_than_10_ids_is_400(count: int) -> None:
    ids = [uid(500 + n) for n in range(count)]
    refused(400, domain.get_users, me(), ids, ())


def test_get_users_10_ids_pass_unknown_ones_silently_left_out() -> None:
    ids = [uid(500 + n) for n in range(10)]
    assert domain.get_users(me(), ids, ()) == ()
    found = domain.get_users(me(), [BOB, DAVE, CAROL], (user(CAROL), user(BOB), user(DAVE, OTHER_ORG)))
    assert [u.id for u in found] == [BOB, CAROL]


def test_get_users_a_repeated_id_is_answered_once() -> None:
    assert len(domain.get_users(me(), [BOB, BOB], (user(BOB),))) == 1


def test_capabilities_are_the_notes_values() -> None:
    assert wire(domain.CAPABILITIES) == {
        "canSeeMessageReads": True,
        "canSeeUsersPresence": True,
        "canVideoCall": True,
        "canVideoCallRecord": True,
        "canUseVirtualBackground": True,
        "editMessageTimeLimitInMinutes": 10,
        "deleteMessageTimeLimitInMinutes": 10,
        "maxGroupMembers": 128,
        "maxRoomImageSizeInKb": 512,
        "maxUserImageSizeInKb": 512,
    }


def test_record_seen_a_new_user_enters_the_directory() -> None:
    seen = api.UserSeen(organization_id=ORG, user_id=DAVE, name="Dave", email="d@x", type="guest")
    entry = domain.record_seen(seen, None, NOW)
    assert (entry.organization_id, entry.id, entry.name, entry.email, entry.type) == (
        ORG,
        DAVE,
        "Dave",
        "d@x",
        "guest",
    )


def test_record_seen_a_report_without_name_keeps_the_known_one() -> None:
    seen = api.UserSeen(organization_id=ORG, user_id=DAVE)
    entry = domain.record_seen(seen, user(DAVE), NOW + timedelta(hours=1))
    assert (entry.name, entry.email, entry.seen_at) == ("n4", "4@x", NOW + timedelta(hours=1))


# ================================================================ room meetings


def create_meeting(
    target: Room | None, caller: Caller | None = None, **kw: Any
) -> Decision[domain.RoomMeeting]:
    fields = {k: kw.pop(k) for k in ("name", "meeting_type") if k in kw}
    body = api.MeetingCreation(room_id=target.id if target else ROOM, **fields)
    return domain.decide_create_meeting(target, caller or me(), body, ctx(), **kw)


def test_create_meeting_unknown_404_other_organization_404_non_member_403() -> None:
    refused(404, create_meeting, None)
    refused(404, create_meeting, room(org=OTHER_ORG))
    refused(403, create_meeting, room(), me(DAVE))


def test_create_meeting_a_room_that_has_one_is_409() -> None:
    refused(409, create_meeting, room(meeting_id=MEETING))


def test_create_meeting_any_member_sets_the_rooms_meeting_and_tells_the_members() -> None:
    decision = create_meeting(room(name="team"), me(BOB))
    meeting = decision.result
    assert (meeting.room_id, meeting.name, meeting.meeting_type, meeting.created_at) == (
        ROOM,
        "team",
        "permanent",
        NOW,
    )
    assert meeting.organization_id == ORG
    assert decision.put_meetings == (meeting,)
    assert decision.put_rooms[0].meeting_id == meeting.id
    assert events(decision) == [("MEETING_CREATED", (ALICE, BOB, CAROL))]
    event = decision.notices[0].event
    assert isinstance(event, api.MeetingCreated)
    assert (event.meeting_id, event.room_id) == (meeting.id, ROOM)


def test_create_meeting_with_a_name_and_type() -> None:
    meeting = create_meeting(room(), name="standup", meeting_type="SCHEDULED").result
    assert (meeting.name, meeting.meeting_type) == ("standup", "scheduled")


def test_create_meeting_of_a_one_to_one_has_an_empty_name() -> None:
    assert create_meeting(room("one_to_one", ((ALICE, True), (BOB, True)))).result.name == ""


def test_create_meeting_of_a_channel_tells_the_workspaces_members() -> None:
    decision = create_meeting(channel(), me(CAROL), workspace=workspace())
    assert events(decision) == [("MEETING_CREATED", (ALICE, BOB, CAROL))]


def _meeting(room_id: str = ROOM) -> domain.RoomMeeting:
    return domain.RoomMeeting(
        id=MEETING, organization_id=ORG, room_id=room_id, name="m", meeting_type="permanent", created_at=NOW
    )


def test_get_meeting_unknown_404_non_member_403_none_404() -> None:
    refused(404, domain.meeting_of, None, me(), ROOM, _meeting())
    refused(404, domain.meeting_of, room(org=OTHER_ORG, meeting_id=MEETING), me(), ROOM, _meeting())
    refused(403, domain.meeting_of, room(meeting_id=MEETING), me(DAVE), ROOM, _meeting())
    refused(404, domain.meeting_of, room(), me(), ROOM, None)
    refused(404, domain.meeting_of, room(meeting_id=MEETING), me(), ROOM, None)


def test_get_meeting_answers_the_meeting_shape() -> None:
    meeting = domain.meeting_of(room(meeting_id=MEETING), me(BOB), ROOM, _meeting())
    participant = api.MeetingParticipant(
        user_id=BOB,
        queue_id="bob-laptop",
        audio_stream_enabled=True,
        video_stream_enabled=False,
        screen_stream_enabled=False,
        joined_at=NOW,
    )
    payload = wire(domain.meeting_view(meeting, participants=(participant,), active=True, started_at=NOW))
    assert payload == {
        "id": MEETING,
        "name": "m",
        "roomId": ROOM,
        "active": True,
        "participants": [
            {
                "userId": BOB,
                "queueId": "bob-laptop",
                "audioStreamEnabled": True,
                "videoStreamEnabled": False,
                "screenStreamEnabled": False,
                "joinedAt": "2024-08-24T14:15:22Z",
            }
        ],
        "createdAt": "2024-08-24T14:15:22Z",
        "startedAt": "2024-08-24T14:15:22Z",
        "meetingType": "permanent",
    }


def test_a_meeting_before_it_starts_is_inactive_without_participants_or_start() -> None:
    payload = wire(domain.meeting_view(_meeting()))
    assert payload["active"] is False
    assert payload["participants"] == []
    assert "startedAt" not in payload


def admission(user_id: str, org: str = ORG, resource: str = ROOM) -> api.AdmissionQuery:
    return api.AdmissionQuery(organization_id=org, user_id=user_id, resource=resource)


def test_admits_members_only() -> None:
    assert domain.admits(room(meeting_id=MEETING), admission(BOB))
    assert not domain.admits(room(meeting_id=MEETING), admission(DAVE))


def test_admits_no_one_of_another_organization_or_to_an_unknown_room() -> None:
    assert not domain.admits(room(meeting_id=MEETING), admission(BOB, OTHER_ORG))
    assert not domain.admits(None, admission(BOB))
    assert not domain.admits(room(meeting_id=MEETING), admission(BOB, resource=OTHER))


def test_admits_a_channels_workspace_members() -> None:
    assert domain.admits(
        channel(meeting_id=MEETING), admission(CAROL, resource=CHANNEL), workspace=workspace()
    )
    assert not domain.admits(
        channel(meeting_id=MEETING), admission(DAVE, resource=CHANNEL), workspace=workspace()
    )


def test_admits_a_removed_member_no_more() -> None:
    before = room(meeting_id=MEETING)
    (after,) = remove(before, CAROL).put_rooms
    assert domain.admits(before, admission(CAROL))
    assert not domain.admits(after, admission(CAROL))


# ================================================================ events: shared shape


def test_every_event_has_a_fresh_id_the_time_and_the_organization() -> None:
    decision = delete(room(meeting_id=MEETING))
    ids = [n.event.id for n in decision.notices]
    assert len(set(ids)) == len(ids)
    assert all(n.event.sent_date == NOW and n.event.organization_id == ORG for n in decision.notices)


def test_events_round_trip_through_the_wire_union() -> None:
    for notice in insert(creation("group", BOB, CAROL, name="g")).notices:
        again = msgspec.json.decode(msgspec.json.encode(notice.event), type=api.AnyChatEvent)
        assert again == notice.event


# ---------------------------------------------------------------- messages


def stored(
    message_id: str, *, user_id: str = ALICE, sent_at: datetime = NOW, room_id: str = ROOM
) -> domain.StoredMessage:
    return domain.StoredMessage(
        id=message_id, organization_id=ORG, room_id=room_id, user_id=user_id, text="t", sent_at=sent_at
    )


def test_a_message_goes_once_to_the_room_subject_for_every_member() -> None:
    decision = domain.decide_send_message(room(), me(), api.SendMessage(room_id=ROOM, text="hi"), ctx())
    (notice,) = decision.notices
    assert notice.room == ROOM and notice.recipients == (ALICE, BOB, CAROL)
    assert decision.put_messages[0].text == "hi" and decision.result.user_id == ALICE


def test_the_edit_limit_is_inclusive_and_then_refused() -> None:
    limits = domain.MessageLimits(edit=timedelta(minutes=10))
    body = api.EditMessage(room_id=ROOM, message_id=uid(500), text="new")
    at_limit = stored(uid(500), sent_at=NOW - timedelta(minutes=10))
    assert domain.decide_edit_message(room(), me(), body, at_limit, ctx(), limits=limits).result.text == "new"
    late = stored(uid(500), sent_at=NOW - timedelta(minutes=10, microseconds=1))
    with pytest.raises(DomainError) as refused:
        domain.decide_edit_message(room(), me(), body, late, ctx(), limits=limits)
    assert refused.value.status == 403


def test_the_page_hides_what_the_caller_cleared_and_gives_a_cursor_only_when_more_exist() -> None:
    page = [
        stored(uid(503), sent_at=NOW),
        stored(uid(502), sent_at=EARLIER),
        stored(uid(501), sent_at=EARLIER),
    ]
    cleared = UserSettings(room_id=ROOM, user_id=BOB, cleared_at=EARLIER)
    body = api.ListMessages(room_id=ROOM, limit=2)
    assert [m.id for m in domain.list_messages(room(), me(BOB), body, page, settings=cleared).messages] == [
        uid(503)
    ]
    everything = domain.list_messages(room(), me(), body, page)
    assert [m.id for m in everything.messages] == [uid(503), uid(502)]
    assert everything.before == domain.message_order(page[1])


def test_forwarded_messages_keep_their_order() -> None:
    body = api.ForwardMessages(
        room_id=ROOM, messages=tuple(api.ForwardMessage(original_message=f"m{n}") for n in range(3))
    )
    decision = domain.decide_forward(room(), me(), body, ctx(), originals={})
    orders = [domain.message_order(m) for m in decision.put_messages]
    assert orders == sorted(orders) and len(set(orders)) == 3
