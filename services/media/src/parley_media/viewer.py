"""A viewer leg: a sendonly peer whose tracks replay the publisher's packets without re-encoding."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from aiortc import RTCPeerConnection, RTCRtpTransceiver

from .config import MediaConfig
from .errors import InvalidSdp
from .forwarding import ForwardedTrack, TrackFanout
from .keyframes import route_viewer_keyframe_requests
from .model import StreamKey
from .negotiation import apply_offer, first_of_kind, parse_offer, pin_codecs
from .session import PeerSession


class Viewer(PeerSession):
    def __init__(
        self,
        stream: StreamKey,
        viewer_id: str,
        fanouts: Mapping[str, TrackFanout],
        config: MediaConfig,
        live_pcs: set[RTCPeerConnection],
        on_lost: Callable[[str], None],
    ) -> None:
        super().__init__(config, live_pcs, on_lost)
        self.stream = stream
        self.viewer_id = viewer_id
        self._fanouts = fanouts
        self.tracks: dict[str, ForwardedTrack] = {}

    async def negotiate(self, offer_sdp: str) -> str:
        offered = parse_offer(offer_sdp)
        own: list[RTCRtpTransceiver] = []
        for kind, fanout in self._fanouts.items():
            media = first_of_kind(offered, kind)
            if media is None or not media.receives:
                continue
            capacity = self.config.video_queue_frames if kind == "video" else self.config.audio_queue_packets
            track = ForwardedTrack(kind, capacity, fanout.request_keyframe)
            transceiver = self.pc.addTransceiver(track, direction="sendonly")
            pin_codecs(transceiver)
            route_viewer_keyframe_requests(transceiver.sender, track.request_keyframe)
            own.append(transceiver)
            self.tracks[kind] = track
        if not own:
            raise InvalidSdp("the offer receives none of the stream's media")
        await apply_offer(self.pc, offer_sdp, own)
        self._ensure_open()
        # Subscribe now: until the sender starts reading, each track keeps only the newest GOP.
        for kind, track in self.tracks.items():
            self._fanouts[kind].add(track, replay_gop=True)
        if "video" in self.tracks:
            self._fanouts["video"].request_keyframe()
        return await self._finish_negotiation()

    @property
    def dropped(self) -> int:
        return sum(t.dropped for t in self.tracks.values())

    async def close(self) -> None:
        if not self._begin_close():
            return
        for kind, track in self.tracks.items():
            self._fanouts[kind].remove(track)
            track.end()
        await self._close_pc()
