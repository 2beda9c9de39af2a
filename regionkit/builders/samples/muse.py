"""A small MUSE source in PixelLM's on-disk format, with the quirks of the real files.

Writes `muse_{split}.json` (or `MUSE_{split}.json`, as some mirrors name them) under
`<root>/muse/` and COCO images under `<root>/images/{train2014,train2017,val2017}/`. Records
cycle through four kinds:

0. a COCO-2014 record with `file_name` (and a train2014 `coco_url` too, which `file_name`
   overrides), instance ids, a multi-part polygon, and `text_answers` with `{seg}`;
1. an LVIS-style train2017 record (only `coco_url`, plus `neg_category_ids` and other LVIS
   keys) with an uncompressed-RLE instance, answer copies without ids (matched by their
   segmentation) and an answer instance that is not in `ann_list`;
2. a val2017 record with an RLE instance and no `text_answers`: answers are built from
   `rephrased_name`;
3. a val2017 record without `text_answers` whose instances have only `category_name`.

Every record holds a multi-target answer and an instance referenced by two questions; after
the cycle one more record repeats the first LVIS image, as MUSE does for some images. Stored
`bbox` and `area` are the polygon's extent and shoelace area, which disagree with the mask; a
multi-part polygon also carries a 2-point leftover part (`frPyObjects` takes it, and the sum
over parts in PixelLM's loader adds no pixel for it). Broken records also include a tiny
instance whose polygon covers no pixel while its box is real.
RLE is uncompressed (`counts` a list): PixelLM reads segmentations with `frPyObjects`, which
fails on compressed string counts, so the released files cannot hold those.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from regionkit.builders.samples.shapes import (
    extent_xywh,
    shoelace_area,
    sliver_part,
    speck_polygon,
    star_polygon,
    uncompressed_rle,
)

# (LVIS category id, category_name, rephrased_name)
THINGS = [
    (3, "bicycle", "the red bike"),
    (95, "dog", "the brown dog"),
    (344, "cup", "the coffee mug"),
    (232, "chair", "the wooden chair"),
    (1133, "umbrella", "the open umbrella"),
    (631, "laptop", "the silver laptop"),
]
QUESTIONS = [
    "What could the person use to get around the city quickly?",
    "Which objects here would help someone stay dry and sit down?",
    "What in the picture could hold a hot drink?",
    "Which things would you move to make room on the floor?",
]
PALETTE = [(220, 60, 60), (60, 160, 60), (60, 90, 220), (230, 180, 40), (160, 60, 200)]
URL = "http://images.cocodataset.org"


@dataclass(frozen=True)
class MuseSample:
    """Where a written MUSE sample lives and how many units each split holds.

    Attributes:
        root: the folder holding the `muse_*.json` files (`--root`).
        images: the COCO image root holding `train2014/`, `train2017/`, `val2017/` (`--images`).
        files: split -> its json file.
        units: split -> {"image": records, "question": questions, "instance": distinct
            instances}, counted while writing.
    """

    root: Path
    images: Path
    files: dict[str, Path]
    units: dict[str, dict[str, int]]


@dataclass
class _Canvas:
    """One image being drawn and the instances placed on it."""

    width: int
    height: int
    image: Image.Image
    pen: ImageDraw.ImageDraw | None

    def polygon(self, parts: list[list[float]], colour: tuple[int, int, int]) -> None:
        if self.pen is not None:
            for part in parts:
                self.pen.polygon(part, fill=colour)

    def block(self, mask: np.ndarray, colour: tuple[int, int, int]) -> None:
        if self.pen is not None:
            ys, xs = np.nonzero(mask)
            self.pen.rectangle([xs.min(), ys.min(), xs.max(), ys.max()], fill=colour)


def _instance(
    rng: random.Random,
    canvas: _Canvas,
    image_id: int,
    ann_id: int,
    thing: tuple[int, str, str],
    *,
    parts: int = 1,
    rephrased: bool = True,
) -> dict[str, Any]:
    """An LVIS-style polygon instance drawn on `canvas`."""
    radius = rng.uniform(0.1, 0.2) * min(canvas.width, canvas.height)
    polygons = []
    for _ in range(parts):
        cx = rng.uniform(radius, canvas.width - radius)
        cy = rng.uniform(radius, canvas.height - radius)
        polygons.append(star_polygon(rng, cx, cy, radius, 10))
    canvas.polygon(polygons, PALETTE[ann_id % len(PALETTE)])
    if parts > 1:  # a 2-point leftover beside the real parts; PixelLM's decode merges it
        polygons.append(sliver_part(cx, cy))
    category_id, name, rephrased_name = thing
    instance = {
        "area": round(sum(shoelace_area(p) for p in polygons), 4),
        "id": ann_id,
        "segmentation": polygons,
        "image_id": image_id,
        "bbox": extent_xywh(polygons),
        "category_id": category_id,
        "category_name": name,
    }
    if rephrased:
        instance["rephrased_name"] = rephrased_name
    return instance


def _rle_instance(
    canvas: _Canvas, image_id: int, ann_id: int, thing: tuple[int, str, str]
) -> dict[str, Any]:
    """An instance whose segmentation is an uncompressed RLE block."""
    w, h = canvas.width, canvas.height
    mask = np.zeros((h, w), dtype=np.uint8)
    mask[h // 8 : h // 3, w // 2 : w - w // 8] = 1
    canvas.block(mask, PALETTE[ann_id % len(PALETTE)])
    category_id, name, rephrased_name = thing
    return {
        "area": float(mask.sum()) + 7,  # stored areas disagree with the mask
        "id": ann_id,
        "segmentation": uncompressed_rle(mask),
        "image_id": image_id,
        "bbox": [w // 2, h // 8, w - w // 8 - w // 2, h // 3 - h // 8],
        "category_id": category_id,
        "category_name": name,
        "rephrased_name": rephrased_name,
    }


def _without_id(instance: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in instance.items() if k != "id"}


def _record_2014(rng: random.Random, canvas: _Canvas, image_id: int) -> dict[str, Any]:
    """Kind 0: `file_name` in train2014, ids everywhere, text answers with `{seg}`."""
    things = rng.sample(THINGS, 3)
    ann = [
        _instance(rng, canvas, image_id, 2000 + 10 * image_id + k, t, parts=2 if k == 0 else 1)
        for k, t in enumerate(things)
    ]
    file_name = f"COCO_train2014_{image_id:012d}.jpg"
    return {
        "license": 3,
        "file_name": file_name,
        "coco_url": f"{URL}/train2014/{file_name}",
        "height": canvas.height,
        "width": canvas.width,
        "date_captured": "2013-11-14 16:28:13",
        "id": image_id,
        "ann_list": ann,
        "questions": [QUESTIONS[0], QUESTIONS[1]],
        "answers": [[ann[0]], [ann[2], ann[0]]],
        "text_answers": [
            f"The person could ride {ann[0]['rephrased_name']} {{seg}} parked by the curb.",
            f"Use {ann[2]['rephrased_name']} {{seg}} and then {ann[0]['rephrased_name']} {{seg}}.",
        ],
    }


def _record_lvis(rng: random.Random, canvas: _Canvas, image_id: int) -> dict[str, Any]:
    """Kind 1: LVIS train2017, RLE instance, id-less answer copies, an answer-only instance."""
    things = rng.sample(THINGS, 3)
    base = 2000 + 10 * image_id
    ann = [
        _instance(rng, canvas, image_id, base, things[0]),
        _rle_instance(canvas, image_id, base + 1, things[1]),
    ]
    extra = _without_id(_instance(rng, canvas, image_id, base + 2, things[2]))
    return {
        "license": 1,
        "coco_url": f"{URL}/train2017/{image_id:012d}.jpg",
        "height": canvas.height,
        "width": canvas.width,
        "flickr_url": f"http://farm4.staticflickr.com/{image_id}.jpg",
        "date_captured": "2013-11-18 02:53:27",
        "neg_category_ids": [12, 409],
        "not_exhaustive_category_ids": [95],
        "id": image_id,
        "ann_list": ann,
        "questions": [QUESTIONS[2], QUESTIONS[3]],
        "answers": [[_without_id(ann[1])], [extra, _without_id(ann[1]), _without_id(ann[0])]],
        "text_answers": [
            f"{ann[1]['rephrased_name'].capitalize()} {{seg}} could hold it.",
            f"Move {extra['rephrased_name']} {{seg}}, {ann[1]['rephrased_name']} {{seg}} and "
            f"{ann[0]['rephrased_name']} {{seg}}.",
        ],
    }


def _record_templated(
    rng: random.Random, canvas: _Canvas, image_id: int, *, rephrased: bool
) -> dict[str, Any]:
    """Kinds 2 and 3: val2017 without `text_answers`, with or without `rephrased_name`."""
    things = rng.sample(THINGS, 3)
    base = 2000 + 10 * image_id
    ann = [
        _instance(rng, canvas, image_id, base, things[0], rephrased=rephrased),
        _instance(rng, canvas, image_id, base + 1, things[1], rephrased=rephrased),
    ]
    if rephrased:
        ann.append(_rle_instance(canvas, image_id, base + 2, things[2]))
    return {
        "license": 4,
        "coco_url": f"{URL}/val2017/{image_id:012d}.jpg",
        "height": canvas.height,
        "width": canvas.width,
        "date_captured": "2013-11-20 21:13:07",
        "neg_category_ids": [],
        "not_exhaustive_category_ids": [],
        "id": image_id,
        "ann_list": ann,
        "questions": [QUESTIONS[1], QUESTIONS[3]],
        "answers": [[ann[-1], ann[0]], [ann[0]]],
    }


def _image_path(images: Path, record: dict[str, Any]) -> Path:
    if "file_name" in record:
        return images / "train2014" / record["file_name"]
    folder, name = record["coco_url"].rsplit("/", 2)[-2:]
    return images / folder / name


def _units(records: list[dict[str, Any]]) -> dict[str, int]:
    """Units of good fixture records; their distinct instances have distinct segmentations."""
    totals = {"image": len(records), "question": 0, "instance": 0}
    for record in records:
        segmentations = [value["segmentation"] for value in record["ann_list"]]
        for answer in record["answers"]:
            for value in answer:
                if value["segmentation"] not in segmentations:
                    segmentations.append(value["segmentation"])
        totals["question"] += len(record["questions"])
        totals["instance"] += len(segmentations)
    return totals


def _split_records(
    rng: random.Random,
    images: Path,
    first_id: int,
    num_images: int,
    size: tuple[int, int],
    draw: bool,
) -> list[dict[str, Any]]:
    """One split's records, cycling through the four kinds, with their images written."""
    records = []
    for n in range(num_images):
        image_id = first_id + 37 * n  # sparse ids, like COCO's
        w, h = size if n % 2 == 0 else (size[1], size[0])
        image = Image.new("RGB", (w, h), (200, 200, 190) if draw else (128, 128, 128))
        canvas = _Canvas(w, h, image, ImageDraw.Draw(image) if draw else None)
        kind = n % 4
        if kind == 0:
            record = _record_2014(rng, canvas, image_id)
        elif kind == 1:
            record = _record_lvis(rng, canvas, image_id)
        else:
            record = _record_templated(rng, canvas, image_id, rephrased=kind == 2)
        image.save(_image_path(images, record), quality=85)
        records.append(record)
    if num_images > 1:  # a second record on the LVIS image, as MUSE has for some images
        again = dict(records[1])
        again["questions"] = [QUESTIONS[0]]
        again["answers"] = [[again["ann_list"][0]]]
        again["text_answers"] = ["Something like {seg} would do."]
        records.append(again)
    return records


def write_muse_sample(
    root: Path,
    *,
    num_images: int = 5,
    splits: tuple[str, ...] = ("train", "val"),
    size: tuple[int, int] = (160, 120),
    capitalised: bool = False,
    draw: bool = True,
    seed: int = 0,
) -> MuseSample:
    """Write a MUSE-format sample under `root` (`muse/` and `images/`).

    Args:
        root: folder to write into.
        num_images: images per split; records cycle through the four kinds above, and one more
            record repeats the split's first LVIS image (when there is one).
        splits: splits to write, each to its own file with its own images.
        size: (width, height) of the images; odd images are transposed.
        capitalised: name the files `MUSE_{split}.json`, as some mirrors do.
        draw: draw the instances into the images; False writes flat images (faster).
        seed: everything is a function of it.
    """
    rng = random.Random(seed)
    images = root / "images"
    for folder in ("train2014", "train2017", "val2017"):
        (images / folder).mkdir(parents=True, exist_ok=True)
    (root / "muse").mkdir(parents=True, exist_ok=True)
    pattern = "MUSE_{split}.json" if capitalised else "muse_{split}.json"
    files, units = {}, {}
    for s, split in enumerate(splits):
        records = _split_records(rng, images, 100_000 * (s + 1) + 1, num_images, size, draw)
        files[split] = root / "muse" / pattern.format(split=split)
        files[split].write_text(json.dumps(records))
        units[split] = _units(records)
    return MuseSample(root / "muse", images, files, units)


def _bad_records(images: Path, width: int, height: int) -> list[Any]:
    """One broken record of each kind, on images of their own (ids 9001...)."""
    square = [[10.0, 10.0, 50.0, 10.0, 50.0, 40.0, 10.0, 40.0]]

    def instance(ann_id: int, **fields: Any) -> dict[str, Any]:
        base = {"id": ann_id, "segmentation": square, "bbox": [10, 10, 40, 30]}
        return {**base, "category_id": 95, "category_name": "dog", **fields}

    def record(image_id: int, questions: list[Any], answers: list[Any], **fields: Any) -> dict:
        return {
            "coco_url": f"{URL}/train2017/{image_id:012d}.jpg",
            "height": height,
            "width": width,
            "id": image_id,
            "ann_list": [instance(image_id * 10)],
            "questions": questions,
            "answers": answers,
            **fields,
        }

    good = instance(90070)
    tiny = instance(90095, segmentation=[speck_polygon(20, 20)], bbox=[20.0, 20.0, 0.3, 0.3])
    broken = [
        {k: v for k, v in instance(90090).items() if k != "bbox"}
        | {"segmentation": [[5.0, 5.0, 5.0, 5.0, 5.0, 5.0]]},  # no pixel and no box
        instance(90091, segmentation=[10.0, 10.0, 50.0, 10.0, 50.0, 40.0]),  # flat, unnested
        instance(90092, segmentation={"counts": [5, 5], "size": [height + 1, width]}),
        instance(90094, segmentation={"counts": [5, 5], "size": [str(height), width]}),
        {k: v for k, v in instance(90093).items() if k != "category_name"},
    ]
    records = [
        "not a record",  # malformed_record
        record(9002, ["Q?"], [[]], coco_url=f"{URL}/test2017/000000009002.jpg"),  # unknown folder
        {k: v for k, v in record(9003, ["Q?"], [[]]).items() if k != "height"},  # malformed
        record(9004, ["Where?"], [[instance(90040)]], text_answers=["There {seg}."]),  # missing
        record(9005, ["Q?"], [[]], file_name="../../escape.jpg"),  # path_escape, id from 'id'
        record(9006, ["Q?"], [[]]),  # image written at another size
        record(
            9007,
            ["Two of them?", "One?"],
            [
                [
                    good,
                    instance(90071, segmentation=[[30, 30, 50, 30, 50, 50]], bbox=[30, 30, 20, 20]),
                ],
                [good],
            ],
            ann_list=[good],
            text_answers=["Just {seg}.", "It is {seg}."],  # 1 {seg} for 2 instances, then fine
        ),
        record(9008, ["One?", "Two?"], [[]], text_answers=["No."]),  # 2 questions, 1 answer
        record(
            9009,
            ["Empty?", "Good?", "Box?", "Unnamed?", "Text?", "Tiny?"],
            [[broken[0]], [good], [broken[1], good], [broken[3]], ["a dog"], [tiny]],
            ann_list=[*broken[:3], broken[4], good, tiny],
        ),
        record(
            9010,
            [42, "Not a list?", "Fine?"],
            [[good], {"id": 90070}, [good]],
            ann_list=[good],
            text_answers=["{seg}", "{seg}", "Here {seg}."],
        ),
        record(
            9011,
            ["Nothing?", "Markup <seg0> here?", "Fine?"],
            [[], [good], [good]],
            ann_list=[good],
        ),
    ]
    for image_id in (9007, 9008, 9009, 9010, 9011):
        Image.new("RGB", (width, height), (90, 90, 90)).save(
            images / "train2017" / f"{image_id:012d}.jpg"
        )
    Image.new("RGB", (width + 10, height), (90, 90, 90)).save(
        images / "train2017" / f"{9006:012d}.jpg"
    )
    return records


def _distinct_bad_instances(record: Any) -> int:
    """Instances of a bad record: every dict instance there has an id; other entries count once."""
    if not isinstance(record, dict):
        return 0
    values = [
        *record["ann_list"],
        *(v for a in record["answers"] if isinstance(a, list) for v in a),
    ]
    ids = {value["id"] for value in values if isinstance(value, dict)}
    return len(ids) + sum(not isinstance(value, dict) for value in values)


def add_bad_muse_records(sample: MuseSample, split: str = "train") -> dict[str, int]:
    """Append one broken record of each kind real files can show to `split`'s file.

    Returns how many units of each kind the added records hold (`image` = records), so callers
    can check `in = out + quarantined`; some of their questions and instances are good and
    reach rows, the rest end in quarantine with their own reason.
    """
    path = sample.files[split]
    records = json.loads(path.read_text())
    bad = _bad_records(sample.images, 96, 64)
    path.write_text(json.dumps(records + bad))
    return {
        "image": len(bad),
        "question": sum(len(r["questions"]) for r in bad if isinstance(r, dict)),
        "instance": sum(_distinct_bad_instances(r) for r in bad),
    }
