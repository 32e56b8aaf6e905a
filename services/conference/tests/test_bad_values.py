"""Values a store cannot keep are the client's error (400), and version bounds never overflow the store."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from parley_common.contracts import conference as api
from parley_common.contracts.rpc import Caller, Rejected, Request
from parley_common.storage import InvalidValue, SqliteStore, StorageUnavailable
from parley_conference.adapters.repository import ConferenceRepository
from parley_conference.handlers import Reply, rejecting

INT64_MAX = 2**63 - 1


@pytest.fixture
async def repository() -> AsyncIterator[ConferenceRepository]:
    store = SqliteStore(":memory:")
    await store.start()
    try:
        yield await ConferenceRepository.open(store)
    finally:
        await store.close()


@pytest.mark.parametrize("from_version", [INT64_MAX, INT64_MAX + 1, 2**64, INT64_MAX - 1, -(2**63)])
async def test_events_from_any_int64_version_answer_without_overflow(
    repository: ConferenceRepository, from_version: int
) -> None:
    assert await repository.events("acme", "c1", from_version) == []


async def test_a_value_the_store_refuses_is_rejected_400_with_its_reason() -> None:
    class Handlers:
        @rejecting
        async def join(self, request: Request[api.JoinConferenceWebCommand]) -> Reply:
            raise InvalidValue("state: integer 18446744073709551616 does not fit in 64 bits")

    request = Request(
        caller=Caller(organization_id="acme", user_id="alice", request_id="r1"),
        body=api.JoinConferenceWebCommand(conference_id="c1", user_endpoint_id="e1"),
    )
    reply = await Handlers().join(request)
    assert isinstance(reply, Rejected)
    assert (reply.status, reply.message) == (
        400,
        "state: integer 18446744073709551616 does not fit in 64 bits",
    )


async def test_storage_not_answering_is_503_not_an_internal_error() -> None:
    class Handlers:
        @rejecting
        async def join(self, request: Request[api.JoinConferenceWebCommand]) -> Reply:
            raise StorageUnavailable("database is locked")

    request = Request(
        caller=Caller(organization_id="acme", user_id="alice", request_id="r1"),
        body=api.JoinConferenceWebCommand(conference_id="c1", user_endpoint_id="e1"),
    )
    reply = await Handlers().join(request)
    assert isinstance(reply, Rejected)
    assert (reply.status, reply.message) == (503, "service unavailable: storage not answering")
