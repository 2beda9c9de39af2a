"""gRefCOCO as its project ships it: `grefcoco/grefs(unc).json` and `grefcoco/instances.json`.

Images go in `images/train2014/COCO_train2014_*.jpg`. The quirks of the real files:

- `ann_id` and `category_id` are lists: single-target refs hold one id, multi-target refs
  several (one of them a crowd annotation with uncompressed RLE, which ReLA's
  `load_grefcoco_json` skips and `G_REFER.getMaskByRef` leaves out of the ground truth),
  no-target refs `[-1]` with `no_target: true`; one ref holds scalars, as older copies do.
- some `file_name` values carry an `_x` suffix; `image_id` is what names the image.
- instances.json is COCO-2014-train style, with annotations no ref uses, stored `bbox`/`area`
  that disagree with the masks and non-contiguous category ids.
- splits train, val, testA and testB, one per image.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from PIL import ImageDraw

from regionkit.builders.samples.coco import CATEGORIES
from regionkit.builders.samples.images import ImageWriter
from regionkit.builders.samples.refer import (
    ADJECTIVES,
    PLACES,
    spread,
    write_instances,
)
from regionkit.builders.samples.shapes import (
    extent_xywh,
    shoelace_area,
    star_polygon,
    uncompressed_rle,
)

SPLITS = ("train", "val", "testA", "testB")
CROWD_ID_BASE = 900000000000  # crowd ids look like 900300255917


@dataclass(frozen=True)
class GRefCocoSample:
    """Where a written gRefCOCO sample lives: `root` (`--root`) and `images` (`--images`)."""

    root: Path
    images: Path

    @property
    def grefs(self) -> Path:
        return self.root / "grefs(unc).json"

    @property
    def instances(self) -> Path:
        return self.root / "instances.json"


def _polygon_annotation(
    rng: random.Random, ann_id: int, image_id: int, width: int, height: int
) -> dict[str, Any]:
    radius = rng.uniform(0.1, 0.2) * min(width, height)
    cx, cy = rng.uniform(radius, width - radius), rng.uniform(radius, height - radius)
    parts = [star_polygon(rng, cx, cy, radius, 10)]
    return {
        "segmentation": parts,
        "area": round(shoelace_area(parts[0]), 3),
        "iscrowd": 0,
        "image_id": image_id,
        "bbox": extent_xywh(parts),
        "category_id": CATEGORIES[rng.randrange(len(CATEGORIES))]["id"],
        "id": ann_id,
    }


def _crowd_annotation(image_id: int, width: int, height: int) -> dict[str, Any]:
    crowd = np.zeros((height, width), dtype=np.uint8)
    crowd[height // 2 : height // 2 + height // 4, width // 10 : width // 2] = 1
    return {
        "segmentation": uncompressed_rle(crowd),
        "area": int(crowd.sum()) + 11,  # real crowd areas disagree with the mask
        "iscrowd": 1,
        "image_id": image_id,
        "bbox": [width // 10, height // 2, width // 2 - width // 10 - 1, height // 4 - 1],
        "category_id": 1,
        "id": CROWD_ID_BASE + image_id,
    }


def _draw(pen: ImageDraw.ImageDraw | None, ann: dict[str, Any], shade: int) -> None:
    if pen is None:
        return
    if ann["iscrowd"]:
        x, y, w, h = ann["bbox"]
        pen.rectangle([x, y, x + w, y + h], outline=(0, 0, 0), width=2)
    else:
        for part in ann["segmentation"]:
            pen.polygon(part, fill=(shade, 120, 255 - shade))


def _ref(
    ref_id: int,
    image_id: int,
    split: str,
    targets: list[dict[str, Any]],
    sentences: list[dict[str, Any]],
    suffix: bool,
) -> dict[str, Any]:
    """A gRefCOCO ref: list ann_id/category_id; [-1] and no_target when `targets` is empty."""
    stem = f"COCO_train2014_{image_id:012d}"
    return {
        "ann_id": [a["id"] for a in targets] or [-1],
        "category_id": [a["category_id"] for a in targets] or [-1],
        "file_name": f"{stem}_{ref_id % 5}.jpg" if suffix else f"{stem}.jpg",
        "image_id": image_id,
        "no_target": not targets,
        "ref_id": ref_id,
        "sent_ids": [s["sent_id"] for s in sentences],
        "sentences": sentences,
        "split": split,
    }


def write_grefcoco_sample(
    root: Path,
    *,
    num_images: int = 8,
    sentences_per_ref: float = 1.5,
    size: tuple[int, int] = (320, 240),
    draw: bool = True,
    seed: int = 0,
) -> GRefCocoSample:
    """Write a gRefCOCO-format sample under `root` (`images/train2014/` and `grefcoco/`).

    Every image gets a single-target and a multi-target ref; every second image a crowd
    annotation, which its multi-target ref includes; every third a no-target ref; image 2
    (of every 4) a ref with scalar `ann_id`/`category_id`.

    Args:
        root: folder to write into.
        num_images: images to write.
        sentences_per_ref: sentences per ref on average (fractions spread evenly, >= 1 each).
        size: (width, height); odd images are transposed to vary aspect.
        draw: draw the objects into the images; False writes flat images, linked (fast).
        seed: everything is a function of it.
    """
    rng = random.Random(seed)
    image_dir = root / "images" / "train2014"
    writer = ImageWriter(draw)
    images, annotations, refs = [], [], []
    ann_id, ref_id, sent_id = 1719310, 0, 0
    for n in range(num_images):
        image_id = 909 + 17 * n
        width, height = size if n % 2 == 0 else (size[1], size[0])
        canvas = writer.canvas((width, height))
        pen = ImageDraw.Draw(canvas) if canvas is not None else None
        anns = [_polygon_annotation(rng, ann_id + k, image_id, width, height) for k in range(4)]
        ann_id += len(anns)
        if n % 2 == 0:
            anns.append(_crowd_annotation(image_id, width, height))
        for k, ann in enumerate(anns):
            _draw(pen, ann, 60 * k % 255)
        annotations += anns  # anns[3] is on the image but no ref uses it
        target_sets = [[anns[0]], [anns[1], anns[-1] if n % 2 == 0 else anns[2]]]
        if n % 3 == 0:
            target_sets.append([])
        first = len(refs)
        for k, targets in enumerate(target_sets):
            count = max(1, spread(sentences_per_ref, ref_id))
            sentences = [_sentence(rng, sent_id + s, targets) for s in range(count)]
            refs.append(_ref(ref_id, image_id, SPLITS[n % 4], targets, sentences, k % 2 == 1))
            ref_id, sent_id = ref_id + 1, sent_id + count
        if n % 4 == 2:  # scalar ids, as the loaders' _toList still accepts
            refs[first]["ann_id"] = anns[0]["id"]
            refs[first]["category_id"] = anns[0]["category_id"]
        writer.write(image_dir / f"COCO_train2014_{image_id:012d}.jpg", (width, height), canvas)
        images.append(
            {
                "license": 1,
                "file_name": f"COCO_train2014_{image_id:012d}.jpg",
                "coco_url": f"http://mscoco.org/images/{image_id}",
                "height": height,
                "width": width,
                "date_captured": "2013-11-21 23:06:41",
                "id": image_id,
            }
        )
    sample = GRefCocoSample(root / "grefcoco", image_dir)
    write_instances(sample.instances, images, annotations, CATEGORIES)
    sample.grefs.write_bytes(orjson.dumps(refs))
    return sample


def _sentence(rng: random.Random, sent_id: int, targets: list[dict[str, Any]]) -> dict[str, Any]:
    names = {c["id"]: c["name"] for c in CATEGORIES}
    if not targets:
        sent = f"the {rng.choice(ADJECTIVES)} unicorn {rng.choice(PLACES)}"
    else:
        sent = " and ".join(f"{rng.choice(ADJECTIVES)} {names[a['category_id']]}" for a in targets)
    return {"raw": sent.capitalize(), "sent": sent, "sent_id": sent_id, "tokens": sent.split()}


def add_bad_grefcoco_records(sample: GRefCocoSample) -> dict[str, int]:
    """Append one broken ref of each kind, with the instances records they need.

    Returns the refs and sentences added. Bad refs have ref_id 90000 + n, split `train`, and
    should each end in quarantine with their own reason, except 90009, which keeps one sentence.
    """
    instances = orjson.loads(sample.instances.read_bytes())
    refs = orjson.loads(sample.grefs.read_bytes())
    image = instances["images"][0]
    other = instances["images"][1]
    width, height = image["width"], image["height"]
    own = [a for a in instances["annotations"] if a["image_id"] == image["id"]]
    square = [[10.0, 10.0, 40.0, 10.0, 40.0, 30.0, 10.0, 30.0]]
    instances["images"].append(
        {"file_name": "missing.jpg", "height": height, "width": width, "id": 9001}
    )
    no_pixel = [[5.0, 5.0, 5.0, 5.0, 5.0, 5.0]]
    empty = {k: v for k, v in own[0].items() if k != "bbox"} | {
        "id": 9101,
        "segmentation": no_pixel,
    }
    crowd = next(a for a in own if a["iscrowd"])
    instances["annotations"] += [
        empty,
        {**own[0], "id": 9102, "image_id": 9001, "segmentation": square},
        {**own[0], "id": 9103, "image_id": other["id"]},
    ]

    def ref(n: int, **fields: Any) -> dict[str, Any]:
        sentence = {"raw": "Bad ref", "sent": f"bad ref {n}", "sent_id": 90000 + n}
        base = {"ann_id": [own[0]["id"]], "category_id": [own[0]["category_id"]]}
        base.update({"file_name": f"bad_{n}_x.jpg", "image_id": image["id"], "no_target": False})
        base.update({"ref_id": 90000 + n, "sent_ids": [90000 + n], "sentences": [sentence]})
        return {**base, "split": "train", **fields}

    no_text = {"raw": "", "sent_id": 90100, "tokens": []}
    bad_refs = [
        {k: v for k, v in ref(1).items() if k != "ann_id"},  # missing key
        ref(2, ann_id=[own[0]["id"], "7"]),  # a string among the ids
        ref(3, ann_id=[]),  # neither targets nor [-1]
        ref(4, ann_id=[-1, own[0]["id"]]),  # no-target mixed with a target
        ref(5, no_target=True),  # the flag disagrees with ann_id
        ref(6, ann_id=[own[0]["id"], 123456789]),  # one target names no annotation
        ref(7, ann_id=[own[0]["id"], 9103]),  # one target is on another image
        ref(8, ref_id=refs[0]["ref_id"]),  # a ref id used before
        ref(9, sentences=[*ref(9)["sentences"], no_text]),  # one sentence without text
        ref(10, ann_id=[own[0]["id"], 9101]),  # one target has no mask and no box: the ref goes
        ref(11, image_id=9001, ann_id=[9102]),  # missing image file
        ref(12, image_id=9001, ann_id=[-1], no_target=True),  # no target, missing image file
        ref(13, image_id=424242, ann_id=[-1], no_target=True),  # names no image
        ref(14, ann_id=-1, no_target=True, sentences=[{**no_text, "sent": "  "}]),  # blank text
        ref(15, ann_id=[crowd["id"]]),  # only a crowd target: the benchmark has nothing to score
    ]
    refs += [*bad_refs, ["not", "a", "ref"]]
    sample.instances.write_bytes(orjson.dumps(instances))
    sample.grefs.write_bytes(orjson.dumps(refs))
    return {"ref": len(bad_refs) + 1, "sentence": sum(len(r["sentences"]) for r in bad_refs)}
