"""Attendees in the document store: `meeting_attendees` (one versioned record per (meeting, attendee key),
committed with the events it raises through the meeting model's commit log), `meeting_attendee_endpoints`
(which conference endpoint is which attendee, so a leave finds its attendee) and `meeting_conferences` (the
conference behind each meeting, from its creation event: joins and the webhook, which names only the
conference, find the meeting and organization there).
"""

from __future__ import annotations

from typing import Any

import msgspec
from parley_common.commits import CommitLog
from parley_common.outbox import Owed
from parley_common.storage import DocumentStore, Index

from parley_conference.adapters.meetings import event_effect
from parley_conference.adapters.records import Records
from parley_conference.adapters.repository import key
from parley_conference.attendance import Attendee, Change, MeetingInfo


class MeetingConference(msgspec.Struct, frozen=True):
    organization_id: str
    meeting_id: str
    conference_id: str


class StoredMeetings:
    """The meeting aggregate's repository as attendance and archives look meetings up (`MeetingLookup`)."""

    def __init__(self, meetings: Any) -> None:
        self._meetings = meetings

    async def meeting(self, organization_id: str, meeting_id: str) -> MeetingInfo | None:
        view = await self._meetings.meeting(meeting_id)
        if view is None or view.organization_id != organization_id:
            return None
        return MeetingInfo(dialect=view.dialect, name=view.name)


class AttendeeRepository:
    def __init__(self, records: Records, endpoints: Any, conferences: Any) -> None:
        self.records = records
        self._endpoints = endpoints
        self._conferences = conferences

    @classmethod
    async def open(cls, store: DocumentStore, log: CommitLog) -> AttendeeRepository:
        attendees = await store.collection(
            "meeting_attendees", [Index(("org", "meeting")), Index(("conference",))]
        )
        return cls(
            Records(attendees, log),
            await store.collection("meeting_attendee_endpoints"),
            await store.collection("meeting_conferences", [Index(("org", "meeting"))]),
        )

    # ------------------------------------------------------------ meetings' conferences

    async def remember_conference(self, link: MeetingConference) -> None:
        await self._conferences.replace(
            {"_id": link.conference_id, "org": link.organization_id, "meeting": link.meeting_id},
            upsert=True,
        )

    async def conference(self, conference_id: str) -> MeetingConference | None:
        """The meeting behind a conference, whatever its organization (the webhook names no organization)."""
        doc = await self._conferences.get(conference_id)
        if doc is None:
            return None
        return MeetingConference(doc["org"], doc["meeting"], conference_id)

    async def has_meeting(self, organization_id: str, meeting_id: str) -> bool:
        return bool(await self._conferences.count({"org": organization_id, "meeting": meeting_id}))

    # ------------------------------------------------------------ attendees

    @staticmethod
    def attendee_id(organization_id: str, meeting_id: str, attendee: str) -> str:
        return key(organization_id, meeting_id, attendee)

    async def get(self, record_id: str) -> Attendee | None:
        doc = await self.records.get(record_id)
        return None if doc is None else msgspec.convert(doc["state"], Attendee)

    async def of_meeting(self, organization_id: str, meeting_id: str) -> list[Attendee]:
        docs = await self.records.find(
            {"org": organization_id, "meeting": meeting_id}, sort=[("createdMs", 1)]
        )
        return [msgspec.convert(doc["state"], Attendee) for doc in docs]

    async def of_conference(self, conference_id: str) -> list[Attendee]:
        docs = await self.records.find({"conference": conference_id})
        return [msgspec.convert(doc["state"], Attendee) for doc in docs]

    async def commit(self, change: Change) -> Owed:
        a = change.attendee
        fields = {
            "org": a.organization_id,
            "meeting": a.meeting_id,
            "conference": a.conference_id,
            "createdMs": int(a.created_on.timestamp() * 1000),
        }
        effects = [] if change.event is None else [event_effect(change.event)]
        return await self.records.write(a.id, a.version, a, fields, effects)

    # ------------------------------------------------------------ endpoints

    async def map_endpoint(self, conference_id: str, endpoint_id: str, attendee_id: str) -> None:
        await self._endpoints.replace(
            {"_id": key(conference_id, endpoint_id), "attendee": attendee_id}, upsert=True
        )

    async def attendee_of_endpoint(self, conference_id: str, endpoint_id: str) -> str | None:
        doc = await self._endpoints.get(key(conference_id, endpoint_id))
        return None if doc is None else str(doc["attendee"])
