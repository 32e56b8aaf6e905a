"""Which live conferences each endpoint is in: a read model kept in memory from the event stream.

Each replica applies its own commits directly and every other replica's events from the stream's subjects,
so the answer does not depend on which replica committed the join. At start-up the model is rebuilt from
the live conferences.
"""

from __future__ import annotations

from collections import defaultdict

from parley_common.contracts.conference import (
    AnyConferenceEvent,
    ConferenceEndedEvent,
    ConferenceJoinedEvent,
    ConferenceLeftEvent,
    ConferenceLobbyAdmittedEvent,
)

from parley_conference.domain import Conference

EndpointKey = tuple[str, str]  # (organization id, user endpoint id)


class Memberships:
    def __init__(self) -> None:
        self._by_endpoint: dict[EndpointKey, set[str]] = defaultdict(set)
        self._by_conference: dict[tuple[str, str], set[str]] = defaultdict(set)

    def load(self, conference: Conference) -> None:
        for participant in conference.participants:
            self._add(conference.organization_id, conference.id, participant.endpoint_id)

    def apply(self, event: AnyConferenceEvent) -> None:
        org, conference = event.organization_id, event.conference_id
        if isinstance(event, ConferenceJoinedEvent) and event.user_endpoint_id:
            self._add(org, conference, event.user_endpoint_id)
        elif isinstance(event, ConferenceLobbyAdmittedEvent):  # admitted: it has joined now
            self._add(org, conference, event.lobby_endpoint_id)
        elif isinstance(event, ConferenceLeftEvent) and event.user_endpoint_id:
            self._remove(org, conference, event.user_endpoint_id)
        elif isinstance(event, ConferenceEndedEvent):
            for endpoint in list(self._by_conference.get((org, conference), ())):
                self._remove(org, conference, endpoint)

    def committed(self, state: Conference, event: AnyConferenceEvent) -> None:
        """This replica's own commits (it does not hear its own publications: `no_echo`)."""
        self.apply(event)

    def conferences_of(self, organization_id: str, endpoint_id: str) -> list[str]:
        return sorted(self._by_endpoint.get((organization_id, endpoint_id), ()))

    def _add(self, org: str, conference: str, endpoint: str) -> None:
        self._by_endpoint[(org, endpoint)].add(conference)
        self._by_conference[(org, conference)].add(endpoint)

    def _remove(self, org: str, conference: str, endpoint: str) -> None:
        for index, key, value in (
            (self._by_endpoint, (org, endpoint), conference),
            (self._by_conference, (org, conference), endpoint),
        ):
            members = index.get(key)
            if members is not None:
                members.discard(value)
                if not members:
                    del index[key]
