"""Rendering previews and checking pictures: pure CPU work on bytes (Pillow, pypdfium2), no I/O.

The parameters follow the seed and zextras/carbonio-preview-ce (the real previewer): `area` is
`WIDTHxHEIGHT` (width first; 0 on one side = that side follows the aspect ratio), `quality` Lowest..Highest
maps to the previewer's JPEG qualities (0, 15, 50, 80, 95), `output_format` jpeg|png|gif in any case,
`shape` Rounded|Rectangular (Rounded: a circular mask, transparent in PNG and GIF, white in JPEG, which has
no alpha). An image preview fits inside the area keeping the aspect ratio (or, with `crop`, fills it by
cutting from the borders); a thumbnail always fills the area. Large JPEGs are decoded at reduced size
(Pillow's draft mode: the DCT scaling of libjpeg), so a 4000x3000 photo is never fully decoded for a
256x256 thumbnail.

These functions are called off the event loop (the handlers run them in a thread pool): they hold the
GIL only between Pillow's and PDFium's C calls.
"""

from __future__ import annotations

import hashlib
import io
import re
from typing import Literal

import msgspec
import pypdfium2 as pdfium
from parley_common.errors import InvalidCommand
from PIL import Image, ImageDraw, ImageOps

Quality = Literal["lowest", "low", "medium", "high", "highest"]
OutputFormat = Literal["jpeg", "png", "gif"]
Shape = Literal["rounded", "rectangular"]
QUALITIES: tuple[Quality, ...] = ("lowest", "low", "medium", "high", "highest")
OUTPUT_FORMATS: tuple[OutputFormat, ...] = ("jpeg", "png", "gif")
SHAPES: tuple[Shape, ...] = ("rounded", "rectangular")
# carbonio-preview-ce's JPEG_*_INT constants.
JPEG_QUALITY: dict[str, int] = {"lowest": 0, "low": 15, "medium": 50, "high": 80, "highest": 95}
# PNG is lossless: quality only trades time for size (zlib level), as the seed says "higher = slower".
PNG_COMPRESSION: dict[str, int] = {"lowest": 1, "low": 3, "medium": 6, "high": 8, "highest": 9}
MIME_TYPES: dict[str, str] = {"jpeg": "image/jpeg", "png": "image/png", "gif": "image/gif"}
# The largest side a preview may ask for: a bigger area is a 400, not gigabytes of pixels.
MAX_SIDE = 4096
# Images whose decoded size would exceed this many pixels are refused (decompression bombs).
MAX_PIXELS = 100_000_000
# A PDF page is rendered at this many pixels per point at most before the final resize (72 dpi = 1).
PDF_MAX_SCALE = 4.0
# fullmatch: `$` would also match before a final newline.
_AREA = re.compile(r"(\d{1,5})x(\d{1,5})", re.ASCII)

Image.MAX_IMAGE_PIXELS = MAX_PIXELS


class Area(msgspec.Struct, frozen=True):
    width: int
    height: int


class ImageOptions(msgspec.Struct, frozen=True, kw_only=True):
    """What an image preview or thumbnail asks for, normalised (lower case, defaults filled in)."""

    area: Area
    quality: Quality = "medium"
    output_format: OutputFormat = "jpeg"
    shape: Shape = "rectangular"
    # Preview only: fill the area cutting from the borders (else fit inside it).
    crop: bool = False
    # Thumbnail: always fills the area.
    fill: bool = False

    @property
    def mime_type(self) -> str:
        return MIME_TYPES[self.output_format]

    def key(self, kind: str) -> str:
        """The cache key: every parameter that changes the output, so equal requests share one render."""
        a = self.area
        parts = (
            kind,
            f"{a.width}x{a.height}",
            self.quality,
            self.output_format,
            self.shape,
            self.crop,
            self.fill,
        )
        raw = ":".join(str(part) for part in parts)
        return hashlib.sha256(raw.encode()).hexdigest()[:32]


class Rendered(msgspec.Struct, frozen=True):
    data: bytes
    mime_type: str


def parse_area(raw: str) -> Area:
    """`WIDTHxHEIGHT` (width first) -> Area; anything else, or a side over MAX_SIDE, is a 400."""
    match = _AREA.fullmatch(raw)
    if match is None:
        raise InvalidCommand(f"area {raw!r} must be WIDTHxHEIGHT, e.g. 320x240")
    width, height = int(match.group(1)), int(match.group(2))
    if width > MAX_SIDE or height > MAX_SIDE:
        raise InvalidCommand(f"area {raw!r}: each side must be at most {MAX_SIDE}")
    return Area(width=width, height=height)


def _choice(value: str | None, allowed: tuple[str, ...], name: str, default: str) -> str:
    if value is None or value == "":
        return default
    lowered = value.lower()
    if lowered not in allowed:
        raise InvalidCommand(f"{name} {value!r} must be one of {', '.join(allowed)} (any case)")
    return lowered


def image_options(
    area: str,
    *,
    quality: str | None = None,
    output_format: str | None = None,
    shape: str | None = None,
    crop: bool | None = None,
    fill: bool = False,
) -> ImageOptions:
    """The request's parameters checked (400 for anything malformed) and normalised."""
    return ImageOptions(
        area=parse_area(area),
        quality=_choice(quality, QUALITIES, "quality", "medium"),  # type: ignore[arg-type]
        output_format=_choice(output_format, OUTPUT_FORMATS, "output_format", "jpeg"),  # type: ignore[arg-type]
        shape=_choice(shape, SHAPES, "shape", "rectangular"),  # type: ignore[arg-type]
        crop=bool(crop),
        fill=fill,
    )


# ---------------------------------------------------------------- images


def _target(area: Area, width: int, height: int) -> tuple[int, int]:
    """The area with a 0 side derived from the image's aspect ratio (0x0: the image's own size)."""
    if area.width == 0 and area.height == 0:
        return width, height
    if area.width == 0:
        return max(1, round(width * area.height / height)), area.height
    if area.height == 0:
        return area.width, max(1, round(height * area.width / width))
    return area.width, area.height


def open_image(data: bytes, want: tuple[int, int] | None = None) -> Image.Image:
    """Decode an image (400 when it is not one). With `want`, a JPEG is decoded at the smallest DCT
    scale still at least that large (draft mode), not at full size."""
    try:
        opened = Image.open(io.BytesIO(data))
        if want is not None and opened.format == "JPEG":
            opened.draft("RGB", want)
        if opened.width * opened.height > MAX_PIXELS:
            # Pillow only refuses at twice its limit (a warning below): refuse at the limit.
            raise InvalidCommand(f"the image has more than {MAX_PIXELS} pixels")
        image = ImageOps.exif_transpose(opened)
        image.load()
        if image is not opened:
            image.format = opened.format
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise InvalidCommand(f"the file is not an image Parley can read ({type(exc).__name__})") from None
    return image


def check_picture(data: bytes) -> str:
    """A picture upload: the bytes must decode as an image. Returns its real type (`image/png`...)."""
    image = open_image(data)
    mime = Image.MIME.get(image.format or "")
    if mime is None or not mime.startswith("image/"):
        raise InvalidCommand("the file is not an image")
    return mime


def _fit(image: Image.Image, target: tuple[int, int], *, fill: bool) -> Image.Image:
    if fill:
        # Scale to cover the area, then cut what overflows, centred ("crop from the borders").
        return ImageOps.fit(image, target, Image.Resampling.LANCZOS)
    # Fit inside the area keeping the ratio (up or down): no borders are added, the answer is smaller.
    ratio = min(target[0] / image.width, target[1] / image.height)
    size = (max(1, round(image.width * ratio)), max(1, round(image.height * ratio)))
    return image.resize(size, Image.Resampling.LANCZOS)


def _encode(image: Image.Image, options: ImageOptions) -> bytes:
    rounded = options.shape == "rounded"
    if rounded:
        mask = Image.new("L", image.size, 0)
        ImageDraw.Draw(mask).ellipse((0, 0, image.width - 1, image.height - 1), fill=255)
        image = image.convert("RGBA")
        image.putalpha(mask)
    out = io.BytesIO()
    if options.output_format == "jpeg":
        if image.mode in ("RGBA", "LA", "P"):
            # JPEG has no alpha: what is transparent (outside a Rounded mask) becomes white.
            rgba = image.convert("RGBA")
            background = Image.new("RGB", image.size, (255, 255, 255))
            background.paste(rgba, mask=rgba.getchannel("A"))
            image = background
        elif image.mode != "RGB":
            image = image.convert("RGB")
        image.save(out, "JPEG", quality=JPEG_QUALITY[options.quality])
    elif options.output_format == "png":
        if image.mode not in ("RGB", "RGBA", "L", "LA"):
            image = image.convert("RGBA")
        image.save(out, "PNG", compress_level=PNG_COMPRESSION[options.quality])
    else:
        # Pillow maps a fully transparent alpha to GIF's transparent index.
        (image if rounded else image.convert("RGB")).save(out, "GIF")
    return out.getvalue()


def render_image(data: bytes, options: ImageOptions) -> Rendered:
    """An image preview (fit, or fill with `crop`) or thumbnail (`fill`), encoded as asked."""
    probe = open_image_size(data)
    target = _target(options.area, *probe)
    image = open_image(data, want=target)
    image = _fit(image, _target(options.area, image.width, image.height), fill=options.fill or options.crop)
    return Rendered(data=_encode(image, options), mime_type=options.mime_type)


def open_image_size(data: bytes) -> tuple[int, int]:
    """The image's size from its header only (nothing decoded)."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            return image.size
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise InvalidCommand(f"the file is not an image Parley can read ({type(exc).__name__})") from None


# ---------------------------------------------------------------- PDFs


def _open_pdf(data: bytes) -> pdfium.PdfDocument:
    try:
        return pdfium.PdfDocument(data)
    except pdfium.PdfiumError as exc:
        raise InvalidCommand(f"the file is not a PDF Parley can read ({exc})") from None


def pdf_pages(data: bytes, first_page: int | None, last_page: int | None) -> Rendered:
    """A PDF of pages first..last (1-based; defaults all; last 0 = the last page). Out of range: 400."""
    document = _open_pdf(data)
    try:
        count = len(document)
        first = 1 if first_page is None else first_page
        last = count if last_page is None or last_page == 0 else last_page
        if first < 1 or first > count:
            raise InvalidCommand(f"firstPage {first} is out of range 1..{count}")
        if last < first or last > count:
            raise InvalidCommand(f"lastPage {last} is out of range {first}..{count} (0 = the last page)")
        if first == 1 and last == count:
            return Rendered(data=data, mime_type="application/pdf")
        target = pdfium.PdfDocument.new()
        try:
            target.import_pages(document, list(range(first - 1, last)))
            out = io.BytesIO()
            target.save(out)
        finally:
            target.close()
        return Rendered(data=out.getvalue(), mime_type="application/pdf")
    finally:
        document.close()


def render_pdf_thumbnail(data: bytes, options: ImageOptions) -> Rendered:
    """Page 1 rendered (PDFium) at about the area's size, then filled into the area like an image."""
    document = _open_pdf(data)
    try:
        if len(document) == 0:
            raise InvalidCommand("the PDF has no pages")
        page = document[0]
        try:
            width, height = page.get_size()
            target = _target(options.area, max(1, round(width)), max(1, round(height)))
            # Just enough pixels to cover the area (PDF points are 1/72 inch).
            scale = min(PDF_MAX_SCALE, max(target[0] / width, target[1] / height, 0.05))
            # A huge page (or an area of 0x0: the page's own size) never makes a bitmap over MAX_PIXELS.
            scale = min(scale, (MAX_PIXELS / max(1.0, width * height)) ** 0.5)
            bitmap = page.render(scale=scale)
            image = bitmap.to_pil()
        finally:
            page.close()
    finally:
        document.close()
    image = _fit(image, target, fill=True)
    return Rendered(data=_encode(image, options), mime_type=options.mime_type)
