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
  (no attributes); its entries are merged into the object with the same `object_id` (or whose
  `merged_object_ids` holds it). Attributes are stripped, and empty or repeated ones dropped.
- A relationship end whose `object_id` is not among the image's objects (v1.4 merged or
  dropped them) becomes a region of its own from the box the relationship carries.
- Predicates are stripped and lower-cased (the file mixes `ON` and `on`); attributes keep their
  case (only stripped), since their case can carry meaning (`TV`, `US`).
- Region phrases carry trailing spaces: they are stripped and become groundings of their box.

Rows: one per image (split `train`, the only one), holding its objects and described regions
as box-only regions (ids `object:<object_id>` and `region:<region_id>`, so the kinds never
collide), the phrases and extra names as groundings, and the relationships as relations.

Units: image, object, attribute_object (an `attributes.json` entry), relationship and region
(a region description); each ends in a row or in quarantine. At index, an element whose image
is not a usable `image_data.json` record (`unknown_image`), comes twice (`repeated_image`) or
has no image id or list (`malformed_record`) is rejected with all its units; on workers, an
image that cannot be read takes its units along (`missing_image`, `path_escape`, ...), and one
bad record goes alone (`malformed_<unit>`, `duplicate_object`, `duplicate_region`,
`empty_box`, `empty_phrase`, `empty_predicate`).
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


@dataclass(frozen=True)
class _NewObject:
    """A relationship end naming no known object: the region it will become."""

    object_id: int
    box: list[float]
    names: list[str]


class _Assembly:
    """One image's regions, groundings and relations, built record by record."""

    def __init__(self, image_id: int, width: int, height: int) -> None:
        self.image_id = image_id
        self.width = width
        self.height = height
        self.regions: list[dict[str, Any]] = []
        self.groundings: list[dict[str, Any]] = []
        self.relations: list[dict[str, Any]] = []
        self.objects: dict[int, int] = {}  # object_id -> region index
        self.merged: dict[int, int] = {}  # an id in some object's merged_object_ids -> index
        self.descriptions: set[int] = set()

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

    def lookup(self, object_id: int) -> int | None:
        return self.objects.get(object_id, self.merged.get(object_id))

    def add_region(self, region_id: str, box: list[float], names: list[str]) -> int:
        """Append a region; names after the first become groundings of it."""
        index = len(self.regions)
        self.regions.append(make_region(region_id, box, None, names[0] if names else None))
        self.groundings += [{"text": name, "regions": [index]} for name in names[1:]]
        return index

    def add_object(self, record: dict[str, Any]) -> None:
        object_id = _integer(record, "object_id")
        if object_id in self.objects:
            raise RecordError(
                "duplicate_object", f"object_id {object_id} appears twice in the image"
            )
        names, merged = _names(record), _merged_ids(record)
        index = self.add_region(f"object:{object_id}", self.box(record), names)
        self.objects[object_id] = index
        for other in merged:
            self.merged.setdefault(other, index)

    def add_attribute_object(self, record: dict[str, Any]) -> None:
        object_id = _integer(record, "object_id")
        attributes = (
            [] if record.get("attributes") is None else _string_list(record, "attributes", "")
        )
        index = self.lookup(object_id)
        if index is None:  # an object only attributes.json has: it is a region of its own
            names = _names(record)
            index = self.add_region(f"object:{object_id}", self.box(record), names)
            self.objects[object_id] = index
        region = self.regions[index]
        region["attributes"] = _clean(region["attributes"] + attributes)

    def relationship_end(self, record: dict[str, Any], side: str) -> int | _NewObject:
        """The end's region index if its object exists, else what creating it needs."""
        end = record.get(side)
        if not isinstance(end, dict):
            raise RecordError(MALFORMED, f"field {side!r} is missing or not an object")
        object_id = _integer(end, "object_id", f"{side}.")
        index = self.lookup(object_id)
        if index is not None:
            return index
        return _NewObject(object_id, self.box(end, f"{side}."), _names(end, f"{side}."))

    def commit_end(self, end: int | _NewObject) -> int:
        """The end's region index, creating its region now that the whole record is valid."""
        if isinstance(end, int):
            return end
        index = self.lookup(end.object_id)  # the other end may have just created it
        if index is None:
            index = self.add_region(f"object:{end.object_id}", end.box, end.names)
            self.objects[end.object_id] = index
        return index

    def add_relationship(self, record: dict[str, Any]) -> None:
        _integer(record, "relationship_id")
        predicate = _text(record, "predicate").strip().lower()
        if not predicate:
            raise RecordError("empty_predicate", "field 'predicate' is blank")
        subject = self.relationship_end(record, "subject")
        target = self.relationship_end(record, "object")
        self.relations.append(
            {
                "subject": self.commit_end(subject),
                "predicate": predicate,
                "object": self.commit_end(target),
            }
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
    version = "1.0"
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

    def index(self) -> SourceIndex:
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
