"""Read models: the API's Conference and ConferenceSimpleView from the aggregate plus live presence."""

from __future__ import annotations

from parley_common.contracts import conference as api

from parley_conference.domain import Conference, Participant
from parley_conference.presence import Presence


def _state(conference: Conference, participant: Participant, presence: Presence) -> api.ParticipantState:
    return presence.state(conference.organization_id, participant.endpoint_id)


def conference_view(conference: Conference, presence: Presence) -> api.Conference:
    return api.Conference(
        id=conference.id,
        organization_id=conference.organization_id,
        mode=conference.mode,
        version=conference.version,
        creator=conference.creator,
        creator_endpoint=conference.creator_endpoint,
        empty=conference.empty,
        metadata=conference.metadata,
        participants=[
            api.ConferenceParticipant(
                id=p.endpoint_id,
                user_id=p.user_id,
                state=_state(conference, p, presence),
                joined_at=p.joined_at,
                metadata=p.metadata,
                streams=[
                    api.ConferenceStream(
                        id=api.StreamId(id=s.id),
                        type=s.type,
                        metadata=s.metadata,
                        video_bitrate=s.video_bitrate,
                    )
                    for s in p.streams
                ],
            )
            for p in conference.participants
        ],
        lobby=[
            api.ConferenceLobbyEndpoint(
                id=w.endpoint_id, user_id=w.user_id, since=w.since, metadata=w.metadata, grant=w.grant
            )
            for w in conference.lobby
        ],
    )


def simple_view(conference: Conference, presence: Presence) -> api.ConferenceSimpleView:
    users: dict[str, list[api.ConferenceSimpleViewParticipantEndpoint]] = {}
    for p in conference.participants:
        users.setdefault(p.user_id, []).append(
            api.ConferenceSimpleViewParticipantEndpoint(
                id=p.endpoint_id,
                state=_state(conference, p, presence),
                metadata=p.metadata,
                streams=[
                    api.ConferenceSimpleViewParticipantEndpointStream(
                        id=s.id, type=s.type, metadata=s.metadata
                    )
                    for s in p.streams
                ],
            )
        )
    return api.ConferenceSimpleView(
        id=conference.id,
        mode=conference.mode,
        version=conference.version,
        metadata=conference.metadata,
        participants=[
            api.ConferenceSimpleViewParticipant(id=user_id, endpoints=endpoints)
            for user_id, endpoints in users.items()
        ],
    )


def summary(conference: Conference) -> api.ConferenceSummary:
    return api.ConferenceSummary(id=conference.id, mode=conference.mode, version=conference.version)
