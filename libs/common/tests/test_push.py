"""Delivery to an endpoint's push channel (`NatsEndpointMessenger`) against a real nats-server."""

from __future__ import annotations

from pathlib import Path

import nats
import pytest
from parley_common import errors
from parley_common.contracts.push import PushedEvent
from parley_common.messaging.push import NatsEndpointMessenger
from parley_common.processes import NatsServer
from parley_common.sealing import Sealer


async def test_a_durable_push_the_stream_does_not_take_is_a_503_not_a_500(tmp_path: Path) -> None:
    """Found by `bench/chaos.py --nats-cluster 3`: while PARLEY_PUSH elects a leader (a server of the
    cluster killed) sendEvent's publish gets "no response from stream" five times and the raw NATS error
    reached the use case, which answered 500. The stream not answering is a dependency down: 503, retry."""
    # Its own server, without streams: PARLEY_PUSH answers nobody, as during its election.
    with NatsServer(tmp_path / "nats") as server:
        nc = await nats.connect(server.url)
        try:
            messenger = NatsEndpointMessenger(nc, nc.jetstream(), Sealer.from_env())
            pushed = PushedEvent(
                organization_id="acme",
                user_endpoint_id="e1",
                conference_id="c1",
                event_id="ev1",
                qos="AT_LEAST_ONCE",
                event={"type": "custom"},
            )
            with pytest.raises(errors.Unavailable) as raised:
                await messenger.deliver(pushed)
            assert raised.value.status == 503
        finally:
            await nc.close()
