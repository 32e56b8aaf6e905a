"""Webhooks out (`/rtc-api/webhooks...`): an organization's endpoints, each operation forwarded to the
conference service (`parley.cmd|qry.webhook.<op>`), errors in the `/rtc-api` shape `{message, traceId}`."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from parley_common.contracts import webhook as api
from parley_common.contracts.base import Empty
from parley_common.contracts.rpc import Caller, Rejected, Request
from parley_common.messaging import subjects
from parley_common.messaging.rpc import RpcClient

from parley_gateway.http import json_response
from parley_gateway.operations import Operation, authenticated, reply_response

TAG = "Webhooks"
BASE = "/rtc-api/webhooks"


def webhook_operations(rpc: RpcClient) -> list[Operation]:
    async def create(request: web.Request, caller: Caller | None, body: Any) -> web.StreamResponse:
        reply = await rpc.request(
            subjects.webhook_command("createWebhook"),
            Request(caller=authenticated(caller), body=body),
            api.CreatedWebhook,
        )
        return reply_response(request, reply, 201)

    async def listed(request: web.Request, caller: Caller | None, _: Any) -> web.StreamResponse:
        reply = await rpc.request(
            subjects.webhook_query("listWebhooks"),
            Request(caller=authenticated(caller), body=Empty()),
            api.Webhooks,
        )
        if isinstance(reply, Rejected):
            return reply_response(request, reply, 200)
        return json_response(reply.value.items)

    def one(op: str, value: Any, status: int) -> Any:
        subject = subjects.webhook_command(op) if op == "deleteWebhook" else subjects.webhook_query(op)

        async def handle(request: web.Request, caller: Caller | None, _: Any) -> web.StreamResponse:
            ref = api.WebhookRef(webhook_id=request.match_info["webhookId"])
            reply = await rpc.request(subject, Request(caller=authenticated(caller), body=ref), value)
            return reply_response(request, reply, status)

        return handle

    return [
        Operation(
            method="POST",
            path=BASE,
            operation_id="createWebhook",
            summary=(
                "Register an endpoint for the organization's events (eventTypes from the event catalogue; "
                "empty: all). The answer holds the signing secret: shown this once only"
            ),
            tag=TAG,
            handler=create,
            body=api.CreateWebhook,
            response=api.CreatedWebhook,
            status=201,
            errors=(400, 401, 403, 409, 503),
        ),
        Operation(
            method="GET",
            path=BASE,
            operation_id="listWebhooks",
            summary="The organization's webhook endpoints (without their secrets)",
            tag=TAG,
            handler=listed,
            response=list[api.Webhook],
            errors=(401, 403, 503),
        ),
        Operation(
            method="GET",
            path=BASE + "/{webhookId}",
            operation_id="getWebhook",
            summary="One webhook endpoint with its parked deliveries (given up after the retries)",
            tag=TAG,
            handler=one("getWebhook", api.WebhookDetails, 200),
            response=api.WebhookDetails,
            errors=(400, 401, 403, 404, 503),
        ),
        Operation(
            method="DELETE",
            path=BASE + "/{webhookId}",
            operation_id="deleteWebhook",
            summary="Delete a webhook endpoint: nothing more is sent to it",
            tag=TAG,
            handler=one("deleteWebhook", Empty, 204),
            errors=(400, 401, 403, 404, 503),
        ),
    ]
