"""Masks as COCO compressed RLE, on pycocotools, with the input checks pycocotools leaves out.

Every source's mask encoding ends here as one compressed RLE `{"size": [h, w], "counts": str}`:
multi-part polygons (flat `[x1, y1, ...]` or VCR's nested `[[x, y], ...]`), uncompressed RLE
(COCO crowd), compressed RLE with `bytes` or `str` counts, and boxes. pycocotools reads a
4-number polygon as a box and raises `TypeError` on unnested polygons; here malformed input
raises `MaskError` with a sentence a person can act on, which builders turn into quarantine
reasons. Input is untrusted on the way into pycocotools' C code, which checks nothing:
compressed counts are decoded and must cover exactly h*w pixels (a corrupt string writes past
the mask buffer), and polygon vertices must lie in the image (a vertex at 1e9 rasterises for
minutes). Masks are column-major H x W as pycocotools defines them; polygon vertices and boxes
are continuous pixel coordinates where pixel (i, j) covers [i, i+1) x [j, j+1).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
from pycocotools import mask as mask_api

from regionkit.catalog.boxes import BBOX_TOLERANCE_PX


class MaskError(ValueError):
    """A segmentation that cannot be turned into a mask of the given image.

    `code` is the quarantine slug builders report: `malformed_polygon`, `polygon_outside_image`
    or `bad_segmentation`.
    """

    def __init__(self, message: str, code: str = "bad_segmentation") -> None:
        super().__init__(message)
        self.code = code


MAX_RUN_CHARS = 6
"""Most characters one compressed run may take: pycocotools shifts 5-bit groups in a C `int`,
so a 7th group (a shift of 30) overflows it and decodes differently from what we checked."""


RLE = dict[str, Any]
MALFORMED = "malformed_polygon"


def flatten_polygon(part: Sequence[Any]) -> np.ndarray:
    """One polygon part as flat float64 `[x1, y1, ...]`, from flat or `[[x, y], ...]` form."""
    try:
        points = np.asarray(part, dtype=np.float64)
    except (TypeError, ValueError):
        raise MaskError("polygon part must hold numbers or [x, y] pairs", MALFORMED) from None
    if points.ndim == 2 and points.shape[1] == 2:
        return points.ravel()
    if points.ndim != 1:
        raise MaskError(
            f"polygon part has shape {points.shape}; expected flat or [x, y] pairs", MALFORMED
        )
    return points


Extent = tuple[float, float, float, float]
"""An xyxy box that holds a mask's pixels, give or take one: its polygon's vertices' extent."""


def _checked_part(part: Any, index: int, height: int, width: int) -> Extent:
    """A usable part's vertex extent, refused when not finite or far outside the image.

    A vertex far outside costs pycocotools minutes (it rasterises the whole polygon before the
    clip) and says the polygon is not of this image. Plain Python on the flat list: parts are
    short, and this runs once per polygon part of every source.
    """
    try:
        finite = math.isfinite(sum(part))
    except (TypeError, OverflowError):
        raise MaskError(f"polygon part {index} must hold numbers", MALFORMED) from None
    if not finite:
        raise MaskError(f"polygon part {index} has a non-finite coordinate", MALFORMED)
    xs, ys = part[0::2], part[1::2]
    slack = BBOX_TOLERANCE_PX
    x1, y1, x2, y2 = min(xs), min(ys), max(xs), max(ys)
    if x1 < -slack or y1 < -slack or x2 > width + slack or y2 > height + slack:
        first = next(
            k
            for k, (x, y) in enumerate(zip(xs, ys, strict=True))
            if x < -slack or y < -slack or x > width + slack or y > height + slack
        )
        raise MaskError(
            f"polygon part {index} has the vertex ({xs[first]:g}, {ys[first]:g}) outside the "
            f"{width}x{height} image by more than {slack:g} px",
            "polygon_outside_image",
        )
    return x1, y1, x2, y2


def usable_parts(polygons: Any) -> tuple[dict[int, Sequence[float]], int]:
    """The parts of a polygon segmentation that enclose area (by position, flat), and how many
    do not.

    A part with fewer than 3 points encloses nothing: cocoapi's `annToRLE` merges it and it
    adds no pixel. A part with an odd count of numbers is not a list of points. ReLA's gRefCOCO
    loader drops both (`len(poly) % 2 == 0 and len(poly) >= 6`), and so does this; the object
    is kept either way.
    """
    if not isinstance(polygons, (list, tuple)):
        raise MaskError(f"polygon segmentation must be a list, got {type(polygons).__name__}")
    if polygons and not isinstance(polygons[0], (list, tuple, np.ndarray)):
        raise MaskError(
            "polygon segmentation must be a list of parts, got a flat list of numbers", MALFORMED
        )
    usable = {}
    for i, part in enumerate(polygons):
        if type(part) is not list or (part and isinstance(part[0], (list, tuple))):
            part = flatten_polygon(part).tolist()  # VCR's [[x, y], ...] pairs, or an array
        if len(part) >= 6 and len(part) % 2 == 0:
            usable[i] = part
    return usable, len(polygons) - len(usable)


def _rasterise(
    parts: dict[int, Sequence[float]], height: int, width: int, dropped: int
) -> MaskReading:
    """Usable polygon parts (by their position in the segmentation) -> one compressed RLE, and
    the parts' vertex extent clipped to the image, which bounds the mask without decoding it."""
    extents = [_checked_part(part, index, height, width) for index, part in parts.items()]
    rles = mask_api.frPyObjects(list(parts.values()), height, width)
    rle = normalize_rle(rles[0] if len(rles) == 1 else mask_api.merge(rles))
    if covers_no_pixel(rle["counts"]):
        return MaskReading(None, None, dropped)
    x1, y1, x2, y2 = extents[0]
    for more in extents[1:]:
        x1, y1, x2, y2 = min(x1, more[0]), min(y1, more[1]), max(x2, more[2]), max(y2, more[3])
    return MaskReading(rle, [max(x1, 0.0), max(y1, 0.0), min(x2, width), min(y2, height)], dropped)


_RUN_END = re.compile("[0-O]")
"""A compressed RLE character that ends a run (its continuation bit, 0x20 above '0', unset)."""


def covers_no_pixel(counts: str) -> bool:
    """Whether compressed RLE counts are a single run, of zeros (what pycocotools writes for
    an empty mask): the first run ends at the last character, so no pixel has to be decoded."""
    first_end = _RUN_END.search(counts)
    return first_end is None or first_end.end() == len(counts)


def normalize_rle(rle: RLE) -> RLE:
    """A compressed RLE with `str` counts, the form Arrow stores."""
    counts = rle["counts"]
    if isinstance(counts, bytes):
        counts = counts.decode("ascii")
    return {"size": [int(rle["size"][0]), int(rle["size"][1])], "counts": counts}


def _check_size(rle: RLE, height: int, width: int) -> None:
    size = rle.get("size")
    if (
        not isinstance(size, (list, tuple))
        or len(size) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) for v in size)
    ):
        raise MaskError(f"RLE size must be [height, width] integers, got {size!r}")
    if [size[0], size[1]] != [height, width]:
        raise MaskError(
            f"RLE size {list(size)} does not match the image's [h, w] {[height, width]}"
        )


def compressed_counts(text: str | bytes) -> np.ndarray:
    """The run lengths a compressed RLE string holds, or `MaskError` if it is not one.

    The string packs each run in 5-bit groups (characters 48..111, bit 5 = more follows, bit 4 of
    the last group = sign) and stores runs from the fourth on as the difference to the run two
    before. pycocotools decodes these without any check, so a corrupt string would silently give
    a mask of the wrong area (or read past its buffer); decoding here lets us check the total.
    Vectorised: crowd masks hold thousands of runs.
    """
    if isinstance(text, str):
        if not text.isascii():
            raise MaskError("compressed RLE counts hold a character that is not ASCII")
        text = text.encode("ascii")
    if not text:
        return np.zeros(0, dtype=np.int64)
    groups = np.frombuffer(text, dtype=np.uint8).astype(np.int64) - 48
    outside = (groups < 0) | (groups >= 64)
    if outside.any():
        bad = text[int(np.argmax(outside))]
        raise MaskError(f"compressed RLE counts hold {chr(bad)!r}, outside '0'..'o'")
    more = (groups & 0x20) != 0
    if more.size and more[-1]:
        raise MaskError("compressed RLE counts end in the middle of a run")
    ends = np.flatnonzero(~more)
    starts = np.concatenate(([0], ends[:-1] + 1))
    lengths = ends - starts + 1
    if lengths.size and lengths.max() > MAX_RUN_CHARS:
        raise MaskError(
            f"compressed RLE counts write a run in more than {MAX_RUN_CHARS} characters"
        )
    shifts = 5 * (np.arange(groups.size) - np.repeat(starts, lengths))
    values = np.add.reduceat((groups & 0x1F) << shifts, starts)
    negative = (groups[ends] & 0x10) != 0
    values = values - np.where(negative, np.left_shift(1, 5 * lengths), 0)
    counts = values.copy()  # runs from the fourth on are deltas to the run two before
    counts[1::2] = np.cumsum(values[1::2])
    counts[2::2] = np.cumsum(values[2::2])
    return counts


def _check_counts(counts: np.ndarray, height: int, width: int, kind: str) -> None:
    if counts.size and counts.min() < 0:
        raise MaskError(f"{kind} RLE counts hold a negative run")
    total = int(counts.sum())
    if total != height * width:
        raise MaskError(f"{kind} RLE counts sum to {total}, not h*w = {height * width}")


def _integer_counts(counts: list[Any]) -> np.ndarray:
    """An uncompressed RLE's runs as integers; `MaskError` for anything else (bools included)."""
    try:
        array = np.asarray(counts)
    except (ValueError, TypeError):  # ragged or odd contents
        array = np.asarray([], dtype=object)
    if counts and array.dtype.kind not in "iu":
        raise MaskError("uncompressed RLE counts must be integers")
    return array.astype(np.int64)


def rle_from_dict(rle: RLE, height: int, width: int) -> RLE:
    """An uncompressed (`counts` list) or compressed (`counts` str/bytes) RLE -> compressed RLE."""
    if "counts" not in rle:
        raise MaskError("RLE has no 'counts'")
    _check_size(rle, height, width)
    counts = rle["counts"]
    if isinstance(counts, list):
        _check_counts(_integer_counts(counts), height, width, "uncompressed")
        return normalize_rle(mask_api.frPyObjects(rle, height, width))
    if isinstance(counts, (str, bytes)):
        _check_counts(compressed_counts(counts), height, width, "compressed")
        return normalize_rle(rle)
    raise MaskError(f"RLE counts must be a list, str or bytes, got {type(counts).__name__}")


class MaskReading(NamedTuple):
    """A source's segmentation read as one mask (a tuple: one is made per region).

    Attributes:
        rle: the compressed RLE, or None when no pixel of the image is covered (a sliver, a
            tiny object, or no part that encloses area).
        extent: an xyxy box holding the mask's pixels, give or take one pixel, known without
            decoding the mask: a polygon's vertex extent clipped to the image, or an RLE's
            tight box; None with `rle`.
        dropped_parts: polygon parts left out because they enclose nothing (`usable_parts`).
    """

    rle: RLE | None
    extent: list[float] | None = None
    dropped_parts: int = 0

    def tight_box(self) -> list[float] | None:
        """The tight xyxy box of the mask's pixels, decoding the mask (`extent` is free)."""
        return None if self.rle is None else rle_to_bbox(self.rle)


def read_segmentation(segmentation: Any, height: int, width: int) -> MaskReading:
    """Any COCO-style segmentation of an image as one mask.

    Accepts polygon parts (flat or `[[x, y], ...]`), an RLE dict (compressed or not), or a list
    of RLE dicts: RefCLEF's `instances.json` holds `[{size, counts}]`, which refer's `getMask`
    decodes to H x W x N and sums over N, i.e. the union. Raises `MaskError` for input that is
    malformed rather than merely small.
    """
    if isinstance(segmentation, dict):
        return _covering(rle_from_dict(segmentation, height, width))
    if (
        isinstance(segmentation, (list, tuple))
        and segmentation
        and isinstance(segmentation[0], dict)
    ):
        if not all(isinstance(part, dict) for part in segmentation):
            raise MaskError("segmentation mixes RLE dicts with polygon parts")
        rles = [rle_from_dict(part, height, width) for part in segmentation]
        return _covering(rles[0] if len(rles) == 1 else normalize_rle(mask_api.merge(rles)))
    if isinstance(segmentation, (list, tuple)):
        parts, dropped = usable_parts(segmentation)
        if not parts:
            return MaskReading(None, None, dropped)
        return _rasterise(parts, height, width, dropped)
    raise MaskError(
        f"segmentation must be polygon parts or an RLE dict, got {type(segmentation).__name__}"
    )


def _covering(rle: RLE) -> MaskReading:
    """The reading of `rle` and its tight box, with no mask when it covers no pixel."""
    box = rle_to_bbox(rle)
    return MaskReading(None if box is None else rle, box)


def boxes_to_rle(boxes_xyxy: Sequence[Sequence[float]], height: int, width: int) -> RLE:
    """One or more xyxy boxes -> one compressed RLE of their union."""
    if len(boxes_xyxy) == 0:
        raise MaskError("no boxes to rasterise")
    xywh = np.array([[x1, y1, x2 - x1, y2 - y1] for x1, y1, x2, y2 in boxes_xyxy], dtype=np.float64)
    if (xywh[:, 2:] < 0).any() or not np.isfinite(xywh).all():
        raise MaskError("boxes must be finite with x2 >= x1 and y2 >= y1")
    # an ndarray takes pycocotools' box path; a nested list of 4 numbers would raise there
    return normalize_rle(mask_api.merge(mask_api.frPyObjects(xywh, height, width)))


def encode_mask(mask: np.ndarray) -> RLE:
    """An H x W binary array -> compressed RLE."""
    if mask.ndim != 2:
        raise MaskError(f"mask must be 2-D (H x W), got shape {mask.shape}")
    return normalize_rle(mask_api.encode(np.asfortranarray(mask.astype(np.uint8))))


def decode_rle(rle: RLE) -> np.ndarray:
    """A compressed RLE -> an H x W uint8 array of 0 and 1."""
    return mask_api.decode(rle)


def rle_area(rle: RLE) -> int:
    """The number of mask pixels (the rasterised area, not a source's stored `area`)."""
    return int(mask_api.area(rle))


def rle_to_bbox(rle: RLE) -> list[float] | None:
    """The tight xyxy box of the mask's pixels, or None for an empty mask."""
    x, y, w, h = mask_api.toBbox(rle).tolist()
    if w == 0 or h == 0:
        return None
    return [x, y, x + w, y + h]
