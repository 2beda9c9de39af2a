"""COCO instances files (2014 and 2017): one row per image, every instance a region with its mask.

Reads `instances_<split>.json` as cocodataset.org ships it. Polygons may have several parts,
crowd instances carry uncompressed RLE, converted files may carry compressed RLE; all become one
compressed RLE per region. The region box is the stored `bbox` (xywh -> xyxy, clipped to the
image), the box detection and REC benchmarks score against; it only has to agree roughly with
the mask (`regions.boxed_region`).

The driver scans the file (`instances.index_instances`; its annotations are parsed in parallel
runs) and keeps, per image, only where its annotations are: workers read those bytes back and
check each record, so planning stays cheap and bounded in memory as the file grows, and the
per-record work runs in parallel.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from regionkit.builders.base import (
    BuilderInputError,
    Built,
    RegionBuilder,
    Rejected,
    SourceIndex,
    WorkItem,
)
from regionkit.builders.fields import RecordError, field_problem
from regionkit.builders.files import ImagePathError, checked_image
from regionkit.builders.instances import SPAN_COLUMNS, annotation_region, index_instances
from regionkit.builders.json_spans import read_spans
from regionkit.builders.tasks import IN_PROCESS, Tasks

SPLIT_FROM_FILENAME = re.compile(r"instances_(\w+)\.json$")
NO_SPANS = np.zeros((0, len(SPAN_COLUMNS)), dtype=np.int64)


class CocoBuilder(RegionBuilder):
    """`regionkit build coco --annotations instances_val2017.json --images val2017/`."""

    source = "coco"
    version = "1.1"  # annotated boxes, dropped polygon parts and box-only tiny objects counted
    units = ("image", "annotation")

    def __init__(self, annotations: Path, images: Path, split: str | None = None) -> None:
        self.annotations = Path(annotations).resolve()
        self.images = Path(images).resolve()
        if split is None:
            match = SPLIT_FROM_FILENAME.search(self.annotations.name)
            if match is None:
                raise BuilderInputError(
                    f"{self.annotations.name}: cannot tell the split from the file name "
                    "(expected instances_<split>.json); pass --split"
                )
            split = match.group(1)
        self.split = split

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--annotations",
            type=Path,
            required=True,
            help="a COCO instances file, e.g. annotations/instances_val2017.json",
        )
        parser.add_argument(
            "--images", type=Path, required=True, help="the split's image folder, e.g. val2017/"
        )
        parser.add_argument(
            "--split",
            default=None,
            help="split name (default: taken from instances_<split>.json, e.g. val2017)",
        )

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> CocoBuilder:
        return cls(args.annotations, args.images, args.split)

    def arguments(self) -> dict[str, Any]:
        return {
            "annotations": str(self.annotations),
            "images": str(self.images),
            "split": self.split,
        }

    def source_files(self) -> list[Path]:
        return [self.annotations]

    def image_root(self) -> Path:
        return self.images

    def index(self, tasks: Tasks = IN_PROCESS) -> SourceIndex:
        self.require_file(self.annotations, "a COCO instances file (annotations/instances_*.json)")
        instances = index_instances(self.annotations, tasks)
        index = SourceIndex()
        for problem in instances.problems:
            index.reject(self.split, problem.rejected(self.annotations.name))
        for image_id, image in sorted(instances.images.items()):
            spans = instances.spans.get(image_id, NO_SPANS)
            index.add(
                WorkItem(
                    split=self.split,
                    key=str(image_id),
                    payload={"image": image, "spans": spans, "categories": instances.categories},
                    units={"image": 1, "annotation": len(spans)},
                )
            )
        return index

    def build_item(self, item: WorkItem) -> Iterator[Built | Rejected]:
        image, spans = item.payload["image"], item.payload["spans"]
        file = self.annotations.name
        width, height = image["width"], image["height"]
        anns = read_spans(self.annotations, spans[:, 1:3].tolist())
        try:
            path, _ = checked_image(self.images, image["file_name"], (width, height))
        except ImagePathError as error:
            yield Rejected(
                f"image {image['id']}",
                error.code,
                f"{file}: image {image['id']} ({image['file_name']}): {error}",
                item.units,
                {"image": image, "annotations": list(anns)},
                file,
            )
            return

        categories = item.payload["categories"]
        regions, adjustments = [], Counter()
        for position, ann in zip(spans[:, 3].tolist(), anns, strict=True):
            try:
                category = _category(ann, categories)
                regions.append(annotation_region(ann, category, width, height, adjustments))
            except RecordError as error:
                yield Rejected(
                    f"annotation {ann['id']}",
                    error.code,
                    f"{file}: annotations[{position}] (annotation {ann['id']}, image "
                    f"{ann['image_id']}): {error}",
                    {"annotation": 1},
                    ann,
                    file,
                )
        yield Built(
            self.make_row(
                item,
                image_path=str(path),
                width=width,
                height=height,
                image_keys=[f"coco:{image['id']}"],
                regions=regions,
                source_files=[file],
            ),
            {"image": 1, "annotation": len(regions)},
            adjustments,
        )


def _category(ann: dict[str, Any], categories: dict[int, str]) -> str:
    """The name of the annotation's category, or `RecordError` when it has none usable."""
    problem = field_problem(ann, {"category_id": int})
    if problem is not None:
        raise RecordError("malformed_annotation", problem)
    if ann["category_id"] not in categories:
        raise RecordError(
            "unknown_category", f"field 'category_id': {ann['category_id']} is not in 'categories'"
        )
    return categories[ann["category_id"]]
