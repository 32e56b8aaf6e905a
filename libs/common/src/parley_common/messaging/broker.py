"""The faststream NATS broker every service runs its handlers on."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from faststream.nats import NatsBroker
from nats.aio.client import Client

from parley_common.config import nats_servers
from parley_common.log import get_logger
from parley_common.messaging.codec import MsgspecCodec

log = get_logger(__name__)

# How long a stopping service lets its NATS connection drain (messages received handled, publishes
# flushed) before closing it with whatever is left.
CLOSE_SECONDS = 2.0


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


def _connection_of(broker: NatsBroker) -> Client | None:
    try:
        return broker.connection
    except Exception:  # never connected, or already released
        return None


async def stop_broker(broker: NatsBroker, *, within: float = CLOSE_SECONDS) -> list[str]:
    """Stop `broker` and drain its connection, closing it past `within` seconds whatever is left.

    Returns what was abandoned (empty when the drain finished), for the caller's one shutdown line.
    Never raises, never waits much longer than `within`: nats-py's own drain waits up to 30 s.
    """
    nc = _connection_of(broker)
    if nc is None or nc.is_closed:
        with contextlib.suppress(Exception):
            await broker.stop()
        return []
    await _drop_unread(nc)
    stopping = asyncio.create_task(broker.stop(), name="nats-drain")
    done, _ = await asyncio.wait({stopping}, timeout=within)
    if stopping in done:
        failure = stopping.exception()
        if failure is None:
            return []
        abandoned = [f"nats drain failed: {failure!r}"]
    else:
        abandoned = _still_draining(nc) or [f"nats drain unfinished after {within:g} s"]
    # Closed first, so the drain task's own last flush fails at once instead of waiting for a PONG.
    with contextlib.suppress(Exception):
        await asyncio.wait_for(nc.close(), timeout=1.0)
    stopping.cancel()
    await asyncio.wait({stopping}, timeout=1.0)
    return abandoned


async def _drop_unread(nc: Client) -> None:
    """Unsubscribe the subscriptions without a callback (pull consumers, `next_msg` readers) before the
    drain: by now their reader is stopped, so the drain would wait on them for nothing. Worse, nats-py's
    pull `fetch` takes leftover messages (those that came after a fetch timed out, as while a cluster
    elects a stream leader) off the subscription's queue without `task_done()`, so draining such a
    subscription waits out nats-py's whole drain timeout. Unacknowledged JetStream messages are
    redelivered to the next consumer; nothing is lost by not reading them here."""
    # nats-py lists subscriptions only privately (`_subs`; `_cb` is None for one read with next_msg/fetch).
    for sub in list(nc._subs.values()):
        if sub._cb is None:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()


def _still_draining(nc: Client) -> list[str]:
    """The subscriptions a drain past its deadline still waits on, with their unhandled messages."""
    return [
        f"subscription {sub.subject}: {sub.pending_msgs} message(s) unhandled"
        for sub in list(nc._subs.values())
        if not sub._closed
    ]
