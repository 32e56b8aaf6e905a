"""Bootstrap of the HTTP gateway: one aiohttp application in front of the services on NATS."""

from __future__ import annotations

import asyncio
import functools
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from importlib.metadata import version as package_version
from typing import Any

import msgspec
from aiohttp import web
from faststream.nats import NatsBroker
from nats.aio.msg import Msg
from openapi_ui_bundles import swagger_ui
from parley_common.asyncapi import asyncapi_document
from parley_common.asyncapi import encode as encode_asyncapi
from parley_common.clock import new_id
from parley_common.contracts import conference as api
from parley_common.contracts.base import Id
from parley_common.contracts.rpc import Caller, Rejected, Request
from parley_common.log import get_logger, log_context
from parley_common.messaging import subjects
from parley_common.messaging.broker import CLOSE_SECONDS, make_broker, stop_broker
from parley_common.messaging.rpc import RpcClient
from parley_common.messaging.streams import ensure_streams
from parley_common.sealing import Sealer
from parley_common.service import report_shutdown, run_service

from parley_gateway.asyncapi_page import render_asyncapi
from parley_gateway.chats import TOKEN, ChatGatewaySettings, chat_operations
from parley_gateway.conferences import conference_operations
from parley_gateway.coviu import coviu_operations
from parley_gateway.demo import add_demo_routes
from parley_gateway.health import HealthCheck
from parley_gateway.http import BadRequest, error_response, read_body
from parley_gateway.identity import (
    IdentitySettings,
    OAuthClients,
    OAuthError,
    TokenIssuer,
    TokenRequestBody,
    TokenResponse,
    TokenVerifier,
    Unauthorized,
    bearer_token,
    handle_token_request,
)
from parley_gateway.metrics import add_metrics_route, measure
from parley_gateway.openapi import DOCS_PAGE, encode_document, openapi_document
from parley_gateway.operations import PERMISSION_REFUSED, Operation, QueryParam
from parley_gateway.protocol import GatewayRunner
from parley_gateway.push import EventRouting, PushConnection, PushHub, PushLimits
from parley_gateway.seen import SeenReporter
from parley_gateway.settings import Settings
from parley_gateway.snapshots import SnapshotGatewaySettings, snapshot_operations
from parley_gateway.sourcefuse import sourcefuse_operations
from parley_gateway.user_push import UserPushChannels, user_push_operation
from parley_gateway.waiters import ConferenceWaiters
from parley_gateway.webhooks import webhook_operations

log = get_logger(__name__)
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_routing_decoder = msgspec.json.Decoder(EventRouting)
AiohttpHandler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_BODY_HEADERS = frozenset({"content-type", "content-length", "content-encoding", "transfer-encoding"})


@web.middleware
async def request_context(request: web.Request, handler: AiohttpHandler) -> web.StreamResponse:
    """Request id, access log, and JSON error bodies for whatever aiohttp itself refuses (404, 405, 413)."""
    supplied = request.headers.get("X-Request-Id", "")
    rid = supplied if _REQUEST_ID.match(supplied) else new_id()
    request["request_id"] = rid
    started = time.perf_counter()
    with log_context(request_id=rid):
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            message = "request body too large" if exc.status == 413 else (exc.reason or "error").lower()
            if exc.status == 404:
                message = f"no route for {request.method} {request.path}"
            # Keep what the exception says besides its body (`Allow` on a 405, ...); the body is ours.
            kept = {k: v for k, v in exc.headers.items() if k.lower() not in _BODY_HEADERS}
            response = error_response(request, exc.status, message, headers=kept)
        except Exception:
            log.exception("unhandled error", method=request.method, path=request.path)
            response = error_response(request, 500, "internal error")
        if not response.prepared:
            response.headers["X-Request-Id"] = rid
        log.info(
            "http",
            method=request.method,
            path=request.path,
            status=response.status,
            ms=round((time.perf_counter() - started) * 1e3, 2),
        )
        return response


# Carbonio's clients authenticate with this cookie rather than a header.
AUTH_COOKIE = "ZM_AUTH_TOKEN"


def presented_token(request: web.Request, operation: Operation) -> str:
    """The token of the request: `Authorization: Bearer`, else the ZM_AUTH_TOKEN cookie, else (WebSockets
    only) `?access_token=`. Raises Unauthorized."""
    header = request.headers.get("Authorization")
    if header is not None:
        return bearer_token(header)
    cookie = request.cookies.get(AUTH_COOKIE, "").strip()
    if cookie:
        return cookie
    if operation.token_in_query and "access_token" in request.query:
        return bearer_token(f"Bearer {request.query['access_token']}")
    return bearer_token(None)


def route(
    operation: Operation,
    verifier: TokenVerifier,
    seen: SeenReporter | None = None,
    *,
    max_body_bytes: int | None = None,
) -> AiohttpHandler:
    """Authenticate, decode the body, and run an operation; refusals become `{message, traceId}` bodies.

    A body the route wrapper reads (JSON) whose declared Content-Length is over `max_body_bytes` is 413 before
    a byte of it is read: aiohttp's own limit only trips once that many bytes have arrived, so a client
    announcing 1 GiB and sending a few bytes held the request (and its connection) open until it gave up.
    Operations that stream their body (`streams_body`) apply their own limits the same way.
    """

    async def handle(request: web.Request) -> web.StreamResponse:
        caller: Caller | None = None
        if not operation.public:
            try:
                token = presented_token(request, operation)
                principal = verifier.verify(token)
            except Unauthorized as exc:
                return error_response(request, 401, exc.message, headers={"WWW-Authenticate": "Bearer"})
            if principal.grant is not None and not operation.meeting_tokens:
                # The one place for this rule: a meeting token must not reach chats, snapshots, meetings...
                return error_response(request, 403, "a meeting token is valid only on the conference API")
            request[TOKEN] = token
            if operation.permission is not None and operation.permission not in principal.permissions:
                return error_response(request, 403, PERMISSION_REFUSED)
            if seen is not None:
                seen.seen(principal)  # a background report at most every few minutes: never waits
            caller = Caller(
                organization_id=principal.organization_id,
                user_id=principal.user_id,
                request_id=str(request["request_id"]),
                scopes=principal.scopes,
                name=principal.name,
                email=principal.email,
                grant=principal.grant,
            )
        with log_context(
            organization=caller.organization_id if caller else None,
            user_id=caller.user_id if caller else None,
        ):
            if (
                max_body_bytes is not None
                and not operation.streams_body
                and (request.content_length or 0) > max_body_bytes
            ):
                refused = error_response(request, 413, "request body too large")
                # `Connection: close`: the rest of the announced body must not be read as the next request.
                refused.force_close()
                return refused
            try:
                operation.check_parameters(request)
                body = await read_body(request, operation.body) if operation.body is not None else None
                return await operation.handler(request, caller, body)
            except BadRequest as exc:
                return error_response(request, 400, exc.message)

    return handle


@dataclass
class Gateway:
    """Everything one gateway process holds: the NATS link, the fan-out of events, the HTTP app."""

    settings: Settings
    broker: NatsBroker
    rpc: RpcClient
    waiters: ConferenceWaiters
    hub: PushHub
    app: web.Application
    seen: SeenReporter

    @classmethod
    async def start(cls, settings: Settings) -> Gateway:
        broker = make_broker(settings.common.nats_url, name="parley-gateway")
        await broker.connect()
        nc = broker.connection
        js = nc.jetstream()
        await ensure_streams(js, replicas=settings.common.nats_replicas)
        rpc = RpcClient(nc, timeout=settings.common.request_timeout)
        waiters = ConferenceWaiters()
        hub = PushHub(
            nc,
            js,
            Sealer.from_env(),
            presence_interval=settings.presence_interval_seconds,
            limits=PushLimits.from_env(),
        )

        async def on_conference_event(msg: Msg) -> None:
            try:
                routing = _routing_decoder.decode(msg.data)
            except msgspec.DecodeError:
                log.warning("undecodable conference event")
                return
            waiters.notify(routing.organization_id, routing.conference_id)
            hub.on_conference_event(routing, msg.data)

        await broker.start()
        # Every gateway hears every event (no queue group): long polls and sockets may be on any of them.
        # A plain nats-py callback, not a faststream subscriber: every command yields an event that every
        # gateway routes, and faststream's per-message consume path added 0.6 ms to each command's
        # latency here (the event arrives together with the command's reply). Routing needs no more
        # than a partial decode.
        await nc.subscribe(subjects.CONFERENCE_EVENTS_ALL, cb=on_conference_event)

        identity = IdentitySettings.from_env()
        verifier = TokenVerifier.from_settings(identity)
        issuer = TokenIssuer.from_settings(identity)
        clients = OAuthClients.from_settings(identity)
        health = HealthCheck(
            nc, rpc, essential=settings.essential_services, optional=settings.optional_services
        )
        operations = [
            *conference_operations(
                rpc,
                waiters,
                js,
                longpoll_seconds=settings.longpoll_seconds,
                media_timeout=settings.media_request_timeout_seconds,
            ),
            *snapshot_operations(
                rpc,
                js,
                SnapshotGatewaySettings.from_env(
                    request_timeout=settings.common.request_timeout, port=settings.port
                ),
            ),
            *chat_operations(rpc, js, ChatGatewaySettings.from_env()),
            *webhook_operations(rpc),
            *sourcefuse_operations(rpc, issuer, settings.session_webhook_secret),
            push_operation(rpc, hub),
            user_push_operation(UserPushChannels(js, PushLimits.from_env(), rpc)),
            token_operation(issuer, clients),
            *coviu_operations(rpc, issuer, clients, settings.public_url),
            *health.operations(),
        ]
        seen = SeenReporter(js.publish)
        app = build_app(operations, verifier, settings, seen)
        app.on_startup.append(lambda _: _start_background(app, hub))
        return cls(settings=settings, broker=broker, rpc=rpc, waiters=waiters, hub=hub, app=app, seen=seen)

    async def stop(self) -> None:
        # Bounded: a connection that reconnected to another cluster server must not keep the gateway.
        await self.seen.close()
        report_shutdown("gateway", await stop_broker(self.broker), CLOSE_SECONDS)


async def _start_background(app: web.Application, hub: PushHub) -> None:
    task = asyncio.create_task(hub.report_presence_forever(), name="presence")
    app[BACKGROUND] = task

    async def cancel(_: web.Application) -> None:
        task.cancel()

    app.on_cleanup.append(cancel)


BACKGROUND = web.AppKey("background", asyncio.Task[None])


def routing_order(path: str) -> tuple[bool, ...]:
    """Static segments before templated ones at each depth, so `/users/capabilities` is never read as
    `/users/{userId}` (aiohttp's resolver prefers the longer static prefix today; registering in this order
    keeps that true whatever the declaration order or the aiohttp version)."""
    return tuple("{" in segment for segment in path.split("/"))


@functools.cache
def event_catalogue(version: str) -> tuple[bytes, str]:
    """The AsyncAPI document of the events and NATS subjects (`/asyncapi.json`) and its page (`/asyncapi`).

    Built from the code alone, once per process: every app built (tests build many) shares it.
    """
    document = asyncapi_document(version=version)
    return encode_asyncapi(document), render_asyncapi(document)


def build_app(
    operations: list[Operation],
    verifier: TokenVerifier,
    settings: Settings,
    seen: SeenReporter | None = None,
) -> web.Application:
    app = web.Application(middlewares=[measure, request_context], client_max_size=settings.max_body_bytes)
    for operation in sorted(operations, key=lambda op: routing_order(op.path)):
        app.router.add_route(
            operation.method,
            operation.path,
            route(operation, verifier, seen, max_body_bytes=settings.max_body_bytes),
            name=operation.operation_id,
        )
    document = encode_document(
        openapi_document(operations, title="Parley", version=package_version("parley-gateway"))
    )

    async def openapi(_: web.Request) -> web.Response:
        return web.Response(body=document, content_type="application/json")

    async def docs(_: web.Request) -> web.Response:
        return web.Response(text=DOCS_PAGE, content_type="text/html")

    events_json, events_page = event_catalogue(package_version("parley-gateway"))

    async def asyncapi_json(_: web.Request) -> web.Response:
        return web.Response(body=events_json, content_type="application/json")

    async def asyncapi_html(_: web.Request) -> web.Response:
        return web.Response(text=events_page, content_type="text/html")

    app.router.add_get("/openapi.json", openapi)
    app.router.add_get("/docs", docs)
    app.router.add_get("/asyncapi.json", asyncapi_json)
    app.router.add_get("/asyncapi", asyncapi_html)
    app.router.add_static("/docs/static", swagger_ui.static_path)
    add_demo_routes(app)
    add_metrics_route(app)
    return app


def push_operation(rpc: RpcClient, hub: PushHub) -> Operation:
    async def open_channel(request: web.Request, caller: Caller | None, _: Any) -> web.StreamResponse:
        assert caller is not None
        endpoint_id = request.query.get("userEndpointId", "")
        if not endpoint_id:
            raise BadRequest("query parameter userEndpointId is required")
        ws = web.WebSocketResponse(heartbeat=20.0)
        conn = PushConnection(ws, caller.organization_id, endpoint_id, user_id=caller.user_id)
        # Attach before asking which conferences it is in, so a join committed in between is not missed.
        hub.attach(conn)
        try:
            reply = await rpc.request(
                subjects.conference_query("endpointConferences"),
                Request(caller=caller, body=api.EndpointConferencesQuery(user_endpoint_id=endpoint_id)),
                api.EndpointConferences,
            )
            if isinstance(reply, Rejected):
                return error_response(request, reply.status, reply.message)
            owner = reply.value.owner_user_id
            if owner is not None and owner != caller.user_id:
                return error_response(request, 403, f"userEndpointId {endpoint_id} belongs to another user")
            conn.conferences.update(reply.value.conference_ids)
            await ws.prepare(request)
            await hub.serve(conn)
            return ws
        finally:
            hub.detach(conn)

    return Operation(
        method="GET",
        path="/rtc-api/events/ws",
        operation_id="pushChannel",
        summary="WebSocket push channel of one user endpoint (conference events and sendEvent events)",
        tag="Conferences",
        handler=open_channel,
        status=101,
        token_in_query=True,
        meeting_tokens=True,
        query=(
            QueryParam("userEndpointId", Id, required=True, description="the endpoint to stream to"),
            QueryParam("access_token", str, description="bearer token, for clients that cannot set headers"),
        ),
        errors=(400, 401, 403, 429, 503),
    )


def token_operation(issuer: TokenIssuer, clients: OAuthClients) -> Operation:
    async def token(request: web.Request, _: Caller | None, __: Any) -> web.StreamResponse:
        return await handle_token_request(request, issuer, clients)

    return Operation(
        method="POST",
        path="/security/oauth/token",
        operation_id="token",
        summary="OAuth2 client-credentials grant (client id and secret by HTTP Basic or form fields)",
        tag="Security",
        handler=token,
        public=True,
        form=TokenRequestBody,
        form_media_types=("application/x-www-form-urlencoded", "application/json"),
        response=TokenResponse,
        errors=(),
        extra_responses={400: "invalid_request / unsupported_grant_type", 401: "invalid_client"},
        extra_response_body=OAuthError,
    )


async def serve(settings: Settings, stop: asyncio.Event) -> None:
    gateway = await Gateway.start(settings)
    runner = GatewayRunner(gateway.app, access_log=None, shutdown_timeout=5.0)
    await runner.setup()
    site = web.TCPSite(runner, settings.host, settings.port, reuse_address=True)
    await site.start()
    log.info("gateway ready", url=f"http://{settings.host}:{settings.port}")
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
        await gateway.stop()


def main() -> None:
    # The gateway serves HTTP rather than bus requests: only `main` is shared, not the serve skeleton.
    run_service("gateway", Settings.from_env, serve, metrics_server=False)
