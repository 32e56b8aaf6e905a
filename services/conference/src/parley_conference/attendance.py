"""Attendance of a meeting, pure: who came to the conference behind it, and who is still there.

An attendee is keyed by (meeting, attendee key): the grant's `attendee` (SourceFuse token `data`, Coviu
participant id) or else the user. Two sources drive it, the same way:
- the conference's own events: a join (or a lobby admission: the waiting endpoint has now joined) creates or
  revives the attendee and records the endpoint; a leave (leave, keep-alive timeout, removal) takes the
  endpoint away and the attendee is gone (`isDeleted`) when it has no endpoint left; the conference's end
  marks every attendee gone;
- an external provider's Vonage-shaped webhook, as the real service's `checkWebhookPayload` does.

Every function returns the new state and the event it raises, or None when nothing changes: a redelivered
event changes nothing the second time (the endpoint is already there, or already gone).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec
from parley_common.contracts.meeting import (
    AttendanceWebhook,
    AttendeeJoinedEvent,
    AttendeeLeftEvent,
    AttendeeView,
)

# The webhook events the real service acts on (`VonageEnums.SessionWebhookEvents`); others are ignored.
CONNECTION_CREATED = "connectionCreated"
CONNECTION_DESTROYED = "connectionDestroyed"
STREAM_CREATED = "streamCreated"
STREAM_DESTROYED = "streamDestroyed"
# A stream destroyed for these reasons leaves its attendee in the call (the real service's rule).
STREAM_KEPT_REASONS = frozenset({"forceUnpublished", "mediaStopped"})

AttendeeEvent = AttendeeJoinedEvent | AttendeeLeftEvent


class MeetingInfo(msgspec.Struct, frozen=True):
    """What attendance and archives need of a meeting. `dialect` None: any dialect sees it."""

    dialect: str | None = None
    name: str | None = None


class Attendee(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    organization_id: str
    meeting_id: str
    conference_id: str
    attendee: str
    created_on: datetime
    is_deleted: bool = False
    modified_on: datetime | None = None
    ext_id: str | None = None
    ext_metadata: dict[str, Any] | None = None
    # The conference endpoints in the call as this attendee (which endpoint maps to which attendee).
    endpoints: tuple[str, ...] = ()
    version: int = 0


class Change(msgspec.Struct, frozen=True):
    """The new state (version raised) and the event it raises; None: a change worth no event (a touch)."""

    attendee: Attendee
    event: AttendeeEvent | None


def view(attendee: Attendee) -> AttendeeView:
    return AttendeeView(
        id=attendee.id,
        meeting_id=attendee.meeting_id,
        conference_id=attendee.conference_id,
        attendee=attendee.attendee,
        created_on=attendee.created_on,
        is_deleted=attendee.is_deleted,
        modified_on=attendee.modified_on,
        ext_id=attendee.ext_id,
        ext_metadata=attendee.ext_metadata,
    )


def _raise(attendee: Attendee, event_id: str, now: datetime, *, joined: bool) -> Change:
    attendee = msgspec.structs.replace(attendee, version=attendee.version + 1)
    common: dict[str, Any] = {
        "id": event_id,
        "organization_id": attendee.organization_id,
        "meeting_id": attendee.meeting_id,
        "conference_id": attendee.conference_id,
        "timestamp": now,
        "attendee": view(attendee),
    }
    event: AttendeeEvent = AttendeeJoinedEvent(**common) if joined else AttendeeLeftEvent(**common)
    return Change(attendee, event)


def new_attendee(
    attendee_id: str, organization_id: str, meeting_id: str, conference_id: str, key: str, now: datetime
) -> Attendee:
    return Attendee(
        id=attendee_id,
        organization_id=organization_id,
        meeting_id=meeting_id,
        conference_id=conference_id,
        attendee=key,
        created_on=now,
        is_deleted=True,  # not there until a join says so
    )


def decide_joined(attendee: Attendee, endpoint_id: str, event_id: str, now: datetime) -> Change | None:
    """An endpoint joined as this attendee: it is there (revived if it had left). None: already known."""
    if endpoint_id in attendee.endpoints and not attendee.is_deleted:
        return None
    endpoints = (*[e for e in attendee.endpoints if e != endpoint_id], endpoint_id)
    if not attendee.is_deleted:  # already present through another endpoint: nothing to announce
        return _quiet(msgspec.structs.replace(attendee, endpoints=endpoints))
    revived = msgspec.structs.replace(
        attendee, is_deleted=False, modified_on=now if attendee.version else None, endpoints=endpoints
    )
    return _raise(revived, event_id, now, joined=True)


def decide_left(attendee: Attendee, endpoint_id: str, event_id: str, now: datetime) -> Change | None:
    """An endpoint left: the attendee is gone once none of its endpoints is in the call. None: not there."""
    if endpoint_id not in attendee.endpoints:
        return None
    rest = tuple(e for e in attendee.endpoints if e != endpoint_id)
    left = msgspec.structs.replace(attendee, endpoints=rest, is_deleted=not rest, modified_on=now)
    if rest:  # another endpoint of the same attendee is still in: present, nothing to announce
        return _quiet(left)
    return _raise(left, event_id, now, joined=False)


def _quiet(attendee: Attendee) -> Change:
    return Change(msgspec.structs.replace(attendee, version=attendee.version + 1), None)


def decide_ended(attendee: Attendee, event_id: str, now: datetime) -> Change | None:
    """The conference ended: everyone left. None: already gone."""
    if attendee.is_deleted and not attendee.endpoints:
        return None
    gone = msgspec.structs.replace(attendee, endpoints=(), is_deleted=True, modified_on=now)
    return _raise(gone, event_id, now, joined=False)


def webhook_key(webhook: AttendanceWebhook) -> str | None:
    """The attendee a webhook is about (`connection.data`); None: nothing to key it by, ignored."""
    connection = webhook.connection
    if connection is None and webhook.stream is not None:
        connection = webhook.stream.connection
    return None if connection is None or not connection.data else connection.data


def decide_webhook(
    attendee: Attendee, webhook: AttendanceWebhook, payload: dict[str, Any], event_id: str, now: datetime
) -> Change | None:
    """The real service's `checkWebhookPayload` on one attendee (`attendee.version == 0`: not stored yet)."""
    if attendee.version == 0:
        if webhook.event != CONNECTION_CREATED:
            return None  # the real service creates attendees on connectionCreated only
        created = msgspec.structs.replace(
            attendee,
            is_deleted=False,
            ext_id=webhook.connection.id if webhook.connection else None,
            ext_metadata={"webhookPayload": payload},
        )
        return _raise(created, event_id, now, joined=True)
    touched = msgspec.structs.replace(attendee, modified_on=now, ext_metadata={"webhookPayload": payload})
    if webhook.event == CONNECTION_CREATED:
        return _raise(msgspec.structs.replace(touched, is_deleted=False), event_id, now, joined=True)
    if webhook.event == STREAM_CREATED or (
        webhook.event == STREAM_DESTROYED and webhook.reason in STREAM_KEPT_REASONS
    ):
        return _quiet(touched)
    if webhook.event in (STREAM_DESTROYED, CONNECTION_DESTROYED):
        return _raise(msgspec.structs.replace(touched, is_deleted=True), event_id, now, joined=False)
    return None
