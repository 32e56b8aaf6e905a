"""Webhook operations on the bus: `parley.cmd|qry.webhook.<op>` to their use cases (queue `conference`)."""

from __future__ import annotations

from typing import Any

from parley_common.contracts.rpc import Request
from parley_common.messaging import subjects
from parley_common.messaging.rpc import Responders

from parley_conference.webhook_handlers import WebhookHandlers

QUEUE = "conference"


async def register_webhooks(responders: Responders, handlers: WebhookHandlers) -> None:
    for op, (kind, body, handler) in handlers.use_cases().items():
        request_type: Any = Request.__class_getitem__(body)  # type: ignore[attr-defined]
        subject = subjects.webhook_command(op) if kind == "cmd" else subjects.webhook_query(op)
        await responders.serve(subject, request_type, handler, queue=QUEUE)
