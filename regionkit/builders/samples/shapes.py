"""Shapes for sample sources: polygons, their stored (disagreeing) area and extent, crowd RLE."""

from __future__ import annotations

import math
import random
from typing import Any

import numpy as np


def star_polygon(
    rng: random.Random, cx: float, cy: float, radius: float, points: int
) -> list[float]:
    """A star-ish polygon around (cx, cy), flat `[x1, y1, ...]` with float coordinates."""
    coords = []
    for k in range(points):
        angle = 2 * math.pi * k / points
        r = radius * rng.uniform(0.6, 1.0)
        coords += [round(cx + r * math.cos(angle), 2), round(cy + r * math.sin(angle), 2)]
    return coords


def sliver_part(x: float, y: float) -> list[float]:
    """A 2-point polygon "part" at (x, y), as annotation tools leave behind: cocoapi's `annToRLE`
    merges it with the object's other parts (it adds no pixel), ReLA's loader drops it."""
    return [round(x, 2), round(y, 2), round(x + 0.5, 2), round(y + 0.5, 2)]


def speck_polygon(x: int, y: int) -> list[float]:
    """A triangle a third of a pixel wide at integer (x, y): a tiny object whose polygon
    pycocotools rasterises to no pixel, while its stored box is real."""
    return [float(x), float(y), x + 0.3, float(y), x + 0.3, y + 0.3]


def shoelace_area(polygon: list[float]) -> float:
    """The polygon's area as annotation files store it, which differs from the raster area."""
    xs, ys = polygon[0::2], polygon[1::2]
    return 0.5 * abs(sum(xs[i] * ys[i - 1] - xs[i - 1] * ys[i] for i in range(len(xs))))


def extent_xywh(polygons: list[list[float]]) -> list[float]:
    """The polygons' float extent as xywh, as annotation files store `bbox`."""
    xs = [v for p in polygons for v in p[0::2]]
    ys = [v for p in polygons for v in p[1::2]]
    return [
        round(min(xs), 2),
        round(min(ys), 2),
        round(max(xs) - min(xs), 2),
        round(max(ys) - min(ys), 2),
    ]


def uncompressed_rle(mask: np.ndarray) -> dict[str, Any]:
    """Column-major run lengths starting with zeros, as COCO stores crowd masks."""
    flat = (mask.flatten(order="F") != 0).astype(np.int8)
    changes = np.flatnonzero(np.diff(flat)) + 1
    edges = np.concatenate(([0], changes, [flat.size]))
    counts = np.diff(edges).tolist()
    if flat.size and flat[0]:
        counts = [0, *counts]  # the first run always counts zeros, here none
    return {"counts": counts, "size": [int(mask.shape[0]), int(mask.shape[1])]}
