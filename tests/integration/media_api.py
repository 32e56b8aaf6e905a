"""Media API steps the integration tests share: publish and view over HTTP, read events, hear heartbeats."""

from __future__ import annotations

from typing import Any

import msgspec
import nats
from parley_common.contracts.media import MediaNodeHeartbeat
from parley_common.messaging import subjects

from tests.integration.helpers import Api
from tests.integration.peers import PublisherPeer, ViewerPeer


class Heartbeats:
    """The latest heartbeat of each media node, heard on the bus like the conference service hears it."""

    def __init__(self) -> None:
        self.latest: dict[str, MediaNodeHeartbeat] = {}

    async def listen(self, url: str) -> nats.NATS:
        nc = await nats.connect(url)
        decoder = msgspec.json.Decoder(MediaNodeHeartbeat)

        async def on(msg: Any) -> None:
            beat = decoder.decode(msg.data)
            self.latest[beat.node_id] = beat

        await nc.subscribe(subjects.MEDIA_HEARTBEAT, cb=on)
        return nc


async def publish(
    api: Api,
    conference_id: str,
    endpoint: str,
    publisher: PublisherPeer,
    *,
    stream_type: str = "MIC_AND_CAM",
    stream_id: Any = None,
    trickle: bool = False,
) -> str:
    body: dict[str, Any] = {
        "conferenceId": conference_id,
        "userEndpointId": endpoint,
        "conferenceStreamType": stream_type,
        "sdpOffer": await publisher.offer(trickle=trickle),
    }
    if stream_id is not None:
        body["streamId"] = stream_id
    response = await api.post("publishStream", body)
    assert response.status == 200, response
    await publisher.accept(response.body["sdpAnswer"])
    return str(response.body["streamId"]["id"])


async def view(
    api: Api, conference_id: str, endpoint: str, stream_id: str, viewer: ViewerPeer, *, trickle: bool = False
) -> str:
    response = await api.post(
        "viewStream",
        {
            "conferenceId": conference_id,
            "userEndpointId": endpoint,
            "streamId": {"id": stream_id},
            "sdpOffer": await viewer.offer(trickle=trickle),
        },
    )
    assert response.status == 200, response
    await viewer.accept(response.body["sdpAnswer"])
    return str(response.body["viewerId"])


async def event_types(api: Api, conference_id: str) -> list[tuple[str, dict[str, Any]]]:
    response = await api.get(f"/rtc-api/conferences/{conference_id}/events", params={"v": "0"})
    assert response.status == 200, response
    return [(e["type"], e) for e in response.body]


async def room(api: Api, *endpoints: str) -> str:
    conference_id = await api.create()
    for endpoint in endpoints:
        await api.as_user(f"user-{endpoint}").join(conference_id, endpoint)
    return conference_id
