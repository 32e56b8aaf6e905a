"""Is it really an image? Decided by decoding the bytes with Pillow, never by the declared type.

The gateway already refuses bytes without an image signature; this is the authoritative check: the whole
picture must decode (a JPEG header followed by anything else fails), in an accepted format, within a pixel
budget (a small file can declare a huge picture: a decompression bomb).
"""

from __future__ import annotations

import io
import warnings

import msgspec
from PIL import Image, UnidentifiedImageError

# Pillow's format names -> mime types of the accepted formats.
FORMATS = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp", "GIF": "image/gif"}
# 40 megapixels: more than any phone camera sends, far less than a bomb needs.
MAX_PIXELS = 40_000_000


class NotAnImage(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ImageInfo(msgspec.Struct, frozen=True):
    mime_type: str
    width: int
    height: int


def inspect(data: bytes) -> ImageInfo:
    """Decode `data` completely; raise `NotAnImage` saying why it is not an accepted image.

    CPU-bound (tens of ms for a large photo): call it in a worker thread.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=tuple(FORMATS)) as picture:
                width, height = picture.size
                if width * height > MAX_PIXELS:
                    raise NotAnImage(f"image: {width}x{height} is more than {MAX_PIXELS} pixels")
                mime_type = FORMATS[picture.format or ""]
                picture.load()
    except NotAnImage:
        raise
    except (UnidentifiedImageError, Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise NotAnImage(f"image: not a JPEG, PNG, WebP or GIF picture ({type(exc).__name__})") from None
    except (OSError, SyntaxError, ValueError, KeyError, EOFError) as exc:
        raise NotAnImage(f"image: the picture does not decode ({exc})") from None
    return ImageInfo(mime_type=mime_type, width=width, height=height)
