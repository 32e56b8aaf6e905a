"""Events addressed to user endpoints (sendEvent) and the gateway's presence reports."""

from __future__ import annotations

from parley_common.contracts.base import JsonObject, Payload
from parley_common.contracts.conference import Qos


class PushedEvent(Payload, frozen=True):
    """One sendEvent event on its way to one endpoint.

    `event` is the stored/logged copy: masked fields are starred out. When masks hid something, `sealed`
    carries the original, encrypted with the data key, so the endpoint still receives it unmasked.
    """

    organization_id: str
    user_endpoint_id: str
    conference_id: str
    event_id: str
    qos: Qos
    event: JsonObject
    sealed: str | None = None


class PresenceReport(Payload, frozen=True):
    """Endpoints a gateway (or a conference service replica) has just seen alive."""

    organization_id: str
    user_endpoint_ids: list[str]
