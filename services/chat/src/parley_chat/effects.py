"""What a chat commit owes once written: the effects the outbox carries out (and retries until done).

- every event once on `parley.events.chat.<TYPE>` (PARLEY_CHAT, `Nats-Msg-Id` = the event id), as the
  other services read it (with its organizationId);
- a copy for each recipient on `parley.push.user.<org>.<user>` (PARLEY_USER_PUSH, `Nats-Msg-Id`
  `<eventId>.<userId>`), the JSON the client sees: `{id, type, sentDate, ...fields}`; a room's
  messages instead go ONCE on the room's subject `parley.push.user.<org>.room.<room>` (same stream,
  `Nats-Msg-Id` the event id), which each member's socket reads (the gateway's `user_push`);
- a member removed from a room leaves its meeting's conference at once (`RemoveFromConference`; the
  admission, `parley.qry.chat.admit`, also refuses them at any later join);
- a room meeting's conference to end (`EndConference`: the room or its last member is gone);
- an object of the chat files bucket nothing refers to any more (`DeleteObject`: a deleted attachment,
  a deleted or replaced picture, a rendered preview, the files of a deleted room), after the events.
"""

from __future__ import annotations

from typing import Any

import msgspec
from parley_common.contracts.chat import AnyChatEvent
from parley_common.messaging import subjects
from parley_common.messaging.streams import CHAT_STREAM, USER_PUSH_STREAM
from parley_common.outbox import DeleteObject, PublishEvent

from parley_chat.domain import Decision


class EndConference(msgspec.Struct, frozen=True, tag="endConference"):
    """End a room meeting's conference (already gone or ended counts as done)."""

    organization_id: str
    conference_id: str


class RemoveFromConference(msgspec.Struct, frozen=True, tag="removeFromConference"):
    """Drop a user removed from a room from the room meeting's conference (gone or ended counts as done)."""

    organization_id: str
    conference_id: str
    user_id: str


# The effect kinds a chat commit stores (tagged: a stored list decodes back to its types).
Effect = PublishEvent | RemoveFromConference | EndConference | DeleteObject


def _document(value: object) -> Any:
    return msgspec.json.decode(msgspec.json.encode(value))


def client_view(event: AnyChatEvent) -> dict[str, Any]:
    """The event as a client sees it: its organization is the caller's own, not repeated."""
    doc: dict[str, Any] = _document(event)
    doc.pop("organizationId", None)
    return doc


def effects_of(organization_id: str, decision: Decision[Any]) -> list[Effect]:
    """Events first (the stream, then each recipient), then users to drop from conferences, then
    conferences to end, then objects to delete."""
    effects: list[Effect] = []
    for notice in decision.notices:
        event = notice.event
        event_type = str(type(event).__struct_config__.tag)
        effects.append(
            PublishEvent(
                subject=subjects.chat_event(event_type),
                msg_id=event.id,
                event=_document(event),
                stream=CHAT_STREAM,
                committed_at=event.sent_date,
            )
        )
        view = client_view(event)
        if notice.room is not None:
            effects.append(
                PublishEvent(
                    subject=subjects.room_push(event.organization_id, notice.room),
                    msg_id=event.id,
                    event=view,
                    stream=USER_PUSH_STREAM,
                    committed_at=event.sent_date,
                )
            )
            continue
        for user_id in dict.fromkeys(notice.recipients):
            effects.append(
                PublishEvent(
                    subject=subjects.user_push(event.organization_id, user_id),
                    msg_id=subjects.user_push_msg_id(event.id, user_id),
                    event=view,
                    stream=USER_PUSH_STREAM,
                    committed_at=event.sent_date,
                )
            )
    effects.extend(
        RemoveFromConference(
            organization_id=organization_id, conference_id=member.conference_id, user_id=member.user_id
        )
        for member in decision.remove_from_conferences
    )
    effects.extend(
        EndConference(organization_id=organization_id, conference_id=conference_id)
        for conference_id in decision.end_conferences
    )
    # Last: the bytes go once the state no longer refers to them.
    effects.extend(DeleteObject(object_name=name) for name in decision.delete_objects)
    return effects
