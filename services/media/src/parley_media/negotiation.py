"""Offer inspection and codec pinning shared by the publisher and viewer legs."""

from __future__ import annotations

from dataclasses import dataclass

from aiortc import RTCPeerConnection, RTCRtpSender, RTCRtpTransceiver, RTCSessionDescription
from aiortc.sdp import SessionDescription

from .errors import InvalidSdp
from .keyframes import SignalledSsrcs

# Forwarding needs one codec end to end: publisher and viewers all negotiate these.
FORWARDED_MIME_TYPES = {"video": ("video/vp8", "video/rtx"), "audio": ("audio/opus",)}


@dataclass(frozen=True, slots=True)
class OfferedMedia:
    index: int
    kind: str
    mid: str | None
    direction: str | None
    ssrcs: SignalledSsrcs

    @property
    def sends(self) -> bool:
        return self.direction in ("sendonly", "sendrecv")

    @property
    def receives(self) -> bool:
        return self.direction in ("recvonly", "sendrecv")


def parse_offer(offer_sdp: str) -> list[OfferedMedia]:
    """The offer's m-lines; InvalidSdp if aiortc cannot parse it."""
    if not offer_sdp or not offer_sdp.lstrip().startswith("v="):
        raise InvalidSdp("offer is not an SDP document")
    try:
        description = SessionDescription.parse(offer_sdp)
    except Exception as exc:
        raise InvalidSdp(f"cannot parse offer: {exc}") from exc
    return [
        OfferedMedia(
            index=i, kind=m.kind, mid=m.rtp.muxId, direction=m.direction, ssrcs=SignalledSsrcs.from_media(m)
        )
        for i, m in enumerate(description.media)
    ]


def primary_ssrc_first(offer_sdp: str) -> str:
    """Reorder each section's a=ssrc lines so the FID primary (media) SSRC comes before its RTX SSRC.

    aiortc takes the first a=ssrc as the media SSRC and the second as RTX, ignoring ssrc-group; with the
    RTX SSRC listed first it would drop every retransmission.
    """
    eol = "\r\n" if "\r\n" in offer_sdp else "\n"
    sections = offer_sdp.split(f"{eol}m=")
    return f"{eol}m=".join(_reorder_section(s, eol) for s in sections)


def _reorder_section(section: str, eol: str) -> str:
    lines = section.split(eol)
    fid = next((ln.split()[1:] for ln in lines if ln.startswith("a=ssrc-group:FID ")), None)
    ssrc_lines = [i for i, ln in enumerate(lines) if ln.startswith("a=ssrc:")]
    if not fid or not ssrc_lines:
        return section
    rank = {ssrc: n for n, ssrc in enumerate(fid)}
    ordered = sorted(
        (lines[i] for i in ssrc_lines), key=lambda ln: rank.get(ln[7:].split(" ", 1)[0], len(rank))
    )
    for i, line in zip(ssrc_lines, ordered, strict=True):
        lines[i] = line
    return eol.join(lines)


def first_of_kind(offered: list[OfferedMedia], kind: str) -> OfferedMedia | None:
    """aiortc binds a pre-added transceiver to the first m-line of its kind."""
    return next((m for m in offered if m.kind == kind), None)


def pin_codecs(transceiver: RTCRtpTransceiver) -> None:
    """Must run before setRemoteDescription, so the answer only accepts the forwarded codec."""
    wanted = FORWARDED_MIME_TYPES[transceiver.kind]
    capabilities = RTCRtpSender.getCapabilities(transceiver.kind).codecs
    transceiver.setCodecPreferences([c for c in capabilities if c.mimeType.lower() in wanted])


async def apply_offer(pc: RTCPeerConnection, offer_sdp: str, own: list[RTCRtpTransceiver]) -> None:
    """setRemoteDescription, mapping failures to InvalidSdp; m-lines we did not ask for stay inactive."""
    try:
        await pc.setRemoteDescription(RTCSessionDescription(sdp=primary_ssrc_first(offer_sdp), type="offer"))
    except Exception as exc:
        raise InvalidSdp(f"offer rejected: {exc}") from exc
    for transceiver in pc.getTransceivers():
        if transceiver not in own:
            # aiortc created it as recvonly; inactive keeps its receiver (and decoder thread) from starting.
            transceiver.direction = "inactive"


async def answer(pc: RTCPeerConnection) -> str:
    """createAnswer + setLocalDescription (gathers all local candidates; no STUN server, so fast)."""
    await pc.setLocalDescription(await pc.createAnswer())
    return str(pc.localDescription.sdp)
