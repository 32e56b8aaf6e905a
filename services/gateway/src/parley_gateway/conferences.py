"""The conference API (`/rtc-api/conferences/...`): each operation forwards to the conference service."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from aiohttp import web
from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js.errors import ObjectNotFoundError
from parley_common.contracts import conference as api
from parley_common.contracts.base import Id
from parley_common.contracts.media import RecordingLocation, RecordingQuery
from parley_common.contracts.rpc import Caller, Rejected, Request
from parley_common.jsonlimits import INT64_MIN
from parley_common.messaging import subjects
from parley_common.messaging.rpc import RpcClient

from parley_gateway.http import BadRequest, error_response, json_response, parse_int
from parley_gateway.operations import (
    Handler,
    Operation,
    QueryParam,
    authenticated,
    reply_response,
    rpc_command,
)
from parley_gateway.waiters import ConferenceWaiters

TAG = "Conferences"
BASE = "/rtc-api/conferences"


def conference_operations(
    rpc: RpcClient,
    waiters: ConferenceWaiters,
    objects: JetStreamContext,
    *,
    longpoll_seconds: float,
    media_timeout: float,
) -> list[Operation]:
    def command(
        op: str,
        body: Any,
        summary: str,
        response: Any = None,
        status: int = 204,
        timeout: float | None = None,
    ) -> Operation:
        return rpc_command(
            rpc,
            subjects.conference_command(op),
            path=f"{BASE}/{op}",
            operation_id=op,
            summary=summary,
            tag=TAG,
            body=body,
            response=response,
            status=status,
            timeout=timeout,
            meeting_tokens=True,
        )

    def view(op: str, response: Any) -> Handler:
        subject = subjects.conference_query(op)

        async def handle(request: web.Request, caller: Caller | None, _: Any) -> web.StreamResponse:
            query = api.GetConferenceQuery(
                conference_id=request.match_info["id"], user_endpoint_id=request.query.get("userEndpointId")
            )
            reply = await rpc.request(subject, Request(caller=authenticated(caller), body=query), response)
            return reply_response(request, reply, 200)

        return handle

    async def events(request: web.Request, caller: Caller | None, _: Any) -> web.StreamResponse:
        conference_id = request.match_info["id"]
        raw_version = request.query.get("v")
        if raw_version is None:
            raise BadRequest("query parameter v is required")
        # Negative versions have always meant "from the start" (the repository clamps them): still accepted.
        from_version = parse_int(raw_version, "query parameter v", minimum=INT64_MIN)
        who = authenticated(caller)
        query = Request(
            caller=who,
            body=api.ConferenceEventsQuery(
                conference_id=conference_id,
                from_version=from_version,
                user_endpoint_id=request.query.get("userEndpointId"),
            ),
        )
        deadline = time.monotonic() + longpoll_seconds
        # Watch before the first read, so a change committed in between still wakes the poll.
        with waiters.watch(who.organization_id, conference_id) as changed:
            while True:
                changed.clear()
                reply = await rpc.request(subjects.conference_query("events"), query, api.ConferenceEvents)
                if isinstance(reply, Rejected):
                    return reply_response(request, reply, 200)
                remaining = deadline - time.monotonic()
                if reply.value.events or remaining <= 0:
                    return json_response(reply.value.events)
                # Woken or not, read once more: the last read also tells the service the poller is alive.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(changed.wait(), timeout=remaining)

    async def recording(request: web.Request, caller: Caller | None, _: Any) -> web.StreamResponse:
        query = RecordingQuery(
            conference_id=request.match_info["id"], recording_id=request.match_info["recordingId"]
        )
        reply = await rpc.request(
            subjects.conference_query("recording"),
            Request(caller=authenticated(caller), body=query),
            RecordingLocation,
        )
        if isinstance(reply, Rejected):
            return reply_response(request, reply, 200)
        location = reply.value
        try:
            store = await objects.object_store(location.bucket)
            found = await store.get(location.object_name)
        except ObjectNotFoundError:
            return error_response(request, 404, f"recording {location.recording_id} not found")
        except (NatsError, TimeoutError):
            return error_response(request, 503, "service unavailable: object store not answering")
        return web.Response(
            body=found.data,
            content_type=location.mime_type.split(";")[0],
            headers={
                "Content-Disposition": f'attachment; filename="{location.recording_id}.webm"',
            },
        )

    def media(op: str, body: Any, summary: str, response: Any = None, status: int = 204) -> Operation:
        return command(op, body, summary, response, status, timeout=media_timeout)

    return [
        command("create", api.CreateConferenceWebCommand, "Create a conference", api.ConferenceSummary, 200),
        command(
            "join",
            api.JoinConferenceWebCommand,
            "Join a conference as a user endpoint ({lobby: true}: it waits in the lobby to be admitted)",
            api.ConferenceJoinResult,
            200,
        ),
        command("leave", api.LeaveConferenceWebCommand, "Leave a conference (or its lobby)"),
        command("end", api.EndConferenceWebCommand, "End a conference for everyone"),
        command(
            "admitLobbyEndpoint",
            api.AdmitLobbyEndpointWebCommand,
            "Let an endpoint waiting in the lobby in (a moderator in the call, or a user without a grant)",
        ),
        command(
            "rejectLobbyEndpoint",
            api.RejectLobbyEndpointWebCommand,
            "Turn an endpoint waiting in the lobby away (a moderator in the call, or a user without a grant)",
        ),
        command(
            "updateMetadata",
            api.UpdateConferenceMetadataWebCommand,
            "Set or remove a conference metadata key",
        ),
        command(
            "updateParticipantMetadata",
            api.UpdateConferenceParticipantMetadataWebCommand,
            "Replace the metadata of the calling participant",
        ),
        command(
            "sendEvent",
            api.SendEventToConferenceWebCommand,
            "Send an event to every endpoint in the conference",
            api.SendEventResponse,
            200,
        ),
        media(
            "publishStream",
            api.ConferencePublishStreamWebCommand,
            "Publish a stream: answers the SDP offer (ICE candidates included)",
            api.ConferencePublishResult,
            200,
        ),
        media("unpublishStream", api.ConferenceUnpublishStreamWebCommand, "Stop publishing a stream"),
        media(
            "viewStream",
            api.ConferenceViewStreamWebCommand,
            "View a published stream: answers a recvonly SDP offer",
            api.ConferenceStreamViewResult,
            200,
        ),
        media("stopViewStream", api.ConferenceStopViewStreamWebCommand, "Stop viewing a stream"),
        media(
            "addPublishStreamIceCandidates",
            api.ConferencePublishStreamIceCandidatesWebCommand,
            "Trickle ICE candidates of a publisher (before or after the answer)",
        ),
        media(
            "addViewStreamIceCandidates",
            api.ConferenceViewStreamIceCandidatesWebCommand,
            "Trickle ICE candidates of a viewer",
        ),
        command(
            "updatePublishedStreamBitrate",
            api.ConferenceUpdatePublishedStreamBitrateWebCommand,
            "Ask the publisher to send at most videoBitrate (the publishing client applies it)",
        ),
        command(
            "updateStreamMetadata",
            api.UpdateConferenceStreamMetadataWebCommand,
            "Replace the metadata of a published stream",
        ),
        Operation(
            method="GET",
            path=BASE + "/{id}/recordings/{recordingId}",
            operation_id="getConferenceRecording",
            summary="Download a recording listed in the conference metadata key RECORDINGS (webm)",
            tag=TAG,
            meeting_tokens=True,
            handler=recording,
            binary_response="video/webm",
            errors=(401, 404, 503),
        ),
        Operation(
            method="GET",
            path=BASE + "/{id}",
            operation_id="getConference",
            summary="Get a conference",
            tag=TAG,
            meeting_tokens=True,
            handler=view("get", api.Conference),
            response=api.Conference,
            query=(
                QueryParam("userEndpointId", Id, description="the polling endpoint (counts as keep-alive)"),
            ),
        ),
        Operation(
            method="GET",
            path=BASE + "/{id}/simpleView",
            operation_id="getConferenceSimpleView",
            summary="Get a conference with endpoints grouped by user",
            tag=TAG,
            meeting_tokens=True,
            handler=view("simpleView", api.ConferenceSimpleView),
            response=api.ConferenceSimpleView,
            query=(
                QueryParam("userEndpointId", Id, description="the polling endpoint (counts as keep-alive)"),
            ),
        ),
        Operation(
            method="GET",
            path=BASE + "/{id}/events",
            operation_id="getConferenceEvents",
            summary="Events with conferenceVersion >= v, in order; waits a few seconds for one when none",
            tag=TAG,
            meeting_tokens=True,
            handler=events,
            response=list[api.AnyConferenceEvent],
            query=(
                QueryParam("v", int, required=True, description="the first conferenceVersion wanted"),
                QueryParam("userEndpointId", Id, description="the polling endpoint (counts as keep-alive)"),
            ),
        ),
    ]
