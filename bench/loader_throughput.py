"""Samples/s per core of the training input path at the GAR-1B geometry, next to GAR's way.

GAR-1B tiles images into 448-pixel tiles (up to 16 plus a thumbnail) and prompts up to a few
regions. Both sides turn the same rows (a JPEG image of 1024 x 768 or so, 4 masked regions, a
short dialogue) into pixel tiles, per-region prompt tiles and token ids, in one process on one
core (no prefetch, no workers), each run in turns with the other:

- regionkit: `RowStream` over a regionkit dataset, then `RegionProcessor` (the image and all
  region masks tiled by one torchvision resize each; masks in one 8-bit pass).
- GAR's way (its dataset's `__getitem__`): PIL decodes the image, pycocotools decodes each
  mask, and transformers' PerceptionLM image processor runs on the image and on every mask as
  its own 3-channel image, one sample at a time.

    python bench/loader_throughput.py            # 48 rows, 3 runs each
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from PIL import Image
from pycocotools import mask as mask_api
from transformers import PerceptionLMImageProcessor

from regionkit.catalog.masks import encode_mask
from regionkit.catalog.records import make_region, make_row
from regionkit.catalog.schema import ARROW_SCHEMA
from regionkit.modeling import gar_1b_config
from regionkit.train.processor import ProcessorSettings, RegionProcessor
from regionkit.train.stream import RowStream, StreamSource
from regionkit.train.tiny_tokenizer import tiny_tokenizer

TILE, MAX_TILES, REGIONS = 448, 16, 4


def write_dataset(folder: Path, count: int) -> list[dict]:
    """A regionkit dataset of `count` rows (JPEG images, 4 masked regions each)."""
    rng = np.random.default_rng(0)
    rows = []
    for n in range(count):
        width, height = int(rng.integers(900, 1300)), int(rng.integers(600, 1000))
        picture = folder / "images" / f"{n}.jpg"
        picture.parent.mkdir(parents=True, exist_ok=True)
        pixels = rng.integers(0, 256, (height // 8, width // 8, 3), dtype=np.uint8)
        Image.fromarray(pixels).resize((width, height)).save(picture, quality=90)
        regions = []
        for k in range(REGIONS):
            x1, y1 = int(rng.integers(0, width // 2)), int(rng.integers(0, height // 2))
            x2, y2 = x1 + width // 3, y1 + height // 3
            mask = np.zeros((height, width), dtype=np.uint8)
            mask[y1:y2, x1:x2] = 1
            regions.append(make_region(str(k), [x1, y1, x2, y2], encode_mask(mask), "dog"))
        question = " and ".join(f"<region{k}>" for k in range(REGIONS))
        messages = [
            {"role": "user", "content": f"what is {question} ?"},
            {"role": "assistant", "content": "a dog <seg0> and a dog <seg1> ."},
        ]
        rows.append(
            make_row(
                source="coco",
                split="train",
                native_key=str(n),
                image_path=str(picture),
                width=width,
                height=height,
                builder="coco",
                builder_version="1",
                source_files=[],
                regions=regions,
                messages=messages,
            )
        )
    (folder / "data").mkdir(exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=ARROW_SCHEMA), folder / "data/train.parquet")
    manifest = {"splits": {"train": {"rows": count, "shards": [{"file": "data/train.parquet"}]}}}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return rows


def regionkit_run(folder: Path, processor: RegionProcessor) -> int:
    stream = RowStream([StreamSource(folder)], seed=0, buffer_size=1, transform=processor)
    return sum(1 for _ in stream)


def gar_run(rows: list[dict], image_processor: PerceptionLMImageProcessor) -> int:
    done = 0
    for row in rows:
        image = Image.open(row["image"]["path"]).convert("RGB")
        tiles = image_processor(image, return_tensors="pt")["pixel_values"]
        for region in row["regions"]:
            mask = mask_api.decode(region["mask"]) * 255
            prompt = Image.fromarray(mask).convert("RGB")
            image_processor(prompt, return_tensors="pt")  # GAR tiles each mask as an image
        done += tiles.shape[0] > 0
    return done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=48)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)  # per core: one thread each
    config = gar_1b_config()
    settings = ProcessorSettings(tile_size=TILE, max_tiles=MAX_TILES, max_length=16384)
    processor = RegionProcessor(tiny_tokenizer(), config, settings)
    image_processor = PerceptionLMImageProcessor(tile_size=TILE, max_num_tiles=MAX_TILES)
    with tempfile.TemporaryDirectory() as tmp:
        rows = write_dataset(Path(tmp), args.rows)
        ours, gars = [], []
        for _ in range(args.repeat):
            started = time.perf_counter()
            assert regionkit_run(Path(tmp), processor) == args.rows
            ours.append(time.perf_counter() - started)
            started = time.perf_counter()
            assert gar_run(rows, image_processor) == args.rows
            gars.append(time.perf_counter() - started)
    ours_rate, gar_rate = args.rows / statistics.median(ours), args.rows / statistics.median(gars)
    print(
        f"{args.rows} rows of about 1100 x 800 px, {REGIONS} masked regions, 448 px tiles (max 16)"
    )
    print(f"{'path (one core)':34} {'samples/s':>10}")
    print(f"{'regionkit stream + processor':34} {ours_rate:>10.2f}")
    print(f"{'GAR-style per-sample processing':34} {gar_rate:>10.2f}")
    print(f"ratio: {ours_rate / gar_rate:.2f}x (medians of {args.repeat} runs, taken in turns)")


if __name__ == "__main__":
    main()
