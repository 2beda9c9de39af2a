"""COCO-style `instances.json` streamed and checked per record; its annotations as regions.

COCO ships it per split; the refer datasets (RefCOCO, RefCOCO+, RefCOCOg, RefCLEF) and gRefCOCO
ship one beside their refs, and their refs join to it by annotation id. The file is
`{"images": [...], "annotations": [...], "categories": [...]}` (plus `info`, `licenses`); COCO
train2017's is 448 MB, which parses to gigabytes, so it is never loaded whole:

- `index_instances` (COCO) keeps the images and, per image, only where its annotations are in
  the file: workers read and check the records themselves, in parallel.
- `read_instances` (refer, gRefCOCO) keeps the images and the annotations their refs name.

Both describe every unusable record (its position, its id, the field at fault), so each builder
decides what a bad record costs: COCO quarantines it, refer quarantines the refs that point at
it.

`annotation_region` turns one annotation into a region: the stored `bbox` (what REC benchmarks
score against) clipped to the image, and the segmentation (polygon parts, uncompressed RLE for
crowd, compressed RLE, or RefCLEF's list of RLE dicts) as one compressed RLE. `catalog.masks`
checks what pycocotools would not (compressed counts, polygon vertices far outside the image).
"""

from __future__ import annotations

from array import array
from collections import Counter
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from regionkit.builders.base import BuilderInputError, Rejected
from regionkit.builders.fields import RecordError, field_problem
from regionkit.builders.json_spans import CHUNK_SIZE, Span, iter_object_spans, read_spans
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


INSTANCE_LISTS = frozenset({"images", "annotations"})
"""The members of an instances file streamed element by element; the rest are small."""


def read_instances(path: Path, annotation_ids: Collection[int] | None = None) -> Instances:
    """Stream and check an instances file, keeping the annotations named in `annotation_ids`
    (every one when None); a file that cannot be read raises `BuilderInputError`.

    Memory holds the images, the categories and the kept annotations, never the whole file:
    refer's builders keep only the annotations their refs name.
    """
    instances = Instances(path, {}, {}, {})
    candidates: list[tuple[int, Any]] = []
    counts: Counter[str] = Counter()
    seen: set[str] = set()
    for key, span in _members(path):
        seen.add(key)
        if span is None:
            continue
        if key == "images":
            _read_image(instances, span.value, counts[key])
        elif key == "annotations":
            record = span.value
            if annotation_ids is None or (
                isinstance(record, dict) and record.get("id") in annotation_ids
            ):
                candidates.append((counts[key], record))
        elif key == "categories":
            instances.categories = _categories(span.value)
        counts[key] += 1
    _require_members(path, seen)
    for position, ann in candidates:
        problem, code = _annotation_problem(instances, ann)
        if problem is None:
            instances.annotations[ann["id"]] = ann
        else:
            _annotation_unusable(instances, ann, position, problem, code)
    return instances


@dataclass
class InstancesIndex:
    """What a driver keeps of an instances file to plan a build: no annotation, only its place.

    Attributes:
        path: the file.
        images: usable image records by id.
        categories: category names by id.
        spans: per usable image id, its annotations as `(id, byte offset, byte length, position
            in 'annotations')` rows, in id order; workers read and check the records.
        problems: the records unusable for planning (not an object, no integer `id` or
            `image_id`, an id seen before, an unknown image), in file order per kind.
    """

    path: Path
    images: dict[int, dict[str, Any]]
    categories: dict[int, str]
    spans: dict[int, list[tuple[int, int, int, int]]]
    problems: list[InstanceProblem]


PLANNING_FIELDS = {"id": int, "image_id": int}
"""What the driver reads of an annotation: enough to group it by image and spot duplicates."""


def index_instances(path: Path, chunk_size: int = CHUNK_SIZE) -> InstancesIndex:
    """Stream an instances file into an `InstancesIndex`, holding about one `chunk_size` of it at
    a time plus a few dozen bytes per annotation, whatever the file's size (COCO train2017:
    448 MB, 860k annotations)."""
    holder = Instances(path, {}, {}, {})
    columns = {name: array("q") for name in ("id", "image", "offset", "length", "position")}
    counts: Counter[str] = Counter()
    seen: set[str] = set()
    for key, span in _members(path, chunk_size):
        seen.add(key)
        if span is None:
            continue
        position = counts[key]
        counts[key] += 1
        if key == "images":
            _read_image(holder, span.value, position)
        elif key == "categories":
            holder.categories = _categories(span.value)
        elif key == "annotations":
            problem = field_problem(span.value, PLANNING_FIELDS)
            if problem is not None:
                _annotation_unusable(holder, span.value, position, problem, "malformed_annotation")
                continue
            for name, value in zip(
                columns,
                (span.value["id"], span.value["image_id"], span.offset, span.length, position),
                strict=True,
            ):
                columns[name].append(value)
    _require_members(path, seen)
    table = {name: np.frombuffer(column, dtype=np.int64) for name, column in columns.items()}
    usable = _plannable(holder, table)
    by_image: dict[int, list[tuple[int, int, int, int]]] = {}
    order = np.lexsort((table["id"][usable], table["image"][usable]))
    rows = np.stack([table[name][usable][order] for name in ("id", "offset", "length", "position")])
    for image_id, row in zip(table["image"][usable][order].tolist(), rows.T.tolist(), strict=True):
        by_image.setdefault(image_id, []).append(tuple(row))
    return InstancesIndex(path, holder.images, holder.categories, by_image, holder.problems)


def _plannable(holder: Instances, table: dict[str, np.ndarray]) -> np.ndarray:
    """Which annotations can be planned: the first of each id, on a usable image. The others
    are read back (there are few) and described, as `read_instances` would describe them."""
    ids = table["id"]
    by_id = np.lexsort((table["position"], ids))
    repeated = np.zeros(len(ids), dtype=bool)
    repeated[by_id[1:]] = ids[by_id[1:]] == ids[by_id[:-1]]
    known = np.fromiter(holder.images, dtype=np.int64, count=len(holder.images))
    unknown = ~np.isin(table["image"], known) & ~repeated
    bad = np.flatnonzero(repeated | unknown)
    spans = zip(table["offset"][bad].tolist(), table["length"][bad].tolist(), strict=True)
    for k, record in zip(bad.tolist(), read_spans(holder.path, spans), strict=True):
        if repeated[k]:
            problem, code = f"annotation id {record['id']} appears twice", "duplicate_annotation"
        else:
            problem = f"field 'image_id': {record['image_id']} names no usable image in the file"
            code = "unknown_image"
        _annotation_unusable(holder, record, int(table["position"][k]), problem, code)
    return ~(repeated | unknown)


def _annotation_unusable(
    holder: Instances, record: Any, position: int, problem: str, code: str
) -> None:
    """Describe an unusable annotation record, naming its position in the file."""
    key = _record_key("annotation", record, position)
    reason = f"{holder.file}: annotations[{position}]: {problem}"
    holder.add_problem(InstanceProblem("annotation", key, code, reason, record))


def _members(path: Path, chunk_size: int = CHUNK_SIZE) -> Iterator[tuple[str, Span | None]]:
    """The file's top-level members, images and annotations one element at a time."""
    if not path.is_file():
        raise BuilderInputError(f"{path}: file not found")
    return iter_object_spans(path, INSTANCE_LISTS, chunk_size)


def _require_members(path: Path, seen: set[str]) -> None:
    """The three members every instances file has; the file is unusable without one."""
    for key in ("images", "annotations", "categories"):
        if key not in seen:
            raise BuilderInputError(f"{path}: top-level {key!r} is missing")


def _categories(records: Any) -> dict[int, str]:
    """Category names by id; a malformed category shows up as `unknown_category` on its users."""
    if not isinstance(records, list):
        return {}
    return {
        c["id"]: c["name"]
        for c in records
        if isinstance(c, dict) and isinstance(c.get("id"), int) and isinstance(c.get("name"), str)
    }


def _record_key(unit: str, record: Any, position: int) -> str:
    """`image 9004`, or `image #3` for a record without an id."""
    record_id = record.get("id", f"#{position}") if isinstance(record, dict) else f"#{position}"
    return f"{unit} {record_id}"


def _read_image(instances: Instances, image: Any, position: int) -> None:
    """Keep a usable image record by id, or describe what is wrong with it."""
    problem = field_problem(image, REQUIRED_IMAGE_FIELDS)
    if problem is None and image["id"] in instances.images:
        problem = f"image id {image['id']} appears twice"
    if problem is None:
        instances.images[image["id"]] = image
        return
    key = _record_key("image", image, position)
    reason = f"{instances.file}: images[{position}]: {problem}"
    instances.add_problem(InstanceProblem("image", key, "malformed_image", reason, image))


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
