"""A leader lease in a JetStream key-value bucket, so one replica runs the timers.

The holder refreshes the key well within the bucket's max age; if it dies, the key expires and another
replica's `create` succeeds.
"""

from __future__ import annotations

from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig
from nats.js.errors import KeyWrongLastSequenceError
from nats.js.kv import KeyValue
from parley_common.clock import new_id
from parley_common.messaging.streams import ensure_key_value

BUCKET = "parley_leases"
TTL_SECONDS = 10.0


class Lease:
    def __init__(self, kv: KeyValue, name: str) -> None:
        self._kv = kv
        self._name = name
        self._holder = new_id().encode()
        self._revision: int | None = None

    @classmethod
    async def open(cls, js: JetStreamContext, name: str, *, replicas: int | None = None) -> Lease:
        """`replicas` copies of the bucket (default `PARLEY_NATS_REPLICAS`): a lease must survive the loss
        of a NATS server, or two replicas could both run the timers."""
        # Declared patiently: a cluster electing leaders (just started, or a server lost) answers late.
        config = KeyValueConfig(bucket=BUCKET, history=1, ttl=TTL_SECONDS)
        return cls(await ensure_key_value(js, config, replicas=replicas), name)

    @property
    def held(self) -> bool:
        return self._revision is not None

    async def refresh(self) -> bool:
        """Take or keep the lease; True while this process holds it."""
        try:
            if self._revision is None:
                self._revision = await self._kv.create(self._name, self._holder)
            else:
                self._revision = await self._kv.update(self._name, self._holder, last=self._revision)
        except (TimeoutError, KeyWrongLastSequenceError):
            self._revision = None
        except Exception:
            self._revision = None
        return self._revision is not None

    async def release(self) -> None:
        if self._revision is not None:
            try:
                await self._kv.delete(self._name, last=self._revision)
            finally:
                self._revision = None
