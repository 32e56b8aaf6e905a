"""`parley_common.hs256`: the tokens a JWT library makes and verifies, byte for byte."""

from __future__ import annotations

import jwt
import msgspec
from parley_common.hs256 import HS256Key

SECRET = "a-secret-of-at-least-thirty-two-bytes"


def test_a_token_is_the_one_pyjwt_makes_and_verifies() -> None:
    claims = {"sub": "alice", "org": "acme", "iat": 1_700_000_000, "exp": 4_000_000_000}
    token = HS256Key(SECRET.encode()).sign(msgspec.json.encode(claims))
    assert token == jwt.encode(claims, SECRET, algorithm="HS256")
    assert jwt.decode(token, SECRET, algorithms=["HS256"]) == claims


def test_each_signature_starts_from_the_key_alone() -> None:
    # The keyed HMAC is copied per signature: signing one payload never changes the next.
    key = HS256Key(SECRET.encode())
    first = key.sign(b'{"n":1}')
    key.sign(b'{"n":2}')
    assert key.sign(b'{"n":1}') == first
    assert "thirty" not in repr(key)
