"""Rows and regions in storage form: plain dicts matching the record schema (DESIGN.md §3).

Builders create rows with these helpers on Ray workers; this module deliberately imports
nothing heavy (no `datasets`), so a worker starts in a fraction of a second.
"""

from __future__ import annotations

from typing import Any

TASKS = (
    "regions",
    "caption",
    "detailed_caption",
    "refer_seg",
    "gres",
    "relation",
    "region_vqa",
    "reason_seg",
)
"""What a row teaches; `regions` is builder output that has no dialogue yet."""

ROLES = ("user", "assistant")


def make_region(
    region_id: str,
    bbox: list[float],
    mask: dict[str, Any] | None = None,
    category: str | None = None,
    attributes: list[str] | None = None,
    score: float | None = None,
) -> dict[str, Any]:
    """A region in storage form: `bbox` xyxy absolute pixels, `mask` compressed RLE or None."""
    return {
        "id": region_id,
        "bbox": [float(v) for v in bbox],
        "mask": mask,
        "category": category,
        "attributes": list(attributes or []),
        "score": None if score is None else float(score),
    }


def make_row(
    *,
    source: str,
    split: str,
    native_key: str,
    image_path: str,
    width: int,
    height: int,
    builder: str,
    builder_version: str,
    source_files: list[str],
    image_keys: list[str] | None = None,
    regions: list[dict[str, Any]] | None = None,
    groundings: list[dict[str, Any]] | None = None,
    captions: list[str] | None = None,
    relations: list[dict[str, Any]] | None = None,
    messages: list[dict[str, str]] | None = None,
    task: str = "regions",
) -> dict[str, Any]:
    """A row in storage form, with the id `{source}:{split}:{native_key}` the design fixes."""
    return {
        "id": f"{source}:{split}:{native_key}",
        "source": source,
        "split": split,
        "task": task,
        "image": {"bytes": None, "path": image_path},
        "width": int(width),
        "height": int(height),
        "image_keys": list(image_keys or []),
        "regions": list(regions or []),
        "groundings": list(groundings or []),
        "captions": list(captions or []),
        "relations": list(relations or []),
        "messages": list(messages or []),
        "provenance": {
            "builder": builder,
            "builder_version": builder_version,
            "generator": None,
            "prompt_id": None,
            "source_files": list(source_files),
        },
    }
