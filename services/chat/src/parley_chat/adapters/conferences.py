"""What the chat service asks the conference service about a room meeting, on the conference service's own
contract (`parley_common.contracts.conference`):

- `parley.cmd.conference.createGuarded` (`CreateGuardedConference{conferenceId, admission, metadata}`), for
  the member creating the meeting: every join is then checked against `parley.qry.chat.admit`;
- `parley.qry.conference.get` for the meeting view (participants with their `joinedAt`);
- `parley.cmd.conference.removeParticipant` (a member removed from the room leaves the meeting at once) and
  `parley.cmd.conference.end` (the room is gone), both as a service principal (`SERVICE_SCOPE`) of the room's
  organization, the only callers the conference service lets do either without being a participant.
"""

from __future__ import annotations

from parley_common.clock import new_id
from parley_common.contracts import conference as conference_api
from parley_common.contracts.base import Empty
from parley_common.contracts.chat import MeetingParticipant
from parley_common.contracts.rpc import Caller, Rejected, Request
from parley_common.errors import DomainError, Unavailable
from parley_common.messaging import subjects
from parley_common.messaging.rpc import RpcClient

# Who the chat service is when it acts for itself; also the `userEndpointId` it names itself with on `end`
# (the conference service neither looks it up nor keeps it alive for a service caller).
SERVICE_USER = "chat"
# Why the conference ended, in the conference's upper-case reason style (REMOVED, TIMEOUT, ...).
ROOM_DELETED = "ROOM_DELETED"
_AUDIO = frozenset({"MIC", "MIC_AND_CAM"})
_VIDEO = frozenset({"CAM", "MIC_AND_CAM"})
# What the conference service answers for a conference that is gone (unknown) or has ended: for a retried
# effect the work is done, for the meeting view the meeting is inactive.
_GONE = frozenset({404, 409, 410})


class LiveMeeting:
    """What a running conference shows of a meeting."""

    def __init__(self, active: bool, participants: tuple[MeetingParticipant, ...]) -> None:
        self.active = active
        self.participants = participants
        # The conference keeps no start of its own: the earliest join of those in it now stands for it.
        self.started_at = min((p.joined_at for p in participants), default=None)


def service_caller(organization_id: str) -> Caller:
    return Caller(
        organization_id=organization_id,
        user_id=SERVICE_USER,
        request_id=new_id(),
        scopes=(conference_api.SERVICE_SCOPE,),
    )


def user_caller(organization_id: str, user_id: str) -> Caller:
    return Caller(organization_id=organization_id, user_id=user_id, request_id=new_id())


def _refused(what: str, reply: Rejected) -> DomainError:
    if reply.status >= 500:
        return Unavailable(f"conference service: {reply.message}")
    error = DomainError(f"{what}: {reply.message}")
    error.status = reply.status
    return error


def participant_view(participant: conference_api.ConferenceParticipant) -> MeetingParticipant:
    types = {s.type for s in participant.streams}
    return MeetingParticipant(
        user_id=participant.user_id,
        queue_id=participant.id,
        audio_stream_enabled=bool(types & _AUDIO),
        video_stream_enabled=bool(types & _VIDEO),
        screen_stream_enabled="SCREEN" in types,
        joined_at=participant.joined_at,
    )


class ConferenceClient:
    def __init__(self, rpc: RpcClient) -> None:
        self._rpc = rpc

    async def create_guarded(
        self, organization_id: str, creator: str, conference_id: str, room_id: str, name: str
    ) -> None:
        """A conference (for `creator`) whose every join asks `parley.qry.chat.admit` about `room_id`."""
        body = conference_api.CreateGuardedConference(
            conference_id=conference_id,
            admission=conference_api.Admission(subject=subjects.CHAT_ADMIT, resource=room_id),
            metadata={"roomId": room_id, "name": name},
        )
        reply = await self._rpc.request(
            subjects.CONFERENCE_CREATE_GUARDED,
            Request(caller=user_caller(organization_id, creator), body=body),
            conference_api.ConferenceSummary,
        )
        if isinstance(reply, Rejected):
            raise _refused("the meeting's conference could not be created", reply)

    async def live(self, organization_id: str, conference_id: str) -> LiveMeeting:
        """Who is in the conference now; an ended or unknown one is an inactive meeting."""
        reply = await self._rpc.request(
            subjects.conference_query("get"),
            Request(
                caller=service_caller(organization_id),
                body=conference_api.GetConferenceQuery(conference_id=conference_id),
            ),
            conference_api.Conference,
        )
        if isinstance(reply, Rejected):
            if reply.status in _GONE:
                return LiveMeeting(False, ())
            raise _refused("the meeting's conference could not be read", reply)
        participants = tuple(participant_view(p) for p in reply.value.participants)
        return LiveMeeting(bool(participants), participants)

    async def remove_participant(self, organization_id: str, conference_id: str, user_id: str) -> None:
        """Every endpoint of `user_id` leaves; a conference gone or ended is done. Raises while unanswered."""
        reply = await self._rpc.request(
            subjects.conference_command("removeParticipant"),
            Request(
                caller=service_caller(organization_id),
                # No reason: the conference's own REMOVED, as for every removal by a service.
                body=conference_api.RemoveParticipantCommand(conference_id=conference_id, user_id=user_id),
            ),
            Empty,
        )
        if isinstance(reply, Rejected) and reply.status not in _GONE:
            raise _refused(f"user {user_id} could not be removed from conference {conference_id}", reply)

    async def end(self, organization_id: str, conference_id: str) -> None:
        """End it; unknown (404) or already ended (409) is done. Raises while the service cannot answer."""
        reply = await self._rpc.request(
            subjects.conference_command("end"),
            Request(
                caller=service_caller(organization_id),
                body=conference_api.EndConferenceWebCommand(
                    conference_id=conference_id, user_endpoint_id=SERVICE_USER, reason=ROOM_DELETED
                ),
            ),
            Empty,
        )
        if isinstance(reply, Rejected) and reply.status not in _GONE:
            raise _refused(f"conference {conference_id} could not be ended", reply)
