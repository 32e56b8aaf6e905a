"""The request/reply envelope used for every command and query between services.

A request carries the authenticated caller next to the API body, and the moment after which its sender no
longer waits for the answer. A reply is either `Accepted[T]` or `Rejected` (an HTTP-meaningful status and
the message a client sees); handlers never answer by raising.
"""

from __future__ import annotations

from typing import Generic, TypeVar

import msgspec

from parley_common.contracts.base import Payload
from parley_common.contracts.meeting import MeetingGrant

T = TypeVar("T")


class Caller(Payload, frozen=True):
    """Who is asking, as established by the gateway from a verified token."""

    organization_id: str
    user_id: str
    request_id: str
    scopes: tuple[str, ...] = ()
    name: str | None = None
    email: str | None = None
    # A meeting token's grant (one conference, one role): see `parley_common.contracts.meeting`.
    grant: MeetingGrant | None = None


class Deadlined(Payload, frozen=True):
    """The base of every request envelope between services: it carries the sender's deadline.

    `deadline` is wall-clock time (Unix epoch seconds), not a monotonic clock: sender and receiver are
    different processes, often on different hosts, and only the wall clock is shared between them (kept
    close by NTP; the sender's margin absorbs small skew). `RpcClient` stamps it; `answering` refuses a
    request that arrives after it without running the handler, so work the caller has already answered
    503 for (a request buffered through a NATS outage, say) is never done late. None: no deadline
    (a sender that does not stamp one).
    """

    deadline: float | None = None


class Request(Deadlined, Generic[T], frozen=True, kw_only=True):
    caller: Caller
    body: T


class Accepted(Payload, Generic[T], tag_field="outcome", tag="accepted", frozen=True):
    value: T


class Rejected(Payload, tag_field="outcome", tag="rejected", frozen=True):
    status: int
    message: str

    @classmethod
    def bad_request(cls, message: str) -> Rejected:
        return cls(status=400, message=message)

    @classmethod
    def forbidden(cls, message: str) -> Rejected:
        return cls(status=403, message=message)

    @classmethod
    def not_found(cls, message: str) -> Rejected:
        return cls(status=404, message=message)

    @classmethod
    def conflict(cls, message: str) -> Rejected:
        return cls(status=409, message=message)

    @classmethod
    def unavailable(cls, message: str) -> Rejected:
        return cls(status=503, message=message)


Reply = Accepted[T] | Rejected


def reply_decoder(value_type: type[T]) -> msgspec.json.Decoder[Accepted[T] | Rejected]:
    return msgspec.json.Decoder(Accepted[value_type] | Rejected)  # type: ignore[valid-type]
