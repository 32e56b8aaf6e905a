"""Parley's real media node (``python -m parley_media``) behind a real nats-server, driven over NATS.

The bench plays the conference service: it sends ``publish`` / ``view`` requests to
``parley.media.<node>.<op>`` exactly as the node's tests do. Only the node process is measured; the
nats-server only carries the signalling and the node's heartbeats.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import uuid
from pathlib import Path

import msgspec
import nats
import psutil
from nats.aio.client import Client
from nats.aio.msg import Msg
from parley_common.contracts.media import MediaNodeHeartbeat, MediaStream, PublishMedia, SdpAnswer, ViewMedia
from parley_common.contracts.rpc import Accepted, Caller, Request
from parley_common.messaging import subjects
from parley_common.messaging.rpc import RpcClient
from parley_common.processes import NatsServer

ORG, CONFERENCE, STREAM, ENDPOINT = "bench-org", "bench-conference", "cam", "bench-endpoint"
CALLER = Caller(organization_id=ORG, user_id="conference-service", request_id="bench")


class MediaNodeProcess:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.node_id = f"bench-{uuid.uuid4().hex[:8]}"
        self.nats = NatsServer(folder / "nats")
        self.process: asyncio.subprocess.Process | None = None
        self.ps: psutil.Process | None = None
        self.nc: Client | None = None
        self.rpc: RpcClient | None = None
        self.stream = MediaStream(organization_id=ORG, conference_id=CONFERENCE, stream_id=STREAM)

    async def start(self, log_path: Path, timeout: float = 30.0) -> None:
        await asyncio.to_thread(self.nats.start)
        self.nc = await nats.connect(self.nats.url)
        self.rpc = RpcClient(self.nc, timeout=30.0)
        ready = asyncio.get_running_loop().create_future()
        decoder = msgspec.json.Decoder(MediaNodeHeartbeat)

        async def on_heartbeat(msg: Msg) -> None:
            if decoder.decode(msg.data).node_id == self.node_id and not ready.done():
                ready.set_result(None)

        subscription = await self.nc.subscribe(subjects.MEDIA_HEARTBEAT, cb=on_heartbeat)
        env = dict(
            os.environ,
            PARLEY_NATS_URL=self.nats.url,
            PARLEY_DATA_DIR=str(self.folder),
            PARLEY_MEDIA_NODE_ID=self.node_id,
            PARLEY_LOG_LEVEL="WARNING",
        )
        with log_path.open("ab") as log:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "parley_media", env=env, stdout=log, stderr=log
            )
        self.ps = psutil.Process(self.process.pid)
        try:
            await asyncio.wait_for(ready, timeout)  # the first heartbeat: requests are served
        finally:
            await subscription.unsubscribe()

    async def _call(self, op: str, body: PublishMedia | ViewMedia) -> str:
        assert self.rpc is not None
        reply = await self.rpc.request(
            subjects.media_node(self.node_id, op), Request(caller=CALLER, body=body), SdpAnswer
        )
        if not isinstance(reply, Accepted):
            raise RuntimeError(f"media node {op}: {reply}")
        return reply.value.sdp_answer

    async def publish(self, offer_sdp: str) -> str:
        body = PublishMedia(
            stream=self.stream, stream_type="CAM", sdp_offer=offer_sdp, user_endpoint_id=ENDPOINT
        )
        return await self._call("publish", body)

    async def view(self, viewer_id: str, offer_sdp: str) -> str:
        body = ViewMedia(
            stream=self.stream, viewer_id=viewer_id, sdp_offer=offer_sdp, user_endpoint_id=ENDPOINT
        )
        return await self._call("view", body)

    def cpu_seconds(self) -> float:
        assert self.ps is not None
        times = self.ps.cpu_times()
        return float(times.user + times.system)

    async def stop(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.terminate()  # SIGTERM: the node closes every stream, then exits
            try:
                await asyncio.wait_for(self.process.wait(), 20)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()
        if self.nc is not None:
            with contextlib.suppress(Exception):
                await self.nc.close()
        await asyncio.to_thread(self.nats.stop)
