"""The stack on a three-server NATS cluster with R3 streams, as production runs it (issue 12).

Conference commands and chat messages go through while one NATS server (the conference stream's leader)
is SIGKILLed under a steady load: nothing acknowledged is lost, no command is refused for longer than the
cluster's leader election, and the killed server rejoins. Every service then stops on SIGTERM within a few
seconds, with one line saying so. A service told to keep R3 streams on a single server stops at once with
one clear line.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import nats
import pytest
from nats.aio.client import Client
from nats.js.api import DeliverPolicy
from parley_common.messaging.streams import CHAT_STREAM, CONFERENCE_STREAM, STREAMS
from parley_common.processes import NatsServer, ServiceProcess

from tests.integration.helpers import ORG, SECRET, Api, Stack
from tests.integration.test_chat_api import group, new_users

# A stream leader SIGKILLed hands nothing over: its followers elect a new one after NATS raft's randomized
# election timeout (4 to 9 s), plus a request deadline on the way. Commands are acknowledged once
# committed (the outbox publishes later), so a client may wait at most the request deadline (1.5 s) and
# the reconnection wait (1 s) past the election, and never longer than the bound.
ELECTION_BOUND_SECONDS = 12.0
CLIENT_MARGIN_SECONDS = 3.0
WORKERS = 4
# A SIGTERMed service exits well within its shutdown deadline (`service.SHUTDOWN_SECONDS`, 7 s) once the
# cluster has recovered; a supervisor (and `ServiceProcess.stop`) SIGKILLs at 10 s.
STOP_BOUND_SECONDS = 5.0


@pytest.fixture(scope="module")
def cluster_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    running = Stack(
        tmp_path_factory.mktemp("nats-cluster"),
        chat=True,
        snapshot=True,
        nats_cluster=3,
        env={"PARLEY_ESSENTIAL_SERVICES": "conference,chat"},
    ).start()
    yield running
    running.stop()


@pytest.fixture
async def cluster_nc(cluster_stack: Stack) -> AsyncIterator[Client]:
    connection = await nats.connect([s.url for s in cluster_stack.nats_servers])
    yield connection
    await connection.close()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


@dataclass
class Load:
    """What a steady load saw: per worker the acknowledged values, the statuses of refusals, and the
    longest time between two acknowledged commands."""

    acknowledged: dict[str, list[int]] = field(default_factory=dict)
    refusals: list[int | str] = field(default_factory=list)
    longest_gap: float = 0.0

    def gap(self, since: float) -> float:
        now = time.monotonic()
        self.longest_gap = max(self.longest_gap, now - since)
        return now


async def steady_load(api: Api, conference_id: str, room_id: str, stop: asyncio.Event, load: Load) -> None:
    """Workers update their participant metadata, one sends chat messages, each command after the last."""

    async def conference_worker(endpoint: str) -> None:
        joined = await api.post("join", {"conferenceId": conference_id, "userEndpointId": endpoint})
        assert joined.status == 200, joined
        values = load.acknowledged.setdefault(endpoint, [])
        last_ok = time.monotonic()
        n = 0
        while not stop.is_set():
            n += 1
            body = {"conferenceId": conference_id, "userEndpointId": endpoint, "newMetadata": {"n": n}}
            try:
                response = await api.post("updateParticipantMetadata", body, timeout=5)
            except (aiohttp.ClientError, TimeoutError) as exc:
                load.refusals.append(type(exc).__name__)
                continue
            if response.status == 204:
                values.append(n)
                last_ok = load.gap(last_ok)
            else:
                load.refusals.append(response.status)
                await asyncio.sleep(0.05)
        load.gap(last_ok)

    async def chat_worker() -> None:
        values = load.acknowledged.setdefault("chat", [])
        last_ok = time.monotonic()
        n = 0
        while not stop.is_set():
            n += 1
            try:
                response = await api.request(
                    "POST", f"/rooms/{room_id}/messages", json={"text": f"m{n}"}, timeout=5
                )
            except (aiohttp.ClientError, TimeoutError) as exc:
                load.refusals.append(type(exc).__name__)
                continue
            if response.status == 201:
                values.append(n)
                last_ok = load.gap(last_ok)
            else:
                load.refusals.append(response.status)
                await asyncio.sleep(0.05)
        load.gap(last_ok)

    await asyncio.gather(*(conference_worker(f"w{i}") for i in range(WORKERS)), chat_worker())


async def current_leader(nc: Client, stream: str) -> str | None:
    """`stream`'s leader now, None while the cluster elects one (or does not answer)."""
    try:
        # A short deadline: a request that was in flight on the killed server is lost, not late.
        info = await nc.jetstream(timeout=1.0).stream_info(stream)
    except Exception:
        return None
    return info.cluster.leader if info.cluster is not None else None


async def stream_leader(nc: Client, stream: str, timeout: float = 10.0) -> str:
    """The server name of `stream`'s leader (`$JS.API.STREAM.INFO`'s cluster info), once it has one."""
    deadline = time.monotonic() + timeout
    while (leader := await current_leader(nc, stream)) is None:
        assert time.monotonic() < deadline, f"{stream} has no leader"
        await asyncio.sleep(0.2)
    return leader


async def all_conference_events(api: Api, conference_id: str) -> list[dict[str, Any]]:
    version = (await api.conference(conference_id))["version"]
    events: list[dict[str, Any]] = []
    while len(events) < version:
        response = await api.events(conference_id, len(events))
        assert response.status == 200, response
        assert response.body
        events.extend(response.body)
    return events


async def stream_bodies(nc: Client, stream: str, subject: str) -> list[dict[str, Any]]:
    js = nc.jetstream()
    info = await js.stream_info(stream)
    sub = await js.subscribe(subject, ordered_consumer=True, deliver_policy=DeliverPolicy.ALL)
    bodies = []
    try:
        for _ in range(info.state.messages):
            bodies.append(json.loads((await sub.next_msg(timeout=5)).data))
    finally:
        await sub.unsubscribe()
    return bodies


async def chat_texts(api: Api, room_id: str) -> list[str]:
    texts: list[str] = []
    params = {"limit": "100"}
    while True:
        page = await api.get(f"/rooms/{room_id}/messages", params=params)
        assert page.status == 200, page
        texts.extend(m["text"] for m in page.body["messages"])
        if "before" not in page.body:
            return texts
        params = {"limit": "100", "before": page.body["before"]}


async def test_every_stream_has_three_replicas(cluster_stack: Stack, cluster_nc: Client) -> None:
    js = cluster_nc.jetstream()
    names = {s.server_name for s in cluster_stack.nats_servers}
    for config in STREAMS:
        info = await js.stream_info(config.name or "")
        assert info.config.num_replicas == 3, config.name
        assert info.cluster is not None and info.cluster.leader in names, (config.name, info.cluster)


async def test_killing_the_stream_leader_under_load_loses_nothing(
    cluster_stack: Stack, cluster_nc: Client, session: aiohttp.ClientSession
) -> None:
    alice, bob, carol = await new_users(session, cluster_stack, 3)
    api = alice.api
    conference_id = await api.create()
    room_id = await group(alice, bob, carol, name="cluster")

    leader = await stream_leader(cluster_nc, CONFERENCE_STREAM)
    victim: NatsServer = next(s for s in cluster_stack.nats_servers if s.server_name == leader)
    load = Load()
    stop = asyncio.Event()
    running = asyncio.create_task(steady_load(api, conference_id, room_id, stop, load))
    try:
        await asyncio.sleep(1.5)
        victim.kill()
        killed_at = time.monotonic()
        # Another server takes the stream over: the election, measured.
        elected = None
        while elected in (None, leader):
            assert time.monotonic() - killed_at < ELECTION_BOUND_SECONDS, "no new stream leader"
            await asyncio.sleep(0.2)
            elected = await current_leader(cluster_nc, CONFERENCE_STREAM)
        election = time.monotonic() - killed_at
        await asyncio.sleep(2.0)
        # The killed server comes back on its port and store, and catches up.
        await asyncio.to_thread(victim.start)
        await asyncio.sleep(1.5)
    finally:
        stop.set()
        await running
    down_for = time.monotonic() - killed_at

    # No command refused for longer than the election, and refusals are clean 503s (or a connection the
    # gateway closed), never a 500.
    assert election < ELECTION_BOUND_SECONDS
    assert load.longest_gap < min(election + CLIENT_MARGIN_SECONDS, 10.0), (load.longest_gap, load.refusals)
    assert all(r == 503 for r in load.refusals if isinstance(r, int)), load.refusals
    print(
        f"election {election:.2f} s; longest wait for an acknowledgement {load.longest_gap:.2f} s "
        f"over {down_for:.1f} s; refusals {len(load.refusals)}"
    )

    # Nothing acknowledged lost, nothing twice: conference versions gapless, every acknowledged metadata
    # value recorded, each event once in the R3 stream.
    events = await all_conference_events(api, conference_id)
    assert [e["conferenceVersion"] for e in events] == list(range(len(events)))
    recorded: dict[str, set[int]] = {}
    for event in events:
        if event["type"] == "ConferenceParticipantMetadataUpdatedEvent":
            recorded.setdefault(event["userEndpointId"], set()).add(event["newMetadata"]["n"])
    for endpoint in (f"w{i}" for i in range(WORKERS)):
        missing = set(load.acknowledged[endpoint]) - recorded.get(endpoint, set())
        assert not missing, f"acknowledged but lost for {endpoint}: {sorted(missing)}"
    assert sum(len(v) for v in load.acknowledged.values()) > 50, "the load should have been real"
    deadline = time.monotonic() + 10  # the outbox relays what was committed during the election
    while True:
        published = [
            e["id"]
            for e in await stream_bodies(cluster_nc, CONFERENCE_STREAM, "parley.events.conference.>")
            if e.get("conferenceId") == conference_id
        ]
        if {e["id"] for e in events} <= set(published) or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.5)
    assert len(published) == len(set(published)), "an event published twice"
    assert {e["id"] for e in events} <= set(published), "committed events missing from the R3 stream"

    # Every acknowledged chat message is in the room once.
    texts = await chat_texts(api, room_id)
    sent = [f"m{n}" for n in load.acknowledged["chat"]]
    assert sent, "chat messages should have been acknowledged"
    assert not set(sent) - set(texts), "acknowledged chat messages lost"
    assert len(texts) == len(set(texts)), "a chat message stored twice"
    chat_events = await stream_bodies(cluster_nc, CHAT_STREAM, "parley.events.chat.>")
    ids = [e["id"] for e in chat_events if "id" in e]
    assert len(ids) == len(set(ids)), "a chat event published twice"

    # The killed server rejoined: it is a current replica of the conference stream again.
    deadline = time.monotonic() + 10
    while True:
        info = await cluster_nc.jetstream().stream_info(CONFERENCE_STREAM)
        peers = {p.name: p for p in (info.cluster.replicas or [])} if info.cluster else {}
        if info.cluster and (info.cluster.leader == leader or (leader in peers and peers[leader].current)):
            break
        assert time.monotonic() < deadline, f"{leader} did not rejoin: {info.cluster}"
        await asyncio.sleep(0.2)


async def test_every_service_stops_promptly_after_a_server_was_lost_under_load(cluster_stack: Stack) -> None:
    """After the test above (a server SIGKILLed and restarted under load: the services' connections
    reconnected, their pull consumers' fetches timed out during the election), SIGTERM each service in
    turn: it exits with status 0 within a few seconds and logs that it stopped. Unfixed, the conference
    service waited out nats-py's 30 s connection drain on a pull subscription left with a message nats-py
    never marked done, and was SIGKILLed."""
    order = [*cluster_stack.gateway_names, "chat", "snapshot", *cluster_stack.conference_names]
    for name in order:
        process = cluster_stack.local[name]
        assert process.running, f"{name} died before being stopped"
        started = time.monotonic()
        process.terminate()
        status = await asyncio.to_thread(exit_status, process, 12.0)
        took = time.monotonic() - started
        log = cluster_stack.logs(name)
        assert status == 0 and took < STOP_BOUND_SECONDS, (name, status, round(took, 2), log[-3000:])
        service = "gateway" if name.startswith("gateway") else name
        assert f"{service} service stopped" in log, (name, log[-3000:])


def exit_status(process: ServiceProcess, timeout: float) -> int | None:
    deadline = time.monotonic() + timeout
    while process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    return process.poll()


async def test_r3_on_a_single_server_stops_the_service_with_one_clear_line(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    root = tmp_path_factory.mktemp("single-r3")
    with NatsServer(root / "nats") as single:
        service = ServiceProcess(
            "chat",
            "parley_chat",
            {
                "PARLEY_NATS_URL": single.url,
                "PARLEY_NATS_REPLICAS": "3",
                "PARLEY_DATA_DIR": str(root),
                "PARLEY_JWT_SECRET": SECRET,
                "PARLEY_OAUTH_CLIENTS": f"backoffice:backoffice-secret:{ORG}",
            },
            log_path=root / "chat.log",
        ).start()
        try:
            status = await asyncio.to_thread(exit_status, service, 15.0)
        finally:
            service.stop()
    log = (root / "chat.log").read_text(errors="replace")
    assert status == 2, (status, log[-2000:])
    assert "PARLEY_NATS_REPLICAS=3" in log and "cannot start" in log, log[-2000:]
    assert "Traceback" not in log, log[-2000:]
