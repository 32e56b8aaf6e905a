"""Use cases of the conference service: one method per command or query, each answering a reply.

Every method takes the bus request (caller + API body) and returns `Accepted[...]` or `Rejected`; domain
refusals become rejections with their HTTP status, so nothing here raises to the transport.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from functools import wraps
from typing import Any, Protocol, TypeVar

from parley_common import errors
from parley_common.clock import new_id, utcnow
from parley_common.contracts import conference as api
from parley_common.contracts.base import Empty
from parley_common.contracts.push import PushedEvent
from parley_common.contracts.rpc import Accepted, Caller, Rejected, Request
from parley_common.errors import Busy, DomainError
from parley_common.errors import Reply as Reply
from parley_common.log import get_logger, log_context
from parley_common.messaging.rpc import REPLY_BUDGET_BYTES, fit_reply

from parley_conference import domain, views
from parley_conference.adapters.repository import (
    ConcurrencyConflict,
    ConferenceExists,
    ConferenceRepository,
    EndpointOwnedByAnotherUser,
)
from parley_conference.domain import Actor, Conference, EventContext
from parley_conference.memberships import Memberships
from parley_conference.presence import Presence
from parley_conference.sending import Masks, validate_event

log = get_logger(__name__)
MAX_ATTEMPTS = 8
R = TypeVar("R")


class EventSink(Protocol):
    """Where committed events go after the commit (the outbox)."""

    def committed(self, state: Conference, event: api.AnyConferenceEvent) -> None: ...


class EndpointMessenger(Protocol):
    """Delivers sendEvent events to endpoints: durably for AT_LEAST_ONCE, fire-and-forget otherwise."""

    async def deliver(self, pushed: PushedEvent) -> None: ...

    def seal(self, event: dict[str, Any]) -> str: ...


class Guards(Protocol):
    """Asks a guarded conference's admission subject whether a user may join (the chat service)."""

    async def admits(self, caller: Caller, conference: Conference) -> bool:
        """True/False as the guard answers; raises `errors.Unavailable` when it cannot answer."""
        ...


_rejecting = errors.rejecting(
    context={"conference_id": "conference_id", "user_endpoint_id": "user_endpoint_id"}
)


def rejecting(method: errors.UseCase, /) -> errors.UseCase:
    """One place for every use case (conference and media ones alike): its log context, its refusals as
    replies, and the meeting token's rule that it acts on its own conference only (403 on any other)."""

    @wraps(method)
    async def granted(self: Any, request: Request[Any]) -> Reply:
        domain.check_grant(request.caller.grant, getattr(request.body, "conference_id", None))
        return await method(self, request)

    return _rejecting(granted)


class UnitOfWork:
    """The repository plus what must happen after a commit (the outbox, local read models)."""

    def __init__(self, repository: ConferenceRepository, sinks: Sequence[EventSink]) -> None:
        self.conferences = repository
        self._sinks = sinks

    async def add(self, event: api.ConferenceCreatedEvent) -> Conference:
        state = await self.conferences.add(event)
        self._committed(state, event)
        return state

    async def commit(self, conference: Conference, event: api.AnyConferenceEvent) -> Conference:
        state = await self.conferences.append(conference, event)
        self._committed(state, event)
        return state

    def _committed(self, state: Conference, event: api.AnyConferenceEvent) -> None:
        for sink in self._sinks:
            sink.committed(state, event)


def actor_of(caller: Caller, endpoint_id: str | None) -> Actor:
    return Actor(user_id=caller.user_id, endpoint_id=endpoint_id, grant=caller.grant)


def is_service(caller: Caller) -> bool:
    return api.SERVICE_SCOPE in caller.scopes


class ConferenceHandlers:
    def __init__(
        self,
        uow: UnitOfWork,
        presence: Presence,
        messenger: EndpointMessenger,
        memberships: Memberships,
        *,
        guards: Guards | None = None,
        empty_timeout_seconds: float,
        clock: Callable[[], datetime] = utcnow,
        ids: Callable[[], str] = new_id,
        on_seen: Callable[[str, str], None] | None = None,
    ) -> None:
        self._uow = uow
        self._presence = presence
        self._messenger = messenger
        self._memberships = memberships
        self._guards = guards
        self._empty_timeout = empty_timeout_seconds
        self._clock = clock
        self._ids = ids
        self._on_seen = on_seen

    # ------------------------------------------------------------ plumbing

    def context(self) -> EventContext:
        return EventContext(event_id=self._ids(), now=self._clock())

    def seen(self, organization_id: str, endpoint_id: str | None) -> None:
        if endpoint_id:
            self._presence.seen(organization_id, endpoint_id)
            if self._on_seen is not None:
                self._on_seen(organization_id, endpoint_id)

    async def load(self, organization_id: str, conference_id: str, *, fresh: bool = True) -> Conference:
        conference = await self._uow.conferences.get(organization_id, conference_id, fresh=fresh)
        if conference is None:
            raise domain.NotFound(f"conference {conference_id} not found")
        return conference

    async def change(
        self,
        organization_id: str,
        conference_id: str,
        decide: Callable[[Conference, EventContext], api.AnyConferenceEvent | None],
    ) -> tuple[Conference, api.AnyConferenceEvent | None]:
        """Decide on the latest state and commit; on a concurrent commit, reload and decide again."""
        async with self._uow.conferences.lock(organization_id, conference_id):
            fresh = False
            for _ in range(MAX_ATTEMPTS):
                conference = await self.load(organization_id, conference_id, fresh=fresh)
                event = decide(conference, self.context())
                if event is None:
                    if fresh:
                        return conference, None
                    # "Nothing to change" was judged on a cached state: confirm it on the latest one.
                    fresh = True
                    continue
                try:
                    return await self._uow.commit(conference, event), event
                except ConcurrencyConflict:
                    log.info("concurrent change, retrying", conference_id=conference_id)
                    fresh = True
        raise Busy(f"conference {conference_id} is changing too fast, retry")

    # ------------------------------------------------------------ commands

    @rejecting
    async def create(self, request: Request[api.CreateConferenceWebCommand]) -> Reply:
        caller, body = request.caller, request.body
        if caller.grant is not None:  # a meeting token is for its meeting's conference, not for new ones
            raise domain.NotAllowed("a meeting token may not create conferences")
        conference_id = body.conference_id if body.conference_id is not None else self._ids()
        event = domain.decide_create(
            organization_id=caller.organization_id,
            conference_id=conference_id,
            mode=body.mode,
            creator=caller.user_id,
            creator_endpoint=body.creator_endpoint,
            metadata=body.metadata,
            ctx=self.context(),
        )
        return await self._add(event)

    @rejecting
    async def create_guarded(self, request: Request[api.CreateGuardedConference]) -> Reply:
        """Internal (a service for its user, e.g. a room meeting): `create` whose joins `admission` guards."""
        caller, body = request.caller, request.body
        event = domain.decide_create(
            organization_id=caller.organization_id,
            conference_id=body.conference_id,
            mode=None,
            creator=caller.user_id,
            creator_endpoint=None,
            metadata=body.metadata,
            ctx=self.context(),
            admission=body.admission,
        )
        return await self._add(event)

    async def _add(self, event: api.ConferenceCreatedEvent) -> Reply:
        conference_id = event.conference_id
        try:
            state = await self._uow.add(event)
        except ConferenceExists:
            return Rejected.conflict(f"conference {conference_id} already exists")
        log.info("conference created", conference_id=conference_id)
        return Accepted(value=views.summary(state))

    async def create_for_meeting(
        self,
        organization_id: str,
        conference_id: str,
        *,
        creator: str,
        meeting_id: str,
        metadata: dict[str, str],
    ) -> None:
        """In-process, for the meeting use cases: the conference behind a new meeting (never ends empty)."""
        event = domain.decide_create(
            organization_id=organization_id,
            conference_id=conference_id,
            mode=None,
            creator=creator,
            creator_endpoint=None,
            metadata=metadata,
            ctx=self.context(),
            meeting_id=meeting_id,
        )
        await self._uow.add(event)

    async def end_for_meeting(self, organization_id: str, conference_id: str, reason: str) -> None:
        """In-process: end a meeting's conference; gone or already ended counts as done (outbox retries)."""
        actor = Actor(user_id="conference", endpoint_id=None, service=True)

        def decide(c: Conference, ctx: EventContext) -> api.AnyConferenceEvent | None:
            return None if c.ended else domain.decide_end(c, actor, reason, ctx)

        try:
            await self.change(organization_id, conference_id, decide)
        except domain.NotFound:
            log.info("meeting's conference not found", conference_id=conference_id)

    @rejecting
    async def join(self, request: Request[api.JoinConferenceWebCommand]) -> Reply:
        caller, body = request.caller, request.body
        conference = await self.load(caller.organization_id, body.conference_id, fresh=False)
        if conference.ended:
            raise domain.ConferenceHasEnded
        if conference.guarded:
            # Asked on every join, a rejoin too: a user the guard no longer admits must not come back.
            # Unguarded conferences skip this (no extra round trip); the guard never changes after creation.
            await self._admit(caller, conference)
        try:
            await self._uow.conferences.claim_endpoint(
                caller.organization_id, body.user_endpoint_id, caller.user_id
            )
        except EndpointOwnedByAnotherUser:
            return Rejected.conflict(f"userEndpointId {body.user_endpoint_id} belongs to another user")
        self.seen(caller.organization_id, body.user_endpoint_id)
        actor = actor_of(caller, body.user_endpoint_id)
        state, _ = await self.change(
            caller.organization_id,
            body.conference_id,
            lambda c, ctx: domain.decide_join(c, actor, body.metadata, ctx),
        )
        # Told it waits (a repeated join while waiting too): its client shows "waiting to be let in".
        return Accepted(value=api.ConferenceJoinResult(lobby=domain.is_waiting(state, body.user_endpoint_id)))

    @rejecting
    async def admit_lobby_endpoint(self, request: Request[api.AdmitLobbyEndpointWebCommand]) -> Reply:
        caller, body = request.caller, request.body
        self.seen(caller.organization_id, body.user_endpoint_id)
        actor = actor_of(caller, body.user_endpoint_id)
        await self.change(
            caller.organization_id,
            body.conference_id,
            lambda c, ctx: domain.decide_admit(c, actor, body.lobby_endpoint_id, ctx),
        )
        log.info("lobby endpoint admitted", lobby_endpoint_id=body.lobby_endpoint_id)
        return Accepted(value=Empty())

    @rejecting
    async def reject_lobby_endpoint(self, request: Request[api.RejectLobbyEndpointWebCommand]) -> Reply:
        caller, body = request.caller, request.body
        self.seen(caller.organization_id, body.user_endpoint_id)
        actor = actor_of(caller, body.user_endpoint_id)
        await self.change(
            caller.organization_id,
            body.conference_id,
            lambda c, ctx: domain.decide_reject(c, actor, body.lobby_endpoint_id, body.reason, ctx),
        )
        log.info("lobby endpoint rejected", lobby_endpoint_id=body.lobby_endpoint_id)
        return Accepted(value=Empty())

    @rejecting
    async def leave(self, request: Request[api.LeaveConferenceWebCommand]) -> Reply:
        caller, body = request.caller, request.body
        actor = actor_of(caller, body.user_endpoint_id)
        await self.change(
            caller.organization_id,
            body.conference_id,
            lambda c, ctx: domain.decide_leave(c, actor, body.reason, ctx),
        )
        return Accepted(value=Empty())

    async def _admit(self, caller: Caller, conference: Conference) -> None:
        if self._guards is None:  # wiring without a guard client: fail closed
            raise errors.Unavailable("service unavailable: conference admission cannot be checked")
        if not await self._guards.admits(caller, conference):
            raise domain.NotAllowed(f"user {caller.user_id} may not join conference {conference.id}")

    @rejecting
    async def end(self, request: Request[api.EndConferenceWebCommand]) -> Reply:
        caller, body = request.caller, request.body
        service = is_service(caller)
        if not service:  # a service's userEndpointId is only its name: nothing to keep alive
            self.seen(caller.organization_id, body.user_endpoint_id)
        actor = Actor(
            user_id=caller.user_id, endpoint_id=body.user_endpoint_id, service=service, grant=caller.grant
        )
        await self.change(
            caller.organization_id,
            body.conference_id,
            lambda c, ctx: domain.decide_end(c, actor, body.reason, ctx),
        )
        return Accepted(value=Empty())

    @rejecting
    async def remove_participant(self, request: Request[api.RemoveParticipantCommand]) -> Reply:
        """Internal (a service): every endpoint of a user leaves at once (a member removed from a room)."""
        caller, body = request.caller, request.body
        actor = Actor(user_id=caller.user_id, endpoint_id=None, service=is_service(caller))
        removed = 0
        # One endpoint per event (the aggregate's rule); a user rarely has more than a couple.
        while True:
            _, event = await self.change(
                caller.organization_id,
                body.conference_id,
                lambda c, ctx: domain.decide_remove(c, actor, body.user_id, body.reason, ctx),
            )
            if event is None:
                break
            removed += 1
        log.info("participant removed", removed_user_id=body.user_id, endpoints=removed)
        return Accepted(value=Empty())

    @rejecting
    async def update_metadata(self, request: Request[api.UpdateConferenceMetadataWebCommand]) -> Reply:
        caller, body = request.caller, request.body
        self.seen(caller.organization_id, body.user_endpoint_id)
        actor = actor_of(caller, body.user_endpoint_id)
        await self.change(
            caller.organization_id,
            body.conference_id,
            lambda c, ctx: domain.decide_update_metadata(
                c, actor, key=body.key, operation=body.operation, value=body.value, ctx=ctx
            ),
        )
        return Accepted(value=Empty())

    @rejecting
    async def update_participant_metadata(
        self, request: Request[api.UpdateConferenceParticipantMetadataWebCommand]
    ) -> Reply:
        caller, body = request.caller, request.body
        self.seen(caller.organization_id, body.user_endpoint_id)
        actor = actor_of(caller, body.user_endpoint_id)
        await self.change(
            caller.organization_id,
            body.conference_id,
            lambda c, ctx: domain.decide_update_participant_metadata(c, actor, body.new_metadata, ctx),
        )
        return Accepted(value=Empty())

    @rejecting
    async def send_event(self, request: Request[api.SendEventToConferenceWebCommand]) -> Reply:
        caller, body = request.caller, request.body
        validate_event(body.event)
        masks = Masks(body.masks)
        conference = await self.load(caller.organization_id, body.conference_id)
        if conference.ended:
            raise domain.ConferenceHasEnded
        event = {**body.event}
        event.setdefault("id", self._ids())
        event.setdefault("conferenceId", conference.id)
        stored = masks.apply(event) if masks else event
        sealed = self._messenger.seal(event) if masks else None
        endpoints = [p.endpoint_id for p in conference.participants]
        for endpoint_id in endpoints:
            await self._messenger.deliver(
                PushedEvent(
                    organization_id=conference.organization_id,
                    user_endpoint_id=endpoint_id,
                    conference_id=conference.id,
                    event_id=str(event["id"]),
                    qos=body.qos,
                    event=stored,
                    sealed=sealed,
                )
            )
        log.info(
            "event sent",
            event_type=event["type"],
            event_id=event["id"],
            qos=body.qos,
            endpoints=len(endpoints),
        )
        return Accepted(value=api.SendEventResponse(events_sent=len(endpoints)))

    # ------------------------------------------------------------ queries

    @rejecting
    async def get(self, request: Request[api.GetConferenceQuery]) -> Reply:
        caller, body = request.caller, request.body
        self.seen(caller.organization_id, body.user_endpoint_id)
        conference = await self.load(caller.organization_id, body.conference_id)
        return Accepted(value=views.conference_view(conference, self._presence))

    @rejecting
    async def simple_view(self, request: Request[api.GetConferenceQuery]) -> Reply:
        caller, body = request.caller, request.body
        self.seen(caller.organization_id, body.user_endpoint_id)
        conference = await self.load(caller.organization_id, body.conference_id)
        return Accepted(value=views.simple_view(conference, self._presence))

    @rejecting
    async def events(self, request: Request[api.ConferenceEventsQuery]) -> Reply:
        caller, body = request.caller, request.body
        conference = await self.load(caller.organization_id, body.conference_id, fresh=False)
        if body.user_endpoint_id is not None:
            self.seen(caller.organization_id, body.user_endpoint_id)
        else:
            # A poll names no endpoint: it keeps alive the caller's own endpoints in this conference.
            for p in conference.participants:
                if p.user_id == caller.user_id:
                    self.seen(caller.organization_id, p.endpoint_id)
        events = await self._uow.conferences.events(
            caller.organization_id, body.conference_id, body.from_version
        )
        if _in_lobby(conference, caller, body.user_endpoint_id):
            # A guest still in the lobby: nothing of the conference but what is decided about itself. Judged
            # on the latest state, so the poll right after the admission already gets everything.
            latest = await self.load(caller.organization_id, body.conference_id)
            if _in_lobby(latest, caller, body.user_endpoint_id):
                events = [e for e in events if _lobby_user(e) == caller.user_id]
        page = fit_reply(events, REPLY_BUDGET_BYTES)
        return Accepted(value=api.ConferenceEvents(events=page, version=conference.version))

    @rejecting
    async def endpoint_conferences(self, request: Request[api.EndpointConferencesQuery]) -> Reply:
        caller, body = request.caller, request.body
        repository = self._uow.conferences
        owner = await repository.endpoint_owner(caller.organization_id, body.user_endpoint_id)
        ids = self._memberships.conferences_of(caller.organization_id, body.user_endpoint_id)
        return Accepted(value=api.EndpointConferences(conference_ids=ids, owner_user_id=owner))

    # ------------------------------------------------------------ timers

    async def sweep(self) -> None:
        """Remove endpoints whose keep-alive ran out; end conferences left empty too long."""
        for organization_id, conference_id in await self._uow.conferences.live_conference_ids():
            with log_context(organization=organization_id, conference_id=conference_id):
                try:
                    await self._sweep_one(organization_id, conference_id)
                except DomainError as exc:
                    log.info("sweep skipped conference", reason=exc.message)

    async def _sweep_one(self, organization_id: str, conference_id: str) -> None:
        conference = await self.load(organization_id, conference_id)
        # Waiting endpoints keep alive like participants: one that went away leaves the lobby.
        endpoints = [p.endpoint_id for p in conference.participants] + [
            w.endpoint_id for w in conference.lobby
        ]
        for endpoint in endpoints:
            if self._presence.expired(organization_id, endpoint):
                _, event = await self.change(
                    organization_id,
                    conference_id,
                    lambda c, ctx, endpoint=endpoint: domain.decide_timeout(c, endpoint, ctx),  # type: ignore[misc]
                )
                if event is not None:
                    log.info("participant timed out", user_endpoint_id=endpoint)
        now = self._clock()
        _, ended = await self.change(
            organization_id,
            conference_id,
            lambda c, ctx: domain.decide_end_if_empty(
                c, now=now, timeout_seconds=self._empty_timeout, ctx=ctx
            ),
        )
        if ended is not None:
            log.info("conference ended: empty timeout")


def _lobby_user(event: api.AnyConferenceEvent) -> str | None:
    """The user of the waiting endpoint a lobby event is about (None: not a lobby event)."""
    if isinstance(event, api.ConferenceLobbyEnteredEvent):
        return event.user_id
    if isinstance(event, api.ConferenceLobbyAdmittedEvent | api.ConferenceLobbyRejectedEvent):
        return event.lobby_user_id
    return None


def _in_lobby(conference: Conference, caller: Caller, endpoint_id: str | None) -> bool:
    """Does the caller read as a guest not (yet) let in? Decided by its grant, so it fails closed: a guest
    whose endpoint is not among the participants (waiting, rejected, or not joined yet) sees no events."""
    if caller.grant is None or not caller.grant.lobby:
        return False
    if endpoint_id is not None:
        participant = conference.participant(endpoint_id)
        return participant is None or participant.user_id != caller.user_id
    return not any(p.user_id == caller.user_id for p in conference.participants)
