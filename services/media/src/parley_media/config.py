"""Engine configuration. Defaults never contact the network: no STUN/TURN server."""

from __future__ import annotations

from dataclasses import dataclass, field

from aiortc import RTCConfiguration, RTCIceServer


@dataclass(frozen=True, slots=True)
class IceServer:
    urls: list[str]
    username: str | None = None
    credential: str | None = None


@dataclass(frozen=True, slots=True)
class MediaConfig:
    # aiortc's default RTCConfiguration uses a public STUN host; ours is empty on purpose.
    ice_servers: list[IceServer] = field(default_factory=list)
    # Public IP written over host-candidate addresses in answers (1:1 NAT, k8s hostPort).
    announced_address: str | None = None
    # A peer that has not connected by then is closed (aioice waits forever without end-of-candidates).
    connect_timeout: float = 20.0
    # At most one PLI per publisher video track in this interval (seconds).
    keyframe_min_interval: float = 0.3
    # Per-viewer bounded queues, in encoded frames (video) / packets (audio, 20 ms each).
    video_queue_frames: int = 60
    audio_queue_packets: int = 50
    # Trickled candidates that arrive before publish()/view() wait this long (seconds).
    early_candidate_ttl: float = 30.0
    # Fast start: a joining viewer first gets the GOP in progress when it is at most this many frames
    # long (12 = 400 ms at 30 fps, longer than the PLI rate limit); 0 turns it off.
    fast_start_frames: int = 12
    # Stills: frames kept since the last keyframe to prime a lazily started decoder.
    still_gop_cache_frames: int = 150
    # Stills: wait this long for a picture (e.g. a requested keyframe) before NoPicture.
    still_timeout: float = 2.0
    # Stills: stop a stream's decoder thread after this long without requests.
    still_idle_timeout: float = 60.0

    def rtc_configuration(self) -> RTCConfiguration:
        """Always explicit, so aiortc never falls back to its public STUN default."""
        servers = [
            RTCIceServer(urls=s.urls, username=s.username, credential=s.credential) for s in self.ice_servers
        ]
        return RTCConfiguration(iceServers=servers)
