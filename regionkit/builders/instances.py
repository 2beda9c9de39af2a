"""COCO-style `instances.json` read once and checked per record; its annotations as regions.

COCO ships it per split; the refer datasets (RefCOCO, RefCOCO+, RefCOCOg, RefCLEF) and gRefCOCO
ship one beside their refs, and their refs join to it by annotation id. The file is
`{"images": [...], "annotations": [...], "categories": [...]}` (plus `info`, `licenses`).
`read_instances` keeps the usable images and annotations by id and describes every unusable
record (its position, its id, the field at fault), so each builder decides what a bad record
costs: COCO quarantines it, refer quarantines the refs that point at it.

`annotation_region` turns one annotation into a region: the stored `bbox` (what REC benchmarks
score against) clipped to the image, and the segmentation (polygon parts, uncompressed RLE for
crowd, compressed RLE, or RefCLEF's list of RLE dicts) as one compressed RLE. `catalog.masks`
checks what pycocotools would not (compressed counts, polygon vertices far outside the image).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from regionkit.builders.base import BuilderInputError, Rejected
from regionkit.builders.fields import RecordError, field_problem
from regionkit.builders.files import load_json
from regionkit.builders.regions import boxed_region, stored_box

REQUIRED_IMAGE_FIELDS = {"id": int, "file_name": str, "width": int, "height": int}
REQUIRED_ANNOTATION_FIELDS = {"id": int, "image_id": int, "category_id": int}


@dataclass(frozen=True)
class InstanceProblem:
    """A record of the file that cannot be used.

    Attributes:
        unit: `image` or `annotation`.
        key: `image 9004` (or `image #3` when the record has no id).
        code: a quarantine slug, e.g. `malformed_image`, `unknown_category`.
        reason: `<file>: images[3]: field 'width' is missing`.
        record: the record as the file holds it.
    """

    unit: str
    key: str
    code: str
    reason: str
    record: Any

    def rejected(self, file: str) -> Rejected:
        """This problem as a quarantine entry that accounts for its own record."""
        return Rejected(self.key, self.code, self.reason, {self.unit: 1}, self.record, file)


@dataclass
class Instances:
    """The usable records of an instances file, and a description of the rest.

    Attributes:
        path: the file read.
        images: image records by id (required fields present, id unique).
        annotations: annotation records by id (fields present, id unique, image and category
            known).
        categories: category names by id.
        problems: every unusable image and annotation record, in file order.
    """

    path: Path
    images: dict[int, dict[str, Any]]
    annotations: dict[int, dict[str, Any]]
    categories: dict[int, str]
    problems: list[InstanceProblem] = field(default_factory=list)
    _unusable: dict[tuple[str, int], InstanceProblem] = field(default_factory=dict, repr=False)

    @property
    def file(self) -> str:
        return self.path.name

    def add_problem(self, problem: InstanceProblem) -> None:
        """Keep an unusable record's problem, by id too, so refs that name it can say why."""
        self.problems.append(problem)
        record_id = problem.record.get("id") if isinstance(problem.record, dict) else None
        if type(record_id) is int:
            self._unusable.setdefault((problem.unit, record_id), problem)

    def problem_for(self, unit: str, record_id: int) -> InstanceProblem | None:
        """The problem of the unusable `unit` record with id `record_id`; None if there is none.

        Refs name images and annotations by id; this tells "not in the file" from "in the file
        but unusable, because ...".
        """
        return self._unusable.get((unit, record_id))

    def annotations_by_image(self) -> dict[int, list[dict[str, Any]]]:
        """Every usable image id with its annotations in id order (possibly none)."""
        grouped: dict[int, list[dict[str, Any]]] = {image_id: [] for image_id in self.images}
        for ann_id in sorted(self.annotations):
            ann = self.annotations[ann_id]
            grouped[ann["image_id"]].append(ann)
        return grouped


def read_instances(path: Path) -> Instances:
    """Parse and check an instances file; a file that cannot be read raises `BuilderInputError`."""
    data = load_json(path)
    if not isinstance(data, dict):
        raise BuilderInputError(f"{path}: top level is not a JSON object")
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise BuilderInputError(f"{path}: top-level {key!r} is missing or not a list")
    instances = Instances(path, {}, {}, _categories(data["categories"]))
    _read_images(instances, data["images"])
    _read_annotations(instances, data["annotations"])
    return instances


def _categories(records: list[Any]) -> dict[int, str]:
    """Category names by id; a malformed category shows up as `unknown_category` on its users."""
    return {
        c["id"]: c["name"]
        for c in records
        if isinstance(c, dict) and isinstance(c.get("id"), int) and isinstance(c.get("name"), str)
    }


def _record_key(unit: str, record: Any, position: int) -> str:
    """`image 9004`, or `image #3` for a record without an id."""
    record_id = record.get("id", f"#{position}") if isinstance(record, dict) else f"#{position}"
    return f"{unit} {record_id}"


def _read_images(instances: Instances, records: list[Any]) -> None:
    for position, image in enumerate(records):
        problem = field_problem(image, REQUIRED_IMAGE_FIELDS)
        if problem is None and image["id"] in instances.images:
            problem = f"image id {image['id']} appears twice"
        if problem is None:
            instances.images[image["id"]] = image
            continue
        key = _record_key("image", image, position)
        reason = f"{instances.file}: images[{position}]: {problem}"
        instances.add_problem(InstanceProblem("image", key, "malformed_image", reason, image))


def _read_annotations(instances: Instances, records: list[Any]) -> None:
    for position, ann in enumerate(records):
        problem, code = _annotation_problem(instances, ann)
        if problem is None:
            instances.annotations[ann["id"]] = ann
            continue
        key = _record_key("annotation", ann, position)
        reason = f"{instances.file}: annotations[{position}]: {problem}"
        instances.add_problem(InstanceProblem("annotation", key, code, reason, ann))


def _annotation_problem(instances: Instances, ann: Any) -> tuple[str | None, str]:
    """(what is wrong, its code), or (None, "") for a usable annotation."""
    problem = field_problem(ann, REQUIRED_ANNOTATION_FIELDS)
    if problem is not None:
        return problem, "malformed_annotation"
    if ann["id"] in instances.annotations:
        return f"annotation id {ann['id']} appears twice", "duplicate_annotation"
    if ann["image_id"] not in instances.images:
        return (
            f"field 'image_id': {ann['image_id']} names no usable image in the file",
            "unknown_image",
        )
    if ann["category_id"] not in instances.categories:
        return (
            f"field 'category_id': {ann['category_id']} is not in 'categories'",
            "unknown_category",
        )
    return None, ""


def annotation_region(
    ann: dict[str, Any],
    category: str | None,
    width: int,
    height: int,
    adjustments: Counter[str],
) -> dict[str, Any]:
    """One annotation of a `width` x `height` image as a region (its box, mask, crowd flag).

    The box is the stored `bbox` (xywh -> xyxy, clipped), the mask the segmentation; see
    `regions.boxed_region` for how the two are checked and what is repaired and counted in
    `adjustments`. Raises `RecordError` naming the field at fault when it cannot be a region.
    """
    if "segmentation" not in ann:
        raise RecordError("missing_segmentation", "field 'segmentation' is missing")
    attributes = ["crowd"] if ann.get("iscrowd") == 1 else []
    return boxed_region(
        str(ann["id"]),
        stored_box(ann),
        ann["segmentation"],
        width,
        height,
        adjustments,
        category=category,
        attributes=attributes,
    )
