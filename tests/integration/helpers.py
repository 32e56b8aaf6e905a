"""What the integration tests share: a running stack on free ports, tokens, and a small API client."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import aiohttp
import jwt
from parley_common.processes import LocalStack, NatsServer, free_port, wait_for_port

SECRET = "integration-test-secret-of-32-bytes+"
ORG = "acme"


def token(
    user: str = "alice", org: str = ORG, *, ttl: float = 600, secret: str = SECRET, **claims: Any
) -> str:
    now = int(time.time())
    payload = {
        "sub": user,
        "org": org,
        "name": user.title(),
        "scope": "any",
        "iat": now,
        "exp": now + int(ttl),
        **claims,
    }
    return jwt.encode(payload, secret, algorithm="HS256")


def unique(prefix: str = "c") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


class Stack:
    """nats-server, `conferences` conference-service replicas, `media` media nodes (`media-0`, ...), the
    snapshot service if `snapshot`, the chat service if `chat`, and `gateways` gateways, on free ports.
    `nats_cluster` 3: three clustered nats-servers (`nats_servers`) and R3 streams instead of one server."""

    def __init__(
        self,
        root: Path,
        *,
        gateways: int = 1,
        conferences: int = 1,
        media: int = 0,
        snapshot: bool = False,
        chat: bool = False,
        nats_cluster: int = 1,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.ports = [free_port() for _ in range(gateways)]
        names = [f"gateway-{i}" for i in range(gateways)]
        self.media_names = [f"media-{i}" for i in range(media)]
        self.conference_names = (
            ["conference"] if conferences == 1 else [f"conference-{i}" for i in range(conferences)]
        )
        self.local = LocalStack(
            root / "data",
            [
                *((name, "parley_conference") for name in self.conference_names),
                *((name, "parley_media") for name in self.media_names),
                *([("snapshot", "parley_snapshot")] if snapshot else []),
                *([("chat", "parley_chat")] if chat else []),
                *((name, "parley_gateway") for name in names),
            ],
            env={
                "PARLEY_JWT_SECRET": SECRET,
                # A real JWT secret makes this a deployment: the snapshot service then needs its own key.
                "PARLEY_SNAPSHOT_SIGNING_KEY": "integration-stack-snapshot-signing-key",
                "PARLEY_OAUTH_CLIENTS": f"backoffice:backoffice-secret:{ORG}",
                "PARLEY_LOG_LEVEL": "INFO",
                **(env or {}),
            },
            service_env={
                **{
                    name: {"PARLEY_HTTP_PORT": str(port)}
                    for name, port in zip(names, self.ports, strict=True)
                },
                **{name: {"PARLEY_MEDIA_NODE_ID": name} for name in self.media_names},
            },
            nats_cluster=nats_cluster,
            log_dir=root / "logs",
        )
        self.gateway_names = names
        # A fresh cluster elects its leaders while the services declare their streams: slower to start
        # on a busy machine (a service waits out a JetStream request that timed out, and declares again).
        self.ready_timeout = 30.0 if nats_cluster == 1 else 90.0

    @property
    def url(self) -> str:
        return self.gateway_url(0)

    def gateway_url(self, index: int) -> str:
        return f"http://127.0.0.1:{self.ports[index]}"

    @property
    def nats_url(self) -> str:
        """The first server's URL (the only one, unless clustered)."""
        return self.local.nats.url

    def metrics_url(self, name: str) -> str:
        """Where process `name` (`conference`, `media-0`, `gateway-0`...) serves its Prometheus metrics."""
        return self.local.metrics_url(name)

    @property
    def nats_servers(self) -> list[NatsServer]:
        return self.local.nats_servers

    def start(self) -> Stack:
        """Start every process and wait until each gateway is ready. A failed start stops what it started
        (no process outlives the test) and prints the tail of each service's log, then raises."""
        try:
            self.local.start()
            for port in self.ports:
                self.wait_ready(port, self.ready_timeout)
        except Exception:
            self.stop()
            for name in self.local.processes:
                print(f"--- {name} log ---\n{self.logs(name)[-4000:]}")
            raise
        return self

    def wait_ready(self, port: int, timeout: float = 30.0) -> None:
        """Until the gateway answers /health/ready with 204 (it and the conference service are up)."""
        wait_for_port("127.0.0.1", port, timeout=timeout)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health/ready", timeout=2) as response:
                    if response.status == 204:
                        return
            except (urllib.error.URLError, ConnectionError):
                pass
            time.sleep(0.05)
        raise TimeoutError(f"gateway on port {port} not ready")

    def restart(self, name: str, *, kill: bool = False) -> None:
        process = self.local[name]
        if kill:
            process.kill()
        else:
            process.stop()
        process.start()
        if name.startswith("gateway"):
            self.wait_ready(self.ports[self.gateway_names.index(name)])
        else:
            for port in self.ports:
                self.wait_ready(port)

    def stop(self) -> None:
        self.local.stop()

    def logs(self, name: str) -> str:
        path = self.local.log_dir / f"{name}.log" if self.local.log_dir else None
        return path.read_text(errors="replace") if path and path.exists() else ""


class Response:
    def __init__(self, status: int, body: Any, headers: Mapping[str, str]) -> None:
        self.status = status
        self.body = body
        self.headers = headers

    def __repr__(self) -> str:
        return f"<Response {self.status} {self.body!r}>"


class Api:
    """A client of one gateway with one identity."""

    def __init__(self, session: aiohttp.ClientSession, base_url: str, bearer: str | None) -> None:
        self.session = session
        self.base_url = base_url
        self.bearer = bearer

    def as_user(self, user: str, org: str = ORG) -> Api:
        return Api(self.session, self.base_url, token(user, org))

    def on(self, base_url: str) -> Api:
        return Api(self.session, base_url, self.bearer)

    def _headers(self, extra: Mapping[str, str] | None) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {self.bearer}"} if self.bearer else {}
        return {**headers, **(extra or {})}

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        data: bytes | str | None = None,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float = 10.0,
    ) -> Response:
        async with self.session.request(
            method,
            self.base_url + path,
            json=json,
            data=data,
            params=params,
            headers=self._headers(headers),
            timeout=aiohttp.ClientTimeout(total=timeout),
        ) as response:
            raw = await response.read()
            body: Any = None
            if raw and response.content_type == "application/json":
                body = await response.json()
            elif raw:
                body = raw
            return Response(response.status, body, response.headers)

    async def post(self, op: str, body: Any = None, **kwargs: Any) -> Response:
        path = op if op.startswith("/") else f"/rtc-api/conferences/{op}"
        return await self.request("POST", path, json=body, **kwargs)

    async def get(self, path: str, **kwargs: Any) -> Response:
        return await self.request("GET", path, **kwargs)

    async def create(self, **body: Any) -> str:
        response = await self.post("create", body)
        assert response.status == 200, response
        return str(response.body["id"])

    async def join(self, conference_id: str, endpoint: str, **body: Any) -> Response:
        response = await self.post(
            "join", {"conferenceId": conference_id, "userEndpointId": endpoint, **body}
        )
        assert response.status == 200, response
        return response

    async def conference(self, conference_id: str) -> dict[str, Any]:
        response = await self.get(f"/rtc-api/conferences/{conference_id}")
        assert response.status == 200, response
        return dict(response.body)

    async def events(
        self, conference_id: str, v: int, *, endpoint: str | None = None, **kwargs: Any
    ) -> Response:
        params = {"v": str(v)} | ({"userEndpointId": endpoint} if endpoint else {})
        return await self.get(f"/rtc-api/conferences/{conference_id}/events", params=params, **kwargs)
