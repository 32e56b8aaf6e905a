"""Compact HS256 JWTs (RFC 7515), signed without a JWT library where tokens are minted per item.

The gateway mints a meeting token per Coviu participant listed (800 for a page of 200 sessions) and the
conference service signs every webhook POST: PyJWT's `encode` re-validates the key and re-encodes the
header each call (~0.2 ms). `HS256Key` makes the same bytes PyJWT makes for `{"alg":"HS256","typ":"JWT"}`
(the tests verify them with PyJWT) with an HMAC keyed once and copied per signature.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Final


def b64url(data: bytes) -> bytes:
    """base64url without padding, as JWS segments are written."""
    return base64.urlsafe_b64encode(data).rstrip(b"=")


# The JOSE header PyJWT writes for HS256: the same for every token, encoded once.
HEADER: Final = b64url(b'{"alg":"HS256","typ":"JWT"}')


class HS256Key:
    """One secret's signer: `sign(payload)` is the compact JWT of `payload` (the claims' JSON bytes)."""

    __slots__ = ("_mac",)

    def __init__(self, secret: bytes) -> None:
        self._mac = hmac.new(secret, digestmod=hashlib.sha256)

    def __repr__(self) -> str:  # never the secret
        return "HS256Key(...)"

    def sign(self, payload: bytes) -> str:
        signing_input = HEADER + b"." + b64url(payload)
        mac = self._mac.copy()
        mac.update(signing_input)
        return (signing_input + b"." + b64url(mac.digest())).decode()
