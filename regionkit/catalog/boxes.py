"""Box conventions: the record stores xyxy, absolute pixels, 0-based, continuous.

Sources disagree (COCO and VG store xywh, Flickr30k's XML is 1-based inclusive, VCR appends a
detector score), so each converts on the way in with these helpers.
"""

from __future__ import annotations

from collections.abc import Sequence

BBOX_TOLERANCE_PX = 2.0
"""How far outside the image a box may reach before it is wrong (sources round coordinates)."""


def xywh_to_xyxy(box: Sequence[float]) -> list[float]:
    """`[x, y, w, h]` (top-left corner) -> `[x1, y1, x2, y2]`."""
    x, y, w, h = (float(v) for v in box)
    return [x, y, x + w, y + h]


def clip_box(box: Sequence[float], width: int, height: int) -> list[float]:
    """Clip an xyxy box to the image; the result may be empty (x2 == x1 or y2 == y1)."""
    x1, y1, x2, y2 = box
    x1, x2 = min(max(float(x1), 0.0), width), min(max(float(x2), 0.0), width)
    y1, y2 = min(max(float(y1), 0.0), height), min(max(float(y2), 0.0), height)
    return [x1, y1, max(x1, x2), max(y1, y2)]


def box_is_empty(box: Sequence[float]) -> bool:
    """True when an xyxy box covers no area."""
    return box[2] <= box[0] or box[3] <= box[1]


def box_outside_image(
    box: Sequence[float], width: int, height: int, tolerance: float = BBOX_TOLERANCE_PX
) -> bool:
    """True when an xyxy box reaches beyond the image by more than `tolerance` pixels."""
    x1, y1, x2, y2 = box
    return min(x1, y1) < -tolerance or x2 > width + tolerance or y2 > height + tolerance
