"""Asks a guarded conference's admission subject (the chat service for a room meeting) on every join."""

from __future__ import annotations

from parley_common import errors
from parley_common.contracts.chat import AdmissionQuery, Admitted
from parley_common.contracts.rpc import Caller, Rejected, Request
from parley_common.log import get_logger
from parley_common.messaging.rpc import RpcClient

from parley_conference.domain import Conference

log = get_logger(__name__)


class NatsGuards:
    """`handlers.Guards` over request/reply: the join's deadline is inherited (`RpcClient`), so a slow
    guard answers the join 503 within the caller's time rather than after it gave up."""

    def __init__(self, rpc: RpcClient) -> None:
        self._rpc = rpc

    async def admits(self, caller: Caller, conference: Conference) -> bool:
        admission = conference.admission
        if admission is None:
            return True
        query = AdmissionQuery(
            organization_id=conference.organization_id, user_id=caller.user_id, resource=admission.resource
        )
        reply = await self._rpc.request(admission.subject, Request(caller=caller, body=query), Admitted)
        if isinstance(reply, Rejected):
            # Whatever the guard's reason (down, timed out, failed), the join cannot be decided now: the
            # guard's own 4xx is not the joiner's fault either, so it is reported as unavailability too.
            log.warning(
                "admission unavailable", subject=admission.subject, status=reply.status, reason=reply.message
            )
            raise errors.Unavailable("service unavailable: conference admission did not answer")
        return reply.value.admitted
