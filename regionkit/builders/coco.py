"""COCO instances files (2014 and 2017): one row per image, every instance a region with its mask.

Reads `instances_<split>.json` as cocodataset.org ships it. Polygons may have several parts,
crowd instances carry uncompressed RLE, converted files may carry compressed RLE; all become one
compressed RLE per region. The region box is the mask's tight box: COCO's stored `bbox` and
`area` are polygon-extent and shoelace values that disagree with the rasterised mask, so they are
only used to catch annotations that do not belong to their image.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from regionkit.builders.base import (
    BuilderInputError,
    Built,
    RegionBuilder,
    Rejected,
    SourceIndex,
    WorkItem,
)
from regionkit.builders.fields import field_problem
from regionkit.builders.files import ImagePathError, checked_image, load_json
from regionkit.catalog.boxes import box_outside_image, xywh_to_xyxy
from regionkit.catalog.masks import MaskError, rle_to_bbox, segmentation_to_rle
from regionkit.catalog.records import make_region, make_row

SPLIT_FROM_FILENAME = re.compile(r"instances_(\w+)\.json$")
REQUIRED_IMAGE_FIELDS = {"id": int, "file_name": str, "width": int, "height": int}
REQUIRED_ANNOTATION_FIELDS = {"id": int, "image_id": int, "category_id": int}


class CocoBuilder(RegionBuilder):
    """`regionkit build coco --annotations instances_val2017.json --images val2017/`."""

    source = "coco"
    version = "1.0"
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

    def index(self) -> SourceIndex:
        self.require_file(self.annotations, "a COCO instances file (annotations/instances_*.json)")
        data = load_json(self.annotations)
        if not isinstance(data, dict):
            raise BuilderInputError(f"{self.annotations}: top level is not a JSON object")
        for key in ("images", "annotations", "categories"):
            if not isinstance(data.get(key), list):
                raise BuilderInputError(
                    f"{self.annotations}: top-level {key!r} is missing or not a list"
                )
        file = self.annotations.name
        index = SourceIndex()
        categories = {
            c["id"]: c["name"]
            for c in data["categories"]
            if isinstance(c, dict)
            and isinstance(c.get("id"), int)
            and isinstance(c.get("name"), str)
        }

        images: dict[int, dict[str, Any]] = {}
        for position, image in enumerate(data["images"]):
            problem = field_problem(image, REQUIRED_IMAGE_FIELDS)
            if problem is None and image["id"] in images:
                problem = f"image id {image['id']} appears twice"
            if problem is not None:
                key = (
                    f"image #{position}"
                    if not isinstance(image, dict)
                    else (f"image {image.get('id', f'#{position}')}")
                )
                index.reject(
                    self.split,
                    Rejected(
                        key,
                        "malformed_image",
                        f"{file}: images[{position}]: {problem}",
                        {"image": 1},
                        image,
                        file,
                    ),
                )
                continue
            images[image["id"]] = image

        annotations: dict[int, list[dict[str, Any]]] = {image_id: [] for image_id in images}
        seen_ids: set[int] = set()
        for position, ann in enumerate(data["annotations"]):
            problem = field_problem(ann, REQUIRED_ANNOTATION_FIELDS)
            code = "malformed_annotation"
            if problem is None and ann["id"] in seen_ids:
                problem, code = f"annotation id {ann['id']} appears twice", "duplicate_annotation"
            elif problem is None and ann["image_id"] not in images:
                problem = f"field 'image_id': {ann['image_id']} names no usable image in the file"
                code = "unknown_image"
            elif problem is None and ann["category_id"] not in categories:
                problem = f"field 'category_id': {ann['category_id']} is not in 'categories'"
                code = "unknown_category"
            if problem is not None:
                key = (
                    f"annotation {ann.get('id', f'#{position}')}"
                    if isinstance(ann, dict)
                    else (f"annotation #{position}")
                )
                index.reject(
                    self.split,
                    Rejected(
                        key,
                        code,
                        f"{file}: annotations[{position}]: {problem}",
                        {"annotation": 1},
                        ann,
                        file,
                    ),
                )
                continue
            seen_ids.add(ann["id"])
            annotations[ann["image_id"]].append(
                {**ann, "category_name": categories[ann["category_id"]]}
            )

        for image_id in sorted(images):
            anns = sorted(annotations[image_id], key=lambda a: a["id"])
            index.add(
                WorkItem(
                    split=self.split,
                    key=str(image_id),
                    payload={"image": images[image_id], "annotations": anns},
                    units={"image": 1, "annotation": len(anns)},
                )
            )
        return index

    def build_item(self, item: WorkItem) -> Iterator[Built | Rejected]:
        image = item.payload["image"]
        anns = item.payload["annotations"]
        file = self.annotations.name
        width, height = image["width"], image["height"]
        try:
            path, _ = checked_image(self.images, image["file_name"], (width, height))
        except ImagePathError as error:
            yield Rejected(
                f"image {image['id']}",
                error.code,
                f"{file}: image {image['id']} ({image['file_name']}): {error}",
                item.units,
                {"image": image, "annotations": anns},
                file,
            )
            return

        regions = []
        for ann in anns:
            region = self._region(ann, width, height)
            if isinstance(region, Rejected):
                yield region
            else:
                regions.append(region)
        yield Built(
            make_row(
                source=self.source,
                split=item.split,
                native_key=item.key,
                image_path=str(path),
                width=width,
                height=height,
                image_keys=[f"coco:{image['id']}"],
                regions=regions,
                builder=self.source,
                builder_version=self.version,
                source_files=[file],
            ),
            {"image": 1, "annotation": len(regions)},
        )

    def _region(self, ann: dict[str, Any], width: int, height: int) -> dict[str, Any] | Rejected:
        """One annotation as a region, or the reason it cannot be one."""
        file = self.annotations.name

        def reject(code: str, message: str) -> Rejected:
            record = {k: v for k, v in ann.items() if k != "category_name"}
            return Rejected(
                f"annotation {ann['id']}",
                code,
                f"{file}: annotation {ann['id']} (image {ann['image_id']}): {message}",
                {"annotation": 1},
                record,
                file,
            )

        stored = ann.get("bbox")
        if (
            isinstance(stored, list)
            and len(stored) == 4
            and all(isinstance(v, (int, float)) for v in stored)
            and box_outside_image(xywh_to_xyxy(stored), width, height)
        ):
            return reject(
                "bbox_outside_image",
                f"field 'bbox' {stored} (xywh) lies outside the {width}x{height} image",
            )
        if "segmentation" not in ann:
            return reject("missing_segmentation", "field 'segmentation' is missing")
        try:
            rle = segmentation_to_rle(ann["segmentation"], height, width)
        except MaskError as error:
            code = "degenerate_polygon" if "polygon" in str(error) else "bad_segmentation"
            return reject(code, f"field 'segmentation': {error}")
        bbox = rle_to_bbox(rle)
        if bbox is None:
            return reject("empty_mask", "field 'segmentation' covers no pixel of the image")
        attributes = ["crowd"] if ann.get("iscrowd") == 1 else []
        return make_region(str(ann["id"]), bbox, rle, ann["category_name"], attributes)
