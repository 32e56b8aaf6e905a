"""Meetings in the document store (SQLite or MongoDB behind `parley_common.storage`), and their outbox.

Collections: `meetings` (one per meeting: its view without invitations, plus the fields it is listed by),
`meeting_invitations` (one per invitation), `meeting_states` (the `state` filter's index: one row per
(meeting, state of a non-removed invitation), carrying the listing's sort fields so a filtered page is one
indexed query) and `meeting_commits`.

Atomicity: a commit is ONE `meeting_commits` document of the shared commit log (`parley_common.commits`)
holding every write (idempotent puts and deletes) and the effects it owes (events on PARLEY_MEETING, a
conference to end). The same log commits attendees and archives (`records.py`): the meeting model has one
commit mechanism and one outbox store.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import msgspec
from parley_common.commits import CommitLog, DeleteWhere, Operation, Put, as_document
from parley_common.contracts import meeting as api
from parley_common.messaging import subjects
from parley_common.messaging.streams import MEETING_STREAM
from parley_common.outbox import DeleteObject, Owed, PublishEvent
from parley_common.storage import ASCENDING, DESCENDING, Collection, DocumentStore, Filter, Index

from parley_conference.adapters.repository import key
from parley_conference.meetings import states_of

COMMITS = "meeting_commits"


class EndMeetingConference(msgspec.Struct, frozen=True, tag="endMeetingConference"):
    """End the conference behind an ended or canceled meeting (already ended counts as done)."""

    organization_id: str
    conference_id: str
    reason: str


# What the meeting model's commits owe (meetings, attendees, archives): its events, a conference to end, a
# deleted archive's bytes.
Effect = PublishEvent | EndMeetingConference | DeleteObject


async def open_commit_log(store: DocumentStore) -> CommitLog:
    """The meeting model's one commit log (`meeting_commits`), the outbox store of all its commits; each
    repository adds its collections to it."""
    return await CommitLog.open(store, COMMITS, Effect)


def _ms(at: datetime | None) -> int | None:
    return None if at is None else int(at.timestamp() * 1000)


def _meeting_doc(meeting: api.MeetingView, *, swept: bool = False) -> dict[str, Any]:
    return {
        "_id": meeting.meeting_id,
        "org": meeting.organization_id,
        "dialect": meeting.dialect,
        "createdMs": _ms(meeting.created_at),
        "startsMs": _ms(meeting.starts_at),
        "canceled": meeting.canceled_at is not None,
        # Sessions with an end still to be reached: the sweep ends their conference when it passes.
        "endsMs": _ms(meeting.ends_at)
        if meeting.ended_at is None and meeting.canceled_at is None and not swept
        else None,
        "state": as_document(msgspec.structs.replace(meeting, invitations=())),
    }


def _state_docs(meeting: api.MeetingView, invitations: Sequence[api.InvitationView]) -> list[dict[str, Any]]:
    return [
        {
            "_id": key(meeting.meeting_id, state),
            "org": meeting.organization_id,
            "dialect": meeting.dialect,
            "meeting": meeting.meeting_id,
            "value": state,
            "createdMs": _ms(meeting.created_at),
            "startsMs": _ms(meeting.starts_at),
            "canceled": meeting.canceled_at is not None,
        }
        for state in sorted(states_of(invitations))
    ]


def event_effect(event: api.AnyMeetingEvent) -> PublishEvent:
    return PublishEvent(
        subject=subjects.meeting_event(type(event).__name__),
        msg_id=event.id,
        event=as_document(event),
        stream=MEETING_STREAM,
        committed_at=event.timestamp,
    )


class MeetingRepository:
    """The meetings on the storage port, committed through the meeting model's `CommitLog`."""

    def __init__(self, collections: dict[str, Collection], log: CommitLog) -> None:
        self._meetings = collections["meetings"]
        self._invitations = collections["meeting_invitations"]
        self._states = collections["meeting_states"]
        self._log = log
        log.add_targets(*collections.values())

    @classmethod
    async def open(cls, store: DocumentStore, log: CommitLog) -> MeetingRepository:
        listing = ("org", "dialect", "canceled")
        specs: dict[str, list[Index]] = {
            "meetings": [
                Index((*listing, "createdMs")),
                Index((*listing, "startsMs")),
                Index(("org", "dialect", "createdMs")),
                Index(("org", "dialect", "startsMs")),
                Index(("endsMs",)),
            ],
            "meeting_invitations": [Index(("meeting", "createdMs"))],
            "meeting_states": [
                Index(("org", "dialect", "value", "canceled", "createdMs")),
                Index(("org", "dialect", "value", "canceled", "startsMs")),
                Index(("org", "dialect", "value", "createdMs")),
                Index(("meeting",)),
            ],
        }
        return cls({name: await store.collection(name, indexes) for name, indexes in specs.items()}, log)

    # ---------------------------------------------------------------- reads

    async def meeting(self, meeting_id: str) -> api.MeetingView | None:
        doc = await self._meetings.get(meeting_id)
        return None if doc is None else msgspec.convert(doc["state"], api.MeetingView)

    async def invitation(self, invitation_id: str) -> api.InvitationView | None:
        doc = await self._invitations.get(invitation_id)
        return None if doc is None else msgspec.convert(doc["state"], api.InvitationView)

    async def invitations(self, meeting_ids: Sequence[str]) -> dict[str, list[api.InvitationView]]:
        """Every invitation of these meetings (one query), in the order they were made."""
        found: dict[str, list[api.InvitationView]] = {meeting_id: [] for meeting_id in meeting_ids}
        if meeting_ids:
            docs = await self._invitations.find(
                {"meeting": {"$in": list(meeting_ids)}}, sort=[("meeting", 1), ("createdMs", 1)]
            )
            for doc in docs:
                found[doc["meeting"]].append(msgspec.convert(doc["state"], api.InvitationView))
        return found

    async def page(self, organization_id: str, query: api.ListMeetings) -> tuple[list[api.MeetingView], int]:
        """One page of meetings in the listing's order, and how many match: one indexed query for the
        page (through `meeting_states` when filtered by state), one for its meetings then, one count."""
        where: dict[str, Any] = {"org": organization_id, "dialect": query.dialect}
        if not query.include_canceled:
            where["canceled"] = False
        bounds: dict[str, int] = {}
        if query.starts_from is not None:
            bounds["$gte"] = _ms(query.starts_from) or 0
        if query.starts_until is not None:
            bounds["$lte"] = _ms(query.starts_until) or 0
        if bounds:
            where["startsMs"] = bounds
        by = "startsMs" if bounds else "createdMs"
        sort = [(by, DESCENDING if query.reverse else ASCENDING)]
        skip = query.page * query.page_size
        if query.state is None:
            docs = await self._meetings.find(where, sort=sort, skip=skip, limit=query.page_size)
            total = await self._meetings.count(where)
            return [msgspec.convert(doc["state"], api.MeetingView) for doc in docs], total
        state_where: Filter = {**where, "value": query.state}
        rows = await self._states.find(state_where, sort=sort, skip=skip, limit=query.page_size)
        total = await self._states.count(state_where)
        ids = [row["meeting"] for row in rows]
        docs = await self._meetings.find({"_id": {"$in": ids}}) if ids else []
        by_id = {doc["_id"]: msgspec.convert(doc["state"], api.MeetingView) for doc in docs}
        return [by_id[i] for i in ids if i in by_id], total

    async def due(self, now: datetime, limit: int = 100) -> list[api.MeetingView]:
        """Sessions past their end whose conference still runs (for the sweep)."""
        docs = await self._meetings.find(
            {"endsMs": {"$lte": _ms(now) or 0}}, sort=[("endsMs", ASCENDING)], limit=limit
        )
        return [msgspec.convert(doc["state"], api.MeetingView) for doc in docs]

    # ---------------------------------------------------------------- writes

    async def commit(
        self,
        meeting: api.MeetingView,
        *,
        invitations: Sequence[api.InvitationView] | None = None,
        changed_invitations: Sequence[api.InvitationView] = (),
        events: Sequence[api.AnyMeetingEvent] = (),
        effects: Sequence[Effect] = (),
        swept: bool = False,
    ) -> Owed:
        """Write the meeting, the invitations that changed and (given all of them: `invitations`) its
        `state` index rows, owing the events and effects, in one commit document; then apply it.
        `swept`: the sweep has ended its conference (it is not due any more)."""
        operations: list[Operation] = [Put("meetings", _meeting_doc(meeting, swept=swept))]
        operations.extend(
            Put(
                "meeting_invitations",
                {
                    "_id": invitation.invitation_id,
                    "meeting": invitation.meeting_id,
                    "org": meeting.organization_id,
                    "createdMs": _ms(invitation.created_at),
                    "state": as_document(invitation),
                },
            )
            for invitation in changed_invitations
        )
        if invitations is not None:
            # The index follows every change of the meeting's sort fields or of its invitations' states.
            operations.append(DeleteWhere("meeting_states", {"meeting": meeting.meeting_id}))
            operations.extend(Put("meeting_states", doc) for doc in _state_docs(meeting, invitations))
        all_effects: list[Effect] = [event_effect(event) for event in events]
        all_effects.extend(effects)
        return await self._log.commit(operations, all_effects)
