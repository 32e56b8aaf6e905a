"""What `answering` (every service's request path) does with a reply too large for a NATS message."""

from __future__ import annotations

import msgspec
from parley_common.contracts.base import Empty
from parley_common.contracts.rpc import Accepted, Caller, Rejected, Request
from parley_common.messaging.rpc import MAX_REPLY_BYTES, answering, fit_reply

CALLER = Caller(organization_id="o", user_id="u", request_id="r")


async def test_a_reply_larger_than_a_bus_message_is_answered_as_a_rejection_not_dropped() -> None:
    async def huge(_: Request[Empty]) -> Accepted[str]:
        return Accepted(value="x" * (MAX_REPLY_BYTES + 1))

    on_request = answering("parley.test", Request[Empty], huge)
    reply = await on_request(msgspec.json.encode(Request(caller=CALLER, body=Empty())))
    # The server would refuse the oversize reply and the caller would wait out its timeout.
    assert len(reply) < 1024
    assert msgspec.json.decode(reply, type=Rejected) == Rejected(
        status=502, message="the reply was too large to send"
    )


def test_fit_reply_keeps_the_longest_prefix_within_the_budget_and_at_least_one_item() -> None:
    items = ["a" * 100] * 10  # 102 bytes of JSON each, plus a separator
    assert fit_reply(items, 1000) == items[:9]
    assert fit_reply(items, 10_000) == items
    assert fit_reply(["b" * 5000], 1000) == ["b" * 5000]  # a client asking from there must progress
    assert fit_reply([], 1000) == []
