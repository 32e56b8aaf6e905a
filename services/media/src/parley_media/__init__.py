"""Parley media service: an aiortc SFU that forwards media without transcoding.

The public API is :class:`MediaEngine`; everything else is exported for typing and tests.
"""

from .config import IceServer, MediaConfig
from .engine import EngineCounters, MediaEngine, StreamStats
from .errors import (
    InvalidCandidate,
    InvalidSdp,
    MediaError,
    NoPicture,
    NoVideo,
    RecordingError,
    StreamAlreadyPublished,
    UnknownStream,
    UnknownViewer,
)
from .events import EventSubscription, MediaEvent, RecordingFinished, StreamEnded, ViewerEnded
from .model import IceCandidate, StreamKey, StreamKind
from .recording import RecordingInfo, RecordingSink
from .session import SessionState

__all__ = [
    "EngineCounters",
    "EventSubscription",
    "IceCandidate",
    "IceServer",
    "InvalidCandidate",
    "InvalidSdp",
    "MediaConfig",
    "MediaEngine",
    "MediaError",
    "MediaEvent",
    "NoPicture",
    "NoVideo",
    "RecordingError",
    "RecordingFinished",
    "RecordingInfo",
    "RecordingSink",
    "SessionState",
    "StreamAlreadyPublished",
    "StreamEnded",
    "StreamKey",
    "StreamKind",
    "StreamStats",
    "UnknownStream",
    "UnknownViewer",
    "ViewerEnded",
]
