"""Janus (Debian package ``janus``) as the reference SFU: generated config, process, VideoRoom over HTTP.

Only the VideoRoom plugin and the HTTP transport are loaded (their folders hold just those two
libraries, symlinked from the package), HTTP listens on a free loopback port, no STUN server is set and
ICE is restricted to the given local address. Nothing of Janus is committed: all of it is generated here.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import shutil
import socket
from pathlib import Path
from typing import Any

import aiohttp
import psutil

JANUS_LIB = Path("/usr/lib/x86_64-linux-gnu/janus")
ROOM = 4242


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def janus_binary() -> str | None:
    return shutil.which("janus")


def write_config(folder: Path, http_port: int, ice_address: str) -> Path:
    libraries = (("plugins", "plugins/libjanus_videoroom.so"), ("transports", "transports/libjanus_http.so"))
    for sub, library in libraries:
        (folder / sub).mkdir(parents=True, exist_ok=True)
        link = folder / sub / Path(library).name
        if not link.exists():
            link.symlink_to(JANUS_LIB / library)
    for sub in ("events", "loggers"):
        (folder / sub).mkdir(exist_ok=True)
    (folder / "janus.jcfg").write_text(
        f"""general: {{
    configs_folder = "{folder}"
    plugins_folder = "{folder}/plugins"
    transports_folder = "{folder}/transports"
    events_folder = "{folder}/events"
    loggers_folder = "{folder}/loggers"
    debug_level = 3
    session_timeout = 0
}}
certificates: {{
}}
media: {{
    rtp_port_range = "20000-40000"
}}
nat: {{
    nice_debug = false
    ice_enforce_list = "{ice_address}"
}}
plugins: {{
}}
transports: {{
}}
events: {{
}}
"""
    )
    (folder / "janus.transport.http.jcfg").write_text(
        f"""general: {{
    json = "plain"
    base_path = "/janus"
    http = true
    port = {http_port}
    ip = "127.0.0.1"
    https = false
}}
admin: {{
    admin_http = false
    admin_https = false
}}
"""
    )
    (folder / "janus.plugin.videoroom.jcfg").write_text("general: {\n}\n")
    return folder / "janus.jcfg"


class JanusError(RuntimeError):
    pass


class JanusServer:
    """One janus process for one trial."""

    def __init__(self, folder: Path, ice_address: str) -> None:
        self.folder = folder
        self.ice_address = ice_address
        self.port = free_port()
        self.process: asyncio.subprocess.Process | None = None
        self.ps: psutil.Process | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/janus"

    async def start(self, log_path: Path, timeout: float = 15.0) -> None:
        binary = janus_binary()
        if binary is None:
            raise JanusError("janus is not installed (apt-get install janus)")
        config = write_config(self.folder, self.port, self.ice_address)
        with log_path.open("ab") as log:
            self.process = await asyncio.create_subprocess_exec(
                binary, "-C", str(config), "-F", str(self.folder), "-o", stdout=log, stderr=log
            )
        self.ps = psutil.Process(self.process.pid)
        deadline = asyncio.get_running_loop().time() + timeout
        async with aiohttp.ClientSession() as http:
            while True:
                if self.process.returncode is not None:
                    raise JanusError(f"janus exited with {self.process.returncode}; see {log_path}")
                with contextlib.suppress(aiohttp.ClientError):
                    async with http.get(f"{self.url}/info") as response:
                        if response.status == 200:
                            return
                if asyncio.get_running_loop().time() > deadline:
                    raise JanusError(f"janus did not answer on {self.url}; see {log_path}")
                await asyncio.sleep(0.1)

    def cpu_seconds(self) -> float:
        assert self.ps is not None
        times = self.ps.cpu_times()
        return float(times.user + times.system)

    async def stop(self) -> None:
        if self.process is None or self.process.returncode is not None:
            return
        self.process.terminate()
        try:
            await asyncio.wait_for(self.process.wait(), 10)
        except TimeoutError:
            self.process.kill()
            await self.process.wait()


class JanusSession:
    """A Janus API session over HTTP: requests by transaction, asynchronous events by long poll."""

    def __init__(self, url: str, http: aiohttp.ClientSession) -> None:
        self._url = url
        self._http = http
        self._ids = itertools.count(1)
        self._waiting: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._session_url = ""
        self._poller: asyncio.Task[None] | None = None

    async def _post(self, url: str, body: dict[str, Any]) -> dict[str, Any]:
        async with self._http.post(url, json=body) as response:
            reply: dict[str, Any] = await response.json(content_type=None)
        if reply.get("janus") == "error":
            raise JanusError(str(reply.get("error")))
        return reply

    def _transaction(self) -> str:
        return f"t{next(self._ids)}"

    async def open(self) -> None:
        reply = await self._post(self._url, {"janus": "create", "transaction": self._transaction()})
        self._session_url = f"{self._url}/{reply['data']['id']}"
        self._poller = asyncio.create_task(self._poll())

    async def attach(self, plugin: str = "janus.plugin.videoroom") -> str:
        reply = await self._post(
            self._session_url, {"janus": "attach", "plugin": plugin, "transaction": self._transaction()}
        )
        return f"{self._session_url}/{reply['data']['id']}"

    async def message(
        self, handle: str, body: dict[str, Any], jsep: dict[str, Any] | None = None, timeout: float = 20.0
    ) -> tuple[dict[str, Any], dict[str, Any] | None]:
        """Send a plugin request; returns (plugin data, jsep) from the synchronous reply or the event."""
        transaction = self._transaction()
        request: dict[str, Any] = {"janus": "message", "transaction": transaction, "body": body}
        if jsep is not None:
            request["jsep"] = jsep
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[transaction] = future
        try:
            reply = await self._post(handle, request)
            if reply.get("janus") != "ack":
                event = reply
            else:
                event = await asyncio.wait_for(future, timeout)
        finally:
            self._waiting.pop(transaction, None)
        data = event.get("plugindata", {}).get("data", {})
        if "error" in data:
            raise JanusError(f"{body.get('request')}: {data['error']}")
        return data, event.get("jsep")

    async def _poll(self) -> None:
        while True:
            try:
                async with self._http.get(f"{self._session_url}?maxev=20") as response:
                    events = await response.json(content_type=None)
            except (aiohttp.ClientError, TimeoutError):
                await asyncio.sleep(0.1)
                continue
            for event in events if isinstance(events, list) else [events]:
                future = self._waiting.get(event.get("transaction", ""))
                if future is not None and not future.done() and event.get("janus") == "event":
                    future.set_result(event)

    async def close(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
        if self._session_url:
            with contextlib.suppress(aiohttp.ClientError, JanusError):
                await self._post(self._session_url, {"janus": "destroy", "transaction": self._transaction()})


class VideoRoom:
    """One room, one VP8 publisher, subscribers each on their own handle."""

    def __init__(self, session: JanusSession) -> None:
        self.session = session
        self.feed: int | None = None
        self._publisher_handle = ""

    async def create(self) -> None:
        admin = await self.session.attach()
        await self.session.message(
            admin,
            {
                "request": "create",
                "room": ROOM,
                "publishers": 1,
                "videocodec": "vp8",
                "bitrate": 0,
                "fir_freq": 0,
                "notify_joining": False,
            },
        )

    async def publish(self, offer_sdp: str) -> str:
        self._publisher_handle = await self.session.attach()
        joined, _ = await self.session.message(
            self._publisher_handle, {"request": "join", "ptype": "publisher", "room": ROOM, "display": "cam"}
        )
        self.feed = int(joined["id"])
        _, jsep = await self.session.message(
            self._publisher_handle, {"request": "publish"}, jsep={"type": "offer", "sdp": offer_sdp}
        )
        if jsep is None:
            raise JanusError("publish: no answer")
        return str(jsep["sdp"])

    async def subscribe(self) -> tuple[str, str]:
        """Returns (handle, Janus's offer)."""
        handle = await self.session.attach()
        _, jsep = await self.session.message(
            handle, {"request": "join", "ptype": "subscriber", "room": ROOM, "streams": [{"feed": self.feed}]}
        )
        if jsep is None:
            raise JanusError("subscribe: no offer")
        return handle, str(jsep["sdp"])

    async def start(self, handle: str, answer_sdp: str) -> None:
        await self.session.message(handle, {"request": "start"}, jsep={"type": "answer", "sdp": answer_sdp})
