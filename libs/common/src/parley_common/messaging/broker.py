"""The faststream NATS broker every service runs its handlers on."""

from __future__ import annotations

from collections.abc import Callable

from faststream.nats import NatsBroker
from nats.aio.client import Client

from parley_common.config import nats_servers
from parley_common.log import get_logger
from parley_common.messaging.codec import MsgspecCodec

log = get_logger(__name__)


class ConnectionEvents:
    """nats-py's connection callbacks as structured log lines, so an outage of the bus shows in every
    service's log: warning when the link drops, info when it is back, error when the connection closes
    on an error (nats-py gave up, or the server refused it); an orderly close (the service stopping) is info.

    Without them nats-py says nothing on a disconnect or a reconnect, and logs each failed reconnection
    attempt as an ERROR with a traceback (once a second for as long as the outage lasts).
    """

    def __init__(self, name: str, url: str, client: Callable[[], Client | None]) -> None:
        self._name = name
        self._url = url
        self._client = client

    def _connection(self) -> Client | None:
        try:
            return self._client()
        except Exception:  # not connected yet, or already released by the broker
            return None

    async def disconnected(self) -> None:
        nc = self._connection()
        if nc is not None and nc.is_closed:
            return  # closing: nats-py reports that as a disconnect too; `closed` says it
        log.warning("nats disconnected; reconnecting", connection=self._name, nats=self._url)

    async def reconnected(self) -> None:
        log.info("nats reconnected", connection=self._name, nats=self._url)

    async def closed(self) -> None:
        nc = self._connection()
        error = nc.last_error if nc is not None else None
        if error is None:
            log.info("nats connection closed", connection=self._name, nats=self._url)
        else:
            log.error("nats connection closed", connection=self._name, nats=self._url, error=repr(error))

    async def error(self, exc: Exception) -> None:
        # One line per failed attempt, without a traceback: the disconnect itself was logged already.
        log.warning("nats connection error", connection=self._name, nats=self._url, error=repr(exc))


def make_broker(url: str, *, name: str, no_echo: bool = False) -> NatsBroker:
    """A broker wired with the msgspec codec and the connection's state changes logged.

    `apply_types=False`: handlers take the raw body and decode it with msgspec themselves, which is both
    faster (no per-message dependency injection) and the only way to turn a malformed payload into an
    explicit rejection reply. faststream's own per-message INFO logging is off; handlers log structurally.
    `no_echo` keeps a process from receiving what it publishes itself (it applies its own events directly).
    """
    broker: NatsBroker | None = None
    events = ConnectionEvents(name, url, lambda: broker.connection if broker is not None else None)
    broker = NatsBroker(
        # A cluster's servers, comma-separated in PARLEY_NATS_URL: the client reconnects to another one.
        nats_servers(url),
        name=name,
        codec=MsgspecCodec(),
        apply_types=False,
        logger=None,
        allow_reconnect=True,
        max_reconnect_attempts=-1,
        reconnect_time_wait=1,
        connect_timeout=2,
        no_echo=no_echo,
        disconnected_cb=events.disconnected,
        reconnected_cb=events.reconnected,
        closed_cb=events.closed,
        error_cb=events.error,
    )
    return broker
