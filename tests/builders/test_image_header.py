"""Header sizes agree with PIL on every JPEG and PNG variant datasets ship; the rest falls back."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from regionkit.builders.files import ImagePathError, image_size
from regionkit.builders.image_header import header_size


def _exif() -> Image.Exif:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated: the stored size stays the raw one, as annotations use it
    exif[0x010E] = "x" * 3000  # a long APP1 segment before the frame header
    return exif


@pytest.mark.parametrize(
    ("mode", "save"),
    [
        ("RGB", {"format": "JPEG"}),
        ("RGB", {"format": "JPEG", "progressive": True}),
        ("L", {"format": "JPEG"}),
        ("CMYK", {"format": "JPEG"}),
        ("RGB", {"format": "JPEG", "exif": _exif(), "icc_profile": b"\0" * 5000}),
        ("RGB", {"format": "PNG"}),
        ("RGBA", {"format": "PNG"}),
        ("P", {"format": "PNG"}),
    ],
)
def test_header_size_matches_pil(mode, save):
    for size in [(1, 1), (640, 480), (333, 500), (4000, 17)]:
        buffer = io.BytesIO()
        Image.new(mode, size).save(buffer, **save)
        buffer.seek(0)
        assert header_size(buffer) == size == Image.open(io.BytesIO(buffer.getvalue())).size


@pytest.mark.parametrize("fmt", ["BMP", "WEBP", "GIF", "TIFF"])
def test_other_formats_are_left_to_pil(tmp_path, fmt):
    path = tmp_path / f"x.{fmt.lower()}"
    Image.new("RGB", (37, 21)).save(path, format=fmt)
    with path.open("rb") as f:
        assert header_size(f) is None
    assert image_size(path) == (37, 21)


@pytest.mark.parametrize("cut", [2, 3, 6, 30])
def test_a_truncated_jpeg_header_is_unreadable_not_a_wrong_size(tmp_path, cut):
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48)).save(buffer, format="JPEG", exif=_exif())
    path = tmp_path / "cut.jpg"
    path.write_bytes(buffer.getvalue()[:cut])
    with path.open("rb") as f:
        assert header_size(f) is None
    with pytest.raises(ImagePathError) as error:
        image_size(path)
    assert error.value.code == "unreadable_image"
