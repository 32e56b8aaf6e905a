"""Typed errors; the NATS layer maps them to HTTP statuses (404 / 400 / 409)."""

from __future__ import annotations


class MediaError(Exception):
    """Base class of every error the engine raises on purpose."""


class UnknownStream(MediaError):
    """No publisher for this stream key (404)."""


class UnknownViewer(MediaError):
    """No viewer with this id on the stream (404)."""


class StreamAlreadyPublished(MediaError):
    """A publisher already exists for this stream key (409)."""


class InvalidSdp(MediaError):
    """The offer cannot be parsed or negotiated (400)."""


class InvalidCandidate(MediaError):
    """A trickled ICE candidate cannot be parsed (400)."""


class NoVideo(MediaError):
    """The stream carries no video, so it has no picture (400)."""


class NoPicture(MediaError):
    """The stream has video but no decodable picture arrived in time (404)."""


class RecordingError(MediaError):
    """Recording already running, not running, or the sink failed (409 / 500)."""
