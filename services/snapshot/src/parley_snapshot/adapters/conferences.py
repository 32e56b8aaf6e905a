"""What the snapshot service asks the conference service: who is in a conference, and a still of a camera.

Both are queries on the conference service's subjects, made on behalf of the original caller (its
organization scopes what the conference service shows).
"""

from __future__ import annotations

from parley_common.contracts import conference as conference_api
from parley_common.contracts.media import StillImage, StreamStillQuery
from parley_common.contracts.rpc import Caller, Rejected, Request
from parley_common.messaging import subjects
from parley_common.messaging.rpc import RpcClient

from parley_snapshot.domain import CAMERA_STREAM_TYPES, DomainError, NotFound, Roster


class ConferenceUnavailable(DomainError):
    status = 503


class ConferenceDirectory:
    def __init__(self, rpc: RpcClient) -> None:
        self._rpc = rpc

    async def roster(self, caller: Caller, conference_id: str) -> Roster:
        """The conference's endpoints; raises NotFound / ConferenceUnavailable with the service's reason."""
        reply = await self._rpc.request(
            subjects.conference_query("get"),
            Request(caller=caller, body=conference_api.GetConferenceQuery(conference_id=conference_id)),
            conference_api.Conference,
        )
        if isinstance(reply, Rejected):
            if reply.status == 404:
                raise NotFound(f"conference {conference_id} not found")
            if reply.status >= 500:
                raise ConferenceUnavailable(reply.message)
            raise DomainError(reply.message)
        return roster_of(reply.value)

    async def still(
        self, caller: Caller, conference_id: str, user_endpoint_id: str, *, timeout: float
    ) -> StillImage | str:
        """A JPEG of the endpoint's camera, or why there is none (the conference service's reason)."""
        reply = await self._rpc.request(
            subjects.conference_query("streamStill"),
            Request(
                caller=caller,
                body=StreamStillQuery(conference_id=conference_id, user_endpoint_id=user_endpoint_id),
            ),
            StillImage,
            timeout=timeout,
        )
        if isinstance(reply, Rejected):
            return f"server-side capture failed ({reply.status}): {reply.message}"
        return reply.value


def roster_of(conference: conference_api.Conference) -> Roster:
    return Roster(
        conference_id=conference.id,
        members={p.id: p.user_id for p in conference.participants},
        cameras=frozenset(
            p.id for p in conference.participants if any(s.type in CAMERA_STREAM_TYPES for s in p.streams)
        ),
    )
