"""Signed URLs and the image check, on real bytes."""

from __future__ import annotations

import io
from urllib.parse import parse_qs, urlsplit

import pytest
from parley_snapshot.images import NotAnImage, inspect
from parley_snapshot.signing import CLOCK_SKEW_SECONDS, MAX_TTL_SECONDS, UrlSigner
from PIL import Image

NOW = 1_800_000_000.0
SIGNER = UrlSigner(b"k" * 32)


def picture(fmt: str, size: tuple[int, int] = (32, 24)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (200, 30, 30)).save(buffer, fmt)
    return buffer.getvalue()


def test_a_signature_opens_only_its_snapshot_until_its_expiry() -> None:
    expiration = int(NOW) + 900
    signature = SIGNER.signature("s1", expiration)
    assert SIGNER.verify("s1", expiration, signature, now=NOW)
    assert not SIGNER.verify("s2", expiration, signature, now=NOW)
    assert not SIGNER.verify("s1", expiration + 1, signature, now=NOW)
    assert not SIGNER.verify("s1", expiration, signature, now=expiration)
    assert not SIGNER.verify("s1", expiration, UrlSigner(b"x" * 32).signature("s1", expiration), now=NOW)


@pytest.mark.parametrize(
    "tamper", [lambda s: s[:-1], lambda s: s + "A", lambda s: s + "!", lambda s: "", str.upper]
)
def test_an_altered_signature_is_refused(tamper: object) -> None:
    expiration = int(NOW) + 900
    signature = SIGNER.signature("s1", expiration)
    altered = tamper(signature)  # type: ignore[operator]
    assert altered != signature
    assert not SIGNER.verify("s1", expiration, altered, now=NOW)


def test_ids_cannot_be_shifted_into_the_expiry() -> None:
    # The message is an unambiguous array: ("s1", 23) and ("s12", 3) sign differently.
    assert SIGNER.signature("s1", 23) != SIGNER.signature("s12", 3)


def test_the_signed_path_carries_id_expiry_and_signature() -> None:
    path = SIGNER.path("a/b", 1234)
    parts = urlsplit(path)
    assert parts.path == "/rtc-api/snapshots/signed/a%2Fb/1234"
    assert parse_qs(parts.query)["signature"] == [SIGNER.signature("a/b", 1234)]


def test_a_url_lives_at_most_seven_days_even_correctly_signed() -> None:
    """A forged far-future expiry (a leaked or development key) opens nothing; the cap holds at issue too."""
    for far in (int(NOW) + 365 * 86400, int(NOW) + MAX_TTL_SECONDS + CLOCK_SKEW_SECONDS + 1, 2**62):
        assert not SIGNER.verify("s1", far, SIGNER.signature("s1", far), now=NOW)
    week = int(NOW) + MAX_TTL_SECONDS
    assert SIGNER.verify("s1", week, SIGNER.signature("s1", week), now=NOW)
    assert UrlSigner.expiration(NOW, 365 * 86400) == week
    assert UrlSigner.expiration(NOW, 900) == int(NOW) + 900


def test_a_short_key_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 16 bytes"):
        UrlSigner(b"short")


@pytest.mark.parametrize(
    ("fmt", "mime"), [("JPEG", "image/jpeg"), ("PNG", "image/png"), ("WEBP", "image/webp")]
)
def test_real_pictures_are_recognised(fmt: str, mime: str) -> None:
    info = inspect(picture(fmt))
    assert (info.mime_type, info.width, info.height) == (mime, 32, 24)


@pytest.mark.parametrize(
    "data",
    [
        b"%PDF-1.7 not an image",
        b"",
        picture("JPEG")[:40],  # a JPEG header and nothing behind it
        b"\xff\xd8\xff\xe0" + b"\x00" * 2000,  # starts like a JPEG, is not one
        picture("BMP"),  # a real picture, in a format that is not accepted
    ],
)
def test_anything_else_is_refused(data: bytes) -> None:
    with pytest.raises(NotAnImage):
        inspect(data)


def test_a_decompression_bomb_is_refused() -> None:
    # 1 x 45,000,000 pixels compresses to a few kB of PNG.
    with pytest.raises(NotAnImage, match="pixels"):
        inspect(picture("PNG", size=(45_000, 1000)))
