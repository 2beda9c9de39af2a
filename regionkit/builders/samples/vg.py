"""A small Visual Genome source in its real on-disk format, written as a stream.

Writes `image_data.json`, `objects.json`, `attributes.json`, `relationships.json` and
`region_descriptions.json` (each a JSON list with one element per image, all in the same image
order, spaced as `json.dump` writes them) and the images under `VG_100K/` and `VG_100K_2/`,
with the quirks of the real files:

- the image key is `image_id` in every file but `region_descriptions.json`, where it is `id`;
- `coco_id` and `flickr_id` are null for some images and numbers for others;
- a negative x on some objects and regions, and regions that reach past the right edge;
- phrases with a trailing space, and one with non-ASCII letters (written as raw UTF-8, the
  harder case for byte offsets);
- relationship ends in both forms: `name` (a string), or `names` plus `merged_object_ids`;
- relationship ends whose `object_id` is only in another object's `merged_object_ids`, or in
  no object at all; an object with two names; mixed-case predicates with stray spaces;
- attribute entries without the `attributes` key, with padded, empty and repeated attributes,
  for an object id that only `merged_object_ids` holds, and for an object no other file has;
- on the first image, objects that v1.2's attributes.json and v1.4's relationships.json name
  but v1.4's objects.json no longer lists (in the real first 100 images, 844 of 3,671
  attribute entries and 1,047 of 5,230 relationship ends). There is one that nearly duplicates
  a listed object (its name in another case, IoU just above 0.85), one with the same name just
  below 0.85, one on a listed object's exact box under another name, a relationship end that
  nearly duplicates that last one, and a relationship neither of whose ends is listed.

The unlisted objects mirror what scene-graph preprocessing meets in these same files.
danfeiX/scene-graph-TF-release `data_tools/vg_to_roidb.py` adds relationship ends that are
missing from objects.json as objects (`sync_objects`), then folds overlapping boxes into one
object that all their ids point at (`merge_duplicate_boxes`).
KaihuaTang/Scene-Graph-Benchmark.pytorch `datasets/vg/generate_attribute_labels.py` puts
attributes.json entries on boxes by IoU, not by id (`create_attributes_per_obj`,
`iou_thres=0.85`).

Every file is written element by element, so a gigabyte `region_descriptions.json` (for the
memory benchmark) takes little memory; with `draw=False` one flat JPEG per distinct size is
encoded and the other images are hard links to it.
"""

from __future__ import annotations

import errno
import json
import os
import random
from collections.abc import Iterable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

from regionkit.builders.vg import IMAGE_DATA, PARTS

URL = "https://cs.stanford.edu/people/rak248/{folder}/{image_id}.jpg"
NAMES = ["tree", "man", "clock", "sidewalk", "shade", "window", "car", "dog", "sign", "building"]
ATTRIBUTES = ["green", "tall", "white", "wooden", "parked", "small", "red", "open"]
PREDICATES = ["ON", "wearing", "has", "behind", " near ", "Holding"]
PHRASES = [
    "the clock is green in colour",
    "man wearing a black hat",
    "tall tree behind the fence",
    "a car parked on the street",
    "white clouds in blue sky",
    "dog lying on the sidewalk",
    "window of a brick building",
]
NON_ASCII_PHRASE = "a café sign that says “Crème brûlée”"
SIZE_MISMATCH_ID, MISSING_ID, ESCAPING_ID, MALFORMED_ID = 9003, 9001, 9002, 9004


@dataclass(frozen=True)
class VgSample:
    """Where a written Visual Genome sample lives.

    Attributes:
        root: the folder holding the JSON files (`--root`).
        images: the folder holding `VG_100K/` and `VG_100K_2/` (`--images`).
        image_ids: the images written, in file order.
        parts: the annotation files written besides `image_data.json` (builder part names).
    """

    root: Path
    images: Path
    image_ids: tuple[int, ...]
    parts: tuple[str, ...]

    def file(self, part: str) -> Path:
        """The path of a part's file (`objects`, ...), or of `image_data.json` for `image_data`."""
        return self.root / (IMAGE_DATA if part == "image_data" else PARTS[part].file)


class _Ids:
    """Deterministic object, relationship and region ids, unique across the sample."""

    def __init__(self) -> None:
        self.object = 1_058_000
        self.relationship = 15_900
        self.region = 1_380

    def next_object(self) -> int:
        self.object += 1
        return self.object

    def next_relationship(self) -> int:
        self.relationship += 1
        return self.relationship

    def next_region(self) -> int:
        self.region += 1
        return self.region


def _box(rng: random.Random, width: int, height: int) -> tuple[int, int, int, int]:
    """x, y, w, h inside the image, between an eighth and a half of it on each side."""
    draw = rng.random
    w = width // 8 + int(draw() * (width * 3 // 8)) + 1
    h = height // 8 + int(draw() * (height * 3 // 8)) + 1
    return int(draw() * (width - w + 1)), int(draw() * (height - h + 1)), w, h


def _object(object_id: int, box: tuple[int, int, int, int], names: list[str]) -> dict[str, Any]:
    """An `objects.json` (v1.4) object, keys in the real file's order."""
    x, y, w, h = box
    return {
        "synsets": [f"{names[0]}.n.01"],
        "h": h,
        "object_id": object_id,
        "merged_object_ids": [],
        "names": names,
        "w": w,
        "y": y,
        "x": x,
    }


def _end(obj: dict[str, Any], with_names: bool) -> dict[str, Any]:
    """A relationship end in either form: `name`, or `names` plus `merged_object_ids`."""
    end = {"h": obj["h"], "object_id": obj["object_id"], "synsets": obj["synsets"]}
    if with_names:
        end |= {"merged_object_ids": obj["merged_object_ids"], "names": obj["names"]}
    else:
        end["name"] = obj["names"][0]
    return end | {"w": obj["w"], "y": obj["y"], "x": obj["x"]}


def _attributes(rng: random.Random, k: int, obj: dict[str, Any]) -> dict[str, Any]:
    """An `attributes.json` entry for `obj`: the attributes key missing or messy now and then."""
    entry = {key: obj[key] for key in ("synsets", "h", "object_id", "names", "w")}
    if k % 3 == 0:
        first = rng.choice(ATTRIBUTES)
        entry["attributes"] = [f" {first}", first, "", rng.choice(ATTRIBUTES) + " "]
    elif k % 3 == 1:
        entry["attributes"] = [rng.choice(ATTRIBUTES)]
    return entry | {"y": obj["y"], "x": obj["x"]}


@dataclass(frozen=True)
class _UnlistedObjects:
    """v1.2 objects that v1.4's objects.json no longer lists, named by the other two files.

    Attributes:
        near_duplicate: the second listed object again, its name capitalised with a trailing
            space and its box narrowed to an IoU of 0.87.
        apart: the same name and box narrowed to an IoU of 0.83: not a near duplicate.
        renamed: the fourth listed object's exact box under another name: not one either.
        echo: `renamed` again, capitalised and narrowed to an IoU of about 0.9 (named only by
            relationships.json).
    """

    near_duplicate: dict[str, Any]
    apart: dict[str, Any]
    renamed: dict[str, Any]
    echo: dict[str, Any]


def _narrowed(obj: dict[str, Any], object_id: int, fraction: float, name: str) -> dict[str, Any]:
    """`obj` under a new id and name, its width cut so that its IoU with `obj` is `fraction`
    (to within half a pixel's worth); clipping cannot change it, as the box stays inside `obj`."""
    narrowed = _object(object_id, (obj["x"], obj["y"], obj["w"], obj["h"]), [name.strip().lower()])
    return narrowed | {"names": [name], "w": max(1, round(obj["w"] * fraction))}


def _unlisted(ids: _Ids, objects: list[dict[str, Any]]) -> _UnlistedObjects:
    """Image 1's unlisted objects, built on its listed objects 1 and 3 (neither is merged)."""
    repeated, boxed = objects[1], objects[3]
    renamed = _object(ids.next_object(), (boxed["x"], boxed["y"], boxed["w"], boxed["h"]), ["lamp"])
    name = repeated["names"][0]
    return _UnlistedObjects(
        near_duplicate=_narrowed(repeated, ids.next_object(), 0.87, name.capitalize() + " "),
        apart=_narrowed(repeated, ids.next_object(), 0.83, name),
        renamed=renamed,
        echo=_narrowed(renamed, ids.next_object(), 0.9, "Lamp"),
    )


@dataclass
class _Image:
    """One image's elements, one per file, and the boxes to draw."""

    image_id: int
    width: int
    height: int
    data: dict[str, Any]
    elements: dict[str, dict[str, Any]]


def _objects(
    rng: random.Random, ids: _Ids, n: int, width: int, height: int, count: int
) -> list[dict[str, Any]]:
    objects = []
    for k in range(count):
        box = _box(rng, width, height)
        names = [rng.choice(NAMES)] + (["person"] if n == 0 and k == 1 else [])
        obj = _object(ids.next_object(), box, names)
        if k == 0:
            obj["merged_object_ids"] = [ids.next_object()]
            if n % 4 == 0:  # a negative x, as a few real boxes have
                obj["x"], obj["w"] = -3, obj["w"] + 3
        objects.append(obj)
    return objects


def _attribute_entries(
    rng: random.Random,
    ids: _Ids,
    n: int,
    width: int,
    height: int,
    objects: list[dict[str, Any]],
    unlisted: _UnlistedObjects | None,
) -> list[dict[str, Any]]:
    entries = [_attributes(rng, k, obj) for k, obj in enumerate(objects)]
    if objects and n == 0:  # an entry for an id only `merged_object_ids` holds, on its own box
        merged_id, width = objects[0]["merged_object_ids"][0], max(1, objects[0]["w"] // 2)
        merged = {**objects[0], "object_id": merged_id, "w": width}
        entries.append({**_attributes(rng, 1, merged), "attributes": ["wooden", "old"]})
    if unlisted is not None:  # v1.2 objects that v1.4's objects.json no longer lists
        for obj, attributes in (
            (unlisted.near_duplicate, ["striped"]),
            (unlisted.apart, ["tall"]),
            (unlisted.renamed, ["bright"]),
        ):
            entries.append({**_attributes(rng, 1, obj), "attributes": attributes})
    if n % 5 == 0:  # an object only attributes.json has
        lone = _object(ids.next_object(), _box(rng, width, height), ["sign"])
        entries.append({**_attributes(rng, 1, lone), "attributes": ["red"]})
    return entries


def _relationship(
    relationship_id: int, predicate: Any, subject: Any, target: Any
) -> dict[str, Any]:
    """A `relationships.json` record, keys in the real file's order."""
    return {
        "predicate": predicate,
        "relationship_id": relationship_id,
        "synsets": ["along.r.01"],
        "subject": subject,
        "object": target,
    }


def _relationships(
    rng: random.Random,
    ids: _Ids,
    width: int,
    height: int,
    objects: list[dict[str, Any]],
    count: int,
    unlisted: _UnlistedObjects | None,
) -> list[dict[str, Any]]:
    relationships = []
    for r in range(count):
        if objects:
            subject, target = objects[r % len(objects)], objects[(r + 1) % len(objects)]
        else:
            subject = target = None
        if r == 1 or target is None or target is subject:  # an end no object of the file has
            target = _object(ids.next_object(), _box(rng, width, height), ["shadow"])
        if subject is None:
            subject = _object(ids.next_object(), _box(rng, width, height), ["person"])
        elif r == 2:  # an end named by an id merged into another object
            subject = {**subject, "object_id": objects[0]["merged_object_ids"][0]}
        relationships.append(
            _relationship(
                ids.next_relationship(),
                PREDICATES[r % len(PREDICATES)],
                _end(subject, with_names=r % 2 == 1),
                _end(target, with_names=r % 2 == 0),
            )
        )
    if unlisted is not None:  # ends that objects.json no longer lists, as the real file has
        bird = _object(ids.next_object(), _box(rng, width, height), ["bird"])
        branch = _object(ids.next_object(), _box(rng, width, height), ["branch"])
        for subject, predicate, target in (
            (unlisted.near_duplicate, "on", objects[0]),
            (unlisted.apart, "beside", unlisted.echo),
            (bird, "sitting on", branch),  # two ends of which neither is listed
        ):
            relationships.append(
                _relationship(
                    ids.next_relationship(),
                    predicate,
                    _end(subject, with_names=False),
                    _end(target, with_names=target is objects[0]),
                )
            )
    return relationships


def _regions(
    rng: random.Random, ids: _Ids, n: int, image_id: int, width: int, height: int, count: int
) -> list[dict[str, Any]]:
    regions = []
    for j in range(count):
        x, y, w, h = _box(rng, width, height)
        if j == 0 and n % 4 == 0:
            x, w = -2, w + 2
        elif j == 2 and n % 4 == 1:  # past the right edge, as some real boxes reach
            w = width - x + 4
        phrase = NON_ASCII_PHRASE if (n, j) == (0, 0) else rng.choice(PHRASES)
        regions.append(
            {
                "region_id": ids.next_region(),
                "width": w,
                "height": h,
                "image_id": image_id,
                "phrase": phrase + (" " if j % 5 == 1 else ""),
                "y": y,
                "x": x,
            }
        )
    return regions


def _image(
    rngs: dict[str, random.Random],
    ids: _Ids,
    n: int,
    size: tuple[int, int],
    counts: tuple[int, int, int],
    parts: tuple[str, ...],
) -> _Image:
    """Image number `n`'s `image_data.json` record and its element in each part file asked for.

    Each part draws from its own random stream, so a file's content does not depend on which
    other files are written (the benchmark writes `region_descriptions.json` alone).
    """
    image_id = n + 1
    width, height = size if n % 2 == 0 else (size[1], size[0])
    objects_per_image, relationships_per_image, regions_per_image = counts
    data = {
        "width": width,
        "url": URL.format(folder="VG_100K_2" if n % 3 == 0 else "VG_100K", image_id=image_id),
        "height": height,
        "image_id": image_id,
        "coco_id": 100_000 + image_id if n % 2 == 0 else None,
        "flickr_id": 2_000_000_000 + image_id if n % 3 == 1 else None,
    }
    elements: dict[str, dict[str, Any]] = {}
    if set(parts) & {"objects", "attributes", "relationships"}:
        objects = _objects(rngs["objects"], ids, n, width, height, objects_per_image)
        elements["objects"] = {"image_id": image_id, "objects": objects}
    unlisted = (
        _unlisted(ids, objects)
        if {"attributes", "relationships"} & set(parts) and n == 0 and len(objects) >= 4
        else None
    )
    if "attributes" in parts:
        entries = _attribute_entries(rngs["attributes"], ids, n, width, height, objects, unlisted)
        elements["attributes"] = {"image_id": image_id, "attributes": entries}
    if "relationships" in parts:
        relationships = _relationships(
            rngs["relationships"], ids, width, height, objects, relationships_per_image, unlisted
        )
        elements["relationships"] = {"image_id": image_id, "relationships": relationships}
    if "regions" in parts:
        regions = _regions(rngs["regions"], ids, n, image_id, width, height, regions_per_image)
        elements["regions"] = {"id": image_id, "regions": regions}
    return _Image(image_id, width, height, data, elements)


def _boxes(image: _Image) -> Iterator[tuple[list[int], tuple[int, int, int]]]:
    """xyxy boxes to draw, with a colour per kind (objects, then region descriptions)."""
    for obj in image.elements.get("objects", {}).get("objects", []):
        yield [obj["x"], obj["y"], obj["x"] + obj["w"], obj["y"] + obj["h"]], (200, 60, 60)
    for region in image.elements.get("regions", {}).get("regions", []):
        x, y = region["x"], region["y"]
        yield [x, y, x + region["width"], y + region["height"]], (60, 90, 220)


def _save_image(
    image: _Image, path: Path, draw: bool, templates: dict[tuple[int, int], Path]
) -> None:
    """Draw the boxes into a JPEG, or hard-link the flat JPEG of this size (fast)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    size = (image.width, image.height)
    path.unlink(missing_ok=True)
    if not draw and size in templates:
        try:
            os.link(templates[size], path)
            return
        except OSError as error:
            if error.errno != errno.EMLINK:
                raise
            del templates[size]  # the file system's links per file are used up (ext4: 65000)
    canvas = Image.new("RGB", size, (200, 200, 190) if draw else (128, 128, 128))
    if draw:
        pen = ImageDraw.Draw(canvas)
        for box, colour in _boxes(image):
            pen.rectangle(box, outline=colour, width=2)
    canvas.save(path, quality=85)
    templates.setdefault(size, path)


def _write_list(path: Path, elements: Iterable[Any]) -> None:
    """A JSON list written element by element, spaced as `json.dump` writes it."""
    with open(path, "w", encoding="utf-8") as file:
        file.write("[")
        for k, element in enumerate(elements):
            file.write((", " if k else "") + json.dumps(element, ensure_ascii=False))
        file.write("]")


def write_vg_sample(
    root: Path,
    *,
    num_images: int = 6,
    regions_per_image: int = 5,
    objects_per_image: int = 4,
    relationships_per_image: int = 3,
    size: tuple[int, int] = (320, 240),
    draw: bool = True,
    parts: Iterable[str] = tuple(PARTS),
    seed: int = 0,
) -> VgSample:
    """Write a Visual Genome sample: the JSON files in `root`, the images in `root/images`.

    Args:
        root: folder to write into.
        num_images: images to write (ids 1..num_images, in file order).
        regions_per_image: region descriptions per image.
        objects_per_image: objects per image (each repeated in attributes.json).
        relationships_per_image: relationships per image, between the image's objects.
        size: (width, height) of even images; odd images are transposed.
        draw: draw object and region boxes into the images; False writes one flat JPEG per
            size and hard-links the rest (for gigabyte benchmark sources).
        parts: the annotation files to write besides image_data.json (builder part names).
        seed: everything is a function of it.
    """
    parts = tuple(p for p in PARTS if p in set(parts))
    rngs = {part: random.Random(f"{seed}/{part}") for part in PARTS}
    ids = _Ids()
    images_root = root / "images"
    root.mkdir(parents=True, exist_ok=True)
    counts = (objects_per_image, relationships_per_image, regions_per_image)
    templates: dict[tuple[int, int], Path] = {}
    with ExitStack() as stack:
        files = {
            name: stack.enter_context(open(root / file, "w", encoding="utf-8"))
            for name, file in [("image_data", IMAGE_DATA)] + [(p, PARTS[p].file) for p in parts]
        }
        for file in files.values():
            file.write("[")
        for n in range(num_images):
            image = _image(rngs, ids, n, size, counts, parts)
            folder, name = image.data["url"].rsplit("/", 2)[-2:]
            _save_image(image, images_root / folder / name, draw, templates)
            separator = ", " if n else ""
            files["image_data"].write(separator + json.dumps(image.data))
            for part in parts:
                element = json.dumps(image.elements[part], ensure_ascii=False)
                files[part].write(separator + element)
        for file in files.values():
            file.write("]")
    return VgSample(root, images_root, tuple(range(1, num_images + 1)), parts)


def _load(path: Path) -> list[Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def _bad_images(sample: VgSample, first: dict[str, Any]) -> list[dict[str, Any]]:
    """Image records that cannot become rows, for each way real downloads go wrong."""
    width, height = first["width"], first["height"]

    def record(image_id: int, url: str, **fields: Any) -> dict[str, Any]:
        base = {"width": width, "url": url, "height": height, "image_id": image_id}
        return base | {"coco_id": None, "flickr_id": None} | fields

    wrong = sample.images / "VG_100K" / f"{SIZE_MISMATCH_ID}.jpg"
    Image.new("RGB", (width + 10, height), (0, 0, 0)).save(wrong)
    return [
        record(MISSING_ID, URL.format(folder="VG_100K", image_id=MISSING_ID)),
        record(ESCAPING_ID, f"https://cs.stanford.edu/people/rak248/../{ESCAPING_ID}.jpg"),
        record(SIZE_MISMATCH_ID, URL.format(folder="VG_100K", image_id=SIZE_MISMATCH_ID)),
        record(MALFORMED_ID, URL.format(folder="VG_100K", image_id=MALFORMED_ID), width="800"),
        dict(first),  # the same image listed twice
    ]


def _bad_objects(first_object: dict[str, Any]) -> list[dict[str, Any]]:
    box = {"w": 20, "y": 5, "x": 5, "h": 10}
    return [
        {"synsets": [], "names": ["ghost"]} | box,  # no object_id
        {"object_id": 9201, "names": ["cup"]} | box | {"x": "10"},  # a coordinate as text
        {"object_id": 9202, "names": ["cup"]} | box | {"x": -50},  # nothing left once clipped
        {**first_object},  # the same object twice
        {"object_id": 9204, "names": []} | box,  # no name
    ]


def _bad_attributes(first_object: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {"object_id": first_object["object_id"], "attributes": "green"},  # not a list
        {"object_id": 9211, "names": ["cloud"], "attributes": ["white"], "w": 9, "h": 9, "y": 1},
    ]


def _bad_relationships(first_object: dict[str, Any]) -> list[dict[str, Any]]:
    good_end = _end(first_object, with_names=True)
    flat_end = {"object_id": 9313, "names": ["dot"], "x": 5, "y": 5, "w": 0, "h": 5}
    without_id = {k: v for k, v in good_end.items() if k != "object_id"}
    merged_end = good_end | {"object_id": first_object["merged_object_ids"][0]}
    kite = {"name": "kite", "x": 10, "y": 10, "w": 30, "h": 20}
    return [
        _relationship(9301, "on", without_id, good_end),
        _relationship(9302, 5, good_end, good_end),
        _relationship(9303, "near", good_end, flat_end),
        _relationship(9304, "  ", good_end, good_end),
        _relationship(9305, "on", merged_end, good_end),  # both ends are one object
        # a valid end no object has, then a broken one: the first must leave no region behind
        _relationship(9306, "on", kite | {"object_id": 9316}, without_id),
        # two ends no object has that nearly duplicate each other: one object again
        _relationship(9307, "on", kite | {"object_id": 9317}, kite | {"object_id": 9318, "w": 31}),
    ]


def _bad_regions(image_id: int, first_region: dict[str, Any]) -> list[dict[str, Any]]:
    def region(rid: int, **fields: Any) -> dict[str, Any]:
        base = {"region_id": rid, "width": 30, "height": 20, "image_id": image_id}
        return base | {"phrase": "a red cup", "y": 4, "x": 4} | fields

    no_width = region(9405)
    del no_width["width"]
    return [
        region(9401, phrase=None),
        region(9402, width=0),
        {**first_region},  # the same region twice
        region(9404, phrase="   "),
        no_width,
    ]


def add_bad_vg_records(sample: VgSample) -> dict[str, int]:
    """Append one broken record of each kind real files show, and say how many of each unit.

    Needs a sample written with every part and at least one object and one region on its first
    image. Returns the units added per kind; every one of them should end in quarantine.
    """
    if set(sample.parts) != set(PARTS):
        raise ValueError("add_bad_vg_records needs a sample written with every part")
    data = {part: _load(sample.file(part)) for part in ("image_data", *PARTS)}
    first_id = sample.image_ids[0]
    first_object = data["objects"][0]["objects"][0]
    first_region = data["regions"][0]["regions"][0]
    good_object = {k: v for k, v in first_object.items() if k != "object_id"}
    good_region = {k: v for k, v in first_region.items() if k != "region_id"}

    bad_images = _bad_images(sample, data["image_data"][0])
    bad_elements = [
        {"image_id": MISSING_ID, "objects": [good_object | {"object_id": 9100}]},
        {"image_id": 123456, "objects": [good_object | {"object_id": 9101}]},  # no such image
        {"image_id": first_id, "objects": [good_object | {"object_id": 9102}]},  # repeated
        {"objects": [good_object | {"object_id": 9103}]},  # no image key at all
    ]
    bad = {
        "objects": _bad_objects(first_object),
        "attributes": _bad_attributes(first_object),
        "relationships": _bad_relationships(first_object),
        "regions": _bad_regions(first_id, first_region),
    }
    data["image_data"] += bad_images
    data["objects"] += bad_elements
    data["regions"].append({"id": MISSING_ID, "regions": [good_region | {"region_id": 9400}]})
    data["relationships"].append(42)  # an element that is not an object
    for part, records in bad.items():
        data[part][0][PARTS[part].key] += records
    for part, elements in data.items():
        _write_list(sample.file(part), elements)
    added = {PARTS[part].unit: len(records) for part, records in bad.items()}
    added["image"] = len(bad_images)
    added["object"] += len(bad_elements)  # one on the missing image, three in bad elements
    added["region"] += 1  # on the missing image
    return added
