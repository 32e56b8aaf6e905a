"""The SourceFuse video-conferencing API at the root: `/session...`, `/webhooks/session`, `/archives...`.

A thin dialect over the meeting model (`parley_common.contracts.meeting`): each route is declared once as an
`Operation`, translates its HTTP shape (the seed's camelCase bodies, declared in the contracts) into one of
the model's bus operations with `dialect="sourcefuse"`, and the answer back. Every rule and message is the
conference service's; the gateway only adds what it alone can do:

- the permission key of each route (the seed's Permissions tables) must be in the token's `permissions`
  claim, else 403 `Not Allowed Access` (checked by the route wrapper, `Operation.permission`);
- `POST /session/{id}/token` signs the pass the conference service grants into a Parley JWT (the gateway
  holds the key): claim `meeting` = the grant, `sub` a new UUID, `exp` = the pass's expiry, `name` = `data`;
- `POST /webhooks/session` comes from a media provider without a bearer: with
  `PARLEY_SESSION_WEBHOOK_SECRET` set it must carry that secret (query `secret` or HTTP Basic password).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import uuid
from typing import Any

import msgspec
from aiohttp import web
from parley_common.contracts import meeting
from parley_common.contracts.base import Empty
from parley_common.contracts.rpc import Accepted, Caller, Rejected, Request
from parley_common.messaging import subjects
from parley_common.messaging.rpc import RpcClient

from parley_gateway.http import error_response, json_response, read_body
from parley_gateway.identity import TokenIssuer
from parley_gateway.operations import Operation, QueryParam, authenticated

TAG = "SourceFuse"
DIALECT: meeting.Dialect = "sourcefuse"
WEBHOOK_SECRET_REFUSED = (
    "the session webhook needs the configured secret (query secret or HTTP Basic password)"
)
CANNOT_SIGN = "this gateway does not sign meeting tokens (no PARLEY_JWT_SECRET)"
# Who the conference service hears the provider's webhook from: no user, no organization (the session id
# names the conference, whichever organization holds it).
WEBHOOK_CALLER_ID = "sourcefuse-webhook"

Attendees = tuple[meeting.SessionAttendee, ...]


async def ask(rpc: RpcClient, op: str, caller: Caller, body: Any) -> Accepted[Any] | Rejected:
    """One of the model's operations on the bus: `parley.cmd|qry.meeting.<op>`."""
    operation = meeting.OPERATIONS[op]
    subject = subjects.meeting_command(op) if operation.kind == "cmd" else subjects.meeting_query(op)
    return await rpc.request(subject, Request(caller=caller, body=body), operation.result)


def answer(request: web.Request, reply: Accepted[Any] | Rejected, status: int = 204) -> web.StreamResponse:
    """A reply with nothing to show: its rejection as `{message, traceId}`, else an empty `status`."""
    if isinstance(reply, Rejected):
        return error_response(request, reply.status, reply.message)
    return web.Response(status=status)


def attendee(view: meeting.AttendeeView) -> meeting.SessionAttendee:
    return meeting.SessionAttendee(
        id=view.id,
        # SourceFuse's sessionId is the conference, as in the token's answer.
        session_id=view.conference_id,
        attendee=view.attendee,
        created_on=view.created_on,
        is_deleted=view.is_deleted,
        modified_on=view.modified_on,
        ext_id=view.ext_id,
        ext_metadata=view.ext_metadata,
    )


def archive(view: meeting.ArchiveView, origin: str) -> meeting.ArchiveResponse:
    """An archive in SourceFuse's shape; `metaData` holds what the real service gets from its provider."""
    return meeting.ArchiveResponse(
        id=view.archive_id,
        session_id=view.conference_id,
        name=view.name,
        meta_data={
            "meetingLinkId": view.meeting_id,
            "recordingId": view.recording_id,
            "streamId": view.stream_id,
            "bytes": view.bytes,
            "mimeType": view.mime_type,
            "duration": view.duration_seconds,
            "createdAt": msgspec.to_builtins(view.created_at),
            # Absolute, as the provider's download URL is: a client follows it as is.
            "url": origin + view.url,
            "uploads": msgspec.to_builtins(view.uploads),
        },
    )


def webhook_secret_matches(request: web.Request, secret: str) -> bool:
    """Whether the request carries `secret` as query `secret` or as the HTTP Basic password."""
    presented: list[str] = request.query.getall("secret", [])
    scheme, _, credentials = request.headers.get("Authorization", "").strip().partition(" ")
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(credentials.strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            decoded = ""
        _, sep, password = decoded.partition(":")
        if sep:
            presented.append(password)
    expected = secret.encode()
    # Every candidate is compared in full (constant time each), so timing tells nothing of the secret.
    matches = [hmac.compare_digest(candidate.encode(), expected) for candidate in presented]
    return any(matches)


def sourcefuse_operations(rpc: RpcClient, issuer: TokenIssuer, webhook_secret: str | None) -> list[Operation]:
    async def create_session(
        request: web.Request, caller: Caller | None, options: meeting.MeetingOptions
    ) -> web.StreamResponse:
        body = meeting.CreateMeeting(
            dialect=DIALECT,
            scheduled=options.is_scheduled,
            starts_at=options.schedule_time,
            archiving=options.enable_archiving,
            end_to_end_encryption=options.end_to_end_encryption,
        )
        reply = await ask(rpc, "createMeeting", authenticated(caller), body)
        if isinstance(reply, Rejected):
            return error_response(request, reply.status, reply.message)
        # The real service answers the meeting link id as a JSON string.
        return json_response(reply.value.meeting_id)

    async def session_token(
        request: web.Request, caller: Caller | None, options: meeting.SessionOptions
    ) -> web.StreamResponse:
        known = authenticated(caller)
        # Before the pass: issuing it starts the meeting, which a token nobody can sign must not do.
        if not issuer.can_issue:
            return error_response(request, 503, CANNOT_SIGN)
        expire_time = options.expire_time
        body = meeting.IssuePass(
            dialect=DIALECT,
            meeting_id=request.match_info["meetingLinkId"],
            role=options.role or "publisher",
            data=options.data,
            # Epoch milliseconds travel as their digits: the domain reads both forms.
            expire_time=str(expire_time) if isinstance(expire_time, int) else expire_time,
        )
        reply = await ask(rpc, "issuePass", known, body)
        if isinstance(reply, Rejected):
            return error_response(request, reply.status, reply.message)
        granted: meeting.MeetingPass = reply.value
        token = issuer.issue(
            user_id=str(uuid.uuid4()),
            organization_id=known.organization_id,
            name=options.data,
            expires_at=granted.expires_at,
            not_before=granted.not_before,
            grant=granted.grant,
        )
        return json_response(meeting.SessionResponse(session_id=granted.grant.conference_id, token=token))

    async def end_session(request: web.Request, caller: Caller | None, _: Any) -> web.StreamResponse:
        body = meeting.MeetingRef(dialect=DIALECT, meeting_id=request.match_info["meetingLinkId"])
        return answer(request, await ask(rpc, "endMeeting", authenticated(caller), body))

    async def edit_session(
        request: web.Request, caller: Caller | None, edit: meeting.VideoChatSessionPartial
    ) -> web.StreamResponse:
        # Only the schedule is acted on, as in the real service; the seed's other fields are read-only.
        body = meeting.UpdateMeeting(
            dialect=DIALECT,
            meeting_id=request.match_info["meetingLinkId"],
            scheduled=edit.is_scheduled,
            starts_at=edit.schedule_time,
        )
        return answer(request, await ask(rpc, "updateMeeting", authenticated(caller), body))

    async def attendees(request: web.Request, caller: Caller | None, _: Any) -> web.StreamResponse:
        body = meeting.ListAttendees(
            dialect=DIALECT,
            meeting_id=request.match_info["meetingLinkId"],
            # The real service: exactly "true" lists the present ones; anything else, everyone.
            active_only=request.query.get("active") == "true",
        )
        reply = await ask(rpc, "listAttendees", authenticated(caller), body)
        if isinstance(reply, Rejected):
            return error_response(request, reply.status, reply.message)
        return json_response([attendee(view) for view in reply.value.items])

    async def session_webhook(request: web.Request, _: Caller | None, __: Any) -> web.StreamResponse:
        # The secret before the body: an unauthenticated sender learns nothing about what it sent.
        if webhook_secret is not None and not webhook_secret_matches(request, webhook_secret):
            return error_response(request, 401, WEBHOOK_SECRET_REFUSED)
        payload = await read_body(request, meeting.AttendanceWebhook)
        caller = Caller(organization_id="", user_id=WEBHOOK_CALLER_ID, request_id=str(request["request_id"]))
        return answer(request, await ask(rpc, "attendanceWebhook", caller, payload))

    async def list_archives(request: web.Request, caller: Caller | None, _: Any) -> web.StreamResponse:
        reply = await ask(rpc, "listArchives", authenticated(caller), Empty())
        if isinstance(reply, Rejected):
            return error_response(request, reply.status, reply.message)
        origin = str(request.url.origin())
        items = tuple(archive(view, origin) for view in reply.value.items)
        return json_response(meeting.ArchiveResponseList(count=len(items), items=items))

    async def get_archive(request: web.Request, caller: Caller | None, _: Any) -> web.StreamResponse:
        body = meeting.ArchiveRef(archive_id=request.match_info["archiveId"])
        reply = await ask(rpc, "getArchive", authenticated(caller), body)
        if isinstance(reply, Rejected):
            return error_response(request, reply.status, reply.message)
        return json_response(archive(reply.value, str(request.url.origin())))

    async def delete_archive(request: web.Request, caller: Caller | None, _: Any) -> web.StreamResponse:
        body = meeting.ArchiveRef(archive_id=request.match_info["archiveId"])
        # 200 with an empty body, as the seed says.
        return answer(request, await ask(rpc, "deleteArchive", authenticated(caller), body), 200)

    async def storage_target(
        request: web.Request, caller: Caller | None, target: meeting.StorageTarget
    ) -> web.StreamResponse:
        return answer(request, await ask(rpc, "setStorageTarget", authenticated(caller), target), 200)

    def op(method: str, path: str, operation_id: str, summary: str, **kwargs: Any) -> Operation:
        return Operation(
            method=method, path=path, operation_id=operation_id, summary=summary, tag=TAG, **kwargs
        )

    return [
        op(
            "POST",
            "/session",
            "createMeetingSession",
            "Create a meeting (a Parley conference behind it); answers its meeting link id",
            handler=create_session,
            body=meeting.MeetingOptions,
            response=str,
            permission="CreateMeetingSession",
        ),
        op(
            "POST",
            "/session/{meetingLinkId}/token",
            "generateMeetingToken",
            "A token for the meeting's conference (sessionId) with a role, for /rtc-api/conferences/join",
            handler=session_token,
            body=meeting.SessionOptions,
            response=meeting.SessionResponse,
            permission="GenerateMeetingToken",
        ),
        op(
            "PATCH",
            "/session/{meetingLinkId}/end",
            "stopMeeting",
            "End the meeting and its conference; its tokens stop working",
            handler=end_session,
            status=204,
            permission="StopMeeting",
        ),
        op(
            "PATCH",
            "/session/{meetingLinkId}",
            "editMeeting",
            "Change the meeting's schedule (isScheduled, scheduleTime)",
            handler=edit_session,
            body=meeting.VideoChatSessionPartial,
            status=204,
            permission="EditMeeting",
        ),
        op(
            "GET",
            "/session/{meetingLinkId}/attendees",
            "getMeetingAttendees",
            "The meeting's attendees (active=true: only those present)",
            handler=attendees,
            response=Attendees,
            query=(QueryParam("active", str, description='"true": only attendees still present'),),
            permission="GetMeetingAttendees",
        ),
        op(
            "POST",
            "/webhooks/session",
            "sessionWebhook",
            "A media provider's session event (Vonage-shaped): attendees join and leave",
            handler=session_webhook,
            public=True,
            # Read by the handler after the secret check, so documented as a (JSON) form.
            form=meeting.AttendanceWebhook,
            form_media_types=("application/json",),
            status=204,
            errors=(400, 401, 503),
        ),
        op(
            "GET",
            "/archives",
            "getMeetingArchives",
            "The organization's archives (recordings of its meetings' conferences)",
            handler=list_archives,
            response=meeting.ArchiveResponseList,
            permission="GetMeetingArchives",
        ),
        op(
            "GET",
            "/archives/{archiveId}",
            "getMeetingArchive",
            "One archive, with its absolute download URL in metaData",
            handler=get_archive,
            response=meeting.ArchiveResponse,
            permission="GetMeetingArchives",
        ),
        op(
            "DELETE",
            "/archives/{archiveId}",
            "deleteMeetingArchive",
            "Delete an archive and its bytes",
            handler=delete_archive,
            permission="DeleteMeetingArchive",
        ),
        op(
            "PUT",
            "/archives/storage-target",
            "setMeetingUploadTarget",
            "Where the organization's new archives are also uploaded (AWSS3 or AZURE)",
            handler=storage_target,
            body=meeting.StorageTarget,
            permission="SetMeetingUploadTarget",
        ),
    ]
