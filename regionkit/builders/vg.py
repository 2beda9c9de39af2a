"""Visual Genome v1.2 (objects and relationships v1.4): one row per image, streamed from huge lists.

Reads the JSON files as the Visual Genome site ships them under `--root`: `image_data.json` and,
as `--parts` asks (all four by default), `objects.json`, `attributes.json`,
`relationships.json` and `region_descriptions.json`. Every file is one JSON list with an element
per image, in the same image order. The large files are gigabytes, so the driver never loads
them: it streams each with `json_spans.iter_list_spans`, keeps per image only the byte span of
its element in each file and its unit counts, and each worker re-reads the spans of its images.

Quirks handled:
- The image key of an element is `image_id`, except in `region_descriptions.json` (and v1.0's
  `image_data.json`), where it is `id`; either is accepted in every file.
- The image file is the `url`'s last two parts (`VG_100K/1.jpg` or `VG_100K_2/1.jpg`) under
  `--images`; `coco_id` and `flickr_id` may be null and become `coco:`/`flickr:` image keys.
- Boxes are `x`, `y`, `w`/`h` (objects) or `width`/`height` (regions), 0-based pixels; some
  have a negative x or y or run past the image, so every box is clipped to the image, and one
  left empty is quarantined.
- Objects carry `names` (a list; v1.4) or `name` (a string), and relationship ends carry
  either form too. The first name is the region's category; further names become groundings of
  that region, since they are phrases naming it and the record has no alias field.
- `attributes.json` repeats objects with an `attributes` list that is sometimes missing
  (no attributes); its entries add to the object they name. Attributes are stripped, and empty
  or repeated ones dropped.
- Objects come from two releases: `objects.json` and `relationships.json` are v1.4, while
  `attributes.json` is v1.2, and v1.4 merged or removed objects that v1.2 had. Of the first 100
  real images, 844 of 3,671 attribute entries and 1,047 of 5,230 relationship ends name an
  object that v1.4's `objects.json` lists neither as an object nor in a `merged_object_ids`.
  `objects.json` is the authority on which objects exist, and an `object_id` that another file
  names lands on the first of these that fits:
  1. the object with that id;
  2. the object whose `merged_object_ids` holds it (counted as `object_id_merged`);
  3. for an id that `objects.json` does not list, an object region that it nearly duplicates
     (counted as `unlisted_object_matched`). A near duplicate shares a name (lower-cased,
     spaces collapsed) and has an IoU of at least `NEAR_DUPLICATE_IOU` with the clipped box.
     The best IoU wins, and ties go to the earlier region;
  4. otherwise, a region of its own, `object:<id>@attributes.json` or
     `object:<id>@relationships.json` after the file that names it first, made once per id
     (counted as `unlisted_object_added`).
  These objects are kept rather than dropped because v1.4's own `relationships.json` names them,
  with boxes and names. Dropping them would drop about a fifth of the attribute entries and up
  to a fifth of the relationships, since a relation needs both of its ends. The counts go into
  `Built.adjustments`. When two `objects.json` objects nearly duplicate each other, both stay:
  that is v1.4's decision.
- A relationship whose ends land on one region (a self-relation) is quarantined as
  `self_relationship`, since a relation needs two regions. This happens when its source names
  one object twice, or when one end is merged into, or nearly duplicates, the other.
- Predicates are stripped and lower-cased (the file mixes `ON` and `on`); attributes keep their
  case (only stripped), since their case can carry meaning (`TV`, `US`).
- Region phrases carry trailing spaces: they are stripped and become groundings of their box.

Rows: one per image (split `train`, the only one), holding its objects and described regions
as box-only regions, the phrases and extra names as groundings, and the relationships as
relations. Region ids are `object:<object_id>`, `object:<object_id>@<file>` (objects that
`objects.json` does not list) and `region:<region_id>`, so the kinds never collide and each
region says which file it came from.

Units: image, object, attribute_object (an `attributes.json` entry), relationship and region
(a region description); each ends in a row or in quarantine. At index, an element whose image
is not a usable `image_data.json` record (`unknown_image`), comes twice (`repeated_image`) or
has no image id or list (`malformed_record`) is rejected with all its units; on workers, an
image that cannot be read takes its units along (`missing_image`, `path_escape`, ...), and one
bad record goes alone (`malformed_<unit>`, `duplicate_object`, `duplicate_region`,
`empty_box`, `empty_phrase`, `empty_predicate`, `self_relationship`, and `object_quarantined`
for an attribute entry or relationship naming an `objects.json` object that went to quarantine).
"""

from __future__ import annotations

import argparse
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from regionkit.builders.base import (
    BuilderInputError,
    Built,
    Rejected,
    SourceIndex,
    WorkItem,
)
from regionkit.builders.fields import RecordError, json_kind
from regionkit.builders.files import ImagePathError, checked_image
from regionkit.builders.json_spans import iter_list_spans, read_span
from regionkit.builders.rooted import RootedBuilder
from regionkit.builders.tasks import IN_PROCESS, Tasks
from regionkit.catalog.boxes import box_is_empty, clip_box, xywh_to_xyxy
from regionkit.catalog.records import make_region

IMAGE_DATA = "image_data.json"
ByteSpan = tuple[int, int]
"""An element's (byte offset, byte length) in its file."""
SPLIT = "train"
"""Visual Genome has no official split; the catalog names its one split `train`."""


@dataclass(frozen=True)
class Part:
    """One annotation file.

    Attributes:
        file: its name under --root.
        key: the key of each element's list of records.
        unit: what one record counts as.
        id_field: the record's own id (names it in quarantine).
        method: the `_Assembly` method that adds one record to a row.
    """

    file: str
    key: str
    unit: str
    id_field: str
    method: str


PARTS = {
    "objects": Part("objects.json", "objects", "object", "object_id", "add_object"),
    "attributes": Part(
        "attributes.json", "attributes", "attribute_object", "object_id", "add_attribute_object"
    ),
    "relationships": Part(
        "relationships.json", "relationships", "relationship", "relationship_id", "add_relationship"
    ),
    "regions": Part(
        "region_descriptions.json", "regions", "region", "region_id", "add_region_description"
    ),
}
"""In the order rows are assembled: attributes and relationships refer to objects."""


MALFORMED = ""
"""The code of a record whose fields are malformed: where it is caught, the unit is known and it
becomes `malformed_<unit>` (`malformed_image`, `malformed_object`, ...)."""


def _parts_option(text: str) -> tuple[str, ...]:
    """`--parts objects,regions` -> the parts in canonical order, or an argparse error."""
    asked = {p.strip() for p in text.split(",") if p.strip()}
    unknown = sorted(asked - set(PARTS))
    if unknown or not asked:
        problem = f"unknown part(s) {unknown}" if unknown else "no part given"
        raise argparse.ArgumentTypeError(f"{problem}; choose from {', '.join(PARTS)}")
    return tuple(p for p in PARTS if p in asked)


_MISSING = object()


def _number(record: dict[str, Any], names: tuple[str, ...], prefix: str) -> float:
    """The first of `names` present in `record` as a float (JSON numbers only)."""
    for name in names:
        value = record.get(name, _MISSING)
        if value is not _MISSING:
            break
    else:
        alternatives = " or ".join(repr(f"{prefix}{n}") for n in names)
        raise RecordError(MALFORMED, f"field {alternatives} is missing")
    if type(value) is int or type(value) is float:  # the usual case, decided at once
        return float(value)
    raise RecordError(
        MALFORMED, f"field '{prefix}{name}' should be a number, got {json_kind(value)}"
    )


def _integer(record: dict[str, Any], name: str, prefix: str = "") -> int:
    if name not in record:
        raise RecordError(MALFORMED, f"field '{prefix}{name}' is missing")
    value = record[name]
    if isinstance(value, bool) or not isinstance(value, int):
        raise RecordError(
            MALFORMED, f"field '{prefix}{name}' should be an integer, got {json_kind(value)}"
        )
    return value


def _text(record: dict[str, Any], name: str) -> str:
    if name not in record:
        raise RecordError(MALFORMED, f"field {name!r} is missing")
    value = record[name]
    if not isinstance(value, str):
        raise RecordError(MALFORMED, f"field {name!r} should be a string, got {json_kind(value)}")
    return value


def _clean(texts: list[str]) -> list[str]:
    """Stripped, without empties or repeats, in their first order."""
    return list(dict.fromkeys(t.strip() for t in texts if t.strip()))


def _string_list(record: dict[str, Any], name: str, prefix: str) -> list[str]:
    value = record[name]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise RecordError(MALFORMED, f"field '{prefix}{name}' should be a list of strings")
    return _clean(value)


def _names(record: dict[str, Any], prefix: str = "") -> list[str]:
    """An object's names from `names` (list) or `name` (string); at least one."""
    if "names" in record:
        names = _string_list(record, "names", prefix)
    elif isinstance(record.get("name"), str):
        names = _clean([record["name"]])
    else:
        raise RecordError(
            MALFORMED, f"field '{prefix}names' (or '{prefix}name') is missing or not text"
        )
    if not names:
        raise RecordError(MALFORMED, f"field '{prefix}names' holds no name")
    return names


def _merged_ids(record: dict[str, Any]) -> list[int]:
    value = record.get("merged_object_ids", [])
    if not isinstance(value, list) or not all(
        isinstance(v, int) and not isinstance(v, bool) for v in value
    ):
        raise RecordError(MALFORMED, "field 'merged_object_ids' should be a list of integers")
    return value


def _image_meta(record: Any) -> dict[str, Any]:
    """What a row needs from an `image_data.json` record: id, size, image file, other ids."""
    if not isinstance(record, dict):
        raise RecordError(MALFORMED, f"the record is {json_kind(record)}, not an object")
    image_id = _integer(record, "image_id" if "image_id" in record else "id")
    width, height = _integer(record, "width"), _integer(record, "height")
    if width <= 0 or height <= 0:
        raise RecordError(
            MALFORMED, f"fields 'width', 'height': {width}x{height} is not an image size"
        )
    parts = _text(record, "url").rsplit("/", 2)[-2:]
    if len(parts) != 2 or not all(parts):
        raise RecordError(
            MALFORMED, f"field 'url' {record['url']!r} does not end in <folder>/<file>"
        )
    meta = {"id": image_id, "width": width, "height": height, "file": "/".join(parts)}
    for key in ("coco_id", "flickr_id"):
        value = record.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise RecordError(
                MALFORMED, f"field {key!r} should be an integer or null, got {json_kind(value)}"
            )
        meta[key] = value
    return meta


def _image_keys(image: dict[str, Any]) -> list[str]:
    """Every identity the image has: its VG id, and its COCO and Flickr ids when known."""
    keys = [f"vg:{image['id']}"]
    keys += [f"coco:{image['coco_id']}"] if image["coco_id"] is not None else []
    keys += [f"flickr:{image['flickr_id']}"] if image["flickr_id"] is not None else []
    return keys


def _element_image(element: Any, part: Part) -> tuple[int | None, int]:
    """A part element's image id and unit count, or `RecordError` (the count says what is lost)."""
    if not isinstance(element, dict):
        raise RecordError(MALFORMED, f"the element is {json_kind(element)}, not an object")
    records = element.get(part.key)
    if not isinstance(records, list):
        raise RecordError(MALFORMED, f"field {part.key!r} is missing or not a list")
    image_id = element.get("image_id", element.get("id"))
    if isinstance(image_id, bool) or not isinstance(image_id, int):
        raise RecordError(MALFORMED, "neither field 'image_id' nor 'id' is an integer")
    return image_id, len(records)


NEAR_DUPLICATE_IOU = 0.85
"""The IoU at or above which an unlisted object that shares a name with an object region is
taken to be that region. It is the default `iou_thres` of `create_attributes_per_obj` in
KaihuaTang/Scene-Graph-Benchmark.pytorch (`datasets/vg/generate_attribute_labels.py`), which
attaches attributes.json entries to VG-SGG boxes by overlap, not by id."""

# Adjustment codes: how a mention of an object in attributes.json or relationships.json was
# resolved, when it did not simply name a region by that region's own object id.
MERGED = "object_id_merged"
MATCHED = "unlisted_object_matched"
ADDED = "unlisted_object_added"


def _name_key(name: str) -> str:
    """A name as near-duplicate matching compares it: lower case, single spaces."""
    return " ".join(name.lower().split())


def _iou(a: list[float], b: list[float]) -> float:
    """Intersection over union of two non-empty xyxy boxes in continuous pixels.

    This is the true IoU. The scene-graph scripts (`merge_duplicate_boxes`,
    `create_attributes_per_obj`) divide by the area of the box enclosing both instead, which is
    never smaller than the union.
    """
    width = min(a[2], b[2]) - max(a[0], b[0])
    height = min(a[3], b[3]) - max(a[1], b[1])
    if width <= 0 or height <= 0:
        return 0.0
    inter = width * height
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


_Candidate = tuple[int, list[float], set[str]]
"""An object region a mention may nearly duplicate: its index, its box and its name keys."""


def _near_duplicate(box: list[float], names: list[str], candidates: list[_Candidate]) -> int | None:
    """The candidate that `box` and `names` nearly duplicate, or None.

    A near duplicate shares a name key and overlaps at IoU >= `NEAR_DUPLICATE_IOU`. The best IoU
    wins; on a tie, the earlier region does.
    """
    keys = {_name_key(name) for name in names}
    overlaps = [
        (_iou(box, other), -index) for index, other, other_keys in candidates if keys & other_keys
    ]
    iou, negative_index = max(overlaps, default=(0.0, 0))
    return -negative_index if iou >= NEAR_DUPLICATE_IOU else None


@dataclass(frozen=True)
class _Unlisted:
    """An object that `objects.json` does not list, named by another file: its would-be region."""

    object_id: int
    box: list[float]
    names: list[str]
    file: str

    @property
    def region_id(self) -> str:
        """`object:<id>@<file>`: the object id, marked with the file the object came from."""
        return f"object:{self.object_id}@{self.file}"


@dataclass(frozen=True)
class _Landing:
    """Where one mention of an object (an attribute entry, a relationship end) lands.

    Attributes:
        object_id: the id the mention names.
        index: the region it lands on; for a new region, the index that region will get.
        code: the adjustment the mention counts as, or None when it names its region's own id.
        new: the region to create at `index`, for an unlisted object with no near duplicate.
    """

    object_id: int
    index: int
    code: str | None = None
    new: _Unlisted | None = None


def _end_record(record: dict[str, Any], side: str) -> dict[str, Any]:
    """A relationship's `subject` or `object` end, checked to be a JSON object."""
    end = record.get(side)
    if not isinstance(end, dict):
        raise RecordError(MALFORMED, f"field {side!r} is missing or not an object")
    return end


class _Assembly:
    """One image's regions, groundings and relations, built record by record.

    Mentions of objects are resolved in two steps so that a rejected record changes nothing:
    `land` works out where a mention goes, and `commit` makes it so once the whole record has
    been checked.
    """

    def __init__(self, image_id: int, width: int, height: int) -> None:
        self.image_id = image_id
        self.width = width
        self.height = height
        self.regions: list[dict[str, Any]] = []
        self.groundings: list[dict[str, Any]] = []
        self.relations: list[dict[str, Any]] = []
        self.objects: dict[int, int] = {}  # object_id (listed or added) -> region index
        self.merged: dict[int, int] = {}  # an id in some object's merged_object_ids -> index
        self.matched: dict[int, int] = {}  # an unlisted id -> the region it nearly duplicates
        self.object_names: dict[int, set[str]] = {}  # object region index -> its name keys
        # an id of a quarantined objects.json object (or in its merged ids) -> (object, code)
        self.quarantined: dict[int, tuple[int, str]] = {}
        self.descriptions: set[int] = set()
        self.adjustments: Counter[str] = Counter()

    def box(self, record: dict[str, Any], prefix: str = "") -> list[float]:
        """The record's xywh as an xyxy box clipped to the image; `RecordError` if none is left."""
        x = _number(record, ("x",), prefix)
        y = _number(record, ("y",), prefix)
        w = _number(record, ("w", "width"), prefix)
        h = _number(record, ("h", "height"), prefix)
        box = clip_box(xywh_to_xyxy([x, y, w, h]), self.width, self.height)
        if box_is_empty(box):
            owner = f"{prefix[:-1]} " if prefix else ""
            raise RecordError(
                "empty_box",
                f"{owner}box x={x:g}, y={y:g}, w={w:g}, h={h:g} covers nothing of the "
                f"{self.width}x{self.height} image once clipped to it",
            )
        return box

    def add_region(self, region_id: str, box: list[float], names: list[str]) -> int:
        """Append a region; names after the first become groundings of it."""
        index = len(self.regions)
        self.regions.append(make_region(region_id, box, None, names[0] if names else None))
        self.groundings += [{"text": name, "regions": [index]} for name in names[1:]]
        return index

    def add_object_region(
        self, object_id: int, region_id: str, box: list[float], names: list[str]
    ) -> int:
        """Append an object's region and remember its id and names for later mentions."""
        index = self.add_region(region_id, box, names)
        self.objects[object_id] = index
        self.object_names[index] = {_name_key(name) for name in names}
        return index

    def add_object(self, record: dict[str, Any]) -> None:
        object_id = _integer(record, "object_id")
        if object_id in self.objects:
            raise RecordError(
                "duplicate_object", f"object_id {object_id} appears twice in the image"
            )
        merged: list[int] = []
        try:
            names, merged = _names(record), _merged_ids(record)
            box = self.box(record)
        except RecordError as bad:  # listed but unusable: later mentions must not revive it
            for quarantined_id in (object_id, *merged):
                self.quarantined.setdefault(quarantined_id, (object_id, bad.code))
            raise
        index = self.add_object_region(object_id, f"object:{object_id}", box, names)
        for other in merged:
            self.merged.setdefault(other, index)

    def land(
        self,
        record: dict[str, Any],
        file: str,
        prefix: str = "",
        planned: tuple[_Unlisted, ...] = (),
    ) -> _Landing:
        """Where a mention of an object lands (see the module docstring); changes nothing.

        `planned` holds regions that earlier ends of the same record would create, in order, so
        that the two ends of one relationship see each other before either is committed.
        """
        object_id = _integer(record, "object_id", prefix)
        if object_id in self.objects:
            return _Landing(object_id, self.objects[object_id])
        if object_id in self.merged:
            return _Landing(object_id, self.merged[object_id], MERGED)
        if object_id in self.matched:
            return _Landing(object_id, self.matched[object_id], MATCHED)
        if object_id in self.quarantined:
            listed, code = self.quarantined[object_id]
            raise RecordError(
                "object_quarantined",
                f"field '{prefix}object_id': {object_id} is objects.json's object {listed}, "
                f"which went to quarantine ({code}), so it has no region",
            )
        box, names = self.box(record, prefix), _names(record, prefix)
        after = len(self.regions)
        for k, other in enumerate(planned):
            if other.object_id == object_id:
                return _Landing(object_id, after + k)
        candidates = [(i, self.regions[i]["bbox"], keys) for i, keys in self.object_names.items()]
        candidates += [
            (after + k, other.box, {_name_key(n) for n in other.names})
            for k, other in enumerate(planned)
        ]
        index = _near_duplicate(box, names, candidates)
        if index is not None:
            return _Landing(object_id, index, MATCHED)
        new = _Unlisted(object_id, box, names, file)
        return _Landing(object_id, after + len(planned), ADDED, new)

    def commit(self, landing: _Landing) -> int:
        """Make a landing so, creating its region if it is new; the index of its region."""
        if landing.new is not None:
            new = landing.new
            self.add_object_region(new.object_id, new.region_id, new.box, new.names)
        elif landing.code == MATCHED:
            self.matched[landing.object_id] = landing.index
        if landing.code is not None:
            self.adjustments[landing.code] += 1
        return landing.index

    def add_attribute_object(self, record: dict[str, Any]) -> None:
        attributes = (
            [] if record.get("attributes") is None else _string_list(record, "attributes", "")
        )
        index = self.commit(self.land(record, PARTS["attributes"].file))
        region = self.regions[index]
        region["attributes"] = _clean(region["attributes"] + attributes)

    def add_relationship(self, record: dict[str, Any]) -> None:
        _integer(record, "relationship_id")
        predicate = _text(record, "predicate").strip().lower()
        if not predicate:
            raise RecordError("empty_predicate", "field 'predicate' is blank")
        file = PARTS["relationships"].file
        subject = self.land(_end_record(record, "subject"), file, "subject.")
        planned = (subject.new,) if subject.new is not None else ()
        target = self.land(_end_record(record, "object"), file, "object.", planned)
        if target.index == subject.index:
            region = subject.new.region_id if subject.new else self.regions[subject.index]["id"]
            raise RecordError(
                "self_relationship",
                f"fields 'subject.object_id' ({subject.object_id}) and 'object.object_id' "
                f"({target.object_id}) both land on region {region}: an id in an object's "
                "merged_object_ids is that object, and an id objects.json does not list is the "
                f"same-named object region its box overlaps at IoU >= {NEAR_DUPLICATE_IOU}; a "
                "relation needs two regions",
            )
        self.relations.append(
            {"subject": self.commit(subject), "predicate": predicate, "object": self.commit(target)}
        )

    def add_region_description(self, record: dict[str, Any]) -> None:
        region_id = _integer(record, "region_id")
        if region_id in self.descriptions:
            raise RecordError(
                "duplicate_region", f"region_id {region_id} appears twice in the image"
            )
        phrase = _text(record, "phrase").strip()
        if not phrase:
            raise RecordError("empty_phrase", "field 'phrase' is blank")
        index = self.add_region(f"region:{region_id}", self.box(record), [])
        self.descriptions.add(region_id)
        self.groundings.append({"text": phrase, "regions": [index]})


class VisualGenomeBuilder(RootedBuilder):
    """`regionkit build vg --root VG/ --images VG/ [--parts regions]`."""

    source = "vg"
    version = "1.1"  # objects resolved against v1.4 objects.json, never duplicated
    units = ("image", "object", "attribute_object", "relationship", "region")

    def __init__(
        self,
        root: Path,
        images: Path,
        splits: list[str] | tuple[str, ...] | None = None,
        parts: tuple[str, ...] | list[str] = tuple(PARTS),
    ) -> None:
        super().__init__(root, images, splits)
        unknown = sorted(set(parts) - set(PARTS))
        if unknown:
            raise ValueError(f"unknown Visual Genome part(s) {unknown}; choose from {list(PARTS)}")
        self.parts = tuple(p for p in PARTS if p in parts)

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        super().add_arguments(parser)
        parser.add_argument(
            "--parts",
            type=_parts_option,
            default=tuple(PARTS),
            help=f"comma-separated files to read besides {IMAGE_DATA}: "
            + ", ".join(f"{name} ({part.file})" for name, part in PARTS.items())
            + " (default: all four)",
        )

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> VisualGenomeBuilder:
        return cls(args.root, args.images, args.splits, args.parts)

    def arguments(self) -> dict[str, Any]:
        return {**super().arguments(), "parts": list(self.parts)}

    def part_file(self, part: str) -> Path:
        """The part's file under --root, or an error that also says how to leave it out."""
        try:
            return self.expected_file(PARTS[part].file)
        except BuilderInputError as error:
            raise BuilderInputError(
                f"{error} To build without it, leave {part!r} out of --parts."
            ) from None

    def _file(self, name: str) -> Path:
        """Where `image_data` or a part lives (after `index()` found it)."""
        return self.root / (IMAGE_DATA if name == "image_data" else PARTS[name].file)

    def source_files(self) -> list[Path]:
        return [self.expected_file(IMAGE_DATA)] + [self.part_file(p) for p in self.parts]

    def index(self, tasks: Tasks = IN_PROCESS) -> SourceIndex:
        self.check_splits_found([SPLIT])
        files = self.source_files()  # every file asked for must exist before a long read
        index = SourceIndex()
        spans = self._index_images(files[0], index)
        units: dict[int, Counter[str]] = {image_id: Counter(image=1) for image_id in spans}
        for name, path in zip(self.parts, files[1:], strict=True):
            self._index_part(name, path, spans, units, index)
        for image_id in sorted(spans):
            index.add(
                WorkItem(
                    split=SPLIT, key=str(image_id), payload=spans[image_id], units=units[image_id]
                )
            )
        return index

    def _index_images(self, path: Path, index: SourceIndex) -> dict[int, dict[str, ByteSpan]]:
        """Each usable image's span in `image_data.json`, by id; bad or repeated ones rejected.

        Only spans are kept (workers re-read the records), so the driver's memory per image is
        a few tuples whatever the files hold.
        """
        spans: dict[int, dict[str, ByteSpan]] = {}
        for position, span in enumerate(iter_list_spans(path)):
            record = span.value
            try:
                image_id = _image_meta(record)["id"]
                if image_id in spans:
                    raise RecordError("duplicate_image", f"image id {image_id} appears twice")
            except RecordError as bad:
                image_id = (
                    record.get("image_id", record.get("id")) if isinstance(record, dict) else None
                )
                key = f"image {image_id}" if image_id is not None else f"{IMAGE_DATA} #{position}"
                index.reject(
                    SPLIT,
                    Rejected(
                        key,
                        bad.code or "malformed_image",
                        f"{IMAGE_DATA}: element {position} (byte {span.offset}): {bad}",
                        {"image": 1},
                        record,
                        IMAGE_DATA,
                    ),
                )
                continue
            spans[image_id] = {"image_data": (span.offset, span.length)}
        return spans

    def _index_part(
        self,
        name: str,
        path: Path,
        spans: dict[int, dict[str, ByteSpan]],
        units: dict[int, Counter[str]],
        index: SourceIndex,
    ) -> None:
        """Each image's span and unit count in one part file; unusable elements rejected."""
        part = PARTS[name]
        for position, span in enumerate(iter_list_spans(path)):
            element = span.value
            image_id, count = None, 0
            try:
                image_id, count = _element_image(element, part)
                if image_id not in spans:
                    raise RecordError(
                        "unknown_image", f"image {image_id} is not a usable image of {IMAGE_DATA}"
                    )
                if name in spans[image_id]:
                    raise RecordError(
                        "repeated_image", f"image {image_id} has an earlier element in the file"
                    )
            except RecordError as bad:
                if isinstance(element, dict) and isinstance(element.get(part.key), list):
                    count = len(element[part.key])
                key = (
                    f"{part.key} of image {image_id}"
                    if image_id is not None
                    else f"{part.file} #{position}"
                )
                index.reject(
                    SPLIT,
                    Rejected(
                        key,
                        bad.code or "malformed_record",
                        f"{part.file}: element {position} (byte {span.offset}): {bad}",
                        {part.unit: count} if count else {},
                        element,
                        part.file,
                    ),
                )
                continue
            spans[image_id][name] = (span.offset, span.length)
            units[image_id][part.unit] = count

    def build_item(self, item: WorkItem) -> Iterator[Built | Rejected]:
        elements = {
            name: read_span(self._file(name), offset, length)
            for name, (offset, length) in item.payload.items()
        }
        try:
            image = _image_meta(elements["image_data"])
        except RecordError as bad:
            raise BuilderInputError(
                f"{self._file('image_data')}: changed after it was indexed ({bad}), rebuild"
            ) from None
        try:
            path, _ = checked_image(self.images, image["file"], (image["width"], image["height"]))
        except ImagePathError as error:
            yield Rejected(
                f"image {image['id']}",
                error.code,
                f"{IMAGE_DATA}: image {image['id']} ({image['file']}): {error}",
                item.units,
                {self._file(name).name: element for name, element in elements.items()},
                IMAGE_DATA,
            )
            return
        assembly = _Assembly(image["id"], image["width"], image["height"])
        accounted: Counter[str] = Counter(image=1)
        for name in self.parts:  # objects first: attributes and relationships refer to them
            if name in elements:
                for outcome in self._records(assembly, name, elements[name]):
                    if isinstance(outcome, Rejected):
                        yield outcome
                    else:
                        accounted[outcome] += 1
        yield Built(
            self.make_row(
                item,
                image_path=str(path),
                width=image["width"],
                height=image["height"],
                image_keys=_image_keys(image),
                regions=assembly.regions,
                groundings=assembly.groundings,
                relations=assembly.relations,
                source_files=[IMAGE_DATA] + [PARTS[name].file for name in self.parts],
            ),
            dict(accounted),
            dict(assembly.adjustments),
        )

    def _records(
        self, assembly: _Assembly, name: str, element: dict[str, Any]
    ) -> Iterator[str | Rejected]:
        """Add one part's records to `assembly`: the unit name per record used, else a Rejected."""
        part = PARTS[name]
        add = getattr(assembly, part.method)
        records = element.get(part.key)
        if not isinstance(records, list):
            raise BuilderInputError(f"{self._file(name)}: changed after it was indexed, rebuild")
        for position, record in enumerate(records):
            try:
                if not isinstance(record, dict):
                    raise RecordError(
                        MALFORMED, f"the record is {json_kind(record)}, not an object"
                    )
                add(record)
            except RecordError as bad:
                yield self._rejected(assembly.image_id, name, position, record, bad)
                continue
            yield part.unit

    def _rejected(
        self, image_id: int, name: str, position: int, record: Any, bad: RecordError
    ) -> Rejected:
        """A part record's rejection, named by its own id when it has one."""
        part = PARTS[name]
        native = record.get(part.id_field) if isinstance(record, dict) else None
        label = part.unit.replace("_", " ")
        if isinstance(native, int) and not isinstance(native, bool):
            key = f"{label} {native}" if name != "attributes" else f"attributes of object {native}"
        else:
            key = f"{label} #{position} of image {image_id}"
        return Rejected(
            key,
            bad.code or f"malformed_{part.unit}",
            f"{part.file}: image {image_id}, {part.key}[{position}] ({key}): {bad}",
            {part.unit: 1},
            record,
            part.file,
        )
