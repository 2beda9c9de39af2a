"""Small synthetic sources in their real on-disk formats, for the demo, tests and benchmarks.

The COCO writer produces `annotations/instances_<split>.json` plus JPEG images, with the quirks
of the real files: non-contiguous category ids, multi-part polygons, crowd instances as
uncompressed RLE, a compressed-RLE instance (as converted files carry), stored `area` and
`bbox` that disagree with the rasterised mask, `info: null`, polygon parts of 2 points beside
real ones (cocoapi's `annToRLE` merges them; they add no pixel), and tiny objects whose polygon
rasterises to no pixel while their stored box is real. Shapes are drawn into the
images, so previews show masks over the things they outline.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw
from pycocotools import mask as mask_api

from regionkit.builders.samples.images import ImageWriter
from regionkit.builders.samples.shapes import (
    extent_xywh,
    shoelace_area,
    sliver_part,
    speck_polygon,
    star_polygon,
    uncompressed_rle,
)

# A few real COCO categories with their real (non-contiguous) ids.
CATEGORIES = [
    {"supercategory": "person", "id": 1, "name": "person"},
    {"supercategory": "vehicle", "id": 3, "name": "car"},
    {"supercategory": "animal", "id": 18, "name": "dog"},
    {"supercategory": "sports", "id": 37, "name": "sports ball"},
    {"supercategory": "kitchen", "id": 44, "name": "bottle"},
    {"supercategory": "furniture", "id": 62, "name": "chair"},
    {"supercategory": "indoor", "id": 90, "name": "toothbrush"},
]


@dataclass(frozen=True)
class CocoSample:
    """Where a written COCO sample lives."""

    annotations: Path
    images: Path
    split: str


def write_coco_sample(
    root: Path,
    *,
    split: str = "val2017",
    num_images: int = 6,
    instances_per_image: int = 4,
    size: tuple[int, int] = (320, 240),
    polygon_points: int = 12,
    draw: bool = True,
    seed: int = 0,
) -> CocoSample:
    """Write a COCO-format sample under `root` (`annotations/` and `<split>/`).

    Args:
        root: folder to write into.
        split: split name, used for `instances_<split>.json` and the image folder.
        num_images: images to write.
        instances_per_image: instances per image (every 5th image gets a crowd instance extra).
        size: (width, height) of every image; odd images are transposed to vary aspect.
        polygon_points: vertices per polygon part.
        draw: draw the shapes into the images (previews); False writes one flat image per size
            and hard-links it (a benchmark corpus of 50,000 images in seconds).
        seed: everything is a function of it.
    """
    rng = random.Random(seed)
    images_dir = root / split
    images_dir.mkdir(parents=True, exist_ok=True)
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    writer = ImageWriter(draw)
    ann_id = 1000
    palette = [(220, 60, 60), (60, 160, 60), (60, 90, 220), (230, 180, 40), (160, 60, 200)]
    for n in range(num_images):
        image_id = 100 + 7 * n  # sparse ids, like COCO's
        width, height = size if n % 2 == 0 else (size[1], size[0])
        file_name = f"{image_id:012d}.jpg"
        canvas = writer.canvas((width, height))
        pen = ImageDraw.Draw(canvas) if canvas is not None else None
        for k in range(instances_per_image):
            category = CATEGORIES[rng.randrange(len(CATEGORIES))]
            radius = rng.uniform(0.08, 0.2) * min(width, height)
            cx, cy = rng.uniform(radius, width - radius), rng.uniform(radius, height - radius)
            parts = [star_polygon(rng, cx, cy, radius, polygon_points)]
            if k == 0:  # a multi-part instance: an occluded object seen in two pieces
                parts.append(
                    star_polygon(rng, width - cx, height - cy, radius * 0.5, polygon_points)
                )
            if k == 1 and n % 2 == 1:  # a leftover 2-point part, inside the stored extent
                parts.append(sliver_part(cx + radius * 0.4, cy))
            if pen is not None:
                for part in parts:
                    pen.polygon(part, fill=palette[k % len(palette)])
            annotations.append(
                {
                    "segmentation": parts,
                    "area": round(sum(shoelace_area(p) for p in parts), 4),
                    "iscrowd": 0,
                    "image_id": image_id,
                    "bbox": extent_xywh(parts),
                    "category_id": category["id"],
                    "id": ann_id,
                }
            )
            ann_id += 1
        if n % 5 == 0:
            crowd = np.zeros((height, width), dtype=np.uint8)
            crowd[height // 2 : height // 2 + height // 5, width // 8 : width // 2] = 1
            if pen is not None:
                pen.rectangle(
                    [width // 8, height // 2, width // 2 - 1, height // 2 + height // 5 - 1],
                    outline=(0, 0, 0),
                    width=2,
                )
            annotations.append(
                {
                    "segmentation": uncompressed_rle(crowd),
                    "area": int(crowd.sum()) + 13,  # real crowd areas disagree with the mask
                    "iscrowd": 1,
                    "image_id": image_id,
                    "bbox": [width // 8, height // 2, width // 2 - width // 8 - 1, height // 5 - 1],
                    "category_id": 1,
                    "id": 900000000000 + image_id,  # crowd ids look like 900300255917
                }
            )
        if n % 3 == 1:  # converted files carry compressed RLE
            blob = np.zeros((height, width), dtype=np.uint8)
            blob[: height // 6, width - width // 5 :] = 1
            rle = mask_api.encode(np.asfortranarray(blob))
            annotations.append(
                {
                    "segmentation": {"size": rle["size"], "counts": rle["counts"].decode()},
                    "area": float(blob.sum()),
                    "iscrowd": 0,
                    "image_id": image_id,
                    "bbox": [width - width // 5, 0, width // 5, height // 6],
                    "category_id": 62,
                    "id": ann_id,
                }
            )
            ann_id += 1
        if n % 4 == 2:  # a tiny object: no pixel of its polygon, a box all the same
            speck = speck_polygon(width // 3, height // 3)
            annotations.append(
                {
                    "segmentation": [speck],
                    "area": round(shoelace_area(speck), 4),
                    "iscrowd": 0,
                    "image_id": image_id,
                    "bbox": extent_xywh([speck]),
                    "category_id": 37,
                    "id": ann_id,
                }
            )
            ann_id += 1
        writer.write(images_dir / file_name, (width, height), canvas)
        images.append(
            {
                "license": 1,
                "file_name": file_name,
                "coco_url": "",
                "height": height,
                "width": width,
                "date_captured": "2013-11-14 17:02:52",
                "id": image_id,
            }
        )
    data = {
        "info": None,
        "licenses": [{"url": "http://creativecommons.org/licenses/by/2.0/", "id": 1, "name": "by"}],
        "images": images,
        "annotations": annotations,
        "categories": CATEGORIES,
    }
    annotations_path = root / "annotations" / f"instances_{split}.json"
    annotations_path.write_text(json.dumps(data))
    return CocoSample(annotations_path, images_dir, split)


def add_bad_coco_records(sample: CocoSample) -> dict[str, int]:
    """Append one broken record of each kind real files have shown, and say how many of each unit.

    Returns the number of images and annotations added, so callers can check
    `in = out + quarantined`. Each bad record should end in quarantine with its own reason.
    """
    data = json.loads(sample.annotations.read_text())
    good_image = data["images"][0]
    width, height = good_image["width"], good_image["height"]
    image_id = good_image["id"]
    polygon = [[10.0, 10.0, 60.0, 10.0, 60.0, 50.0, 10.0, 50.0]]

    def ann(ann_id: int, **fields: Any) -> dict[str, Any]:
        base = {
            "segmentation": polygon,
            "area": 2000.0,
            "iscrowd": 0,
            "image_id": image_id,
            "bbox": [10.0, 10.0, 50.0, 40.0],
            "category_id": 1,
            "id": ann_id,
        }
        return {**base, **fields}

    def no_box(ann_id: int, **fields: Any) -> dict[str, Any]:
        return {k: v for k, v in ann(ann_id, **fields).items() if k != "bbox"}

    Image.new("RGB", (width + 10, height), (0, 0, 0)).save(sample.images / "resized.jpg")
    bad_images = [
        {"file_name": "missing.jpg", "height": height, "width": width, "id": 9001},
        {"file_name": "../../outside.jpg", "height": height, "width": width, "id": 9002},
        {"file_name": "resized.jpg", "height": height, "width": width, "id": 9003},
        {"file_name": "no_width.jpg", "height": height, "id": 9004},
    ]
    bad_annotations = [
        ann(9101, category_id=77),  # unknown category
        ann(9102, bbox=[10.0, 10.0, 50.0]),  # a box of three numbers
        ann(9103, segmentation=[10.0, 10.0, 60.0, 10.0, 60.0, 50.0]),  # flat, unnested
        ann(9104, bbox=[width - 5.0, 10.0, 80.0, 40.0]),  # stored box far outside the image
        no_box(9105, segmentation=[[5.0, 5.0, 5.0, 5.0, 5.0, 5.0]]),  # no pixel and no box
        ann(9106, segmentation={"counts": [5, 5], "size": [height + 1, width]}),  # wrong size
        ann(9107, image_id=123456),  # names no image
        ann(9108, category_id="1"),  # wrong type
        ann(9109, image_id=9001),  # on the missing image
        ann(9110, image_id=9002),  # on the escaping image
        ann(9111, bbox=[120.0, 100.0, 40.0, 30.0]),  # the mask lies elsewhere: another object
    ]
    data["images"] += bad_images
    data["annotations"] += bad_annotations
    sample.annotations.write_text(json.dumps(data))
    return {"image": len(bad_images), "annotation": len(bad_annotations)}
