"""Parley media service: an aiortc SFU that forwards media without transcoding."""
