"""The shared refusals and the one decorator turning them (and storage's errors) into `Rejected` replies."""

from __future__ import annotations

import msgspec
import nats.errors
import pytest
from parley_common import errors
from parley_common.contracts.rpc import Caller, Rejected, Request
from parley_common.errors import Reply
from parley_common.storage import InvalidValue, StorageUnavailable


class Body(msgspec.Struct, frozen=True):
    room_id: str = "r1"


def request() -> Request[Body]:
    return Request(caller=Caller(organization_id="acme", user_id="alice", request_id="q1"), body=Body())


class Service:
    def __init__(self, exc: Exception) -> None:
        self.exc = exc

    @errors.rejecting
    async def plain(self, request: Request[Body]) -> Reply:
        raise self.exc

    @errors.rejecting(context={"room_id": "room_id"}, object_store=True)
    async def with_objects(self, request: Request[Body]) -> Reply:
        raise self.exc


@pytest.mark.parametrize(
    ("exc", "status"),
    [
        (errors.InvalidCommand("name is required"), 400),
        (errors.NotAllowed("not a member"), 403),
        (errors.NotFound("room r1 not found"), 404),
        (errors.Conflict("already exists"), 409),
        (errors.TooLarge("too big"), 413),
        (errors.Unavailable("later"), 503),
        (errors.Busy("changing too fast"), 503),
        (InvalidValue("integer does not fit in 64 bits"), 400),
        (StorageUnavailable("down"), 503),
    ],
)
async def test_refusals_become_their_status(exc: Exception, status: int) -> None:
    for call in (Service(exc).plain, Service(exc).with_objects):
        reply = await call(request())
        assert isinstance(reply, Rejected)
        assert reply.status == status


async def test_a_domain_refusal_keeps_its_message() -> None:
    reply = await Service(errors.NotFound("room r1 not found")).plain(request())
    assert reply == Rejected(status=404, message="room r1 not found")


async def test_nats_errors_are_503_only_where_an_object_store_is_used() -> None:
    reply = await Service(nats.errors.TimeoutError()).with_objects(request())
    assert isinstance(reply, Rejected) and reply.status == 503
    with pytest.raises(nats.errors.TimeoutError):
        await Service(nats.errors.TimeoutError()).plain(request())
