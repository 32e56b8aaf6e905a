"""Signed snapshot URLs: `/rtc-api/snapshots/signed/{snapshotId}/{expiration}?signature=...`.

The signature is HMAC-SHA256, keyed with a server secret, over a purpose label, the snapshot id and the
expiry (seconds since the epoch), encoded unambiguously (a JSON array), so a signature made for one snapshot
or one expiry verifies for no other. It is compared in constant time. Anyone holding the URL may read the
image until it expires: that is the point of it (an image tag, a service without a token). So a URL lives
at most `MAX_TTL_SECONDS` (7 days, like S3 presigned URLs): a longer-lived one, even correctly signed (a
leaked key, an old configuration), is refused.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from urllib.parse import quote

import msgspec

PURPOSE = "parley.snapshot.url.v1"
PATH = "/rtc-api/snapshots/signed/{snapshot_id}/{expiration}"
MAX_TTL_SECONDS = 7 * 24 * 3600
# Replicas' clocks differ a little: a URL one of them signed for the full week still opens on another.
CLOCK_SKEW_SECONDS = 60


class UrlSigner:
    def __init__(self, key: bytes) -> None:
        if len(key) < 16:
            raise ValueError("the snapshot signing key must be at least 16 bytes")
        self._key = key

    def _digest(self, snapshot_id: str, expiration: int) -> bytes:
        message = msgspec.json.encode([PURPOSE, snapshot_id, expiration])
        return hmac.new(self._key, message, hashlib.sha256).digest()

    def signature(self, snapshot_id: str, expiration: int) -> str:
        return base64.urlsafe_b64encode(self._digest(snapshot_id, expiration)).rstrip(b"=").decode()

    @staticmethod
    def expiration(now: float, ttl_seconds: float) -> int:
        """When a URL signed `now` for `ttl_seconds` expires, within the cap."""
        return int(now + min(ttl_seconds, MAX_TTL_SECONDS))

    def path(self, snapshot_id: str, expiration: int) -> str:
        """The signed path (and query) serving the snapshot's image until `expiration`."""
        base = PATH.format(snapshot_id=quote(snapshot_id, safe=""), expiration=expiration)
        return f"{base}?signature={self.signature(snapshot_id, expiration)}"

    def verify(self, snapshot_id: str, expiration: int, signature: str, *, now: float) -> bool:
        """True when `signature` was made by this key for this snapshot and expiry, and it has not passed
        (nor lies further ahead than a URL may live)."""
        if expiration <= now or expiration > now + MAX_TTL_SECONDS + CLOCK_SKEW_SECONDS:
            return False
        # The canonical text is compared (not decoded bytes): a lenient decoder would ignore added characters.
        expected = self.signature(snapshot_id, expiration)
        return hmac.compare_digest(signature.encode(), expected.encode())
