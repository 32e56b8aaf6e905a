"""Authenticated encryption of values that must be stored but not readable there (AES-256-GCM)."""

from __future__ import annotations

import base64
import hashlib
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

_DEV_KEY_SEED = b"parley-development-data-key"


class SealError(Exception):
    pass


class Sealer:
    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise ValueError("the data key must be 32 bytes")
        self._aead = AESGCM(key)

    @classmethod
    def from_env(cls) -> Sealer:
        """`PARLEY_DATA_KEY` (base64 of 32 bytes), or a fixed development key when unset."""
        raw = os.environ.get("PARLEY_DATA_KEY", "").strip()
        key = base64.b64decode(raw) if raw else hashlib.sha256(_DEV_KEY_SEED).digest()
        return cls(key)

    def seal(self, plaintext: bytes) -> str:
        nonce = os.urandom(12)
        return base64.urlsafe_b64encode(nonce + self._aead.encrypt(nonce, plaintext, None)).decode()

    def open(self, token: str) -> bytes:
        try:
            blob = base64.urlsafe_b64decode(token.encode())
            return self._aead.decrypt(blob[:12], blob[12:], None)
        except (InvalidTag, ValueError) as exc:
            raise SealError("sealed value cannot be opened with this data key") from exc
