"""The event catalogue: every domain event type, the stream and subject it is stored on, and who publishes it.

One table, read by everything that must know the events without reading the services: the AsyncAPI
document, webhook delivery (which event types an endpoint may ask for, how to decode one, which
organization and conference it belongs to) and the tests that check neither misses an event type.
A new event type is added to its service's union (`AnyConferenceEvent`...) and appears here by itself.
"""

from __future__ import annotations

import builtins
from typing import Any, Final, get_args

import msgspec

from parley_common.contracts.chat import AnyChatEvent
from parley_common.contracts.conference import AnyConferenceEvent
from parley_common.contracts.media import MediaStreamEndedEvent, RecordingStoredEvent
from parley_common.contracts.meeting import AnyMeetingEvent
from parley_common.contracts.snapshot import AnySnapshotEvent
from parley_common.messaging import subjects


class EventKind(msgspec.Struct, frozen=True, kw_only=True):
    """One event type as subscribers see it."""

    # The subject's last token and the `type` subscribers filter on: `ConferenceJoinedEvent`, `ROOM_CREATED`.
    type: str
    # The JetStream stream that keeps it, and its exact subject.
    stream: str
    subject: str
    # Which service publishes it (the Deployment's name).
    publisher: str
    payload: builtins.type[msgspec.Struct]
    # The type's docstring, first paragraph: what the event means.
    summary: str


class EventFamily(msgspec.Struct, frozen=True, kw_only=True):
    """The event types one stream carries, under one subject pattern."""

    stream: str
    subject_pattern: str  # e.g. parley.events.conference.{type}
    publisher: str
    types: tuple[type[msgspec.Struct], ...]


def _tag(cls: type[msgspec.Struct]) -> str:
    tag = cls.__struct_config__.tag
    return tag if isinstance(tag, str) else cls.__name__


def _summary(cls: type[msgspec.Struct]) -> str:
    doc = (cls.__doc__ or "").strip()
    # A type without its own docstring inherits its base's, which describes the family, not the event.
    if doc and any(doc == (base.__doc__ or "").strip() for base in cls.__mro__[1:]):
        doc = ""
    # Joined on one line whatever the docstring's indentation (Python < 3.13 keeps it).
    return " ".join(doc.split("\n\n", 1)[0].split())


FAMILIES: Final[tuple[EventFamily, ...]] = (
    EventFamily(
        stream="PARLEY_CONFERENCE",
        subject_pattern=subjects.CONFERENCE_EVENTS,
        publisher="conference",
        types=get_args(AnyConferenceEvent),
    ),
    EventFamily(
        stream="PARLEY_MEDIA",
        subject_pattern=subjects.MEDIA_EVENTS,
        publisher="media",
        types=(MediaStreamEndedEvent, RecordingStoredEvent),
    ),
    EventFamily(
        stream="PARLEY_SNAPSHOT",
        subject_pattern=subjects.SNAPSHOT_EVENTS,
        publisher="snapshot",
        types=get_args(AnySnapshotEvent),
    ),
    EventFamily(
        stream="PARLEY_CHAT",
        subject_pattern=subjects.CHAT_EVENTS,
        publisher="chat",
        types=get_args(AnyChatEvent),
    ),
    EventFamily(
        stream="PARLEY_MEETING",
        subject_pattern=subjects.MEETING_EVENTS,
        publisher="conference",
        types=get_args(AnyMeetingEvent),
    ),
)

EVENT_KINDS: Final[tuple[EventKind, ...]] = tuple(
    EventKind(
        type=_tag(cls),
        stream=family.stream,
        subject=family.subject_pattern.format(type=_tag(cls)),
        publisher=family.publisher,
        payload=cls,
        summary=_summary(cls),
    )
    for family in FAMILIES
    for cls in family.types
)

_BY_SUBJECT: Final[dict[str, EventKind]] = {kind.subject: kind for kind in EVENT_KINDS}
_BY_TYPE: Final[dict[str, EventKind]] = {kind.type: kind for kind in EVENT_KINDS}
EVENT_TYPES: Final[tuple[str, ...]] = tuple(_BY_TYPE)
EVENT_STREAMS: Final[tuple[str, ...]] = tuple(dict.fromkeys(f.stream for f in FAMILIES))
assert len(_BY_TYPE) == len(EVENT_KINDS), "two event types share a name"


def kind_of_subject(subject: str) -> EventKind | None:
    return _BY_SUBJECT.get(subject)


def kind_of_type(event_type: str) -> EventKind | None:
    return _BY_TYPE.get(event_type)


def organization_of(event: Any) -> str | None:
    """The organization an event belongs to (media events carry it in their stream)."""
    org = getattr(event, "organization_id", None)
    if org is None and (stream := getattr(event, "stream", None)) is not None:
        org = getattr(stream, "organization_id", None)
    return org if isinstance(org, str) else None


def ordering_key(event: Any) -> str:
    """What events must stay in order within: the conference, room, meeting or snapshot session they are
    about; events about nothing narrower share their organization's key."""
    stream = getattr(event, "stream", None)
    for owner in (event, stream):
        for name in ("conference_id", "room_id", "meeting_id", "session_id"):
            value = getattr(owner, name, None) if owner is not None else None
            if isinstance(value, str) and value:
                return f"{name}:{value}"
    return f"organization:{organization_of(event) or ''}"
