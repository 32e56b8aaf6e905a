"""The preview rendering and picture check (`parley_chat.previews`): pure functions on bytes."""

from __future__ import annotations

import io

import pypdfium2 as pdfium
import pytest
from parley_chat import previews
from parley_common.errors import InvalidCommand
from PIL import Image


def encoded(size: tuple[int, int], fmt: str = "JPEG") -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, (180, 60, 60)).save(out, fmt)
    return out.getvalue()


def pdf(pages: int) -> bytes:
    document = pdfium.PdfDocument.new()
    for _ in range(pages):
        document.new_page(200, 100)
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def image_of(rendered: previews.Rendered) -> Image.Image:
    return Image.open(io.BytesIO(rendered.data))


@pytest.mark.parametrize(
    "raw", ["", "10", "10x", "x10", "10X10", "-1x5", "1.5x2", "10x10 ", "5000x10", "10\u00d710", "10x10\n"]
)
def test_a_malformed_area_is_refused(raw: str) -> None:
    with pytest.raises(InvalidCommand):
        previews.parse_area(raw)


def test_area_is_width_first() -> None:
    assert previews.parse_area("300x100") == previews.Area(width=300, height=100)


def test_parameters_any_case_and_unknown_values() -> None:
    options = previews.image_options("8x8", quality="HIGH", output_format="Png", shape="ROUNDED")
    assert (options.quality, options.output_format, options.shape) == ("high", "png", "rounded")
    assert options.key("t") == previews.image_options(
        "8x8", quality="high", output_format="png", shape="rounded"
    ).key("t")
    assert options.key("t") != previews.image_options("8x8", quality="low", output_format="png").key("t")
    for bad in ({"quality": "best"}, {"output_format": "webp"}, {"shape": "star"}):
        with pytest.raises(InvalidCommand):
            previews.image_options("8x8", **bad)


def test_a_large_jpeg_is_decoded_at_reduced_size() -> None:
    # Draft mode: libjpeg's DCT scaling decodes 4000x3000 at 1/8 for a 256x256 target.
    image = previews.open_image(encoded((4000, 3000)), want=(256, 256))
    assert image.size == (500, 375)


def test_fit_keeps_the_ratio_crop_and_thumbnail_fill() -> None:
    data = encoded((400, 200))
    fit = image_of(previews.render_image(data, previews.image_options("100x100")))
    assert fit.size == (100, 50) and fit.format == "JPEG"
    upscaled = image_of(previews.render_image(data, previews.image_options("800x800")))
    assert upscaled.size == (800, 400)
    cropped = image_of(previews.render_image(data, previews.image_options("100x100", crop=True)))
    assert cropped.size == (100, 100)
    thumb = image_of(previews.render_image(data, previews.image_options("60x90", fill=True)))
    assert thumb.size == (60, 90)
    derived = image_of(previews.render_image(data, previews.image_options("0x50")))
    assert derived.size == (100, 50)


def test_rounded_is_transparent_in_png_and_white_in_jpeg() -> None:
    data = encoded((64, 64), "PNG")
    png = image_of(
        previews.render_image(
            data, previews.image_options("64x64", shape="rounded", output_format="png", fill=True)
        )
    )
    assert png.mode == "RGBA" and png.getpixel((0, 0))[3] == 0 and png.getpixel((32, 32))[3] == 255
    jpeg = image_of(previews.render_image(data, previews.image_options("64x64", shape="rounded", fill=True)))
    assert jpeg.mode == "RGB" and min(jpeg.getpixel((0, 0))) > 240
    gif = image_of(
        previews.render_image(
            data, previews.image_options("64x64", shape="rounded", output_format="gif", fill=True)
        )
    )
    assert gif.format == "GIF" and gif.getpixel((0, 0)) == gif.info["transparency"]


def test_quality_changes_the_jpeg() -> None:
    noisy = Image.effect_noise((128, 128), 80).convert("RGB")
    out = io.BytesIO()
    noisy.save(out, "PNG")
    low = previews.render_image(out.getvalue(), previews.image_options("128x128", quality="lowest"))
    high = previews.render_image(out.getvalue(), previews.image_options("128x128", quality="highest"))
    assert len(low.data) < len(high.data)


def test_check_picture_decodes_the_bytes() -> None:
    assert previews.check_picture(encoded((10, 10), "PNG")) == "image/png"
    assert previews.check_picture(encoded((10, 10))) == "image/jpeg"
    for bad in (b"", b"hello", encoded((10, 10))[:40]):
        with pytest.raises(InvalidCommand):
            previews.check_picture(bad)


def test_pdf_pages_and_their_range() -> None:
    data = pdf(4)
    assert previews.pdf_pages(data, None, None).data == data
    assert len(pdfium.PdfDocument(previews.pdf_pages(data, 2, 0).data)) == 3
    assert len(pdfium.PdfDocument(previews.pdf_pages(data, 2, 3).data)) == 2
    assert len(pdfium.PdfDocument(previews.pdf_pages(data, 4, 4).data)) == 1
    for first, last in ((0, 1), (5, 0), (3, 2), (1, 5)):
        with pytest.raises(InvalidCommand):
            previews.pdf_pages(data, first, last)
    with pytest.raises(InvalidCommand):
        previews.pdf_pages(b"%PDF-broken", None, None)


def test_pdf_thumbnail_is_the_first_page_filling_the_area() -> None:
    thumb = image_of(
        previews.render_pdf_thumbnail(pdf(2), previews.image_options("50x50", output_format="png", fill=True))
    )
    assert thumb.size == (50, 50) and thumb.format == "PNG"


def test_an_image_over_the_pixel_limit_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(previews, "MAX_PIXELS", 99 * 99)
    with pytest.raises(InvalidCommand):
        previews.check_picture(encoded((100, 100), "PNG"))
    # A JPEG decoded at reduced size counts at that size.
    assert previews.open_image(encoded((400, 400)), want=(50, 50)).size == (50, 50)
