"""Conference service settings (`PARLEY_*` environment variables)."""

from __future__ import annotations

import msgspec
from parley_common.config import CommonSettings, env_float


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    common: CommonSettings
    # An endpoint not seen for this long is SICK...
    keepalive_seconds: float
    # ...and is removed (ConferenceLeftEvent, reason TIMEOUT) after this much longer.
    keepalive_grace_seconds: float
    # A conference nobody is in ends by itself (reason EMPTY_TIMEOUT) after this long.
    empty_timeout_seconds: float
    sweep_interval_seconds: float
    # How long the service waits for a media node's SDP work before answering 503.
    media_request_timeout_seconds: float
    # A media node not heard for this long is lost: its streams end with reason MEDIA_NODE_LOST.
    media_node_timeout_seconds: float
    # A publish that finds no media node (a fresh stack whose nodes have not announced themselves yet)
    # waits this long at most for a heartbeat before answering 503.
    media_node_wait_seconds: float
    # How long a join of a guarded conference waits for its guard's answer at most (also bounded by the
    # join's own deadline) before answering 503.
    admission_timeout_seconds: float
    # A scheduled meeting may start (a token issued) this long before its time (SourceFuse's timeToStart).
    meeting_early_start_minutes: float = 15.0

    @classmethod
    def from_env(cls) -> Settings:
        return cls(
            common=CommonSettings.from_env(),
            keepalive_seconds=env_float("PARLEY_KEEPALIVE_SECONDS", 30.0),
            keepalive_grace_seconds=env_float("PARLEY_KEEPALIVE_GRACE_SECONDS", 120.0),
            empty_timeout_seconds=env_float("PARLEY_EMPTY_TIMEOUT_SECONDS", 300.0),
            sweep_interval_seconds=env_float("PARLEY_SWEEP_INTERVAL_SECONDS", 1.0),
            media_request_timeout_seconds=env_float("PARLEY_MEDIA_REQUEST_TIMEOUT_SECONDS", 5.0),
            media_node_timeout_seconds=env_float("PARLEY_MEDIA_NODE_TIMEOUT_SECONDS", 5.0),
            media_node_wait_seconds=env_float("PARLEY_MEDIA_NODE_WAIT_SECONDS", 2.0),
            admission_timeout_seconds=env_float("PARLEY_ADMISSION_TIMEOUT_SECONDS", 1.0),
            meeting_early_start_minutes=env_float("PARLEY_MEETING_EARLY_START_MINUTES", 15.0),
        )
