"""Media node settings (`PARLEY_*` environment variables)."""

from __future__ import annotations

import socket

import msgspec
from parley_common.config import CommonSettings, env_float, env_int, env_opt, env_str

from parley_media.config import IceServer, MediaConfig


class IceServerSetting(msgspec.Struct, frozen=True):
    """One entry of PARLEY_MEDIA_ICE_SERVERS, shaped like the browser's RTCIceServer."""

    urls: str | list[str]
    username: str | None = None
    credential: str | None = None

    def to_config(self) -> IceServer:
        urls = [self.urls] if isinstance(self.urls, str) else list(self.urls)
        return IceServer(urls=urls, username=self.username, credential=self.credential)


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    common: CommonSettings
    # Requests reach this node on `parley.media.<node_id>.<op>`; unique per running node.
    node_id: str
    # STUN/TURN servers the node gathers candidates with; none by default, so nothing is contacted.
    ice_servers: tuple[IceServer, ...]
    # Public IP written over host candidates in answers (1:1 NAT); unset: the interfaces' own addresses.
    announced_address: str | None
    heartbeat_seconds: float
    # Published streams the node takes before it counts as full; 0 = unlimited.
    capacity: int
    # How long trickled candidates for a publisher/viewer not known yet wait for its publish/view.
    candidate_wait_seconds: float
    # A peer not connected by then is closed (a publisher's end is then reported as MediaStreamEndedEvent):
    # a client that vanishes before ICE completes sends nothing, so this is how long it is held.
    connect_timeout_seconds: float
    log_level: str

    @classmethod
    def from_env(cls) -> Settings:
        return cls(
            common=CommonSettings.from_env(),
            node_id=env_str("PARLEY_MEDIA_NODE_ID", socket.gethostname()),
            ice_servers=parse_ice_servers(env_str("PARLEY_MEDIA_ICE_SERVERS", "[]")),
            announced_address=env_opt("PARLEY_MEDIA_ANNOUNCED_ADDRESS"),
            heartbeat_seconds=env_float("PARLEY_MEDIA_HEARTBEAT_SECONDS", 1.0),
            capacity=env_int("PARLEY_MEDIA_CAPACITY", 0),
            candidate_wait_seconds=env_float("PARLEY_MEDIA_CANDIDATE_WAIT_SECONDS", 1.0),
            connect_timeout_seconds=env_float("PARLEY_MEDIA_CONNECT_TIMEOUT_SECONDS", 20.0),
            log_level=env_str("PARLEY_LOG_LEVEL", "INFO"),
        )

    def media_config(self) -> MediaConfig:
        return MediaConfig(
            ice_servers=list(self.ice_servers),
            announced_address=self.announced_address,
            connect_timeout=self.connect_timeout_seconds,
            # The node hands candidates to the engine only once it knows their session, so the engine's
            # own early buffer only covers the instant between the two: keep nothing for long.
            early_candidate_ttl=max(self.candidate_wait_seconds, 1.0),
        )


def parse_ice_servers(raw: str) -> tuple[IceServer, ...]:
    """`[{"urls": "turn:turn.example.com:3478", "username": "u", "credential": "p"}, ...]`."""
    try:
        servers = msgspec.json.decode(raw.encode(), type=list[IceServerSetting])
    except msgspec.DecodeError as exc:
        raise ValueError(f"PARLEY_MEDIA_ICE_SERVERS must be a JSON list of {{urls, ...}}: {exc}") from exc
    return tuple(server.to_config() for server in servers)
