"""The faststream NATS broker every service runs its handlers on."""

from __future__ import annotations

from faststream.nats import NatsBroker

from parley_common.messaging.codec import MsgspecCodec


def make_broker(url: str, *, name: str, no_echo: bool = False) -> NatsBroker:
    """A broker wired with the msgspec codec.

    `apply_types=False`: handlers take the raw body and decode it with msgspec themselves, which is both
    faster (no per-message dependency injection) and the only way to turn a malformed payload into an
    explicit rejection reply. faststream's own per-message INFO logging is off; handlers log structurally.
    `no_echo` keeps a process from receiving what it publishes itself (it applies its own events directly).
    """
    return NatsBroker(
        url,
        name=name,
        codec=MsgspecCodec(),
        apply_types=False,
        logger=None,
        allow_reconnect=True,
        max_reconnect_attempts=-1,
        reconnect_time_wait=1,
        connect_timeout=2,
        no_echo=no_echo,
    )
