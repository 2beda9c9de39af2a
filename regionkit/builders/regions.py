"""One region from a source's annotated box and its segmentation, the same way for every source.

The region's box is the annotated one, clipped to the image: REFER's `getRefBox`, the RefCOCO
evaluation protocol and every REC paper score against it, and it is what detector-style sources
(VCR) give. The mask is the segmentation as pycocotools rasterises it. The two are never equal to
the pixel (a polygon's float extent against its raster, a crowd box one pixel short), so they are
only compared for a gross disagreement, the sign of an annotation that does not belong to its
image.

What the source leaves incomplete is repaired where the repair is safe, and counted
(`adjustments`, summed into the build report) instead of costing the object:

- `polygon_part_dropped`: a polygon part that encloses nothing, fewer than 3 points or an odd
  count of numbers (ReLA's loader drops both), is left out of the mask;
- `mask_covers_no_pixel`: an object whose mask covers no pixel (a tiny object, or a
  segmentation with no part left) stays box-only;
- `bbox_from_mask`: a record without a usable box (none, or one of no area once clipped)
  takes its mask's tight box.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from typing import Any

from regionkit.builders.fields import RecordError
from regionkit.catalog.boxes import (
    BBOX_TOLERANCE_PX,
    box_is_empty,
    box_outside_image,
    clip_box,
)
from regionkit.catalog.masks import MaskError, read_segmentation
from regionkit.catalog.records import make_region

NUMBER_TYPES = {int, float}
MASK_OUTSIDE_BOX_SHARE = 0.1
"""How far (as a share of the box's side, at least `BBOX_TOLERANCE_PX`) a mask may reach past its
annotated box before the two are said to describe different things."""


def boxed_region(
    region_id: str,
    box: Sequence[float] | None,
    segmentation: Any,
    width: int,
    height: int,
    adjustments: Counter[str],
    *,
    box_field: str = "bbox",
    mask_field: str = "segmentation",
    category: str | None = None,
    attributes: list[str] | None = None,
    score: float | None = None,
) -> dict[str, Any]:
    """The region of an annotated `box` (xyxy, or None when the source has none) and mask.

    Args:
        region_id: the region's native id.
        box: the annotated box as xyxy absolute pixels, converted by the caller; None if absent.
        segmentation: polygon parts, an RLE dict or a list of RLE dicts (`read_segmentation`).
        width, height: the image's size in pixels.
        adjustments: counts of the repairs made, updated in place (codes in the module doc).
        box_field, mask_field: the source's field names, for error messages.
        category, attributes, score: copied into the region.

    Raises `RecordError` naming the field at fault when the annotation cannot be a region.
    """
    if box is not None and box_outside_image(box, width, height):
        raise RecordError(
            "bbox_outside_image",
            f"field {box_field!r} {_rounded(box)} (xyxy) lies outside the {width}x{height} image",
        )
    clipped = None if box is None else clip_box(box, width, height)
    if clipped is not None and box_is_empty(clipped):
        clipped = None
    try:
        reading = read_segmentation(segmentation, height, width)
    except MaskError as error:
        raise RecordError(error.code, f"field {mask_field!r}: {error}") from None
    if clipped is None and reading.rle is None:
        raise RecordError(
            "empty_mask",
            f"field {mask_field!r} covers no pixel of the image and there is no usable box",
        )
    extent = reading.extent
    if clipped is not None and extent is not None and mask_outside_box(extent, clipped):
        raise RecordError(
            "bbox_mask_mismatch",
            f"field {mask_field!r}: the mask spans {_rounded(extent)} (xyxy), well outside "
            f"field {box_field!r} {_rounded(box)}; they do not describe the same object",
        )
    if reading.dropped_parts:
        adjustments["polygon_part_dropped"] += reading.dropped_parts
    if reading.rle is None:
        adjustments["mask_covers_no_pixel"] += 1
    if clipped is None:
        adjustments["bbox_from_mask"] += 1
    return make_region(
        region_id, clipped or reading.tight_box(), reading.rle, category, attributes, score=score
    )


def stored_box(record: dict[str, Any]) -> list[float] | None:
    """A COCO-style record's `bbox` (xywh) as xyxy; None when it has none; `RecordError` when it
    is not four finite numbers."""
    box = record.get("bbox")
    if box is None:
        return None
    numbers = type(box) is list and len(box) == 4
    if numbers:
        x, y, w, h = box
        numbers = type(x) in NUMBER_TYPES and type(y) in NUMBER_TYPES
        numbers = numbers and type(w) in NUMBER_TYPES and type(h) in NUMBER_TYPES
    if not numbers:
        raise RecordError("malformed_bbox", f"field 'bbox' {box!r} is not four numbers")
    try:
        finite = math.isfinite(x + y + w + h)
    except OverflowError:  # an integer too large for a float
        finite = False
    if not finite:
        raise RecordError("malformed_bbox", f"field 'bbox' {box!r} holds a non-finite number")
    return [x, y, x + w, y + h]


def mask_outside_box(mask_box: Sequence[float], box: Sequence[float]) -> bool:
    """Whether a mask's extent (`MaskReading.extent`, within a pixel of its tight box) reaches
    past the annotated box by more than a tolerance, which is never under a pixel.

    Only this direction counts: a box may be larger than its mask (a dropped sliver part, a
    polygon's float extent), but a mask well outside its box is not that box's object.
    """
    x_slack = max(BBOX_TOLERANCE_PX, MASK_OUTSIDE_BOX_SHARE * (box[2] - box[0]))
    y_slack = max(BBOX_TOLERANCE_PX, MASK_OUTSIDE_BOX_SHARE * (box[3] - box[1]))
    return (
        mask_box[0] < box[0] - x_slack
        or mask_box[1] < box[1] - y_slack
        or mask_box[2] > box[2] + x_slack
        or mask_box[3] > box[3] + y_slack
    )


def _rounded(box: Sequence[float]) -> list[float]:
    return [round(float(v), 2) for v in box]
