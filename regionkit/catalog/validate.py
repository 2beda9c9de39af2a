"""Checks a row against the record's rules (DESIGN.md §3) and says, per field, what is wrong.

The build engine runs this on every row a builder yields; a row with problems goes to
quarantine with these messages, never into a shard. `regionkit inspect` runs it again over a
finished dataset.
"""

from __future__ import annotations

import math
import re
from typing import Any

from regionkit.catalog.boxes import BBOX_TOLERANCE_PX, box_outside_image
from regionkit.catalog.markup import MARKUP
from regionkit.catalog.records import ROLES

TASK_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


def _check_regions(row: dict[str, Any], tolerance: float) -> list[str]:
    problems: list[str] = []
    width, height = row["width"], row["height"]
    seen: set[str] = set()
    for i, region in enumerate(row["regions"]):
        where = f"regions[{i}]"
        if region["id"] in seen:
            problems.append(f"{where}.id: {region['id']!r} is not unique in the row")
        seen.add(region["id"])
        bbox = region["bbox"]
        if len(bbox) != 4 or not all(math.isfinite(v) for v in bbox):
            problems.append(f"{where}.bbox: must be 4 finite numbers, got {bbox!r}")
            continue
        if bbox[2] < bbox[0] or bbox[3] < bbox[1]:
            problems.append(f"{where}.bbox: x2 < x1 or y2 < y1 in {bbox!r}")
        if box_outside_image(bbox, width, height, tolerance):
            problems.append(
                f"{where}.bbox: {bbox!r} lies outside the {width}x{height} image "
                f"by more than {tolerance} px"
            )
        mask = region["mask"]
        if mask is not None and list(mask["size"]) != [height, width]:
            problems.append(
                f"{where}.mask: size {list(mask['size'])} is not the image's [h, w] "
                f"{[height, width]}"
            )
    return problems


def _check_indices(row: dict[str, Any]) -> list[str]:
    problems: list[str] = []
    n = len(row["regions"])
    for i, grounding in enumerate(row["groundings"]):
        bad = [j for j in grounding["regions"] if not 0 <= j < n]
        if bad:
            problems.append(f"groundings[{i}].regions: {bad} out of range for {n} regions")
    for i, relation in enumerate(row["relations"]):
        for end in ("subject", "object"):
            if not 0 <= relation[end] < n:
                problems.append(
                    f"relations[{i}].{end}: {relation[end]} out of range for {n} regions"
                )
    for i, message in enumerate(row["messages"]):
        if message["role"] not in ROLES:
            problems.append(f"messages[{i}].role: {message['role']!r} is not one of {ROLES}")
        for kind, index in MARKUP.findall(message["content"]):
            if int(index) >= n:
                problems.append(
                    f"messages[{i}].content: <{kind}{index}> refers past the {n} regions"
                )
    return problems


def validate_row(row: dict[str, Any], tolerance: float = BBOX_TOLERANCE_PX) -> list[str]:
    """Every problem of a row in storage form, as `field: what is wrong`; empty when valid."""
    problems: list[str] = []
    prefix = f"{row['source']}:{row['split']}:"
    if not row["id"].startswith(prefix) or row["id"] == prefix:
        problems.append(f"id: {row['id']!r} must be '{prefix}<native key>'")
    if not TASK_NAME.match(row["task"] or ""):
        problems.append(f"task: {row['task']!r} is not a task name")
    if row["width"] <= 0 or row["height"] <= 0:
        problems.append(f"width, height: {row['width']}x{row['height']} is not an image size")
        return problems
    image = row["image"]
    if not image or not (image.get("path") or image.get("bytes")):
        problems.append("image: neither a path nor bytes")
    problems += _check_regions(row, tolerance)
    problems += _check_indices(row)
    return problems
