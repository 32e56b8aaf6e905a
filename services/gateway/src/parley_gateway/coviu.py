"""The Coviu session API under `/v1` (`shared/seeds/coviu-session-api.txt`): a thin meeting dialect.

Each route is one `Operation` whose handler translates the seed's snake_case shapes
(`parley_common.contracts.meeting`, the Coviu section) to the model's bus operations (`dialect="coviu"`)
and back. Every rule (start in the future, cancel before the start, another organization's session is
404, ...) is the conference service's; the dialect only checks that parameters read as the seed says
(`Invalid <name>`, the seed's wording) and words the answers: roles `HOST`/`GUEST`, times as sent, and
`entry_url`, a `/demo/` link carrying the participant's own meeting token (valid from the session's start
to its end: `nbf`/`exp`).

`POST /v1/auth/token` is the gateway's OAuth endpoint (`identity.process_token_request`) with refresh
tokens on, under Coviu's path and `token_type: "Bearer"`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import msgspec
from aiohttp import web
from parley_common.clock import parse_instant, rfc3339
from parley_common.contracts import meeting as m
from parley_common.contracts.rpc import Accepted, Caller, Rejected, Request
from parley_common.messaging import subjects
from parley_common.messaging.rpc import RpcClient

from parley_gateway.http import BadRequest, error_response, json_response
from parley_gateway.identity import (
    OAuthClients,
    OAuthError,
    RefreshableTokenResponse,
    ScopeText,
    TokenIssuer,
    handle_token_request,
)
from parley_gateway.operations import Operation, QueryParam, authenticated

TAG = "Coviu"
DIALECT: m.Dialect = "coviu"
PREFIX = "/v1"
DEMO_PATH = "/demo/"

# A host goes straight in and may end the call and let guests in; a guest waits to be let in.
HOST = m.InvitationFields(role="moderator", lobby=False)
GUEST = m.InvitationFields(role="publisher", lobby=True)
ROLES: dict[str, m.InvitationFields] = {"host": HOST, "guest": GUEST}

DateTimeText = Annotated[str, msgspec.Meta(max_length=64, extra_json_schema={"format": "date-time"})]
Order = Literal["forward", "reverse", "backwards"]
PageNumber = Annotated[int, msgspec.Meta(ge=0, le=2**31 - 1)]
PageSize = Annotated[int, msgspec.Meta(ge=1, le=200)]


def _invalid(name: str) -> str:
    return f"Invalid {name}"


def _query(name: str, type_: Any, description: str) -> QueryParam:
    return QueryParam(name, type_, description=description, error=_invalid(name))


DELETED_PARTICIPANTS = _query(
    "deleted_participants", bool, "Also include participants that have been removed from the session."
)
PAGE_QUERY = (
    _query("page", PageNumber, "The page number to return (from 0)"),
    _query("page_size", PageSize, "The number of sessions per page. Max 200. Default 200."),
    _query(
        "start_time", DateTimeText, "Includes sessions that start at or after start_time (RFC 3339 or 1123)."
    ),
    _query("end_time", DateTimeText, "Include sessions that start up to and including end_time."),
    _query("include_canceled", bool, "Includes sessions that have been canceled."),
    DELETED_PARTICIPANTS,
    _query("state", m.Text, "Return only sessions containing participants with the supplied state value."),
    _query("order", Order, "forward: oldest first; reverse or backwards: newest first."),
)


class CoviuTokenForm(msgspec.Struct, frozen=True, kw_only=True):
    """`POST /v1/auth/token`'s fields, for the OpenAPI document (`identity._read_fields` reads them)."""

    grant_type: Literal["client_credentials", "refresh_token"]
    refresh_token: str = ""
    client_id: str = ""
    client_secret: str = ""
    scope: ScopeText = ""


CoviuTokenBody = Annotated[
    CoviuTokenForm, msgspec.Meta(extra_json_schema={"additionalProperties": {"type": "string"}})
]


# ---------------------------------------------------------------- translation, both ways


def invitation_fields(request: m.ParticipantCreationRequest) -> m.InvitationFields:
    """A participant as the model invites it: the role (host/guest, any case, default guest) as a grant."""
    grant = GUEST if request.role is None else ROLES.get(request.role.lower())
    if grant is None:
        raise BadRequest(f"{_invalid('role')}: expected host or guest")
    return msgspec.structs.replace(
        grant, display_name=request.display_name, picture=request.picture, state=request.state
    )


def parse_time(text: str, name: str) -> datetime:
    """An instant (`parley_common.clock.parse_instant`: RFC 3339, or RFC 1123 as `toUTCString()` writes it);
    BadRequest `Invalid <name>` otherwise."""
    value = parse_instant(text)
    if value is None:
        raise BadRequest(_invalid(name))
    return value


def _time(value: datetime | None) -> str | None:
    return None if value is None else rfc3339(value)


def role_out(role: m.MeetingRole) -> Literal["HOST", "GUEST"]:
    return "HOST" if role == "moderator" else "GUEST"


class EntryLinks:
    """Mints `entry_url`s: the `/demo/` page with the participant's meeting token in `?access_token=`."""

    def __init__(self, issuer: TokenIssuer, public_url: str | None) -> None:
        self._issuer = issuer
        self._public_url = public_url

    def base(self, request: web.Request) -> str:
        # Behind a proxy, PARLEY_PUBLIC_URL says where browsers reach the gateway.
        return self._public_url or f"{request.scheme}://{request.host}"

    def url(self, base: str, meeting: m.MeetingView, invitation: m.InvitationView) -> str:
        # An external IdP only: nothing to sign a meeting token with. A session that is over: no token
        # could still be used, so the link is the bare page.
        over = meeting.ends_at is not None and meeting.ends_at <= datetime.now(UTC)
        if not self._issuer.can_issue or over:
            return base + DEMO_PATH
        grant = m.MeetingGrant(
            meeting_id=meeting.meeting_id,
            conference_id=meeting.conference_id,
            role=invitation.role,
            lobby=invitation.lobby,
            attendee=invitation.invitation_id,
        )
        token = self._issuer.issue(
            user_id=invitation.invitation_id,
            organization_id=meeting.organization_id,
            name=invitation.display_name,
            not_before=meeting.starts_at,
            expires_at=meeting.ends_at,
            grant=grant,
        )
        # A compact JWT is base64url and dots: URL-safe as it is.
        return f"{base}{DEMO_PATH}?access_token={token}"


class Translator:
    """The model's views as Coviu's shapes, for one request (its base URL)."""

    def __init__(self, links: EntryLinks, base: str) -> None:
        self._links = links
        self._base = base

    def participant(self, meeting: m.MeetingView, invitation: m.InvitationView) -> m.Participant:
        return m.Participant(
            participant_id=invitation.invitation_id,
            session_id=meeting.meeting_id,
            client_id=meeting.created_by,
            role=role_out(invitation.role),
            entry_url=self._links.url(self._base, meeting, invitation),
            display_name=invitation.display_name,
            picture=invitation.picture,
            state=invitation.state,
            deleted_at=_time(invitation.removed_at),
        )

    def session(self, meeting: m.MeetingView) -> m.Session:
        return m.Session(
            session_id=meeting.meeting_id,
            team_id=meeting.organization_id,
            client_id=meeting.created_by,
            # The very strings the client sent (its SDK compares them), else the instants.
            start_time=meeting.starts_at_text or _time(meeting.starts_at) or "",
            end_time=meeting.ends_at_text or _time(meeting.ends_at) or "",
            session_name=meeting.name,
            picture=meeting.picture,
            feature_flags=meeting.feature_flags,
            canceled_time=_time(meeting.canceled_at),
            participants=tuple(self.participant(meeting, i) for i in meeting.invitations),
        )


# ---------------------------------------------------------------- the bus


class Meetings:
    """The model's operations on the bus, as one caller."""

    def __init__(self, rpc: RpcClient) -> None:
        self._rpc = rpc

    async def ask(self, op: str, caller: Caller, body: Any) -> Accepted[Any] | Rejected:
        operation = m.OPERATIONS[op]
        subject = subjects.meeting_command(op) if operation.kind == "cmd" else subjects.meeting_query(op)
        return await self._rpc.request(subject, Request(caller=caller, body=body), operation.result)


def _param(request: web.Request, name: str, type_: Any, default: Any) -> Any:
    # Already checked against its type by the route (400 `Invalid <name>`): read it the same way.
    raw = request.query.get(name)
    return default if raw is None else msgspec.convert(raw, type_, strict=False)


def _flag(request: web.Request, name: str) -> bool:
    return bool(_param(request, name, bool, False))


def coviu_operations(
    rpc: RpcClient, issuer: TokenIssuer, clients: OAuthClients, public_url: str | None
) -> list[Operation]:
    meetings = Meetings(rpc)
    links = EntryLinks(issuer, public_url)

    def translator(request: web.Request) -> Translator:
        return Translator(links, links.base(request))

    def refused(request: web.Request, reply: Rejected) -> web.Response:
        return error_response(request, reply.status, reply.message)

    async def session_answer(request: web.Request, caller: Caller, op: str, body: Any) -> web.StreamResponse:
        reply = await meetings.ask(op, caller, body)
        if isinstance(reply, Rejected):
            return refused(request, reply)
        return json_response(translator(request).session(reply.value))

    async def participant_answer(
        request: web.Request, caller: Caller, reply: Accepted[Any] | Rejected
    ) -> web.StreamResponse:
        """An invitation as a participant: its session (schedule, conference, client) comes from the model."""
        if isinstance(reply, Rejected):
            return refused(request, reply)
        invitation: m.InvitationView = reply.value
        found = await meetings.ask(
            "getMeeting",
            caller,
            m.GetMeeting(dialect=DIALECT, meeting_id=invitation.meeting_id, include_removed=True),
        )
        if isinstance(found, Rejected):
            return refused(request, found)
        return json_response(translator(request).participant(found.value, invitation))

    async def create_session(
        request: web.Request, caller: Caller | None, body: m.SessionCreationRequest
    ) -> web.StreamResponse:
        command = m.CreateMeeting(
            dialect=DIALECT,
            name=body.session_name,
            picture=body.picture,
            feature_flags=body.feature_flags,
            scheduled=True,
            starts_at=body.start_time,
            ends_at=body.end_time,
            invitations=tuple(invitation_fields(p) for p in body.participants),
        )
        return await session_answer(request, authenticated(caller), "createMeeting", command)

    async def get_session_page(request: web.Request, caller: Caller | None, _: Any) -> web.StreamResponse:
        query = request.query
        starts_from = query.get("start_time")
        starts_until = query.get("end_time")
        listing = m.ListMeetings(
            dialect=DIALECT,
            page=_param(request, "page", PageNumber, 0),
            page_size=_param(request, "page_size", PageSize, 200),
            starts_from=parse_time(starts_from, "start_time") if starts_from is not None else None,
            starts_until=parse_time(starts_until, "end_time") if starts_until is not None else None,
            include_canceled=_flag(request, "include_canceled"),
            include_removed=_flag(request, "deleted_participants"),
            state=query.get("state"),
            reverse=query.get("order", "forward") != "forward",
        )
        reply = await meetings.ask("listMeetings", authenticated(caller), listing)
        if isinstance(reply, Rejected):
            return refused(request, reply)
        page: m.MeetingPage = reply.value
        words = translator(request)
        return json_response(
            m.SessionPage(
                content=tuple(words.session(item) for item in page.items),
                more=page.more,
                page=page.page,
                page_size=page.page_size,
                page_count=page.page_count,
            )
        )

    async def get_session(request: web.Request, caller: Caller | None, _: Any) -> web.StreamResponse:
        query = m.GetMeeting(
            dialect=DIALECT,
            meeting_id=request.match_info["session_id"],
            include_removed=_flag(request, "deleted_participants"),
        )
        return await session_answer(request, authenticated(caller), "getMeeting", query)

    async def update_session(
        request: web.Request, caller: Caller | None, body: m.SessionUpdateRequest
    ) -> web.StreamResponse:
        command = m.UpdateMeeting(
            dialect=DIALECT,
            meeting_id=request.match_info["session_id"],
            name=body.session_name,
            picture=body.picture,
            starts_at=body.start_time,
            ends_at=body.end_time,
        )
        return await session_answer(request, authenticated(caller), "updateMeeting", command)

    async def delete_session(request: web.Request, caller: Caller | None, _: Any) -> web.StreamResponse:
        ref = m.MeetingRef(dialect=DIALECT, meeting_id=request.match_info["session_id"])
        reply = await meetings.ask("cancelMeeting", authenticated(caller), ref)
        if isinstance(reply, Rejected):
            return refused(request, reply)
        return json_response(m.UnitResponse(ok=True))

    async def add_participant(
        request: web.Request, caller: Caller | None, body: m.ParticipantCreationRequest
    ) -> web.StreamResponse:
        command = m.Invite(
            dialect=DIALECT, meeting_id=request.match_info["session_id"], invitation=invitation_fields(body)
        )
        known = authenticated(caller)
        return await participant_answer(request, known, await meetings.ask("invite", known, command))

    async def get_participants(request: web.Request, caller: Caller | None, _: Any) -> web.StreamResponse:
        known = authenticated(caller)
        session_id = request.match_info["session_id"]
        found = await meetings.ask(
            "getMeeting", known, m.GetMeeting(dialect=DIALECT, meeting_id=session_id, include_removed=True)
        )
        if isinstance(found, Rejected):
            return refused(request, found)
        listing = m.ListInvitations(
            dialect=DIALECT, meeting_id=session_id, include_removed=_flag(request, "deleted_participants")
        )
        reply = await meetings.ask("listInvitations", known, listing)
        if isinstance(reply, Rejected):
            return refused(request, reply)
        page: m.InvitationPage = reply.value
        words = translator(request)
        return json_response(
            m.ParticipantPage(
                content=tuple(words.participant(found.value, item) for item in page.items),
                more=page.more,
                page=page.page,
                page_size=page.page_size,
                page_count=page.page_count,
            )
        )

    async def get_participant(request: web.Request, caller: Caller | None, _: Any) -> web.StreamResponse:
        known = authenticated(caller)
        ref = m.InvitationRef(dialect=DIALECT, invitation_id=request.match_info["participant_id"])
        return await participant_answer(request, known, await meetings.ask("getInvitation", known, ref))

    async def update_participant(
        request: web.Request, caller: Caller | None, body: m.ParticipantUpdateRequest
    ) -> web.StreamResponse:
        known = authenticated(caller)
        # A role sent changes the grant (role and lobby together); fields not sent stay as they are.
        grant = invitation_fields(body) if body.role is not None else None
        command = m.UpdateInvitation(
            dialect=DIALECT,
            invitation_id=request.match_info["participant_id"],
            role=grant.role if grant else None,
            lobby=grant.lobby if grant else None,
            display_name=body.display_name,
            picture=body.picture,
            state=body.state,
        )
        return await participant_answer(
            request, known, await meetings.ask("updateInvitation", known, command)
        )

    async def delete_participant(request: web.Request, caller: Caller | None, _: Any) -> web.StreamResponse:
        ref = m.InvitationRef(dialect=DIALECT, invitation_id=request.match_info["participant_id"])
        reply = await meetings.ask("removeInvitation", authenticated(caller), ref)
        if isinstance(reply, Rejected):
            return refused(request, reply)
        return json_response(m.UnitResponse(ok=True))

    async def token(request: web.Request, _: Caller | None, __: Any) -> web.StreamResponse:
        return await handle_token_request(request, issuer, clients, refresh=True, token_type="Bearer")

    session_path = f"{PREFIX}/sessions/{{session_id}}"
    participant_path = f"{PREFIX}/participants/{{participant_id}}"
    return [
        Operation(
            method="POST",
            path=f"{PREFIX}/auth/token",
            operation_id="coviuToken",
            summary="OAuth2 token: client_credentials or refresh_token grant (client by HTTP Basic)",
            tag=TAG,
            handler=token,
            public=True,
            form=CoviuTokenBody,
            form_media_types=("application/x-www-form-urlencoded", "application/json"),
            response=RefreshableTokenResponse,
            errors=(),
            extra_responses={
                400: "invalid_request / invalid_grant / unsupported_grant_type",
                401: "invalid_client",
            },
            extra_response_body=OAuthError,
        ),
        Operation(
            "POST",
            f"{PREFIX}/sessions",
            "createSession",
            "Create a session (start in the future, end after the start)",
            TAG,
            create_session,
            body=m.SessionCreationRequest,
            response=m.Session,
        ),
        Operation(
            "GET",
            f"{PREFIX}/sessions",
            "getSessionPage",
            "A page of the organization's sessions",
            TAG,
            get_session_page,
            response=m.SessionPage,
            query=PAGE_QUERY,
        ),
        Operation(
            "GET",
            session_path,
            "getSessionById",
            "One session with its participants",
            TAG,
            get_session,
            response=m.Session,
            query=(DELETED_PARTICIPANTS,),
        ),
        Operation(
            "PUT",
            session_path,
            "updateSession",
            "Change a session's times, name or picture (not after it finished)",
            TAG,
            update_session,
            body=m.SessionUpdateRequest,
            response=m.Session,
        ),
        Operation(
            "DELETE",
            session_path,
            "deleteSession",
            "Cancel a session that has not started",
            TAG,
            delete_session,
            response=m.UnitResponse,
        ),
        Operation(
            "POST",
            f"{session_path}/participants",
            "addSessionParticipant",
            "Add a participant (not to a finished session)",
            TAG,
            add_participant,
            body=m.ParticipantCreationRequest,
            response=m.Participant,
        ),
        Operation(
            "GET",
            f"{session_path}/participants",
            "getSessionParticipants",
            "The session's participants",
            TAG,
            get_participants,
            response=m.ParticipantPage,
            query=(DELETED_PARTICIPANTS,),
        ),
        Operation(
            "GET",
            participant_path,
            "getSessionParticipant",
            "One participant",
            TAG,
            get_participant,
            response=m.Participant,
        ),
        Operation(
            "PUT",
            participant_path,
            "updateSessionParticipant",
            "Change a participant's name, role, picture or state",
            TAG,
            update_participant,
            body=m.ParticipantUpdateRequest,
            response=m.Participant,
        ),
        Operation(
            "DELETE",
            participant_path,
            "deleteSessionParticipant",
            "Cancel a participant (not after the session finished)",
            TAG,
            delete_participant,
            response=m.UnitResponse,
        ),
    ]
