"""What the chat service asks the conference service: a guarded conference for a room meeting, its live
state for the meeting view, and its end when the room goes (contracts in `parley_common.contracts.guarded`).

Requests carry a service caller of the room's organization (the conference scopes everything by it).
"""

from __future__ import annotations

from datetime import datetime

from parley_common.clock import new_id
from parley_common.contracts import conference as conference_api
from parley_common.contracts.base import Empty
from parley_common.contracts.chat import MeetingParticipant
from parley_common.contracts.guarded import Admission, CreateGuardedConference, EndGuardedConference
from parley_common.contracts.rpc import Caller, Rejected, Request
from parley_common.errors import DomainError, Unavailable
from parley_common.messaging import subjects
from parley_common.messaging.rpc import RpcClient

# Who the chat service is when it asks the conference service.
SERVICE_USER = "service:chat"
_AUDIO = frozenset({"MIC", "MIC_AND_CAM"})
_VIDEO = frozenset({"CAM", "MIC_AND_CAM"})


class LiveMeeting:
    """What a running conference shows of a meeting."""

    def __init__(self, active: bool, participants: tuple[MeetingParticipant, ...]) -> None:
        self.active = active
        self.participants = participants


def service_caller(organization_id: str) -> Caller:
    return Caller(
        organization_id=organization_id, user_id=SERVICE_USER, request_id=new_id(), scopes=("service",)
    )


def _refused(what: str, reply: Rejected) -> DomainError:
    if reply.status >= 500:
        return Unavailable(f"conference service: {reply.message}")
    error = DomainError(f"{what}: {reply.message}")
    error.status = reply.status
    return error


class ConferenceClient:
    def __init__(self, rpc: RpcClient) -> None:
        self._rpc = rpc

    async def create_guarded(self, organization_id: str, conference_id: str, room_id: str, name: str) -> None:
        """A conference whose every join asks `parley.qry.chat.admit` about `room_id`."""
        body = CreateGuardedConference(
            conference_id=conference_id,
            organization_id=organization_id,
            admission=Admission(subject=subjects.CHAT_ADMIT, resource=room_id),
            metadata={"roomId": room_id, "name": name},
        )
        reply = await self._rpc.request(
            subjects.CONFERENCE_CREATE_GUARDED,
            Request(caller=service_caller(organization_id), body=body),
            Empty,
        )
        if isinstance(reply, Rejected):
            raise _refused("the meeting's conference could not be created", reply)

    async def live(self, organization_id: str, conference_id: str, since: datetime) -> LiveMeeting:
        """Who is in the conference now; an ended or unknown one is an inactive meeting.

        The conference view has no join time: `since` (the meeting's creation) stands in for joinedAt.
        """
        reply = await self._rpc.request(
            subjects.conference_query("get"),
            Request(
                caller=service_caller(organization_id),
                body=conference_api.GetConferenceQuery(conference_id=conference_id),
            ),
            conference_api.Conference,
        )
        if isinstance(reply, Rejected):
            if reply.status in (404, 409, 410):
                return LiveMeeting(False, ())
            raise _refused("the meeting's conference could not be read", reply)
        participants = tuple(
            MeetingParticipant(
                user_id=p.user_id,
                queue_id=p.id,
                audio_stream_enabled=any(s.type in _AUDIO for s in p.streams),
                video_stream_enabled=any(s.type in _VIDEO for s in p.streams),
                screen_stream_enabled=any(s.type == "SCREEN" for s in p.streams),
                joined_at=since,
            )
            for p in reply.value.participants
        )
        return LiveMeeting(bool(participants), participants)

    async def end(self, organization_id: str, conference_id: str) -> None:
        """End it; unknown (404) or already ended (409) is done. Raises while the service cannot answer."""
        reply = await self._rpc.request(
            subjects.CONFERENCE_END_GUARDED,
            Request(
                caller=service_caller(organization_id),
                body=EndGuardedConference(
                    conference_id=conference_id, organization_id=organization_id, reason="room deleted"
                ),
            ),
            Empty,
        )
        if isinstance(reply, Rejected) and reply.status not in (404, 409, 410):
            raise _refused(f"conference {conference_id} could not be ended", reply)
