"""The request/reply envelope used for every command and query between services.

A request carries the authenticated caller next to the API body. A reply is either `Accepted[T]` or
`Rejected` (an HTTP-meaningful status and the message a client sees); handlers never answer by raising.
"""

from __future__ import annotations

from typing import Generic, TypeVar

import msgspec

from parley_common.contracts.base import Payload

T = TypeVar("T")


class Caller(Payload, frozen=True):
    """Who is asking, as established by the gateway from a verified token."""

    organization_id: str
    user_id: str
    request_id: str
    scopes: tuple[str, ...] = ()
    name: str | None = None
    email: str | None = None


class Request(Payload, Generic[T], frozen=True):
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
