"""What a vision endpoint is shown of one region: the whole image with the region outlined, and
an enlarged crop around it (DAM's "focal prompt"), as JPEG bytes.

The outline is the mask's edge where the region has a mask, else its box; the crop is the box
grown to twice its size (clipped to the image), scaled so its longer side is `CROP_SIDE`.
"""

from __future__ import annotations

import io
import math
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from regionkit.catalog.masks import decode_rle

OUTLINE = (255, 0, 0)
LONGEST_SIDE = 1024
"""The whole image is shrunk to at most this many pixels on its longer side."""
CROP_SIDE = 512
CROP_GROWTH = 2.0
JPEG_QUALITY = 90


def _jpeg(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=JPEG_QUALITY)
    return buffer.getvalue()


def _outlined(image: Image.Image, region: dict[str, Any]) -> Image.Image:
    outlined = image.copy()
    if region["mask"] is not None:
        mask = decode_rle(region["mask"]).astype(bool)
        inner = mask.copy()
        inner[1:, :] &= mask[:-1, :]
        inner[:-1, :] &= mask[1:, :]
        inner[:, 1:] &= mask[:, :-1]
        inner[:, :-1] &= mask[:, 1:]
        edge = mask & ~inner
        edge = edge | np.roll(edge, 1, axis=0) | np.roll(edge, 1, axis=1)  # two pixels wide
        pixels = np.asarray(outlined).copy()
        pixels[edge] = OUTLINE
        return Image.fromarray(pixels)
    x1, y1, x2, y2 = region["bbox"]
    ImageDraw.Draw(outlined).rectangle([x1, y1, x2 - 1, y2 - 1], outline=OUTLINE, width=2)
    return outlined


def crop_box(bbox: list[float], width: int, height: int) -> tuple[int, int, int, int]:
    """The box grown to `CROP_GROWTH` times its size about its centre, clipped to the image."""
    x1, y1, x2, y2 = bbox
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    half_w, half_h = (x2 - x1) * CROP_GROWTH / 2, (y2 - y1) * CROP_GROWTH / 2
    return (
        max(0, math.floor(cx - half_w)),
        max(0, math.floor(cy - half_h)),
        min(width, math.ceil(cx + half_w)),
        min(height, math.ceil(cy + half_h)),
    )


def region_views(image: dict[str, Any], region: dict[str, Any]) -> list[bytes]:
    """[the image with the region outlined, the enlarged crop], as JPEG bytes; `image` is a
    row's `{path, bytes}`."""
    source = io.BytesIO(image["bytes"]) if image.get("bytes") else image["path"]
    with Image.open(source) as opened:
        picture = opened.convert("RGB")
    outlined = _outlined(picture, region)
    crop = outlined.crop(crop_box(region["bbox"], picture.width, picture.height))
    scale = CROP_SIDE / max(crop.size)
    crop = crop.resize((max(1, round(crop.width * scale)), max(1, round(crop.height * scale))))
    outlined.thumbnail((LONGEST_SIDE, LONGEST_SIDE))
    return [_jpeg(outlined), _jpeg(crop)]
