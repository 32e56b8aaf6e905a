"""The timers' lease bucket is declared patiently, like the streams (issue 12): a conference service starting
while its NATS cluster elects leaders waits that out instead of dying on a timeout."""

from __future__ import annotations

import asyncio
from pathlib import Path

import nats
import pytest
from parley_common.processes import nats_cluster_servers, wait_for_port
from parley_conference.adapters.lease import BUCKET, Lease


async def test_the_lease_bucket_waits_for_a_cluster_without_quorum(tmp_path: Path) -> None:
    first, *others = nats_cluster_servers(tmp_path / "cluster", 3)
    first.start(wait=False)  # alone it never reports JetStream ready: only listening
    wait_for_port(first.host, first.port, timeout=10)
    connection = await nats.connect(first.url)
    try:
        # JetStream has no meta leader (1 of 3 servers up): creating the bucket times out or answers 503.
        opening = asyncio.create_task(Lease.open(connection.jetstream(timeout=1.0), "timers", replicas=3))
        await asyncio.sleep(2.5)
        assert not opening.done(), opening  # unfixed: failed at the first timeout
        for server in others:
            server.start(wait=False)
        lease = await asyncio.wait_for(opening, timeout=45)
        info = await connection.jetstream().stream_info(f"KV_{BUCKET}")
        assert info.config.num_replicas == 3
        assert await lease.refresh()
    finally:
        await connection.close()
        for server in (first, *others):
            server.stop()


@pytest.fixture(autouse=True)
def _no_stray_replicas_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PARLEY_NATS_REPLICAS", raising=False)
