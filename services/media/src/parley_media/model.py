"""Identifiers and value types shared by the media engine modules."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple, TypeAlias

import av


@dataclass(frozen=True, slots=True)
class StreamKey:
    """Identifies one published stream; the engine holds at most one publisher per key."""

    organization_id: str
    conference_id: str
    stream_id: str

    def __str__(self) -> str:
        return f"{self.organization_id}/{self.conference_id}/{self.stream_id}"


class StreamKind(enum.Enum):
    """What a publisher sends; values match the API's conferenceStreamType."""

    MIC = "MIC"
    CAM = "CAM"
    SCREEN = "SCREEN"
    MIC_AND_CAM = "MIC_AND_CAM"

    @property
    def media_kinds(self) -> frozenset[str]:
        """The aiortc media kinds ("audio"/"video") a publisher of this kind must offer."""
        if self is StreamKind.MIC:
            return frozenset({"audio"})
        if self is StreamKind.MIC_AND_CAM:
            return frozenset({"audio", "video"})
        return frozenset({"video"})


class IceCandidate(NamedTuple):
    """A trickled remote candidate, as the browser's RTCIceCandidate serialises it."""

    candidate: str
    sdp_mid: str | None
    sdp_mline_index: int | None


if TYPE_CHECKING:
    # PyAV's stubs make Packet generic over its stream; the runtime class is not subscriptable.
    Packet: TypeAlias = av.Packet[Any]
else:
    Packet = av.Packet
