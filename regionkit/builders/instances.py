"""COCO-style `instances.json` streamed and checked per record; its annotations as regions.

COCO ships it per split; the refer datasets (RefCOCO, RefCOCO+, RefCOCOg, RefCLEF) and gRefCOCO
ship one beside their refs, and their refs join to it by annotation id. The file is
`{"images": [...], "annotations": [...], "categories": [...]}` (plus `info`, `licenses`); COCO
train2017's is 448 MB, which parses to gigabytes, so it is never loaded whole:

- `index_instances` (COCO) keeps the images and, per image, only where its annotations are in
  the file: workers read and check the records themselves, in parallel.
- `read_instances` (refer, gRefCOCO) keeps the images and the annotations their refs name.

Both scan the file for where its lists' elements are and parse the annotations in runs of a
few MB (`json_lists`), COCO's as tasks the engine spreads over the cluster; a file whose lists
hold anything irregular is walked element by element instead (`json_spans`), which names the
byte at fault.

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
from regionkit.builders.json_lists import ElementRun, IrregularList, ListScan, parse_run
from regionkit.builders.json_spans import CHUNK_SIZE, Span, iter_object_spans, read_spans
from regionkit.builders.regions import boxed_region, stored_box
from regionkit.builders.tasks import IN_PROCESS, Tasks

REQUIRED_IMAGE_FIELDS = {"id": int, "file_name": str, "width": int, "height": int}
REQUIRED_ANNOTATION_FIELDS = {"id": int, "image_id": int, "category_id": int}
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


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
"""The members of an instances file read element by element or in bulk; the rest are small."""

Layout = list[tuple[str, Span | ListScan]]
"""An instances file's top-level members in file order, its lists scanned (`json_lists`)."""


def read_instances(path: Path, annotation_ids: Collection[int] | None = None) -> Instances:
    """Read and check an instances file, keeping the annotations named in `annotation_ids`
    (every one when None); a file that cannot be read raises `BuilderInputError`.

    Memory holds the images, the categories and the kept annotations, never the whole file:
    refer's builders keep only the annotations their refs name. The annotations are parsed
    in runs here, not as tasks: the kept records are the result, and shipping them back from
    other processes costs more than parsing them (RefCOCO: 2.5 s against 1.7 s for the plan).
    """
    layout = _scanned(path)
    if layout is not None:
        instances = _read_scanned(path, layout, annotation_ids)
        if instances is not None:
            return instances
    return _read_walked(path, annotation_ids)


def _read_scanned(
    path: Path, layout: Layout, annotation_ids: Collection[int] | None
) -> Instances | None:
    """`read_instances` from the file's scanned layout; None when a list is irregular."""
    instances = Instances(path, {}, {}, {})
    candidates: list[tuple[int, Any]] = []
    for key, member in layout:
        if key == "images":
            if not _read_images(instances, member):
                return None
        elif key == "annotations":
            runs = [
                _named_in_run(str(path), run, annotation_ids) for run in member.runs(CHUNK_SIZE)
            ]
            if any(run is None for run in runs):
                return None
            candidates = [candidate for run in runs for candidate in run]
        elif key == "categories":
            instances.categories = _categories(member.value)
    _check_candidates(instances, candidates)
    return instances


def _read_walked(path: Path, annotation_ids: Collection[int] | None) -> Instances:
    """`read_instances` element by element: slower, and exact about any malformed byte."""
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
            if _named(span.value, annotation_ids):
                candidates.append((counts[key], span.value))
        elif key == "categories":
            instances.categories = _categories(span.value)
        counts[key] += 1
    _require_members(path, seen)
    _check_candidates(instances, candidates)
    return instances


def _named(record: Any, annotation_ids: Collection[int] | None) -> bool:
    """Whether an annotation record is one of `annotation_ids` (all are, for None)."""
    if annotation_ids is None:
        return True
    record_id = record.get("id") if isinstance(record, dict) else None
    return isinstance(record_id, int) and record_id in annotation_ids


def _named_in_run(
    path: str, run: ElementRun, annotation_ids: Collection[int] | None
) -> list[tuple[int, Any]] | None:
    """(position, record) of the run's annotations named in `annotation_ids`; None when the run
    cannot be parsed in bulk."""
    records = parse_run(path, run)
    if records is None:
        return None
    return [(run.first + k, r) for k, r in enumerate(records) if _named(r, annotation_ids)]


def _check_candidates(instances: Instances, candidates: list[tuple[int, Any]]) -> None:
    """Keep each usable candidate annotation by id, or describe what is wrong with it."""
    for position, ann in candidates:
        problem, code = _annotation_problem(instances, ann)
        if problem is None:
            instances.annotations[ann["id"]] = ann
        else:
            _annotation_unusable(instances, ann, position, problem, code)


@dataclass
class InstancesIndex:
    """What a driver keeps of an instances file to plan a build: no annotation, only its place.

    Attributes:
        path: the file.
        images: usable image records by id.
        categories: category names by id.
        spans: per usable image id with annotations, their `SPAN_COLUMNS` as the rows of an
            int64 array, in id order; workers read and check the records.
        problems: the records unusable for planning (not an object, no integer `id` or
            `image_id`, an id seen before, an unknown image), in file order per kind.
    """

    path: Path
    images: dict[int, dict[str, Any]]
    categories: dict[int, str]
    spans: dict[int, np.ndarray]
    problems: list[InstanceProblem]


PLANNING_FIELDS = {"id": int, "image_id": int}
"""What the driver reads of an annotation: enough to group it by image and spot duplicates."""

PLANNING_COLUMNS = ("id", "image", "offset", "length", "position")
"""Per plannable annotation: its id, its image's id, its bytes in the file, its position."""

SPAN_COLUMNS = ("id", "offset", "length", "position")
"""What a worker gets of each annotation of its image: where to read it and how to name it."""


@dataclass
class PlannedRun:
    """What planning keeps of a run of annotations.

    Attributes:
        columns: `PLANNING_COLUMNS` of the plannable annotations, as int64 arrays.
        problems: (position, record, what is wrong) of the others.
    """

    columns: dict[str, np.ndarray]
    problems: list[tuple[int, Any, str]]


def index_instances(
    path: Path, tasks: Tasks = IN_PROCESS, chunk_size: int = CHUNK_SIZE
) -> InstancesIndex:
    """Read an instances file into an `InstancesIndex`, holding about one `chunk_size` of it
    at a time (parsed, when `tasks` run here) plus a few dozen bytes per annotation, whatever
    the file's size (COCO train2017: 448 MB, 860k annotations). The annotations are parsed in
    runs of `chunk_size`, as `tasks`."""
    layout = _scanned(path, chunk_size)
    if layout is not None:
        index = _index_scanned(path, layout, tasks, chunk_size)
        if index is not None:
            return index
    return _index_walked(path, chunk_size)


def _index_scanned(
    path: Path, layout: Layout, tasks: Tasks, run_bytes: int
) -> InstancesIndex | None:
    """`index_instances` from the file's scanned layout; None when a list is irregular."""
    holder = Instances(path, {}, {}, {})
    table = _planning_table([])
    for key, member in layout:
        if key == "images":
            if not _read_images(holder, member):
                return None
        elif key == "annotations":
            runs = tasks.map(_plan_run, [(str(path), run) for run in member.runs(run_bytes)])
            if any(run is None for run in runs):
                return None
            for run in runs:
                for position, record, problem in run.problems:
                    _annotation_unusable(holder, record, position, problem, "malformed_annotation")
            table = _planning_table(runs)
        elif key == "categories":
            holder.categories = _categories(member.value)
    return _grouped(holder, table)


def _plan_run(path: str, run: ElementRun) -> PlannedRun | None:
    """The planning columns of a run of annotations; None when it cannot be parsed in bulk.
    A task: runs on any worker."""
    records = parse_run(path, run)
    if records is None:
        return None
    ids, images, kept = array("q"), array("q"), array("q")
    problems = []
    for k, record in enumerate(records):
        problem = _planning_problem(record)
        if problem is not None:
            problems.append((run.first + k, record, problem))
            continue
        ids.append(record["id"])
        images.append(record["image_id"])
        kept.append(k)
    rows = np.frombuffer(kept, dtype=np.int64)
    columns = {
        "id": np.frombuffer(ids, dtype=np.int64),
        "image": np.frombuffer(images, dtype=np.int64),
        "offset": run.starts[rows],
        "length": run.ends[rows] - run.starts[rows],
        "position": run.first + rows,
    }
    return PlannedRun(columns, problems)


def _index_walked(path: Path, chunk_size: int) -> InstancesIndex:
    """`index_instances` element by element: slower, and exact about any malformed byte."""
    holder = Instances(path, {}, {}, {})
    columns: dict[str, array[int]] = {name: array("q") for name in PLANNING_COLUMNS}
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
            problem = _planning_problem(span.value)
            if problem is not None:
                _annotation_unusable(holder, span.value, position, problem, "malformed_annotation")
                continue
            record = span.value
            values = (record["id"], record["image_id"], span.offset, span.length, position)
            for name, value in zip(PLANNING_COLUMNS, values, strict=True):
                columns[name].append(value)
    _require_members(path, seen)
    return _grouped(holder, {name: np.frombuffer(c, dtype=np.int64) for name, c in columns.items()})


def _planning_problem(record: Any) -> str | None:
    """What keeps an annotation record from being planned: no integer `id` or `image_id`, or
    one too large to be an id."""
    problem = field_problem(record, PLANNING_FIELDS)
    if problem is None:
        for name in PLANNING_FIELDS:
            if not INT64_MIN <= record[name] <= INT64_MAX:
                return f"field {name!r}: {record[name]} is too large to be an id"
    return problem


def _planning_table(runs: list[PlannedRun]) -> dict[str, np.ndarray]:
    """The planning columns of `runs`, one after the other."""
    return {
        name: np.concatenate([np.zeros(0, np.int64), *(run.columns[name] for run in runs)])
        for name in PLANNING_COLUMNS
    }


def _grouped(holder: Instances, table: dict[str, np.ndarray]) -> InstancesIndex:
    """The index of the plannable annotations in `table`, grouped by image in id order."""
    usable = _plannable(holder, table)
    order = np.lexsort((table["id"][usable], table["image"][usable]))
    images = table["image"][usable][order]
    rows = np.stack([table[name][usable][order] for name in SPAN_COLUMNS], axis=1)
    firsts = np.flatnonzero(np.diff(images, prepend=images[:1] - 1))
    groups = np.split(rows, firsts[1:])
    by_image = dict(zip(images[firsts].tolist(), groups, strict=True)) if len(rows) else {}
    return InstancesIndex(holder.path, holder.images, holder.categories, by_image, holder.problems)


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
    _require_file(path)
    return iter_object_spans(path, INSTANCE_LISTS, chunk_size)


def _scanned(path: Path, chunk_size: int = CHUNK_SIZE) -> Layout | None:
    """The file's members with its lists scanned; None when a list cannot be read in bulk or a
    member appears twice (the element walk then reads the file, and says what is wrong)."""
    _require_file(path)
    layout: Layout = []
    try:
        for key, member in iter_object_spans(path, INSTANCE_LISTS, chunk_size, scan=True):
            layout.append((key, member))
    except IrregularList:
        return None
    keys = [key for key, _ in layout]
    if len(set(keys)) < len(keys):
        return None
    _require_members(path, set(keys))
    return layout


def _require_file(path: Path) -> None:
    if not path.is_file():
        raise BuilderInputError(f"{path}: file not found")


def _read_images(instances: Instances, images: ListScan) -> bool:
    """Parse the scanned `images` list in one call and keep its usable records; False when it
    cannot be parsed in bulk."""
    records = parse_run(str(instances.path), images.whole())
    if records is None:
        return False
    for position, record in enumerate(records):
        _read_image(instances, record, position)
    return True


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
